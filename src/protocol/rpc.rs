//! JSON-RPC 2.0 envelopes (product.md §4.2, §4.4), pure: text in, a request or an
//! error response out; results and errors in, response text out.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::wiped::WipedJson;
use crate::protocol::ProtocolError;

/// Invalid JSON (also invalid UTF-8).
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid request object (batches included).
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Bad or unknown parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Application error; `data` carries `{reason, retriable}`.
pub const APPLICATION_ERROR: i64 = -32000;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// Error code.
    pub code: i64,
    /// Human message (never identity data).
    pub message: String,
    /// `{reason, retriable}` for application errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// A parse error.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::plain(PARSE_ERROR, message)
    }

    /// An invalid-request error.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::plain(INVALID_REQUEST, message)
    }

    /// An unknown-method error.
    pub fn method_not_found(method: &str) -> Self {
        let shown: String = method.chars().take(64).collect();
        Self::plain(METHOD_NOT_FOUND, format!("unknown method {shown:?}"))
    }

    /// A bad-params error.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::plain(INVALID_PARAMS, message)
    }

    fn plain(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

impl From<ProtocolError> for RpcError {
    fn from(e: ProtocolError) -> Self {
        RpcError {
            code: APPLICATION_ERROR,
            data: Some(json!({"reason": e.reason, "retriable": e.reason.retriable()})),
            message: e.message,
        }
    }
}

/// A well-formed request or notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification (no `id` member): it gets no response.
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Named parameters; absent or `null` params are an empty object.
    pub params: Map<String, Value>,
}

/// What a text message turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request to dispatch.
    Request(Request),
    /// Not a valid request; answer with this error under `id` (null when unknown),
    /// unless it was recognisably a notification.
    Invalid {
        /// The request id if one could be read, else `Value::Null`.
        id: Value,
        /// The error to answer with.
        error: RpcError,
        /// Whether an answer is due (false for a notification with bad params).
        respond: bool,
    },
}

/// Parses one text message.
pub fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return invalid(Value::Null, RpcError::parse(parse_message(&e))),
    };
    let mut obj = match value {
        Value::Object(o) => o,
        Value::Array(_) => {
            return invalid(
                Value::Null,
                RpcError::invalid_request(
                    "batches are not supported; send one request per message",
                ),
            );
        }
        _ => {
            return invalid(
                Value::Null,
                RpcError::invalid_request("a request must be a JSON object"),
            );
        }
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::Number(_) | Value::String(_))) => Some(id),
        Some(_) => {
            return invalid(
                Value::Null,
                RpcError::invalid_request("id must be a string, a number or null"),
            );
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return invalid(
            reply_id,
            RpcError::invalid_request("jsonrpc must be \"2.0\""),
        );
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return invalid(
                reply_id,
                RpcError::invalid_request("method must be a string"),
            );
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Incoming::Invalid {
                respond: id.is_some(),
                id: reply_id,
                error: RpcError::invalid_params("params must be an object"),
            };
        }
    };
    Incoming::Request(Request { id, method, params })
}

fn invalid(id: Value, error: RpcError) -> Incoming {
    Incoming::Invalid {
        id,
        error,
        respond: true,
    }
}

fn parse_message(e: &serde_json::Error) -> String {
    // serde_json's message quotes no input, only positions and categories.
    format!("invalid JSON: {e}")
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    jsonrpc: &'static str,
    id: &'a Value,
    result: T,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a Value,
    error: &'a RpcError,
}

/// An `event` notification (product.md §4.2): `{"jsonrpc":"2.0","method":"event",
/// "params":…}`, without an id.
#[derive(Debug, Serialize)]
pub struct EventNotification<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a P,
}

impl<'a, P: Serialize> EventNotification<'a, P> {
    /// The notification carrying `params` (an event).
    pub fn new(params: &'a P) -> Self {
        EventNotification {
            jsonrpc: "2.0",
            method: "event",
            params,
        }
    }
}

