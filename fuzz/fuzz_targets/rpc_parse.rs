//! Fuzz target: JSON-RPC request parsing. The property lives in `checks.rs`, shared with
//! `tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::rpc_parse(data));
