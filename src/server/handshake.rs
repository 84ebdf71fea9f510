//! The handshake rules of product.md §4.1, as pure functions: which `Host` values are
//! acceptable (DNS-rebinding defence) and which `Origin` values may connect.
//!
//! Origins are compared as (scheme, host, port) tuples after normalisation: ASCII
//! case-insensitive scheme and host, default ports (80 for http, 443 for https) made
//! explicit. Anything that is not a plain `scheme://host[:port]` (paths, user info,
//! queries, empty ports, non-ASCII) never matches; `null` never matches.

use crate::bus::{Scopes, View};

/// A normalised web origin: `scheme://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// Parses an origin as a browser serialises it (`https://app.example`,
    /// `http://127.0.0.1:8080`, `http://[::1]:3000`). Returns `None` for anything
    /// else, including `null`.
    pub fn parse(text: &str) -> Option<Origin> {
        if !text.is_ascii() {
            return None;
        }
        let (scheme, rest) = text.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        // An origin has no path, query, fragment or user info; their presence is the
        // classic way to smuggle a trusted name into an untrusted origin.
        if rest.is_empty()
            || rest.bytes().any(|b| {
                matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\')
                    || b.is_ascii_whitespace()
                    || b.is_ascii_control()
            })
        {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        let scheme = scheme.to_ascii_lowercase();
        let port = match (port, default_port(&scheme)) {
            (Some(p), _) => Some(p),
            (None, default) => default,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The origin of the daemon's own status page for `host` on `port`.
    fn own(host: &str, port: u16) -> Origin {
        Origin {
            scheme: "http".into(),
            host: host.into(),
            port: Some(port),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]`, `[v6][:port]`; the port, when present, is 1–5 digits.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let host = &text[..inner.len() + 2];
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let plain_name = |h: &str| {
        h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    if host.is_empty() || !(host.starts_with('[') || plain_name(host)) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => {
            return None;
        }
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host, port))
}

/// The names the daemon answers to (with `:PORT`).
const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// Whether a `Host` header value is one of `127.0.0.1:PORT`, `localhost:PORT`,
/// `[::1]:PORT` for the port the connection arrived on. Host names are compared
/// ASCII case-insensitively (RFC 9110 §4.2.3); anything else — another name, a
/// missing or different port, a trailing dot — is refused.
pub fn host_allowed(host: &str, port: u16) -> bool {
    let Some((name, Some(p))) = split_host_port(host) else {
        return false;
    };
    p == port
        && LOOPBACK_NAMES
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// Who is on the other end of a connection, as decided by its `Origin` (once the
/// socket's OS user has been admitted: an `Origin` is only as true as its sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No `Origin` header: a native application of an allowed OS user (all scopes).
    Native,
    /// A web page of a configured origin; carries the header as sent (it is what
    /// `card.sign` binds signatures to) and the scopes configured for the origin.
    Web(String, Scopes),
    /// The daemon's own status page: a redacted, read-only subscriber.
    StatusPage(String),
}

impl Peer {
    /// Whether identity and signature data must be withheld from this peer.
    pub fn redacted(&self) -> bool {
        matches!(self, Peer::StatusPage(_))
    }

    /// The string `card.sign` binds signatures to (product.md §4.3).
    pub fn binding(&self) -> &str {
        match self {
            Peer::Native => "native:",
            Peer::Web(o, _) | Peer::StatusPage(o) => o,
        }
    }

    /// What this peer may receive (none for the status page, which is redacted).
    pub fn scopes(&self) -> Scopes {
        match self {
            Peer::Native => Scopes::ALL,
            Peer::Web(_, s) => *s,
            Peer::StatusPage(_) => Scopes::NONE,
        }
    }

    /// The hub view for this peer's subscription.
    pub fn view(&self) -> View {
        match self {
            Peer::StatusPage(_) => View::Redacted,
            _ => View::Client {
                scopes: self.scopes(),
                binding: self.binding().to_string(),
            },
        }
    }
}

/// Why a WebSocket handshake was refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Origin: null` (sandboxed frames, `file:` pages, redirects).
    NullOrigin,
    /// Not a parseable origin.
    MalformedOrigin,
    /// A well-formed origin that is not configured.
    OriginNotAllowed,
    /// No `Origin` and `allow_native_clients` is off.
    NativeNotAllowed,
    /// Several `Origin` headers.
    DuplicateOrigin,
}

impl Refusal {
    /// A short explanation for logs and the 403 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NullOrigin => "origin null is never allowed",
            Refusal::MalformedOrigin => "malformed origin",
            Refusal::OriginNotAllowed => "origin not in allowed_origins",
            Refusal::NativeNotAllowed => "native clients (no Origin) are disabled",
            Refusal::DuplicateOrigin => "more than one Origin header",
        }
    }
}

/// The origin policy: configured origins (with their scopes) plus the daemon's own.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Vec<(Origin, Scopes)>,
    allow_native: bool,
}

