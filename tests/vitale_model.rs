//! Cross-test with the virtual Carte Vitale model (`sim::card_model`): reading a
//! `VirtualVitale` gives exactly its description's data, on both paths and in every
//! T=0 mode, and every hostile mode ends in a clean error.

use vitale_bridge::card::vitale::{self, ReadPath};
use vitale_bridge::card::{self, CardError, CardType, ChannelError, Identity, ReadContext};
use vitale_bridge::codec::{date, latin1, nir};
use vitale_bridge::protocol::Reason;
use vitale_bridge::sim::SimChannel;
use vitale_bridge::sim::card_model::{CardDescription, Hostile, ReadPaths, T0Mode, VirtualVitale};

fn ctx() -> ReadContext {
    ReadContext {
        reader: "sim:model".into(),
        apcv_aid: vec![0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01],
        environment: None,
    }
}

fn channel(desc: &CardDescription) -> SimChannel<VirtualVitale> {
    SimChannel::new(VirtualVitale::new(desc).expect("valid description"), false)
}

fn detect_and_read(desc: &CardDescription) -> Result<Identity, CardError> {
    let mut ch = channel(desc);
    let t = card::detect(&mut ch, &ctx())?;
    assert_eq!(t, CardType::Vitale2);
    card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {})
}

/// Checks `id` says exactly what `desc` describes.
fn assert_matches(id: &Identity, desc: &CardDescription) {
    assert_eq!(id.profile, "vitale2-public");
    assert_eq!(id.reader, "sim:model");
    assert_eq!(id.beneficiaries.len(), desc.beneficiaries.len());
    for (i, (b, d)) in id.beneficiaries.iter().zip(&desc.beneficiaries).enumerate() {
        assert_eq!(b.index as usize, i);
        assert_eq!(b.surname.expose(), &d.surname);
        assert_eq!(b.given_name.expose(), &d.given_name);
        assert_eq!(b.birth_date_raw.expose(), &d.birth_date);
        let expected = date::parse(&latin1::encode(&d.birth_date));
        assert_eq!(b.birth_date.expose(), &expected.iso);
        assert_eq!(b.birth_date_lunar, expected.lunar);
        assert_eq!(b.nir.expose(), &d.nir);
        assert_eq!(b.nir_key_valid, d.nir.as_deref().map(nir::is_valid));
        assert!(b.ins.is_none());
    }
}

#[test]
fn the_demo_family_reads_as_described_on_every_path_and_t0_mode() {
    for paths in [ReadPaths::Direct, ReadPaths::PointerMap, ReadPaths::Both] {
        for t0 in [T0Mode::Plain, T0Mode::WrongLength, T0Mode::GetResponse] {
            let mut desc = CardDescription::demo_family();
            desc.paths = paths;
            desc.t0 = t0;
            let id = detect_and_read(&desc).unwrap_or_else(|e| panic!("{paths:?} {t0:?}: {e}"));
            assert_matches(&id, &desc);
        }
    }
    // The demo family has a lunar date, a Corsica NIR and a child without NIR.
    let id = detect_and_read(&CardDescription::demo_family()).expect("reads");
    assert!(id.beneficiaries[0].birth_date_lunar);
    assert_eq!(id.beneficiaries[0].nir_key_valid, Some(true));
    assert_eq!(*id.beneficiaries[2].nir.expose(), None);
}

#[test]
fn each_path_alone_gives_the_same_identity() {
    let desc = CardDescription::demo_family();
    let read = |paths: &[ReadPath]| {
        let mut ch = channel(&desc);
        vitale::read_with(&mut ch, &ctx(), paths, &mut |_, _| {}).expect("reads")
    };
    let direct = read(&[ReadPath::Direct]);
    let map = read(&[ReadPath::PointerMap]);
    assert_eq!(direct, map);
    assert_matches(&direct, &desc);
}

#[test]
fn a_wrong_key_is_flagged_not_dropped() {
    let mut desc = CardDescription::demo_family();
    desc.beneficiaries[1].nir = Some("287047505612322".into());
    let id = detect_and_read(&desc).expect("reads");
    assert_eq!(id.beneficiaries[1].nir_key_valid, Some(false));
    assert_eq!(
        id.beneficiaries[1].nir.expose().as_deref(),
        Some("287047505612322")
    );
}

#[test]
fn every_hostile_mode_is_a_clean_error() {
    for (hostile, name) in Hostile::ALL {
        if hostile == Hostile::None {
            continue;
        }
        let mut desc = CardDescription::demo_family();
        desc.hostile = hostile;
        let mut ch = channel(&desc);
        // A mute card is CARD_MUTE; every other misbehaviour CARD_UNSUPPORTED.
        let want = if hostile == Hostile::Mute {
            Reason::CardMute
        } else {
            Reason::CardUnsupported
        };
        match card::detect(&mut ch, &ctx()) {
            Ok(t) => assert_eq!(t, CardType::Vitale2, "{name}"),
            // Endless 61XX and mute cards do not even confirm the application: an
            // error saying so, not an `unknown` card left in silence.
            Err(e) => {
                assert!(
                    matches!(hostile, Hostile::Endless61 | Hostile::Mute),
                    "{name}: {e:?}"
                );
                assert_eq!(e.reason(), want, "{name}");
            }
        }
        let err = vitale::read(&mut ch, &ctx(), &mut |_, _| {})
            .expect_err(&format!("{name} gives no identity"));
        assert!(
            matches!(
                err,
                CardError::Malformed(_) | CardError::Status { .. } | CardError::Mute(_)
            ),
            "{name}: {err:?}"
        );
        assert_eq!(err.reason(), want, "{name}");
        assert!(ch.apdu_count() < 400, "{name}: {}", ch.apdu_count());
    }
}

#[test]
fn pulling_the_demo_card_at_every_apdu_is_card_removed() {
    let desc = CardDescription::demo_family();
    let mut ch = channel(&desc);
    let t = card::detect(&mut ch, &ctx()).expect("detects");
    card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}).expect("reads");
    let total = ch.apdu_count();
    for n in 0..total {
        let mut ch = channel(&desc).pull_after(n);
        let outcome = card::detect(&mut ch, &ctx())
            .and_then(|t| card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}));
        assert_eq!(
            outcome.map(|_| ()),
            Err(CardError::Channel(ChannelError::Removed)),
            "pulled after {n} of {total}"
        );
    }
}
