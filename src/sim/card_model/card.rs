//! [`VirtualVitale`]: the APDU state machine of the virtual Carte Vitale (ISO 7816-4
//! SELECT / READ BINARY / GET RESPONSE, answered the way a T=0 card does).

use super::description::{CardDescription, Hostile, T0Mode};
use super::layout::{Df, Layout};
use crate::codec::tlv::encode;
use crate::sim::VirtualCard;

const SW_OK: [u8; 2] = [0x90, 0x00];
const SW_WRONG_LENGTH: [u8; 2] = [0x67, 0x00];
const SW_NO_CURRENT_EF: [u8; 2] = [0x69, 0x86];
const SW_SECURITY: [u8; 2] = [0x69, 0x82];
const SW_NO_PENDING: [u8; 2] = [0x69, 0x85];
const SW_NOT_FOUND: [u8; 2] = [0x6A, 0x82];
const SW_BAD_P1P2: [u8; 2] = [0x6A, 0x86];
const SW_OFFSET: [u8; 2] = [0x6B, 0x00];
const SW_INS: [u8; 2] = [0x6D, 0x00];
const SW_CLA: [u8; 2] = [0x6E, 0x00];

/// A virtual Carte Vitale 2 built from a [`CardDescription`].
#[derive(Debug, Clone)]
pub struct VirtualVitale {
    atr: Vec<u8>,
    layout: Layout,
    t0: T0Mode,
    hostile: Hostile,
    df: Option<Df>,
    ef: Option<usize>,
    pending: Vec<u8>,
    apdus: usize,
}

impl VirtualVitale {
    /// A card for a description (validated here too).
    pub fn new(desc: &CardDescription) -> Result<VirtualVitale, String> {
        desc.validate()?;
        Ok(VirtualVitale {
            atr: desc.atr_bytes()?,
            layout: Layout::build(desc),
            t0: desc.t0,
            hostile: desc.hostile,
            df: None,
            ef: None,
            pending: Vec::new(),
            apdus: 0,
        })
    }

    /// The demo family card.
    pub fn demo_family() -> VirtualVitale {
        let desc = CardDescription::demo_family();
        VirtualVitale {
            atr: super::description::VITALE2_ATR.to_vec(),
            layout: Layout::build(&desc),
            t0: desc.t0,
            hostile: desc.hostile,
            df: None,
            ef: None,
            pending: Vec::new(),
            apdus: 0,
        }
    }

    /// Switches the T=0 behaviour (tests exercise each one on the same card).
    pub fn set_t0(&mut self, t0: T0Mode) {
        self.t0 = t0;
    }

    /// Switches the misbehaviour.
    pub fn set_hostile(&mut self, hostile: Hostile) {
        self.hostile = hostile;
    }

    /// APDUs answered since creation.
    pub fn apdu_count(&self) -> usize {
        self.apdus
    }

    fn select(&mut self, p1: u8, p2: u8, data: &[u8]) -> Vec<u8> {
        let fci = match (p1, data) {
            (0x00, [0x3F, 0x00]) => {
                self.df = Some(Df::Mf);
                self.ef = None;
                encode(0x62, &encode(0x83, &[0x3F, 0x00]))
            }
            (0x04, aid) => match Df::from_aid(aid) {
                Some(df) => {
                    self.df = Some(df);
                    self.ef = None;
                    encode(0x6F, &encode(0x84, aid))
                }
                None => return SW_NOT_FOUND.to_vec(),
            },
            (0x00 | 0x02, [hi, lo]) => {
                let Some(df) = self.df else {
                    return SW_NOT_FOUND.to_vec();
                };
                match self.layout.by_fid(df, u16::from_be_bytes([*hi, *lo])) {
                    Some(i) => {
                        self.ef = Some(i);
                        let size = u16::try_from(self.layout.efs[i].data.len()).unwrap_or(u16::MAX);
                        let mut body = encode(0x80, &size.to_be_bytes());
                        body.extend(encode(0x83, &[*hi, *lo]));
                        encode(0x62, &body)
                    }
                    None => return SW_NOT_FOUND.to_vec(),
                }
            }
            (0x00 | 0x02, _) => return SW_WRONG_LENGTH.to_vec(),
            _ => return SW_BAD_P1P2.to_vec(),
        };
        // P2 = 0C: no FCI wanted.
        if self.t0 == T0Mode::GetResponse && p2 & 0x0C != 0x0C {
            self.answer_later(fci)
        } else {
            SW_OK.to_vec()
        }
    }

