//! `vitale-bridge` binary: all logic lives in the library; see [`vitale_bridge::cli`].

fn main() -> std::process::ExitCode {
    vitale_bridge::cli::main()
}
