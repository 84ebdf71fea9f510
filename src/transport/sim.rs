//! In-process simulated readers for demo mode: virtual cards and phones that run the
//! real card logic through the same channel and worker as hardware.
//!
//! Two readers: `sim:0` (contact, "Simulated reader"), where the virtual family Carte
//! Vitale is inserted and removed, and `sim:1` (contactless, "Simulated NFC pad"),
//! where a virtual phone is tapped and taken away. Each reader is a thread that
//! serves `card.read`/`card.sign` requests and runs its demo timer; both wait on
//! one `select!`, so a stop request or a client request is handled at once and an
//! idle reader wakes only when its next demo step is due.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Backend, worker};
use crate::card::{CardChannel, CardType, Environment, ReadContext};
use crate::protocol::ReaderKind;
use crate::sim::card_model::VirtualVitale;
use crate::sim::phone::{PhoneDescription, VirtualPhone};
use crate::sim::{SimChannel, VirtualCard};
use crate::transport::{EventSink, ReaderHandle, ReaderRequest, Update};

/// Demo timing and profile.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Time between demo steps (insert, remove, tap…).
    pub interval: Duration,
    /// Phone profile AID.
    pub apcv_aid: Vec<u8>,
}

/// Starts the simulated readers.
pub fn spawn_demo(sink: Arc<dyn EventSink>, opts: DemoOptions) -> Box<dyn Backend> {
    let (stop, stopped) = watch::channel(false);
    let i = opts.interval;
    // The card is in sim:0 from 1·i to 3·i, the phone on sim:1 from 3·i to 5·i;
    // then both repeat every 4·i, so the demo alternates card and phone.
    let readers = [
        SimReader {
            id: "sim:0",
            name: "Simulated reader",
            contactless: false,
            first: i,
            present: 2 * i,
            absent: 2 * i,
            make: demo_card,
        },
        SimReader {
            id: "sim:1",
            name: "Simulated NFC pad",
            contactless: true,
            first: 3 * i,
            present: 2 * i,
            absent: 2 * i,
            make: demo_phone,
        },
    ];
    let mut threads = Vec::new();
    for reader in readers {
        let sink = sink.clone();
        let stopped = stopped.clone();
        let aid = opts.apcv_aid.clone();
        let id = reader.id;
        let name = format!("vb-{}", id.replace(':', ""));
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || reader.run(sink, aid, stopped))
        {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::error!(reader = id, error = %e, "cannot start simulated reader")
            }
        }
    }
    Box::new(Demo { stop, threads })
}

/// The running demo backend.
struct Demo {
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Backend for Demo {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn shutdown(self: Box<Self>) {
        let _ = self.stop.send(true);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a simulated reader thread panicked");
            }
        }
    }
}

/// Any virtual card behind one type, so both readers share the loop.
struct AnyCard(Box<dyn VirtualCard>);

impl VirtualCard for AnyCard {
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        self.0.process(capdu)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
}

/// One simulated reader and its demo schedule.
struct SimReader {
    id: &'static str,
    name: &'static str,
    contactless: bool,
    /// Delay before the first insertion.
    first: Duration,
    /// How long the card stays.
    present: Duration,
    /// How long the reader stays empty between cards.
    absent: Duration,
    /// Builds the card or phone for one insertion, given the phone profile AID.
    make: fn(&[u8]) -> Box<dyn VirtualCard>,
}

