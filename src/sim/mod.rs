//! Simulators shipped as product features: the virtual Carte Vitale (one card model
//! behind demo mode and `sim vpcd`), the virtual phone and the PN532 emulator.

pub mod card_model;
pub mod phone;
pub mod pn532;
pub mod vpcd;
