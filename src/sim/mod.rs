//! Simulators shipped as product features: the virtual Carte Vitale (one card model
//! behind demo mode and `sim vpcd`), the virtual phone and the PN532 emulator.

pub mod card_model;
pub mod phone;
#[cfg(unix)]
pub mod pn532;
pub mod vpcd;

use crate::card::{CardChannel, ChannelError};

/// A simulated card or phone: answers C-APDUs with R-APDUs, like the real thing.
///
/// The same model runs in-process (demo mode, unit tests through [`SimChannel`]),
/// behind vpcd and behind the PN532 emulator.
pub trait VirtualCard: Send {
    /// The ATR the card presents.
    fn atr(&self) -> Vec<u8>;
    /// Answers one C-APDU with a raw R-APDU (data ‖ SW1 SW2).
    fn process(&mut self, capdu: &[u8]) -> Vec<u8>;
    /// Power cycle / warm reset: forget selections and pending responses.
    fn reset(&mut self) {}
}

/// An in-process [`CardChannel`] onto a [`VirtualCard`], with optional fault
/// injection: the card is "pulled" after a number of APDUs.
pub struct SimChannel<C: VirtualCard> {
    card: C,
    atr: Vec<u8>,
    contactless: bool,
    pull_after: Option<usize>,
    sent: usize,
}

impl<C: VirtualCard> SimChannel<C> {
    /// A channel onto `card`.
    pub fn new(card: C, contactless: bool) -> Self {
        let atr = card.atr();
        Self {
            card,
            atr,
            contactless,
            pull_after: None,
            sent: 0,
        }
    }

    /// Makes every APDU after the first `n` fail with [`ChannelError::Removed`].
    pub fn pull_after(mut self, n: usize) -> Self {
        self.pull_after = Some(n);
        self
    }

    /// APDUs transmitted so far.
    pub fn apdu_count(&self) -> usize {
        self.sent
    }

    /// The simulated card.
    pub fn card_mut(&mut self) -> &mut C {
        &mut self.card
    }
}

impl<C: VirtualCard> CardChannel for SimChannel<C> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        if self.pull_after.is_some_and(|n| self.sent >= n) {
            return Err(ChannelError::Removed);
        }
        self.sent += 1;
        Ok(self.card.process(capdu))
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn is_contactless(&self) -> bool {
        self.contactless
    }
}
