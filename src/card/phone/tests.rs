//! The profile against the virtual phone, through the in-process channel.

use super::*;
use crate::card::phone::reference_v1::parse_identity;
use crate::card::{CardType, ChannelError, Environment, Source};
use crate::codec::tlv;
use crate::sim::phone::{Consent, PhoneDescription, VirtualPhone};
use crate::sim::{SimChannel, VirtualCard};

fn ctx() -> ReadContext {
    ReadContext {
        reader: "nfc:test".into(),
        apcv_aid: DEFAULT_AID.to_vec(),
        environment: None,
    }
}

fn channel() -> SimChannel<VirtualPhone> {
    SimChannel::new(VirtualPhone::demo(), true)
}

#[test]
fn probe_recognises_the_reference_profile_only_under_its_aid() {
    assert!(probe(&mut channel(), &ctx()).expect("probe"));
    let other = ReadContext {
        apcv_aid: vec![0xA0, 0, 0, 0, 0x42],
        ..ctx()
    };
    assert!(!probe(&mut channel(), &other).expect("probe"));
}

#[test]
fn reads_the_demo_identity_with_get_response_chaining() {
    let mut ch = channel();
    let mut steps = Vec::new();
    let id = read(&mut ch, &ctx(), &mut |s, t| steps.push((s, t))).expect("read");
    // SELECT, GET DATA, then at least one GET RESPONSE: the demo answer exceeds 256 bytes.
    assert!(PhoneDescription::demo().identity_tlv().len() > 256);
    assert!(ch.apdu_count() >= 3, "{} APDUs", ch.apdu_count());
    assert_eq!(steps, vec![(1, 2), (2, 2)]);
    assert_eq!(id.source, Source::Apcv);
    assert_eq!(id.profile, "reference-v1");
    assert_eq!(id.card_type, CardType::Apcv);
    assert_eq!(id.reader, "nfc:test");
    assert_eq!(id.environment, Environment::Demo);
    assert_eq!(id.beneficiaries.len(), 2);
    let b0 = &id.beneficiaries[0];
    assert_eq!(b0.index, 0);
    assert_eq!(b0.surname.expose(), "DÉMO");
    assert_eq!(b0.given_name.expose(), "Zoé");
    assert_eq!(b0.birth_date.expose().as_deref(), Some("1980-02-03"));
    assert_eq!(b0.nir.expose().as_deref(), Some("295109912611193"));
    assert_eq!(b0.nir_key_valid, Some(true));
    let ins = b0.ins.as_ref().expect("ins");
    assert_eq!(ins.matricule.expose(), "295109912611193");
    assert_eq!(ins.oid, "1.2.250.1.213.1.4.11");
    let b1 = &id.beneficiaries[1];
    assert_eq!(b1.index, 1);
    assert!(b1.birth_date_lunar);
    assert_eq!(b1.birth_date.expose(), &None);
    assert_eq!(b1.nir.expose(), &None);
    assert_eq!(b1.nir_key_valid, None);
    let apcv = id.apcv.as_ref().expect("apcv");
    assert!(apcv.context.expose().starts_with("demo-apcv-context;"));
    assert_eq!(apcv.expires, "2035-12-31T23:59:59Z");
}

#[test]
fn signs_an_origin_bound_digest_that_verifies_only_for_its_origin() {
    let (message, digest) = origin_binding("https://a.example", &[7u8; 32]);
    let outcome = sign(&mut channel(), &ctx(), &digest).expect("sign");
    assert_eq!(outcome.public_key, VirtualPhone::demo().public_key());
    verify(&outcome.public_key, &message, &outcome.signature).expect("verifies");
    let (other, _) = origin_binding("https://b.example", &[7u8; 32]);
    let err = verify(&outcome.public_key, &other, &outcome.signature).expect_err("other origin");
    assert!(matches!(err, CardError::Verification(_)), "{err:?}");
}

