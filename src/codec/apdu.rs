//! ISO 7816-4 APDUs and status words.
//!
//! Short APDUs only (ISO 7816-4 §5.1, cases 1 to 4 short): the Carte Vitale 2 announces
//! T=0, which cannot carry extended lengths, and the phone profile stays within them.
//! Building and parsing are pure; the exchange itself lives in
//! [`crate::card::apdu::transceive`].

/// Why a command APDU cannot be built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApduError {
    /// Command data longer than the 255 bytes a short Lc can announce.
    #[error("command data of {0} bytes does not fit a short APDU")]
    DataTooLong(usize),
    /// Le outside 1..=256.
    #[error("Le {0} is outside 1..=256")]
    BadLe(u16),
    /// A raw command shorter than its 4-byte header.
    #[error("command shorter than its header")]
    TooShort,
    /// A raw command whose Lc does not match its length (or an extended APDU).
    #[error("command length does not match its Lc")]
    BadLength,
}

/// A short command APDU: header, optional data (Lc implied), optional Le.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data (empty for cases 1 and 2).
    pub data: Vec<u8>,
    /// Expected response length, 1..=256 (`None` for cases 1 and 3). 256 is written `00`.
    pub le: Option<u16>,
}

impl Command {
    /// A command without data or Le (case 1); add them with [`Command::data`] and
    /// [`Command::le`].
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// Sets the command data.
    pub fn data(mut self, data: &[u8]) -> Self {
        self.data = data.to_vec();
        self
    }

    /// Sets Le (1..=256; 256 means "up to 256", written `00`).
    pub fn le(mut self, le: u16) -> Self {
        self.le = Some(le);
        self
    }

    /// The wire bytes (ISO 7816-4 §5.1): `CLA INS P1 P2 [Lc data] [Le]`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ApduError> {
        let mut out = Vec::with_capacity(6 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !self.data.is_empty() {
            let lc = u8::try_from(self.data.len())
                .map_err(|_| ApduError::DataTooLong(self.data.len()))?;
            out.push(lc);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(encode_le(le)?);
        }
        Ok(out)
    }

    /// Parses a short command APDU, telling the four cases apart by length
    /// (ISO 7816-4 §5.1: case 2 has one byte after the header, cases 3/4 have
    /// `Lc` then exactly `Lc` or `Lc + 1` bytes).
    pub fn parse(raw: &[u8]) -> Result<Self, ApduError> {
        let (header, body) = raw.split_first_chunk::<4>().ok_or(ApduError::TooShort)?;
        let [cla, ins, p1, p2] = *header;
        let mut cmd = Self::new(cla, ins, p1, p2);
        match body {
            [] => {}
            [le] => cmd.le = Some(decode_le(*le)),
            [0, ..] => return Err(ApduError::BadLength),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc) {
                    Some(0) => cmd.data = rest.to_vec(),
                    Some(1) => {
                        let (data, le) = rest.split_at(lc);
                        cmd.data = data.to_vec();
                        cmd.le = le.first().map(|b| decode_le(*b));
                    }
                    _ => return Err(ApduError::BadLength),
                }
            }
        }
        Ok(cmd)
    }

    /// The 4 header bytes, what APDU traces may show.
    pub fn header(&self) -> [u8; 4] {
        [self.cla, self.ins, self.p1, self.p2]
    }
}

/// Writes Le as its one-byte short form (256 → `00`).
fn encode_le(le: u16) -> Result<u8, ApduError> {
    match le {
        256 => Ok(0),
        1..=255 => Ok(le as u8),
        _ => Err(ApduError::BadLe(le)),
    }
}

/// Reads a one-byte Le (`00` → 256).
fn decode_le(b: u8) -> u16 {
    if b == 0 { 256 } else { u16::from(b) }
}

/// `SELECT` by DF name (AID), first or only occurrence, no response data requested
/// (ISO 7816-4 §7.1.1, P1 = 04).
pub fn select_aid(aid: &[u8]) -> Result<Vec<u8>, ApduError> {
    Command::new(0x00, 0xA4, 0x04, 0x00).data(aid).to_bytes()
}

