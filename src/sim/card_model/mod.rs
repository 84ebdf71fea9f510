//! The virtual Carte Vitale: a card description (TOML, see `docs/card-format.md`)
//! turned into a card that answers APDUs on both public read paths of cards.md §1.
//!
//! - [`description`]: the serde model of a card file, its validation and the demo family.
//! - [`layout`]: the description laid out as the card's files (BER-TLV, ISO-8859-1,
//!   `00` padding), including the hostile images.
//! - [`card`]: [`VirtualVitale`], the APDU state machine with real T=0 behaviour.

pub mod card;
pub mod description;
pub mod layout;

pub use card::VirtualVitale;
pub use description::{BeneficiaryDescription, CardDescription, Hostile, ReadPaths, T0Mode};
