//! `card::read_identity` (CardType::Vitale2) against a card answering arbitrary
//! R-APDUs: it must end in `Ok` or a `CardError`, never panic or loop forever.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitale_bridge::card::{self, CardType, ReadContext};
use vitale_bridge::sim::SimChannel;

#[path = "scripted.rs"]
mod scripted;

fuzz_target!(|data: &[u8]| {
    let mut channel = SimChannel::new(scripted::Scripted::new(data), false);
    let ctx = ReadContext {
        reader: "fuzz:0".into(),
        apcv_aid: hex::decode(vitale_bridge::config::DEFAULT_APCV_AID).unwrap_or_default(),
    };
    let _ = card::read_identity(&mut channel, CardType::Vitale2, &ctx, &mut |_, _| {});
    // Every APDU consumes input or ends in 6F00: a read that never stops would
    // show up as a libFuzzer timeout, this bounds the count for a clearer failure.
    assert!(channel.apdu_count() <= data.len() + 512, "runaway read");
});