impl OriginPolicy {
    /// Builds the policy; entries that are not valid origins are returned apart so
    /// the caller can report them (they can never match anything).
    pub fn new(allowed: &[String], allow_native: bool) -> (OriginPolicy, Vec<String>) {
        let mut parsed = Vec::new();
        let mut invalid = Vec::new();
        for entry in allowed {
            match Origin::parse(entry.trim()) {
                Some(o) => parsed.push((o, Scopes::ALL)),
                None => invalid.push(entry.clone()),
            }
        }
        (
            OriginPolicy {
                allowed: parsed,
                allow_native,
            },
            invalid,
        )
    }

    /// Narrows (or adds) origins to the given scopes: the table form
    /// `[origins."https://x"] scopes = [...]`, which wins over a plain
    /// `allowed_origins` entry for the same origin. Returns entries that are not
    /// origins.
    pub fn with_scopes(&mut self, scoped: &[(String, Scopes)]) -> Vec<String> {
        let mut invalid = Vec::new();
        for (entry, scopes) in scoped {
            let Some(origin) = Origin::parse(entry.trim()) else {
                invalid.push(entry.clone());
                continue;
            };
            self.allowed.retain(|(o, _)| *o != origin);
            self.allowed.push((origin, *scopes));
        }
        invalid
    }

