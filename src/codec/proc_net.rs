//! One line of `/proc/net/tcp{,6}`: the kernel's socket table as text. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::inet::normalise;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    // The kernel's text depends on the CPU's byte order; these lines are what a
    // little-endian machine (x86, arm64) prints.
    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_ipv6_and_mapped_lines_parse() {
        let v4 = "   5: 0100007F:9C40 0100007F:6130 01 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 20 4 30 10 -1";
        let e = parse_line(v4).expect("parses");
        assert_eq!(
            (e.local, e.remote, e.state, e.uid),
            (a("127.0.0.1:40000"), a("127.0.0.1:24880"), 1, 1000)
        );
        let v6 = "   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:6130 01 00000000:00000000 00:00000000 00000000  1001        0 1 1 0000000000000000 20 4 30 10 -1";
        let e = parse_line(v6).expect("parses");
        assert_eq!((e.local, e.uid), (a("[::1]:40000"), 1001));
        let mapped = "   1: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:6130 01 00000000:00000000 00:00000000 00000000  1002        0 2 1 0000000000000000 20 4 30 10 -1";
        let e = parse_line(mapped).expect("parses");
        assert_eq!(e.local, a("127.0.0.1:40000"), "mapped is normalised");
    }

    #[test]
    fn each_unreadable_line_names_its_column() {
        use ParseError::{Bad, Missing};
        let rest = "0100007F:9C40 01 0:0 0:0 0";
        for (line, want) in [
            ("".to_string(), Missing("sl")),
            (
                "7 0100007F:6130 0100007F:9C40 01 0:0 0:0 0 0".into(),
                Bad("sl"),
            ),
            ("   7:".into(), Missing("local_address")),
            ("   7: 0100007F:6130".into(), Missing("rem_address")),
            (
                format!("   7: 0100007F:61300 {rest} 0"),
                Bad("local_address"),
            ),
            (
                format!("   7: 0100007G:6130 {rest} 0"),
                Bad("local_address"),
            ),
            (format!("   7: 00007F:6130 {rest} 0"), Bad("local_address")),
            (format!("   7: 0100007F6130 {rest} 0"), Bad("local_address")),
            (
                format!("   7: ü100007F:6130 {rest} 0"),
                Bad("local_address"),
            ),
            (
                "   7: 0100007F:6130 0100007F:9C4 01".into(),
                Bad("rem_address"),
            ),
            ("   7: 0100007F:6130 0100007F:9C40".into(), Missing("st")),
            (
                "   7: 0100007F:6130 0100007F:9C40 1 0:0 0:0 0 0".into(),
                Bad("st"),
            ),
            (
                "   7: 0100007F:6130 0100007F:9C40 01".into(),
                Missing("tx_queue:rx_queue"),
            ),
            (
                "   7: 0100007F:6130 0100007F:9C40 01 0:0".into(),
                Missing("tr:tm->when"),
            ),
            (
                "   7: 0100007F:6130 0100007F:9C40 01 0:0 0:0".into(),
                Missing("retrnsmt"),
            ),
            (format!("   7: 0100007F:6130 {rest}"), Missing("uid")),
            (format!("   7: 0100007F:6130 {rest} -5"), Bad("uid")),
            (format!("   7: 0100007F:6130 {rest} 4294967296"), Bad("uid")),
        ] {
            assert_eq!(parse_line(&line), Err(want.clone()), "{line:?}");
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
}
