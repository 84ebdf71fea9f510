//! The command line (product.md §2).
//!
//! OWNER: CLI/daemon helper. Skeleton only.

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