/// A success response's text.
pub fn success<T: Serialize>(id: &Value, result: T) -> String {
    match serde_json::to_string(&Success {
        jsonrpc: "2.0",
        id,
        result,
    }) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "result serialization failed");
            failure(
                id,
                &RpcError::from(ProtocolError::new(
                    crate::protocol::Reason::Internal,
                    "the result could not be serialized",
                )),
            )
        }
    }
}

/// Like [`success`], for results that carry identities: encoded into an exactly
/// sized buffer that is wiped once sent ([`WipedJson`]), with no intermediate
/// `Value` copy of the data.
pub fn success_wiped<T: Serialize>(id: &Value, result: T) -> WipedJson {
    match WipedJson::encode(&Success {
        jsonrpc: "2.0",
        id,
        result,
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "result serialization failed");
            failure(
                id,
                &RpcError::from(ProtocolError::new(
                    crate::protocol::Reason::Internal,
                    "the result could not be serialized",
                )),
            )
            .into()
        }
    }
}

/// An error response's text.
pub fn failure(id: &Value, error: &RpcError) -> String {
    serde_json::to_string(&Failure {
        jsonrpc: "2.0",
        id,
        error,
    })
    // A map of strings and numbers always serializes; keep a fixed fallback anyway.
    .unwrap_or_else(|_| {
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Reason;

    fn err_code(text: &str) -> (i64, Value, bool) {
        match parse(text) {
            Incoming::Invalid { id, error, respond } => (error.code, id, respond),
            Incoming::Request(r) => panic!("parsed {r:?}"),
        }
    }

    #[test]
    fn requests_and_notifications() {
        let Incoming::Request(r) =
            parse(r#"{"jsonrpc":"2.0","id":7,"method":"hello","params":{"client":"x"}}"#)
        else {
            panic!("not a request")
        };
        assert_eq!(r.id, Some(json!(7)));
        assert_eq!(r.method, "hello");
        assert_eq!(r.params["client"], "x");
        let Incoming::Request(n) = parse(r#"{"jsonrpc":"2.0","method":"unsubscribe"}"#) else {
            panic!("not a notification")
        };
        assert_eq!(n.id, None);
        assert!(n.params.is_empty());
        let Incoming::Request(nul) =
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"a","params":null}"#)
        else {
            panic!("null id is a request")
        };
        assert_eq!(nul.id, Some(Value::Null));
    }

    #[test]
    fn error_kinds() {
        assert_eq!(err_code("{").0, PARSE_ERROR);
        assert_eq!(err_code("").0, PARSE_ERROR);
        let deep = "[".repeat(10_000);
        assert_eq!(err_code(&deep).0, PARSE_ERROR);
        assert_eq!(err_code("[]").0, INVALID_REQUEST);
        assert_eq!(
            err_code(r#"[{"jsonrpc":"2.0","id":1,"method":"hello"}]"#).0,
            INVALID_REQUEST
        );
        assert_eq!(err_code("42").0, INVALID_REQUEST);
        assert_eq!(
            err_code(r#"{"id":1,"method":"hello"}"#),
            (INVALID_REQUEST, json!(1), true)
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"1.0","id":"a","method":"hello"}"#),
            (INVALID_REQUEST, json!("a"), true)
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":5}"#).0,
            INVALID_REQUEST
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#).1,
            Value::Null
        );
        assert_eq!(
            err_code(r#"{"jsonrpc":"2.0","id":1,"method":"a","params":[1]}"#),
            (INVALID_PARAMS, json!(1), true)
        );
        assert!(!err_code(r#"{"jsonrpc":"2.0","method":"a","params":3}"#).2);
    }

    #[test]
    fn responses() {
        assert_eq!(
            success(&json!(1), json!({})),
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
        let e: RpcError = ProtocolError::new(Reason::ReaderBusy, "busy").into();
        let v: Value = serde_json::from_str(&failure(&json!("x"), &e)).expect("json");
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32000,"message":"busy","data":{"reason":"READER_BUSY","retriable":true}}})
        );
        let v: Value =
            serde_json::from_str(&failure(&Value::Null, &RpcError::parse("bad"))).expect("json");
        assert_eq!(v["error"].get("data"), None);
    }
}
