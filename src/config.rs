//! Configuration (product.md §3): TOML files layered over built-in defaults, then
//! command-line flags.
//!
//! Order, later wins: defaults, the system file ([`system_config`], or
//! `$VITALE_BRIDGE_SYSTEM_CONFIG`), the per-user file from the `directories` crate
//! (`~/.config/vitale-bridge/config.toml` on Linux), `--config FILE`, then flags.
//! Every file is parsed strictly (unknown keys are errors) and validated on its own,
//! so an error always names the file and the key it comes from.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bus::Scopes;
use crate::server::{ServerConfig, users};
use crate::transport::nfc::NfcOptions;
use crate::transport::pcsc::PcscOptions;

/// Default WebSocket port.
pub const DEFAULT_PORT: u16 = 24880;
/// Default phone profile AID: reference-v1 (cards.md §4), ASCII "vbridge" + 01.
pub const DEFAULT_APCV_AID: &str = "F07662726964676501";
/// Environment variable overriding [`system_config`] (tests, packaging checks).
pub const SYSTEM_CONFIG_ENV: &str = "VITALE_BRIDGE_SYSTEM_CONFIG";

/// The machine-wide config file: `/etc/vitale-bridge/config.toml`, on Windows
/// `%ProgramData%\vitale-bridge\config.toml` (where the MSI puts the commented
/// default). The per-user file comes from the `directories` crate on both.
pub fn system_config() -> PathBuf {
    #[cfg(windows)]
    {
        let data = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(data)
            .join("vitale-bridge")
            .join("config.toml")
    }
    #[cfg(not(windows))]
    {
        PathBuf::from("/etc/vitale-bridge/config.toml")
    }
}

/// A configuration error: which file (or flag), which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The file path or `command line`.
    pub source_name: String,
    /// The offending key (`listen`, `nfc.poll_interval_ms`…), when known.
    pub key: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn key(source_name: &str, key: &str, message: impl std::fmt::Display) -> Self {
        Self {
            source_name: source_name.to_string(),
            key: Some(key.to_string()),
            message: format!("`{key}`: {message}"),
        }
    }
}

/// The effective configuration after layering and validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Loopback address and port of the WebSocket server.
    pub listen: SocketAddr,
    /// Exact web origins allowed to connect, with every scope.
    pub allowed_origins: Vec<String>,
    /// Origins with narrowed scopes (`[origins."https://x"] scopes = [...]`); also
    /// allowed to connect. Wins over an `allowed_origins` entry for the same origin.
    pub origins: BTreeMap<String, OriginConfig>,
    /// Whether clients without an Origin header may connect.
    pub allow_native_clients: bool,
    /// OS users (names or uids) besides the daemon's own whose programs may connect.
    pub allowed_users: Vec<String>,
    /// OS groups (names or gids) whose members' programs may connect.
    pub allowed_groups: Vec<String>,
    /// Open connections at most.
    pub max_clients: usize,
    /// Server limits (product.md §4.5).
    pub limits: Limits,
    /// PC/SC backend.
    pub pcsc: PcscConfig,
    /// libnfc backend.
    pub nfc: NfcConfig,
    /// Phone profile.
    pub apcv: ApcvConfig,
    /// Logging.
    pub log: LogConfig,
    /// Demo mode timing.
    pub demo: DemoConfig,
    /// The opt-in Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// Server limits (product.md §4.5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Largest message in bytes.
    pub max_message_bytes: usize,
    /// Outgoing queue per client, in messages.
    pub queue_len: usize,
    /// Requests per second per connection.
    pub rate_per_sec: u32,
    /// Ping interval in milliseconds.
    pub ping_interval_ms: u64,
    /// Time allowed for the HTTP upgrade, in milliseconds.
    pub handshake_timeout_ms: u64,
}

/// `[origins."https://x"]`: what one origin receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Scope names: `identity`, `nir`, `ins`, `sign`.
    pub scopes: Vec<String>,
}

