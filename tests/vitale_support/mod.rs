//! Test-only Carte Vitale images: a small [`VirtualCard`] serving files by path
//! (MF or an application, EF id, optional short id), with the T=0 behaviours of
//! cards.md §1, and builders for the files of both public read paths.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use vitale_bridge::card::detect::{MF_VITALE_AID, VITALE_AID};
use vitale_bridge::card::{CardType, ReadContext};
use vitale_bridge::codec::tlv::encode;
use vitale_bridge::sim::{SimChannel, VirtualCard};

/// A Vitale 2 ATR from the cards.md list.
pub const VITALE2_ATR: [u8; 10] = [0x3B, 0x75, 0x13, 0x00, 0x00, 0x47, 0x09, 0xEA, 0x90, 0x00];

/// Where a file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Df {
    /// The master file `3F00`.
    Mf,
    /// An application selected by AID.
    App(Vec<u8>),
}

/// One EF.
#[derive(Debug, Clone)]
pub struct File {
    pub df: Df,
    pub fid: u16,
    pub sfi: Option<u8>,
    pub data: Vec<u8>,
    pub protected: bool,
}

/// How the card answers a READ BINARY whose Le does not fit, and where data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum T0 {
    /// Data then `90 00`.
    Plain,
    /// `6C XX` when Le = 00 asks for more than remains.
    WrongLe,
    /// `61 XX` for every answer with data; GET RESPONSE hands it out.
    GetResponse,
}

/// A file-serving card.
pub struct FileCard {
    pub atr: Vec<u8>,
    pub files: Vec<File>,
    pub apps: Vec<Vec<u8>>,
    pub t0: T0,
    /// Answers `6E 00` (class not supported) to everything, like a Vitale 1 to CLA 00.
    pub cla_refused: bool,
    df: Option<Df>,
    ef: Option<usize>,
    pending: Vec<u8>,
    /// Every C-APDU received, shared with the test.
    pub log: Arc<Mutex<Vec<Vec<u8>>>>,
}

const OK: [u8; 2] = [0x90, 0x00];

fn with_sw(data: &[u8], sw: [u8; 2]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.extend_from_slice(&sw);
    v
}

