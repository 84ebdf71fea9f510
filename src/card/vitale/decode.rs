//! Pure decoding of Carte Vitale 2 files (cards.md §1 "Data objects"): beneficiary
//! templates, the `2001` pointer map, and the merge of files into beneficiaries.
//!
//! No I/O: every function takes file bytes as read and is bounded by its input.

use crate::card::{Beneficiary, CardError, Sensitive};
use crate::codec::tlv::{self, Node, Tag};
use crate::codec::{date, latin1, nir};

/// Most beneficiaries one card may list (a family card holds a handful).
pub const MAX_BENEFICIARIES: usize = 32;

/// Most pointer-map file entries followed.
pub const MAX_MAP_ENTRIES: usize = 32;

/// Most pointer-map applications considered.
pub const MAX_MAP_APPS: usize = 16;

/// `65`: one beneficiary.
const BENEFICIARY: Tag = Tag(0x65);
/// `80` nom (surname).
const SURNAME: Tag = Tag(0x80);
/// `81` prénom (given name).
const GIVEN_NAME: Tag = Tag(0x81);
/// `82` date of birth `AAAAMMJJ`.
const BIRTH_DATE: Tag = Tag(0x82);
/// `93` NIR.
const NIR: Tag = Tag(0x93);
/// `E0` pointer map.
const MAP: Tag = Tag(0xE0);
/// `A0` pointer-map application list.
const MAP_APPS: Tag = Tag(0xA0);
/// `82` inside the map: an application.
const MAP_APP: Tag = Tag(0x82);
/// `80` inside the map: a file.
const MAP_FILE: Tag = Tag(0x80);

/// One `65` template as found in one file: raw field bytes, not yet interpreted.
///
/// Raw bytes are health data: `Debug` only says which fields are present.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Record {
    surname: Option<Vec<u8>>,
    given_name: Option<Vec<u8>>,
    birth_date: Option<Vec<u8>>,
    nir: Option<Vec<u8>>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("surname", &self.surname.is_some())
            .field("given_name", &self.given_name.is_some())
            .field("birth_date", &self.birth_date.is_some())
            .field("nir", &self.nir.is_some())
            .finish()
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for field in [
            &mut self.surname,
            &mut self.given_name,
            &mut self.birth_date,
            &mut self.nir,
        ] {
            field.zeroize();
        }
    }
}

impl Record {
    /// Whether the template names a person (`80`, `81` or `82`), rather than only
    /// carrying a NIR to be matched by order.
    pub fn names_someone(&self) -> bool {
        self.surname.is_some() || self.given_name.is_some() || self.birth_date.is_some()
    }

    /// Whether the template carries a NIR.
    pub fn has_nir(&self) -> bool {
        self.nir.is_some()
    }

    /// Builds the protocol beneficiary at position `index`.
    pub fn to_beneficiary(&self, index: u32) -> Beneficiary {
        let text =
            |v: &Option<Vec<u8>>| v.as_deref().map(latin1::decode_trimmed).unwrap_or_default();
        let birth = date::parse(self.birth_date.as_deref().unwrap_or_default());
        let (nir, nir_key_valid) = interpret_nir(self.nir.as_deref());
        Beneficiary {
            index,
            surname: Sensitive::new(text(&self.surname)),
            given_name: Sensitive::new(text(&self.given_name)),
            birth_date: Sensitive::new(birth.iso.clone()),
            birth_date_raw: Sensitive::new(birth.raw.clone()),
            birth_date_lunar: birth.lunar,
            nir: Sensitive::new(nir),
            nir_key_valid,
            // Never derived from a card NIR (product.md §4.3).
            ins: None,
        }
    }
}

/// The NIR and whether its key checks. A 15-character alphanumeric value is kept
/// even when its key or a position is wrong (`nirKeyValid: false`); anything else
/// (empty, wrong length, binary) is no NIR at all.
fn interpret_nir(raw: Option<&[u8]>) -> (Option<String>, Option<bool>) {
    let Some(raw) = raw else {
        return (None, None);
    };
    let text = latin1::decode_trimmed(raw);
    if text.len() == 15 && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        let valid = nir::is_valid(&text);
        (Some(text), Some(valid))
    } else {
        (None, None)
    }
}

