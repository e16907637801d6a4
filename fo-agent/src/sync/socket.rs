//! The sync socket: bound to this node's own address on `[node] interface`, never the
//! wildcard, and without `SO_REUSEADDR` or `SO_REUSEPORT`.
//!
//! Bound so, no other socket can share the port: Linux lets two UDP sockets bind
//! overlapping addresses (`0.0.0.0` and a specific one, or the same one) only when
//! both set `SO_REUSEADDR`, or both set `SO_REUSEPORT` under the same user. A local
//! unprivileged process can then neither take the peers' unicast datagrams away nor
//! share them. (The wildcard with `SO_REUSEADDR`, as before, let any user bind
//! `node_ip:7480` and receive what the peers send.)
//!
//! The node's address is the IPv4 address on the interface whose prefix holds a sync
//! peer (the address the peers reach), else the interface's primary address; the
//! router's VIPs and SNAT addresses never count. An interface without one yet (DHCP,
//! a late network), or a port someone else holds, is retried every [`RETRY`] by the
//! sync task: the agent runs meanwhile, nothing is synced, and the status says so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::net::addr::V4Address;

/// How often binding is tried again while it fails.
pub const RETRY: Duration = Duration::from_secs(1);
/// The receive buffer asked for: a burst of Updates (the whole event ring buffer, about
/// 37,000 connections in 1,200 datagrams) fits, whatever `net.core.rmem_max` says.
pub const RECV_BUFFER: usize = 4 << 20;

/// The address to bind among the interface's `addresses`: the first whose prefix
/// holds one of `peers`; else the first primary one; `exclude` (VIPs, SNAT
/// addresses) never.
pub fn node_address(
    addresses: &[V4Address],
    peers: &[IpAddr],
    exclude: &[IpAddr],
) -> Option<Ipv4Addr> {
    let own: Vec<&V4Address> = addresses
        .iter()
        .filter(|a| !exclude.contains(&IpAddr::V4(a.address)))
        .collect();
    let holds = |a: &V4Address, p: Ipv4Addr| {
        let bits = u32::from(a.prefix_len.min(32));
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(a.address) & mask == u32::from(p) & mask
    };
    peers
        .iter()
        .filter_map(|p| match p {
            IpAddr::V4(p) => Some(*p),
            IpAddr::V6(_) => None,
        })
        .find_map(|p| own.iter().find(|a| holds(a, p)).map(|a| a.address))
        .or_else(|| own.iter().find(|a| !a.secondary).map(|a| a.address))
}

/// A UDP socket on `addr`, alone on it, with a receive buffer of [`RECV_BUFFER`].
/// Returns the socket and the receive buffer the kernel granted.
pub fn bind(addr: SocketAddrV4) -> std::io::Result<(tokio::net::UdpSocket, usize)> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // No SO_REUSEADDR, no SO_REUSEPORT: the port is ours alone (socket2 sets neither).
    force_recv_buffer(&s, RECV_BUFFER);
    s.bind(&SocketAddr::V4(addr).into())?;
    s.set_nonblocking(true)?;
    let granted = s.recv_buffer_size().unwrap_or(0);
    Ok((tokio::net::UdpSocket::from_std(s.into())?, granted))
}

/// `SO_RCVBUFFORCE` (the agent runs with CAP_NET_ADMIN), so a snapshot or an Update
/// burst is not capped by `net.core.rmem_max`; `SO_RCVBUF` where that is refused.
fn force_recv_buffer(s: &socket2::Socket, bytes: usize) {
    use std::os::fd::AsRawFd as _;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) on a socket we own, with a c_int option value of the
    // size passed; socket2 has no call for SO_RCVBUFFORCE.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "sync: SO_RCVBUFFORCE refused (no CAP_NET_ADMIN?): the receive buffer is capped by net.core.rmem_max");
        let _ = s.set_recv_buffer_size(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str, prefix_len: u8, secondary: bool) -> V4Address {
        V4Address {
            address: s.parse().expect("address"),
            prefix_len,
            secondary,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_address_that_reaches_the_peers_is_chosen() {
        let addrs = [
            a("198.51.100.2", 24, false),
            a("192.0.2.2", 24, false),
            a("192.0.2.100", 32, false),
        ];
        assert_eq!(
            node_address(&addrs, &[ip("192.0.2.3")], &[ip("192.0.2.100")]),
            Some("192.0.2.2".parse().expect("ip"))
        );
        // Routed peers: the primary address.
        assert_eq!(
            node_address(&addrs, &[ip("203.0.113.9")], &[]),
            Some("198.51.100.2".parse().expect("ip"))
        );
    }

    #[test]
    fn vips_and_snat_addresses_never_count() {
        let addrs = [a("192.0.2.100", 24, false), a("192.0.2.2", 24, true)];
        assert_eq!(
            node_address(&addrs, &[ip("192.0.2.3")], &[ip("192.0.2.100")]),
            Some("192.0.2.2".parse().expect("ip")),
            "the VIP came first and made the node's own address secondary"
        );
        assert_eq!(
            node_address(&addrs[..1], &[ip("192.0.2.3")], &[ip("192.0.2.100")]),
            None
        );
        assert_eq!(node_address(&[], &[ip("192.0.2.3")], &[]), None);
    }

    #[tokio::test]
    async fn a_bound_port_cannot_be_shared_even_with_reuse_flags() {
        // Loopback, an ephemeral port: what another local process would try.
        let (sock, granted) = bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = sock.local_addr().expect("local").port();
        assert!(granted > 0);
        for (reuse_addr, reuse_port) in [(true, true), (true, false), (false, true)] {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("socket");
            s.set_reuse_address(reuse_addr).expect("SO_REUSEADDR");
            s.set_reuse_port(reuse_port).expect("SO_REUSEPORT");
            for target in [Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED] {
                let r = s.bind(&SocketAddr::from((target, port)).into());
                assert!(
                    r.is_err(),
                    "{target}:{port} shared (reuseaddr {reuse_addr}, reuseport {reuse_port})"
                );
            }
        }
    }
}