impl FileCard {
    /// An empty card with `atr` knowing the VITALE and MF_VITALE applications.
    pub fn new(atr: &[u8]) -> Self {
        Self {
            atr: atr.to_vec(),
            files: Vec::new(),
            apps: vec![VITALE_AID.to_vec(), MF_VITALE_AID.to_vec()],
            t0: T0::Plain,
            cla_refused: false,
            df: None,
            ef: None,
            pending: Vec::new(),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Adds a file.
    pub fn file(mut self, df: Df, fid: u16, sfi: Option<u8>, data: Vec<u8>) -> Self {
        self.files.push(File {
            df,
            fid,
            sfi,
            data,
            protected: false,
        });
        self
    }

    /// Adds a file that answers `69 82` to READ BINARY.
    pub fn protected(mut self, df: Df, fid: u16, sfi: Option<u8>) -> Self {
        self.files.push(File {
            df,
            fid,
            sfi,
            data: vec![0; 32],
            protected: true,
        });
        self
    }

    /// Sets the T=0 behaviour.
    pub fn t0(mut self, t0: T0) -> Self {
        self.t0 = t0;
        self
    }

    /// The commands received so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.log.lock().expect("log").clone()
    }

    fn answer(&mut self, data: Vec<u8>) -> Vec<u8> {
        if self.t0 == T0::GetResponse && !data.is_empty() {
            let sw2 = u8::try_from(data.len().min(256)).unwrap_or(0);
            self.pending = data;
            vec![0x61, sw2]
        } else {
            with_sw(&data, OK)
        }
    }

    fn select(&mut self, p1: u8, data: &[u8]) -> Vec<u8> {
        match (p1, data) {
            (0x00, [0x3F, 0x00]) => {
                self.df = Some(Df::Mf);
                self.ef = None;
                self.answer(encode(0x62, &encode(0x83, &[0x3F, 0x00])))
            }
            (0x04, aid) if self.apps.iter().any(|a| a == aid) => {
                self.df = Some(Df::App(aid.to_vec()));
                self.ef = None;
                self.answer(encode(0x6F, &encode(0x84, aid)))
            }
            (0x02, [hi, lo]) => {
                let fid = u16::from_be_bytes([*hi, *lo]);
                let found = self
                    .files
                    .iter()
                    .position(|f| Some(&f.df) == self.df.as_ref() && f.fid == fid);
                match found {
                    Some(i) => {
                        self.ef = Some(i);
                        self.answer(encode(0x62, &encode(0x83, &[*hi, *lo])))
                    }
                    None => vec![0x6A, 0x82],
                }
            }
            _ => vec![0x6A, 0x82],
        }
    }

    fn read_binary(&mut self, p1: u8, p2: u8, ne: usize) -> Vec<u8> {
        let (index, offset) = if p1 & 0x80 != 0 {
            let sfi = p1 & 0x1F;
            let found = self
                .files
                .iter()
                .position(|f| Some(&f.df) == self.df.as_ref() && f.sfi == Some(sfi));
            match found {
                Some(i) => {
                    self.ef = Some(i);
                    (i, usize::from(p2))
                }
                None => return vec![0x6A, 0x82],
            }
        } else {
            match self.ef {
                Some(i) => (i, usize::from(u16::from_be_bytes([p1, p2]))),
                None => return vec![0x69, 0x86],
            }
        };
        let file = &self.files[index];
        if file.protected {
            return vec![0x69, 0x82];
        }
        let Some(rest) = file.data.get(offset..).filter(|r| !r.is_empty()) else {
            return vec![0x6B, 0x00];
        };
        let n = ne.min(rest.len());
        let page = rest[..n].to_vec();
        match self.t0 {
            T0::WrongLe if ne > rest.len() => vec![0x6C, u8::try_from(n).unwrap_or(0)],
            _ => self.answer(page),
        }
    }
}

impl VirtualCard for FileCard {
    fn atr(&self) -> Vec<u8> {
        self.atr.clone()
    }

    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        self.log.lock().expect("log").push(capdu.to_vec());
        if self.cla_refused {
            return vec![0x6E, 0x00];
        }
        let [_, ins, p1, p2, rest @ ..] = capdu else {
            return vec![0x67, 0x00];
        };
        let ne = |le: Option<&u8>| match le {
            None | Some(0) => 256,
            Some(n) => usize::from(*n),
        };
        if *ins != 0xC0 {
            self.pending.clear();
        }
        match ins {
            0xA4 => {
                let lc = rest.first().map(|b| usize::from(*b)).unwrap_or(0);
                let data = rest.get(1..1 + lc).unwrap_or_default().to_vec();
                self.select(*p1, &data)
            }
            0xB0 => self.read_binary(*p1, *p2, ne(rest.first())),
            0xC0 => {
                if self.pending.is_empty() {
                    return vec![0x69, 0x85];
                }
                let n = ne(rest.first());
                if n > self.pending.len() {
                    return vec![0x6C, u8::try_from(self.pending.len()).unwrap_or(0)];
                }
                let data: Vec<u8> = self.pending.drain(..n).collect();
                if self.pending.is_empty() {
                    with_sw(&data, OK)
                } else {
                    let left = u8::try_from(self.pending.len().min(256)).unwrap_or(0);
                    with_sw(&data, [0x61, left])
                }
            }
            _ => vec![0x6D, 0x00],
        }
    }

    fn reset(&mut self) {
        self.df = None;
        self.ef = None;
        self.pending.clear();
    }
}

/// A person as a test card stores them (raw ISO-8859-1 bytes).
#[derive(Debug, Clone)]
pub struct Person {
    pub surname: Vec<u8>,
    pub given: Vec<u8>,
    pub birth: String,
    pub nir: Option<String>,
}

/// A person, names given as ISO-8859-1 bytes.
pub fn person(surname: &[u8], given: &[u8], birth: &str, nir: Option<&str>) -> Person {
    Person {
        surname: surname.to_vec(),
        given: given.to_vec(),
        birth: birth.into(),
        nir: nir.map(Into::into),
    }
}

/// Space padding to `width`, as cards store names.
fn padded(s: &[u8], width: usize) -> Vec<u8> {
    let mut v = s.to_vec();
    if v.len() < width {
        v.resize(width, b' ');
    }
    v
}

/// `00` padding to a multiple of 32, at least 16 bytes.
pub fn zero_padded(mut v: Vec<u8>) -> Vec<u8> {
    let len = (v.len() + 16).div_ceil(32) * 32;
    v.resize(len, 0);
    v
}

/// The direct path's MF file: `65{80 81 82}` per person.
pub fn names_file(people: &[Person], width: usize) -> Vec<u8> {
    zero_padded(
        people
            .iter()
            .flat_map(|p| {
                let mut t = encode(0x80, &padded(&p.surname, width));
                t.extend(encode(0x81, &padded(&p.given, width)));
                t.extend(encode(0x82, p.birth.as_bytes()));
                encode(0x65, &t)
            })
            .collect(),
    )
}

/// The direct path's VITALE file: `65{93}` per person, empty without NIR.
pub fn nirs_file(people: &[Person]) -> Vec<u8> {
    zero_padded(
        people
            .iter()
            .flat_map(|p| {
                let t = p
                    .nir
                    .as_ref()
                    .map(|n| encode(0x93, n.as_bytes()))
                    .unwrap_or_default();
                encode(0x65, &t)
            })
            .collect(),
    )
}

