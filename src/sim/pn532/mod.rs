//! `sim pn532`: a PN532 emulator on a pseudo-terminal, with a virtual phone.
//!
//! OWNER: NFC helper. Skeleton only: `Pn532Args` is embedded in the CLI's `sim pn532`.

pub mod chip;
pub mod frame;

use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `vitale-bridge sim pn532`.
#[derive(Debug, Clone, clap::Args)]
pub struct Pn532Args {
    /// Where to symlink the pseudo-terminal (libnfc: `pn532_uart:PATH`).
    #[arg(long)]
    pub link: PathBuf,
    /// Phone description file (TOML).
    #[arg(long)]
    pub phone: PathBuf,
}

/// Runs the emulator until interrupted.
pub fn run(args: Pn532Args) -> ExitCode {
    let _ = args;
    eprintln!("sim pn532: not built yet");
    ExitCode::from(1)
}
