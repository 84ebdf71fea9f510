//! The card's files, built from a [`CardDescription`]: the direct-path EFs (SFI 2 in
//! the MF and in the VITALE application), the pointer map EF `2001` and the EFs it
//! points to (cards.md §1). Text is ISO-8859-1, space padded; files end with `00`
//! padding. The hostile images replace the identity files' contents.

use super::description::{CardDescription, Hostile, ReadPaths, parse_ef};
use crate::codec::tlv::encode;

/// VITALE application id.
pub const VITALE_AID: [u8; 11] = [
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];
/// MF_VITALE application id.
pub const MF_VITALE_AID: [u8; 14] = [
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x4D, 0x46, 0x5F, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];

/// EF of the MF holding `65{80 81 82}` per beneficiary (read by SFI 2).
pub const EF_DIRECT_NAMES: u16 = 0x2002;
/// EF of VITALE holding `65{93}` per beneficiary (read by SFI 2).
pub const EF_DIRECT_NIRS: u16 = 0x2003;
/// The pointer map.
pub const EF_MAP: u16 = 0x2001;
/// Pointer-map EF (VITALE) with complete `65{80 81 82 90 93}` templates.
pub const EF_IDENTITY: u16 = 0x2004;
/// Pointer-map EF (MF_VITALE) with `66{80}` validity.
pub const EF_VALIDITY: u16 = 0x2005;
/// Pointer-map EF (MF_VITALE) with certificate parts `7F21{5F37 5F38}`.
pub const EF_CERTIFICATE: u16 = 0x2006;
/// EF ids the card uses itself (card files may not reuse them).
pub const RESERVED_EFS: [u16; 7] = [
    0x3F00,
    EF_MAP,
    EF_DIRECT_NAMES,
    EF_DIRECT_NIRS,
    EF_IDENTITY,
    EF_VALIDITY,
    EF_CERTIFICATE,
];

/// Names are space padded to this width on the card.
const NAME_WIDTH: usize = 25;
/// Nesting depth of the deep-nesting hostile image.
pub const HOSTILE_DEPTH: usize = 1000;

/// A dedicated file (the MF or an application).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Df {
    /// `3F00`.
    Mf,
    /// The VITALE application.
    Vitale,
    /// The MF_VITALE application.
    MfVitale,
}

impl Df {
    /// The DF an AID selects.
    pub fn from_aid(aid: &[u8]) -> Option<Df> {
        if aid == VITALE_AID {
            Some(Df::Vitale)
        } else if aid == MF_VITALE_AID {
            Some(Df::MfVitale)
        } else {
            None
        }
    }
}

/// One elementary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ef {
    /// The DF it lives in.
    pub df: Df,
    /// File id.
    pub fid: u16,
    /// Short EF id, for READ BINARY by SFI.
    pub sfi: Option<u8>,
    /// Contents, `00` padded.
    pub data: Vec<u8>,
    /// Answers `69 82` to READ BINARY.
    pub protected: bool,
}

/// Every file of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The files.
    pub efs: Vec<Ef>,
}

impl Layout {
    /// Lays out a validated description.
    pub fn build(desc: &CardDescription) -> Layout {
        let mut efs = Vec::new();
        let hostile_image = hostile_image(desc.hostile);
        let identity = |normal: Vec<u8>| hostile_image.clone().unwrap_or(normal);
        let protect = desc.hostile == Hostile::Protected;
        if matches!(desc.paths, ReadPaths::Direct | ReadPaths::Both) {
            let names: Vec<u8> = desc
                .beneficiaries
                .iter()
                .flat_map(|b| {
                    let mut t = encode(0x80, &latin1_padded(&b.surname));
                    t.extend(encode(0x81, &latin1_padded(&b.given_name)));
                    t.extend(encode(0x82, b.birth_date.as_bytes()));
                    encode(0x65, &t)
                })
                .collect();
            let nirs: Vec<u8> = desc
                .beneficiaries
                .iter()
                .flat_map(|b| {
                    // A template per beneficiary, empty without NIR, so that order matches.
                    let t = b
                        .nir
                        .as_ref()
                        .map(|n| encode(0x93, n.as_bytes()))
                        .unwrap_or_default();
                    encode(0x65, &t)
                })
                .collect();
            efs.push(file(
                Df::Mf,
                EF_DIRECT_NAMES,
                Some(2),
                identity(names),
                protect,
            ));
            efs.push(file(
                Df::Vitale,
                EF_DIRECT_NIRS,
                Some(2),
                identity(nirs),
                protect,
            ));
        }
        if matches!(desc.paths, ReadPaths::PointerMap | ReadPaths::Both) {
            let full: Vec<u8> = desc
                .beneficiaries
                .iter()
                .flat_map(|b| {
                    let mut t = encode(0x80, &latin1_padded(&b.surname));
                    t.extend(encode(0x81, &latin1_padded(&b.given_name)));
                    t.extend(encode(0x82, b.birth_date.as_bytes()));
                    if let Some(n) = &b.nationality {
                        t.extend(encode(0x90, n.as_bytes()));
                    }
                    if let Some(n) = &b.nir {
                        t.extend(encode(0x93, n.as_bytes()));
                    }
                    encode(0x65, &t)
                })
                .collect();
            let mut entries = vec![(*b"IDENTITE", 1u16, EF_IDENTITY)];
            efs.push(file(Df::Vitale, EF_IDENTITY, None, identity(full), protect));
            if let Some(v) = &desc.validity_start {
                entries.push((*b"VALIDITE", 2, EF_VALIDITY));
                let data = encode(0x66, &encode(0x80, v.as_bytes()));
                efs.push(file(Df::MfVitale, EF_VALIDITY, None, data, protect));
            }
            entries.push((*b"CERTIFIC", 2, EF_CERTIFICATE));
            efs.push(file(
                Df::MfVitale,
                EF_CERTIFICATE,
                None,
                certificate(),
                protect,
            ));
            for p in &desc.protected_efs {
                let Ok(fid) = parse_ef(&p.ef) else { continue };
                let mut name = [b' '; 8];
                for (d, s) in name.iter_mut().zip(p.name.bytes()) {
                    *d = s;
                }
                entries.push((name, 1, fid));
                efs.push(file(Df::Vitale, fid, None, vec![0; 32], true));
            }
            efs.push(file(Df::Vitale, EF_MAP, None, pointer_map(&entries), false));
        }
        Layout { efs }
    }

