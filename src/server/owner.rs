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
//! Encoding and parsing are pure ([`diag_request`], [`parse_diag_response`],
//! [`parse_line`], [`find_owner`], [`TableRow`], [`find_pid`]); only [`lookup`] does
//! I/O. Elsewhere [`lookup`] fails, so the server refuses every client rather than
//! serving them unchecked (see docs/security.md).

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

/// One row of Windows' TCP tables with owner process ids (`MIB_TCPROW_OWNER_PID`,
/// `MIB_TCP6ROW_OWNER_PID`), decoded. Pure, so it is tested on every platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRow {
    /// Local address (IPv4-mapped IPv6 turned into IPv4).
    pub local: SocketAddr,
    /// Remote address, likewise.
    pub remote: SocketAddr,
    /// Owning process id.
    pub pid: u32,
}

/// A port as the tables hold it: network byte order in the low 16 bits of a DWORD.
fn table_port(dw: u32) -> u16 {
    u16::from_be((dw & 0xFFFF) as u16)
}

impl TableRow {
    /// An IPv4 row: addresses are DWORDs holding the four bytes in network order.
    pub fn v4(local: (u32, u32), remote: (u32, u32), pid: u32) -> TableRow {
        let addr = |(a, p): (u32, u32)| {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a.to_ne_bytes())), table_port(p))
        };
        TableRow {
            local: addr(local),
            remote: addr(remote),
            pid,
        }
    }

    /// An IPv6 row: addresses are 16 bytes in network order.
    pub fn v6(local: ([u8; 16], u32), remote: ([u8; 16], u32), pid: u32) -> TableRow {
        let addr = |(a, p): ([u8; 16], u32)| {
            normalise(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a)),
                table_port(p),
            ))
        };
        TableRow {
            local: addr(local),
            remote: addr(remote),
            pid,
        }
    }
}

/// The process owning the socket whose local address is `client` and whose remote
/// address is `server`: the client's end, never the daemon's accepted socket (same
/// addresses, swapped). Pure.
pub fn find_pid(
    rows: impl IntoIterator<Item = TableRow>,
    client: SocketAddr,
    server: SocketAddr,
) -> Option<u32> {
    let (client, server) = (normalise(client), normalise(server));
    rows.into_iter()
        .find(|r| r.local == client && r.remote == server)
        .map(|r| r.pid)
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
        found = Some(owned(entry.state, entry.uid, client)?);
    }
    Ok(found)
}

/// `NETLINK_SOCK_DIAG` wire constants (`linux/netlink.h`, `linux/sock_diag.h`,
/// `linux/inet_diag.h`).
mod diag {
    pub const NLMSG_HDR: usize = 16;
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const NLM_F_REQUEST: u16 = 1;
    pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
    pub const AF_INET: u8 = 2;
    pub const AF_INET6: u8 = 10;
    pub const IPPROTO_TCP: u8 = 6;
    /// `struct inet_diag_sockid`: ports, addresses, interface, cookie.
    pub const SOCKID: usize = 48;
    /// `struct inet_diag_req_v2`.
    pub const REQ: usize = 8 + SOCKID;
    /// `struct inet_diag_msg` up to and including `idiag_inode`.
    pub const MSG: usize = 4 + SOCKID + 20;
    pub const REQUEST_LEN: usize = NLMSG_HDR + REQ;
}

/// Why a sock_diag answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    /// The kernel has no such socket.
    #[error("no such socket")]
    NotFound,
    /// The kernel answered with this errno.
    #[error("kernel error {0}")]
    Errno(i32),
    /// The answer is not a well-formed `inet_diag_msg` for our socket.
    #[error("malformed sock_diag answer: {0}")]
    Malformed(&'static str),
}

