//! The protocol's methods (product.md §4.2): parameter validation (pure) and the
//! answers that need only the hub. Card work is described here and run by the
//! session as separate tasks.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::bus::{Hub, ScopedReader, Scopes};
use crate::protocol::Reader;
use crate::protocol::rpc::RpcError;
use crate::protocol::{ProtocolError, Reason};

/// Protocol version this server speaks.
pub const PROTOCOL: u64 = 1;
/// Challenge length bounds in bytes (product.md §4.2).
pub const CHALLENGE_BYTES: std::ops::RangeInclusive<usize> = 32..=512;

/// A validated method call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `hello`.
    Hello {
        /// The client's self-description, for logs.
        client: Option<String>,
    },
    /// `status`.
    Status,
    /// `readers.list`.
    ReadersList,
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
    /// `card.read`.
    CardRead {
        /// Reader id.
        reader: String,
        /// Bypass the cached identity.
        fresh: bool,
    },
    /// `card.sign`.
    CardSign {
        /// Reader id.
        reader: String,
        /// Decoded challenge.
        challenge: Vec<u8>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloParams {
    client: Option<String>,
    protocol: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    reader: String,
    #[serde(default)]
    fresh: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignParams {
    reader: String,
    challenge: String,
}

fn params<T: DeserializeOwned>(p: Map<String, Value>) -> Result<T, RpcError> {
    serde_json::from_value(Value::Object(p))
        .map_err(|e| RpcError::invalid_params(format!("invalid params: {e}")))
}

impl Call {
    /// Validates a method name and its params.
    pub fn parse(method: &str, p: Map<String, Value>) -> Result<Call, RpcError> {
        Ok(match method {
            "hello" => {
                let h: HelloParams = params(p)?;
                if h.protocol.is_some_and(|v| v != PROTOCOL) {
                    return Err(RpcError::invalid_params(format!(
                        "this server speaks protocol {PROTOCOL}"
                    )));
                }
                Call::Hello { client: h.client }
            }
            "status" => params::<NoParams>(p).map(|_| Call::Status)?,
            "readers.list" => params::<NoParams>(p).map(|_| Call::ReadersList)?,
            "subscribe" => params::<NoParams>(p).map(|_| Call::Subscribe)?,
            "unsubscribe" => params::<NoParams>(p).map(|_| Call::Unsubscribe)?,
            "card.read" => {
                let r: ReadParams = params(p)?;
                Call::CardRead {
                    reader: r.reader,
                    fresh: r.fresh,
                }
            }
            "card.sign" => {
                let s: SignParams = params(p)?;
                Call::CardSign {
                    reader: s.reader,
                    challenge: decode_challenge(&s.challenge)?,
                }
            }
            other => return Err(RpcError::method_not_found(other)),
        })
    }

    /// Whether the call needs the card (runs as a task, refused to the status page).
    pub fn is_card_work(&self) -> bool {
        matches!(self, Call::CardRead { .. } | Call::CardSign { .. })
    }
}

/// Decodes a base64url challenge, padding optional, 32–512 bytes.
pub fn decode_challenge(text: &str) -> Result<Vec<u8>, RpcError> {
    let bytes = if text.ends_with('=') {
        URL_SAFE.decode(text)
    } else {
        URL_SAFE_NO_PAD.decode(text)
    }
    .map_err(|_| RpcError::invalid_params("challenge must be base64url"))?;
    if !CHALLENGE_BYTES.contains(&bytes.len()) {
        return Err(RpcError::invalid_params(format!(
            "challenge must be {}–{} bytes, got {}",
            CHALLENGE_BYTES.start(),
            CHALLENGE_BYTES.end(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// `hello`'s result: what this connection may call, and the data scopes its origin
/// has (docs/security.md, "Scopes").
pub fn hello(redacted: bool, scopes: Scopes) -> Value {
    let mut capabilities = vec!["status", "readers.list", "subscribe"];
    if !redacted {
        capabilities.push("card.read");
        if scopes.contains(Scopes::SIGN) {
            capabilities.push("card.sign");
        }
    }
    json!({
        "server": "vitale-bridge",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": PROTOCOL,
        "capabilities": capabilities,
        "scopes": scopes.names(),
    })
}

/// `status`'s result.
pub fn status(hub: &Hub) -> Value {
    serde_json::to_value(hub.status()).unwrap_or(Value::Null)
}

/// `readers.list`'s result (and a `subscribe` snapshot): readers with identities
/// limited to `scopes`, serialized straight from the registry's copies.
#[derive(Serialize)]
pub struct ReadersResult<'a> {
    readers: Vec<ScopedReader<'a>>,
}

impl<'a> ReadersResult<'a> {
    /// The readers as an origin with `scopes` sees them.
    pub fn new(readers: &'a [Reader], scopes: Scopes) -> Self {
        ReadersResult {
            readers: readers.iter().map(|r| ScopedReader(r, scopes)).collect(),
        }
    }
}

/// `subscribe`'s result.
#[derive(Serialize)]
pub struct SubscribeResult<'a> {
    /// The last `seq` the snapshot includes.
    pub seq: u64,
    /// The readers at `seq`.
    pub snapshot: ReadersResult<'a>,
}

/// The error the status page gets for card work.
pub fn not_permitted() -> RpcError {
    ProtocolError::new(
        Reason::NotPermitted,
        "the status page may not read or sign cards",
    )
    .into()
}

/// The error an origin without the `sign` scope gets for `card.sign`.
pub fn sign_not_permitted() -> RpcError {
    ProtocolError::new(
        Reason::NotPermitted,
        "this origin does not have the `sign` scope (see the daemon's origins configuration)",
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rpc::{INVALID_PARAMS, METHOD_NOT_FOUND};

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn valid_calls() {
        assert_eq!(
            Call::parse("hello", map(json!({"client":"x","protocol":1}))),
            Ok(Call::Hello {
                client: Some("x".into())
            })
        );
        assert_eq!(Call::parse("status", Map::new()), Ok(Call::Status));
        assert_eq!(
            Call::parse("card.read", map(json!({"reader":"sim:0"}))),
            Ok(Call::CardRead {
                reader: "sim:0".into(),
                fresh: false
            })
        );
        let c = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(
            Call::parse("card.sign", map(json!({"reader":"r","challenge":c}))),
            Ok(Call::CardSign {
                reader: "r".into(),
                challenge: vec![7; 32]
            })
        );
        let padded = URL_SAFE.encode([1u8; 32]);
        assert!(padded.ends_with('='));
        assert_eq!(decode_challenge(&padded), Ok(vec![1; 32]));
    }

    #[test]
    fn invalid_params_and_methods() {
        let code = |m: &str, p: Value| Call::parse(m, map(p)).map_err(|e| e.code);
        assert_eq!(code("nope", json!({})), Err(METHOD_NOT_FOUND));
        assert_eq!(code("hello", json!({"protocol":2})), Err(INVALID_PARAMS));
        assert_eq!(code("hello", json!({"bogus":1})), Err(INVALID_PARAMS));
        assert_eq!(code("status", json!({"x":1})), Err(INVALID_PARAMS));
        assert_eq!(code("card.read", json!({})), Err(INVALID_PARAMS));
        assert_eq!(code("card.read", json!({"reader":1})), Err(INVALID_PARAMS));
        assert_eq!(
            code("card.read", json!({"reader":"a","fresh":"yes"})),
            Err(INVALID_PARAMS)
        );
        for bad in [
            URL_SAFE_NO_PAD.encode([0u8; 31]),
            URL_SAFE_NO_PAD.encode([0u8; 513]),
            "not base64!".to_string(),
            "+/+/".repeat(16),
        ] {
            assert_eq!(
                code("card.sign", json!({"reader":"a","challenge":bad})),
                Err(INVALID_PARAMS),
                "{bad}"
            );
        }
        assert_eq!(
            code("card.sign", json!({"reader":"a"})),
            Err(INVALID_PARAMS)
        );
    }

    #[test]
    fn hello_hides_card_methods_from_the_status_page() {
        assert_eq!(hello(false, Scopes::ALL)["protocol"], 1);
        assert!(
            !hello(true, Scopes::NONE)["capabilities"]
                .to_string()
                .contains("card.")
        );
        assert_eq!(hello(true, Scopes::NONE)["scopes"], json!([]));
        assert!(
            hello(false, Scopes::ALL)["capabilities"]
                .to_string()
                .contains("card.sign")
        );
        assert_eq!(
            hello(false, Scopes::ALL)["scopes"],
            json!(["identity", "nir", "ins", "sign"])
        );
    }

    #[test]
    fn hello_reports_the_origins_scopes_and_hides_card_sign_without_sign() {
        let h = hello(false, Scopes::IDENTITY);
        assert_eq!(h["scopes"], json!(["identity"]));
        assert_eq!(
            h["capabilities"],
            json!(["status", "readers.list", "subscribe", "card.read"])
        );
    }
}
