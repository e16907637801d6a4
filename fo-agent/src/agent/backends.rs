//! From configured services to data-plane service specs: backends resolved to MACs
//! through the kernel's neighbour table, filtered by health, weighted by drains.
//!
//! - A backend that is down leaves the table (its slot is deactivated, only its flows
//!   move); if every backend of a service is down, all of them are kept (fail open).
//! - A drained backend (weight 0 in the config, or `fo-agent backend drain`) keeps its
//!   slot, so established flows stay, but gets no new flows.
//! - A backend whose MAC is unknown cannot be forwarded to and is left out until the
//!   periodic re-resolution finds it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use fo_config::{Config, ForwardMode, HashMode, Protocol, Service};
use tracing::warn;

use crate::dataplane::{BackendSpec, NatSpec, ServiceSpec};
use crate::health::Snapshot;
use crate::net::{self, link::LinkInfo};

/// Known backend MACs, by address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Neighbours(pub BTreeMap<IpAddr, [u8; 6]>);

impl Neighbours {
    /// Resolve `addrs` on `link`, each within `timeout`. Returns what resolved and the
    /// addresses that did not, with the reason.
    pub async fn resolve(
        handle: &rtnetlink::Handle,
        addrs: &[IpAddr],
        link: &LinkInfo,
        timeout: Duration,
    ) -> (Neighbours, Vec<(IpAddr, String)>) {
        let (found, failed) = net::neigh::resolve_many(handle, link.index, addrs, timeout).await;
        let failed = failed
            .into_iter()
            .map(|(a, e)| (a, e.to_string()))
            .collect();
        (Neighbours(found), failed)
    }
}

/// Every DSR backend address of the config, once (their MACs are needed).
pub fn backend_addrs(config: &Config) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = config
        .services
        .iter()
        .filter(|s| s.mode == ForwardMode::Dsr)
        .flat_map(|s| s.backends().iter().map(|b| b.address))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Keep backend MACs current, off the main loop: resolve the addresses now and
/// whenever they change, then every `period`; send every new result. Unresolved
/// backends are logged when they become unresolved, not on every round.
///
/// A backend that resolved once keeps its last MAC while the kernel has no entry for
/// it: the neighbour table is a cache, and a link flap flushes it whole. Dropping the
/// backends then would leave a node that takes over right after its link returns
/// with nothing to forward to until the next round (seen: 2.6 s of lost service in
/// the failover bench). A new MAC replaces the old one as soon as the kernel learns it;
/// whether the backend is alive is the health checks' call. One never resolved is
/// retried every [`RETRY_UNRESOLVED`] instead of every `period`.
pub async fn neighbour_task(
    handle: rtnetlink::Handle,
    link: LinkInfo,
    mut addrs: tokio::sync::watch::Receiver<Vec<IpAddr>>,
    out: tokio::sync::mpsc::Sender<Neighbours>,
    mut known: Neighbours,
    period: Duration,
    timeout: Duration,
) {
    let mut warned: BTreeSet<IpAddr> = BTreeSet::new();
    let mut wait = period;
    loop {
        tokio::select! {
            changed = addrs.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        let list = addrs.borrow_and_update().clone();
        let (mut now, failed) = Neighbours::resolve(&handle, &list, &link, timeout).await;
        let mut never_resolved = false;
        for (addr, why) in &failed {
            let kept = known.0.get(addr).copied();
            if let Some(mac) = kept {
                now.0.insert(*addr, mac);
            } else {
                never_resolved = true;
            }
            if warned.insert(*addr) {
                match kept {
                    Some(_) => warn!(backend = %addr, error = %why,
                        "backend not resolved now; keeping its last known MAC"),
                    None => warn!(backend = %addr, error = %why,
                        "backend not resolved; left out until it is"),
                }
            }
        }
        wait = if never_resolved {
            RETRY_UNRESOLVED
        } else {
            period
        };
        warned.retain(|a| failed.iter().any(|(f, _)| f == a));
        if now != known {
            known = now.clone();
            if out.send(now).await.is_err() {
                return;
            }
        }
    }
}

/// How soon a backend that never resolved is tried again.
pub const RETRY_UNRESOLVED: Duration = Duration::from_secs(1);

/// Runtime drains set with `fo-agent backend drain SERVICE BACKEND`.
pub type Drains = BTreeSet<(String, String)>;

/// How one service's backends are used now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub spec: ServiceSpec,
    /// Every backend is down: all are kept (fail open).
    pub fail_open: bool,
}

pub fn is_drained(service: &Service, backend: &fo_config::Backend, drains: &Drains) -> bool {
    backend.weight == 0 || drains.contains(&(service.name.clone(), backend.name.clone()))
}

/// The data plane's view of the configured services, given MACs, health and drains.
///
/// A NAT backend needs no MAC of its own: the program asks the kernel's FIB for the
/// next hop of every packet, so routed backends work; NAT backends are always
/// "resolved" here.
pub fn plans(
    config: &Config,
    link: &LinkInfo,
    neighbours: &Neighbours,
    health: &Snapshot,
    drains: &Drains,
) -> Vec<Plan> {
    config
        .services
        .iter()
        .map(|s| {
            let nat = s.mode == ForwardMode::Nat;
            let resolved: Vec<_> = s
                .backends()
                .iter()
                .filter(|b| nat || neighbours.0.contains_key(&b.address))
                .collect();
            let healthy: Vec<_> = resolved
                .iter()
                .copied()
                .filter(|b| health.backend_up(&s.name, &b.name).unwrap_or(true))
                .collect();
            let fail_open = !resolved.is_empty() && healthy.is_empty();
            let chosen = if fail_open { resolved } else { healthy };
            let backends = chosen
                .into_iter()
                .map(|b| BackendSpec {
                    addr: b.address,
                    port: b.port,
                    weight: if is_drained(s, b, drains) {
                        0
                    } else {
                        u32::from(b.weight)
                    },
                    mac: neighbours.0.get(&b.address).copied().unwrap_or_default(),
                    src_mac: link.mac,
                    ifindex: link.index,
                })
                .collect();
            let nat = nat.then(|| NatSpec {
                snat: config
                    .router(&s.router)
                    .map(|r| r.snat.clone())
                    .unwrap_or_default(),
            });
            Plan {
                spec: ServiceSpec {
                    vip: s.vip,
                    port: s.port,
                    proto: match s.protocol {
                        Protocol::Tcp => fo_common::PROTO_TCP,
                        Protocol::Udp => fo_common::PROTO_UDP,
                    },
                    hash_5tuple: s.hash == HashMode::FiveTuple,
                    backends,
                    nat,
                },
                fail_open,
            }
        })
        .collect()
}
