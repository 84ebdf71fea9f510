//! PN532 host-link frames (PN532 User Manual §6.2), sans I/O.
//!
//! ```text
//! normal    00 00 FF LEN LCS TFI PD0…PDn DCS 00        LEN + LCS ≡ 0, TFI + PD… + DCS ≡ 0
//! extended  00 00 FF FF FF LENM LENL LCS TFI … DCS 00  LENM + LENL + LCS ≡ 0
//! ACK       00 00 FF 00 FF 00
//! NACK      00 00 FF FF 00 00
//! error     00 00 FF 01 FF 7F 81 00                     (application-level error)
//! ```
//! TFI is `D4` host → PN532 and `D5` PN532 → host. Anything before a start code
//! (`00 FF`), such as the HSU wake-up preamble `55 55 00 00 …`, is skipped.

/// Frame identifier of host → PN532 frames.
pub const TFI_HOST: u8 = 0xD4;
/// Frame identifier of PN532 → host frames.
pub const TFI_CHIP: u8 = 0xD5;
/// The ACK frame.
pub const ACK: [u8; 6] = [0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00];
/// The NACK frame.
pub const NACK: [u8; 6] = [0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00];
/// The application-level error frame (e.g. unknown command).
pub const ERROR: [u8; 8] = [0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00];
/// Largest TFI + data of a normal frame.
pub const NORMAL_MAX: usize = 255;
/// Largest TFI + data this codec accepts in an extended frame (PN532 buffers hold 265).
pub const EXTENDED_MAX: usize = 265;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An information frame: its TFI and data (command code first).
    Info {
        /// `D4` or `D5`.
        tfi: u8,
        /// Command or response code, then parameters.
        data: Vec<u8>,
    },
    /// ACK.
    Ack,
    /// NACK: "send your last frame again".
    Nack,
    /// The application-level error frame.
    Error,
}

/// Result of looking at the start of a receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Not enough bytes yet; keep them and read more.
    Incomplete,
    /// Drop this many leading bytes (noise, preamble, or a frame whose checksums fail).
    Skip {
        /// Bytes to drop.
        len: usize,
        /// Whether they were a frame with a bad checksum (worth a NACK).
        corrupt: bool,
    },
    /// A frame, occupying the first `len` bytes.
    Frame {
        /// The frame.
        frame: Frame,
        /// Bytes consumed.
        len: usize,
    },
}

/// Decodes the first frame of `buf`. Never panics, never reads past `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some(start) = buf.windows(2).position(|w| w == [0x00, 0xFF]) else {
        // Keep a trailing 00: it may be the first half of a start code.
        let keep = usize::from(buf.last() == Some(&0x00));
        return match buf.len() - keep {
            0 => Decoded::Incomplete,
            len => Decoded::Skip {
                len,
                corrupt: false,
            },
        };
    };
    if start > 0 {
        return Decoded::Skip {
            len: start,
            corrupt: false,
        };
    }
    let corrupt = Decoded::Skip {
        len: 2,
        corrupt: true,
    };
    let (Some(&len), Some(&lcs)) = (buf.get(2), buf.get(3)) else {
        return Decoded::Incomplete;
    };
    let (body_start, body_len) = match (len, lcs) {
        (0x00, 0xFF) => return short_frame(buf, Frame::Ack),
        (0xFF, 0x00) => return short_frame(buf, Frame::Nack),
        (0xFF, 0xFF) => {
            let Some(&[lenm, lenl, lcs]) = buf.get(4..7).and_then(|s| <&[u8; 3]>::try_from(s).ok())
            else {
                return Decoded::Incomplete;
            };
            if lenm.wrapping_add(lenl).wrapping_add(lcs) != 0 {
                return corrupt;
            }
            let body_len = usize::from(u16::from_be_bytes([lenm, lenl]));
            if body_len == 0 || body_len > EXTENDED_MAX {
                return corrupt;
            }
            (7, body_len)
        }
        (len, lcs) => {
            if len.wrapping_add(lcs) != 0 || len == 0 {
                return corrupt;
            }
            (4, usize::from(len))
        }
    };
    // body, DCS, postamble
    let Some(body) = buf.get(body_start..body_start + body_len) else {
        return Decoded::Incomplete;
    };
    let Some(&dcs) = buf.get(body_start + body_len) else {
        return Decoded::Incomplete;
    };
    let sum = body.iter().fold(dcs, |acc, &b| acc.wrapping_add(b));
    if sum != 0 {
        return corrupt;
    }
    let mut consumed = body_start + body_len + 1;
    match buf.get(consumed) {
        None => return Decoded::Incomplete,
        Some(0x00) => consumed += 1,
        // A missing postamble is tolerated: the frame itself checked out.
        Some(_) => {}
    }
    let frame = match body.split_first() {
        Some((&0x7F, [])) => Frame::Error,
        Some((&tfi, data)) => Frame::Info {
            tfi,
            data: data.to_vec(),
        },
        None => return corrupt,
    };
    Decoded::Frame {
        frame,
        len: consumed,
    }
}

fn short_frame(buf: &[u8], frame: Frame) -> Decoded {
    // 00 FF LEN LCS [00]: the postamble is optional on the wire for our purposes.
    let len = if buf.get(4) == Some(&0x00) { 5 } else { 4 };
    if buf.len() < 5 && buf.len() < len {
        return Decoded::Incomplete;
    }
    Decoded::Frame { frame, len }
}

