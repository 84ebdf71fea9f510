//! `vitale-bridge client`: a native WebSocket client of a running daemon, for
//! support and tests. It connects (optionally with an `Origin` or another `Host`),
//! sends the given text frames in order, and prints every text frame the daemon
//! sends, one per line, as received; then `close CODE` when the daemon closes, or
//! `refused STATUS` when the handshake is refused.
//!
//! It answers "does this daemon admit me?" on the machine itself — on Windows that
//! is the OS-user check (the daemon resolves the client socket's owner), which a
//! client from another account or sandbox fails. What it prints is the protocol,
//! identities included when the user subscribes or reads: like `read --json`, it
//! is output the user asked for at their own terminal, never a log.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{EXIT_FAILURE, EXIT_USAGE, runtime};
use crate::config::Config;

/// Options of `vitale-bridge client`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The daemon's endpoint (default: `ws://` + the configured `listen` + `/v1`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Send this `Origin` header (default: none, a native client).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Send this `Host` header instead of the URL's (to check the daemon refuses it).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// A text frame to send after connecting (repeatable, sent in order, not checked).
    #[arg(long = "send", value_name = "TEXT")]
    pub send: Vec<String>,
    /// Close (code 1000) after this many text frames were received; default: stay
    /// until the daemon closes.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Give up after this many seconds (exit 1).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
}

/// `vitale-bridge client`.
pub fn run(cfg: &Config, args: &ClientArgs) -> ExitCode {
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("ws://{}/v1", cfg.listen));
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vitale-bridge: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let timeout = Duration::from_secs(args.timeout);
    match rt.block_on(async { tokio::time::timeout(timeout, session(&url, args)).await }) {
        Ok(Ok(code)) => code,
        Ok(Err(ClientError::Usage(msg))) => {
            eprintln!("vitale-bridge client: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        Ok(Err(e)) => {
            eprintln!("vitale-bridge client: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(_) => {
            eprintln!("vitale-bridge client: no end after {} s", args.timeout);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Why a client session failed.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        #[source]
        source: WsError,
    },
    #[error("connection failed")]
    Stream(#[source] WsError),
    #[error("cannot write to stdout")]
    Stdout(#[source] std::io::Error),
}

async fn session(url: &str, args: &ClientArgs) -> Result<ExitCode, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Usage(format!("bad URL {url:?}: {e}")))?;
    let header = |name: &str, value: &str| {
        HeaderValue::from_str(value)
            .map_err(|_| ClientError::Usage(format!("bad {name} header value {value:?}")))
    };
    if let Some(origin) = &args.origin {
        request
            .headers_mut()
            .insert("Origin", header("Origin", origin)?);
    }
    if let Some(host) = &args.host {
        request.headers_mut().insert("Host", header("Host", host)?);
    }
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(WsError::Http(response)) => {
            println_flush(&format!("refused {}", response.status().as_u16()))?;
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
        Err(source) => {
            return Err(ClientError::Connect {
                url: url.to_owned(),
                source,
            });
        }
    };
    for text in &args.send {
        ws.send(Message::text(text.as_str()))
            .await
            .map_err(ClientError::Stream)?;
    }
    let mut received = 0usize;
    loop {
        if args.count.is_some_and(|n| received >= n) {
            ws.close(None).await.map_err(ClientError::Stream)?;
            // Read on until the daemon's reply ends the stream: the close handshake.
            while let Some(msg) = ws.next().await {
                if msg.is_err() {
                    break;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                received += 1;
                println_flush(text.as_str())?;
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(CloseCode::Status, |f| f.code);
                println_flush(&format!("close {}", u16::from(code)))?;
                while let Some(msg) = ws.next().await {
                    if msg.is_err() {
                        break;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::Stream(e)),
            None => {
                println_flush("close 1006")?;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn println_flush(line: &str) -> Result<(), ClientError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(ClientError::Stdout)
}
