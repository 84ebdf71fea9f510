//! Card-type detection: ATR patterns of cards.md §1 as hints, confirmed by SELECT.
//!
//! OWNER: codec/Vitale helper (the phone AID probe is shared with the NFC helper via
//! [`crate::card::phone::probe`]). Skeleton only.

use super::{CardChannel, CardError, CardType, ReadContext};

/// See [`crate::card::detect`].
pub fn detect(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<CardType, CardError> {
    let _ = (channel, ctx);
    Ok(CardType::Unknown)
}
