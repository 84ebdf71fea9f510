//! The wire protocol, shared by every layer above the card logic: stable error
//! reasons, the event and reader types as clients see them, the JSON-RPC 2.0
//! envelope, and the zero-on-drop buffer serialized identities travel in.
//!
//! Nothing here does I/O or holds state; the bus produces these values and the
//! server puts them on the wire.

pub mod error;
pub mod event;
pub mod rpc;
pub mod wiped;

pub use error::{ProtocolError, Reason};
pub use event::{
    Card, Event, EventKind, Reader, ReaderKind, ReaderState, Service, ServiceState, Signature,
};
pub use wiped::WipedJson;
