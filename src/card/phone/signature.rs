//! Verification of phone signatures (product.md §4.3): ES256 over the 64-byte
//! origin-bound message, i.e. ECDSA P-256 over its SHA-256, which is the digest the
//! phone signed as a prehash.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::card::CardError;

/// The origin-bound message and digest of product.md §4.3:
/// `message = SHA-256(origin) ‖ SHA-256(challenge)`, `digest = SHA-256(message)`.
pub fn origin_binding(origin: &str, challenge: &[u8]) -> ([u8; 64], [u8; 32]) {
    let mut message = [0u8; 64];
    message[..32].copy_from_slice(&Sha256::digest(origin.as_bytes()));
    message[32..].copy_from_slice(&Sha256::digest(challenge));
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&Sha256::digest(message));
    (message, digest)
}

/// Checks an ES256 signature (`r ‖ s`) over the 64-byte origin-bound `message` with a
/// SEC1 uncompressed public key; anything else is `VERIFICATION_FAILED`.
pub fn verify(public_key: &[u8], message: &[u8; 64], signature: &[u8]) -> Result<(), CardError> {
    let fail = CardError::Verification;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_depends_on_origin_and_challenge() {
        let (m1, d1) = origin_binding("https://a.example", b"0123456789abcdef0123456789abcdef");
        let (_, d2) = origin_binding("https://b.example", b"0123456789abcdef0123456789abcdef");
        let (_, d3) = origin_binding("https://a.example", b"0123456789abcdef0123456789abcdeF");
        assert_ne!(d1, d2);
        assert_ne!(d1, d3);
        let direct: [u8; 32] = Sha256::digest(m1).into();
        assert_eq!(d1, direct);
        let origin_hash: [u8; 32] = Sha256::digest(b"https://a.example").into();
        assert_eq!(&m1[..32], &origin_hash);
    }
}
