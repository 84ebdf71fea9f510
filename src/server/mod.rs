//! The local WebSocket/HTTP server: handshake rules, JSON-RPC 2.0, limits, `/health`,
//! the status page.
//!
//! OWNER: server helper. Skeleton only.