/// Maps a TLV error to the card-logic error, naming the file (no data).
fn malformed(what: &str, e: tlv::TlvError) -> CardError {
    CardError::Malformed(format!("{what}: {e}"))
}

/// Every top-level `65` template of a file, in order. Other objects (`66`
/// validity, `7F21` certificate parts, padding) are skipped.
pub fn records(file: &[u8]) -> Result<Vec<Record>, CardError> {
    let nodes = tlv::decode(file).map_err(|e| malformed("beneficiary file", e))?;
    let templates: Vec<&Node<'_>> = nodes.iter().filter(|n| n.tag == BENEFICIARY).collect();
    if templates.len() > MAX_BENEFICIARIES {
        return Err(CardError::Malformed(format!(
            "more than {MAX_BENEFICIARIES} beneficiary templates"
        )));
    }
    Ok(templates
        .into_iter()
        .map(|t| {
            let field = |tag| t.child(tag).map(|n| n.value.to_vec());
            Record {
                surname: field(SURNAME),
                given_name: field(GIVEN_NAME),
                birth_date: field(BIRTH_DATE),
                nir: field(NIR),
            }
        })
        .collect())
}

/// One file the pointer map points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// 8-character ASCII name, trimmed (for logs: file names are not health data).
    pub name: String,
    /// The application's AID.
    pub aid: Vec<u8>,
    /// The EF id inside it.
    pub fid: u16,
}

