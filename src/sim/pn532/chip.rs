//! The PN532's command set as libnfc's `pn532_uart` driver uses it (PN532 User Manual
//! §7), with a virtual phone in (or out of) its field. Sans I/O: data in, data out.

use std::collections::{BTreeMap, VecDeque};

use crate::sim::VirtualCard;
use crate::sim::phone::VirtualPhone;

/// Command codes (host → PN532); the answer code is the command code + 1.
pub mod cmd {
    /// Diagnose (`00 00 …` is the communication line test libnfc uses).
    pub const DIAGNOSE: u8 = 0x00;
    /// GetFirmwareVersion.
    pub const GET_FIRMWARE_VERSION: u8 = 0x02;
    /// GetGeneralStatus.
    pub const GET_GENERAL_STATUS: u8 = 0x04;
    /// ReadRegister.
    pub const READ_REGISTER: u8 = 0x06;
    /// WriteRegister.
    pub const WRITE_REGISTER: u8 = 0x08;
    /// SetParameters.
    pub const SET_PARAMETERS: u8 = 0x12;
    /// SAMConfiguration.
    pub const SAM_CONFIGURATION: u8 = 0x14;
    /// PowerDown.
    pub const POWER_DOWN: u8 = 0x16;
    /// RFConfiguration.
    pub const RF_CONFIGURATION: u8 = 0x32;
    /// InDataExchange.
    pub const IN_DATA_EXCHANGE: u8 = 0x40;
    /// InCommunicateThru.
    pub const IN_COMMUNICATE_THRU: u8 = 0x42;
    /// InDeselect.
    pub const IN_DESELECT: u8 = 0x44;
    /// InListPassiveTarget.
    pub const IN_LIST_PASSIVE_TARGET: u8 = 0x4A;
    /// InRelease.
    pub const IN_RELEASE: u8 = 0x52;
    /// InAutoPoll.
    pub const IN_AUTO_POLL: u8 = 0x60;
}

/// IC PN532, firmware 1.6, supports ISO 14443 A and B and ISO 18092.
pub const FIRMWARE: [u8; 4] = [0x32, 0x01, 0x06, 0x07];

/// Status byte: the target did not answer in time.
const STATUS_TIMEOUT: u8 = 0x01;
/// Status byte bit: more information follows (chaining, send `40 01` again).
const STATUS_MI: u8 = 0x40;
/// InListPassiveTarget BrTy for ISO 14443-A at 106 kbps.
const BRTY_ISO14443A: u8 = 0x00;
/// InAutoPoll target types that find an ISO 14443-A card: generic 106, MIFARE, ISO 14443-4A.
const AUTOPOLL_TYPE_A: [u8; 3] = [0x00, 0x10, 0x20];
/// ATQA of an Android HCE phone.
const ATQA: [u8; 2] = [0x00, 0x04];
/// SAK announcing ISO 14443-4.
const SAK_ISO14443_4: u8 = 0x20;
/// ATS: TL, T0 (FSCI 5 = 64 bytes, TA TB TC present), TA, TB, TC.
const ATS: [u8; 5] = [0x05, 0x75, 0x80, 0x60, 0x02];

/// What the chip sends back for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An information frame: answer code, then data.
    Data(Vec<u8>),
    /// The application-level error frame (unsupported command or bad syntax).
    Error,
    /// Nothing yet: the chip keeps polling until a target enters the field (then
    /// [`Chip::take_ready`] has the answer) or the host aborts with an ACK frame.
    Hold,
}

/// RFConfiguration item 05 (MaxRetries): MxRtyPassiveActivation 0xFF retries forever.
const RETRY_FOREVER: u8 = 0xFF;
/// InAutoPoll PollNr 0xFF polls endlessly.
const POLL_FOREVER: u8 = 0xFF;

