//! Writes the man pages of the `vitale-bridge` command line, generated from its clap
//! definition, into a directory (default `target/man`): `vitale-bridge.1` plus one
//! page per subcommand (`vitale-bridge-run.1`, …). Used by `scripts/package`.
//!
//! ```sh
//! cargo run --example gen_man -- target/man
//! ```

use std::path::PathBuf;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/man"));
    std::fs::create_dir_all(&out)?;
    let cmd = vitale_bridge::cli::Cli::command();
    clap_mangen::generate_to(cmd, &out)?;
    let mut pages: Vec<String> = std::fs::read_dir(&out)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    for page in pages {
        println!("{}", out.join(page).display());
    }
    Ok(())
}
