//! vitale-bridge: French health-insurance identities (Carte Vitale, appli carte Vitale)
//! for web-based practice software, over a local WebSocket.
//!
//! # Layout
//!
//! The module tree is the architecture, bottom to top; each layer uses only itself and
//! the layers below it (`tests/layers.rs` reads the sources and fails on an upward
//! import):
//!
//! - [`codec`]: pure, I/O-free codecs (APDU and status words, BER-TLV, NIR, dates,
//!   ISO-8859-1; and the OS's socket tables the OS-user check reads: `/proc/net/tcp`
//!   lines, `NETLINK_SOCK_DIAG` messages, Windows TCP-table rows). Bounded, never
//!   panic on card or kernel bytes.
//! - [`card`]: the transport-independent [`card::CardChannel`] and the card logic that
//!   runs over it: card-type detection, the Carte Vitale 2 reader, phone profiles and
//!   their signature check, and the [`card::Identity`] model (redacted `Debug`).
//! - [`protocol`]: the wire, with no I/O and no state: stable error reasons (and the
//!   one mapping of card errors onto them), events and readers as clients see them,
//!   the JSON-RPC 2.0 envelope, and the zero-on-drop buffer identities travel in.
//! - [`sim`]: simulators shipped as product features: the virtual Carte Vitale model,
//!   the vpcd card, the virtual phone and the PN532 emulator. Uses card logic only.
//! - [`transport`]: hardware backends (PC/SC, libnfc) and the in-process simulated
//!   readers. Each runs blocking work on its own threads and reports through the
//!   [`transport::EventSink`] seam it owns ([`transport::Update`], and
//!   [`transport::ReaderHandle`] for card work); it never knows who listens.
//! - [`bus`]: implements the sink. `publish` does O(1) work under one lock: the pure
//!   registry (`bus::registry`, a function of updates, behind `subscribe` snapshots)
//!   says which events an update makes, the hub numbers them and hands them to the
//!   fan-out (`bus::fanout`, its own task), which encodes each once per distinct view
//!   (full, redacted, per-origin scopes) into one shared WebSocket frame. Also the card
//!   operations and the identity-free counters.
//! - [`server`]: the local WebSocket/HTTP server (handshake rules, limits, sessions):
//!   the OS-user check on the client's socket first (`server::owner`, `server::users`),
//!   then Host and Origin, with handshake slots that evict the oldest silent
//!   connection; the Prometheus rendering of `/metrics`.
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
pub mod protocol;
pub mod server;
pub mod sim;
pub mod transport;
