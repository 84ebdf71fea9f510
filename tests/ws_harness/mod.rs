//! In-process server fixture for the WebSocket tests: the real `serve` on a loopback
//! port, a hub the test drives with `publish`, raw-HTTP helpers for handshake rules,
//! and a test reader backend thread that answers card requests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vitale_bridge::bus::{Hub, PcscStatus};
use vitale_bridge::card::{
    Beneficiary, CardType, Environment, Identity, Ins, Sensitive, SignOutcome, Source,
};
use vitale_bridge::protocol::ReaderKind;
use vitale_bridge::server::{ServerConfig, serve};
use vitale_bridge::transport::{ReaderHandle, ReaderRequest, Update};

/// Longest any wait in these tests may take before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// Identity strings that must never reach a redacted client or a log.
pub const SECRETS: [&str; 5] = [
    "DUPONT-SECRET",
    "Zoé-Secrète",
    "1985-07-14",
    "19850714",
    "185077512345678",
];

/// A running in-process server.
pub struct Server {
    /// The hub the server serves.
    pub hub: Arc<Hub>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// The test configuration: one allowed web origin, short close timeout.
pub fn cfg() -> ServerConfig {
    ServerConfig {
        allowed_origins: vec![
            "https://app.example".into(),
            "http://clinic.local:8080".into(),
        ],
        close_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

impl Server {
    /// Starts `serve` on 127.0.0.1:0 with `cfg`.
    pub async fn start(cfg: ServerConfig) -> Server {
        let hub = Hub::new(PcscStatus::Disabled);
        Self::start_with(hub, cfg).await
    }

    /// Starts `serve` for an existing hub.
    pub async fn start_with(hub: Arc<Hub>, cfg: ServerConfig) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(vec![listener], hub.clone(), cfg, async move {
            let _ = stopped.await;
        }));
        Server {
            hub,
            port,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `ws://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.port)
    }

    /// The daemon's own origin.
    pub fn own_origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
    }
}

/// Sends `request` on a fresh connection and returns everything the server sent
/// until it closed (or `WAIT` passed).
pub async fn raw_http(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            // A 101 keeps the connection open: its head is the whole answer.
            if out.starts_with(b"HTTP/1.1 101 ") && out.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A WebSocket upgrade request with the given Host and Origin headers.
pub fn upgrade_request(host: &str, origin: Option<&str>) -> String {
    let mut r = format!(
        "GET /v1 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    if let Some(o) = origin {
        r.push_str(&format!("Origin: {o}\r\n"));
    }
    r.push_str("\r\n");
    r
}

/// The status code of a raw response.
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// An identity made of [`SECRETS`].
pub fn identity(reader: &str) -> Identity {
    Identity {
        source: Source::VitaleCard,
        profile: "vitale2-public".into(),
        reader: reader.into(),
        card_type: CardType::Vitale2,
        environment: Environment::Unknown,
        beneficiaries: vec![Beneficiary {
            index: 0,
            surname: Sensitive::new(SECRETS[0].into()),
            given_name: Sensitive::new(SECRETS[1].into()),
            birth_date: Sensitive::new(Some(SECRETS[2].into())),
            birth_date_raw: Sensitive::new(SECRETS[3].into()),
            birth_date_lunar: false,
            nir: Sensitive::new(Some(SECRETS[4].into())),
            nir_key_valid: Some(true),
            ins: Some(Ins {
                matricule: Sensitive::new(SECRETS[4].into()),
                oid: "1.2.250.1.213.1.4.10".into(),
            }),
        }],
        apcv: None,
    }
}

/// Asserts no secret appears in `text`.
pub fn assert_no_secrets(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "identity data {s:?} leaked: {text}");
    }
}

/// A reader backend thread answering card requests like a real backend would.
pub struct TestBackend {
    /// `Read` requests served.
    pub reads: Arc<AtomicUsize>,
    /// Digests the phone was asked to sign.
    pub digests: Arc<Mutex<Vec<[u8; 32]>>>,
    /// The phone's key.
    pub key: SigningKey,
}

impl TestBackend {
    /// Registers reader `id` holding a card of `card_type` and serves it from a thread.
    /// Reads answer [`identity`]; signatures are real ES256 over the digest.
    pub fn spawn(hub: &Arc<Hub>, id: &str, card_type: CardType) -> TestBackend {
        let (handle, mut rx) = ReaderHandle::channel();
        hub.publish(Update::ReaderAdded {
            id: id.into(),
            name: format!("Test reader {id}"),
            kind: ReaderKind::Simulated,
            contactless: card_type == CardType::Apcv,
            handle: Some(handle),
        });
        hub.publish(Update::CardInserted {
            reader: id.into(),
            atr: vec![0x3B, 0x88],
            card_type,
        });
        let key = SigningKey::from_slice(&[0x42; 32]).expect("key");
        let backend = TestBackend {
            reads: Arc::new(AtomicUsize::new(0)),
            digests: Arc::new(Mutex::new(Vec::new())),
            key: key.clone(),
        };
        let reads = backend.reads.clone();
        let digests = backend.digests.clone();
        let reader = id.to_string();
        let hub = hub.clone();
        std::thread::spawn(move || {
            while let Some(req) = rx.blocking_recv() {
                match req {
                    ReaderRequest::Read { reply } => {
                        reads.fetch_add(1, Ordering::SeqCst);
                        let identity = Arc::new(identity(&reader));
                        hub.publish(Update::IdentityRead {
                            reader: reader.clone(),
                            identity: identity.clone(),
                            elapsed: Duration::ZERO,
                        });
                        let _ = reply.send(Ok(identity));
                    }
                    ReaderRequest::Sign { digest, reply } => {
                        digests.lock().expect("lock").push(digest);
                        let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).expect("sign");
                        let public_key =
                            key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                        let _ = reply.send(Ok(SignOutcome {
                            public_key,
                            signature: sig.to_bytes().to_vec(),
                        }));
                    }
                }
            }
        });
        backend
    }
}

/// Reads until a Close frame arrives and returns its code (fails on timeout or a
/// stream that ends without one).
pub async fn close_code<S>(ws: &mut S) -> CloseCode
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for Close")
            .expect("stream ended without a Close frame")
            .expect("websocket error before Close");
        if let Message::Close(frame) = msg {
            return frame.expect("close frame has a code").code;
        }
    }
}

/// Polls `cond` until true or `WAIT` passes.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A masked client text frame (mask 0 keeps the payload readable).
pub fn masked_text(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

/// A raw client with a 4 KiB receive window that has upgraded and sent `subscribe`,
/// its answer left unread: a subscriber that reads only when the test does.
pub async fn raw_subscriber(port: u16) -> TcpStream {
    let mut s = small_window_tcp(port).await;
    raw_upgrade(&mut s, port).await;
    s.write_all(&masked_text(
        br#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#,
    ))
    .await
    .expect("subscribe");
    s
}

/// A connection to `port` with a 4 KiB receive buffer: a client that stops reading
/// on it fills up after a few messages.
pub async fn small_window_tcp(port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect")
}

/// Sends a native upgrade request on `s` and reads the 101 head, byte by byte so no
/// frame after it is consumed.
pub async fn raw_upgrade(s: &mut TcpStream, port: u16) {
    s.write_all(upgrade_request(&format!("127.0.0.1:{port}"), None).as_bytes())
        .await
        .expect("upgrade");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.expect("head");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
}

/// Publishes 4 KiB `reader.added` events at `fast`'s pace (checking each arrives in
/// order) until the hub has dropped one of its two subscribers; returns the count.
pub async fn publish_until_a_subscriber_drops(
    server: &Server,
    fast: &mut crate::support::Client,
) -> usize {
    let mut published = 0usize;
    while server.hub.subscriber_count() == 2 {
        assert!(
            published < 20_000,
            "the slow client never hit its queue limit"
        );
        server.hub.publish(Update::ReaderAdded {
            id: format!("sim:{published}"),
            name: "n".repeat(4096),
            kind: ReaderKind::Simulated,
            contactless: false,
            handle: None,
        });
        published += 1;
        assert_eq!(fast.next_event().await["seq"], published as u64);
    }
    published
}

/// Publishes reader `sim:I` with a name of `name_len` bytes (event size on demand).
pub fn add_reader(server: &Server, i: usize, name_len: usize) {
    server.hub.publish(Update::ReaderAdded {
        id: format!("sim:{i}"),
        name: "n".repeat(name_len),
        kind: ReaderKind::Simulated,
        contactless: false,
        handle: None,
    });
}
