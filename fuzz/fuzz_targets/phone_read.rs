//! Fuzz target: phone-profile (ApCV) reads from arbitrary APDU responses. The property lives in `checks.rs`, shared with
//! `tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::phone_read(data));