/// `SELECT` the master file `3F00` (P1 = 00), as the public Vitale direct path does.
pub fn select_mf() -> Vec<u8> {
    vec![0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]
}

/// `SELECT` an EF by its 2-byte identifier under the current DF (P1 = 02).
pub fn select_ef(fid: u16) -> Vec<u8> {
    let [hi, lo] = fid.to_be_bytes();
    vec![0x00, 0xA4, 0x02, 0x00, 0x02, hi, lo]
}

/// `READ BINARY` of up to 256 bytes of the EF with short identifier `sfi` (1..=30)
/// from offset 0 (ISO 7816-4 §7.2.3: P1 = 100xxxxx); it also makes that EF current.
pub fn read_binary_sfi(sfi: u8) -> Vec<u8> {
    vec![0x00, 0xB0, 0x80 | (sfi & 0x1F), 0x00, 0x00]
}

/// `READ BINARY` of up to 256 bytes of the current EF at a 15-bit `offset`;
/// `None` when the offset does not fit P1-P2 (bit 8 of P1 must stay 0).
pub fn read_binary_at(offset: usize) -> Option<Vec<u8>> {
    let offset = u16::try_from(offset).ok().filter(|o| *o <= 0x7FFF)?;
    let [hi, lo] = offset.to_be_bytes();
    Some(vec![0x00, 0xB0, hi, lo, 0x00])
}

/// `READ BINARY` of up to 256 bytes of the current EF from offset 0.
pub fn read_binary_current() -> Vec<u8> {
    vec![0x00, 0xB0, 0x00, 0x00, 0x00]
}

/// `GET RESPONSE` for `61 XX` (ISO 7816-4 §7.6.1); `XX = 00` asks for 256 bytes.
pub fn get_response(sw2: u8) -> Vec<u8> {
    vec![0x00, 0xC0, 0x00, 0x00, sw2]
}

/// A response APDU split into data and status word.
///
/// Its data is wiped when it is dropped: responses carry identity bytes, and freed
/// heap memory ends up in core dumps and swap. Take the data out with
/// [`Response::take_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data (may be empty).
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub sw: u16,
}

impl Drop for Response {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.data);
    }
}

impl Response {
    /// Splits a raw R-APDU; `None` when it is shorter than the two status bytes.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let (data, sw) = raw.split_last_chunk::<2>()?;
        Some(Self {
            data: data.to_vec(),
            sw: u16::from_be_bytes(*sw),
        })
    }

    /// Moves the data out (the caller now owns wiping it).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// `90 00`.
    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }

    /// The status word as a [`StatusWord`].
    pub fn status(&self) -> StatusWord {
        StatusWord::from(self.sw)
    }
}

/// The status words card logic tells apart (ISO 7816-4 §5.1.3), with a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusWord {
    /// `90 00`: success.
    Ok,
    /// `61 XX`: success, `XX` more bytes wait for GET RESPONSE (`00` = 256 or more).
    MoreData(u8),
    /// `62 82`: end of file reached before Le bytes (data returned is valid).
    EndOfFile,
    /// `67 00`: wrong length.
    WrongLength,
    /// `69 82`: security status not satisfied (a locked app, a protected file).
    SecurityNotSatisfied,
    /// `69 85`: conditions of use not satisfied (a holder who refused).
    ConditionsNotSatisfied,
    /// `69 86`: command not allowed (no current EF).
    CommandNotAllowed,
    /// `6A 82`: file or application not found.
    FileNotFound,
    /// `6A 86`: incorrect P1-P2.
    WrongP1P2,
    /// `6B 00`: wrong parameters (offset beyond the EF).
    WrongParameters,
    /// `6C XX`: wrong Le, `XX` is the exact length to ask for.
    WrongLe(u8),
    /// `6D 00`: instruction not supported.
    InsNotSupported,
    /// `6E 00`: class not supported.
    ClaNotSupported,
    /// Any other status word.
    Other(u16),
}

impl StatusWord {
    /// Whether the command succeeded (`90 00` or `61 XX`).
    pub fn is_success(self) -> bool {
        matches!(self, StatusWord::Ok | StatusWord::MoreData(_))
    }