/// The emulated chip and the virtual phone in front of it.
#[derive(Debug)]
pub struct Chip {
    phone: VirtualPhone,
    uid: [u8; 4],
    in_field: bool,
    active: bool,
    rf_on: bool,
    registers: BTreeMap<u16, u8>,
    chain: VecDeque<Vec<u8>>,
    apdus: usize,
    pull_after: Option<usize>,
    max_chunk: usize,
    passive_retries: u8,
    held: Option<Vec<u8>>,
    aborts: usize,
}

impl Chip {
    /// A chip with `phone` out of the field. `max_frame` bounds the data of one
    /// InDataExchange answer (status byte included); longer R-APDUs are chained with MI.
    pub fn new(phone: VirtualPhone, max_frame: usize) -> Self {
        Chip {
            phone,
            // Random UIDs start with 08 (ISO 14443-3), as Android HCE uses.
            uid: [0x08, 0x5A, 0x17, 0xC3],
            in_field: false,
            active: false,
            rf_on: false,
            registers: BTreeMap::new(),
            chain: VecDeque::new(),
            apdus: 0,
            pull_after: None,
            max_chunk: max_frame.clamp(2, 262) - 1,
            // The PN532's power-on MaxRetries (UM §7.3.1).
            passive_retries: RETRY_FOREVER,
            held: None,
            aborts: 0,
        }
    }

    /// The phone enters the field (a new tap: a fresh ISO-DEP session).
    pub fn tap(&mut self) {
        self.in_field = true;
        self.active = false;
        self.apdus = 0;
        self.chain.clear();
        self.phone.reset();
    }

    /// The phone leaves the field.
    pub fn remove(&mut self) {
        self.in_field = false;
        self.active = false;
        self.chain.clear();
    }

    /// Whether the phone is in the field.
    pub fn in_field(&self) -> bool {
        self.in_field
    }

    /// From the next tap on, the phone leaves the field after `n` APDUs (`None`: stays).
    pub fn set_pull_after(&mut self, n: Option<usize>) {
        self.pull_after = n;
    }

    /// The virtual phone (consent, lock).
    pub fn phone_mut(&mut self) -> &mut VirtualPhone {
        &mut self.phone
    }

    /// APDUs the phone answered since its last tap.
    pub fn apdus(&self) -> usize {
        self.apdus
    }

    /// Whether a command is waiting for a target.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The host sent an ACK frame: the pending command is cancelled without an answer
    /// (PN532 UM §6.2.1.3).
    pub fn abort(&mut self) {
        if self.held.take().is_some() {
            self.aborts += 1;
            tracing::debug!("held command aborted by the host");
        }
    }

    /// Held commands the host cancelled with an ACK since start.
    pub fn aborts(&self) -> usize {
        self.aborts
    }

    /// The answer to the held command, once a target is there to answer it.
    pub fn take_ready(&mut self) -> Option<Reply> {
        if !self.in_field {
            return None;
        }
        let held = self.held.take()?;
        match self.handle(&held) {
            // Not a target this command looks for: keep waiting, as the chip would.
            Reply::Hold => None,
            reply => Some(reply),
        }
    }

    /// Answers one command (the data of a `D4` frame: command code, then parameters).
    /// A new command replaces a held one (the host only sends one after aborting it).
    pub fn handle(&mut self, data: &[u8]) -> Reply {
        self.held = None;
        let reply = self.answer(data);
        if reply == Reply::Hold {
            self.held = Some(data.to_vec());
        }
        reply
    }