    /// The EF `fid` in `df`.
    pub fn by_fid(&self, df: Df, fid: u16) -> Option<usize> {
        self.efs.iter().position(|e| e.df == df && e.fid == fid)
    }

    /// The EF with short id `sfi` in `df`.
    pub fn by_sfi(&self, df: Df, sfi: u8) -> Option<usize> {
        self.efs
            .iter()
            .position(|e| e.df == df && e.sfi == Some(sfi))
    }
}

fn file(df: Df, fid: u16, sfi: Option<u8>, content: Vec<u8>, protected: bool) -> Ef {
    Ef {
        df,
        fid,
        sfi,
        data: padded(content),
        protected,
    }
}

/// `00` padding to a multiple of 32 bytes, at least 16 bytes of it.
fn padded(mut content: Vec<u8>) -> Vec<u8> {
    let len = (content.len() + 16).div_ceil(32) * 32;
    content.resize(len, 0);
    content
}

/// ISO-8859-1 bytes, space padded to [`NAME_WIDTH`]. Validation guarantees every
/// character fits in one byte; anything else would become `?`.
fn latin1_padded(s: &str) -> Vec<u8> {
    let mut out: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect();
    if out.len() < NAME_WIDTH {
        out.resize(NAME_WIDTH, b' ');
    }
    out
}

/// `E0{ A0{ 82 app… } 80 file… }`: apps 0001 = VITALE, 0002 = MF_VITALE.
fn pointer_map(files: &[([u8; 8], u16, u16)]) -> Vec<u8> {
    let mut apps = Vec::new();
    for (id, aid) in [(1u16, &VITALE_AID[..]), (2, &MF_VITALE_AID[..])] {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&[0x00, 0x00]);
        v.extend_from_slice(aid);
        apps.extend(encode(0x82, &v));
    }
    let mut body = encode(0xA0, &apps);
    for (name, app, fid) in files {
        let mut v = name.to_vec();
        v.extend_from_slice(&app.to_be_bytes());
        v.extend_from_slice(&fid.to_be_bytes());
        body.extend(encode(0x80, &v));
    }
    encode(0xE0, &body)
}

/// Opaque certificate parts (kept raw by readers, never interpreted).
fn certificate() -> Vec<u8> {
    let signature: Vec<u8> = (0..=255u8).cycle().skip(7).take(200).collect();
    let mut body = encode(0x5F37, &signature);
    body.extend(encode(0x5F38, &[0xA5; 58]));
    encode(0x7F21, &body)
}

/// What replaces the identity files in a hostile mode, if anything.
fn hostile_image(h: Hostile) -> Option<Vec<u8>> {
    match h {
        Hostile::BadLength => Some(vec![0x65, 0x82, 0xFF, 0xFF, 0x80, 0x03, b'A', b'B', b'C']),
        Hostile::DeepNesting => {
            let mut v = encode(0x80, b"A");
            for _ in 0..HOSTILE_DEPTH {
                v = encode(0x65, &v);
            }
            Some(v)
        }
        Hostile::None | Hostile::Endless61 | Hostile::Mute | Hostile::Protected => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_layout_has_both_paths_and_padding() {
        let l = Layout::build(&CardDescription::demo_family());
        let names = &l.efs[l.by_sfi(Df::Mf, 2).expect("names")];
        assert_eq!(names.data[0], 0x65);
        assert!(names.data.ends_with(&[0; 16]));
        // "LEFÈVRE" in ISO-8859-1, space padded.
        let pos = names
            .data
            .windows(7)
            .position(|w| w == b"LEF\xC8VRE")
            .expect("latin-1 surname");
        assert_eq!(names.data[pos - 2..pos], [0x80, 25]);
        let nirs = &l.efs[l.by_sfi(Df::Vitale, 2).expect("nirs")];
        // Third beneficiary has no NIR: an empty template keeps the order.
        let third = nirs
            .data
            .windows(3)
            .filter(|w| *w == [0x93, 15, b'2'] || *w == [0x93, 15, b'1'])
            .count();
        assert_eq!(third, 2);
        let map = &l.efs[l.by_fid(Df::Vitale, EF_MAP).expect("map")];
        assert_eq!(map.data[0], 0xE0);
        let identity = &l.efs[l.by_fid(Df::Vitale, EF_IDENTITY).expect("identity")];
        assert!(identity.data.len() > 256, "family identity EF spans pages");
        assert!(l.efs[l.by_fid(Df::Vitale, 0x2010).expect("protected")].protected);
    }

    #[test]
    fn deep_nesting_image_is_a_thousand_deep() {
        let v = hostile_image(Hostile::DeepNesting).expect("image");
        assert_eq!(v[0], 0x65);
        assert!(v.len() > 3000 && v.len() < 5000, "{}", v.len());
    }
}
