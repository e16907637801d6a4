//! `mode = "tunnel"` services in data-plane terms: the outer source, encapsulation
//! and MTU of each ([`TunnelSpec`]), from the config and the backends' next hops.
//!
//! - Outer source: the configured `tunnel_source` prefix (the flow hash picks its host
//!   bits), else the route's preferred source toward the first resolved backend, fixed
//!   (the VIP when no backend has resolved: there is then nothing to send anyway).
//! - MTU: the configured `mtu`, else the smallest MTU of the interfaces the chosen
//!   backends' next hops are on. The data plane subtracts the tunnel's own headers.

use std::net::IpAddr;

use fo_common::{TUNNEL_MIN_MTU_V4, TUNNEL_MIN_MTU_V6};
use fo_config::{Config, Encap, ForwardMode, Service, Tunnel};
use tracing::{info, warn};

use super::backends::Hops;
use crate::dataplane::BackendSpec;
use crate::dataplane::tunnel::{self, SourcePrefix, TunnelSpec};

/// The MTU assumed when no next hop has resolved yet.
const FALLBACK_MTU: u32 = 1500;

/// The data plane's view of a tunnel service's tunnel.
pub fn spec(service: &Service, t: &Tunnel, backends: &[BackendSpec], hops: &Hops) -> TunnelSpec {
    let resolved = || backends.iter().filter_map(|b| hops.get(&b.addr));
    let (source, source_bits) = match t.source {
        Some(p) => (p.base, p.host_bits()),
        None => (
            resolved()
                .filter_map(|h| h.source)
                .find(|a| a.is_ipv4() == service.vip.is_ipv4())
                .unwrap_or(service.vip),
            0,
        ),
    };
    let mtu = t
        .mtu
        .or_else(|| resolved().map(|h| h.mtu).min())
        .unwrap_or(FALLBACK_MTU);
    let min = if service.vip.is_ipv4() {
        TUNNEL_MIN_MTU_V4
    } else {
        TUNNEL_MIN_MTU_V6
    };
    let mtu = u16::try_from(mtu).unwrap_or(u16::MAX).max(min);
    TunnelSpec {
        source,
        source_bits,
        encap: match t.encap {
            Encap::Ipip => tunnel::Encap::Ipip,
            Encap::Gue => tunnel::Encap::Gue { port: t.gue_port },
        },
        mtu,
    }
}

/// The outer source prefixes of `specs` (ICMP errors about tunnel packets come back to
/// them), once each.
pub fn source_prefixes<'a>(specs: impl Iterator<Item = &'a TunnelSpec>) -> Vec<SourcePrefix> {
    let mut out: Vec<SourcePrefix> = specs
        .map(|t| {
            let width: u8 = match t.source {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            };
            (t.source, width - t.source_bits)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Forwarding on the XDP interface for the families of the tunnel services: the
/// program relays a router's "fragmentation needed" / "packet too big" about a tunnel
/// packet to the client through `bpf_fib_lookup`, which refuses to route on an
/// interface that does not forward (the error would be passed, counted as
/// `tunnel_icmp`). IPv6 forwarding also stops the interface from taking router
/// advertisements: give the node a static IPv6 address and route.
pub fn enable_forwarding(config: &Config) {
    let tunnel = || {
        config
            .services
            .iter()
            .filter(|s| s.mode == ForwardMode::Tunnel)
    };
    let families = [
        ("ipv4", tunnel().any(|s| s.vip.is_ipv4())),
        ("ipv6", tunnel().any(|s| s.vip.is_ipv6())),
    ];
    for (family, wanted) in families {
        if !wanted {
            continue;
        }
        let path = format!(
            "/proc/sys/net/{family}/conf/{}/forwarding",
            config.node.interface
        );
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == "1" => {}
            _ => match std::fs::write(&path, "1") {
                Ok(()) => {
                    info!(%path, "tunnel services: forwarding enabled on the interface (ICMP errors from the path are relayed to clients)")
                }
                Err(e) => warn!(%path, error = %e,
                    "tunnel services need forwarding on the interface to relay the path's ICMP errors to clients; they are passed until it is on"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::route::NextHop;

    fn service(vip: &str) -> Service {
        let text = format!(
            "[node]\ninterface = \"eth0\"\n[[router]]\nname = \"r\"\nvrid = 1\nvips = [\"{vip}\"]\n[[service]]\nvip = \"{vip}\"\nport = 80\nmode = \"tunnel\"\nbackends = [{{ address = \"{}\" }}]\n",
            if vip.contains(':') {
                "2001:db8:2::21"
            } else {
                "10.2.0.21"
            }
        );
        fo_config::Config::parse(&text)
            .expect("config")
            .services
            .remove(0)
    }

    fn hop(source: &str, mtu: u32) -> NextHop {
        NextHop {
            gateway: Some("10.1.0.1".parse().unwrap()),
            ifindex: 3,
            ifname: "eth1".into(),
            src_mac: [2, 0, 0, 0, 0, 1],
            mac: [2, 0, 0, 0, 0, 2],
            mtu,
            source: Some(source.parse().unwrap()),
        }
    }

    fn backend(addr: &str) -> BackendSpec {
        BackendSpec {
            addr: addr.parse().unwrap(),
            port: 80,
            weight: 1,
            mac: [0; 6],
            src_mac: [0; 6],
            ifindex: 3,
        }
    }

    #[test]
    fn the_default_source_is_the_routes_and_the_mtu_the_next_hops() {
        let s = service("192.0.2.10");
        let t = s.tunnel.expect("tunnel");
        let hops: Hops = [("10.2.0.21".parse().unwrap(), hop("10.1.0.5", 1400))].into();
        let spec = spec(&s, &t, &[backend("10.2.0.21")], &hops);
        assert_eq!(spec.source, "10.1.0.5".parse::<IpAddr>().unwrap());
        assert_eq!((spec.source_bits, spec.mtu), (0, 1400));
        assert_eq!(spec.encap, tunnel::Encap::Ipip);
        assert_eq!(
            source_prefixes([&spec].into_iter()),
            vec![("10.1.0.5".parse().unwrap(), 32)]
        );
        // Nothing resolved: the VIP, 1500.
        let spec = super::spec(&s, &t, &[], &Hops::new());
        assert_eq!((spec.source, spec.mtu), (s.vip, 1500));
    }

    #[test]
    fn a_configured_prefix_and_mtu_win() {
        let mut s = service("192.0.2.10");
        let mut t = s.tunnel.take().expect("tunnel");
        t.source = Some(fo_config::SourcePrefix {
            base: "10.9.0.0".parse().unwrap(),
            len: 24,
        });
        t.mtu = Some(9000);
        t.encap = Encap::Gue;
        let hops: Hops = [("10.2.0.21".parse().unwrap(), hop("10.1.0.5", 1400))].into();
        let spec = spec(&s, &t, &[backend("10.2.0.21")], &hops);
        assert_eq!(
            (spec.source, spec.source_bits, spec.mtu),
            ("10.9.0.0".parse().unwrap(), 8, 9000)
        );
        assert_eq!(spec.encap, tunnel::Encap::Gue { port: 6080 });
        assert_eq!(
            source_prefixes([&spec, &spec].into_iter()),
            vec![("10.9.0.0".parse().unwrap(), 24)]
        );
    }
}
