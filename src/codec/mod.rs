//! Pure codecs: no I/O, bounded, never panic on input bytes.

pub mod apdu;
pub mod date;
pub mod inet;
pub mod latin1;
pub mod nir;
pub mod proc_net;
pub mod sock_diag;
pub mod tcp_table;
pub mod tlv;