    fn answer(&mut self, data: &[u8]) -> Reply {
        let Some((&code, params)) = data.split_first() else {
            return Reply::Error;
        };
        let answer = |payload: &[u8]| {
            let mut out = vec![code.wrapping_add(1)];
            out.extend_from_slice(payload);
            Reply::Data(out)
        };
        match code {
            cmd::DIAGNOSE => match params.first() {
                // Communication line test: echo NumTst and the test data.
                Some(0x00) => answer(params),
                // Card presence.
                Some(0x06) => answer(&[if self.present() { 0x00 } else { STATUS_TIMEOUT }]),
                _ => answer(&[0x00]),
            },
            cmd::GET_FIRMWARE_VERSION => answer(&FIRMWARE),
            cmd::GET_GENERAL_STATUS => {
                let mut status = vec![0x00, u8::from(self.rf_on)];
                if self.present() {
                    status.extend_from_slice(&[0x01, 0x01, 0x00, 0x00, 0x00]);
                } else {
                    status.push(0x00);
                }
                status.push(0x80);
                answer(&status)
            }
            cmd::READ_REGISTER => {
                if params.len() % 2 != 0 {
                    return Reply::Error;
                }
                let values: Vec<u8> = params
                    .chunks_exact(2)
                    .map(|a| {
                        let addr = u16::from_be_bytes([a[0], a[1]]);
                        self.registers.get(&addr).copied().unwrap_or(0)
                    })
                    .collect();
                answer(&values)
            }
            cmd::WRITE_REGISTER => {
                if params.len() % 3 != 0 {
                    return Reply::Error;
                }
                for w in params.chunks_exact(3) {
                    self.registers
                        .insert(u16::from_be_bytes([w[0], w[1]]), w[2]);
                }
                answer(&[])
            }
            cmd::SET_PARAMETERS | cmd::SAM_CONFIGURATION => answer(&[]),
            cmd::POWER_DOWN => {
                self.rf_on = false;
                self.release();
                answer(&[0x00])
            }
            cmd::RF_CONFIGURATION => {
                // Item 01 = RF field, 05 = MaxRetries (the third byte decides whether
                // InListPassiveTarget waits forever); timings need no emulation.
                match params {
                    [0x01, v, ..] => {
                        self.rf_on = v & 0x01 != 0;
                        if !self.rf_on {
                            self.release();
                        }
                    }
                    [0x05, _, _, passive, ..] => self.passive_retries = *passive,
                    _ => {}
                }
                answer(&[])
            }
            cmd::IN_LIST_PASSIVE_TARGET => match params {
                [_max_tg, BRTY_ISO14443A, ..] if self.in_field => {
                    self.activate();
                    let mut out = vec![0x01];
                    out.extend(self.target_data());
                    answer(&out)
                }
                [_, _, ..] if self.passive_retries == RETRY_FOREVER => Reply::Hold,
                [_, _, ..] => answer(&[0x00]),
                _ => Reply::Error,
            },
            cmd::IN_AUTO_POLL => {
                let wanted = params.get(2..).unwrap_or(&[]);
                match wanted.iter().find(|t| AUTOPOLL_TYPE_A.contains(t)) {
                    Some(&kind) if self.in_field => {
                        self.activate();
                        let target = self.target_data();
                        let mut out = vec![0x01, kind, target.len() as u8];
                        out.extend(target);
                        answer(&out)
                    }
                    _ if params.first() == Some(&POLL_FOREVER) => Reply::Hold,
                    _ => answer(&[0x00]),
                }
            }
            cmd::IN_DATA_EXCHANGE => {
                let Some((_tg, apdu)) = params.split_first() else {
                    return Reply::Error;
                };
                answer(&self.exchange(apdu))
            }
            cmd::IN_COMMUNICATE_THRU => {
                // libnfc's ISO 14443-4 presence check sends an R(NAK) block (B2/B3); a
                // present phone answers R(ACK) with the same block number.
                match params.first() {
                    Some(&pcb) if self.present() && pcb & 0xF6 == 0xB2 => {
                        answer(&[0x00, 0xA2 | (pcb & 0x01)])
                    }
                    _ => answer(&[STATUS_TIMEOUT]),
                }
            }
            cmd::IN_DESELECT | cmd::IN_RELEASE => {
                self.release();
                answer(&[0x00])
            }
            _ => Reply::Error,
        }
    }

    fn present(&self) -> bool {
        self.in_field && self.active
    }

    fn activate(&mut self) {
        // RATS opens a new ISO-DEP session: the app must be selected again.
        self.active = true;
        self.chain.clear();
        self.phone.reset();
    }

