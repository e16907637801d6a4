//! Probes through the tunnel: the mark a tunnel service's backend probe carries, and
//! the marked connect. The load balancer's TC egress program (`fo-hc`, attached by
//! the agent's data plane) encapsulates packets with such a mark as the XDP program
//! encapsulates the service's clients' packets, so the probe reaches the backend only
//! through its decapsulation.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use fo_config::{Encap, ForwardMode, Service};
use tokio::net::{TcpSocket, TcpStream};

/// Whether the encapsulation program is on the node's interface (the agent says so
/// after attaching it; on a kernel without tcx, before Linux 6.6, it cannot be, and
/// tunnel services' probes go direct, unmarked, and say nothing of the tunnel).
static ENCAPSULATION: AtomicBool = AtomicBool::new(true);

/// Record whether the health-check encapsulation is attached (see [`tunnel_mark`]).
pub fn set_encapsulation(attached: bool) {
    ENCAPSULATION.store(attached, Ordering::Relaxed);
}

/// The `SO_MARK` of the probes of `service`'s backend at `addr`, in the range at
/// `base` (`tunnel_check_mark`): `None` for a service
/// that is not in tunnel mode, for GUE to an IPv6 backend (the encapsulation
/// would need a UDP checksum over the whole packet; those probes go direct), and when
/// the encapsulation could not be attached ([`set_encapsulation`]).
pub fn tunnel_mark(service: &Service, addr: IpAddr, base: u32) -> Option<u32> {
    if service.mode != ForwardMode::Tunnel || !ENCAPSULATION.load(Ordering::Relaxed) {
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

    #[test]
    fn probes_are_marked_only_while_the_encapsulation_is_attached() {
        let config = fo_config::Config::parse(
            "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nownership = \"static\"\n\
             vips = [\"192.0.2.10\"]\n\n[[service]]\nvip = \"192.0.2.10\"\nport = 80\n\
             mode = \"tunnel\"\nbackends = [{ address = \"10.1.0.21\" }]\n",
        )
        .expect("valid");
        let service = &config.services[0];
        let addr = service.backends[0].address;
        let base = fo_common::HC_MARK_BASE;
        // The only test that changes the flag; it leaves it as it found it (attached).
        assert_eq!(super::tunnel_mark(service, addr, base), Some(base));
        super::set_encapsulation(false);
        let unattached = super::tunnel_mark(service, addr, base);
        super::set_encapsulation(true);
        assert_eq!(
            unattached, None,
            "no encapsulation: the probe goes unmarked"
        );
        assert_eq!(super::tunnel_mark(service, addr, base), Some(base));
    }
}