/// The inet_diag_sockid bytes for the socket whose local address is `local` and
/// whose remote address is `remote` (both the same family after normalisation).
fn sockid(local: SocketAddr, remote: SocketAddr) -> Option<(u8, [u8; diag::SOCKID])> {
    let mut id = [0u8; diag::SOCKID];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            id[4..8].copy_from_slice(&l.octets());
            id[20..24].copy_from_slice(&r.octets());
            diag::AF_INET
        }
        (IpAddr::V6(l), IpAddr::V6(r)) => {
            id[4..20].copy_from_slice(&l.octets());
            id[20..36].copy_from_slice(&r.octets());
            diag::AF_INET6
        }
        _ => return None,
    };
    // idiag_if = 0 (any); idiag_cookie = INET_DIAG_NOCOOKIE.
    id[40..48].fill(0xFF);
    Some((family, id))
}

/// The netlink message asking for the one TCP socket from `client` to `server`, in
/// any state. `None` when the two addresses are of different families. Pure.
pub fn diag_request(
    client: SocketAddr,
    server: SocketAddr,
    seq: u32,
) -> Option<[u8; diag::REQUEST_LEN]> {
    let (client, server) = (normalise(client), normalise(server));
    let (family, id) = sockid(client, server)?;
    let mut m = [0u8; diag::REQUEST_LEN];
    m[0..4].copy_from_slice(&(diag::REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&diag::SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&diag::NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    let r = diag::NLMSG_HDR;
    m[r] = family;
    m[r + 1] = diag::IPPROTO_TCP;
    // idiag_ext 0, pad 0; idiag_states: every state, so a time-wait socket is
    // reported as such rather than as missing.
    m[r + 4..r + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
    m[r + 8..r + 8 + diag::SOCKID].copy_from_slice(&id);
    Some(m)
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the kernel's answer to [`diag_request`] for the same `client`/`server`:
/// the socket's `(state, uid)`. The answer must name exactly the socket asked for.
/// Pure.
pub fn parse_diag_response(
    buf: &[u8],
    client: SocketAddr,
    server: SocketAddr,
) -> Result<(u8, u32), DiagError> {
    let (client, server) = (normalise(client), normalise(server));
    let mut at = 0;
    while at + diag::NLMSG_HDR <= buf.len() {
        let len = ne_u32(buf, at).ok_or(DiagError::Malformed("header"))? as usize;
        let kind = ne_u16(buf, at + 4).ok_or(DiagError::Malformed("header"))?;
        if len < diag::NLMSG_HDR || at + len > buf.len() {
            return Err(DiagError::Malformed("message length"));
        }
        let body = &buf[at + diag::NLMSG_HDR..at + len];
        match kind {
            diag::NLMSG_ERROR => {
                let errno = ne_u32(body, 0).ok_or(DiagError::Malformed("error message"))? as i32;
                return Err(match -errno {
                    0 => DiagError::Malformed("acknowledgement without an answer"),
                    e if e == libc::ENOENT => DiagError::NotFound,
                    e => DiagError::Errno(e),
                });
            }
            diag::NLMSG_DONE => return Err(DiagError::NotFound),
            diag::SOCK_DIAG_BY_FAMILY => {
                if body.len() < diag::MSG {
                    return Err(DiagError::Malformed("short inet_diag_msg"));
                }
                // The answer must be the socket asked for; it may come back as an
                // IPv6 socket with IPv4-mapped addresses (a dual-stack client).
                let (local, remote) =
                    answer_addrs(body).ok_or(DiagError::Malformed("answer addresses"))?;
                if local != client || remote != server {
                    return Err(DiagError::Malformed("answer for another socket"));
                }
                let state = body[1];
                let uid = ne_u32(body, 4 + diag::SOCKID + 12)
                    .ok_or(DiagError::Malformed("short inet_diag_msg"))?;
                return Ok((state, uid));
            }
            _ => {}
        }
        // Messages are 4-byte aligned.
        at += (len + 3) & !3;
    }
    Err(DiagError::Malformed("no answer"))
}

/// The (local, remote) addresses of an `inet_diag_msg`, normalised.
fn answer_addrs(body: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let id = body.get(4..4 + diag::SOCKID)?;
    let sport = u16::from_be_bytes([id[0], id[1]]);
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let (src, dst): (IpAddr, IpAddr) = match body[0] {
        diag::AF_INET => {
            let s: [u8; 4] = id[4..8].try_into().ok()?;
            let d: [u8; 4] = id[20..24].try_into().ok()?;
            (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())
        }
        diag::AF_INET6 => {
            let s: [u8; 16] = id[4..20].try_into().ok()?;
            let d: [u8; 16] = id[20..36].try_into().ok()?;
            (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
        }
        _ => return None,
    };
    Some((
        normalise(SocketAddr::new(src, sport)),
        normalise(SocketAddr::new(dst, dport)),
    ))
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

    #[test]
    fn windows_rows_decode_network_order_and_find_the_client_end() {
        // 127.0.0.1:50000 -> 127.0.0.1:24880 as the table stores it: addresses as
        // DWORDs of network-order bytes, ports big-endian in the low 16 bits.
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = |p: u16| u32::from(p.to_be());
        let client_end = TableRow::v4((lo, port(50000)), (lo, port(24880)), 4242);
        assert_eq!(client_end.local, "127.0.0.1:50000".parse().expect("addr"));
        assert_eq!(client_end.remote, "127.0.0.1:24880".parse().expect("addr"));
        // The daemon's accepted socket: the same pair swapped, another process.
        let server_end = TableRow::v4((lo, port(24880)), (lo, port(50000)), 7);
        let client = "127.0.0.1:50000".parse().expect("addr");
        let server = "127.0.0.1:24880".parse().expect("addr");
        assert_eq!(
            find_pid([server_end, client_end], client, server),
            Some(4242)
        );
        assert_eq!(find_pid([server_end], client, server), None);
        // High bits of the port DWORD are not part of the port.
        let noisy = TableRow::v4((lo, 0xABCD_0000 | port(50000)), (lo, port(24880)), 1);
        assert_eq!(noisy.local.port(), 50000);
    }

    #[test]
    fn windows_v6_rows_cover_loopback_and_ipv4_mapped_clients() {
        let port = |p: u16| u32::from(p.to_be());
        let v6lo = std::net::Ipv6Addr::LOCALHOST.octets();
        let row = TableRow::v6((v6lo, port(50001)), (v6lo, port(24880)), 9);
        assert_eq!(
            find_pid(
                [row],
                "[::1]:50001".parse().expect("addr"),
                "[::1]:24880".parse().expect("addr")
            ),
            Some(9)
        );
        // A dual-stack socket speaking IPv4 lists ::ffff:127.0.0.1.
        let mapped = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        let row = TableRow::v6((mapped, port(50002)), (mapped, port(24880)), 11);
        assert_eq!(
            find_pid(
                [row],
                "127.0.0.1:50002".parse().expect("addr"),
                "127.0.0.1:24880".parse().expect("addr")
            ),
            Some(11)
        );
    }

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

    /// A kernel answer: one inet_diag_msg for `family`, `local` -> `remote`.
    fn answer(family: u8, local: SocketAddr, remote: SocketAddr, state: u8, uid: u32) -> Vec<u8> {
        let mut body = vec![0u8; diag::MSG];
        body[0] = family;
        body[1] = state;
        let as16 = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v4) if family == diag::AF_INET => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                b
            }
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        body[4..6].copy_from_slice(&local.port().to_be_bytes());
        body[6..8].copy_from_slice(&remote.port().to_be_bytes());
        body[8..24].copy_from_slice(&as16(local));
        body[24..40].copy_from_slice(&as16(remote));
        body[40..44].copy_from_slice(&1u32.to_ne_bytes()); // bound to lo: still ours
        body[4 + diag::SOCKID + 12..4 + diag::SOCKID + 16].copy_from_slice(&uid.to_ne_bytes());
        let mut m = Vec::new();
        m.extend_from_slice(&((diag::NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&diag::SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn error(errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&diag::NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m
    }

    #[test]
    fn diag_request_names_the_client_socket_exactly() {
        let m = diag_request(a("127.0.0.1:40000"), a("127.0.0.1:24880"), 7).expect("v4");
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().expect("len")), 72);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().expect("type")), 20);
        let r = &m[16..];
        assert_eq!((r[0], r[1]), (diag::AF_INET, diag::IPPROTO_TCP));
        assert_eq!(&r[4..8], &[0xFF; 4], "every state");
        assert_eq!(&r[8..10], &40000u16.to_be_bytes(), "sport is the client's");
        assert_eq!(&r[10..12], &24880u16.to_be_bytes(), "dport is ours");
        assert_eq!(&r[12..16], &[127, 0, 0, 1]);
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[48..56], &[0xFF; 8], "no cookie");
        // A mapped client is asked for as IPv4; IPv6 as IPv6.
        let mapped = diag_request(a("[::ffff:127.0.0.1]:1"), a("[::ffff:127.0.0.1]:2"), 1);
        assert_eq!(mapped.expect("mapped")[16], diag::AF_INET);
        let v6 = diag_request(a("[::1]:1"), a("[::1]:2"), 1).expect("v6");
        assert_eq!(
            (v6[16], &v6[28..44]),
            (diag::AF_INET6, &Ipv6Addr::LOCALHOST.octets()[..])
        );
        assert!(diag_request(a("127.0.0.1:1"), a("[::1]:2"), 1).is_none());
    }

    #[test]
    fn diag_answers_are_checked_against_the_question() {
        let (c, srv) = (a("127.0.0.1:40000"), a("127.0.0.1:24880"));
        let ok = answer(diag::AF_INET, c, srv, 1, 1000);
        assert_eq!(parse_diag_response(&ok, c, srv), Ok((1, 1000)));
        // A dual-stack client socket answers as IPv6 with mapped addresses.
        let dual = answer(diag::AF_INET6, c, srv, 1, 1001);
        assert_eq!(parse_diag_response(&dual, c, srv), Ok((1, 1001)));
        let v6 = (a("[::1]:40000"), a("[::1]:24880"));
        let ok6 = answer(diag::AF_INET6, v6.0, v6.1, 1, 1002);
        assert_eq!(parse_diag_response(&ok6, v6.0, v6.1), Ok((1, 1002)));
        // The daemon's own end, or another client, is not an answer.
        let swapped = answer(diag::AF_INET, srv, c, 1, 0);
        assert_eq!(
            parse_diag_response(&swapped, c, srv),
            Err(DiagError::Malformed("answer for another socket"))
        );
        assert_eq!(
            parse_diag_response(&error(libc::ENOENT), c, srv),
            Err(DiagError::NotFound)
        );
        assert_eq!(
            parse_diag_response(&error(libc::EPERM), c, srv),
            Err(DiagError::Errno(libc::EPERM))
        );
        assert!(
            parse_diag_response(&error(0), c, srv).is_err(),
            "an ack is no answer"
        );
        for cut in [0, 3, 16, 40, ok.len() - 1] {
            assert!(
                parse_diag_response(&ok[..cut], c, srv).is_err(),
                "cut at {cut}"
            );
        }
        let mut lying = ok.clone();
        lying[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(
            parse_diag_response(&lying, c, srv).is_err(),
            "length beyond the buffer"
        );
        let mut family = ok.clone();
        family[16] = 99;
        assert!(parse_diag_response(&family, c, srv).is_err());
        // A time-wait answer has no owner.
        let tw = answer(diag::AF_INET, c, srv, 6, 0);
        let (state, uid) = parse_diag_response(&tw, c, srv).expect("parses");
        assert!(matches!(
            owned(state, uid, c),
            Err(LookupError::NoOwner { state: 6, .. })
        ));
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
