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
        let response = transceive(channel, &capdu)?;
        let status = response.status();
        // Moved out right away so the page's data is zeroed with `out`.
        let page = Zeroizing::new(response.data);
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
