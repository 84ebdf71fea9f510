//! The virtual Carte Vitale: a card description (TOML) turned into a card that answers
//! APDUs on both public read paths.
//!
//! OWNER: card-model/PC/SC helper. Skeleton only.
