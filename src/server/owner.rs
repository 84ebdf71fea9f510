//! Which OS user owns the *client* end of a loopback TCP connection.
//!
//! Both ends of a loopback connection live in this host's socket tables, so the
//! kernel can tell us who created the client's socket: the socket whose local
//! address is the client's and whose remote address is ours carries its owner's
//! uid. Matching the exact 4-tuple matters: the daemon's own accepted socket has the
//! same two addresses swapped and is owned by the daemon.
//!
//! Two ways to ask, on Linux:
//! - `NETLINK_SOCK_DIAG` with the exact 4-tuple (`inet_diag`, `idiag_uid`): the
//!   kernel looks the one socket up in its hash table, so the cost does not grow
//!   with the number of sockets on the machine. This is what [`lookup`] uses.
//! - `/proc/net/tcp{,6}`: one line per socket of the network namespace, so a
//!   lookup costs a few µs per socket on the machine (milliseconds on a busy host).
//!   [`lookup`] falls back to it only when netlink is not available (a sandbox that
//!   forbids `AF_NETLINK`).
//!
//! On Windows, `GetExtendedTcpTable` lists every TCP socket with its owning process
//! id; the owner of the client's row is then compared by its token's user SID with
//! the daemon's own (`owner/windows.rs`): only the daemon's own account is served there.
//!
//! Encoding and parsing are pure codecs ([`crate::codec::sock_diag`],
//! [`crate::codec::proc_net`], [`crate::codec::tcp_table`]), and so is
//! [`find_owner`]; only [`lookup`] does I/O. Elsewhere [`lookup`] fails, so the server refuses every client rather than
//! serving them unchecked (see docs/security.md).

use std::net::SocketAddr;

use crate::codec::inet::normalise;
use crate::codec::proc_net::{ParseError, parse_line};
use crate::codec::sock_diag::DiagError;
#[cfg(target_os = "linux")]
use crate::codec::sock_diag::{diag_request, parse_diag_response};

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`).
mod state {
    /// Request sockets (`SYN_RECV`) and time-wait sockets are minisockets without an
    /// owner; the kernel prints uid 0 for them, which must never pass for root.
    pub const SYN_RECV: u8 = 0x03;
    pub const TIME_WAIT: u8 = 0x06;
    pub const LISTEN: u8 = 0x0A;
    pub const NEW_SYN_RECV: u8 = 0x0C;
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
    /// The kernel's sock_diag answer was unusable.
    #[error("sock_diag: {0}")]
    Diag(#[source] DiagError),
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
    /// The table lists the client's socket without an owning process (Windows).
    #[error("socket {client} has no owning process in the TCP table")]
    NoProcess {
        /// Client address.
        client: SocketAddr,
    },
    /// The client's socket belongs to a process of another account (Windows, where
    /// accounts are SIDs, not uids).
    #[error("the client socket belongs to process {pid}, which runs as another account")]
    ForeignAccount {
        /// The owning process.
        pid: u32,
    },
    /// A Windows call failed (the TCP table, the owning process or its token).
    #[error("{call} failed: {source}")]
    Os {
        /// The API that failed.
        call: &'static str,
        /// Its error.
        #[source]
        source: std::io::Error,
    },
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
        found = Some(owned(entry.state, entry.uid, client)?);
    }
    Ok(found)
}

/// Asks the kernel through `NETLINK_SOCK_DIAG`. `Err(None)` when netlink itself is
/// unavailable (then the caller may read procfs instead).
#[cfg(target_os = "linux")]
fn lookup_diag(client: SocketAddr, server: SocketAddr) -> Result<u32, Option<LookupError>> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        setsockopt, socket, sockopt,
    };
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd;

    let Some(request) = diag_request(client, server, 1) else {
        return Err(Some(LookupError::NotFound {
            client: normalise(client),
            server: normalise(server),
        }));
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )
    .map_err(|_| None)?;
    // The kernel answers within the send; the timeout only bounds a broken kernel.
    let _ = setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0));
    sendto(
        fd.as_raw_fd(),
        &request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|_| None)?;
    let mut buf = [0u8; 1024];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(|e| {
        Some(LookupError::Io {
            file: "NETLINK_SOCK_DIAG",
            source: std::io::Error::from(e),
        })
    })?;
    let (state, uid) = match parse_diag_response(&buf[..n], client, server) {
        Ok(a) => a,
        Err(DiagError::NotFound) => {
            return Err(Some(LookupError::NotFound {
                client: normalise(client),
                server: normalise(server),
            }));
        }
        Err(e) => return Err(Some(LookupError::Diag(e))),
    };
    owned(state, uid, client).map_err(Some)
}

/// The uid of a socket in `state`, unless that state has no owner.
fn owned(state: u8, uid: u32, client: SocketAddr) -> Result<u32, LookupError> {
    match state {
        state::SYN_RECV | state::TIME_WAIT | state::LISTEN | state::NEW_SYN_RECV => {
            Err(LookupError::NoOwner {
                client: normalise(client),
                state,
            })
        }
        _ => Ok(uid),
    }
}

/// The tables to search for a client at `client`: an IPv4 client socket is in `tcp`
/// unless it is a dual-stack IPv6 socket speaking IPv4, which is in `tcp6`.
#[cfg(not(windows))]
fn tables_for(client: SocketAddr) -> &'static [&'static str] {
    match normalise(client) {
        SocketAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        SocketAddr::V6(_) => &["/proc/net/tcp6"],
    }
}

/// The uid owning the client end of the connection from `client` to `server` (the
/// accepted socket's peer and local addresses): sock_diag, or procfs when netlink
/// is unavailable. Blocking.
#[cfg(target_os = "linux")]
pub fn lookup(client: SocketAddr, server: SocketAddr) -> Result<u32, LookupError> {
    match lookup_diag(client, server) {
        Ok(uid) => Ok(uid),
        Err(Some(e)) => Err(e),
        Err(None) => lookup_proc(client, server),
    }
}

/// The same answer from `/proc/net/tcp{,6}`. Blocking.
#[cfg(target_os = "linux")]
pub fn lookup_proc(client: SocketAddr, server: SocketAddr) -> Result<u32, LookupError> {
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

#[cfg(windows)]
pub mod windows;
#[cfg(windows)]
pub use windows::lookup;

/// No implementation here: every client is refused (fail closed).
#[cfg(not(any(target_os = "linux", windows)))]
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
    fn ownerless_states_never_pass_whatever_uid_they_show() {
        let c = a("127.0.0.1:40000");
        for st in [
            state::SYN_RECV,
            state::TIME_WAIT,
            state::LISTEN,
            state::NEW_SYN_RECV,
        ] {
            let e = owned(st, 0, c).expect_err("no owner");
            assert!(
                matches!(e, LookupError::NoOwner { state, .. } if state == st),
                "{e}"
            );
        }
        assert_eq!(owned(0x01, 1000, c).expect("established"), 1000);
    }

    #[test]
    fn empty_and_header_only_tables_match_nothing() {
        for table in ["", HEADER, &format!("{HEADER}\n\n")] {
            let owner = find_owner(table, "tcp", a("127.0.0.1:1"), a("127.0.0.1:2"));
            assert_eq!(owner.expect("reads"), None);
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
        assert_eq!(
            lookup_diag(peer, server).ok(),
            Some(euid),
            "through sock_diag"
        );
        assert_eq!(lookup_proc(peer, server).expect("in procfs"), euid);
        // The daemon's own end is found too, and is not mistaken for the client's.
        let client_addr = client.local_addr().expect("client addr");
        assert_eq!(client_addr, peer);
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
