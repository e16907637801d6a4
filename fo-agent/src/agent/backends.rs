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
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fo_config::{Config, ForwardMode, HashMode, Protocol, Service};
use tracing::{error, info, warn};

use super::Agent;
use crate::dataplane::{BackendSpec, NatSpec, ServiceSpec};
use crate::health::Snapshot;
use crate::net::{self, link::LinkInfo, route::NextHop};

/// Known backend MACs, by address (DSR: on the XDP interface), and the next hops of
/// tunnel backends (the FIB's route toward each, and that hop's MAC).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Neighbours(pub BTreeMap<IpAddr, [u8; 6]>, pub Hops);

/// Tunnel backends' next hops, by backend address.
pub type Hops = BTreeMap<IpAddr, NextHop>;

/// The backend addresses the neighbour task resolves.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Targets {
    /// DSR backends: on the XDP interface's segment.
    pub onlink: Vec<IpAddr>,
    /// Tunnel backends: anywhere routed.
    pub tunnel: Vec<IpAddr>,
}

impl Neighbours {
    /// Resolve `targets` (on-link ones on `link` or one of its 802.1Q VLAN devices, for
    /// backends of VIPs on a VLAN), each within `timeout`. Returns what resolved and the
    /// addresses that did not, with the reason.
    pub async fn resolve(
        handle: &rtnetlink::Handle,
        targets: &Targets,
        link: &LinkInfo,
        timeout: Duration,
    ) -> (Neighbours, Vec<(IpAddr, String)>) {
        let mut ifindexes = vec![link.index];
        match net::link::vlan_devices(handle, link.index).await {
            Ok(vlans) => ifindexes.extend(vlans),
            Err(e) => tracing::debug!(error = %e, "listing the interface's VLAN devices failed"),
        }
        let (found, failed) =
            net::neigh::resolve_many(handle, &ifindexes, &targets.onlink, timeout).await;
        let mut failed: Vec<_> = failed
            .into_iter()
            .map(|(a, e)| (a, e.to_string()))
            .collect();
        let (hops, hops_failed) = if targets.tunnel.is_empty() {
            (Hops::new(), Vec::new())
        } else {
            net::route::next_hops(handle, &targets.tunnel, timeout).await
        };
        failed.extend(hops_failed);
        (Neighbours(found, hops), failed)
    }
}

/// Every DSR backend address of the config, once (their MACs are needed), and every
/// tunnel backend address (their next hops are needed).
pub fn backend_addrs(config: &Config) -> Targets {
    Targets {
        onlink: backend_addrs_of(config, ForwardMode::Dsr),
        tunnel: backend_addrs_of(config, ForwardMode::Tunnel),
    }
}

/// Every backend address of the config's services in `mode`, once, in order.
pub fn backend_addrs_of(config: &Config, mode: ForwardMode) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = config
        .services
        .iter()
        .filter(|s| s.mode == mode)
        .flat_map(|s| s.backends().iter().map(|b| b.address))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// When the neighbour task resolves.
pub struct Rounds {
    /// Delay of the first round.
    pub first: Duration,
    /// Between rounds while every backend resolves.
    pub period: Duration,
    /// How long one round waits for a backend to answer.
    pub timeout: Duration,
}

