//! Card-type detection through SimChannel: ATR hints confirmed by SELECT, CPS left
//! alone, Vitale 1 recognised and refused, phones, foreign and mute cards.

mod vitale_support;

use vitale_bridge::card::{self, CardError, CardType, ChannelError};
use vitale_bridge::protocol::Reason;
use vitale_bridge::sim::phone::VirtualPhone;
use vitale_bridge::sim::{SimChannel, VirtualCard};
use vitale_support::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("hex")
}

fn detect<C: VirtualCard>(ch: &mut SimChannel<C>) -> Result<CardType, CardError> {
    card::detect(ch, &ctx())
}

#[test]
fn a_listed_vitale2_is_confirmed_by_select() {
    let mut ch = channel(vitale_card(&family(), Paths::Both, 25));
    assert_eq!(detect(&mut ch), Ok(CardType::Vitale2));
    assert_eq!(ch.apdu_count(), 1);
    // And it reads after detection.
    let id =
        card::read_identity(&mut ch, CardType::Vitale2, &ctx(), &mut |_, _| {}).expect("reads");
    assert_eq!(id.beneficiaries.len(), 5);
}

#[test]
fn every_listed_vitale2_atr_is_recognised() {
    for atr in [
        "3B 75 13 00 00 43 09 EA 90 00",
        "3B 75 13 00 00 4C 09 EA 90 00",
        "3B 75 13 00 00 45 09 FA 90 00",
    ] {
        let mut card = vitale_card(&family(), Paths::Both, 25);
        card.atr = hex(atr);
        assert_eq!(detect(&mut channel(card)), Ok(CardType::Vitale2), "{atr}");
    }
}

#[test]
fn a_vitale2_atr_without_the_application_is_an_error_naming_the_refusal() {
    let mut card = FileCard::new(&VITALE2_ATR);
    card.apps.clear();
    let err = detect(&mut channel(card)).expect_err("its ATR promised a Carte Vitale");
    assert!(matches!(err, CardError::Unsupported(_)), "{err:?}");
    assert_eq!(err.reason(), Reason::CardUnsupported);
    let text = err.to_string();
    assert!(
        text.contains("Carte Vitale 2") && text.contains("6A82"),
        "{text}"
    );
}

#[test]
fn an_unlisted_atr_with_the_vitale_application_is_a_vitale2() {
    let mut card = vitale_card(&family(), Paths::Both, 25);
    card.atr = hex("3B 75 13 00 00 99 09 EA 90 00");
    let mut ch = channel(card);
    assert_eq!(detect(&mut ch), Ok(CardType::Vitale2));
}

#[test]
fn vitale1_is_recognised_and_reading_it_is_card_unsupported() {
    for atr in [
        "3F 65 25 00 24 09 69 90 00",
        "3F 65 25 00 52 09 6A 90 00",
        "3F 65 25 00 A3 09 6A 90 00",
    ] {
        let mut card = FileCard::new(&hex(atr));
        card.cla_refused = true;
        let mut ch = channel(card);
        assert_eq!(detect(&mut ch), Ok(CardType::Vitale1), "{atr}");
        let err = card::read_identity(&mut ch, CardType::Vitale1, &ctx(), &mut |_, _| {})
            .expect_err("unsupported");
        assert_eq!(err.reason(), Reason::CardUnsupported);
        assert!(err.to_string().contains("Vitale 1"), "{err}");
    }
}

#[test]
fn a_vitale1_atr_that_selects_vitale_is_a_vitale2() {
    let mut card = vitale_card(&family(), Paths::Both, 25);
    card.atr = hex("3F 65 25 00 24 09 69 90 00");
    assert_eq!(detect(&mut channel(card)), Ok(CardType::Vitale2));
}

#[test]
fn a_cps_is_recognised_and_left_alone() {
    for atr in [
        "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00",
        "3B 7F 11 22 33 00 12 25 00 64 80 AA BB CC 00 90 00",
        "3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00",
    ] {
        let mut ch = channel(FileCard::new(&hex(atr)));
        assert_eq!(detect(&mut ch), Ok(CardType::Cps), "{atr}");
        assert_eq!(ch.apdu_count(), 0, "no APDU to a CPS");
        let err = card::read_identity(&mut ch, CardType::Cps, &ctx(), &mut |_, _| {})
            .expect_err("not a patient card");
        assert_eq!(err.reason(), Reason::CardUnsupported);
        assert_eq!(ch.apdu_count(), 0);
    }
}

#[test]
fn a_foreign_iso_card_is_unknown_without_error() {
    // A payment-like card: knows none of our applications.
    let mut card = FileCard::new(&hex(
        "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A",
    ));
    card.apps.clear();
    let mut ch = channel(card);
    assert_eq!(detect(&mut ch), Ok(CardType::Unknown));
    let err = card::read_identity(&mut ch, CardType::Unknown, &ctx(), &mut |_, _| {})
        .expect_err("unknown");
    assert_eq!(err.reason(), Reason::CardUnsupported);
}

/// Answers nothing usable: no status word at all.
struct Mute(Vec<u8>);

impl VirtualCard for Mute {
    fn atr(&self) -> Vec<u8> {
        self.0.clone()
    }
    fn process(&mut self, _: &[u8]) -> Vec<u8> {
        Vec::new()
    }
}

#[test]
fn a_card_answering_nonsense_is_mute_if_its_atr_promised_a_vitale_else_unknown() {
    for (atr, kind) in [
        (VITALE2_ATR.to_vec(), "Carte Vitale 2"),
        (hex("3F 65 25 00 24 09 69 90 00"), "Carte Vitale 1"),
    ] {
        let err = detect(&mut channel(Mute(atr.clone()))).expect_err("an outcome, not silence");
        assert!(matches!(err, CardError::Mute(_)), "{atr:02X?}: {err:?}");
        assert_eq!(err.reason(), Reason::CardMute);
        assert!(err.to_string().contains(kind), "{err}");
    }
    // A foreign card that answers nonsense is simply not ours.
    assert_eq!(
        detect(&mut channel(Mute(hex("3B 00")))),
        Ok(CardType::Unknown)
    );
}

#[test]
fn a_phone_is_apcv_and_a_foreign_contactless_card_is_unknown() {
    let mut ch = SimChannel::new(VirtualPhone::demo(), true);
    assert_eq!(detect(&mut ch), Ok(CardType::Apcv));
    let mut card = FileCard::new(&[0x3B, 0x80, 0x80, 0x01, 0x01]);
    card.apps.clear();
    let mut ch = SimChannel::new(card, true);
    assert_eq!(detect(&mut ch), Ok(CardType::Unknown));
}

#[test]
fn removal_during_detection_is_an_error() {
    for atr in [
        VITALE2_ATR.to_vec(),
        hex("3B 00"),
        hex("3F 65 25 00 24 09 69 90 00"),
    ] {
        let card = FileCard::new(&atr);
        let mut ch = channel(card).pull_after(0);
        assert_eq!(
            detect(&mut ch),
            Err(CardError::Channel(ChannelError::Removed)),
            "{atr:02X?}"
        );
    }
}
