//! libnfc backend (crate `nfc1`): one blocking thread per NFC device.
//! OWNER: nfc helper. Skeleton only.