/// Keep backend MACs current, off the main loop: resolve the addresses after `first`
/// and whenever they change, then every `period`; send every new result. What fails
/// to resolve is handled by [`Unresolved`].
pub async fn neighbour_task(
    handle: rtnetlink::Handle,
    link: LinkInfo,
    mut addrs: tokio::sync::watch::Receiver<Targets>,
    out: tokio::sync::mpsc::Sender<Neighbours>,
    mut known: Neighbours,
    timing: Rounds,
) {
    let Rounds {
        first,
        period,
        timeout,
    } = timing;
    let mut unresolved = Unresolved::default();
    let mut wait = first;
    loop {
        tokio::select! {
            changed = addrs.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
        let list = addrs.borrow_and_update().clone();
        let (mut now, failed) = Neighbours::resolve(&handle, &list, &link, timeout).await;
        let missing = unresolved.apply(&known, &mut now, &failed, Instant::now());
        wait = if missing { RETRY_UNRESOLVED } else { period };
        if now != known {
            known = now.clone();
            if out.send(now).await.is_err() {
                return;
            }
        }
    }
}

/// How soon a backend without a MAC is tried again.
pub const RETRY_UNRESOLVED: Duration = Duration::from_secs(1);

/// How long a backend that resolved before keeps its last MAC while it does not
/// resolve.
pub const KEEP_UNRESOLVED: Duration = Duration::from_secs(30);

/// Backends that did not resolve in the last round.
///
/// One that resolved before keeps its last MAC for [`KEEP_UNRESOLVED`]: the
/// neighbour table is a cache, and a link flap flushes it whole. Dropping the
/// backends at once would leave a node that takes over right after its link returns
/// with nothing to forward to until the next round (seen: 2.6 s of lost service in
/// the failover bench). A new MAC replaces the old one as soon as the kernel learns
/// it. Past the grace time the backend is left out, as one that never resolved: an
/// address that has stopped answering ARP for that long is gone, whether or not the
/// service has a health check. Each is logged when it starts failing and when it is
/// left out, not on every round.
#[derive(Debug, Default)]
pub struct Unresolved {
    since: BTreeMap<IpAddr, Instant>,
    left_out: BTreeSet<IpAddr>,
}

impl Unresolved {
    /// Fold one round's failures into `now` (the MACs that resolved): keep the
    /// last known MAC of those still within their grace time. Returns whether some
    /// backend is left without a MAC.
    pub fn apply(
        &mut self,
        known: &Neighbours,
        now: &mut Neighbours,
        failed: &[(IpAddr, String)],
        at: Instant,
    ) -> bool {
        let mut missing = false;
        for (addr, why) in failed {
            let first = !self.since.contains_key(addr);
            let since = *self.since.entry(*addr).or_insert(at);
            let fresh = at.duration_since(since) < KEEP_UNRESOLVED;
            let kept_hop = match known.1.get(addr) {
                Some(hop) if fresh => {
                    now.1.insert(*addr, hop.clone());
                    true
                }
                _ => false,
            };
            match known.0.get(addr) {
                _ if kept_hop => {
                    if first {
                        warn!(backend = %addr, error = %why, keep_s = KEEP_UNRESOLVED.as_secs(),
                            "tunnel backend's next hop not resolved now; keeping the last one for a while");
                    }
                }
                Some(mac) if fresh => {
                    now.0.insert(*addr, *mac);
                    if first {
                        warn!(backend = %addr, error = %why, keep_s = KEEP_UNRESOLVED.as_secs(),
                            "backend not resolved now; keeping its last known MAC for a while");
                    }
                }
                _ => {
                    missing = true;
                    if self.left_out.insert(*addr) {
                        warn!(backend = %addr, error = %why,
                            "backend not resolved; left out until it is");
                    }
                }
            }
        }
        let failing = |a: &IpAddr| failed.iter().any(|(f, _)| f == a);
        self.since.retain(|a, _| failing(a));
        self.left_out.retain(|a| failing(a));
        missing
    }
}

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
            let tunnel = s.mode == ForwardMode::Tunnel;
            let resolved: Vec<_> = s
                .backends()
                .iter()
                .filter(|b| match s.mode {
                    ForwardMode::Nat => true,
                    ForwardMode::Dsr => neighbours.0.contains_key(&b.address),
                    ForwardMode::Tunnel => neighbours.1.contains_key(&b.address),
                })
                .collect();
            let healthy: Vec<_> = resolved
                .iter()
                .copied()
                .filter(|b| health.backend_up(&s.name, &b.name).unwrap_or(true))
                .collect();
            let fail_open = !resolved.is_empty() && healthy.is_empty();
            let chosen = if fail_open { resolved } else { healthy };
            let backends: Vec<BackendSpec> = chosen
                .into_iter()
                .map(|b| {
                    let weight = if is_drained(s, b, drains) {
                        0
                    } else {
                        u32::from(b.weight)
                    };
                    // A tunnel backend's frames go to its next hop.
                    match neighbours.1.get(&b.address).filter(|_| tunnel) {
                        Some(hop) => BackendSpec {
                            addr: b.address,
                            port: b.port,
                            weight,
                            mac: hop.mac,
                            src_mac: hop.src_mac,
                            ifindex: hop.ifindex,
                        },
                        None => BackendSpec {
                            addr: b.address,
                            port: b.port,
                            weight,
                            mac: neighbours.0.get(&b.address).copied().unwrap_or_default(),
                            src_mac: link.mac,
                            ifindex: link.index,
                        },
                    }
                })
                .collect();
            let tunnel = s
                .tunnel
                .map(|t| super::tunnel::spec(s, &t, &backends, &neighbours.1));
            // The SNAT addresses of the VIP's family (IPv4 NAT, NAT66).
            let nat = nat.then(|| NatSpec {
                snat: config
                    .router(&s.router)
                    .map(|r| {
                        r.snat
                            .iter()
                            .filter(|a| a.is_ipv6() == s.vip.is_ipv6())
                            .copied()
                            .collect()
                    })
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
                    tunnel,
                },
                fail_open,
            }
        })
        .collect()
}

