//! APDU exchange above the transport: T=0 `61XX` (GET RESPONSE) and `6CXX` (resend
//! with Le) handled once, bounded, for every channel (cards.md §1 "T=0 behaviour").
//!
//! Traces go to the `apdu` target at trace level as `>>>` (command header and Lc/Le)
//! and `<<<` (response length and status word). Response data never reaches a log:
//! it is health data.

use super::{CardChannel, CardError, ChannelError};
use zeroize::{Zeroize, Zeroizing};

use crate::codec::apdu::{self, Command, Response, StatusWord};

/// Most exchanges one logical command may take (first send, GET RESPONSEs, resends).
pub const MAX_ROUNDS: usize = 16;

/// Most response data one logical command may collect.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Extra attempts after a transient transport failure.
const TRANSIENT_RETRIES: usize = 2;

/// Sends `capdu` and follows `61XX`/`6CXX` until a final status, within the bounds of
/// cards.md (≤ 16 rounds, ≤ 64 KiB collected).
///
/// `61 XX` (ISO 7816-4 §5.1.3, T=0 ISO 7816-3 §10.3.5) is answered with
/// `GET RESPONSE 00 C0 00 00 XX` (`XX = 00` asks for 256) and the data of every round
/// is concatenated. `6C XX` resends the last command with `Le = XX`. The returned
/// status is the last one the card gave. Breaking a bound is
/// [`CardError::Malformed`]; transport failures come back as [`CardError::Channel`]
/// after a couple of retries for the transient ones.
pub fn transceive(channel: &mut dyn CardChannel, capdu: &[u8]) -> Result<Response, CardError> {
    let mut command = capdu.to_vec();
    // Identity bytes pass through every buffer here: each is wiped when dropped,
    // including the ones left behind when `data` grows.
    let mut data = Zeroizing::new(Vec::new());
    for _ in 0..MAX_ROUNDS {
        let raw = Zeroizing::new(transmit_with_retry(channel, &command)?);
        let response = Response::parse(&raw).ok_or_else(|| {
            CardError::Mute(format!(
                "the card answered {} byte(s), less than a status word",
                raw.len()
            ))
        })?;
        trace_exchange(&command, &response);
        if data.len() + response.data.len() > MAX_RESPONSE {
            return Err(CardError::Malformed(format!(
                "response longer than {MAX_RESPONSE} bytes"
            )));
        }
        match response.status() {
            StatusWord::MoreData(n) => {
                extend_wiping(&mut data, &response.data);
                command = apdu::get_response(n);
            }
            StatusWord::WrongLe(n) => match with_le(&command, n) {
                Some(resend) => command = resend,
                // A command we cannot re-encode: hand the status to the caller.
                None => return Ok(response),
            },
            _ => {
                extend_wiping(&mut data, &response.data);
                return Ok(Response {
                    data: std::mem::take(&mut *data),
                    sw: response.sw,
                });
            }
        }
    }
    Err(CardError::Malformed(format!(
        "card kept the exchange going for more than {MAX_ROUNDS} rounds"
    )))
}

/// Appends `more` to `data`, wiping the old allocation when it has to grow instead of
/// leaving a copy of it in freed memory.
fn extend_wiping(data: &mut Vec<u8>, more: &[u8]) {
    let needed = data.len() + more.len();
    if needed > data.capacity() {
        let mut grown = Vec::with_capacity(needed.max(data.capacity() * 2));
        grown.extend_from_slice(data);
        data.zeroize();
        *data = grown;
    }
    data.extend_from_slice(more);
}

/// `command` with its Le replaced by `le` (`00` = 256); `None` when it is not a
/// short APDU.
fn with_le(command: &[u8], le: u8) -> Option<Vec<u8>> {
    let mut parsed = Command::parse(command).ok()?;
    parsed.le = Some(if le == 0 { 256 } else { u16::from(le) });
    parsed.to_bytes().ok()
}

