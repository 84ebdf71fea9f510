//! Carte Vitale 2 reader: both public read paths of cards.md §1.
//!
//! OWNER: codec/Vitale helper. Skeleton only.

use super::{CardChannel, CardError, Identity, ReadContext};

/// Reads a Carte Vitale 2 (direct SFI path first, then the pointer map).
pub fn read(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    let _ = (channel, ctx, progress);
    Err(CardError::Unsupported("not implemented yet".into()))
}
