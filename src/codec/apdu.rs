//! ISO 7816-4 APDUs and status words.
//!
//! OWNER: codec/Vitale helper (extend freely; keep `Response` and `StatusWord` names).

/// A response APDU split into data and status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data (may be empty).
    pub data: Vec<u8>,
    /// SW1 SW2.
    pub sw: u16,
}

impl Response {
    /// Splits a raw R-APDU; `None` when it is shorter than the two status bytes.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let split = raw.len().checked_sub(2)?;
        let (data, sw) = raw.split_at(split);
        Some(Self {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }

    /// `90 00`.
    pub fn is_ok(&self) -> bool {
        self.sw == 0x9000
    }
}
