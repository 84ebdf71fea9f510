//! Carte Vitale 2 reading against card images served by a test-only VirtualCard
//! through SimChannel: both public read paths, paging, T=0 61XX/6CXX, protected
//! files, and every beneficiary field.

mod vitale_support;

use vitale_bridge::card::vitale::{self, ReadPath};
use vitale_bridge::card::{self, CardType, Environment, Identity, Source};
use vitale_support::*;

fn read(card: FileCard, paths: &[ReadPath]) -> Identity {
    let mut ch = channel(card);
    vitale::read_with(&mut ch, &ctx(), paths, &mut |_, _| {}).expect("reads")
}

fn read_default(card: FileCard) -> Identity {
    let mut ch = channel(card);
    vitale::read(&mut ch, &ctx(), &mut |_, _| {}).expect("reads")
}

#[test]
fn family_fields_are_decoded() {
    let id = read_default(vitale_card(&family(), Paths::Both, 25));
    assert_eq!(id.source, Source::VitaleCard);
    assert_eq!(id.profile, "vitale2-public");
    assert_eq!(id.card_type, CardType::Vitale2);
    assert_eq!(id.environment, Environment::Unknown);
    assert_eq!(id.reader, "sim:test");
    assert!(id.apcv.is_none());
    let b = &id.beneficiaries;
    assert_eq!(b.len(), 5);
    for (i, x) in b.iter().enumerate() {
        assert_eq!(x.index as usize, i);
        // Never derived from a card NIR.
        assert!(x.ins.is_none());
    }
    // ISO-8859-1 accents, padding trimmed.
    assert_eq!(b[0].surname.expose(), "LEFÈVRE");
    assert_eq!(b[0].given_name.expose(), "HÉLÈNE");
    assert_eq!(b[1].given_name.expose(), "Gaël");
    assert_eq!(b[2].given_name.expose(), "Zoé");
    // An ordinary date.
    assert_eq!(b[0].birth_date.expose().as_deref(), Some("1980-02-03"));
    assert_eq!(b[0].birth_date_raw.expose(), "19800203");
    assert!(!b[0].birth_date_lunar);
    // A lunar date: no ISO form, raw kept.
    assert_eq!(*b[1].birth_date.expose(), None);
    assert_eq!(b[1].birth_date_raw.expose(), "19780000");
    assert!(b[1].birth_date_lunar);
    // NIRs: valid, Corsica 2A and 2B, none, wrong key.
    assert_eq!(b[0].nir.expose().as_deref(), Some("295109912611193"));
    assert_eq!(b[0].nir_key_valid, Some(true));
    assert_eq!(b[1].nir.expose().as_deref(), Some("253072A07300443"));
    assert_eq!(b[1].nir_key_valid, Some(true));
    assert_eq!(*b[2].nir.expose(), None);
    assert_eq!(b[2].nir_key_valid, None);
    assert_eq!(b[3].nir.expose().as_deref(), Some("253072B07300470"));
    assert_eq!(b[3].nir_key_valid, Some(true));
    assert_eq!(b[4].nir.expose().as_deref(), Some("295109912611194"));
    assert_eq!(b[4].nir_key_valid, Some(false));
}