    fn read_binary(&mut self, p1: u8, p2: u8, ne: usize) -> Vec<u8> {
        let (index, offset) = if p1 & 0x80 != 0 {
            let Some(df) = self.df else {
                return SW_NOT_FOUND.to_vec();
            };
            match self.layout.by_sfi(df, p1 & 0x1F) {
                Some(i) => {
                    self.ef = Some(i);
                    (i, usize::from(p2))
                }
                None => return SW_NOT_FOUND.to_vec(),
            }
        } else {
            match self.ef {
                Some(i) => (i, usize::from(u16::from_be_bytes([p1 & 0x7F, p2]))),
                None => return SW_NO_CURRENT_EF.to_vec(),
            }
        };
        let Some(ef) = self.layout.efs.get(index) else {
            return SW_NOT_FOUND.to_vec();
        };
        if ef.protected {
            return SW_SECURITY.to_vec();
        }
        let Some(rest) = ef.data.get(offset..).filter(|r| !r.is_empty()) else {
            return SW_OFFSET.to_vec();
        };
        match self.t0 {
            T0Mode::Plain => with_sw(&rest[..ne.min(rest.len())], SW_OK),
            T0Mode::WrongLength if ne > rest.len() => vec![0x6C, le_byte(rest.len())],
            T0Mode::WrongLength => with_sw(&rest[..ne], SW_OK),
            T0Mode::GetResponse => {
                let data = rest[..ne.min(rest.len())].to_vec();
                self.answer_later(data)
            }
        }
    }

    fn get_response(&mut self, ne: usize) -> Vec<u8> {
        if self.pending.is_empty() {
            return SW_NO_PENDING.to_vec();
        }
        if ne > self.pending.len() {
            return vec![0x6C, le_byte(self.pending.len())];
        }
        let data: Vec<u8> = self.pending.drain(..ne).collect();
        if self.pending.is_empty() {
            with_sw(&data, SW_OK)
        } else {
            with_sw(&data, [0x61, le_byte(self.pending.len().min(256))])
        }
    }

    fn answer_later(&mut self, data: Vec<u8>) -> Vec<u8> {
        let sw2 = le_byte(data.len().min(256));
        self.pending = data;
        vec![0x61, sw2]
    }
}

/// Le / SW2 byte for a count of 1..=256 (256 is written `00`).
fn le_byte(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(0)
}

fn with_sw(data: &[u8], sw: [u8; 2]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 2);
    v.extend_from_slice(data);
    v.extend_from_slice(&sw);
    v
}

/// Ne of a short APDU's Le byte (`00` = 256); a case-1 APDU without Le asks for 256.
fn ne(capdu: &[u8]) -> Option<usize> {
    match capdu.get(4..) {
        None | Some([]) => Some(256),
        Some([0]) => Some(256),
        Some([le]) => Some(usize::from(*le)),
        Some(_) => None,
    }
}

