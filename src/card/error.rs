//! Errors of the card-logic layer. Their protocol reasons are assigned one layer up,
//! in [`crate::protocol::error`], so card logic never depends on the wire.

use super::ChannelError;

/// Why reading or signing failed at the card-logic level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The transport failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The card is recognised but not readable here; the text says why.
    #[error("{0}")]
    Unsupported(String),
    /// The card gave no usable answer (less than a status word); the text says to
    /// what.
    #[error("{0}")]
    Mute(String),
    /// The card answered with data that breaks the format (bad TLV, bounds, loops).
    #[error("malformed card data: {0}")]
    Malformed(String),
    /// The card answered an unexpected status word to a command it must support.
    #[error("card answered {sw:04X} to {command}")]
    Status {
        /// What was being done (no identity data).
        command: &'static str,
        /// The status word.
        sw: u16,
    },
    /// The phone's holder refused (`69 85`).
    #[error("the holder refused on the phone")]
    UserRefused,
    /// The phone app is locked (`69 82`).
    #[error("the phone app is locked")]
    Locked,
    /// Signing is not something this card does.
    #[error("this card cannot sign")]
    SignUnsupported,
    /// A phone's signature does not verify; the text says which check failed.
    #[error("the phone's signature does not verify: {0}")]
    Verification(&'static str),
}
