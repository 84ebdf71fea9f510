//! The command line (product.md §2): parsing, logging, and one function per command.
//!
//! Exit codes: 0 normal stop, 2 bad usage or configuration, 1 any other failure.

#[cfg(windows)]
mod autostart;
mod client;
mod doctor;
mod read;
#[cfg(windows)]
mod service;
mod term;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, Layer, Sources};
use crate::daemon::{self, Mode};

/// Exit code for bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for other fatal errors.
pub const EXIT_FAILURE: u8 = 1;

/// `vitale-bridge`: Carte Vitale and appli carte Vitale identities for web practice
/// software, over a local WebSocket.
#[derive(Debug, Parser)]
#[command(name = "vitale-bridge", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: `run`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options shared by every command.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options shared by every command; they override the configuration files.
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// Configuration file, read after the machine-wide file (/etc/vitale-bridge/ or
    /// %ProgramData%\vitale-bridge\config.toml) and the user's.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Loopback address and port (default 127.0.0.1:24880; port 0 picks a free one).
    #[arg(long, global = true, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Exact web origin allowed to connect (repeatable; replaces `allowed_origins`).
    #[arg(long = "allow-origin", global = true, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// libnfc device connstring (repeatable; replaces `nfc.devices`).
    #[arg(long = "nfc", global = true, value_name = "CONNSTRING")]
    pub nfc: Vec<String>,
    /// Do not use PC/SC readers.
    #[arg(long, global = true)]
    pub no_pcsc: bool,
    /// Do not use NFC devices.
    #[arg(long, global = true)]
    pub no_nfc: bool,
    /// Log level (error, warn, info, debug, trace) or a tracing filter directive.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Time between demo steps in milliseconds (tests use small values).
    #[arg(long, global = true, value_name = "MS", hide = true)]
    pub demo_interval_ms: Option<u64>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: PC/SC readers, NFC devices and the WebSocket server.
    Run,
    /// The daemon with simulated readers only (no hardware, no pcscd).
    Demo,
    /// List PC/SC readers and NFC devices, then exit.
    Readers,
    /// Read the card or phone in one reader once and print the identity.
    Read(read::ReadArgs),
    /// Diagnose the installation: pcscd, readers, NFC, port, configuration.
    Doctor,
    /// Connect to a running daemon as a native client, send frames, print what it sends.
    Client(client::ClientArgs),
    /// Start the daemon at this user's logon (Windows; on Linux: systemctl --user).
    #[cfg(windows)]
    #[command(subcommand)]
    Autostart(autostart::AutostartCommand),
    /// The daemon as a Windows service, for single-account kiosks.
    #[cfg(windows)]
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Simulators for integration tests and CI.
    #[command(subcommand)]
    Sim(SimCommand),
}

/// `vitale-bridge sim …`.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Virtual Carte Vitale connecting to vsmartcard's vpcd.
    Vpcd(crate::sim::vpcd::VpcdArgs),
    /// PN532 emulator on a pseudo-terminal with a virtual phone.
    #[cfg(unix)]
    Pn532(crate::sim::pn532::Pn532Args),
}

impl CommonArgs {
    /// The flags as the last configuration layer.
    pub fn layer(&self) -> Layer {
        let mut layer = Layer::default();
        if let Some(listen) = &self.listen {
            layer.set("listen", listen.as_str());
        }
        if !self.allow_origin.is_empty() {
            layer.set("allowed_origins", self.allow_origin.clone());
        }
        if !self.nfc.is_empty() {
            layer.set("nfc.devices", self.nfc.clone());
        }
        if self.no_pcsc {
            layer.set("pcsc.enabled", false);
        }
        if self.no_nfc {
            layer.set("nfc.enabled", false);
        }
        if let Some(level) = &self.log_level {
            layer.set("log.level", level.as_str());
        }
        if let Some(ms) = self.demo_interval_ms {
            layer.set("demo.interval_ms", i64::try_from(ms).unwrap_or(i64::MAX));
        }
        layer
    }

