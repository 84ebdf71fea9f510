//! Card operations clients ask for (`card.read`, `card.sign`), run through the
//! reader's backend thread one at a time.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::oneshot;

use super::hub::Hub;
use crate::card::phone::origin_binding;
use crate::card::{CardType, Identity};
use crate::protocol::event::Signature;
use crate::protocol::{ProtocolError, Reason};
use crate::transport::{ReaderHandle, ReaderRequest, Update};

/// How long a request waits for its turn on a busy reader (product.md §4.5).
pub const TURN_WAIT: Duration = Duration::from_secs(10);
/// How long a read may take once it has the reader.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a signature may take (the holder confirms on the phone).
pub const SIGN_TIMEOUT: Duration = Duration::from_secs(60);

impl Hub {
    /// `card.read`: the cached identity of the present card, or a read on the reader's
    /// thread when there is none or `fresh` is asked.
    pub async fn read_card(
        &self,
        reader: &str,
        fresh: bool,
    ) -> Result<Arc<Identity>, ProtocolError> {
        // An `unknown` card goes to its backend, which detects it again and answers
        // what the card did (mute, refused SELECT, …) instead of a generic refusal.
        let handle = self.ready_handle(reader, |card_type| match card_type {
            CardType::Vitale2 | CardType::Apcv | CardType::Unknown => Ok(()),
            other => Err(unsupported(other)),
        })?;
        if !fresh && let Some(identity) = self.cached_identity(reader) {
            return Ok(identity);
        }
        let _turn = tokio::time::timeout(TURN_WAIT, handle.turn().clone().lock_owned())
            .await
            .map_err(|_| busy())?;
        // A read that finished while we waited for our turn serves us too.
        if !fresh && let Some(identity) = self.cached_identity(reader) {
            return Ok(identity);
        }
        let (reply, rx) = oneshot::channel();
        handle
            .send(ReaderRequest::Read { reply })
            .await
            .map_err(|_| gone())?;
        await_reply(rx, READ_TIMEOUT).await
    }

    /// `card.sign`: has the phone sign the origin-bound digest, verifies the signature
    /// with the phone's key, publishes `signature.completed` and returns it.
    pub async fn sign(
        &self,
        reader: &str,
        origin: &str,
        challenge: &[u8],
    ) -> Result<Arc<Signature>, ProtocolError> {
        let handle = self.ready_handle(reader, |card_type| match card_type {
            CardType::Apcv => Ok(()),
            CardType::Vitale2 | CardType::Vitale1 => Err(ProtocolError::new(
                Reason::SignUnsupported,
                "a Carte Vitale cannot sign; ask the patient to tap the appli carte Vitale",
            )),
            other => Err(unsupported(other)),
        })?;
        let (message, digest) = origin_binding(origin, challenge);
        let _turn = tokio::time::timeout(TURN_WAIT, handle.turn().clone().lock_owned())
            .await
            .map_err(|_| busy())?;
        let (reply, rx) = oneshot::channel();
        handle
            .send(ReaderRequest::Sign { digest, reply })
            .await
            .map_err(|_| gone())?;
        // The request reached the reader's backend: count its outcome once.
        let verified = await_reply(rx, SIGN_TIMEOUT).await.and_then(|outcome| {
            crate::card::phone::verify(&outcome.public_key, &message, &outcome.signature)
                .map(|()| outcome)
                .map_err(ProtocolError::from)
        });
        self.metrics().signature(verified.is_ok());
        let outcome = verified?;
        let signature = Arc::new(Signature {
            reader: reader.to_string(),
            alg: "ES256",
            origin: origin.to_string(),
            challenge: URL_SAFE_NO_PAD.encode(challenge),
            public_key: URL_SAFE_NO_PAD.encode(&outcome.public_key),
            signature: URL_SAFE_NO_PAD.encode(&outcome.signature),
            verified: true,
        });
        self.publish(Update::SignatureCompleted {
            signature: signature.clone(),
        });
        Ok(signature)
    }

    fn cached_identity(&self, reader: &str) -> Option<Arc<Identity>> {
        self.reader(reader)
            .and_then(|(r, _)| r.card.and_then(|c| c.identity))
    }

    fn ready_handle(
        &self,
        reader: &str,
        accept: impl FnOnce(CardType) -> Result<(), ProtocolError>,
    ) -> Result<ReaderHandle, ProtocolError> {
        let (r, handle) = self.reader(reader).ok_or_else(|| {
            ProtocolError::new(
                Reason::ReaderNotFound,
                format!("no reader with id {reader:?}"),
            )
        })?;
        let card = r.card.ok_or_else(|| {
            ProtocolError::new(Reason::NoCard, format!("no card or phone in {reader}"))
        })?;
        accept(card.card_type)?;
        handle.ok_or_else(|| {
            ProtocolError::new(Reason::Internal, format!("{reader} accepts no card work"))
        })
    }
}

async fn await_reply<T>(
    rx: oneshot::Receiver<Result<T, ProtocolError>>,
    limit: Duration,
) -> Result<T, ProtocolError> {
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ProtocolError::new(
            Reason::Timeout,
            format!("no answer from the card within {} s", limit.as_secs()),
        )),
    }
}

fn unsupported(card_type: CardType) -> ProtocolError {
    let what = match card_type {
        CardType::Vitale1 => "a Carte Vitale 1, which has no public reading method",
        CardType::Cps => "a CPS (health professional card), not a patient card",
        _ => "a card that is neither a Carte Vitale 2 nor a supported phone",
    };
    ProtocolError::new(Reason::CardUnsupported, format!("the reader holds {what}"))
}

fn busy() -> ProtocolError {
    ProtocolError::new(
        Reason::ReaderBusy,
        format!(
            "the reader stayed busy for {} s with another operation",
            TURN_WAIT.as_secs()
        ),
    )
}

fn gone() -> ProtocolError {
    ProtocolError::new(
        Reason::CardRemoved,
        "the reader's backend stopped before answering (card or reader removed)",
    )
}
