//! What every backend does with a card, whatever the transport: detect it, announce
//! it, read it with progress, serve `card.read`/`card.sign` requests on it.
//!
//! Backends own the channel and the thread; these functions only borrow the channel,
//! so a removal seen by the backend is never raced by card logic.

use std::sync::Arc;

use crate::card::{self, CardChannel, CardError, CardType, Identity, ReadContext};
use crate::protocol::{ProtocolError, Reason};
use crate::transport::{EventSink, ReaderRequest, Update};

/// Handles a freshly connected card: detection, `card.inserted`, and for readable
/// types an automatic read (`card.reading` … `identity.read` or `identity.error`).
/// Returns the detected type for later requests.
pub fn on_inserted(
    sink: &dyn EventSink,
    ctx: &ReadContext,
    channel: &mut dyn CardChannel,
) -> CardType {
    let card_type = match card::detect(channel, ctx) {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(reader = %ctx.reader, error = %e, "card detection failed");
            sink.publish(Update::CardInserted {
                reader: ctx.reader.clone(),
                atr: channel.atr().to_vec(),
                card_type: CardType::Unknown,
            });
            sink.publish(Update::IdentityError {
                reader: ctx.reader.clone(),
                error: e.into(),
            });
            return CardType::Unknown;
        }
    };
    tracing::info!(reader = %ctx.reader, atr = %hex::encode_upper(channel.atr()), ?card_type, "card inserted");
    sink.publish(Update::CardInserted {
        reader: ctx.reader.clone(),
        atr: channel.atr().to_vec(),
        card_type,
    });
    match card_type {
        CardType::Vitale2 | CardType::Apcv => {
            let _ = read(sink, ctx, channel, card_type);
        }
        CardType::Vitale1 => {
            if let Err(e) = card::read_identity(channel, card_type, ctx, &mut |_, _| {}) {
                sink.publish(Update::IdentityError {
                    reader: ctx.reader.clone(),
                    error: e.into(),
                });
            }
        }
        // A CPS or a foreign card is recognised and left alone.
        CardType::Cps | CardType::Unknown => {}
    }
    card_type
}

/// Reads the card, publishing progress and the outcome.
pub fn read(
    sink: &dyn EventSink,
    ctx: &ReadContext,
    channel: &mut dyn CardChannel,
    card_type: CardType,
) -> Result<Arc<Identity>, ProtocolError> {
    let started = std::time::Instant::now();
    let mut progress = |step, total| {
        sink.publish(Update::CardReading {
            reader: ctx.reader.clone(),
            step,
            total,
        })
    };
    // An `unknown` card is detected again, so a read request on a card that failed
    // detection answers what the card did rather than a generic "unknown card".
    let card_type = match card_type {
        CardType::Unknown => card::detect(channel, ctx),
        known => Ok(known),
    };
    match card_type.and_then(|t| card::read_identity(channel, t, ctx, &mut progress)) {
        Ok(identity) => {
            tracing::info!(
                reader = %ctx.reader,
                beneficiaries = identity.beneficiaries.len(),
                ms = started.elapsed().as_millis() as u64,
                "identity read"
            );
            let identity = Arc::new(identity);
            sink.publish(Update::IdentityRead {
                reader: ctx.reader.clone(),
                identity: identity.clone(),
                elapsed: started.elapsed(),
            });
            Ok(identity)
        }
        Err(e) => {
            tracing::info!(reader = %ctx.reader, error = %e, "identity read failed");
            let error: ProtocolError = e.into();
            sink.publish(Update::IdentityError {
                reader: ctx.reader.clone(),
                error: error.clone(),
            });
            Err(error)
        }
    }
}

/// Serves one client request on the backend thread. `card` is the present card's
/// channel and type, or `None` when the reader is empty.
pub fn serve(
    sink: &dyn EventSink,
    ctx: &ReadContext,
    card: Option<(&mut dyn CardChannel, CardType)>,
    request: ReaderRequest,
) {
    match request {
        ReaderRequest::Read { reply } => {
            let result = match card {
                Some((channel, card_type)) => read(sink, ctx, channel, card_type),
                None => Err(no_card(ctx)),
            };
            let _ = reply.send(result);
        }
        ReaderRequest::Sign { digest, reply } => {
            let result = match card {
                Some((channel, card_type)) => {
                    card::sign(channel, card_type, ctx, &digest).map_err(|e: CardError| {
                        tracing::info!(reader = %ctx.reader, error = %e, "signature failed");
                        ProtocolError::from(e)
                    })
                }
                None => Err(no_card(ctx)),
            };
            let _ = reply.send(result);
        }
    }
}

/// Answers a request that arrived after the card left.
pub fn refuse(ctx: &ReadContext, request: ReaderRequest) {
    match request {
        ReaderRequest::Read { reply } => {
            let _ = reply.send(Err(no_card(ctx)));
        }
        ReaderRequest::Sign { reply, .. } => {
            let _ = reply.send(Err(no_card(ctx)));
        }
    }
}

fn no_card(ctx: &ReadContext) -> ProtocolError {
    ProtocolError::new(
        Reason::CardRemoved,
        format!("the card or phone left {}", ctx.reader),
    )
}
