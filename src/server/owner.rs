//! Which OS user owns the *client* end of a loopback TCP connection.
//!
//! Both ends of a loopback connection live in this host's socket tables, so the
//! kernel can tell us who created the client's socket: its line in `/proc/net/tcp`
//! (or `tcp6`) whose local address is the client's and whose remote address is ours
//! carries the owner's uid. Matching the exact 4-tuple matters: the daemon's own
//! accepted socket has the same two addresses swapped and is owned by the daemon.
//!
//! The parsing is pure ([`parse_line`], [`find_owner`]); only [`lookup`] reads the
//! files, and only on Linux. Elsewhere [`lookup`] fails, so the server refuses every
//! client rather than serving them unchecked (a Windows implementation through
//! `GetExtendedTcpTable` is a separate piece of work; see docs/security.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
mod state {
    /// Request sockets (`SYN_RECV`) and time-wait sockets are minisockets without an
    /// owner; the kernel prints uid 0 for them, which must never pass for root.
    pub const SYN_RECV: u8 = 0x03;
    pub const TIME_WAIT: u8 = 0x06;
    pub const LISTEN: u8 = 0x0A;
    pub const NEW_SYN_RECV: u8 = 0x0C;
}

/// One socket of `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    /// `local_address`, IPv4-mapped IPv6 turned into IPv4.
    pub local: SocketAddr,
    /// `rem_address`, likewise.
    pub remote: SocketAddr,
    /// `st`.
    pub state: u8,
    /// `uid`: the owner (the creating process's fsuid).
    pub uid: u32,
}

/// Why a line of `/proc/net/tcp{,6}` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer columns than the format has.
    #[error("missing column `{0}`")]
    Missing(&'static str),
    /// A column that is not what the format says.
    #[error("bad column `{0}`")]
    Bad(&'static str),
}

/// Why the owner of a client socket is not known; every case refuses the client.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No socket with this 4-tuple: the client closed it between accept and lookup.
    #[error("no socket {client} -> {server} in the socket table (client gone?)")]
    NotFound {
        /// Client address.
        client: SocketAddr,
        /// Our address.
        server: SocketAddr,
    },
    /// The socket exists but is an ownerless minisocket (time-wait, request).
    #[error("socket {client} is in state {state:#04x}, which has no owner")]
    NoOwner {
        /// Client address.
        client: SocketAddr,
        /// Its TCP state.
        state: u8,
    },
    /// The table has a line we cannot read, so we cannot say the client is not on it.
    #[error("{file} line {line}: {source}")]
    Malformed {
        /// Which table.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        #[source]
        source: ParseError,
    },
    /// The table could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        /// Which table.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// This platform has no implementation.
    #[error("socket owner lookup is not implemented on this platform")]
    Unsupported,
}

/// Parses one data line of `/proc/net/tcp` or `/proc/net/tcp6`
/// (`sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`).
pub fn parse_line(line: &str) -> Result<SocketEntry, ParseError> {
    let mut cols = line.split_ascii_whitespace();
    let mut next = |name| cols.next().ok_or(ParseError::Missing(name));
    let sl = next("sl")?;
    if !sl.ends_with(':') {
        return Err(ParseError::Bad("sl"));
    }
    let local = parse_addr(next("local_address")?).ok_or(ParseError::Bad("local_address"))?;
    let remote = parse_addr(next("rem_address")?).ok_or(ParseError::Bad("rem_address"))?;
    let state = hex_u8(next("st")?).ok_or(ParseError::Bad("st"))?;
    next("tx_queue:rx_queue")?;
    next("tr:tm->when")?;
    next("retrnsmt")?;
    let uid = next("uid")?
        .parse::<u32>()
        .map_err(|_| ParseError::Bad("uid"))?;
    Ok(SocketEntry {
        local,
        remote,
        state,
        uid,
    })
}

fn hex_u8(s: &str) -> Option<u8> {
    (s.len() == 2).then_some(())?;
    u8::from_str_radix(s, 16).ok()
}

/// `ADDR:PORT` in hex. The kernel prints each 32-bit word of the (network-order)
/// address as a host-order integer, so the bytes come back with `to_ne_bytes`.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    if port.len() != 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = addr.get(i * 8..i * 8 + 8)?;
        if !w.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(normalise(SocketAddr::new(ip, port)))
}

