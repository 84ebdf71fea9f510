//! `vitale-bridge service install|uninstall|run` (Windows): the daemon as a Windows
//! service, for single-account kiosks (crate `windows-service`).
//!
//! The OS-user check serves the daemon's own account and the `allowed_users`
//! accounts, so the service runs as the kiosk's account (`--account`, password
//! piped to stdin) or as another one with the kiosk's listed in `allowed_users`. A
//! workstation where people log on uses the per-user logon entry instead
//! (`autostart` or the MSI). Logs go to a file under
//! `%ProgramData%\vitale-bridge\logs` (a service has no console), rotated at each
//! start once over [`ROTATE_AT`] bytes, [`KEPT`] old files kept; as everywhere, they
//! never hold an identity.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{CommonArgs, EXIT_FAILURE, EXIT_USAGE};

/// The service's name for the service manager (`sc query vitale-bridge`).
pub const SERVICE_NAME: &str = "vitale-bridge";
/// A log file larger than this is rotated when the service starts.
pub const ROTATE_AT: u64 = 1024 * 1024;
/// How many rotated log files are kept (`vitale-bridge.log.1` … `.3`).
pub const KEPT: usize = 3;

/// `vitale-bridge service …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceCommand {
    /// Register the service (started at boot) running as ACCOUNT; run as an administrator.
    Install {
        /// The account it runs as (`.\kiosk`, `DOMAIN\user`): the one whose browser
        /// connects. Its password is read from standard input (one line, piped).
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
    },
    /// Stop and remove the service.
    Uninstall,
    /// The service's entry point, called by the service manager (not by hand).
    Run,
}

