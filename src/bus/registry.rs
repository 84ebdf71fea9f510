//! The reader registry as a pure function of backend updates.
//!
//! [`Registry::apply`] changes the state for one [`Update`] and returns the events
//! that change means, in order, plus what the read metrics must count. It assigns no
//! `seq` and sends nothing, so it is tested without channels or threads. An update
//! that changes nothing (a duplicate `ReaderAdded`, an outcome for a card that has
//! gone, a service state already known) yields no event, and so takes no `seq`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::hub::{NfcState, PcscStatus};
use crate::card::CardType;
use crate::protocol::Reason;
use crate::protocol::event::{
    Card, Empty, EventKind, IdentityFailure, Inserted, Progress, Reader, ReaderKind, ReaderState,
    Service, ServiceChange, ServiceState,
};
use crate::transport::{ReaderHandle, Update};

/// A registered reader and the channel to its backend thread.
#[derive(Debug)]
pub struct Entry {
    /// Its state as clients see it.
    pub reader: Reader,
    /// Card work requests, if the backend takes any.
    pub handle: Option<ReaderHandle>,
}

/// A read outcome for the metrics, counted with its event so the counters are
/// exactly the `identity.read` and `identity.error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// An `identity.read`.
    ReadSucceeded {
        /// The reader's kind.
        kind: ReaderKind,
        /// The card's type.
        card_type: CardType,
        /// How long the read took on the card.
        elapsed: Duration,
    },
    /// An `identity.error`.
    ReadFailed(Reason),
}

/// What one update means: its events (reader id, kind), in order, and what to count.
#[derive(Debug, Default)]
pub struct Applied {
    /// The events, in the order they happened.
    pub events: Vec<(Option<String>, EventKind)>,
    /// A read outcome to count, if the update was one that became an event.
    pub counted: Option<Counted>,
}

impl Applied {
    fn event(&mut self, reader: Option<String>, kind: EventKind) {
        self.events.push((reader, kind));
    }
}

/// Readers, their cards and identities, and the services' states.
#[derive(Debug)]
pub struct Registry {
    readers: BTreeMap<String, Entry>,
    pcsc: PcscStatus,
    nfc: BTreeMap<String, NfcState>,
}

impl Registry {
    /// An empty registry with PC/SC reported as `pcsc`.
    pub fn new(pcsc: PcscStatus) -> Registry {
        Registry {
            readers: BTreeMap::new(),
            pcsc,
            nfc: BTreeMap::new(),
        }
    }