/// `::ffff:a.b.c.d` is the IPv4 peer `a.b.c.d` seen through a dual-stack socket; the
/// other end may list it either way.
pub fn normalise(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Finds the owner of the socket whose local address is `client` and whose remote
/// address is `server` in one table's text (header line first). Pure.
///
/// `Ok(None)` when no line matches. Any unreadable line is an error, even when
/// another line matches: a format we do not understand is a reason to stop trusting
/// the table, not to guess.
pub fn find_owner(
    table: &str,
    file: &'static str,
    client: SocketAddr,
    server: SocketAddr,
) -> Result<Option<u32>, LookupError> {
    let (client, server) = (normalise(client), normalise(server));
    let mut found = None;
    for (i, line) in table.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let entry = parse_line(line).map_err(|source| LookupError::Malformed {
            file,
            line: i + 1,
            source,
        })?;
        if entry.local != client || entry.remote != server {
            continue;
        }
        match entry.state {
            state::SYN_RECV | state::TIME_WAIT | state::LISTEN | state::NEW_SYN_RECV => {
                return Err(LookupError::NoOwner {
                    client,
                    state: entry.state,
                });
            }
            _ => found = Some(entry.uid),
        }
    }
    Ok(found)
}

/// The tables to search for a client at `client`: an IPv4 client socket is in `tcp`
/// unless it is a dual-stack IPv6 socket speaking IPv4, which is in `tcp6`.
fn tables_for(client: SocketAddr) -> &'static [&'static str] {
    match normalise(client) {
        SocketAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        SocketAddr::V6(_) => &["/proc/net/tcp6"],
    }
}

/// The uid owning the client end of the connection from `client` to `server` (the
/// accepted socket's peer and local addresses). Blocking: reads procfs.
#[cfg(target_os = "linux")]
pub fn lookup(client: SocketAddr, server: SocketAddr) -> Result<u32, LookupError> {
    for &file in tables_for(client) {
        let table = match std::fs::read_to_string(file) {
            Ok(t) => t,
            // No IPv6 in this kernel: no tcp6 table, and no IPv6 socket either.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.ends_with('6') => {
                continue;
            }
            Err(source) => return Err(LookupError::Io { file, source }),
        };
        if let Some(uid) = find_owner(&table, file, client, server)? {
            return Ok(uid);
        }
    }
    Err(LookupError::NotFound {
        client: normalise(client),
        server: normalise(server),
    })
}

