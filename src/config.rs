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

pub mod values;

use crate::server::{ServerConfig, users};
use crate::transport::nfc::NfcOptions;
use crate::transport::pcsc::PcscOptions;
pub use values::{
    Aid, AtLeast, Connstring, GroupName, Listen, LogLevel, Origin, ScopeNames, UserName,
};

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

/// The configuration: every key once, with its default in [`Default`] and its rule
/// in its value type ([`values`]). A file or the command line is a partial TOML table
/// of the same shape ([`Layer`]), merged over what came before and checked by
/// deserializing the result into this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Loopback address and port of the WebSocket server.
    pub listen: Listen,
    /// Exact web origins allowed to connect, with every scope.
    pub allowed_origins: Vec<Origin>,
    /// Whether clients without an Origin header may connect.
    pub allow_native_clients: bool,
    /// OS users (names or uids) besides the daemon's own whose programs may connect.
    pub allowed_users: Vec<UserName>,
    /// OS groups (names or gids) whose members' programs may connect.
    pub allowed_groups: Vec<GroupName>,
    /// Open connections at most.
    pub max_clients: AtLeast<1>,
    /// Origins with narrowed scopes (`[origins."https://x"] scopes = [...]`); also
    /// allowed to connect. Wins over an `allowed_origins` entry for the same origin.
    /// A layer that has the table replaces it whole.
    pub origins: BTreeMap<Origin, OriginConfig>,
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

/// `[limits]` (product.md §4.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message in bytes.
    pub max_message_bytes: AtLeast<1024>,
    /// Outgoing queue per client, in messages.
    pub queue_len: AtLeast<1>,
    /// Requests per second per connection.
    pub rate_per_sec: AtLeast<1>,
    /// Ping interval in milliseconds.
    pub ping_interval_ms: AtLeast<1000>,
    /// Time allowed for the HTTP upgrade, in milliseconds.
    pub handshake_timeout_ms: AtLeast<100>,
}

/// `[origins."https://x"]`: what one origin receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Scope names: `identity`, `nir`, `ins`, `sign`.
    pub scopes: ScopeNames,
}

/// `[pcsc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcscConfig {
    /// Watch PC/SC readers.
    pub enabled: bool,
}

/// `[nfc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NfcConfig {
    /// Use libnfc devices.
    pub enabled: bool,
    /// libnfc connstrings; empty = scan USB devices once at start.
    pub devices: Vec<Connstring>,
    /// Deprecated and ignored: the chip waits for a tap (docs/hardware-nfc.md). Still
    /// accepted and validated so existing files keep loading.
    pub poll_interval_ms: AtLeast<10>,
}

/// `[apcv]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApcvConfig {
    /// Phone profile AID, uppercase hex.
    pub aid: Aid,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full tracing filter directive.
    pub level: LogLevel,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format); off by default.
    pub enabled: bool,
}

/// `[demo]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Time between demo steps, in milliseconds.
    pub interval_ms: AtLeast<10>,
}

impl Default for Config {
    fn default() -> Self {
        let server = ServerConfig::default();
        Self {
            listen: Listen(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_PORT,
            )),
            allowed_origins: Vec::new(),
            allow_native_clients: server.allow_native_clients,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            max_clients: AtLeast::default_of(server.max_clients as u64),
            origins: BTreeMap::new(),
            limits: Limits::default(),
            pcsc: PcscConfig::default(),
            nfc: NfcConfig::default(),
            apcv: ApcvConfig::default(),
            log: LogConfig::default(),
            demo: DemoConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let server = ServerConfig::default();
        Limits {
            max_message_bytes: AtLeast::default_of(server.max_message_bytes as u64),
            queue_len: AtLeast::default_of(server.queue_len as u64),
            rate_per_sec: AtLeast::default_of(u64::from(server.rate_per_sec)),
            ping_interval_ms: AtLeast::default_of(server.ping_interval.as_millis() as u64),
            handshake_timeout_ms: AtLeast::default_of(server.handshake_timeout.as_millis() as u64),
        }
    }
}

impl Default for PcscConfig {
    fn default() -> Self {
        PcscConfig { enabled: true }
    }
}

impl Default for NfcConfig {
    fn default() -> Self {
        NfcConfig {
            enabled: true,
            devices: Vec::new(),
            poll_interval_ms: AtLeast::default_of(200),
        }
    }
}

impl Default for ApcvConfig {
    fn default() -> Self {
        ApcvConfig {
            aid: Aid::new(DEFAULT_APCV_AID)
                .unwrap_or_else(|_| unreachable!("the default AID is valid")),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::new("info").unwrap_or_else(|_| unreachable!("`info` is a level")),
        }
    }
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            interval_ms: AtLeast::default_of(2000),
        }
    }
}

/// One file, or the command line, as given: a TOML table of the shape of [`Config`]
/// with any keys left out. Checked when applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer(toml::Table);

