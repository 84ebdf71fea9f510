//! Socket addresses as the kernel's socket tables hold them.

use std::net::{IpAddr, SocketAddr};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4_and_the_rest_is_left_alone() {
        let a = |s: &str| s.parse::<SocketAddr>().expect("address");
        assert_eq!(normalise(a("[::ffff:127.0.0.1]:1")), a("127.0.0.1:1"));
        assert_eq!(normalise(a("127.0.0.1:1")), a("127.0.0.1:1"));
        assert_eq!(normalise(a("[::1]:2")), a("[::1]:2"));
        // IPv4-compatible (deprecated `::a.b.c.d`) is not IPv4-mapped.
        assert_eq!(normalise(a("[::127.0.0.1]:3")), a("[::127.0.0.1]:3"));
    }
}
