//! The seam between backends and whatever consumes their reports: backends own the
//! vocabulary ([`Update`]) and the trait ([`EventSink`]); the bus implements it. A
//! backend thread never learns who listens, so nothing above this layer is imported
//! here.

use std::sync::Arc;
use std::time::Duration;

use crate::card::{CardType, Identity};
use crate::protocol::{ProtocolError, ReaderKind, Service, ServiceState, Signature};

use super::handle::ReaderHandle;

/// Where a backend reports state changes.
///
/// `publish` is called from blocking backend threads, sometimes while a card is
/// held: an implementation must return promptly and never wait for a consumer.
pub trait EventSink: Send + Sync {
    /// Records one state change; the implementation orders and distributes it.
    fn publish(&self, update: Update);
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn publish(&self, update: Update) {
        (**self).publish(update);
    }
}

/// A state change reported by a backend.
#[derive(Debug)]
pub enum Update {
    /// A reader appeared; `handle` reaches its backend thread for card work.
    ReaderAdded {
        /// Stable id.
        id: String,
        /// Human name.
        name: String,
        /// Attachment.
        kind: ReaderKind,
        /// Contactless.
        contactless: bool,
        /// Command channel, if the backend accepts card work.
        handle: Option<ReaderHandle>,
    },
    /// A reader went away (a present card is removed first).
    ReaderRemoved {
        /// Reader id.
        reader: String,
    },
    /// A card arrived (an earlier card still registered is removed first).
    CardInserted {
        /// Reader id.
        reader: String,
        /// Raw ATR.
        atr: Vec<u8>,
        /// Detected type.
        card_type: CardType,
    },
    /// A read progressed.
    CardReading {
        /// Reader id.
        reader: String,
        /// Step from 1.
        step: u32,
        /// Total.
        total: u32,
    },
    /// A read succeeded (ignored if the card has gone meanwhile).
    IdentityRead {
        /// Reader id.
        reader: String,
        /// The identity.
        identity: Arc<Identity>,
        /// How long the read took on the card (for the read-duration metric).
        elapsed: Duration,
    },
    /// A read failed (ignored if the card has gone meanwhile).
    IdentityError {
        /// Reader id.
        reader: String,
        /// Why.
        error: ProtocolError,
    },
    /// The card went away; its identity is dropped.
    CardRemoved {
        /// Reader id.
        reader: String,
    },
    /// A phone signature was produced and verified.
    SignatureCompleted {
        /// The verified signature.
        signature: Arc<Signature>,
    },
    /// A configured NFC device is being opened: listed in `status` as `opening`,
    /// with no event (its `service.changed` says up or down once its thread knows).
    NfcOpening {
        /// The device's connstring.
        connstring: String,
    },
    /// A service changed state. For NFC, `detail` is the device connstring.
    ServiceChanged {
        /// Which service.
        service: Service,
        /// New state.
        state: ServiceState,
        /// Connstring (NFC) or explanation (PC/SC).
        detail: String,
    },
}