impl SimReader {
    /// The reader thread: its own single-threaded runtime so that waiting for a
    /// request, the next demo step and the stop signal is one `select!`.
    fn run(self, sink: Arc<dyn EventSink>, apcv_aid: Vec<u8>, stopped: watch::Receiver<bool>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(reader = self.id, error = %e, "cannot start simulated reader");
                return;
            }
        };
        let (handle, rx) = ReaderHandle::channel();
        sink.publish(Update::ReaderAdded {
            id: self.id.into(),
            name: self.name.into(),
            kind: ReaderKind::Simulated,
            contactless: self.contactless,
            handle: Some(handle),
        });
        let ctx = ReadContext {
            reader: self.id.into(),
            apcv_aid,
            environment: Some(Environment::Demo),
        };
        rt.block_on(self.serve(&sink, &ctx, rx, stopped));
    }

    async fn serve(
        &self,
        sink: &dyn EventSink,
        ctx: &ReadContext,
        mut rx: mpsc::Receiver<ReaderRequest>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut card: Option<(SimChannel<AnyCard>, CardType)> = None;
        let mut next = Instant::now() + self.first;
        loop {
            tokio::select! {
                // A closed sender means the backend is gone: stop too.
                _ = stopped.changed() => break,
                req = rx.recv() => match req {
                    Some(req) => {
                        let present = card
                            .as_mut()
                            .map(|(ch, t)| (ch as &mut dyn CardChannel, *t));
                        worker::serve(sink, ctx, present, req);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(next) => {
                    if card.take().is_some() {
                        tracing::debug!(reader = self.id, "demo: card removed");
                        sink.publish(Update::CardRemoved { reader: self.id.into() });
                        next = Instant::now() + self.absent;
                    } else {
                        tracing::debug!(reader = self.id, "demo: card inserted");
                        let mut channel = SimChannel::new(AnyCard((self.make)(&ctx.apcv_aid)), self.contactless);
                        let card_type = worker::on_inserted(sink, ctx, &mut channel);
                        card = Some((channel, card_type));
                        next = Instant::now() + self.present;
                    }
                }
            }
        }
    }
}

/// The virtual family Carte Vitale inserted in `sim:0`.
fn demo_card(_apcv_aid: &[u8]) -> Box<dyn VirtualCard> {
    Box::new(VirtualVitale::demo_family())
}

/// The virtual phone tapped on `sim:1`, answering the configured phone AID.
fn demo_phone(apcv_aid: &[u8]) -> Box<dyn VirtualCard> {
    let mut desc = PhoneDescription::demo();
    desc.aid = Some(hex::encode_upper(apcv_aid));
    match VirtualPhone::new(&desc) {
        Ok(phone) => Box::new(phone),
        Err(e) => {
            tracing::warn!(error = %e, "demo phone with the configured AID failed; using the default AID");
            Box::new(VirtualPhone::demo())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc as std_mpsc;

    use super::*;

    /// Hands every update to the test thread, as the bus would take it.
    struct Recorder(Mutex<std_mpsc::Sender<Update>>);

    impl EventSink for Recorder {
        fn publish(&self, update: Update) {
            let _ = self.0.lock().map(|tx| tx.send(update));
        }
    }

    #[test]
    fn demo_cycles_and_stops_promptly() {
        let (tx, rx) = std_mpsc::channel();
        let demo = spawn_demo(
            Arc::new(Recorder(Mutex::new(tx))),
            DemoOptions {
                interval: Duration::from_millis(20),
                apcv_aid: b"\xF0vbridge\x01".to_vec(),
            },
        );
        // Held like the registry holds them: a reader whose handle is dropped stops.
        let mut added: Vec<(String, Option<ReaderHandle>)> = Vec::new();
        let mut read: Vec<String> = Vec::new();
        while !(read.iter().any(|r| r == "sim:0") && read.iter().any(|r| r == "sim:1")) {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(Update::ReaderAdded { id, handle, .. }) => added.push((id, handle)),
                Ok(Update::IdentityRead { reader, .. }) => read.push(reader),
                Ok(_) => {}
                Err(e) => panic!("demo stalled ({e}) after reads {read:?}"),
            }
        }
        for id in ["sim:0", "sim:1"] {
            assert!(added.iter().any(|(a, _)| a == id), "{id} announced");
        }
        let started = std::time::Instant::now();
        demo.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "shutdown is prompt"
        );
    }
}
