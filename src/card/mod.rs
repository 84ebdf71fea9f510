//! Card logic over the transport-independent [`CardChannel`]: detection, the Carte
//! Vitale 2 reader, phone profiles and the identity model.
//!
//! Backends call three entry points, whatever their transport: [`detect()`] when a card
//! arrives, [`read_identity`] to read it and [`sign`] for phones.

pub mod apdu;
pub mod channel;
pub mod detect;
pub mod error;
pub mod identity;
pub mod phone;
pub mod vitale;

pub use channel::{CardChannel, Cause, ChannelError};
pub use error::CardError;
pub use identity::{ApcvInfo, Beneficiary, Environment, Identity, Ins, Sensitive, Source};

use serde::{Deserialize, Serialize};

/// What kind of card or phone sits in a reader (product.md §4.3 `cardType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardType {
    /// Carte Vitale 2: readable.
    Vitale2,
    /// Carte Vitale 1: recognised, not readable (no public parser).
    Vitale1,
    /// Carte de Professionnel de Santé: recognised and left alone.
    Cps,
    /// A phone answering the configured phone profile.
    Apcv,
    /// Anything else.
    Unknown,
}

/// What card logic needs to know beyond the channel.
#[derive(Debug, Clone)]
pub struct ReadContext {
    /// Reader id to stamp on the identity (`pcsc:…`, `nfc:…`, `sim:…`).
    pub reader: String,
    /// The phone profile AID (`apcv.aid`), used to recognise phones.
    pub apcv_aid: Vec<u8>,
    /// What the source itself says of its identities, over whatever the card data
    /// says: the simulated readers say `Demo`, so practice software can never take a
    /// demo patient for a real one. `None` for hardware.
    pub environment: Option<Environment>,
}

/// Identifies the card behind `channel`: ATR hint, confirmed by SELECT where the ATR
/// alone is ambiguous (cards.md §1), and for contactless targets a SELECT of the
/// phone profile AID.
pub fn detect(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<CardType, CardError> {
    detect::detect(channel, ctx)
}

/// Reads the identity of a detected card or phone. `progress(step, total)` is called
/// as the read advances (it feeds `card.reading` events).
pub fn read_identity(
    channel: &mut dyn CardChannel,
    card_type: CardType,
    ctx: &ReadContext,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    let mut identity = match card_type {
        CardType::Vitale2 => vitale::read(channel, ctx, progress),
        CardType::Apcv => phone::read(channel, ctx, progress),
        CardType::Vitale1 => Err(CardError::Unsupported(
            "Carte Vitale 1: no public reading method exists; ask the patient for a Carte Vitale 2 or the appli carte Vitale".into(),
        )),
        CardType::Cps => Err(CardError::Unsupported(
            "this is a CPS (health professional card), not a patient card".into(),
        )),
        CardType::Unknown => Err(CardError::Unsupported(
            "unknown card: neither a Carte Vitale nor a phone profile answered".into(),
        )),
    }?;
    if let Some(environment) = ctx.environment {
        identity.environment = environment;
    }
    Ok(identity)
}

/// A phone's answer to a signature request.
#[derive(Debug, Clone)]
pub struct SignOutcome {
    /// SEC1 uncompressed public key (65 bytes).
    pub public_key: Vec<u8>,
    /// `r ‖ s` (64 bytes), not yet verified.
    pub signature: Vec<u8>,
}

/// Asks a phone to sign a 32-byte origin-bound digest (product.md §4.3).
pub fn sign(
    channel: &mut dyn CardChannel,
    card_type: CardType,
    ctx: &ReadContext,
    digest: &[u8; 32],
) -> Result<SignOutcome, CardError> {
    match card_type {
        CardType::Apcv => phone::sign(channel, ctx, digest),
        _ => Err(CardError::SignUnsupported),
    }
}
