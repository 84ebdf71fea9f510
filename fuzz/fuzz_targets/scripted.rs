//! A card whose every answer comes from the fuzzer: each R-APDU is a length byte
//! followed by that many bytes (data ‖ SW1 SW2). When the input runs out the card
//! answers `6F 00`, so every read terminates.

use vitale_bridge::sim::VirtualCard;

/// Replays fuzz bytes as R-APDUs.
pub struct Scripted {
    data: Vec<u8>,
    pos: usize,
}

impl Scripted {
    /// A card answering from `data`.
    pub fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            pos: 0,
        }
    }
}

impl VirtualCard for Scripted {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x00]
    }

    fn process(&mut self, _capdu: &[u8]) -> Vec<u8> {
        let Some(&len) = self.data.get(self.pos) else {
            return vec![0x6F, 0x00];
        };
        let start = self.pos + 1;
        let end = (start + usize::from(len)).min(self.data.len());
        self.pos = end;
        self.data.get(start..end).map(<[u8]>::to_vec).unwrap_or_default()
    }
}
