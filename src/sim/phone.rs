//! The virtual phone implementing phone profile reference-v1.
//!
//! OWNER: NFC helper. Skeleton only.
