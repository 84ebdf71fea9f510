//! `sim pn532`: a PN532 emulator on a pseudo-terminal, with a virtual phone.
//!
//! OWNER: NFC helper. Skeleton only.