/// `vitale-bridge service …`.
pub fn run(cmd: ServiceCommand) -> ExitCode {
    let result = match cmd {
        ServiceCommand::Install { account } => {
            // Typed at a prompt, the password would be echoed: it must come from a pipe.
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!(
                    "vitale-bridge service: pipe the account's password to standard input: echo PASSWORD| vitale-bridge service install --account {account}"
                );
                return ExitCode::from(EXIT_USAGE);
            }
            let mut password = String::new();
            if let Err(e) = std::io::stdin().read_line(&mut password) {
                eprintln!("vitale-bridge service: cannot read the password from stdin: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            scm::install(&account, password.trim_end_matches(['\r', '\n']))
                .map(|()| println!("service {SERVICE_NAME} installed (runs as {account}); start it: sc start {SERVICE_NAME}"))
        }
        ServiceCommand::Uninstall => {
            scm::uninstall().map(|()| println!("service {SERVICE_NAME} removed"))
        }
        ServiceCommand::Run => scm::dispatch(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vitale-bridge service: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The log directory next to the machine-wide configuration.
pub fn log_dir() -> PathBuf {
    crate::config::system_config()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("logs")
}

/// Shifts `log` to `log.1` (and `.1` to `.2` …, dropping the oldest) when it is over
/// `limit` bytes.
pub fn rotate(log: &Path, limit: u64, kept: usize) -> std::io::Result<()> {
    let big = std::fs::metadata(log).is_ok_and(|m| m.len() > limit);
    if !big || kept == 0 {
        return Ok(());
    }
    let numbered = |n: usize| {
        let mut name = log.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let _ = std::fs::remove_file(numbered(kept));
    for n in (1..kept).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(log, numbered(1))
}

/// The service's own logging: the configured level, to the log file.
fn init_file_logging(level: &str) -> std::io::Result<PathBuf> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vitale-bridge.log");
    rotate(&path, ROTATE_AT, KEPT)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let filter = tracing_subscriber::EnvFilter::try_new(crate::config::log_filter(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init();
    Ok(path)
}

/// Talks to the service control manager.
mod scm {
    use super::*;
    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    const KIND: ServiceType = ServiceType::OWN_PROCESS;

    pub fn install(account: &str, password: &str) -> Result<(), String> {
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .map_err(|e| format!("cannot open the service manager (run as an administrator): {e}"))?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot tell where this program is: {e}"))?;
        let info = ServiceInfo {
            name: SERVICE_NAME.into(),
            display_name: "vitale-bridge (Carte Vitale bridge)".into(),
            service_type: KIND,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe,
            launch_arguments: vec!["service".into(), "run".into()],
            dependencies: vec![],
            account_name: Some(account.into()),
            account_password: Some(OsString::from(password)),
        };
        let service = manager
            .create_service(&info, ServiceAccess::CHANGE_CONFIG)
            .map_err(|e| format!("cannot create the service: {e}"))?;
        service
            .set_description("Serves Carte Vitale identities to web practice software on 127.0.0.1")
            .map_err(|e| format!("cannot describe the service: {e}"))
    }

    pub fn uninstall() -> Result<(), String> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .map_err(|e| {
            format!("cannot open the service manager (run as an administrator): {e}")
        })?;
        let service = manager
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .map_err(|e| format!("no service {SERVICE_NAME}: {e}"))?;
        let running = service
            .query_status()
            .is_ok_and(|s| s.current_state != ServiceState::Stopped);
        if running {
            let _ = service.stop();
            // The daemon closes its clients with 1001 and joins its threads first.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while service
                .query_status()
                .is_ok_and(|s| s.current_state != ServiceState::Stopped)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        service
            .delete()
            .map_err(|e| format!("cannot delete the service: {e}"))
    }

    define_windows_service!(ffi_service_main, service_main);

    pub fn dispatch() -> Result<(), String> {
        service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
            format!("not started by the service manager ({e}): install it with `vitale-bridge service install`, start it with `sc start {SERVICE_NAME}`")
        })
    }

    fn status(state: ServiceState, code: u32) -> ServiceStatus {
        ServiceStatus {
            service_type: KIND,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: ServiceExitCode::Win32(code),
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<OsString>) {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                let _ = stop_tx.send(true);
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(handle) = service_control_handler::register(SERVICE_NAME, handler) else {
            return;
        };
        let _ = handle.set_service_status(status(ServiceState::Running, 0));
        let code = serve(&mut stop_rx);
        let _ = handle.set_service_status(status(ServiceState::Stopped, code));
    }

    /// The daemon until the service manager says stop: 0, or 1 on a fatal error.
    fn serve(stop: &mut tokio::sync::watch::Receiver<bool>) -> u32 {
        // The service takes no flags: the configuration files are its only input.
        let cfg = CommonArgs::default().load();
        let level = cfg
            .as_ref()
            .map_or("info", |c| c.log.level.as_str())
            .to_owned();
        let log = init_file_logging(&level);
        let cfg = match cfg {
            Ok(cfg) => cfg,
            Err(e) => {
                tracing::error!(error = %e, "configuration error");
                return 2;
            }
        };
        if log.is_err() {
            // Nowhere to log to: the service's exit code is all the manager shows.
            return 1;
        }
        let rt = match super::super::runtime() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the async runtime");
                return 1;
            }
        };
        tracing::info!("service starting");
        let result = rt.block_on(crate::daemon::run(
            cfg,
            crate::daemon::Mode::Run,
            async move {
                let _ = stop.wait_for(|stopping| *stopping).await;
                tracing::info!(signal = "SERVICE_CONTROL_STOP", "shutting down");
            },
        ));
        rt.shutdown_timeout(Duration::from_secs(1));
        match result {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "fatal");
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_log_is_shifted_and_the_oldest_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("vitale-bridge.log");
        for (name, body) in [
            ("vitale-bridge.log", "now"),
            ("vitale-bridge.log.1", "one"),
            ("vitale-bridge.log.2", "two"),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write");
        }
        // Under the limit: nothing moves.
        rotate(&log, 10, 2).expect("rotate");
        assert_eq!(std::fs::read_to_string(&log).expect("log"), "now");
        rotate(&log, 1, 2).expect("rotate");
        assert!(!log.exists());
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).expect(n);
        assert_eq!(read("vitale-bridge.log.1"), "now");
        assert_eq!(read("vitale-bridge.log.2"), "one");
        assert!(
            !dir.path().join("vitale-bridge.log.3").exists(),
            "only 2 kept"
        );
    }
}
