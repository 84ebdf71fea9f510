//! Selecting and reading Carte Vitale files over a channel: SELECT, and READ BINARY
//! in 256-byte pages until a short read or an error (cards.md §1), bounded.

use zeroize::Zeroizing;

use crate::card::apdu::transceive;
use crate::card::{CardChannel, CardError};
use crate::codec::apdu::{self, StatusWord};

/// Largest file read (cards.md §1: ≤ 64 KiB per file). READ BINARY offsets stop at
/// 32 KiB anyway (15-bit offsets), which this also bounds.
pub const MAX_FILE: usize = 64 * 1024;

/// Bytes one READ BINARY page asks for (`Le = 00`).
const PAGE: usize = 256;

/// What reading a file gave.
#[derive(Debug)]
pub enum FileRead {
    /// The file's bytes (zeroed when dropped: they are health data).
    Data(Zeroizing<Vec<u8>>),
    /// The card refused the first read with this status (protected or absent file).
    Refused(u16),
}

/// Sends a SELECT and returns its status; data (FCI) is discarded.
pub fn select(channel: &mut dyn CardChannel, capdu: &[u8]) -> Result<StatusWord, CardError> {
    Ok(transceive(channel, capdu)?.status())
}

/// Reads a whole EF, the first page with `first` (a READ BINARY by SFI, or at offset
/// 0 of the current EF) and the following pages at offset += page length.
///
/// Stops at a page shorter than 256 bytes, at `62 82` (end of file, data kept), or
/// at an error status after the first page (the usual end-of-file answer of cards
/// whose size is a multiple of 256). An error on the first page is
/// [`FileRead::Refused`]. More than [`MAX_FILE`] bytes, or an offset past 15 bits,
/// is [`CardError::Malformed`].
pub fn read_pages(channel: &mut dyn CardChannel, first: &[u8]) -> Result<FileRead, CardError> {
    let mut out = Zeroizing::new(Vec::new());
    let mut capdu = first.to_vec();
    let mut first_page = true;
    loop {
        let mut response = transceive(channel, &capdu)?;
        let status = response.status();
        // Moved out right away so the page's data is zeroed with `out`.
        let page = Zeroizing::new(response.take_data());
        let last = match status {
            StatusWord::Ok => page.len() < PAGE,
            StatusWord::EndOfFile => true,
            _ if first_page => {
                return Ok(FileRead::Refused(status.to_u16()));
            }
            _ => break,
        };
        if out.len() + page.len() > MAX_FILE {
            return Err(CardError::Malformed(format!(
                "file longer than {MAX_FILE} bytes"
            )));
        }
        out.extend_from_slice(&page);
        first_page = false;
        if last {
            break;
        }
        capdu = apdu::read_binary_at(out.len()).ok_or_else(|| {
            CardError::Malformed("file runs past the READ BINARY offset range".into())
        })?;
    }
    Ok(FileRead::Data(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::ChannelError;

    /// Answers READ BINARY from a script keyed by offset; records offsets asked.
    struct Pages {
        answers: Vec<(usize, Vec<u8>)>,
        asked: Vec<usize>,
    }

    impl CardChannel for Pages {
        fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
            let offset = match capdu {
                [_, 0xB0, p1, _, ..] if p1 & 0x80 != 0 => 0,
                [_, 0xB0, p1, p2, ..] => usize::from(u16::from_be_bytes([*p1, *p2])),
                _ => return Ok(vec![0x6D, 0x00]),
            };
            self.asked.push(offset);
            Ok(self
                .answers
                .iter()
                .find(|(o, _)| *o == offset)
                .map(|(_, a)| a.clone())
                .unwrap_or(vec![0x6B, 0x00]))
        }
        fn atr(&self) -> &[u8] {
            &[]
        }
    }

    fn page(fill: u8, len: usize, sw: [u8; 2]) -> Vec<u8> {
        let mut v = vec![fill; len];
        v.extend(sw);
        v
    }

    fn data(r: FileRead) -> Vec<u8> {
        match r {
            FileRead::Data(d) => d.to_vec(),
            FileRead::Refused(sw) => panic!("refused {sw:04X}"),
        }
    }

    #[test]
    fn pages_until_a_short_read() {
        let mut ch = Pages {
            answers: vec![
                (0, page(1, 256, [0x90, 0x00])),
                (256, page(2, 256, [0x90, 0x00])),
                (512, page(3, 10, [0x90, 0x00])),
            ],
            asked: vec![],
        };
        let d = data(read_pages(&mut ch, &apdu::read_binary_sfi(2)).expect("reads"));
        assert_eq!(d.len(), 522);
        assert_eq!(ch.asked, [0, 256, 512]);
    }

    #[test]
    fn an_error_after_the_first_page_ends_the_file() {
        let mut ch = Pages {
            answers: vec![(0, page(1, 256, [0x90, 0x00]))],
            asked: vec![],
        };
        let d = data(read_pages(&mut ch, &apdu::read_binary_current()).expect("reads"));
        assert_eq!(d.len(), 256);
        assert_eq!(ch.asked, [0, 256]);
    }

    #[test]
    fn end_of_file_status_keeps_its_data() {
        let mut ch = Pages {
            answers: vec![
                (0, page(1, 256, [0x90, 0x00])),
                (256, page(2, 256, [0x62, 0x82])),
            ],
            asked: vec![],
        };
        let d = data(read_pages(&mut ch, &apdu::read_binary_current()).expect("reads"));
        assert_eq!(d.len(), 512);
        assert_eq!(ch.asked, [0, 256]);
    }

    #[test]
    fn a_refused_first_page_is_refused() {
        let mut ch = Pages {
            answers: vec![(0, vec![0x69, 0x82])],
            asked: vec![],
        };
        assert!(matches!(
            read_pages(&mut ch, &apdu::read_binary_current()),
            Ok(FileRead::Refused(0x6982))
        ));
    }

    #[test]
    fn an_empty_file_is_empty_data() {
        let mut ch = Pages {
            answers: vec![(0, vec![0x90, 0x00])],
            asked: vec![],
        };
        assert!(data(read_pages(&mut ch, &apdu::read_binary_current()).expect("reads")).is_empty());
    }

    #[test]
    fn files_past_the_offset_range_are_malformed() {
        let answers = (0..200)
            .map(|i| (i * 256, page(0, 256, [0x90, 0x00])))
            .collect();
        let mut ch = Pages {
            answers,
            asked: vec![],
        };
        assert!(matches!(
            read_pages(&mut ch, &apdu::read_binary_current()),
            Err(CardError::Malformed(_))
        ));
        assert_eq!(ch.asked.len(), 128);
    }
}
