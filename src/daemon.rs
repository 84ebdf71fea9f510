//! Wires backends, the hub and the server together under one shutdown tree.
//!
//! OWNER: CLI/daemon helper. Skeleton only.
