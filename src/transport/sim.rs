//! In-process simulated readers for demo mode: virtual cards and phones that run the
//! real card logic through the same channel and worker as hardware.
//!
//! OWNER: CLI/daemon helper. Skeleton only.