/// Decodes the `2001` pointer map: `E0{ A0{ 82 … } 80 … }`.
///
/// Each `82` = entry id (bytes 0–1), two bytes, AID (bytes 4..); each `80` = 8-char
/// name (0–7), entry id (8–9), EF id (10–11). `82` and `80` objects are collected
/// anywhere under `E0`, since cards differ on whether `80` sits in `A0`. Entries
/// naming an unknown application, or too short, are skipped. Files come back in map
/// order, at most [`MAX_MAP_ENTRIES`].
pub fn pointer_map(file: &[u8]) -> Result<Vec<MapEntry>, CardError> {
    let nodes = tlv::decode(file).map_err(|e| malformed("pointer map", e))?;
    let mut apps: Vec<(u16, &[u8])> = Vec::new();
    let mut files: Vec<([u8; 8], u16, u16)> = Vec::new();
    for map in nodes.iter().filter(|n| n.tag == MAP) {
        let mut stack: Vec<&Node<'_>> = map.children.iter().rev().collect();
        // The tree is at most tlv::MAX_DEPTH deep and already in memory: this walk
        // visits each node once.
        while let Some(node) = stack.pop() {
            match node.tag {
                MAP_APPS => stack.extend(node.children.iter().rev()),
                MAP_APP if apps.len() < MAX_MAP_APPS => {
                    if let Some((id, rest)) = node.value.split_first_chunk::<2>()
                        && let Some(aid) = rest.get(2..)
                        && (5..=16).contains(&aid.len())
                    {
                        apps.push((u16::from_be_bytes(*id), aid));
                    }
                }
                MAP_FILE if files.len() < MAX_MAP_ENTRIES => {
                    if let Some((v, _)) = node.value.split_first_chunk::<12>() {
                        let [n0, n1, n2, n3, n4, n5, n6, n7, a0, a1, f0, f1] = *v;
                        files.push((
                            [n0, n1, n2, n3, n4, n5, n6, n7],
                            u16::from_be_bytes([a0, a1]),
                            u16::from_be_bytes([f0, f1]),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(files
        .into_iter()
        .filter_map(|(name, app, fid)| {
            let aid = apps.iter().find(|(id, _)| *id == app)?.1;
            Some(MapEntry {
                name: latin1::decode_trimmed(&name)
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .collect(),
                aid: aid.to_vec(),
                fid,
            })
        })
        .collect())
}

/// Merges the records of several files (in read order) into beneficiaries.
///
/// Templates that name someone (`80`/`81`/`82`) are the beneficiaries, in file and
/// template order; their own `93` is their NIR. A file whose templates name nobody
/// is a NIR list (the direct path's VITALE EF): its templates are matched to the
/// beneficiaries by position and fill a NIR still missing. Bounded by
/// [`MAX_BENEFICIARIES`].
pub fn merge(files: Vec<Vec<Record>>) -> Result<Vec<Record>, CardError> {
    let (named, nir_lists): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|f| f.iter().any(Record::names_someone));
    let mut people: Vec<Record> = named
        .into_iter()
        .flatten()
        .filter(Record::names_someone)
        .collect();
    if people.len() > MAX_BENEFICIARIES {
        return Err(CardError::Malformed(format!(
            "more than {MAX_BENEFICIARIES} beneficiaries"
        )));
    }
    for list in nir_lists {
        for (person, mut rec) in people.iter_mut().zip(list) {
            if person.nir.is_none() {
                person.nir = rec.nir.take();
            }
        }
    }
    Ok(people)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tlv::encode;

    fn person(surname: &[u8], given: &[u8], birth: &[u8], nir: Option<&[u8]>) -> Vec<u8> {
        let mut t = encode(0x80, surname);
        t.extend(encode(0x81, given));
        t.extend(encode(0x82, birth));
        if let Some(n) = nir {
            t.extend(encode(0x93, n));
        }
        encode(0x65, &t)
    }

    #[test]
    fn decodes_templates_and_ignores_other_objects() {
        let mut file = person(b"DUPONT   ", b"JEAN  ", b"19800203", None);
        file.extend(encode(0x66, &encode(0x80, b"20200101")));
        file.extend(encode(0x7F21, &encode(0x5F37, &[1, 2, 3])));
        file.extend(person(
            b"L\xC9A",
            b"Zo\xE9",
            b"20100000",
            Some(b"295109912611193"),
        ));
        file.extend([0u8; 64]);
        let recs = records(&file).expect("decodes");
        assert_eq!(recs.len(), 2);
        let b0 = recs[0].to_beneficiary(0);
        assert_eq!(b0.surname.expose(), "DUPONT");
        assert_eq!(b0.given_name.expose(), "JEAN");
        assert_eq!(b0.birth_date.expose().as_deref(), Some("1980-02-03"));
        assert!(!b0.birth_date_lunar);
        assert_eq!(*b0.nir.expose(), None);
        assert_eq!(b0.nir_key_valid, None);
        assert!(b0.ins.is_none());
        let b1 = recs[1].to_beneficiary(1);
        assert_eq!(b1.index, 1);
        assert_eq!(b1.surname.expose(), "LÉA");
        assert_eq!(b1.given_name.expose(), "Zoé");
        assert_eq!(*b1.birth_date.expose(), None);
        assert_eq!(b1.birth_date_raw.expose(), "20100000");
        assert!(b1.birth_date_lunar);
        assert_eq!(b1.nir.expose().as_deref(), Some("295109912611193"));
        assert_eq!(b1.nir_key_valid, Some(true));
    }

    #[test]
    fn nir_interpretation() {
        assert_eq!(interpret_nir(None), (None, None));
        assert_eq!(interpret_nir(Some(b"")), (None, None));
        assert_eq!(interpret_nir(Some(b"   \0")), (None, None));
        assert_eq!(interpret_nir(Some(b"\x01\x02")), (None, None));
        assert_eq!(
            interpret_nir(Some(b"253072A07300443")),
            (Some("253072A07300443".into()), Some(true))
        );
        assert_eq!(
            interpret_nir(Some(b"295109912611194 ")),
            (Some("295109912611194".into()), Some(false))
        );
        // Well shaped but impossible month: kept, flagged invalid.
        assert_eq!(
            interpret_nir(Some(b"180137512345601")),
            (Some("180137512345601".into()), Some(false))
        );
    }

    #[test]
    fn merge_matches_nir_lists_by_order() {
        let names = [
            person(b"A", b"a", b"19800101", None),
            person(b"B", b"b", b"19810101", None),
            person(b"C", b"c", b"20100101", None),
        ]
        .concat();
        let nirs = [
            encode(0x65, &encode(0x93, b"295109912611193")),
            encode(0x65, &[]),
            encode(0x65, &encode(0x93, b"253072B07300470")),
        ]
        .concat();
        let people = merge(vec![
            records(&nirs).expect("nirs"),
            records(&names).expect("names"),
        ])
        .expect("merges");
        let b: Vec<_> = people
            .iter()
            .enumerate()
            .map(|(i, r)| r.to_beneficiary(i as u32))
            .collect();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].nir.expose().as_deref(), Some("295109912611193"));
        assert_eq!(*b[1].nir.expose(), None);
        assert_eq!(b[2].nir.expose().as_deref(), Some("253072B07300470"));
        assert_eq!(b[2].surname.expose(), "C");
    }

    #[test]
    fn merge_keeps_own_nir_and_tolerates_short_lists() {
        let full = person(b"A", b"a", b"19800101", Some(b"295109912611193"));
        let other_nir = encode(0x65, &encode(0x93, b"253072A07300443"));
        let people = merge(vec![
            records(&full).expect("full"),
            records(&other_nir).expect("nir"),
            vec![],
        ])
        .expect("merges");
        assert_eq!(people.len(), 1);
        assert_eq!(
            people[0].to_beneficiary(0).nir.expose().as_deref(),
            Some("295109912611193")
        );
        assert!(merge(vec![]).expect("empty").is_empty());
    }

    #[test]
    fn too_many_templates_is_malformed() {
        let file: Vec<u8> = (0..=MAX_BENEFICIARIES)
            .flat_map(|_| person(b"X", b"Y", b"19800101", None))
            .collect();
        assert!(matches!(records(&file), Err(CardError::Malformed(_))));
        let half: Vec<u8> = (0..MAX_BENEFICIARIES)
            .flat_map(|_| person(b"X", b"Y", b"19800101", None))
            .collect();
        let r = || records(&half).expect("fits");
        assert!(matches!(
            merge(vec![r(), r()]),
            Err(CardError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_files_are_malformed() {
        assert!(matches!(
            records(&[0x65, 0x82, 0xFF, 0xFF, 0x80, 0x03, b'A', b'B', b'C']),
            Err(CardError::Malformed(_))
        ));
        let mut deep = encode(0x80, b"A");
        for _ in 0..1000 {
            deep = encode(0x65, &deep);
        }
        assert!(matches!(records(&deep), Err(CardError::Malformed(_))));
    }

    fn map_app(id: u16, aid: &[u8]) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend([0, 0]);
        v.extend_from_slice(aid);
        encode(0x82, &v)
    }

    fn map_file(name: &[u8; 8], app: u16, fid: u16) -> Vec<u8> {
        let mut v = name.to_vec();
        v.extend(app.to_be_bytes());
        v.extend(fid.to_be_bytes());
        encode(0x80, &v)
    }

    #[test]
    fn pointer_map_entries_resolve_their_application() {
        let aid1 = crate::card::detect::VITALE_AID;
        let aid2 = crate::card::detect::MF_VITALE_AID;
        let mut body = encode(0xA0, &[map_app(1, &aid1), map_app(2, &aid2)].concat());
        body.extend(map_file(b"IDENTITE", 1, 0x2004));
        body.extend(map_file(b"CERTIFIC", 2, 0x2006));
        body.extend(map_file(b"ORPHAN  ", 9, 0x2007));
        body.extend(encode(0x80, b"short"));
        let mut file = encode(0xE0, &body);
        file.extend([0u8; 20]);
        let entries = pointer_map(&file).expect("decodes");
        assert_eq!(
            entries,
            vec![
                MapEntry {
                    name: "IDENTITE".into(),
                    aid: aid1.to_vec(),
                    fid: 0x2004
                },
                MapEntry {
                    name: "CERTIFIC".into(),
                    aid: aid2.to_vec(),
                    fid: 0x2006
                },
            ]
        );
    }

    #[test]
    fn pointer_map_accepts_files_inside_a0_and_bounds_entries() {
        let aid = crate::card::detect::VITALE_AID;
        let mut apps = map_app(1, &aid);
        for i in 0..100u16 {
            apps.extend(map_file(b"FILE    ", 1, 0x3000 + i));
        }
        let file = encode(0xE0, &encode(0xA0, &apps));
        let entries = pointer_map(&file).expect("decodes");
        assert_eq!(entries.len(), MAX_MAP_ENTRIES);
        assert_eq!(entries[0].fid, 0x3000);
        assert!(pointer_map(&[0xE0, 0x83, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(pointer_map(&[]).expect("empty").is_empty());
    }
}