    /// Applies one backend update; returns the events it means.
    pub fn apply(&mut self, update: Update) -> Applied {
        let mut out = Applied::default();
        match update {
            Update::ReaderAdded {
                id,
                name,
                kind,
                contactless,
                handle,
            } => {
                if self.readers.contains_key(&id) {
                    tracing::debug!(reader = %id, "reader already registered");
                    return out;
                }
                let reader = Reader {
                    id: id.clone(),
                    name,
                    kind,
                    contactless,
                    state: ReaderState::Empty,
                    card: None,
                };
                self.readers.insert(
                    id.clone(),
                    Entry {
                        reader: reader.clone(),
                        handle,
                    },
                );
                out.event(Some(id), EventKind::ReaderAdded(reader));
            }
            Update::ReaderRemoved { reader } => {
                if !self.readers.contains_key(&reader) {
                    return out;
                }
                self.remove_card(&reader, &mut out);
                if let Some(entry) = self.readers.remove(&reader) {
                    out.event(Some(reader), EventKind::ReaderRemoved(entry.reader));
                }
            }
            Update::CardInserted {
                reader,
                atr,
                card_type,
            } => {
                if !self.readers.contains_key(&reader) {
                    return out;
                }
                self.remove_card(&reader, &mut out);
                let atr = hex::encode_upper(atr);
                if let Some(e) = self.readers.get_mut(&reader) {
                    e.reader.card = Some(Card {
                        atr: atr.clone(),
                        card_type,
                        identity: None,
                    });
                    e.reader.state = ReaderState::Present;
                }
                out.event(
                    Some(reader),
                    EventKind::CardInserted(Inserted { atr, card_type }),
                );
            }
            Update::CardReading {
                reader,
                step,
                total,
            } => {
                if self.set_state(&reader, ReaderState::Reading) {
                    out.event(
                        Some(reader),
                        EventKind::CardReading(Progress { step, total }),
                    );
                }
            }
            Update::IdentityRead {
                reader,
                identity,
                elapsed,
            } => {
                let Some(Entry {
                    reader:
                        Reader {
                            card: Some(card),
                            state,
                            kind,
                            ..
                        },
                    ..
                }) = self.readers.get_mut(&reader)
                else {
                    return out;
                };
                card.identity = Some(identity.clone());
                *state = ReaderState::Ready;
                out.counted = Some(Counted::ReadSucceeded {
                    kind: *kind,
                    card_type: card.card_type,
                    elapsed,
                });
                out.event(Some(reader), EventKind::IdentityRead(identity));
            }
            Update::IdentityError { reader, error } => {
                if self.set_state(&reader, ReaderState::Error) {
                    out.counted = Some(Counted::ReadFailed(error.reason));
                    out.event(
                        Some(reader),
                        EventKind::IdentityError(IdentityFailure {
                            reason: error.reason,
                            message: error.message,
                        }),
                    );
                }
            }
            Update::CardRemoved { reader } => self.remove_card(&reader, &mut out),
            Update::SignatureCompleted { signature } => {
                let reader = signature.reader.clone();
                out.event(Some(reader), EventKind::SignatureCompleted(signature));
            }
            // Listed for `status` from start-up on; `service.changed` says up or down
            // once the device's thread knows, so this is no event.
            Update::NfcOpening { connstring } => {
                self.nfc.entry(connstring).or_insert(NfcState::Opening);
            }
            Update::ServiceChanged {
                service,
                state,
                detail,
            } => {
                let changed = match service {
                    Service::Pcsc => {
                        let new = match state {
                            ServiceState::Up => PcscStatus::Up,
                            ServiceState::Down => PcscStatus::Down,
                        };
                        std::mem::replace(&mut self.pcsc, new) != new
                    }
                    Service::Nfc => {
                        let new = NfcState::from(state);
                        self.nfc.insert(detail.clone(), new) != Some(new)
                    }
                };
                if changed {
                    out.event(
                        None,
                        EventKind::ServiceChanged(ServiceChange {
                            service,
                            state,
                            detail,
                        }),
                    );
                }
            }
        }
        out
    }