impl Agent {
    /// Write the services as health, drains and MACs say now.
    pub(super) fn apply_services(&mut self) -> anyhow::Result<()> {
        let snap = self.services.health.snapshot();
        let plans = plans(
            &self.config,
            &self.host.link,
            &self.services.neighbours,
            &snap,
            &self.operator.drains,
        );
        let fail_open: BTreeSet<String> = self
            .config
            .services
            .iter()
            .zip(&plans)
            .filter(|(_, p)| p.fail_open)
            .map(|(s, _)| s.name.clone())
            .collect();
        for s in fail_open.difference(&self.services.fail_open) {
            error!(service = %s, "no healthy backend: forwarding to all of them (fail open)");
        }
        for s in self.services.fail_open.difference(&fail_open) {
            info!(service = %s, "healthy backends again: fail-open over");
        }
        self.services.fail_open = fail_open;
        let specs: Vec<_> = plans.into_iter().map(|p| p.spec).collect();
        let sources =
            super::tunnel::source_prefixes(specs.iter().filter_map(|s| s.tunnel.as_ref()));
        let mut p = self.xdp.plane.lock();
        let p = &mut *p;
        // Before the services: ICMP errors about a new service's packets are relayed
        // from its first packet on.
        p.dp.set_tunnel_sources(&sources)
            .context("writing the tunnel source prefixes")?;
        let summary = p
            .table
            .apply(&mut p.dp, &specs)
            .context("writing services to the data plane")?;
        if summary != Default::default() {
            info!(?summary, "services applied");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn addr() -> IpAddr {
        "192.0.2.21".parse().expect("address")
    }

    fn failed() -> Vec<(IpAddr, String)> {
        vec![(addr(), "no neighbour entry after 3000 ms".to_string())]
    }

    fn known() -> Neighbours {
        Neighbours([(addr(), MAC)].into_iter().collect(), Hops::new())
    }

    #[test]
    fn a_known_backend_keeps_its_mac_within_the_grace_time_then_is_left_out() {
        let mut u = Unresolved::default();
        let t0 = Instant::now();
        let mut now = Neighbours::default();
        assert!(!u.apply(&known(), &mut now, &failed(), t0));
        assert_eq!(now.0.get(&addr()), Some(&MAC), "kept at the first failure");
        // Still failing just before the grace time ends: kept.
        let mut now = Neighbours::default();
        let late = t0 + KEEP_UNRESOLVED - Duration::from_millis(1);
        assert!(!u.apply(&known(), &mut now, &failed(), late));
        assert_eq!(now.0.get(&addr()), Some(&MAC));
        // Past it: left out, and retried soon.
        let mut now = Neighbours::default();
        assert!(u.apply(&known(), &mut now, &failed(), t0 + KEEP_UNRESOLVED));
        assert!(now.0.is_empty(), "left out after the grace time: {now:?}");
    }

    #[test]
    fn a_backend_that_never_resolved_is_missing_at_once() {
        let mut u = Unresolved::default();
        let mut now = Neighbours::default();
        assert!(u.apply(&Neighbours::default(), &mut now, &failed(), Instant::now()));
        assert!(now.0.is_empty());
    }

    #[test]
    fn resolving_again_restarts_the_grace_time() {
        let mut u = Unresolved::default();
        let t0 = Instant::now();
        let mut now = Neighbours::default();
        u.apply(&known(), &mut now, &failed(), t0);
        // A round where it resolved: no failures.
        let mut now = known();
        u.apply(&known(), &mut now, &[], t0 + Duration::from_secs(20));
        // Failing again 20 s later: a new grace time, so kept.
        let mut now = Neighbours::default();
        let t1 = t0 + KEEP_UNRESOLVED + Duration::from_secs(1);
        assert!(!u.apply(&known(), &mut now, &failed(), t1));
        assert_eq!(now.0.get(&addr()), Some(&MAC));
    }

    #[test]
    fn a_tunnel_backend_keeps_its_next_hop_within_the_grace_time() {
        let hop = crate::net::route::NextHop {
            gateway: Some("192.0.2.1".parse().expect("gateway")),
            ifindex: 2,
            ifname: "eth0".into(),
            src_mac: MAC,
            mac: [2, 0, 0, 0, 0, 9],
            mtu: 1500,
            source: None,
        };
        let known = Neighbours(BTreeMap::new(), [(addr(), hop.clone())].into());
        let mut u = Unresolved::default();
        let t0 = Instant::now();
        let mut now = Neighbours::default();
        assert!(!u.apply(&known, &mut now, &failed(), t0));
        assert_eq!(now.1.get(&addr()), Some(&hop), "kept at the first failure");
        assert!(
            now.0.is_empty(),
            "a tunnel backend gets no on-link MAC: {now:?}"
        );
        let mut now = Neighbours::default();
        assert!(u.apply(&known, &mut now, &failed(), t0 + KEEP_UNRESOLVED));
        assert!(now.1.is_empty(), "left out after the grace time: {now:?}");
    }
}
