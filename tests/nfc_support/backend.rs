//! The libnfc backend in-process with a real hub, on the emulator's device: shared by
//! the backend tests (`nfc_backend`, `nfc_wait`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vitale_bridge::bus::{Hub, PcscStatus, Subscription};
use vitale_bridge::card::phone::DEFAULT_AID;
use vitale_bridge::transport::Backend;
use vitale_bridge::transport::nfc::{self, NfcOptions};

use super::{Emulator, WAIT};

pub struct Rig {
    pub hub: Arc<Hub>,
    pub sub: Subscription,
    pub backend: Option<Box<dyn Backend>>,
    pub reader: String,
}

impl Rig {
    /// Starts the NFC backend on `emulator`'s device; `poll_interval` is the legacy
    /// host poll's, which the default wait ignores.
    pub fn start(emulator: &Emulator, poll_interval: Duration) -> Rig {
        let hub = Hub::new(PcscStatus::Disabled);
        let sub = hub.subscribe(4096, false);
        let backend = nfc::spawn(
            hub.clone(),
            NfcOptions {
                devices: vec![emulator.connstring()],
                poll_interval,
                host_poll: false,
                apcv_aid: DEFAULT_AID.to_vec(),
            },
        );
        Rig {
            hub,
            sub,
            backend: Some(backend),
            reader: format!("nfc:{}", emulator.connstring()),
        }
    }

    /// Events of any type until one of type `ty` (returned with those before it).
    pub async fn until(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            let n = tokio::time::timeout(WAIT, self.sub.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {ty} event; saw {seen:#?}"))
                .expect("hub alive");
            let v: Value = serde_json::from_str(&n.json).expect("json");
            let ev = v["params"].clone();
            if ev["type"] == ty {
                return (ev, seen);
            }
            seen.push(ev);
        }
    }

    /// Shuts the backend down off the async runtime; returns how long it took.
    pub async fn shutdown(&mut self) -> Duration {
        let backend = self.backend.take().expect("running");
        let started = Instant::now();
        tokio::time::timeout(
            WAIT,
            tokio::task::spawn_blocking(move || backend.shutdown()),
        )
        .await
        .expect("shutdown in time")
        .expect("shutdown did not panic");
        started.elapsed()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(b) = self.backend.take() {
            b.shutdown();
        }
    }
}
