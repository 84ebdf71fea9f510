//! APDU exchange above the transport: T=0 `61XX` (GET RESPONSE) and `6CXX` (resend
//! with Le) handled once, bounded, for every channel (cards.md §1 "T=0 behaviour").
//!
//! OWNER: codec/Vitale helper. Skeleton only.

use super::{CardChannel, CardError};
use crate::codec::apdu::Response;

/// Sends `capdu` and follows `61XX`/`6CXX` until a final status, within the bounds of
/// cards.md (≤ 16 rounds, ≤ 64 KiB collected).
pub fn transceive(channel: &mut dyn CardChannel, capdu: &[u8]) -> Result<Response, CardError> {
    let _ = (channel, capdu);
    Err(CardError::Unsupported("not implemented yet".into()))
}
