//! Verification of phone signatures (product.md §4.3): ES256 over the 64-byte
//! origin-bound message, i.e. ECDSA P-256 over its SHA-256, which is the digest the
//! phone signed as a prehash.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};

use crate::error::{ProtocolError, Reason};

/// Checks an ES256 signature (`r ‖ s`) over the 64-byte origin-bound `message` with a
/// SEC1 uncompressed public key; anything else is `VERIFICATION_FAILED`.
pub fn verify(
    public_key: &[u8],
    message: &[u8; 64],
    signature: &[u8],
) -> Result<(), ProtocolError> {
    let fail = |why: &str| {
        ProtocolError::new(
            Reason::VerificationFailed,
            format!("the phone's signature does not verify: {why}"),
        )
    };
    if public_key.len() != 65 || public_key.first() != Some(&0x04) {
        return Err(fail("public key is not a SEC1 uncompressed P-256 point"));
    }
    let key = VerifyingKey::from_sec1_bytes(public_key)
        .map_err(|_| fail("public key is not on the P-256 curve"))?;
    let signature =
        Signature::from_slice(signature).map_err(|_| fail("signature is not r ‖ s of 64 bytes"))?;
    key.verify(message, &signature)
        .map_err(|_| fail("signature does not match the origin-bound digest"))
}