/// `[pcsc]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PcscConfig {
    /// Watch PC/SC readers.
    pub enabled: bool,
}

/// `[nfc]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NfcConfig {
    /// Poll libnfc devices.
    pub enabled: bool,
    /// libnfc connstrings; empty = scan USB devices once at start.
    pub devices: Vec<String>,
    /// Deprecated and ignored: the chip waits for a tap (docs/hardware-nfc.md). Still
    /// accepted and validated so existing files keep loading.
    pub poll_interval_ms: u64,
}

/// `[apcv]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApcvConfig {
    /// Phone profile AID, uppercase hex.
    pub aid: String,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full tracing filter directive.
    pub level: String,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format); off by default.
    pub enabled: bool,
}

/// `[demo]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoConfig {
    /// Time between demo steps, in milliseconds.
    pub interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        let server = ServerConfig::default();
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            allowed_origins: Vec::new(),
            origins: BTreeMap::new(),
            allow_native_clients: server.allow_native_clients,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            max_clients: server.max_clients,
            limits: Limits {
                max_message_bytes: server.max_message_bytes,
                queue_len: server.queue_len,
                rate_per_sec: server.rate_per_sec,
                ping_interval_ms: server.ping_interval.as_millis() as u64,
                handshake_timeout_ms: server.handshake_timeout.as_millis() as u64,
            },
            pcsc: PcscConfig { enabled: true },
            nfc: NfcConfig {
                enabled: true,
                devices: Vec::new(),
                poll_interval_ms: 200,
            },
            apcv: ApcvConfig {
                aid: DEFAULT_APCV_AID.into(),
            },
            log: LogConfig {
                level: "info".into(),
            },
            demo: DemoConfig { interval_ms: 2000 },
            metrics: MetricsConfig {
                enabled: server.metrics,
            },
        }
    }
}

/// One TOML file (or the flags) as given: every key optional, unknown keys refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// `listen`.
    pub listen: Option<String>,
    /// `allowed_origins`.
    pub allowed_origins: Option<Vec<String>>,
    /// `[origins."…"]`; a layer that has the table replaces it whole.
    pub origins: Option<BTreeMap<String, OriginConfig>>,
    /// `allow_native_clients`.
    pub allow_native_clients: Option<bool>,
    /// `allowed_users`.
    pub allowed_users: Option<Vec<String>>,
    /// `allowed_groups`.
    pub allowed_groups: Option<Vec<String>>,
    /// `max_clients`.
    pub max_clients: Option<usize>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsLayer,
    /// `[pcsc]`.
    #[serde(default)]
    pub pcsc: PcscLayer,
    /// `[nfc]`.
    #[serde(default)]
    pub nfc: NfcLayer,
    /// `[apcv]`.
    #[serde(default)]
    pub apcv: ApcvLayer,
    /// `[log]`.
    #[serde(default)]
    pub log: LogLayer,
    /// `[demo]`.
    #[serde(default)]
    pub demo: DemoLayer,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsLayer,
}

/// `[limits]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsLayer {
    /// `limits.max_message_bytes`.
    pub max_message_bytes: Option<usize>,
    /// `limits.queue_len`.
    pub queue_len: Option<usize>,
    /// `limits.rate_per_sec`.
    pub rate_per_sec: Option<u32>,
    /// `limits.ping_interval_ms`.
    pub ping_interval_ms: Option<u64>,
    /// `limits.handshake_timeout_ms`.
    pub handshake_timeout_ms: Option<u64>,
}

/// `[pcsc]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcscLayer {
    /// `pcsc.enabled`.
    pub enabled: Option<bool>,
}

/// `[nfc]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NfcLayer {
    /// `nfc.enabled`.
    pub enabled: Option<bool>,
    /// `nfc.devices`.
    pub devices: Option<Vec<String>>,
    /// `nfc.poll_interval_ms`.
    pub poll_interval_ms: Option<u64>,
}

/// `[apcv]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApcvLayer {
    /// `apcv.aid`.
    pub aid: Option<String>,
}