impl Layer {
    /// Parses and checks one TOML document; `source_name` names it in errors. Checked
    /// here, against the text, so an error points at the line and names the key.
    pub fn parse(text: &str, source_name: &str) -> Result<Layer, ConfigError> {
        let fail = |key: Option<String>, e: &dyn std::fmt::Display| ConfigError {
            source_name: source_name.to_string(),
            key,
            message: e.to_string().trim_end().to_string(),
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| fail(key_at(text, e.span()), &e))?;
        let de = toml::Deserializer::parse(text).map_err(|e| fail(key_at(text, e.span()), &e))?;
        serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
            let key = error_key(e.path(), e.inner().message());
            fail(key, e.inner())
        })?;
        Ok(Layer(table))
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

    /// Sets `key` (dotted for a table: `nfc.devices`) to `value`, for flags.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let mut table = &mut self.0;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                table.insert(part.to_owned(), value.into());
                return;
            }
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            match entry.as_table_mut() {
                Some(t) => table = t,
                None => return,
            }
        }
    }
}

/// Lays `top` over `base`: tables merge key by key, anything else (values, arrays,
/// and the `origins` table) is replaced whole.
fn merge(base: &mut toml::Table, top: toml::Table, depth: usize) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t))
                if !(depth == 0 && key == "origins") =>
            {
                merge(b, t, depth + 1)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The key a deserialization error is about, dotted (`limits.queue_len`,
/// `origins."https://x".scopes`); for an unknown key, that key.
fn error_key(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    let mut parts: Vec<String> = path
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(
                if key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    key.clone()
                } else {
                    format!("{key:?}")
                },
            ),
            // An array entry is reported as the array's key.
            serde_path_to_error::Segment::Seq { .. } => None,
            _ => None,
        })
        .collect();
    if let Some(unknown) = unknown_key(message)
        && parts.last() != Some(&unknown)
    {
        parts.push(unknown);
    }
    (!parts.is_empty()).then(|| parts.join("."))
}

/// The key named in a serde "unknown field" message.
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}

/// The key on the line a TOML syntax error points at (`key = value`), if any.
fn key_at(text: &str, span: Option<std::ops::Range<usize>>) -> Option<String> {
    let start = span?.start;
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

impl Config {
    /// Applies `layer` (from `source_name`) over `self`. The result is checked whole;
    /// `self` was valid before, so whatever fails is this layer's, and is named with
    /// its source and key. On error `self` is unchanged.
    pub fn apply(&mut self, layer: Layer, source_name: &str) -> Result<(), ConfigError> {
        let fail = |key: Option<String>, message: String| ConfigError {
            source_name: source_name.to_string(),
            message: match &key {
                Some(k) => format!("`{k}`: {message}"),
                None => message,
            },
            key,
        };
        let mut merged = toml::Table::try_from(&*self)
            .map_err(|e| fail(None, format!("cannot represent the configuration: {e}")))?;
        merge(&mut merged, layer.0, 0);
        *self = serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            let message = e.inner().message().to_string();
            fail(error_key(e.path(), &message), message)
        })?;
        Ok(())
    }

    /// The server settings this configuration implies.
    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            allowed_origins: self.allowed_origins.iter().map(|o| o.to_string()).collect(),
            origin_scopes: self
                .origins
                .iter()
                .map(|(o, c)| (o.to_string(), c.scopes.scopes()))
                .collect(),
            allow_native_clients: self.allow_native_clients,
            // An account deleted since the configuration was read is dropped: that can
            // only narrow who may connect, never widen it.
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
            max_clients: self.max_clients.usize(),
            max_message_bytes: self.limits.max_message_bytes.usize(),
            handshake_timeout: Duration::from_millis(self.limits.handshake_timeout_ms.get()),
            queue_len: self.limits.queue_len.usize(),
            rate_per_sec: self.limits.rate_per_sec.u32(),
            ping_interval: Duration::from_millis(self.limits.ping_interval_ms.get()),
            metrics: self.metrics.enabled,
            ..ServerConfig::default()
        }
    }

    /// The phone profile AID as bytes.
    pub fn apcv_aid(&self) -> Vec<u8> {
        self.apcv.aid.bytes().to_vec()
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
            devices: self.nfc.devices.iter().map(|d| d.to_string()).collect(),
            poll_interval: Duration::from_millis(self.nfc.poll_interval_ms.get()),
            host_poll: false,
            apcv_aid: self.apcv_aid(),
        }
    }

    /// The effective configuration as TOML (for `doctor`; it holds no secrets).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
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
    use crate::bus::Scopes;

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
        assert_eq!(e.key.as_deref(), Some("nfc.poll"));
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
        assert_eq!(e.key.as_deref(), Some("metrics.enabled"));
        let e = load("[metrics]\nport = 9100").expect_err("unknown key");
        assert_eq!(e.key.as_deref(), Some("metrics.port"));
        let e = load("[limits]\nqueue_len = 0").expect_err("zero");
        assert_eq!(e.key.as_deref(), Some("limits.queue_len"));
        assert!(e.message.contains("greater than 0"), "{e}");
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
        assert_eq!(e.key.as_deref(), Some("origins.\"https://x.example/\""));
        let e = load("[origins.\"https://x.example\"]\nscope = []").expect_err("unknown key");
        assert_eq!(
            e.key.as_deref(),
            Some("origins.\"https://x.example\".scope")
        );
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
        let mut flags = Layer::default();
        flags.set("log.level", "trace");
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
