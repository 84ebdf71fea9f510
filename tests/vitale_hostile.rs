//! Hostile and failing cards: every one ends in a clean `CardError`, within bounds,
//! without a panic and never with a partial identity.

mod vitale_support;

use proptest::prelude::*;
use vitale_bridge::card::vitale::{self, ReadPath, decode};
use vitale_bridge::card::{self, CardError, ChannelError, Identity};
use vitale_bridge::codec::tlv::encode;
use vitale_bridge::protocol::Reason;
use vitale_bridge::sim::VirtualCard;
use vitale_support::*;

fn read_card<C: VirtualCard>(card: C) -> Result<Identity, CardError> {
    let mut ch = channel(card);
    vitale::read(&mut ch, &ctx(), &mut |_, _| {})
}

/// Answers `61 10` to everything, GET RESPONSE included, forever.
struct Endless61 {
    apdus: usize,
}

impl VirtualCard for Endless61 {
    fn atr(&self) -> Vec<u8> {
        VITALE2_ATR.to_vec()
    }
    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        self.apdus += 1;
        if capdu.get(1) == Some(&0xC0) {
            let mut v = vec![0u8; 16];
            v.extend([0x61, 0x10]);
            v
        } else {
            vec![0x61, 0x10]
        }
    }
}

#[test]
fn endless_61xx_is_a_clean_bounded_error() {
    let mut ch = channel(Endless61 { apdus: 0 });
    let err = vitale::read(&mut ch, &ctx(), &mut |_, _| {}).expect_err("bounded");
    assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
    // Each path gives up after one bounded exchange.
    assert!(
        ch.apdu_count() <= 2 * vitale_bridge::card::apdu::MAX_ROUNDS,
        "{}",
        ch.apdu_count()
    );
    // Detection reports it as what it is: a card whose ATR says Carte Vitale and
    // whose answer to SELECT never ends.
    let mut ch = channel(Endless61 { apdus: 0 });
    let err = card::detect(&mut ch, &ctx()).expect_err("an outcome, not silence");
    assert_eq!(err.reason(), Reason::CardUnsupported);
    assert!(err.to_string().contains("SELECT VITALE"), "{err}");
}

fn hostile_identity_files(image: Vec<u8>) -> FileCard {
    FileCard::new(&VITALE2_ATR)
        .file(Df::Mf, 0x2002, Some(2), image.clone())
        .file(vitale(), 0x2003, Some(2), image.clone())
        .file(
            vitale(),
            0x2001,
            None,
            map_file(&[(b"IDENTITE", 1, 0x2004)]),
        )
        .file(vitale(), 0x2004, None, image)
}

#[test]
fn length_82_ffff_is_malformed() {
    let image = vec![0x65, 0x82, 0xFF, 0xFF, 0x80, 0x03, b'A', b'B', b'C'];
    let err = read_card(hostile_identity_files(image)).expect_err("malformed");
    assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
    assert_eq!(err.reason(), Reason::CardUnsupported);
}

#[test]
fn thousand_deep_nesting_is_malformed() {
    let mut image = encode(0x80, b"A");
    for _ in 0..1000 {
        image = encode(0x65, &image);
    }
    assert!(image.len() > 2000);
    let err = read_card(hostile_identity_files(image)).expect_err("malformed");
    assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
}

#[test]
fn every_file_protected_is_a_status_error() {
    let card = FileCard::new(&VITALE2_ATR)
        .protected(Df::Mf, 0x2002, Some(2))
        .protected(vitale(), 0x2003, Some(2))
        .file(
            vitale(),
            0x2001,
            None,
            map_file(&[(b"IDENTITE", 1, 0x2004)]),
        )
        .protected(vitale(), 0x2004, None);
    let err = read_card(card).expect_err("nothing readable");
    assert!(
        matches!(err, CardError::Status { sw: 0x6982, .. }),
        "{err:?}"
    );
}

#[test]
fn an_empty_card_is_an_error_not_an_empty_identity() {
    let card = FileCard::new(&VITALE2_ATR)
        .file(Df::Mf, 0x2002, Some(2), vec![0; 64])
        .file(vitale(), 0x2003, Some(2), vec![0; 64]);
    assert!(read_card(card).is_err());
    assert!(read_card(FileCard::new(&VITALE2_ATR)).is_err());
}

/// Serves 256 bytes of valid-looking padding to every READ BINARY, forever.
struct EndlessFile {
    apdus: usize,
}

impl VirtualCard for EndlessFile {
    fn atr(&self) -> Vec<u8> {
        VITALE2_ATR.to_vec()
    }
    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        self.apdus += 1;
        match capdu.get(1) {
            Some(0xB0) => {
                let mut v = vec![0u8; 256];
                v.extend([0x90, 0x00]);
                v
            }
            _ => vec![0x90, 0x00],
        }
    }
}