/// `[log]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLayer {
    /// `log.level`.
    pub level: Option<String>,
}

/// `[demo]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoLayer {
    /// `demo.interval_ms`.
    pub interval_ms: Option<u64>,
}

/// `[metrics]` as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsLayer {
    /// `metrics.enabled`.
    pub enabled: Option<bool>,
}

impl Layer {
    /// Parses one TOML document; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Layer, ConfigError> {
        toml::from_str::<Layer>(text).map_err(|e| ConfigError {
            source_name: source_name.to_string(),
            key: unknown_key(e.message()).or_else(|| key_at(text, e.span())),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Reads and parses a file. A missing file is `Ok(None)` unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Option<Layer>, ConfigError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Layer::parse(&text, &name).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
            Err(e) => Err(ConfigError {
                source_name: name,
                key: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
}

/// The key named in a serde "unknown field" message, for [`ConfigError::key`].
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}

/// The key on the line a parse error points at (`key = value`), if any.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start;
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

impl Config {
    /// Applies `layer` (from `source_name`) over `self`, validating every value it sets.
    pub fn apply(&mut self, layer: Layer, source_name: &str) -> Result<(), ConfigError> {
        let src = source_name;
        if let Some(listen) = layer.listen {
            self.listen = parse_listen(&listen).map_err(|m| ConfigError::key(src, "listen", m))?;
        }
        if let Some(origins) = layer.allowed_origins {
            for o in &origins {
                validate_origin(o).map_err(|m| ConfigError::key(src, "allowed_origins", m))?;
            }
            self.allowed_origins = origins;
        }
        if let Some(origins) = layer.origins {
            for (o, c) in &origins {
                validate_origin(o).map_err(|m| ConfigError::key(src, "origins", m))?;
                Scopes::parse_list(&c.scopes)
                    .map_err(|m| ConfigError::key(src, &format!("origins.\"{o}\".scopes"), m))?;
            }
            self.origins = origins;
        }
        if let Some(v) = layer.allow_native_clients {
            self.allow_native_clients = v;
        }
        // Resolved now so a typo is an error at start (exit 2) rather than a user
        // silently locked out; resolved again in `server()`.
        if let Some(users) = layer.allowed_users {
            for u in &users {
                users::resolve_user(u).map_err(|m| ConfigError::key(src, "allowed_users", m))?;
            }
            self.allowed_users = users;
        }
        if let Some(groups) = layer.allowed_groups {
            for g in &groups {
                users::resolve_group(g).map_err(|m| ConfigError::key(src, "allowed_groups", m))?;
            }
            self.allowed_groups = groups;
        }
        if let Some(v) = layer.max_clients {
            self.max_clients = positive(v, src, "max_clients")?;
        }
        let l = layer.limits;
        if let Some(v) = l.max_message_bytes {
            if v < 1024 {
                return Err(ConfigError::key(
                    src,
                    "limits.max_message_bytes",
                    "must be at least 1024",
                ));
            }
            self.limits.max_message_bytes = v;
        }
        if let Some(v) = l.queue_len {
            self.limits.queue_len = positive(v, src, "limits.queue_len")?;
        }
        if let Some(v) = l.rate_per_sec {
            self.limits.rate_per_sec = positive(v as usize, src, "limits.rate_per_sec")? as u32;
        }
        if let Some(v) = l.ping_interval_ms {
            self.limits.ping_interval_ms = at_least(v, 1000, src, "limits.ping_interval_ms")?;
        }
        if let Some(v) = l.handshake_timeout_ms {
            self.limits.handshake_timeout_ms =
                at_least(v, 100, src, "limits.handshake_timeout_ms")?;
        }
        if let Some(v) = layer.pcsc.enabled {
            self.pcsc.enabled = v;
        }
        if let Some(v) = layer.nfc.enabled {
            self.nfc.enabled = v;
        }
        if let Some(devices) = layer.nfc.devices {
            for d in &devices {
                validate_connstring(d).map_err(|m| ConfigError::key(src, "nfc.devices", m))?;
            }
            self.nfc.devices = devices;
        }
        if let Some(v) = layer.nfc.poll_interval_ms {
            self.nfc.poll_interval_ms = at_least(v, 10, src, "nfc.poll_interval_ms")?;
        }
        if let Some(aid) = layer.apcv.aid {
            self.apcv.aid = parse_aid(&aid)
                .map(hex::encode_upper)
                .map_err(|m| ConfigError::key(src, "apcv.aid", m))?;
        }
        if let Some(level) = layer.log.level {
            validate_log_level(&level).map_err(|m| ConfigError::key(src, "log.level", m))?;
            self.log.level = level;
        }
        if let Some(v) = layer.demo.interval_ms {
            self.demo.interval_ms = at_least(v, 10, src, "demo.interval_ms")?;
        }
        if let Some(v) = layer.metrics.enabled {
            self.metrics.enabled = v;
        }
        Ok(())
    }

    /// The server settings this configuration implies.
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            allowed_origins: self.allowed_origins.clone(),
            // Validated in `apply`; an entry that somehow fails gets no scope at all.
            origin_scopes: self
                .origins
                .iter()
                .map(|(o, c)| {
                    (
                        o.clone(),
                        Scopes::parse_list(&c.scopes).unwrap_or(Scopes::NONE),
                    )
                })
                .collect(),
            allow_native_clients: self.allow_native_clients,
            // An account deleted since `apply` validated it is dropped: that can only
            // narrow who may connect, never widen it.
            allowed_uids: self
                .allowed_users
                .iter()
                .filter_map(|u| users::resolve_user(u).ok())
                .collect(),
            allowed_gids: self
                .allowed_groups
                .iter()
                .filter_map(|g| users::resolve_group(g).ok())
                .collect(),
            max_clients: self.max_clients,
            max_message_bytes: self.limits.max_message_bytes,
            handshake_timeout: Duration::from_millis(self.limits.handshake_timeout_ms),
            queue_len: self.limits.queue_len,
            rate_per_sec: self.limits.rate_per_sec,
            ping_interval: Duration::from_millis(self.limits.ping_interval_ms),
            metrics: self.metrics.enabled,
            ..ServerConfig::default()
        }
    }

    /// The phone profile AID as bytes (validated when set).
    pub fn apcv_aid(&self) -> Vec<u8> {
        parse_aid(&self.apcv.aid).unwrap_or_default()
    }

    /// What the PC/SC backend needs.
    pub fn pcsc_options(&self) -> PcscOptions {
        PcscOptions {
            apcv_aid: self.apcv_aid(),
        }
    }

    /// What the NFC backend needs.
    pub fn nfc_options(&self) -> NfcOptions {
        NfcOptions {
            devices: self.nfc.devices.clone(),
            poll_interval: Duration::from_millis(self.nfc.poll_interval_ms),
            host_poll: false,
            apcv_aid: self.apcv_aid(),
        }
    }

    /// The effective configuration as TOML (for `doctor`; it holds no secrets).
    pub fn to_toml(&self) -> String {
        let file = FileView::from(self);
        toml::to_string(&file).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The file layout of [`Config`], for printing the effective configuration.
#[derive(Serialize)]
struct FileView<'a> {
    listen: String,
    allowed_origins: &'a [String],
    allow_native_clients: bool,
    allowed_users: &'a [String],
    allowed_groups: &'a [String],
    max_clients: usize,
    origins: &'a BTreeMap<String, OriginConfig>,
    limits: &'a Limits,
    pcsc: &'a PcscConfig,
    nfc: &'a NfcConfig,
    apcv: &'a ApcvConfig,
    log: &'a LogConfig,
    demo: &'a DemoConfig,
    metrics: &'a MetricsConfig,
}

impl<'a> From<&'a Config> for FileView<'a> {
    fn from(c: &'a Config) -> Self {
        FileView {
            listen: c.listen.to_string(),
            allowed_origins: &c.allowed_origins,
            allow_native_clients: c.allow_native_clients,
            allowed_users: &c.allowed_users,
            allowed_groups: &c.allowed_groups,
            max_clients: c.max_clients,
            origins: &c.origins,
            limits: &c.limits,
            pcsc: &c.pcsc,
            nfc: &c.nfc,
            apcv: &c.apcv,
            log: &c.log,
            demo: &c.demo,
            metrics: &c.metrics,
        }
    }
}

fn positive(v: usize, src: &str, key: &str) -> Result<usize, ConfigError> {
    if v == 0 {
        Err(ConfigError::key(src, key, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

fn at_least(v: u64, min: u64, src: &str, key: &str) -> Result<u64, ConfigError> {
    if v < min {
        Err(ConfigError::key(
            src,
            key,
            format!("must be at least {min}"),
        ))
    } else {
        Ok(v)
    }
}

/// Parses `listen`: `127.0.0.1:PORT`, `[::1]:PORT` or `localhost:PORT`. The daemon
/// serves loopback only (product.md §4), so any other address is refused.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let addr = if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad port in {s:?} (expected 0–65535)"))?;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    } else {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("{s:?} is not ADDRESS:PORT (e.g. 127.0.0.1:{DEFAULT_PORT})"))?
    };
    let ip = addr.ip();
    if ip != IpAddr::V4(Ipv4Addr::LOCALHOST) && ip != IpAddr::V6(std::net::Ipv6Addr::LOCALHOST) {
        return Err(format!(
            "{s:?} is not loopback: vitale-bridge only listens on 127.0.0.1 and [::1] \
             (use 127.0.0.1:PORT)"
        ));
    }
    Ok(addr)
}

/// Checks that `o` is exactly one web origin: `http(s)://host[:port]`, no path, no
/// wildcard, no user info, not `null`.
pub fn validate_origin(o: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{o:?} is not an exact origin: {why}"));
    if o.eq_ignore_ascii_case("null") {
        return bad("`null` is never allowed");
    }
    let Some((scheme, rest)) = o.split_once("://") else {
        return bad("expected scheme://host[:port], e.g. https://app.example");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return bad("scheme must be http or https");
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return bad("no path, query or trailing slash");
    }
    if rest.contains('*') {
        return bad("wildcards are not supported; list each origin");
    }
    if rest.contains('@') {
        return bad("no user info");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return bad("unclosed [ in IPv6 host");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("bad IPv6 address");
        }
        match after {
            "" => (addr, None),
            p => match p.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return bad("junk after the IPv6 host"),
            },
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return bad("empty host");
    }
    if !rest.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return bad("host may only hold letters, digits, '-' and '.'");
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return bad("port must be 1–65535"),
        }
    }
    Ok(())
}