/// Encodes an information frame (`00 00 FF …`), extended when TFI + data exceed 255
/// bytes. Returns `None` beyond [`EXTENDED_MAX`].
pub fn encode(tfi: u8, data: &[u8]) -> Option<Vec<u8>> {
    let body_len = data.len() + 1;
    if body_len > EXTENDED_MAX {
        return None;
    }
    let mut out = Vec::with_capacity(body_len + 10);
    out.extend_from_slice(&[0x00, 0x00, 0xFF]);
    if body_len <= NORMAL_MAX {
        let len = body_len as u8;
        out.extend_from_slice(&[len, len.wrapping_neg()]);
    } else {
        let [lenm, lenl] = (body_len as u16).to_be_bytes();
        out.extend_from_slice(&[
            0xFF,
            0xFF,
            lenm,
            lenl,
            lenm.wrapping_add(lenl).wrapping_neg(),
        ]);
    }
    out.push(tfi);
    out.extend_from_slice(data);
    let sum = data.iter().fold(tfi, |acc, &b| acc.wrapping_add(b));
    out.push(sum.wrapping_neg());
    out.push(0x00);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(buf: &[u8]) -> (Frame, usize) {
        match decode(buf) {
            Decoded::Frame { frame, len } => (frame, len),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn decodes_what_libnfc_sends_for_get_firmware_version() {
        // D4 02: LEN 2, LCS FE, DCS = -(D4 + 02) = 2A
        let wire = [0x00, 0x00, 0xFF, 0x02, 0xFE, 0xD4, 0x02, 0x2A, 0x00];
        assert_eq!(encode(TFI_HOST, &[0x02]).as_deref(), Some(&wire[..]));
        let (f, len) = frame(&wire[1..]);
        assert_eq!(
            f,
            Frame::Info {
                tfi: TFI_HOST,
                data: vec![0x02]
            }
        );
        assert_eq!(len, 8);
    }

    #[test]
    fn skips_the_wakeup_preamble() {
        let mut wire = vec![0x55, 0x55, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        wire.extend(encode(TFI_HOST, &[0x14, 0x01]).expect("encodes"));
        let Decoded::Skip { len, corrupt } = decode(&wire) else {
            panic!("expected skip");
        };
        assert!(!corrupt);
        let (f, _) = frame(&wire[len..]);
        assert_eq!(
            f,
            Frame::Info {
                tfi: TFI_HOST,
                data: vec![0x14, 0x01]
            }
        );
    }

    #[test]
    fn ack_nack_and_error_frames() {
        assert_eq!(frame(&ACK[1..]).0, Frame::Ack);
        assert_eq!(frame(&NACK[1..]).0, Frame::Nack);
        assert_eq!(frame(&ERROR[1..]).0, Frame::Error);
    }

    #[test]
    fn extended_frames_round_trip() {
        let data: Vec<u8> = (0..=255u8).chain(0..6).collect();
        let wire = encode(TFI_CHIP, &data).expect("encodes");
        assert_eq!(&wire[..5], &[0x00, 0x00, 0xFF, 0xFF, 0xFF]);
        let (f, len) = frame(&wire[1..]);
        assert_eq!(len, wire.len() - 1);
        assert_eq!(
            f,
            Frame::Info {
                tfi: TFI_CHIP,
                data
            }
        );
        // 254 data bytes still fit a normal frame, 255 do not.
        assert_eq!(encode(TFI_CHIP, &[0; 254]).expect("normal")[3], 0xFF);
        assert_eq!(encode(TFI_CHIP, &[0; 255]).expect("extended")[4], 0xFF);
        assert!(encode(TFI_CHIP, &[0; 265]).is_none());
    }

    #[test]
    fn bad_checksums_are_skipped_as_corrupt_and_short_input_waits() {
        let mut wire = encode(TFI_HOST, &[0x4A, 0x01, 0x00]).expect("encodes");
        for cut in 0..wire.len() - 1 {
            let d = decode(&wire[..cut]);
            assert!(
                matches!(
                    d,
                    Decoded::Incomplete | Decoded::Skip { corrupt: false, .. }
                ),
                "cut {cut}: {d:?}"
            );
        }
        let dcs = wire.len() - 2;
        wire[dcs] ^= 0x01;
        assert_eq!(
            decode(&wire[1..]),
            Decoded::Skip {
                len: 2,
                corrupt: true
            }
        );
        let mut bad_lcs = encode(TFI_HOST, &[0x02]).expect("encodes");
        bad_lcs[4] ^= 0x10;
        assert!(matches!(
            decode(&bad_lcs[1..]),
            Decoded::Skip { corrupt: true, .. }
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_always_progresses(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            match decode(&buf) {
                Decoded::Incomplete => {}
                Decoded::Skip { len, .. } | Decoded::Frame { len, .. } => {
                    proptest::prop_assert!(len > 0 && len <= buf.len());
                }
            }
        }

        #[test]
        fn encode_then_decode_is_identity(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..264)) {
            let wire = encode(TFI_CHIP, &data).expect("fits");
            // The leading 00 preamble is skipped first, then the frame follows.
            proptest::prop_assert_eq!(decode(&wire), Decoded::Skip { len: 1, corrupt: false });
            let decoded = decode(&wire[1..]);
            proptest::prop_assert_eq!(decoded, Decoded::Frame { frame: Frame::Info { tfi: TFI_CHIP, data }, len: wire.len() - 1 });
        }
    }
}