impl VirtualCard for VirtualVitale {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        self.apdus += 1;
        let [cla, ins, p1, p2, ..] = *capdu else {
            return SW_WRONG_LENGTH.to_vec();
        };
        match self.hostile {
            Hostile::Mute => return Vec::new(),
            Hostile::Endless61 if ins == 0xC0 => return with_sw(&[0u8; 16], [0x61, 0x10]),
            Hostile::Endless61 => return vec![0x61, 0x10],
            _ => {}
        }
        if ins != 0xC0 {
            // ISO 7816-4: a pending response is lost when any other command arrives.
            self.pending.clear();
        }
        if cla != 0x00 {
            return SW_CLA.to_vec();
        }
        match ins {
            0xA4 => {
                let lc = capdu.get(4).copied().map(usize::from).unwrap_or(0);
                match capdu.get(5..5 + lc) {
                    // T=0 case 4 has no Le; tolerate one trailing Le byte anyway.
                    Some(data) if capdu.len() <= 6 + lc => self.select(p1, p2, data),
                    _ => SW_WRONG_LENGTH.to_vec(),
                }
            }
            0xB0 => match ne(capdu) {
                Some(n) => self.read_binary(p1, p2, n),
                None => SW_WRONG_LENGTH.to_vec(),
            },
            0xC0 if p1 == 0 && p2 == 0 => match ne(capdu) {
                Some(n) => self.get_response(n),
                None => SW_WRONG_LENGTH.to_vec(),
            },
            0xC0 => SW_BAD_P1P2.to_vec(),
            _ => SW_INS.to_vec(),
        }
    }

    fn reset(&mut self) {
        self.df = None;
        self.ef = None;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::card_model::layout::{EF_IDENTITY, MF_VITALE_AID, VITALE_AID};

    fn select_vitale() -> Vec<u8> {
        let mut v = vec![0x00, 0xA4, 0x04, 0x00, 0x0B];
        v.extend_from_slice(&VITALE_AID);
        v
    }

    fn sw(r: &[u8]) -> u16 {
        u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
    }

    /// Follows 61XX / 6CXX like a host would, returning data and final SW.
    fn host(card: &mut VirtualVitale, capdu: &[u8]) -> (Vec<u8>, u16) {
        let mut cmd = capdu.to_vec();
        let mut data = Vec::new();
        for _ in 0..16 {
            let r = card.process(&cmd);
            let (body, s) = r.split_at(r.len() - 2);
            data.extend_from_slice(body);
            match s {
                [0x61, xx] => cmd = vec![0x00, 0xC0, 0x00, 0x00, *xx],
                [0x6C, xx] => {
                    cmd = capdu.to_vec();
                    cmd[4] = *xx;
                }
                _ => return (data, sw(&r)),
            }
        }
        panic!("no final status");
    }

    fn read_all(card: &mut VirtualVitale) -> Vec<u8> {
        let mut out = Vec::new();
        let mut offset = 0u16;
        loop {
            let [hh, ll] = offset.to_be_bytes();
            let (page, s) = host(card, &[0x00, 0xB0, hh, ll, 0x00]);
            if s != 0x9000 {
                break;
            }
            out.extend_from_slice(&page);
            if page.len() < 256 {
                break;
            }
            offset += 256;
        }
        out
    }

    #[test]
    fn atr_is_vitale2_t0() {
        let card = VirtualVitale::demo_family();
        assert_eq!(
            card.atr(),
            vec![0x3B, 0x75, 0x13, 0x00, 0x00, 0x44, 0x09, 0xEA, 0x90, 0x00]
        );
    }

    #[test]
    fn direct_path_answers_exactly_as_cards_md() {
        let mut card = VirtualVitale::demo_family();
        card.set_t0(T0Mode::Plain);
        assert_eq!(
            card.process(&[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]),
            vec![0x90, 0x00]
        );
        let names = card.process(&[0x00, 0xB0, 0x82, 0x00, 0x00]);
        assert_eq!(sw(&names), 0x9000);
        assert_eq!(names[0], 0x65);
        assert!(
            names.windows(5).any(|w| w == b"Ga\xEBl "),
            "Gaël in ISO-8859-1"
        );
        assert!(names.windows(8).any(|w| w == b"19850300"));
        assert_eq!(card.process(&select_vitale()), vec![0x90, 0x00]);
        let nirs = card.process(&[0x00, 0xB0, 0x82, 0x00, 0x00]);
        assert_eq!(&nirs[..4], &[0x65, 0x11, 0x93, 0x0F]);
        assert_eq!(&nirs[4..19], b"185032A00401238");
    }

    #[test]
    fn wrong_length_mode_answers_6cxx_then_exact_data() {
        let mut card = VirtualVitale::demo_family();
        card.process(&[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
        let r = card.process(&[0x00, 0xB0, 0x82, 0x00, 0x00]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0], 0x6C);
        let xx = r[1];
        let r = card.process(&[0x00, 0xB0, 0x82, 0x00, xx]);
        assert_eq!(r.len(), usize::from(xx) + 2);
        assert_eq!(sw(&r), 0x9000);
    }

    #[test]
    fn get_response_mode_answers_61xx_and_serves_get_response() {
        let mut card = VirtualVitale::demo_family();
        card.set_t0(T0Mode::GetResponse);
        let r = card.process(&select_vitale());
        assert_eq!(r[0], 0x61, "FCI waits behind 61XX");
        let fci = card.process(&[0x00, 0xC0, 0x00, 0x00, r[1]]);
        assert_eq!(fci[0], 0x6F);
        assert_eq!(sw(&fci), 0x9000);
        // Asking for too much gets 6CXX; a partial fetch gets 61XX for the rest.
        card.process(&[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]);
        let r = card.process(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
        assert_eq!(r[0], 0x61);
        let total = usize::from(r[1]);
        let part = card.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]);
        assert_eq!(part.len(), 0x12);
        assert_eq!(&part[0x10..], &[0x61, (total - 0x10) as u8]);
        let r = card.process(&[0x00, 0xC0, 0x00, 0x00, 0xFF]);
        assert_eq!(r, vec![0x6C, (total - 0x10) as u8]);
        // Any other command drops the pending response.
        assert_eq!(
            card.process(&[0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00]),
            vec![0x90, 0x00]
        );
        assert_eq!(
            card.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]),
            vec![0x69, 0x85]
        );
    }

    #[test]
    fn pointer_map_lists_every_ef_and_pages_by_256() {
        for mode in [T0Mode::Plain, T0Mode::WrongLength, T0Mode::GetResponse] {
            let mut card = VirtualVitale::demo_family();
            card.set_t0(mode);
            host(&mut card, &select_vitale());
            assert_eq!(
                host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]).1,
                0x9000
            );
            let map = read_all(&mut card);
            assert_eq!(map[0], 0xE0, "{mode:?}");
            assert!(map.windows(11).any(|w| w == VITALE_AID));
            assert!(map.windows(14).any(|w| w == MF_VITALE_AID));
            for name in [&b"IDENTITE"[..], b"VALIDITE", b"CERTIFIC", b"DROITS  "] {
                assert!(map.windows(8).any(|w| w == name), "{mode:?}");
            }
            let [hi, lo] = EF_IDENTITY.to_be_bytes();
            assert_eq!(
                host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, hi, lo]).1,
                0x9000
            );
            let identity = read_all(&mut card);
            assert!(identity.len() > 256, "{mode:?}: read past the first page");
            assert_eq!(identity[0], 0x65);
            assert!(identity.windows(15).any(|w| w == b"287047505612321"));
            assert!(identity.ends_with(&[0; 16]));
            // Protected EF: selectable, unreadable.
            assert_eq!(
                host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x10]).1,
                0x9000
            );
            assert_eq!(host(&mut card, &[0x00, 0xB0, 0x00, 0x00, 0x00]).1, 0x6982);
            // Validity and certificate live in MF_VITALE.
            let mut sel = vec![0x00, 0xA4, 0x04, 0x00, 0x0E];
            sel.extend_from_slice(&MF_VITALE_AID);
            host(&mut card, &sel);
            host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x05]);
            assert_eq!(&read_all(&mut card)[..12], b"\x66\x0A\x80\x0820240115");
            host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x06]);
            assert_eq!(&read_all(&mut card)[..2], &[0x7F, 0x21]);
        }
    }

    #[test]
    fn unknown_things_get_iso_errors() {
        let mut card = VirtualVitale::demo_family();
        assert_eq!(
            card.process(&[0x00, 0xA4, 0x04, 0x00, 0x03, 1, 2, 3]),
            vec![0x6A, 0x82]
        );
        assert_eq!(
            card.process(&[0x00, 0xB0, 0x00, 0x00, 0x00]),
            vec![0x69, 0x86]
        );
        assert_eq!(
            card.process(&[0x00, 0xCA, 0x00, 0x00, 0x00]),
            vec![0x6D, 0x00]
        );
        assert_eq!(
            card.process(&[0xBC, 0xB0, 0x00, 0x00, 0x00]),
            vec![0x6E, 0x00]
        );
        assert_eq!(card.process(&[0x00]), vec![0x67, 0x00]);
        host(&mut card, &select_vitale());
        assert_eq!(
            card.process(&[0x00, 0xA4, 0x02, 0x00, 0x02, 0x99, 0x99]),
            vec![0x6A, 0x82]
        );
        host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]);
        assert_eq!(
            card.process(&[0x00, 0xB0, 0x7F, 0x00, 0x00]),
            vec![0x6B, 0x00]
        );
    }

    #[test]
    fn paths_can_be_turned_off() {
        let mut desc = CardDescription::demo_family();
        desc.paths = super::super::ReadPaths::Direct;
        let mut card = VirtualVitale::new(&desc).expect("card");
        host(&mut card, &select_vitale());
        assert_eq!(
            host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]).1,
            0x6A82
        );
        desc.paths = super::super::ReadPaths::PointerMap;
        let mut card = VirtualVitale::new(&desc).expect("card");
        host(&mut card, &[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
        assert_eq!(host(&mut card, &[0x00, 0xB0, 0x82, 0x00, 0x00]).1, 0x6A82);
    }

    #[test]
    fn hostile_modes_misbehave_as_named() {
        let mut card = VirtualVitale::demo_family();
        card.set_hostile(Hostile::Endless61);
        assert_eq!(card.process(&select_vitale()), vec![0x61, 0x10]);
        for _ in 0..100 {
            let r = card.process(&[0x00, 0xC0, 0x00, 0x00, 0x10]);
            assert_eq!(&r[16..], &[0x61, 0x10]);
        }
        card.set_hostile(Hostile::Mute);
        assert!(card.process(&select_vitale()).is_empty());

        let mut desc = CardDescription::demo_family();
        desc.hostile = Hostile::BadLength;
        let mut card = VirtualVitale::new(&desc).expect("card");
        host(&mut card, &[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
        let (data, _) = host(&mut card, &[0x00, 0xB0, 0x82, 0x00, 0x00]);
        assert_eq!(&data[..4], &[0x65, 0x82, 0xFF, 0xFF]);

        desc.hostile = Hostile::DeepNesting;
        let mut card = VirtualVitale::new(&desc).expect("card");
        host(&mut card, &select_vitale());
        host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x04]);
        let data = read_all(&mut card);
        assert!(data.len() > 3000);
        assert_eq!(&data[..2], &[0x65, 0x82]);

        desc.hostile = Hostile::Protected;
        let mut card = VirtualVitale::new(&desc).expect("card");
        host(&mut card, &[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
        assert_eq!(host(&mut card, &[0x00, 0xB0, 0x82, 0x00, 0x00]).1, 0x6982);
    }

    #[test]
    fn reset_forgets_selection() {
        let mut card = VirtualVitale::demo_family();
        host(&mut card, &select_vitale());
        host(&mut card, &[0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]);
        card.reset();
        assert_eq!(
            card.process(&[0x00, 0xB0, 0x00, 0x00, 0x00]),
            vec![0x69, 0x86]
        );
    }
}