    /// Every reader, in id order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.readers.values()
    }

    /// One reader.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.readers.get(id)
    }

    /// The PC/SC service state.
    pub fn pcsc(&self) -> PcscStatus {
        self.pcsc
    }

    /// NFC devices by connstring.
    pub fn nfc(&self) -> &BTreeMap<String, NfcState> {
        &self.nfc
    }

    fn set_state(&mut self, reader: &str, state: ReaderState) -> bool {
        match self.readers.get_mut(reader) {
            Some(e) if e.reader.card.is_some() => {
                e.reader.state = state;
                true
            }
            _ => false,
        }
    }

    /// Removes the reader's card, if it has one, with its `card.removed`.
    fn remove_card(&mut self, reader: &str, out: &mut Applied) {
        if let Some(e) = self.readers.get_mut(reader)
            && e.reader.card.is_some()
        {
            // Dropping the card drops the registry's reference to its identity; the
            // Sensitive fields zero themselves once the last reference goes.
            e.reader.card = None;
            e.reader.state = ReaderState::Empty;
            out.event(Some(reader.to_string()), EventKind::CardRemoved(Empty {}));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::card::Identity;
    use crate::protocol::ProtocolError;

    fn types(a: &Applied) -> Vec<&'static str> {
        a.events.iter().map(|(_, k)| k.type_name()).collect()
    }

    fn added(r: &mut Registry, id: &str) -> Applied {
        r.apply(Update::ReaderAdded {
            id: id.into(),
            name: id.into(),
            kind: ReaderKind::Simulated,
            contactless: false,
            handle: None,
        })
    }

    fn inserted(r: &mut Registry, id: &str) -> Applied {
        r.apply(Update::CardInserted {
            reader: id.into(),
            atr: vec![0x3B, 0x01],
            card_type: CardType::Vitale2,
        })
    }

    fn identity() -> Arc<Identity> {
        Arc::new(Identity {
            source: crate::card::Source::VitaleCard,
            profile: "vitale2-public".into(),
            reader: "sim:0".into(),
            card_type: CardType::Vitale2,
            environment: crate::card::Environment::Unknown,
            beneficiaries: Vec::new(),
            apcv: None,
        })
    }

    #[test]
    fn updates_that_change_nothing_are_no_events() {
        let mut r = Registry::new(PcscStatus::Up);
        assert_eq!(types(&added(&mut r, "sim:0")), ["reader.added"]);
        assert!(added(&mut r, "sim:0").events.is_empty(), "duplicate reader");
        let gone = [
            Update::CardRemoved {
                reader: "sim:0".into(),
            },
            Update::CardReading {
                reader: "sim:0".into(),
                step: 1,
                total: 2,
            },
            Update::IdentityRead {
                reader: "sim:0".into(),
                identity: identity(),
                elapsed: Duration::ZERO,
            },
            Update::IdentityError {
                reader: "sim:0".into(),
                error: ProtocolError::new(Reason::CardMute, "x"),
            },
            Update::CardInserted {
                reader: "sim:9".into(),
                atr: vec![0x3B],
                card_type: CardType::Unknown,
            },
            Update::ReaderRemoved {
                reader: "sim:9".into(),
            },
            Update::ServiceChanged {
                service: Service::Pcsc,
                state: ServiceState::Up,
                detail: String::new(),
            },
        ];
        for u in gone {
            let a = r.apply(u);
            assert!(
                a.events.is_empty() && a.counted.is_none(),
                "{:?}",
                types(&a)
            );
        }
    }

    #[test]
    fn a_read_counts_once_and_the_card_state_follows() {
        let mut r = Registry::new(PcscStatus::Disabled);
        added(&mut r, "sim:0");
        assert_eq!(types(&inserted(&mut r, "sim:0")), ["card.inserted"]);
        let read = r.apply(Update::IdentityRead {
            reader: "sim:0".into(),
            identity: identity(),
            elapsed: Duration::from_millis(7),
        });
        assert_eq!(types(&read), ["identity.read"]);
        assert_eq!(
            read.counted,
            Some(Counted::ReadSucceeded {
                kind: ReaderKind::Simulated,
                card_type: CardType::Vitale2,
                elapsed: Duration::from_millis(7),
            })
        );
        let e = r.get("sim:0").expect("registered");
        assert_eq!(e.reader.state, ReaderState::Ready);
        assert!(e.reader.card.as_ref().is_some_and(|c| c.identity.is_some()));
    }

    #[test]
    fn a_new_card_or_a_removed_reader_removes_the_old_card_first() {
        let mut r = Registry::new(PcscStatus::Disabled);
        added(&mut r, "sim:0");
        inserted(&mut r, "sim:0");
        assert_eq!(
            types(&inserted(&mut r, "sim:0")),
            ["card.removed", "card.inserted"]
        );
        let removed = r.apply(Update::ReaderRemoved {
            reader: "sim:0".into(),
        });
        assert_eq!(types(&removed), ["card.removed", "reader.removed"]);
        assert!(r.entries().next().is_none());
    }

    #[test]
    fn service_states_are_events_only_when_they_change() {
        let mut r = Registry::new(PcscStatus::Up);
        let svc = |r: &mut Registry, service, state, detail: &str| {
            r.apply(Update::ServiceChanged {
                service,
                state,
                detail: detail.into(),
            })
            .events
            .len()
        };
        assert_eq!(svc(&mut r, Service::Pcsc, ServiceState::Up, ""), 0);
        assert_eq!(svc(&mut r, Service::Pcsc, ServiceState::Down, ""), 1);
        assert_eq!(r.pcsc(), PcscStatus::Down);
        let opening = |r: &mut Registry| {
            r.apply(Update::NfcOpening {
                connstring: "pn532_uart:/dev/ttyUSB0".into(),
            })
            .events
            .len()
        };
        assert_eq!(opening(&mut r), 0, "listing is not an event");
        assert_eq!(r.nfc()["pn532_uart:/dev/ttyUSB0"], NfcState::Opening);
        assert_eq!(
            svc(
                &mut r,
                Service::Nfc,
                ServiceState::Up,
                "pn532_uart:/dev/ttyUSB0"
            ),
            1
        );
        assert_eq!(
            svc(
                &mut r,
                Service::Nfc,
                ServiceState::Up,
                "pn532_uart:/dev/ttyUSB0"
            ),
            0
        );
        opening(&mut r);
        assert_eq!(
            r.nfc()["pn532_uart:/dev/ttyUSB0"],
            NfcState::Up,
            "a device that reported is not set back to opening"
        );
    }
}