/// A pointer-map identity file: complete `65{80 81 82 90 93}` templates, plus the
/// validity and certificate objects readers must ignore.
pub fn full_file(people: &[Person], width: usize) -> Vec<u8> {
    let mut v: Vec<u8> = people
        .iter()
        .flat_map(|p| {
            let mut t = encode(0x80, &padded(&p.surname, width));
            t.extend(encode(0x81, &padded(&p.given, width)));
            t.extend(encode(0x82, p.birth.as_bytes()));
            t.extend(encode(0x90, b"FR"));
            if let Some(n) = &p.nir {
                t.extend(encode(0x93, n.as_bytes()));
            }
            encode(0x65, &t)
        })
        .collect();
    v.extend(encode(0x66, &encode(0x80, b"20200101")));
    zero_padded(v)
}

/// Certificate parts, kept raw by readers.
pub fn certificate_file() -> Vec<u8> {
    let mut body = encode(0x5F37, &[0xA5; 128]);
    body.extend(encode(0x5F38, &[0x5A; 58]));
    zero_padded(encode(0x7F21, &body))
}

/// `E0{ A0{ 82… } 80… }` with apps 1 = VITALE, 2 = MF_VITALE.
pub fn map_file(entries: &[(&[u8; 8], u16, u16)]) -> Vec<u8> {
    let mut apps = Vec::new();
    for (id, aid) in [(1u16, &VITALE_AID[..]), (2, &MF_VITALE_AID[..])] {
        let mut v = id.to_be_bytes().to_vec();
        v.extend([0x00, 0x00]);
        v.extend_from_slice(aid);
        apps.extend(encode(0x82, &v));
    }
    let mut body = encode(0xA0, &apps);
    for (name, app, fid) in entries {
        let mut v = name.to_vec();
        v.extend(app.to_be_bytes());
        v.extend(fid.to_be_bytes());
        body.extend(encode(0x80, &v));
    }
    zero_padded(encode(0xE0, &body))
}

/// VITALE as a [`Df`].
pub fn vitale() -> Df {
    Df::App(VITALE_AID.to_vec())
}

/// MF_VITALE as a [`Df`].
pub fn mf_vitale() -> Df {
    Df::App(MF_VITALE_AID.to_vec())
}

/// Which read paths a test card answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    Direct,
    PointerMap,
    Both,
}

/// A Vitale 2 image of `people` answering `paths`, names padded to `width`.
pub fn vitale_card(people: &[Person], paths: Paths, width: usize) -> FileCard {
    let mut card = FileCard::new(&VITALE2_ATR);
    if matches!(paths, Paths::Direct | Paths::Both) {
        card = card
            .file(Df::Mf, 0x2002, Some(2), names_file(people, width))
            .file(vitale(), 0x2003, Some(2), nirs_file(people));
    }
    if matches!(paths, Paths::PointerMap | Paths::Both) {
        card = card
            .file(
                vitale(),
                0x2001,
                None,
                map_file(&[
                    (b"IDENTITE", 1, 0x2004),
                    (b"CERTIFIC", 2, 0x2006),
                    (b"SECRET  ", 1, 0x2010),
                ]),
            )
            .file(vitale(), 0x2004, None, full_file(people, width))
            .file(mf_vitale(), 0x2006, None, certificate_file())
            .protected(vitale(), 0x2010, None);
    }
    card
}

/// The family used across tests: accents, a lunar date, a child without NIR, a
/// Corsica NIR and a wrong key.
pub fn family() -> Vec<Person> {
    vec![
        person(
            b"LEF\xC8VRE",
            b"H\xC9L\xC8NE",
            "19800203",
            Some("295109912611193"),
        ),
        person(
            b"LEF\xC8VRE",
            b"Ga\xEBl",
            "19780000",
            Some("253072A07300443"),
        ),
        person(b"LEF\xC8VRE", b"Zo\xE9", "20150612", None),
        person(b"MARTIN", b"JEAN", "19500101", Some("253072B07300470")),
        person(b"DURAND", b"PAUL", "19621130", Some("295109912611194")),
    ]
}

/// A read context for tests.
pub fn ctx() -> ReadContext {
    ReadContext {
        reader: "sim:test".into(),
        apcv_aid: vec![0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01],
        environment: None,
    }
}

/// A contact channel onto `card`.
pub fn channel<C: VirtualCard>(card: C) -> SimChannel<C> {
    SimChannel::new(card, false)
}

/// The card type a Vitale 2 read stamps.
pub const VITALE2: CardType = CardType::Vitale2;
