//! From configured services to data-plane service specs: backends resolved to MACs
//! through the kernel's neighbour table, re-resolved periodically so a replaced
//! backend host (new MAC) is followed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use fo_config::{Config, ForwardMode, HashMode, Protocol};
use tracing::{info, warn};

use crate::dataplane::{BackendSpec, ServiceSpec};
use crate::net::{self, link::LinkInfo};

/// Known backend MACs, by address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Neighbours(pub BTreeMap<IpAddr, [u8; 6]>);

impl Neighbours {
    /// Resolve every backend of `config` on `link`. Backends that cannot be resolved
    /// within `timeout` are left out (and logged); the refresher retries them.
    pub async fn resolve_all(
        handle: &rtnetlink::Handle,
        config: &Config,
        link: &LinkInfo,
        timeout: Duration,
    ) -> Neighbours {
        let mut addrs: Vec<IpAddr> =
            config.services.iter().flat_map(|s| s.backends().iter().map(|b| b.address)).collect();
        addrs.sort();
        addrs.dedup();
        let lookups = addrs.iter().map(|&addr| async move {
            (addr, net::neigh::resolve(handle, link.index, addr, timeout).await)
        });
        let mut out = Neighbours::default();
        for (addr, result) in futures_util::future::join_all(lookups).await {
            match result {
                Ok(mac) => {
                    out.0.insert(addr, mac);
                }
                Err(e) => warn!(backend = %addr, error = %e, "backend not resolved; left out until it is"),
            }
        }
        out
    }
}

/// The data plane's view of the configured services, given the MACs known now.
pub fn specs(config: &Config, link: &LinkInfo, neighbours: &Neighbours) -> Vec<ServiceSpec> {
    config
        .services
        .iter()
        .filter(|s| s.mode == ForwardMode::Dsr)
        .map(|s| ServiceSpec {
            vip: s.vip,
            port: s.port,
            proto: match s.protocol {
                Protocol::Tcp => fo_common::PROTO_TCP,
                Protocol::Udp => fo_common::PROTO_UDP,
            },
            hash_5tuple: s.hash == HashMode::FiveTuple,
            backends: s
                .backends()
                .iter()
                .filter_map(|b| {
                    let mac = *neighbours.0.get(&b.address)?;
                    Some(BackendSpec {
                        addr: b.address,
                        port: b.port,
                        weight: u32::from(b.weight),
                        mac,
                        src_mac: link.mac,
                        ifindex: link.index,
                    })
                })
                .collect(),
        })
        .collect()
}

/// Log services whose mode this build does not forward yet.
pub fn warn_unsupported(config: &Config) {
    for s in &config.services {
        if s.mode == ForwardMode::Nat {
            warn!(service = %s.name, "mode = \"nat\" is not forwarded by this version; the service is skipped");
        }
    }
    if config.services.is_empty() {
        info!("no services configured: this node only answers ARP/ND for its VIPs");
    }
}
