//! `sim vpcd`: the virtual Carte Vitale speaking vsmartcard's vpcd wire protocol.
//!
//! OWNER: card-model/PC/SC helper. Skeleton only.