#[test]
fn refusal_and_lock_map_to_their_reasons() {
    let mut desc = PhoneDescription::demo();
    desc.consent = Consent::Refuse;
    let mut ch = SimChannel::new(VirtualPhone::new(&desc).expect("phone"), true);
    let err = sign(&mut ch, &ctx(), &[0u8; 32]).expect_err("refused");
    assert_eq!(err, CardError::UserRefused);

    desc.consent = Consent::Accept;
    desc.locked = true;
    let mut ch = SimChannel::new(VirtualPhone::new(&desc).expect("phone"), true);
    let err = sign(&mut ch, &ctx(), &[0u8; 32]).expect_err("locked");
    assert_eq!(err, CardError::Locked);
    let err = read(&mut ch, &ctx(), &mut |_, _| {}).expect_err("locked");
    assert_eq!(err, CardError::Locked);
}

#[test]
fn a_phone_pulled_at_any_apdu_fails_with_card_removed() {
    let total = {
        let mut ch = channel();
        read(&mut ch, &ctx(), &mut |_, _| {}).expect("read");
        ch.apdu_count()
    };
    for n in 0..total {
        let mut ch = channel().pull_after(n);
        let err = read(&mut ch, &ctx(), &mut |_, _| {}).expect_err("pulled");
        assert_eq!(
            err,
            CardError::Channel(ChannelError::Removed),
            "pulled after {n}"
        );
    }
}

#[test]
fn verify_rejects_bad_keys_and_signatures() {
    let (message, digest) = origin_binding("native:", b"0123456789abcdef0123456789abcdef");
    let outcome = sign(&mut channel(), &ctx(), &digest).expect("sign");
    let mut bad_sig = outcome.signature.clone();
    bad_sig[10] ^= 1;
    for (key, sig) in [
        (&outcome.public_key[..], &bad_sig[..]),
        (&outcome.public_key[..], &outcome.signature[..63]),
        (&outcome.public_key[1..], &outcome.signature[..]),
        (&[0x04; 65][..], &outcome.signature[..]),
    ] {
        let err = verify(key, &message, sig).expect_err("rejected");
        assert!(matches!(err, CardError::Verification(_)), "{err:?}");
    }
}

#[test]
fn malformed_identities_are_rejected_without_panicking() {
    let good = PhoneDescription::demo().identity_tlv();
    assert!(parse_identity(&good, "r").is_ok());
    for cut in 0..good.len() {
        // Truncations either fail cleanly or (at an object boundary) parse.
        let _ = parse_identity(&good[..cut], "r");
    }
    let template = tlv::encode(0x65, &tlv::encode(0x80, b"X"));
    let mut too_long = template.clone();
    too_long.extend(tlv::encode(0xDF21, &[b'a'; 513]));
    too_long.extend(tlv::encode(0xDF22, b"20301231235959"));
    assert!(matches!(
        parse_identity(&too_long, "r"),
        Err(CardError::Malformed(_))
    ));
    let mut bad_expiry = template.clone();
    bad_expiry.extend(tlv::encode(0xDF21, b"ctx"));
    bad_expiry.extend(tlv::encode(0xDF22, b"20301341235959"));
    assert!(matches!(
        parse_identity(&bad_expiry, "r"),
        Err(CardError::Malformed(_))
    ));
    let mut not_utf8 = template;
    not_utf8.extend(tlv::encode(0xDF21, &[0xFF, 0xFE]));
    not_utf8.extend(tlv::encode(0xDF22, b"20301231235959"));
    assert!(matches!(
        parse_identity(&not_utf8, "r"),
        Err(CardError::Malformed(_))
    ));
}

#[test]
fn virtual_phone_answers_unknown_commands_with_iso_errors() {
    let mut phone = VirtualPhone::demo();
    assert_eq!(
        phone.process(&[0x80, 0xCA, 0x00, 0x65, 0x00]),
        vec![0x6D, 0x00]
    );
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, 9];
    select.extend_from_slice(&DEFAULT_AID);
    select.push(0);
    assert_eq!(phone.process(&select), vec![0x80, 0x01, 0x01, 0x90, 0x00]);
    assert_eq!(
        phone.process(&[0x80, 0x10, 0x00, 0x00, 0x00]),
        vec![0x6D, 0x00]
    );
    assert_eq!(
        phone.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]),
        vec![0x69, 0x85]
    );
}
