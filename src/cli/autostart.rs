//! `vitale-bridge autostart enable|disable|status` (Windows): starts the daemon at
//! the user's logon, as that user — the default on a reception workstation, and what
//! the OS-user check expects (the receptionist's own browser connects).
//!
//! It is one value under `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`. The
//! MSI writes the same value under HKLM for every user instead. The daemon is a
//! console program: Windows would give it a console window at logon, so the value
//! starts it minimised (`cmd /c start /min`); closing that window stops it cleanly
//! (CTRL_CLOSE_EVENT: clients get 1001).

use std::process::ExitCode;

use super::EXIT_FAILURE;

/// What to do with the logon entry.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum AutostartCommand {
    /// Start `vitale-bridge run` at this user's logon.
    Enable,
    /// Remove the logon entry.
    Disable,
    /// Print the logon entry, if any.
    Status,
}

/// The registry key and value name (also used by packaging/windows/vitale-bridge.wxs).
pub const RUN_KEY: &str = r"Software\Microsoft\Windows\CurrentVersion\Run";
/// The value's name under [`RUN_KEY`].
pub const VALUE: &str = "vitale-bridge";

/// The command line the logon entry runs for `exe`.
pub fn command_line(exe: &str) -> String {
    format!(r#"cmd.exe /d /c start "vitale-bridge" /min "{exe}" run"#)
}

/// `vitale-bridge autostart …`.
pub fn run(cmd: AutostartCommand) -> ExitCode {
    let result = match cmd {
        AutostartCommand::Enable => std::env::current_exe()
            .map_err(|e| format!("cannot tell where this program is: {e}"))
            .and_then(|exe| {
                let line = command_line(&exe.display().to_string());
                registry::set(&line).map(|()| line)
            })
            .map(|line| println!("autostart enabled: HKCU\\{RUN_KEY}\\{VALUE} = {line}")),
        AutostartCommand::Disable => registry::delete().map(|existed| {
            if existed {
                println!("autostart disabled");
            } else {
                println!("autostart was not enabled");
            }
        }),
        AutostartCommand::Status => registry::get().map(|v| match v {
            Some(line) => println!("enabled: {line}"),
            None => println!("disabled"),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vitale-bridge autostart: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The HKCU Run value through the registry API.
#[allow(unsafe_code)]
mod registry {
    use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_SUCCESS};
    use windows_sys::Win32::System::Registry::{
        HKEY_CURRENT_USER, REG_SZ, RRF_RT_REG_SZ, RegDeleteKeyValueW, RegGetValueW, RegSetKeyValueW,
    };

    use super::{RUN_KEY, VALUE};

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn os_error(call: &str, rc: u32) -> String {
        format!(
            "{call} failed: {}",
            std::io::Error::from_raw_os_error(rc as i32)
        )
    }

    pub fn set(line: &str) -> Result<(), String> {
        let (key, name, data) = (wide(RUN_KEY), wide(VALUE), wide(line));
        let bytes =
            u32::try_from(data.len() * 2).map_err(|_| "command line too long".to_owned())?;
        // SAFETY: all three are NUL-terminated UTF-16 buffers alive for the call;
        // `bytes` is the data's size including its terminator.
        let rc = unsafe {
            RegSetKeyValueW(
                HKEY_CURRENT_USER,
                key.as_ptr(),
                name.as_ptr(),
                REG_SZ,
                data.as_ptr().cast(),
                bytes,
            )
        };
        if rc == ERROR_SUCCESS {
            Ok(())
        } else {
            Err(os_error("RegSetKeyValueW", rc))
        }
    }

    /// Whether there was a value to delete.
    pub fn delete() -> Result<bool, String> {
        let (key, name) = (wide(RUN_KEY), wide(VALUE));
        // SAFETY: NUL-terminated UTF-16 buffers alive for the call.
        let rc = unsafe { RegDeleteKeyValueW(HKEY_CURRENT_USER, key.as_ptr(), name.as_ptr()) };
        match rc {
            ERROR_SUCCESS => Ok(true),
            ERROR_FILE_NOT_FOUND => Ok(false),
            other => Err(os_error("RegDeleteKeyValueW", other)),
        }
    }

    pub fn get() -> Result<Option<String>, String> {
        let (key, name) = (wide(RUN_KEY), wide(VALUE));
        let mut buf = vec![0u16; 2048];
        let mut bytes = u32::try_from(buf.len() * 2).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `bytes` bytes; the key and name are NUL-terminated
        // UTF-16 buffers alive for the call; RRF_RT_REG_SZ makes the API terminate
        // the string it writes.
        let rc = unsafe {
            RegGetValueW(
                HKEY_CURRENT_USER,
                key.as_ptr(),
                name.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        match rc {
            ERROR_SUCCESS => {
                let chars = (bytes as usize / 2).min(buf.len());
                let text = String::from_utf16_lossy(&buf[..chars]);
                Ok(Some(text.trim_end_matches('\0').to_owned()))
            }
            ERROR_FILE_NOT_FOUND => Ok(None),
            other => Err(os_error("RegGetValueW", other)),
        }
    }
}
