//! The virtual Carte Vitale read by the real decoder through `SimChannel`: every
//! example card, every T=0 behaviour and each read path gives exactly the card
//! file's data; hostile cards and pulled cards give clean errors, never a partial
//! identity.

use std::path::Path;

use vitale_bridge::card::vitale::{self, ReadPath};
use vitale_bridge::card::{self, CardError, CardType, ChannelError, Identity, ReadContext};
use vitale_bridge::sim::SimChannel;
use vitale_bridge::sim::card_model::{CardDescription, Hostile, ReadPaths, T0Mode, VirtualVitale};

fn ctx() -> ReadContext {
    ReadContext {
        reader: "sim:test".into(),
        apcv_aid: vec![0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01],
        environment: None,
    }
}

fn file(name: &str) -> CardDescription {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.toml"));
    CardDescription::from_file(&p).expect("card file")
}

fn assert_same(identity: &Identity, desc: &CardDescription, what: &str) {
    assert_eq!(
        identity.beneficiaries.len(),
        desc.beneficiaries.len(),
        "{what}"
    );
    for (i, (got, want)) in identity
        .beneficiaries
        .iter()
        .zip(&desc.beneficiaries)
        .enumerate()
    {
        assert_eq!(got.index as usize, i, "{what}");
        assert_eq!(got.surname.expose(), &want.surname, "{what} #{i} surname");
        assert_eq!(
            got.given_name.expose(),
            &want.given_name,
            "{what} #{i} given name"
        );
        assert_eq!(
            got.birth_date_raw.expose(),
            &want.birth_date,
            "{what} #{i} birth date"
        );
        assert_eq!(got.nir.expose(), &want.nir, "{what} #{i} nir");
        assert!(got.ins.is_none(), "{what}: never an INS from a card");
    }
    assert_eq!(identity.card_type, CardType::Vitale2);
    assert_eq!(identity.profile, "vitale2-public");
}

#[test]
fn every_card_every_t0_mode_and_path_reads_exactly_its_description() {
    for name in ["family", "single", "pointer-map", "large"] {
        let base = file(name);
        for t0 in [T0Mode::Plain, T0Mode::WrongLength, T0Mode::GetResponse] {
            let mut desc = base.clone();
            desc.t0 = t0;
            let mut paths: Vec<(&str, Vec<ReadPath>)> =
                vec![("default", vec![ReadPath::Direct, ReadPath::PointerMap])];
            if matches!(desc.paths, ReadPaths::Direct | ReadPaths::Both) {
                paths.push(("direct", vec![ReadPath::Direct]));
            }
            if matches!(desc.paths, ReadPaths::PointerMap | ReadPaths::Both) {
                paths.push(("pointer-map", vec![ReadPath::PointerMap]));
            }
            for (label, path) in paths {
                let what = format!("{name} {t0:?} {label}");
                let mut ch = SimChannel::new(VirtualVitale::new(&desc).expect("card"), false);
                assert_eq!(
                    card::detect(&mut ch, &ctx()).expect("detect"),
                    CardType::Vitale2,
                    "{what}"
                );
                let id = vitale::read_with(&mut ch, &ctx(), &path, &mut |_, _| {})
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_same(&id, &desc, &what);
            }
        }
    }
}

#[test]
fn demo_family_facts_survive_the_round_trip() {
    let mut ch = SimChannel::new(VirtualVitale::demo_family(), false);
    let id = card::read_identity(&mut ch, CardType::Vitale2, &ctx(), &mut |_, _| {}).expect("read");
    let b = &id.beneficiaries;
    assert!(b[0].birth_date_lunar, "19850300 is lunar");
    assert_eq!(b[0].birth_date.expose(), &None);
    assert_eq!(b[0].nir_key_valid, Some(true), "Corsica 2A key");
    assert_eq!(b[1].birth_date.expose().as_deref(), Some("1987-04-12"));
    assert_eq!(b[2].nir.expose(), &None);
    assert_eq!(b[2].nir_key_valid, None);
    assert_eq!(b[1].given_name.expose(), "Éloïse");
    let mut ch = SimChannel::new(
        VirtualVitale::new(&file("pointer-map")).expect("card"),
        false,
    );
    let id = card::read_identity(&mut ch, CardType::Vitale2, &ctx(), &mut |_, _| {}).expect("read");
    assert_eq!(
        id.beneficiaries[0].nir_key_valid,
        Some(true),
        "Corsica 2B key"
    );
    assert_eq!(
        id.beneficiaries[1].nir_key_valid,
        Some(false),
        "wrong key described on purpose"
    );
}

#[test]
fn hostile_cards_give_clean_errors() {
    for (mode, name) in Hostile::ALL.into_iter().skip(1) {
        let mut desc = file("family");
        desc.hostile = mode;
        let mut ch = SimChannel::new(VirtualVitale::new(&desc).expect("card"), false);
        let result = card::detect(&mut ch, &ctx())
            .and_then(|t| card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}));
        assert!(result.is_err(), "{name}: {result:?}");
        assert!(
            ch.apdu_count() < 2000,
            "{name}: bounded work, {} APDUs",
            ch.apdu_count()
        );
    }
}

#[test]
fn a_card_pulled_at_any_apdu_gives_card_removed_never_part_of_an_identity() {
    let full = {
        let mut ch = SimChannel::new(VirtualVitale::demo_family(), false);
        card::detect(&mut ch, &ctx()).expect("detect");
        card::read_identity(&mut ch, CardType::Vitale2, &ctx(), &mut |_, _| {}).expect("read");
        ch.apdu_count()
    };
    for n in 0..full {
        let mut ch = SimChannel::new(VirtualVitale::demo_family(), false).pull_after(n);
        let result = card::detect(&mut ch, &ctx())
            .and_then(|t| card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}));
        match result {
            Err(CardError::Channel(ChannelError::Removed)) => {}
            // Detection cut short reports the card as unreadable, never an identity.
            Err(_) => {}
            Ok(id) => panic!(
                "pulled after {n} of {full} APDUs, got {} beneficiaries",
                id.beneficiaries.len()
            ),
        }
    }
}
