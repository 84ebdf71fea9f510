//! Configuration: TOML layering (defaults, /etc, user dir, --config, flags).
//!
//! OWNER: CLI/daemon helper. Skeleton only.