    fn release(&mut self) {
        self.active = false;
        self.chain.clear();
    }

    /// Tg, ATQA, SAK, NFCIDLength, NFCID1, ATS (as InListPassiveTarget reports them).
    fn target_data(&self) -> Vec<u8> {
        let mut out = vec![0x01];
        out.extend_from_slice(&ATQA);
        out.push(SAK_ISO14443_4);
        out.push(self.uid.len() as u8);
        out.extend_from_slice(&self.uid);
        out.extend_from_slice(&ATS);
        out
    }

    /// One InDataExchange: status byte, then (a chunk of) the R-APDU.
    fn exchange(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.is_empty()
            && let Some(chunk) = self.chain.pop_front()
        {
            return chunk;
        }
        self.chain.clear();
        if !self.present() {
            return vec![STATUS_TIMEOUT];
        }
        if self.pull_after.is_some_and(|n| self.apdus >= n) {
            tracing::info!(apdus = self.apdus, "virtual phone pulled out of the field");
            self.remove();
            return vec![STATUS_TIMEOUT];
        }
        self.apdus += 1;
        let rapdu = self.phone.process(apdu);
        let mut chunks: Vec<&[u8]> = rapdu.chunks(self.max_chunk).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.iter().enumerate() {
            let status = if i < last { STATUS_MI } else { 0x00 };
            let mut out = vec![status];
            out.extend_from_slice(chunk);
            self.chain.push_back(out);
        }
        self.chain.pop_front().unwrap_or_else(|| vec![0x00])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::phone::DEFAULT_AID;

    fn data(reply: Reply) -> Vec<u8> {
        match reply {
            Reply::Data(d) => d,
            Reply::Error => panic!("error frame"),
            Reply::Hold => panic!("held"),
        }
    }

    fn select() -> Vec<u8> {
        let mut apdu = vec![0x40, 0x01, 0x00, 0xA4, 0x04, 0x00, 0x09];
        apdu.extend_from_slice(&DEFAULT_AID);
        apdu.push(0x00);
        apdu
    }

    #[test]
    fn answers_libnfc_open_sequence() {
        let mut chip = Chip::new(VirtualPhone::demo(), 262);
        assert_eq!(data(chip.handle(&[0x14, 0x01])), vec![0x15]);
        let diag = [0x00, 0x00, b'l', b'i', b'b', b'n', b'f', b'c'];
        assert_eq!(data(chip.handle(&diag))[1..], diag[1..]);
        assert_eq!(
            data(chip.handle(&[0x02])),
            vec![0x03, 0x32, 0x01, 0x06, 0x07]
        );
        assert_eq!(data(chip.handle(&[0x08, 0x63, 0x3D, 0x07])), vec![0x09]);
        assert_eq!(
            data(chip.handle(&[0x06, 0x63, 0x3D, 0x63, 0x02])),
            vec![0x07, 0x07, 0x00]
        );
        assert_eq!(chip.handle(&[0x8C]), Reply::Error);
    }

    #[test]
    fn holds_endless_polls_until_a_tap_or_an_abort() {
        let mut chip = Chip::new(VirtualPhone::demo(), 262);
        // Power-on MaxRetries: InListPassiveTarget waits for a target.
        assert_eq!(chip.handle(&[0x4A, 0x01, 0x00]), Reply::Hold);
        assert!(chip.holding());
        assert_eq!(chip.take_ready(), None);
        chip.tap();
        let found = data(chip.take_ready().expect("answered on tap"));
        assert_eq!(&found[..6], &[0x4B, 0x01, 0x01, 0x00, 0x04, 0x20]);
        assert!(!chip.holding());
        chip.remove();

        // InAutoPoll with PollNr FF, then the host's ACK cancels it.
        assert_eq!(chip.handle(&[0x60, 0xFF, 0x01, 0x20, 0x10]), Reply::Hold);
        chip.abort();
        assert_eq!(chip.aborts(), 1);
        chip.tap();
        assert_eq!(chip.take_ready(), None);
        chip.remove();

        // A poll for types the phone is not stays held through a tap.
        assert_eq!(chip.handle(&[0x60, 0xFF, 0x01, 0x11]), Reply::Hold);
        chip.tap();
        assert_eq!(chip.take_ready(), None);
        assert!(chip.holding());
        // A new command replaces the held one.
        assert_eq!(data(chip.handle(&[0x02]))[0], 0x03);
        assert!(!chip.holding());
    }

    #[test]
    fn lists_a_phone_only_while_it_is_in_the_field() {
        let mut chip = Chip::new(VirtualPhone::demo(), 262);
        // What libnfc sends for a single select (NP_INFINITE_SELECT off).
        assert_eq!(
            data(chip.handle(&[0x32, 0x05, 0x00, 0x01, 0x02])),
            vec![0x33]
        );
        assert_eq!(data(chip.handle(&[0x4A, 0x01, 0x00])), vec![0x4B, 0x00]);
        chip.tap();
        let found = data(chip.handle(&[0x4A, 0x01, 0x00]));
        assert_eq!(&found[..6], &[0x4B, 0x01, 0x01, 0x00, 0x04, 0x20]);
        // Felica or type B polling finds nothing.
        assert_eq!(
            data(chip.handle(&[0x4A, 0x01, 0x03, 0x00])),
            vec![0x4B, 0x00]
        );
        let presence = data(chip.handle(&[0x42, 0xB2]));
        assert_eq!(presence, vec![0x43, 0x00, 0xA2]);
        chip.remove();
        assert_eq!(data(chip.handle(&[0x42, 0xB2])), vec![0x43, 0x01]);
        let polled = data(chip.handle(&[0x60, 0x01, 0x01, 0x20, 0x10]));
        assert_eq!(polled, vec![0x61, 0x00]);
        chip.tap();
        let polled = data(chip.handle(&[0x60, 0x01, 0x01, 0x20, 0x10]));
        assert_eq!(&polled[..3], &[0x61, 0x01, 0x20]);
    }

    #[test]
    fn chains_long_answers_with_the_mi_bit() {
        let mut chip = Chip::new(VirtualPhone::demo(), 64);
        chip.tap();
        data(chip.handle(&[0x4A, 0x01, 0x00]));
        assert_eq!(
            data(chip.handle(&select())),
            vec![0x41, 0x00, 0x80, 0x01, 0x01, 0x90, 0x00]
        );
        let first = data(chip.handle(&[0x40, 0x01, 0x80, 0xCA, 0x00, 0x65, 0x00]));
        assert_eq!(first[1], STATUS_MI);
        assert_eq!(first.len(), 65);
        let mut rapdu = first[2..].to_vec();
        loop {
            let next = data(chip.handle(&[0x40, 0x01]));
            rapdu.extend_from_slice(&next[2..]);
            if next[1] & STATUS_MI == 0 {
                break;
            }
        }
        // 256 bytes of identity, then 61 XX (more through GET RESPONSE).
        assert_eq!(rapdu.len(), 258);
        assert_eq!(rapdu[256], 0x61);
    }

    #[test]
    fn pulls_the_phone_after_n_apdus() {
        let mut chip = Chip::new(VirtualPhone::demo(), 262);
        data(chip.handle(&[0x32, 0x05, 0x00, 0x01, 0x02]));
        chip.set_pull_after(Some(1));
        chip.tap();
        data(chip.handle(&[0x4A, 0x01, 0x00]));
        assert_eq!(data(chip.handle(&select()))[1], 0x00);
        assert_eq!(data(chip.handle(&select())), vec![0x41, STATUS_TIMEOUT]);
        assert!(!chip.in_field());
        assert_eq!(data(chip.handle(&[0x4A, 0x01, 0x00])), vec![0x4B, 0x00]);
    }
}
