//! Protocol-level error reasons (product.md §4.4): the stable, machine-readable edge
//! that every layer's typed error maps onto.

use serde::{Deserialize, Serialize};

use crate::card::{CardError, ChannelError};

/// A stable reason string sent to clients in `error.data.reason` and `identity.error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No reader with that id.
    ReaderNotFound,
    /// The reader has no card or phone.
    NoCard,
    /// The card or phone went away during the operation.
    CardRemoved,
    /// The card is recognised but cannot be read by this daemon (Vitale 1, CPS, unknown).
    CardUnsupported,
    /// The card does not answer or answers nonsense.
    CardMute,
    /// The reader is held by another application or operation.
    ReaderBusy,
    /// PC/SC or NFC service is down.
    ServiceUnavailable,
    /// The operation did not complete in time.
    Timeout,
    /// The phone's holder refused.
    UserRefused,
    /// The connection may not do this.
    NotPermitted,
    /// Too many requests on this connection.
    RateLimited,
    /// The card cannot sign (a Carte Vitale).
    SignUnsupported,
    /// The phone app is locked.
    CardLocked,
    /// A signature did not verify against the phone's key.
    VerificationFailed,
    /// A bug or unexpected failure inside the daemon.
    Internal,
}

impl Reason {
    /// Whether retrying the same request later can succeed without user action
    /// beyond waiting.
    pub fn retriable(self) -> bool {
        matches!(
            self,
            Reason::CardRemoved
                | Reason::CardMute
                | Reason::ReaderBusy
                | Reason::ServiceUnavailable
                | Reason::Timeout
                | Reason::RateLimited
                | Reason::UserRefused
        )
    }

    /// The wire spelling, e.g. `READER_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReaderNotFound => "READER_NOT_FOUND",
            Reason::NoCard => "NO_CARD",
            Reason::CardRemoved => "CARD_REMOVED",
            Reason::CardUnsupported => "CARD_UNSUPPORTED",
            Reason::CardMute => "CARD_MUTE",
            Reason::ReaderBusy => "READER_BUSY",
            Reason::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Reason::Timeout => "TIMEOUT",
            Reason::UserRefused => "USER_REFUSED",
            Reason::NotPermitted => "NOT_PERMITTED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::SignUnsupported => "SIGN_UNSUPPORTED",
            Reason::CardLocked => "CARD_LOCKED",
            Reason::VerificationFailed => "VERIFICATION_FAILED",
            Reason::Internal => "INTERNAL",
        }
    }

    /// Every reason, for docs and exhaustive tests.
    pub const ALL: [Reason; 15] = [
        Reason::ReaderNotFound,
        Reason::NoCard,
        Reason::CardRemoved,
        Reason::CardUnsupported,
        Reason::CardMute,
        Reason::ReaderBusy,
        Reason::ServiceUnavailable,
        Reason::Timeout,
        Reason::UserRefused,
        Reason::NotPermitted,
        Reason::RateLimited,
        Reason::SignUnsupported,
        Reason::CardLocked,
        Reason::VerificationFailed,
        Reason::Internal,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An application error as it crosses the protocol edge: a reason and a human message.
///
/// The message must never contain identity data (names, NIR, INS, birth dates).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ProtocolError {
    /// Stable reason.
    pub reason: Reason,
    /// Human explanation, free of identity data.
    pub message: String,
}

impl ProtocolError {
    /// Builds an error from a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl CardError {
    /// The protocol reason for this error: the one place card failures meet the
    /// wire's stable reasons.
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
            CardError::Verification(_) => Reason::VerificationFailed,
        }
    }
}

impl From<CardError> for ProtocolError {
    fn from(e: CardError) -> Self {
        ProtocolError::new(e.reason(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_error_has_its_reason() {
        use crate::card::{CardError, ChannelError};
        let cases = [
            (
                CardError::Channel(ChannelError::Removed),
                Reason::CardRemoved,
            ),
            (CardError::Channel(ChannelError::Reset), Reason::CardRemoved),
            (CardError::Channel(ChannelError::Mute), Reason::CardMute),
            (CardError::Channel(ChannelError::Busy), Reason::ReaderBusy),
            (
                CardError::Channel(ChannelError::ServiceDown("x".into())),
                Reason::ServiceUnavailable,
            ),
            (
                CardError::Channel(ChannelError::Transport("x".into())),
                Reason::CardMute,
            ),
            (CardError::Mute("x".into()), Reason::CardMute),
            (CardError::Unsupported("x".into()), Reason::CardUnsupported),
            (CardError::Malformed("x".into()), Reason::CardUnsupported),
            (
                CardError::Status {
                    command: "SELECT",
                    sw: 0x6A82,
                },
                Reason::CardUnsupported,
            ),
            (CardError::UserRefused, Reason::UserRefused),
            (CardError::Locked, Reason::CardLocked),
            (CardError::SignUnsupported, Reason::SignUnsupported),
            (CardError::Verification("x"), Reason::VerificationFailed),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error:?}");
            let message = error.to_string();
            assert_eq!(
                ProtocolError::from(error),
                ProtocolError::new(reason, message)
            );
        }
    }
}
