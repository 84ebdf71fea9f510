//! The plain-HTTP edge: reading one bounded request head (with `httparse`) and
//! writing small, complete responses. The WebSocket upgrade response is built here
//! too, so the server decides everything about a connection before any 101.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head accepted; browsers send well under 2 KiB to a local port.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers accepted in one request.
const MAX_HEADERS: usize = 48;

/// The parts of a request head the server looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Request method, as sent.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Headers with lower-cased names, in order; values are the UTF-8 text sent.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Every value of header `name` (lower case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a header that must appear once; `None` if absent or repeated.
    pub fn single(&self, name: &str) -> Option<&str> {
        match self.all(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Bigger than [`MAX_HEAD_BYTES`] or too many headers (431).
    #[error("request head too large")]
    TooLarge,
    /// Not HTTP/1.x or not valid UTF-8 where text is expected (400).
    #[error("malformed request head")]
    Malformed,
    /// The peer closed before finishing the head.
    #[error("connection closed during the request head")]
    Closed,
    /// The peer closed (or reset) before sending a single byte.
    #[error("connection closed before sending anything")]
    Silent,
    /// Socket error.
    #[error("socket error while reading the request head")]
    Io(#[source] std::io::Error),
}

/// Parses a complete head from `buf`, returning it and its length, or `None` if more
/// bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let method = req.method.ok_or(HeadError::Malformed)?.to_string();
    let target = req.path.ok_or(HeadError::Malformed)?;
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed)?;
        out.push((h.name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some((
        Head {
            method,
            path,
            headers: out,
        },
        len,
    )))
}

/// Reads one request head, never buffering more than [`MAX_HEAD_BYTES`]. Returns the
/// head and any bytes that arrived after it (the start of the WebSocket stream).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = (MAX_HEAD_BYTES + 1)
            .saturating_sub(buf.len())
            .min(chunk.len());
        let n = match stream.read(&mut chunk[..room]).await {
            Ok(n) => n,
            // Scanners often reset instead of closing: silent all the same.
            Err(e) if buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(HeadError::Silent);
            }
            Err(e) => return Err(HeadError::Io(e)),
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Silent
            } else {
                HeadError::Closed
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((head, len)) = parse_head(&buf)? {
            let rest = buf.split_off(len);
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn response(status: u16, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A short plain-text error response.
pub fn error_response(status: u16, message: &str) -> Vec<u8> {
    let body = format!("{message}\n");
    response(status, "text/plain; charset=utf-8", &[], body.as_bytes())
}

/// The `101 Switching Protocols` answer to a valid upgrade with key `key`.
pub fn upgrade_response(key: &str) -> Vec<u8> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_websocket_request_and_keeps_the_rest() {
        let raw = b"GET /v1?x=1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nOrigin: https://a.example\r\n\r\n\x81\x80";
        let (head, len) = parse_head(raw).expect("valid").expect("complete");
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/v1");
        assert_eq!(head.single("host"), Some("127.0.0.1:1"));
        assert!(head.has_token("upgrade", "websocket"));
        assert!(head.has_token("connection", "upgrade"));
        assert_eq!(head.all("origin"), vec!["https://a.example"]);
        assert_eq!(&raw[len..], b"\x81\x80");
    }

    #[test]
    fn partial_then_errors() {
        assert!(matches!(parse_head(b"GET / HTTP/1.1\r\nHost: a"), Ok(None)));
        assert!(matches!(
            parse_head(b"\x00\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_head(raw.as_bytes()),
            Err(HeadError::TooLarge)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n"),
            Err(HeadError::Malformed)
        ));
    }

    #[tokio::test]
    async fn closing_before_any_byte_is_silent_and_after_some_is_closed() {
        let mut empty: &[u8] = b"";
        assert!(matches!(
            read_head(&mut empty).await,
            Err(HeadError::Silent)
        ));
        let mut partial: &[u8] = b"GET / HT";
        assert!(matches!(
            read_head(&mut partial).await,
            Err(HeadError::Closed)
        ));
    }

    #[test]
    fn duplicate_headers_are_not_single() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        let (head, _) = parse_head(raw).expect("valid").expect("complete");
        assert_eq!(head.single("host"), None);
        assert_eq!(head.all("host").len(), 2);
    }

    #[tokio::test]
    async fn oversized_head_is_refused_without_reading_past_the_bound() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 64 * 1024));
        let mut reader = &big[..];
        assert!(matches!(
            read_head(&mut reader).await,
            Err(HeadError::TooLarge)
        ));
        assert!(reader.len() >= big.len() - MAX_HEAD_BYTES - 1);
    }

    #[test]
    fn upgrade_accept_key_matches_rfc6455_example() {
        let r = String::from_utf8(upgrade_response("dGhlIHNhbXBsZSBub25jZQ==")).expect("ascii");
        assert!(r.starts_with("HTTP/1.1 101 "));
        assert!(r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
