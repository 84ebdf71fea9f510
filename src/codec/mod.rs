//! Pure codecs: no I/O, bounded, never panic on input bytes.

pub mod apdu;
pub mod date;
pub mod latin1;
pub mod nir;
pub mod tlv;
