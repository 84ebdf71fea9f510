//! JSON-RPC request parsing on arbitrary text, and answering whatever id it read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitale_bridge::server::rpc::{self, Incoming};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rpc::parse(text) {
        Incoming::Request(req) => {
            if let Some(id) = &req.id {
                let _ = rpc::success(id, &req.params);
            }
        }
        Incoming::Invalid { id, error, .. } => {
            let _ = rpc::failure(&id, &error);
        }
    }
});