/// Checks a libnfc connstring shape (`driver:port[:…]`).
pub fn validate_connstring(s: &str) -> Result<(), String> {
    match s.split_once(':') {
        Some((driver, _))
            if !driver.is_empty()
                && driver
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{s:?} is not a libnfc connstring (e.g. pn532_uart:/dev/ttyUSB0)"
        )),
    }
}

/// Parses an AID given as hex (spaces allowed): 5 to 16 bytes (ISO 7816-4).
pub fn parse_aid(s: &str) -> Result<Vec<u8>, String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = hex::decode(&compact).map_err(|_| format!("{s:?} is not hex"))?;
    if !(5..=16).contains(&bytes.len()) {
        return Err(format!(
            "an AID has 5 to 16 bytes, {s:?} has {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Checks a log level or tracing filter directive.
pub fn validate_log_level(s: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(log_filter(s))
        .map(|_| ())
        .map_err(|e| format!("{s:?} is not a log level (error, warn, info, debug, trace): {e}"))
}

/// The tracing filter for a configured level. A bare level applies to vitale-bridge
/// only; other crates stay at `warn`, because some (the WebSocket library) log raw
/// frame payloads at trace level, and frames carry identities. A full directive
/// (`vitale_bridge=debug,tungstenite=trace`) is taken as written.
pub fn log_filter(level: &str) -> String {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return level.to_string();
    }
    match level.to_ascii_lowercase().as_str() {
        "off" => "off".into(),
        "error" => "error".into(),
        l => format!("warn,vitale_bridge={l}"),
    }
}

/// Where the configuration files are looked up.
#[derive(Debug, Clone)]
pub struct Sources {
    /// System file (may be absent).
    pub system: PathBuf,
    /// Per-user file (may be absent), if a home directory is known.
    pub user: Option<PathBuf>,
    /// `--config FILE` (must exist).
    pub explicit: Option<PathBuf>,
}

impl Sources {
    /// The standard locations, honouring [`SYSTEM_CONFIG_ENV`].
    pub fn standard(explicit: Option<PathBuf>) -> Sources {
        let system = std::env::var_os(SYSTEM_CONFIG_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(system_config);
        let user = directories::ProjectDirs::from("", "", "vitale-bridge")
            .map(|d| d.config_dir().join("config.toml"));
        Sources {
            system,
            user,
            explicit,
        }
    }

    /// Loads defaults, then each file in order, then `flags` (named `command line`).
    /// Also returns the files that were actually read.
    pub fn load(&self, flags: Layer) -> Result<(Config, Vec<PathBuf>), ConfigError> {
        let mut cfg = Config::default();
        let mut used = Vec::new();
        let files = [
            Some((&self.system, false)),
            self.user.as_ref().map(|p| (p, false)),
            self.explicit.as_ref().map(|p| (p, true)),
        ];
        for (path, required) in files.into_iter().flatten() {
            if let Some(layer) = Layer::load(path, required)? {
                cfg.apply(layer, &path.display().to_string())?;
                used.push(path.clone());
            }
        }
        cfg.apply(flags, "command line")?;
        Ok((cfg, used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.apply(Layer::parse(text, "test.toml")?, "test.toml")?;
        Ok(c)
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:24880");
        assert!(c.allow_native_clients);
        assert_eq!(c.max_clients, 32);
        assert_eq!(c.limits.max_message_bytes, 65536);
        assert_eq!(c.limits.queue_len, 1024);
        assert_eq!(c.limits.rate_per_sec, 50);
        assert_eq!(c.limits.ping_interval_ms, 30_000);
        assert_eq!(c.limits.handshake_timeout_ms, 5_000);
        assert_eq!(c.apcv_aid(), b"\xF0vbridge\x01");
        assert!(c.pcsc.enabled && c.nfc.enabled);
        assert!(!c.metrics.enabled, "metrics are opt-in");
        assert!(!c.server().metrics);
    }

    #[test]
    fn full_file_parses() {
        let c = load(
            r#"
            listen = "127.0.0.1:0"
            allowed_origins = ["https://app.example", "http://localhost:8080"]
            allow_native_clients = false
            max_clients = 4
            [limits]
            max_message_bytes = 2048
            queue_len = 8
            rate_per_sec = 5
            ping_interval_ms = 5000
            handshake_timeout_ms = 1000
            [pcsc]
            enabled = false
            [nfc]
            enabled = true
            devices = ["pn532_uart:/dev/ttyUSB0"]
            poll_interval_ms = 150
            [apcv]
            aid = "f0 76 62 72 69 64 67 65 01"
            [log]
            level = "debug"
            [demo]
            interval_ms = 500
            [metrics]
            enabled = true
            "#,
        )
        .expect("valid");
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.allowed_origins.len(), 2);
        assert!(!c.allow_native_clients);
        assert_eq!(c.max_clients, 4);
        assert_eq!(c.server().rate_per_sec, 5);
        assert_eq!(c.server().ping_interval, Duration::from_secs(5));
        assert!(!c.pcsc.enabled);
        assert_eq!(c.nfc_options().poll_interval, Duration::from_millis(150));
        assert_eq!(c.apcv.aid, DEFAULT_APCV_AID);
        assert_eq!(c.demo.interval_ms, 500);
        assert!(c.metrics.enabled && c.server().metrics);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load("lisen = \"127.0.0.1:1\"").expect_err("unknown key");
        assert_eq!(e.key.as_deref(), Some("lisen"));
        assert!(e.to_string().starts_with("test.toml:"), "{e}");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = load("[nfc]\npoll = 3").expect_err("unknown nested key");
        assert_eq!(e.key.as_deref(), Some("poll"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load("max_clients = \"many\"").expect_err("bad type");
        assert!(e.to_string().contains("max_clients"), "{e}");
        assert_eq!(e.key.as_deref(), Some("max_clients"));
        let e = load("max_clients = 0").expect_err("zero");
        assert_eq!(e.key.as_deref(), Some("max_clients"));
        let e = load("[apcv]\naid = \"XYZ\"").expect_err("bad hex");
        assert_eq!(e.key.as_deref(), Some("apcv.aid"));
        let e = load("[log]\nlevel = \"loud\"").expect_err("bad level");
        assert_eq!(e.key.as_deref(), Some("log.level"));
        let e = load("[nfc]\ndevices = [\"/dev/ttyUSB0\"]").expect_err("bad connstring");
        assert_eq!(e.key.as_deref(), Some("nfc.devices"));
        let e = load("[metrics]\nenabled = \"yes\"").expect_err("bad type");
        assert_eq!(e.key.as_deref(), Some("enabled"));
        let e = load("[metrics]\nport = 9100").expect_err("unknown key");
        assert_eq!(e.key.as_deref(), Some("port"));
    }

    #[test]
    fn listen_must_be_loopback() {
        for ok in ["127.0.0.1:24880", "[::1]:1", "localhost:0", "127.0.0.1:0"] {
            assert!(parse_listen(ok).is_ok(), "{ok}");
        }
        for bad in [
            "0.0.0.0:24880",
            "192.168.1.2:24880",
            "[::]:24880",
            "127.0.0.2:1",
            "example.com:80",
            "127.0.0.1",
            "127.0.0.1:70000",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
        let e = load("listen = \"0.0.0.0:24880\"").expect_err("refused");
        assert_eq!(e.key.as_deref(), Some("listen"));
        assert!(e.message.contains("loopback"), "{e}");
    }

    #[test]
    fn origins_must_be_exact() {
        for ok in [
            "https://app.example",
            "http://localhost:8080",
            "https://[::1]:8443",
            "HTTPS://App.Example",
            "http://127.0.0.1:3000",
        ] {
            assert!(validate_origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "null",
            "app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://*.example",
            "ftp://app.example",
            "https://user@app.example",
            "https://app.example:0",
            "https://app.example:99999",
            "https://",
            "https://[::1",
            "https://app example",
            "https://app.example:+80",
        ] {
            assert!(validate_origin(bad).is_err(), "{bad}");
        }
    }

    // Account names resolve through the Unix user and group databases; Windows
    // accounts are SIDs, which the OS-user check does not know yet (docs/windows.md).
    #[cfg(unix)]
    #[test]
    fn allowed_users_and_groups_resolve_or_name_the_key() {
        let c = load("allowed_users = [\"root\", \"4242\"]\nallowed_groups = [\"root\"]")
            .expect("valid");
        assert_eq!(c.server().allowed_uids, vec![0, 4242]);
        assert_eq!(c.server().allowed_gids, vec![0]);
        let e = load("allowed_users = [\"no-such-user-vb\"]").expect_err("unknown user");
        assert_eq!(e.key.as_deref(), Some("allowed_users"));
        assert!(e.message.contains("no-such-user-vb"), "{e}");
        let e = load("allowed_groups = [\"no-such-group-vb\"]").expect_err("unknown group");
        assert_eq!(e.key.as_deref(), Some("allowed_groups"));
        assert!(Config::default().server().allowed_uids.is_empty());
    }

    #[test]
    fn origins_table_narrows_scopes_and_names_bad_entries() {
        let c = load(
            r#"
            allowed_origins = ["https://app.example", "https://booking.example"]
            [origins."https://booking.example"]
            scopes = ["identity"]
            [origins."https://billing.example"]
            scopes = ["nir", "sign"]
            "#,
        )
        .expect("valid");
        let s = c.server();
        assert_eq!(s.allowed_origins.len(), 2);
        assert_eq!(
            s.origin_scopes,
            vec![
                (
                    "https://billing.example".to_string(),
                    Scopes::NIR | Scopes::SIGN
                ),
                ("https://booking.example".to_string(), Scopes::IDENTITY),
            ]
        );
        let e = load("[origins.\"https://x.example\"]\nscopes = [\"names\"]").expect_err("scope");
        assert_eq!(
            e.key.as_deref(),
            Some("origins.\"https://x.example\".scopes")
        );
        assert!(e.message.contains("\"names\""), "{e}");
        let e = load("[origins.\"https://x.example/\"]\nscopes = []").expect_err("origin");
        assert_eq!(e.key.as_deref(), Some("origins"));
        let e = load("[origins.\"https://x.example\"]\nscope = []").expect_err("unknown key");
        assert_eq!(e.key.as_deref(), Some("scope"));
        // The effective configuration prints the table and reads back the same.
        let mut again = Config::default();
        again
            .apply(
                Layer::parse(&c.to_toml(), "shown").expect("parses"),
                "shown",
            )
            .expect("valid");
        assert_eq!(again, c);
    }

    #[test]
    fn later_layers_win() {
        let mut c = Config::default();
        c.apply(
            Layer::parse("max_clients = 3\n[pcsc]\nenabled = false", "a").expect("a"),
            "a",
        )
        .expect("apply a");
        c.apply(Layer::parse("max_clients = 5", "b").expect("b"), "b")
            .expect("apply b");
        assert_eq!(c.max_clients, 5);
        assert!(!c.pcsc.enabled, "keys a later layer does not set survive");
    }

    #[test]
    fn sources_layer_files_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let system = dir.path().join("system.toml");
        let user = dir.path().join("user.toml");
        let explicit = dir.path().join("explicit.toml");
        std::fs::write(&system, "max_clients = 2\nallow_native_clients = false").expect("w");
        std::fs::write(&user, "max_clients = 3").expect("w");
        std::fs::write(&explicit, "[log]\nlevel = \"debug\"").expect("w");
        let sources = Sources {
            system,
            user: Some(user),
            explicit: Some(explicit.clone()),
        };
        let flags = Layer {
            log: LogLayer {
                level: Some("trace".into()),
            },
            ..Layer::default()
        };
        let (c, used) = sources.load(flags).expect("loads");
        assert_eq!(used.len(), 3);
        assert_eq!(c.max_clients, 3);
        assert!(!c.allow_native_clients);
        assert_eq!(c.log.level, "trace");

        let missing = Sources {
            system: dir.path().join("absent.toml"),
            user: None,
            explicit: Some(dir.path().join("absent-explicit.toml")),
        };
        let e = missing
            .load(Layer::default())
            .expect_err("--config must exist");
        assert!(e.source_name.contains("absent-explicit"), "{e}");
    }

    #[test]
    fn bare_levels_keep_dependencies_quiet() {
        assert_eq!(log_filter("trace"), "warn,vitale_bridge=trace");
        assert_eq!(log_filter("tungstenite=trace"), "tungstenite=trace");
        assert!(validate_log_level("TRACE").is_ok());
    }

    #[test]
    fn shipped_example_is_valid_and_matches_defaults() {
        let c = load(include_str!("../packaging/config.toml")).expect("packaging/config.toml");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default();
        let shown = c.to_toml();
        let mut again = Config::default();
        again
            .apply(Layer::parse(&shown, "shown").expect("parses"), "shown")
            .expect("valid");
        assert_eq!(again, c);
    }
}
