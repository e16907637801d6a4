//! Probes through the tunnel: the mark a tunnel service's backend probe carries, and
//! the marked connect. The load balancer's TC egress program (`fo-hc`, attached by
//! the agent's data plane) encapsulates packets with such a mark as the XDP program
//! encapsulates the service's clients' packets, so the probe reaches the backend only
//! through its decapsulation.

use std::net::{IpAddr, SocketAddr};

use fo_config::{Encap, ForwardMode, Service};
use tokio::net::{TcpSocket, TcpStream};

/// The `SO_MARK` of the probes of `service`'s backend at `addr`, in the range at
/// `base` (`tunnel_check_mark`): `None` for a service
/// that is not in tunnel mode, and for GUE to an IPv6 backend (the encapsulation
/// would need a UDP checksum over the whole packet; those probes go direct).
pub fn tunnel_mark(service: &Service, addr: IpAddr, base: u32) -> Option<u32> {
    if service.mode != ForwardMode::Tunnel {
        return None;
    }
    let tunnel = service.tunnel.as_ref()?;
    let port = match tunnel.encap {
        Encap::Ipip => 0,
        Encap::Gue if addr.is_ipv4() => tunnel.gue_port,
        Encap::Gue => return None,
    };
    Some(fo_common::hc_mark(base, port))
}

/// Connect to `addr`, from a socket carrying `mark` when there is one.
pub async fn connect(addr: SocketAddr, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect(addr).await;
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket2::SockRef::from(&socket).set_mark(mark)?;
    socket.connect(addr).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_default_is_the_documented_range() {
        assert_eq!(
            fo_config::Node::DEFAULT_TUNNEL_CHECK_MARK,
            fo_common::HC_MARK_BASE
        );
    }
}
