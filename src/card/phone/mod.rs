//! Phone profiles (cards.md §3–4): the AID comes from config (`apcv.aid`), the commands
//! from a profile module. `reference-v1` is the open profile shipped with the project.
//!
//! A phone is recognised by SELECTing the configured AID; the data of the SELECT answer
//! names the profile (reference-v1 answers `80 01 01`). A licensed profile is one more
//! module implementing [`PhoneProfile`] and one more entry in [`PROFILES`]: transports,
//! the worker and the protocol stay untouched.

mod reference_v1;
mod signature;

pub use reference_v1::{
    DEFAULT_AID, GET_IDENTITY, GET_PUBLIC_KEY, MAX_CONTEXT, ReferenceV1, SELECT_ANSWER,
    SIGN_HEADER, SW_LOCKED, SW_REFUSED,
};
pub use signature::{origin_binding, verify};

use super::apdu::transceive;
use super::{CardChannel, CardError, Identity, ReadContext, SignOutcome};
use crate::codec::apdu::Response;

/// One way of talking to a phone app once its AID is selected.
pub trait PhoneProfile: Sync {
    /// The profile name reported in `Identity.profile` (e.g. `reference-v1`).
    fn name(&self) -> &'static str;

    /// Whether the data of a successful SELECT (FCI or version bytes) announces this
    /// profile.
    fn recognises(&self, select_data: &[u8]) -> bool;

    /// Reads the identity; the AID is already selected. `progress(step, total)` counts
    /// from the step after the SELECT.
    fn read(
        &self,
        channel: &mut dyn CardChannel,
        ctx: &ReadContext,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Identity, CardError>;

    /// Has the phone sign a 32-byte digest; the AID is already selected.
    fn sign(
        &self,
        channel: &mut dyn CardChannel,
        digest: &[u8; 32],
    ) -> Result<SignOutcome, CardError>;
}

/// Every profile the daemon speaks, tried in order against the SELECT answer.
pub static PROFILES: &[&dyn PhoneProfile] = &[&ReferenceV1];

/// Whether the target answers a SELECT of the configured phone AID with a profile we
/// speak. A SELECT refused with a status word is `Ok(false)`; a transport failure
/// (phone pulled) is an error.
pub fn probe(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<bool, CardError> {
    Ok(select(channel, ctx)?.is_some())
}

/// Reads the identity from a phone.
pub fn read(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Identity, CardError> {
    let profile = selected_profile(channel, ctx)?;
    profile.read(channel, ctx, progress)
}

/// Asks the phone to sign a digest (product.md §4.3). The outcome is not verified here:
/// the hub verifies it against the origin-bound message before anyone sees it.
pub fn sign(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
    digest: &[u8; 32],
) -> Result<SignOutcome, CardError> {
    let profile = selected_profile(channel, ctx)?;
    profile.sign(channel, digest)
}

/// SELECTs the AID again before each operation: a phone may have been re-activated by
/// the reader (or the app switched) since detection.
fn selected_profile(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
) -> Result<&'static dyn PhoneProfile, CardError> {
    select(channel, ctx)?.ok_or_else(|| {
        CardError::Unsupported("the phone no longer answers the configured phone profile".into())
    })
}

fn select(
    channel: &mut dyn CardChannel,
    ctx: &ReadContext,
) -> Result<Option<&'static dyn PhoneProfile>, CardError> {
    let aid: &[u8] = if ctx.apcv_aid.is_empty() {
        &DEFAULT_AID
    } else {
        &ctx.apcv_aid
    };
    let Some(capdu) = select_command(aid) else {
        return Err(CardError::Unsupported(format!(
            "configured phone AID has {} bytes; ISO 7816-4 allows 5 to 16",
            aid.len()
        )));
    };
    let response: Response = transceive(channel, &capdu)?;
    if !response.is_ok() {
        tracing::debug!(
            sw = format_args!("{:04X}", response.sw),
            "phone AID not selected"
        );
        return Ok(None);
    }
    let profile = PROFILES
        .iter()
        .copied()
        .find(|p| p.recognises(&response.data));
    if profile.is_none() {
        tracing::info!(
            answer = %hex::encode_upper(&response.data),
            "phone AID selected but no known profile answered"
        );
    }
    Ok(profile)
}

/// `00 A4 04 00 Lc <AID> 00` (SELECT by DF name, first occurrence, FCI requested).
fn select_command(aid: &[u8]) -> Option<Vec<u8>> {
    if !(5..=16).contains(&aid.len()) {
        return None;
    }
    let mut capdu = vec![0x00, 0xA4, 0x04, 0x00, aid.len() as u8];
    capdu.extend_from_slice(aid);
    capdu.push(0x00);
    Some(capdu)
}

#[cfg(test)]
mod tests;