#[test]
fn an_endless_file_is_cut_at_the_file_bound() {
    let mut ch = channel(EndlessFile { apdus: 0 });
    let err = vitale::read_with(&mut ch, &ctx(), &[ReadPath::Direct], &mut |_, _| {})
        .expect_err("bounded");
    assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
    // 15-bit offsets: at most 128 pages of 256 bytes, plus the SELECT.
    assert!(ch.apdu_count() <= 130, "{}", ch.apdu_count());
    let mut ch = channel(EndlessFile { apdus: 0 });
    assert!(vitale::read(&mut ch, &ctx(), &mut |_, _| {}).is_err());
    assert!(ch.apdu_count() <= 2 * 130 + 4, "{}", ch.apdu_count());
}

#[test]
fn pulling_the_card_at_every_apdu_is_card_removed() {
    for (paths, t0) in [
        (Paths::Both, T0::Plain),
        (Paths::Direct, T0::GetResponse),
        (Paths::PointerMap, T0::WrongLe),
    ] {
        let people = family();
        // How many APDUs a full detection and read takes.
        let mut ch = channel(vitale_card(&people, paths, 60).t0(t0));
        let t = card::detect(&mut ch, &ctx()).expect("detects");
        card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}).expect("reads");
        let total = ch.apdu_count();
        assert!(total > 5, "{total}");
        for n in 0..total {
            let mut ch = channel(vitale_card(&people, paths, 60).t0(t0)).pull_after(n);
            let outcome = card::detect(&mut ch, &ctx())
                .and_then(|t| card::read_identity(&mut ch, t, &ctx(), &mut |_, _| {}));
            match outcome {
                Err(e) => {
                    assert_eq!(
                        e,
                        CardError::Channel(ChannelError::Removed),
                        "{paths:?} n={n}"
                    );
                    assert_eq!(e.reason(), Reason::CardRemoved);
                }
                Ok(_) => panic!(
                    "{paths:?} {t0:?}: identity returned with the card pulled after {n} of {total}"
                ),
            }
        }
    }
}

/// Serves arbitrary bytes as every identity and map file.
fn arbitrary_card(names: Vec<u8>, nirs: Vec<u8>, map: Vec<u8>, full: Vec<u8>) -> FileCard {
    FileCard::new(&VITALE2_ATR)
        .file(Df::Mf, 0x2002, Some(2), names)
        .file(vitale(), 0x2003, Some(2), nirs)
        .file(vitale(), 0x2001, None, map)
        .file(vitale(), 0x2004, None, full)
}

/// Bytes biased towards the tags and lengths of Vitale files.
fn cardish() -> impl Strategy<Value = Vec<u8>> {
    const SPECIAL: [u8; 12] = [
        0x65, 0x80, 0x81, 0x82, 0x93, 0xE0, 0xA0, 0x83, 0x20, 0x00, 0xFF, 0x0C,
    ];
    prop::collection::vec(
        any::<u16>().prop_map(|x| {
            let [sel, b] = x.to_be_bytes();
            if sel < 128 {
                SPECIAL[usize::from(sel) % SPECIAL.len()]
            } else {
                b
            }
        }),
        0..700,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn reading_arbitrary_files_never_panics(
        names in cardish(),
        nirs in cardish(),
        map in cardish(),
        full in cardish(),
        t0 in prop::sample::select(vec![T0::Plain, T0::WrongLe, T0::GetResponse]),
    ) {
        let card = arbitrary_card(names, nirs, map, full).t0(t0);
        if let Ok(id) = read_card(card) {
            prop_assert!(!id.beneficiaries.is_empty());
            prop_assert!(id.beneficiaries.len() <= decode::MAX_BENEFICIARIES);
            for b in &id.beneficiaries {
                prop_assert!(b.ins.is_none());
                if let Some(n) = b.nir.expose() {
                    prop_assert_eq!(n.len(), 15);
                }
            }
        }
    }

    #[test]
    fn decoding_arbitrary_files_never_panics(file in cardish()) {
        if let Ok(recs) = decode::records(&file) {
            prop_assert!(recs.len() <= decode::MAX_BENEFICIARIES);
            for (i, r) in recs.iter().enumerate() {
                let _ = r.to_beneficiary(i as u32);
            }
        }
        if let Ok(entries) = decode::pointer_map(&file) {
            prop_assert!(entries.len() <= decode::MAX_MAP_ENTRIES);
        }
    }

    #[test]
    fn well_formed_templates_decode(
        people in prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 0..40),
                prop::collection::vec(any::<u8>(), 0..40),
                "[0-9]{8}",
                prop::option::of("[12][0-9]{12}[0-9]{2}"),
            ),
            1..8,
        ),
    ) {
        let people: Vec<Person> = people
            .into_iter()
            .map(|(s, g, b, n)| Person { surname: s, given: g, birth: b, nir: n })
            .collect();
        let id = read_card(vitale_card(&people, Paths::Both, 0)).expect("reads");
        prop_assert_eq!(id.beneficiaries.len(), people.len());
        for (b, p) in id.beneficiaries.iter().zip(&people) {
            prop_assert_eq!(b.birth_date_raw.expose(), &p.birth);
            prop_assert_eq!(b.nir.expose().is_some(), p.nir.is_some());
        }
    }
}
