//! `NETLINK_SOCK_DIAG` for one TCP socket: the request naming it by its exact
//! 4-tuple, and the kernel's answer (its state and owner). Pure; the daemon's
//! OS-user check sends and receives them (`server::owner`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::inet::normalise;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
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
        // A time-wait answer reads as such (uid 0: the caller must not take it).
        let tw = answer(diag::AF_INET, c, srv, 6, 0);
        assert_eq!(parse_diag_response(&tw, c, srv), Ok((6, 0)));
    }
}
