//! Phone profiles (cards.md §3–4): the AID comes from config, the commands from the
//! profile module. `reference-v1` is the open profile shipped with the project.
//!
//! OWNER: NFC helper. Skeleton only.

use super::{CardChannel, CardError, Identity, ReadContext, SignOutcome};

/// Whether the target answers a SELECT of the configured phone AID.
pub fn probe(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<bool, CardError> {
    let _ = (channel, ctx);
    Ok(false)
}

/// Reads the identity from a phone.
pub fn read(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    let _ = (channel, ctx, progress);
    Err(CardError::Unsupported(
        "phone profile not implemented yet".into(),
    ))
}

/// Asks the phone to sign a digest.
pub fn sign(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    digest: &[u8; 32],
) -> Result<SignOutcome, CardError> {
    let _ = (channel, ctx, digest);
    Err(CardError::SignUnsupported)
}

/// Checks an ES256 signature (`r ‖ s`) over the 64-byte origin-bound `message` with a
/// SEC1 public key; anything else is `VERIFICATION_FAILED`.
pub fn verify(
    public_key: &[u8],
    message: &[u8; 64],
    signature: &[u8],
) -> Result<(), crate::error::ProtocolError> {
    let _ = (public_key, message, signature);
    Err(crate::error::ProtocolError::new(
        crate::error::Reason::VerificationFailed,
        "not implemented yet",
    ))
}