    /// Loads the layered configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Sources::standard(self.config.clone())
            .load(self.layer())
            .map(|(cfg, _)| cfg)
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let command = cli.command.unwrap_or(Command::Run);

    #[cfg(windows)]
    if let Command::Autostart(cmd) = command {
        return autostart::run(cmd);
    }
    #[cfg(windows)]
    if let Command::Service(cmd) = command {
        return service::run(cmd);
    }
    // The simulators have their own options and no daemon configuration.
    if let Command::Sim(sim) = command {
        init_logging(cli.common.log_level.as_deref().unwrap_or("info"));
        return match sim {
            SimCommand::Vpcd(args) => {
                let (stop, stopper) = crate::sim::vpcd::Stop::new();
                if let Err(e) = daemon::on_shutdown_signal(move || stopper.stop()) {
                    tracing::warn!(error = %e, "no signal handling");
                }
                crate::sim::vpcd::run(args, stop)
            }
            #[cfg(unix)]
            SimCommand::Pn532(args) => crate::sim::pn532::run(args),
        };
    }

    let loaded = cli.common.load();
    if let Command::Doctor = command {
        // doctor reports a bad configuration as one of its findings.
        init_logging(loaded.as_ref().map_or("warn", |c| c.log.level.as_str()));
        return doctor::run(&cli.common, loaded);
    }
    let cfg = match loaded {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("vitale-bridge: configuration error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(&cfg.log.level);

    match command {
        Command::Run => serve(cfg, Mode::Run),
        Command::Demo => serve(cfg, Mode::Demo),
        Command::Readers => read::readers(&cfg),
        Command::Read(args) => read::run(&cfg, &args),
        Command::Client(args) => client::run(&cfg, &args),
        Command::Doctor | Command::Sim(_) => ExitCode::SUCCESS,
        #[cfg(windows)]
        Command::Autostart(_) | Command::Service(_) => ExitCode::SUCCESS,
    }
}

/// Logs to stderr (journald picks them up under systemd); never identity data.
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(config::log_filter(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(term::stderr_is_tty())
        .try_init();
}

/// A tokio runtime for the commands that need one.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vb-async")
        .enable_all()
        .build()
}

fn serve(cfg: Config, mode: Mode) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vitale-bridge: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = rt.block_on(async move {
        let shutdown = daemon::shutdown_signal().map_err(daemon::DaemonError::Server)?;
        daemon::run(cfg, mode, shutdown).await
    });
    // Backend threads are joined; don't wait for stray blocking tasks.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("vitale-bridge: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_the_last_layer() {
        let cli = Cli::try_parse_from([
            "vitale-bridge",
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            "https://a.example",
            "--allow-origin",
            "https://b.example",
            "--no-pcsc",
            "--log-level",
            "trace",
        ])
        .expect("parses");
        assert!(matches!(cli.command, Some(Command::Demo)));
        let mut cfg = Config::default();
        cfg.apply(cli.common.layer(), "command line")
            .expect("valid");
        assert_eq!(cfg.listen.port(), 0);
        assert_eq!(cfg.allowed_origins.len(), 2);
        assert!(!cfg.pcsc.enabled);
        assert!(cfg.nfc.enabled);
        assert_eq!(cfg.log.level, "trace");
    }

    #[test]
    fn bad_flag_values_are_config_errors() {
        let cli = Cli::try_parse_from(["vitale-bridge", "--listen", "0.0.0.0:1"]).expect("parses");
        let mut cfg = Config::default();
        let e = cfg
            .apply(cli.common.layer(), "command line")
            .expect_err("not loopback");
        assert_eq!(e.key.as_deref(), Some("listen"));
    }

    #[test]
    fn no_command_means_run() {
        let cli = Cli::try_parse_from(["vitale-bridge", "--no-nfc"]).expect("parses");
        assert!(cli.command.is_none());
        assert!(cli.common.no_nfc);
    }
}