/// One transmit, retried a couple of times when the transport reports a failure that
/// a flaky reader can produce (no answer, a transport glitch). Removal, reset, a busy
/// reader or a dead service are not retried: another attempt cannot help.
fn transmit_with_retry(channel: &mut dyn CardChannel, capdu: &[u8]) -> Result<Vec<u8>, CardError> {
    let mut attempt = 0;
    loop {
        match channel.transmit(capdu) {
            Ok(raw) => return Ok(raw),
            Err(e @ (ChannelError::Mute | ChannelError::Transport(_)))
                if attempt < TRANSIENT_RETRIES =>
            {
                attempt += 1;
                tracing::debug!(target: "apdu", error = %e, attempt, "transmit failed, retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Traces one exchange: header and lengths only, never data.
fn trace_exchange(command: &[u8], response: &Response) {
    if tracing::enabled!(target: "apdu", tracing::Level::TRACE) {
        let header: String = command
            .iter()
            .take(4)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::trace!(target: "apdu", ">>> {header} ({} bytes)", command.len());
        tracing::trace!(
            target: "apdu",
            "<<< {} bytes SW {:04X}",
            response.data.len(),
            response.sw
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_wiping_keeps_every_byte_across_growth() {
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for round in 0..40u8 {
            let chunk: Vec<u8> = (0..=round).map(|b| b ^ round).collect();
            extend_wiping(&mut data, &chunk);
            expected.extend_from_slice(&chunk);
            assert_eq!(data, expected, "round {round}");
            assert!(data.capacity() >= data.len());
        }
    }

    /// A scripted channel: answers in order, records what it was sent.
    struct Script {
        answers: Vec<Result<Vec<u8>, ChannelError>>,
        sent: Vec<Vec<u8>>,
    }

    impl Script {
        fn new(answers: Vec<Result<Vec<u8>, ChannelError>>) -> Self {
            Self {
                answers: answers.into_iter().rev().collect(),
                sent: Vec::new(),
            }
        }
    }

    impl CardChannel for Script {
        fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
            self.sent.push(capdu.to_vec());
            self.answers.pop().unwrap_or(Err(ChannelError::Removed))
        }
        fn atr(&self) -> &[u8] {
            &[]
        }
    }

    const READ: [u8; 5] = [0x00, 0xB0, 0x82, 0x00, 0x00];

    #[test]
    fn plain_9000_is_returned_as_is() {
        let mut ch = Script::new(vec![Ok(vec![1, 2, 0x90, 0x00])]);
        let r = transceive(&mut ch, &READ).expect("reads");
        assert_eq!(
            r,
            Response {
                data: vec![1, 2],
                sw: 0x9000
            }
        );
        assert_eq!(ch.sent, vec![READ.to_vec()]);
    }

    #[test]
    fn get_response_chains_and_concatenates() {
        let mut ch = Script::new(vec![
            Ok(vec![1, 0x61, 0x02]),
            Ok(vec![2, 3, 0x61, 0x00]),
            Ok(vec![4, 0x90, 0x00]),
        ]);
        let r = transceive(&mut ch, &READ).expect("reads");
        assert_eq!(r.data, [1, 2, 3, 4]);
        assert!(r.is_ok());
        assert_eq!(
            ch.sent,
            vec![
                READ.to_vec(),
                vec![0x00, 0xC0, 0x00, 0x00, 0x02],
                vec![0x00, 0xC0, 0x00, 0x00, 0x00],
            ]
        );
    }

    #[test]
    fn wrong_le_resends_with_the_exact_length() {
        let mut ch = Script::new(vec![Ok(vec![0x6C, 0x03]), Ok(vec![7, 8, 9, 0x90, 0x00])]);
        let r = transceive(&mut ch, &READ).expect("reads");
        assert_eq!(r.data, [7, 8, 9]);
        assert_eq!(ch.sent[1], [0x00, 0xB0, 0x82, 0x00, 0x03]);
        // A case-3 command gains an Le.
        let mut ch = Script::new(vec![Ok(vec![0x6C, 0x10]), Ok(vec![0x90, 0x00])]);
        transceive(&mut ch, &[0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00]).expect("selects");
        assert_eq!(ch.sent[1], [0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00, 0x10]);
    }

    #[test]
    fn final_error_status_is_returned_not_raised() {
        let mut ch = Script::new(vec![Ok(vec![0x6A, 0x82])]);
        let r = transceive(&mut ch, &READ).expect("exchange completes");
        assert_eq!(r.status(), StatusWord::FileNotFound);
    }

    #[test]
    fn endless_61xx_is_bounded() {
        let mut ch = Script::new((0..100).map(|_| Ok(vec![0xAA, 0x61, 0x01])).collect());
        let err = transceive(&mut ch, &READ).expect_err("bounded");
        assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
        assert_eq!(ch.sent.len(), MAX_ROUNDS);
    }

    #[test]
    fn endless_6cxx_is_bounded() {
        let mut ch = Script::new((0..100).map(|_| Ok(vec![0x6C, 0x05])).collect());
        assert!(matches!(
            transceive(&mut ch, &READ),
            Err(CardError::Malformed(_))
        ));
        assert_eq!(ch.sent.len(), MAX_ROUNDS);
    }

    #[test]
    fn oversized_responses_are_refused() {
        let mut huge = vec![0x55; 40_000];
        huge.extend([0x61, 0x00]);
        let mut ch = Script::new(vec![Ok(huge.clone()), Ok(huge)]);
        let err = transceive(&mut ch, &READ).expect_err("over 64 KiB");
        assert!(matches!(err, CardError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn short_responses_are_mute() {
        let mut ch = Script::new(vec![Ok(vec![0x90])]);
        let err = transceive(&mut ch, &READ).expect_err("one byte is no answer");
        assert!(matches!(err, CardError::Mute(_)), "{err:?}");
    }

    #[test]
    fn transient_failures_are_retried_a_couple_of_times() {
        let mut ch = Script::new(vec![
            Err(ChannelError::Transport("glitch".into())),
            Err(ChannelError::Mute),
            Ok(vec![0x90, 0x00]),
        ]);
        assert!(transceive(&mut ch, &READ).expect("third try").is_ok());
        assert_eq!(ch.sent.len(), 3);
        let mut ch = Script::new(vec![
            Err(ChannelError::Mute),
            Err(ChannelError::Mute),
            Err(ChannelError::Mute),
            Ok(vec![0x90, 0x00]),
        ]);
        assert_eq!(
            transceive(&mut ch, &READ),
            Err(CardError::Channel(ChannelError::Mute))
        );
        assert_eq!(ch.sent.len(), 3);
    }

    #[test]
    fn removal_is_not_retried() {
        for e in [
            ChannelError::Removed,
            ChannelError::Reset,
            ChannelError::Busy,
        ] {
            let mut ch = Script::new(vec![Err(e.clone()), Ok(vec![0x90, 0x00])]);
            assert_eq!(transceive(&mut ch, &READ), Err(CardError::Channel(e)));
            assert_eq!(ch.sent.len(), 1);
        }
    }
}
