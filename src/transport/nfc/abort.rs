//! Cancelling the chip's endless wait for a target from another thread.
//!
//! The device thread blocks inside libnfc while the PN532 polls (InAutoPoll, PollNr FF).
//! `nfc_abort_command` is libnfc's way out, meant to be called while another thread is
//! blocked: for `pn532_uart` it closes one end of the driver's abort pipe, which wakes
//! the `select(2)` in `uart_receive`; libnfc then sends the ACK frame that cancels the
//! command on the chip (PN532 UM §6.2.1.3) and returns `NFC_EOPABORTED`. USB drivers set
//! a flag their receive loop checks between 250 ms bulk reads.
//!
//! nfc1 only offers `Device::abort_command(&mut self)`, which the blocked thread holds,
//! so this module takes the device's raw pointer (the one `unsafe` use in the backend)
//! and only hands it to libnfc while the device thread is inside the wait: the gate's
//! mutex orders "armed" (before the wait), every abort, and "disarmed" (after it), so
//! the device cannot be closed while an abort is being sent.
//!
//! An abort that lands before libnfc reaches `select` (while the command and its ACK
//! are still on the wire) is lost: libnfc has already read the pipe's new descriptor.
//! [`Gate::abort_wait`] therefore repeats it until the wait ends. Each lost abort
//! leaves one pipe descriptor open inside libnfc until the device closes (its abort
//! replaces the pipe without closing the old write end); the window is the ~1 ms the
//! command takes on the link, so this is rare.
#![allow(unsafe_code)]

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an abort may take to end the wait before it is sent again.
const ABORT_RETRY: Duration = Duration::from_millis(50);
/// Bound on the whole abort (a device that never answers is lost anyway).
const ABORT_TRIES: u32 = 40;

// `nfc1::Device` 0.7.1 (pinned in Cargo.toml) is a struct whose only field is the
// `*mut nfc_device`: same size means the field sits at offset 0.
const _: () = assert!(
    std::mem::size_of::<nfc1::Device>() == std::mem::size_of::<*mut nfc1_sys::nfc_device>()
);

struct Armed {
    device: *mut nfc1_sys::nfc_device,
}

#[derive(Default)]
struct State {
    armed: Option<Armed>,
    /// Counts waits, so an abort ends with the wait it was sent to.
    waits: u64,
    /// An abort came while no wait was running: the next wait must not start, since
    /// what the abort was for (a queued request, a stop) may have been checked already.
    kicked: bool,
}

// SAFETY: the pointer is only passed to `nfc_abort_command`, which libnfc documents as
// callable while another thread runs a command on the device, and only while the
// owning thread is inside that command (see the module docs).
unsafe impl Send for State {}

/// One device's abort gate, shared by its thread and whoever must interrupt it.
#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
    ended: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the state can be left half-updated by a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `wait` (a blocking libnfc call on `device`) so that [`Gate::abort_wait`]
    /// can interrupt it. `None`: not run, an abort came since the previous wait.
    pub fn wait<T>(
        &self,
        device: &mut nfc1::Device,
        wait: impl FnOnce(&mut nfc1::Device) -> T,
    ) -> Option<T> {
        // SAFETY: reads the pointer out of the single-field struct (size checked above);
        // nfc1 keeps ownership, the copy never outlives this call.
        let raw: *mut nfc1_sys::nfc_device = unsafe { std::mem::transmute_copy(&*device) };
        {
            let mut state = self.lock();
            if std::mem::take(&mut state.kicked) {
                return None;
            }
            state.armed = Some(Armed { device: raw });
            state.waits = state.waits.wrapping_add(1);
        }
        let out = wait(device);
        self.lock().armed = None;
        self.ended.notify_all();
        Some(out)
    }

    /// Interrupts the current wait, if any, and returns once it has ended (bounded).
    pub fn abort_wait(&self) {
        let mut state = self.lock();
        let Some(this_wait) = state.armed.as_ref().map(|_| state.waits) else {
            state.kicked = true;
            return;
        };
        for _ in 0..ABORT_TRIES {
            match &state.armed {
                Some(armed) if state.waits == this_wait => {
                    // SAFETY: armed ⇒ the device thread is inside `wait` on this device,
                    // which cannot be closed before it disarms under this lock.
                    let _ = unsafe { nfc1_sys::nfc_abort_command(armed.device) };
                }
                _ => return,
            }
            state = match self.ended.wait_timeout(state, ABORT_RETRY) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        tracing::warn!("an NFC wait did not end after repeated aborts");
    }
}