/// No implementation here: every client is refused (fail closed).
#[cfg(not(target_os = "linux"))]
pub fn lookup(_client: SocketAddr, _server: SocketAddr) -> Result<u32, LookupError> {
    let _ = tables_for;
    Err(LookupError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    // The kernel's text depends on the CPU's byte order; these lines are what a
    // little-endian machine (x86, arm64) prints.
    #[cfg(target_endian = "little")]
    mod little_endian {
        use super::*;

        /// 127.0.0.1:40000 -> 127.0.0.1:24880, established, uid 1000.
        const CLIENT_V4: &str = "   5: 0100007F:9C40 0100007F:6130 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 20 4 30 10 -1";
        /// The daemon's accepted end of the same connection, uid 0.
        const SERVER_V4: &str = "   6: 0100007F:6130 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 123457 1 0000000000000000 20 4 30 10 -1";

        #[test]
        fn ipv4_line_parses() {
            let e = parse_line(CLIENT_V4).expect("parses");
            assert_eq!(e.local, a("127.0.0.1:40000"));
            assert_eq!(e.remote, a("127.0.0.1:24880"));
            assert_eq!(e.state, 1);
            assert_eq!(e.uid, 1000);
        }

        #[test]
        fn the_client_end_is_matched_not_the_servers() {
            let table = format!("{HEADER}\n{SERVER_V4}\n{CLIENT_V4}\n");
            let owner = find_owner(&table, "tcp", a("127.0.0.1:40000"), a("127.0.0.1:24880"));
            assert_eq!(owner.expect("reads"), Some(1000));
            // Swapped, it is the daemon's socket.
            let owner = find_owner(&table, "tcp", a("127.0.0.1:24880"), a("127.0.0.1:40000"));
            assert_eq!(owner.expect("reads"), Some(0));
            // Another port is nobody.
            let owner = find_owner(&table, "tcp", a("127.0.0.1:40001"), a("127.0.0.1:24880"));
            assert_eq!(owner.expect("reads"), None);
        }

        #[test]
        fn ipv6_loopback_and_ipv4_mapped_addresses() {
            // [::1]:40000 -> [::1]:24880, uid 1001.
            let v6 = "   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:6130 01 00000000:00000000 00:00000000 00000000  1001        0 1 1 0000000000000000 20 4 30 10 -1";
            let e = parse_line(v6).expect("parses");
            assert_eq!(e.local, a("[::1]:40000"));
            assert_eq!(e.uid, 1001);
            // ::ffff:127.0.0.1:40000 -> ::ffff:127.0.0.1:24880 (a dual-stack socket).
            let mapped = "   1: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:6130 01 00000000:00000000 00:00000000 00000000  1002        0 2 1 0000000000000000 20 4 30 10 -1";
            let e = parse_line(mapped).expect("parses");
            assert_eq!(e.local, a("127.0.0.1:40000"), "mapped is normalised");
            let table = format!("{HEADER}\n{v6}\n{mapped}\n");
            // The accepted socket may report the peer as mapped or plain: both match.
            for (client, server) in [
                ("[::ffff:127.0.0.1]:40000", "[::ffff:127.0.0.1]:24880"),
                ("127.0.0.1:40000", "127.0.0.1:24880"),
            ] {
                let owner = find_owner(&table, "tcp6", a(client), a(server)).expect("reads");
                assert_eq!(owner, Some(1002), "{client}");
            }
            let owner = find_owner(&table, "tcp6", a("[::1]:40000"), a("[::1]:24880"));
            assert_eq!(owner.expect("reads"), Some(1001));
        }

        #[test]
        fn ownerless_minisockets_never_pass_for_root() {
            let tw = CLIENT_V4
                .replace(" 01 ", " 06 ")
                .replace("  1000 ", "     0 ");
            let table = format!("{HEADER}\n{tw}\n");
            let e = find_owner(&table, "tcp", a("127.0.0.1:40000"), a("127.0.0.1:24880"))
                .expect_err("time-wait has no owner");
            assert!(matches!(e, LookupError::NoOwner { state: 6, .. }), "{e}");
        }

        #[test]
        fn a_malformed_line_anywhere_refuses() {
            for bad in [
                "   7: 0100007F:6130",
                "   7: 0100007F:61300 0100007F:9C40 01 0:0 0:0 0 0 0 1",
                "   7: 0100007G:6130 0100007F:9C40 01 0:0 0:0 0 0 0 1",
                "   7: 0100007F:6130 0100007F:9C40 1 0:0 0:0 0 0 0 1",
                "   7: 0100007F:6130 0100007F:9C40 01 0:0 0:0 0 -5 0 1",
                "   7: 0100007F:6130 0100007F:9C40 01 0:0 0:0 0 4294967296 0 1",
                "7 0100007F:6130 0100007F:9C40 01 0:0 0:0 0 0 0 1",
                "   7: 00007F:6130 0100007F:9C40 01 0:0 0:0 0 0 0 1",
                "   7: 0100007F6130 0100007F:9C40 01 0:0 0:0 0 0 0 1",
                "   7: ü100007F:6130 0100007F:9C40 01 0:0 0:0 0 0 0 1",
            ] {
                let table = format!("{HEADER}\n{CLIENT_V4}\n{bad}\n");
                let e = find_owner(&table, "tcp", a("127.0.0.1:40000"), a("127.0.0.1:24880"))
                    .expect_err(bad);
                assert!(
                    matches!(e, LookupError::Malformed { line: 3, .. }),
                    "{bad}: {e}"
                );
            }
        }
    }

    #[test]
    fn empty_and_header_only_tables_match_nothing() {
        for table in ["", HEADER, &format!("{HEADER}\n\n")] {
            let owner = find_owner(table, "tcp", a("127.0.0.1:1"), a("127.0.0.1:2"));
            assert_eq!(owner.expect("reads"), None);
        }
    }

    #[test]
    fn parser_never_panics_on_junk() {
        for junk in [
            "",
            ":",
            " : : : ",
            "0: :",
            "0: ::: ::: zz",
            "\u{0}\u{1}",
            "0: 1:1 1:1 1 1 1 1 1",
        ] {
            let _ = parse_line(junk);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_connection_is_owned_by_this_process_user() {
        let euid = nix::unistd::geteuid().as_raw();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        let server = accepted.local_addr().expect("local");
        assert_eq!(lookup(peer, server).expect("found"), euid);
        // The client goes away: its socket leaves the table (or becomes an
        // ownerless minisocket); either way there is no owner to accept.
        drop(client);
        drop(accepted);
        drop(listener);
        assert!(lookup(peer, server).is_err());
        // A port nobody uses.
        let nobody = lookup(a("127.0.0.1:9"), server).expect_err("not found");
        assert!(matches!(nobody, LookupError::NotFound { .. }), "{nobody}");
    }
}
