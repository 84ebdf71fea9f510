//! Errors of the card-logic layer and their mapping to protocol reasons.

use super::ChannelError;
use crate::error::{ProtocolError, Reason};

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
}

impl CardError {
    /// The protocol reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            CardError::Channel(ChannelError::Removed) => Reason::CardRemoved,
            CardError::Channel(ChannelError::Reset) => Reason::CardRemoved,
            CardError::Channel(ChannelError::Mute) => Reason::CardMute,
            CardError::Channel(ChannelError::Busy) => Reason::ReaderBusy,
            CardError::Channel(ChannelError::ServiceDown(_)) => Reason::ServiceUnavailable,
            CardError::Channel(ChannelError::Transport(_)) => Reason::CardMute,
            CardError::Mute(_) => Reason::CardMute,
            CardError::Unsupported(_) => Reason::CardUnsupported,
            CardError::Malformed(_) => Reason::CardUnsupported,
            CardError::Status { .. } => Reason::CardUnsupported,
            CardError::UserRefused => Reason::UserRefused,
            CardError::Locked => Reason::CardLocked,
            CardError::SignUnsupported => Reason::SignUnsupported,
        }
    }
}

impl From<CardError> for ProtocolError {
    fn from(e: CardError) -> Self {
        ProtocolError::new(e.reason(), e.to_string())
    }
}