    /// Decides on the `Origin` header values of a handshake arriving on `port`.
    pub fn check(&self, origins: &[&str], port: u16) -> Result<Peer, Refusal> {
        let raw = match origins {
            [] => {
                return if self.allow_native {
                    Ok(Peer::Native)
                } else {
                    Err(Refusal::NativeNotAllowed)
                };
            }
            [one] => one.trim(),
            _ => return Err(Refusal::DuplicateOrigin),
        };
        if raw.eq_ignore_ascii_case("null") {
            return Err(Refusal::NullOrigin);
        }
        let origin = Origin::parse(raw).ok_or(Refusal::MalformedOrigin)?;
        let own = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|h| origin == Origin::own(h, port));
        if own {
            return Ok(Peer::StatusPage(raw.to_string()));
        }
        match self.allowed.iter().find(|(o, _)| *o == origin) {
            Some((_, scopes)) => Ok(Peer::Web(raw.to_string(), *scopes)),
            None => Err(Refusal::OriginNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT: u16 = 24880;

    fn policy(allowed: &[&str], native: bool) -> OriginPolicy {
        let list: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let (p, invalid) = OriginPolicy::new(&list, native);
        assert!(invalid.is_empty(), "{invalid:?}");
        p
    }

    #[test]
    fn the_table_form_narrows_an_origin_and_can_add_one() {
        let (mut p, _) = OriginPolicy::new(
            &[
                "https://app.example".to_string(),
                "https://b.example".to_string(),
            ],
            true,
        );
        let invalid = p.with_scopes(&[
            ("HTTPS://APP.example:443".to_string(), Scopes::IDENTITY),
            ("https://c.example".to_string(), Scopes::NIR | Scopes::SIGN),
            ("not an origin".to_string(), Scopes::ALL),
        ]);
        assert_eq!(invalid, ["not an origin"]);
        let scopes = |o: &str| p.check(&[o], PORT).map(|peer| peer.scopes());
        assert_eq!(scopes("https://app.example"), Ok(Scopes::IDENTITY));
        assert_eq!(scopes("https://b.example"), Ok(Scopes::ALL));
        assert_eq!(scopes("https://c.example"), Ok(Scopes::NIR | Scopes::SIGN));
        assert_eq!(scopes("https://d.example"), Err(Refusal::OriginNotAllowed));
        assert_eq!(
            p.check(&[], PORT).map(|peer| peer.scopes()),
            Ok(Scopes::ALL)
        );
        let own = format!("http://127.0.0.1:{PORT}");
        assert_eq!(scopes(&own), Ok(Scopes::NONE));
    }

    #[test]
    fn host_must_be_a_loopback_name_with_our_port() {
        for ok in [
            "127.0.0.1:24880",
            "localhost:24880",
            "[::1]:24880",
            "LOCALHOST:24880",
        ] {
            assert!(host_allowed(ok, PORT), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "localhost",
            "[::1]",
            "127.0.0.1:80",
            "localhost:24881",
            "localhost:024880",
            "localhost.:24880",
            "evil.example:24880",
            "localhost.evil.example:24880",
            "127.0.0.1.nip.io:24880",
            "127.0.0.2:24880",
            "0.0.0.0:24880",
            "[::2]:24880",
            "[::1]",
            "::1:24880",
            "user@localhost:24880",
            "localhost:24880/",
            "localhost: 24880",
            " localhost:24880",
            "localhost:24880:24880",
            "",
            ":24880",
        ] {
            assert!(!host_allowed(bad, PORT), "{bad:?} accepted");
        }
    }

    #[test]
    fn origin_parsing_normalises_case_and_default_ports() {
        let a = Origin::parse("https://App.Example").expect("valid");
        assert_eq!(a, Origin::parse("https://app.example:443").expect("valid"));
        assert_eq!(a, Origin::parse("HTTPS://APP.EXAMPLE").expect("valid"));
        assert_eq!(a.to_string(), "https://app.example:443");
        let b = Origin::parse("http://app.example").expect("valid");
        assert_eq!(b, Origin::parse("http://app.example:80").expect("valid"));
        assert_ne!(a, b);
        let v6 = Origin::parse("http://[::1]:3000").expect("valid");
        assert_eq!(v6.to_string(), "http://[::1]:3000");
    }

    #[test]
    fn origin_parsing_rejects_anything_but_scheme_host_port() {
        for bad in [
            "null",
            "",
            "app.example",
            "https://",
            "https:///",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?x",
            "https://app.example#f",
            "https://user@app.example",
            "https://app.example@evil.example",
            "https://app.example:",
            "https://app.example:99999",
            "https://app.example:4a3",
            "https://app.example:443:443",
            "https://app .example",
            "https://app.exämple",
            "https://[::1",
            "https://[zz]:1",
            "://app.example",
            "ht tp://app.example",
            "https://app.example\\evil",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn configured_origin_matches_exactly_after_normalisation() {
        let p = policy(&["https://app.example"], true);
        for ok in [
            "https://app.example",
            "https://APP.example",
            "https://app.example:443",
            "HTTPS://app.example",
        ] {
            assert_eq!(
                p.check(&[ok], PORT),
                Ok(Peer::Web(ok.to_string(), Scopes::ALL)),
                "{ok}"
            );
        }
    }

    #[test]
    fn prefix_suffix_port_and_scheme_tricks_are_refused() {
        let p = policy(&["https://app.example", "http://clinic.local:8080"], true);
        for bad in [
            "https://app.example.evil.example",
            "https://evil-app.example",
            "https://evilapp.example",
            "https://app.exampl",
            "https://app.example.",
            "https://sub.app.example",
            "https://app.example:8443",
            "http://app.example",
            "wss://app.example",
            "https://app.example:80",
            "http://clinic.local",
            "http://clinic.local:80",
            "http://clinic.local:8081",
            "https://clinic.local:8080",
            "http://clinic.local.evil.example:8080",
        ] {
            assert_eq!(
                p.check(&[bad], PORT),
                Err(Refusal::OriginNotAllowed),
                "{bad:?}"
            );
        }
        for malformed in [
            "https://app.example/",
            "https://evil.example/https://app.example",
            "https://app.example@evil.example",
            "https://evil.example?https://app.example",
            "http://clinic.local:8080.evil.example",
        ] {
            assert_eq!(
                p.check(&[malformed], PORT),
                Err(Refusal::MalformedOrigin),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn null_is_never_allowed_even_if_configured() {
        let (p, invalid) = OriginPolicy::new(&["null".to_string()], true);
        assert_eq!(invalid, vec!["null".to_string()]);
        for n in ["null", "NULL", " null "] {
            assert_eq!(p.check(&[n], PORT), Err(Refusal::NullOrigin));
        }
    }

    #[test]
    fn wildcards_are_not_patterns() {
        let (p, invalid) =
            OriginPolicy::new(&["*".to_string(), "https://*.example".to_string()], true);
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        assert_eq!(
            p.check(&["https://app.example"], PORT),
            Err(Refusal::OriginNotAllowed)
        );
        assert_eq!(p.check(&["*"], PORT), Err(Refusal::MalformedOrigin));
    }

    #[test]
    fn own_origin_is_the_redacted_status_page() {
        let p = policy(&[], false);
        for own in [
            "http://127.0.0.1:24880",
            "http://localhost:24880",
            "http://LocalHost:24880",
            "http://[::1]:24880",
        ] {
            let peer = p.check(&[own], PORT).expect("own origin allowed");
            assert_eq!(peer, Peer::StatusPage(own.to_string()));
            assert!(peer.redacted());
        }
        for not_own in [
            "https://127.0.0.1:24880",
            "http://127.0.0.1:24881",
            "http://127.0.0.1",
            "http://localhost",
            "http://127.0.0.2:24880",
        ] {
            assert!(p.check(&[not_own], PORT).is_err(), "{not_own}");
        }
    }

    #[test]
    fn absent_origin_depends_on_allow_native_clients() {
        assert_eq!(policy(&[], true).check(&[], PORT), Ok(Peer::Native));
        assert_eq!(
            policy(&[], false).check(&[], PORT),
            Err(Refusal::NativeNotAllowed)
        );
    }

    #[test]
    fn two_origin_headers_are_refused() {
        let p = policy(&["https://app.example"], true);
        assert_eq!(
            p.check(&["https://app.example", "https://app.example"], PORT),
            Err(Refusal::DuplicateOrigin)
        );
    }

    #[test]
    fn binding_strings() {
        assert_eq!(Peer::Native.binding(), "native:");
        assert_eq!(
            Peer::Web("https://a.example".into(), Scopes::ALL).binding(),
            "https://a.example"
        );
        assert!(!Peer::Web("https://a.example".into(), Scopes::ALL).redacted());
        assert!(!Peer::Native.redacted());
    }
}
