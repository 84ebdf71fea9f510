//! Rows of Windows' TCP tables with their owning process (`GetExtendedTcpTable`),
//! decoded, and the client's row found in them. Pure, so tested on every platform;
//! `server::owner::windows` reads the tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::inet::normalise;

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
}