#[test]
fn identity_serializes_to_the_protocol_shape() {
    let id = read_default(vitale_card(&family(), Paths::Both, 25));
    let json = serde_json::to_value(&id).expect("serializes");
    assert_eq!(json["source"], "vitale-card");
    assert_eq!(json["profile"], "vitale2-public");
    assert_eq!(json["cardType"], "vitale2");
    assert_eq!(json["environment"], "unknown");
    let child = &json["beneficiaries"][2];
    assert_eq!(child["index"], 2);
    assert_eq!(child["givenName"], "Zoé");
    assert!(child["nir"].is_null());
    assert!(child["nirKeyValid"].is_null());
    assert!(child["ins"].is_null());
    let lunar = &json["beneficiaries"][1];
    assert!(lunar["birthDate"].is_null());
    assert_eq!(lunar["birthDateRaw"], "19780000");
    assert_eq!(lunar["birthDateLunar"], true);
    // Debug output never shows identity data.
    let debug = format!("{id:?}");
    for secret in ["LEF", "Zoé", "2951", "1980"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn both_paths_give_the_same_identity() {
    let people = family();
    let direct = read(vitale_card(&people, Paths::Both, 25), &[ReadPath::Direct]);
    let map = read(
        vitale_card(&people, Paths::Both, 25),
        &[ReadPath::PointerMap],
    );
    let default = read_default(vitale_card(&people, Paths::Both, 25));
    assert_eq!(direct, map);
    assert_eq!(direct, default);
    assert_eq!(direct.beneficiaries.len(), 5);
}

#[test]
fn direct_path_wins_and_uses_sfi_reads() {
    let card = vitale_card(&family(), Paths::Both, 25);
    let log = card.log.clone();
    read_default(card);
    let sent = log.lock().expect("log").clone();
    assert_eq!(sent[0], [0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
    assert_eq!(sent[1], [0x00, 0xB0, 0x82, 0x00, 0x00]);
    // The map EF is never selected: the direct path answered completely.
    assert!(!sent.iter().any(|c| c.ends_with(&[0x20, 0x01])));
}

#[test]
fn a_direct_only_card_reads() {
    let id = read_default(vitale_card(&family(), Paths::Direct, 25));
    assert_eq!(id, read_default(vitale_card(&family(), Paths::Both, 25)));
}

#[test]
fn a_pointer_map_only_card_falls_back() {
    let card = vitale_card(&family(), Paths::PointerMap, 25);
    let log = card.log.clone();
    let id = read_default(card);
    assert_eq!(id, read_default(vitale_card(&family(), Paths::Both, 25)));
    let sent = log.lock().expect("log").clone();
    assert!(sent.contains(&vec![0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]));
    // The protected EF was tried and skipped.
    assert!(sent.contains(&vec![0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x10]));
}

#[test]
fn protected_ef_in_the_map_is_skipped_not_fatal() {
    // The map lists a protected EF before the identity file.
    let people = family();
    let card = FileCard::new(&VITALE2_ATR)
        .file(
            vitale(),
            0x2001,
            None,
            map_file(&[(b"SECRET  ", 1, 0x2010), (b"IDENTITE", 1, 0x2004)]),
        )
        .protected(vitale(), 0x2010, None)
        .file(vitale(), 0x2004, None, full_file(&people, 25));
    let id = read_default(card);
    assert_eq!(id.beneficiaries.len(), 5);
}

#[test]
fn names_without_a_nir_file_fall_back_to_the_map_then_to_names() {
    let people = family();
    // Direct names readable, VITALE SFI 2 protected, map present: the map completes it.
    let card = FileCard::new(&VITALE2_ATR)
        .file(Df::Mf, 0x2002, Some(2), names_file(&people, 25))
        .protected(vitale(), 0x2003, Some(2))
        .file(
            vitale(),
            0x2001,
            None,
            map_file(&[(b"IDENTITE", 1, 0x2004)]),
        )
        .file(vitale(), 0x2004, None, full_file(&people, 25));
    let id = read_default(card);
    assert_eq!(
        id.beneficiaries[0].nir.expose().as_deref(),
        Some("295109912611193")
    );
    // No map: names alone, NIRs null.
    let card = FileCard::new(&VITALE2_ATR)
        .file(Df::Mf, 0x2002, Some(2), names_file(&people, 25))
        .protected(vitale(), 0x2003, Some(2));
    let id = read_default(card);
    assert_eq!(id.beneficiaries.len(), 5);
    assert!(id.beneficiaries.iter().all(|b| b.nir.expose().is_none()));
    assert_eq!(id.beneficiaries[1].given_name.expose(), "Gaël");
}

#[test]
fn files_over_256_bytes_are_paged_on_both_paths() {
    let people = family();
    let wide = 60;
    assert!(names_file(&people, wide).len() > 512);
    assert!(full_file(&people, wide).len() > 512);
    for paths in [[ReadPath::Direct], [ReadPath::PointerMap]] {
        let card = vitale_card(&people, Paths::Both, wide);
        let log = card.log.clone();
        let id = read(card, &paths);
        assert_eq!(id.beneficiaries.len(), 5, "{paths:?}");
        assert_eq!(id.beneficiaries[4].surname.expose(), "DURAND");
        let sent = log.lock().expect("log").clone();
        assert!(
            sent.contains(&vec![0x00, 0xB0, 0x01, 0x00, 0x00]),
            "{paths:?}"
        );
        assert!(
            sent.contains(&vec![0x00, 0xB0, 0x02, 0x00, 0x00]),
            "{paths:?}"
        );
    }
    let narrow = read_default(vitale_card(&people, Paths::Both, 25));
    let wide = read_default(vitale_card(&people, Paths::Both, wide));
    assert_eq!(narrow, wide);
}

#[test]
fn t0_get_response_and_wrong_le_give_the_same_identity() {
    let people = family();
    let plain = read_default(vitale_card(&people, Paths::Both, 60));
    for t0 in [T0::GetResponse, T0::WrongLe] {
        for paths in [[ReadPath::Direct], [ReadPath::PointerMap]] {
            let card = vitale_card(&people, Paths::Both, 60).t0(t0);
            let log = card.log.clone();
            assert_eq!(read(card, &paths), plain, "{t0:?} {paths:?}");
            let sent = log.lock().expect("log").clone();
            match t0 {
                T0::GetResponse => assert!(sent.iter().any(|c| c[1] == 0xC0)),
                T0::WrongLe => assert!(sent.iter().any(|c| c[1] == 0xB0 && c[4] != 0)),
                T0::Plain => {}
            }
        }
    }
}

#[test]
fn progress_moves_forward_to_the_last_step() {
    for paths in [Paths::Direct, Paths::PointerMap, Paths::Both] {
        let mut ch = channel(vitale_card(&family(), paths, 25));
        let mut steps = Vec::new();
        vitale::read(&mut ch, &ctx(), &mut |s, t| steps.push((s, t))).expect("reads");
        assert_eq!(steps.first(), Some(&(1, vitale::STEPS)), "{paths:?}");
        assert_eq!(
            steps.last(),
            Some(&(vitale::STEPS, vitale::STEPS)),
            "{paths:?}"
        );
        assert!(
            steps.windows(2).all(|w| w[0].0 < w[1].0),
            "{paths:?} {steps:?}"
        );
    }
}

#[test]
fn read_identity_dispatches_vitale2() {
    let mut ch = channel(vitale_card(&family(), Paths::Both, 25));
    let id =
        card::read_identity(&mut ch, CardType::Vitale2, &ctx(), &mut |_, _| {}).expect("reads");
    assert_eq!(id.beneficiaries.len(), 5);
}

#[test]
fn a_single_beneficiary_card() {
    let one = vec![person(b"SEUL", b"UN", "20000229", Some("295109912611193"))];
    let id = read_default(vitale_card(&one, Paths::Both, 25));
    assert_eq!(id.beneficiaries.len(), 1);
    assert_eq!(
        id.beneficiaries[0].birth_date.expose().as_deref(),
        Some("2000-02-29")
    );
}