    /// The raw 16-bit value.
    pub fn to_u16(self) -> u16 {
        match self {
            StatusWord::Ok => 0x9000,
            StatusWord::MoreData(n) => 0x6100 | u16::from(n),
            StatusWord::EndOfFile => 0x6282,
            StatusWord::WrongLength => 0x6700,
            StatusWord::SecurityNotSatisfied => 0x6982,
            StatusWord::ConditionsNotSatisfied => 0x6985,
            StatusWord::CommandNotAllowed => 0x6986,
            StatusWord::FileNotFound => 0x6A82,
            StatusWord::WrongP1P2 => 0x6A86,
            StatusWord::WrongParameters => 0x6B00,
            StatusWord::WrongLe(n) => 0x6C00 | u16::from(n),
            StatusWord::InsNotSupported => 0x6D00,
            StatusWord::ClaNotSupported => 0x6E00,
            StatusWord::Other(sw) => sw,
        }
    }
}

impl From<u16> for StatusWord {
    fn from(sw: u16) -> Self {
        let [sw1, sw2] = sw.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => StatusWord::Ok,
            (0x61, n) => StatusWord::MoreData(n),
            (0x62, 0x82) => StatusWord::EndOfFile,
            (0x67, 0x00) => StatusWord::WrongLength,
            (0x69, 0x82) => StatusWord::SecurityNotSatisfied,
            (0x69, 0x85) => StatusWord::ConditionsNotSatisfied,
            (0x69, 0x86) => StatusWord::CommandNotAllowed,
            (0x6A, 0x82) => StatusWord::FileNotFound,
            (0x6A, 0x86) => StatusWord::WrongP1P2,
            (0x6B, 0x00) => StatusWord::WrongParameters,
            (0x6C, n) => StatusWord::WrongLe(n),
            (0x6D, 0x00) => StatusWord::InsNotSupported,
            (0x6E, 0x00) => StatusWord::ClaNotSupported,
            _ => StatusWord::Other(sw),
        }
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> Self {
        sw.to_u16()
    }
}

