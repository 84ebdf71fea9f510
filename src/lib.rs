//! vitale-bridge: French health-insurance identities (Carte Vitale, appli carte Vitale)
//! for web-based practice software, over a local WebSocket.
//!
//! # Layout
//!
//! The module tree is the architecture, bottom to top:
//!
//! - [`codec`]: pure, I/O-free codecs (APDU and status words, BER-TLV, NIR, dates,
//!   ISO-8859-1). Bounded, never panic on card bytes.
//! - [`card`]: the transport-independent [`card::CardChannel`] and the card logic that
//!   runs over it: card-type detection, the Carte Vitale 2 reader, phone profiles,
//!   and the [`card::Identity`] model (redacted `Debug`).
//! - [`transport`]: hardware backends (PC/SC, libnfc) and the in-process simulated
//!   readers. Each runs blocking work on its own threads and reports to the bus.
//! - [`sim`]: simulators shipped as product features: the virtual Carte Vitale model,
//!   the vpcd card, the virtual phone and the PN532 emulator.
//! - [`bus`]: the event bus and reader registry: one ordered event sequence, bounded
//!   fan-out with one encoding per distinct view (full, redacted, per-origin scopes;
//!   wiped buffers), the state behind `subscribe` snapshots, the card operations, and
//!   the identity-free counters behind the opt-in `/metrics`.
//! - [`server`]: the local WebSocket/HTTP server (JSON-RPC 2.0, handshake rules, limits):
//!   the OS-user check on the client's socket first (`server::owner`, `server::users`),
//!   then Host and Origin, with handshake slots that evict the oldest silent connection.
//! - [`config`] and [`cli`]: configuration layering and the command line.
//! - [`daemon`]: wires backends, bus and server together with one shutdown tree.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bus;
pub mod card;
pub mod cli;
pub mod codec;
pub mod config;
pub mod daemon;
pub mod error;
pub mod server;
pub mod sim;
pub mod transport;
