//! `sim vpcd`: the virtual Carte Vitale speaking vsmartcard's vpcd wire protocol.
//!
//! OWNER: PC/SC helper. Skeleton only: `VpcdArgs` is embedded in the CLI's `sim vpcd`.

use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `vitale-bridge sim vpcd`.
#[derive(Debug, Clone, clap::Args)]
pub struct VpcdArgs {
    /// Card description file (TOML).
    #[arg(long)]
    pub card: PathBuf,
    /// vpcd host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// vpcd port (35963 is the first slot, 35964 the second).
    #[arg(long, default_value_t = 35963)]
    pub port: u16,
}

/// Runs the virtual card until interrupted.
pub fn run(args: VpcdArgs) -> ExitCode {
    let _ = args;
    eprintln!("sim vpcd: not built yet");
    ExitCode::from(1)
}