impl std::fmt::Display for StatusWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04X}", self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_four_short_cases() {
        assert_eq!(
            Command::new(0x00, 0xA4, 0, 0).to_bytes(),
            Ok(vec![0x00, 0xA4, 0, 0])
        );
        assert_eq!(
            Command::new(0x00, 0xB0, 0x82, 0).le(256).to_bytes(),
            Ok(vec![0x00, 0xB0, 0x82, 0, 0])
        );
        assert_eq!(
            Command::new(0x00, 0xC0, 0, 0).le(0x1C).to_bytes(),
            Ok(vec![0x00, 0xC0, 0, 0, 0x1C])
        );
        assert_eq!(
            Command::new(0x00, 0xA4, 0, 0)
                .data(&[0x3F, 0x00])
                .to_bytes(),
            Ok(select_mf())
        );
        assert_eq!(
            Command::new(0x80, 0xCA, 0, 0x65)
                .data(&[1, 2])
                .le(256)
                .to_bytes(),
            Ok(vec![0x80, 0xCA, 0, 0x65, 2, 1, 2, 0])
        );
    }

    #[test]
    fn rejects_what_a_short_apdu_cannot_carry() {
        assert_eq!(
            Command::new(0, 0xD6, 0, 0).data(&[0; 256]).to_bytes(),
            Err(ApduError::DataTooLong(256))
        );
        assert_eq!(
            Command::new(0, 0xB0, 0, 0).le(0).to_bytes(),
            Err(ApduError::BadLe(0))
        );
        assert_eq!(
            Command::new(0, 0xB0, 0, 0).le(257).to_bytes(),
            Err(ApduError::BadLe(257))
        );
        assert_eq!(
            Command::new(0, 0xD6, 0, 0)
                .data(&[0; 255])
                .to_bytes()
                .map(|b| b.len()),
            Ok(260)
        );
    }

    #[test]
    fn parses_back_every_case() {
        for cmd in [
            Command::new(0, 0xA4, 0, 0),
            Command::new(0, 0xB0, 0x82, 0).le(256),
            Command::new(0, 0xB0, 0x82, 0).le(7),
            Command::new(0, 0xA4, 4, 0).data(b"\xD2\x50\x00\x00\x02VITALE"),
            Command::new(0, 0xA4, 4, 0).data(&[1; 255]).le(256),
        ] {
            let bytes = cmd.to_bytes().expect("builds");
            assert_eq!(Command::parse(&bytes), Ok(cmd));
        }
        assert_eq!(Command::parse(&[0, 0xA4, 0]), Err(ApduError::TooShort));
        assert_eq!(
            Command::parse(&[0, 0xA4, 0, 0, 3, 1, 2]),
            Err(ApduError::BadLength)
        );
        assert_eq!(
            Command::parse(&[0, 0xA4, 0, 0, 1, 1, 2, 3]),
            Err(ApduError::BadLength)
        );
        // Extended APDUs start their body with 00: not short, refused.
        assert_eq!(
            Command::parse(&[0, 0xB0, 0, 0, 0, 1, 0]),
            Err(ApduError::BadLength)
        );
    }

    #[test]
    fn named_commands_have_the_documented_bytes() {
        assert_eq!(select_mf(), [0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]);
        assert_eq!(
            select_ef(0x2001),
            [0x00, 0xA4, 0x02, 0x00, 0x02, 0x20, 0x01]
        );
        assert_eq!(read_binary_sfi(2), [0x00, 0xB0, 0x82, 0x00, 0x00]);
        assert_eq!(
            read_binary_at(0x0100),
            Some(vec![0x00, 0xB0, 0x01, 0x00, 0x00])
        );
        assert_eq!(
            read_binary_at(0x7FFF),
            Some(vec![0x00, 0xB0, 0x7F, 0xFF, 0x00])
        );
        assert_eq!(read_binary_at(0x8000), None);
        assert_eq!(get_response(0x10), [0x00, 0xC0, 0x00, 0x00, 0x10]);
        assert_eq!(
            select_aid(&[0xD2, 0x50]),
            Ok(vec![0x00, 0xA4, 0x04, 0x00, 0x02, 0xD2, 0x50])
        );
    }

    #[test]
    fn response_parse_splits_status() {
        assert_eq!(Response::parse(&[]), None);
        assert_eq!(Response::parse(&[0x90]), None);
        let r = Response::parse(&[1, 2, 0x90, 0x00]).expect("parses");
        assert_eq!(r.data, [1, 2]);
        assert!(r.is_ok());
        assert_eq!(r.status(), StatusWord::Ok);
        let r = Response::parse(&[0x61, 0x10]).expect("parses");
        assert!(r.data.is_empty());
        assert_eq!(r.status(), StatusWord::MoreData(0x10));
    }

    #[test]
    fn status_words_round_trip() {
        let cases = [
            (0x9000, StatusWord::Ok),
            (0x6100, StatusWord::MoreData(0)),
            (0x61FF, StatusWord::MoreData(0xFF)),
            (0x6282, StatusWord::EndOfFile),
            (0x6700, StatusWord::WrongLength),
            (0x6982, StatusWord::SecurityNotSatisfied),
            (0x6985, StatusWord::ConditionsNotSatisfied),
            (0x6986, StatusWord::CommandNotAllowed),
            (0x6A82, StatusWord::FileNotFound),
            (0x6A86, StatusWord::WrongP1P2),
            (0x6B00, StatusWord::WrongParameters),
            (0x6C1C, StatusWord::WrongLe(0x1C)),
            (0x6D00, StatusWord::InsNotSupported),
            (0x6E00, StatusWord::ClaNotSupported),
            (0x6F00, StatusWord::Other(0x6F00)),
            (0x6A83, StatusWord::Other(0x6A83)),
        ];
        for (raw, sw) in cases {
            assert_eq!(StatusWord::from(raw), sw);
            assert_eq!(sw.to_u16(), raw);
        }
        for raw in 0..=u16::MAX {
            assert_eq!(StatusWord::from(raw).to_u16(), raw);
        }
        assert!(StatusWord::MoreData(3).is_success());
        assert!(!StatusWord::FileNotFound.is_success());
        assert_eq!(StatusWord::FileNotFound.to_string(), "6A82");
    }
}
