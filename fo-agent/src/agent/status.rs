//! The status snapshot, assembled from the agent's parts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use fo_config::Ownership;

use super::Agent;
use super::backends::is_drained;
use crate::api::status::{
    BackendStatus, CheckStatus, Histogram, NodeStatus, RouterStatus, ServiceStatus, Status,
    TableFill, TransitionRecord,
};
use crate::dataplane::Origin;
use crate::health::{Target, priority};

fn unix(t: SystemTime) -> f64 {
    crate::clock::since_unix_epoch(t).as_secs_f64()
}

/// NAT connections by state (UDP flows and embryonic ones included), and how many are
/// UDP flows and embryonic, read through new handles on the pinned table: one map walk
/// in batches, counted as it reads, so never under the data plane's lock (router tasks and the lease task need it)
/// and never on the runtime's threads. `None` if the table cannot be read.
pub(super) fn nat_connections(pin_dir: &std::path::Path) -> Option<NatConnections> {
    let counts = crate::dataplane::nat::NatTable::open(pin_dir).and_then(|t| t.counts());
    match counts {
        Ok(counts) => Some(NatConnections {
            connections: counts.connections(),
            udp: counts.udp,
            embryonic: counts.embryonic,
            by_state: counts
                .by_state
                .into_iter()
                .map(|(state, n)| (crate::dataplane::nat::state_name(state).to_string(), n))
                .fold(BTreeMap::new(), |mut out, (name, n)| {
                    *out.entry(name).or_default() += n;
                    out
                }),
        }),
        Err(e) => {
            tracing::debug!(error = %crate::dataplane::error_chain(&e), "NAT table walk");
            None
        }
    }
}

/// One count of the NAT table, for status and metrics.
#[derive(Clone, Debug, Default)]
pub struct NatConnections {
    /// By state name, UDP flows and embryonic connections included (`nat_connections`
    /// of the status).
    pub by_state: BTreeMap<String, u64>,
    /// In `NAT_FWD` (the `nat` table: TCP, sized by `nat_table_size`).
    pub connections: u64,
    /// UDP flows (the `nat_udp` table).
    pub udp: u64,
    /// Not yet past their handshake (the `nat_embryonic` table).
    pub embryonic: u64,
}

fn takeover_histogram(t: &crate::vrrp::driver::TakeoverBuckets) -> Histogram {
    Histogram {
        bounds: crate::vrrp::driver::TAKEOVER_BOUNDS.to_vec(),
        counts: t.counts.to_vec(),
        count: t.count,
        sum: t.sum_ns as f64 / 1e9,
    }
}

/// A table's fill from a (shared) count of its `entries`.
pub(super) fn table_fill<T>(
    entries: u64,
    c: &super::tables::Counted<T>,
    capacity: u32,
    walks: u64,
) -> TableFill {
    TableFill {
        entries,
        capacity: u64::from(capacity),
        counted_at: c.at_unix,
        walk_seconds: c.took.as_secs_f64(),
        walks,
    }
}

/// Counts by a static name, as status carries them.
fn by_name(counts: &BTreeMap<&'static str, u64>) -> BTreeMap<String, u64> {
    counts.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// The state of a router no VRRP driver speaks for (BGP, static ownership): master
/// while it owns its route or VIP, else backup, or fault while a gate is closed.
fn state_without_vrrp(owned: bool, gates_closed: &[String]) -> &'static str {
    if owned {
        "master"
    } else if gates_closed.is_empty() {
        "backup"
    } else {
        "fault"
    }
}

pub(super) fn assemble(agent: &Agent) -> Status {
    let snap = agent.services.health.snapshot();
    let plane = agent.xdp.plane.lock();
    let mut status = Status {
        node: NodeStatus {
            interface: agent.host.link.name.clone(),
            xdp_mode: format!("{:?}", agent.config.node.xdp_mode).to_lowercase(),
            dataplane: match agent.xdp.origin {
                Origin::Loaded => "loaded",
                Origin::Adopted => "adopted",
                Origin::Upgraded => "upgraded",
            }
            .to_string(),
            config: agent.loaded.path.display().to_string(),
            config_loaded_at: unix(agent.loaded.at),
            pid: std::process::id(),
            control_refused: agent.api.access.refused(),
            connections: agent.api.conns.stats(),
            reloads: agent.loaded.reloads.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            drills: crate::locks::lock(&agent.api.drills).clone(),
        },
        ..Default::default()
    };

    for r in &agent.config.routers {
        let owned = r.vips.first().is_some_and(|v| plane.owns(*v));
        let gates_closed: Vec<String> = priority::closed_gates(&r.gates, &snap)
            .into_iter()
            .map(String::from)
            .collect();
        let mut rs = RouterStatus {
            name: r.name.clone(),
            ownership: format!("{:?}", r.ownership_kind()).to_lowercase(),
            vips: r.vips.clone(),
            owned,
            gates_closed,
            ..Default::default()
        };
        match (&r.ownership, agent.routers.vrrp.router(&r.name)) {
            (Ownership::Vrrp(v), Some(h)) => {
                let s = h.status();
                rs.vrid = Some(v.vrid);
                rs.state = s.state.status_name().to_string();
                rs.configured_priority = Some(s.configured_priority);
                rs.effective_priority = Some(s.effective_priority);
                rs.master_since = s.master_since.map(unix);
                rs.master = s.master;
                rs.admin = match s.admin {
                    fo_vrrp::Admin::None => None,
                    fo_vrrp::Admin::Promoted => Some("promoted".into()),
                    fo_vrrp::Admin::Demoted => Some("demoted".into()),
                };
                rs.transitions = s
                    .history
                    .iter()
                    .map(|t| TransitionRecord {
                        from: t.from.status_name().into(),
                        to: t.to.status_name().into(),
                        reason: t.reason.as_str().into(),
                        at: unix(t.at),
                        takeover_seconds: t.takeover.map(|d| d.as_secs_f64()),
                    })
                    .collect();
                rs.dual_master = s.stats.dual_master;
                rs.auth = s.auth.clone();
                rs.faults = s.faults.iter().cloned().collect();
                rs.draining = s.draining;
                rs.handover = s.handover.clone();
                rs.fence = agent.routers.fences.status(&r.name);
                rs.adverts_received = s.stats.adverts_in;
                rs.adverts_sent = s.stats.adverts_out;
                rs.dropped = by_name(&s.stats.drops);
                rs.transitions_total = by_name(&s.stats.transitions);
                rs.advert_interval_seconds = Some(v.advert_interval.as_secs_f64());
                rs.takeovers = Some(takeover_histogram(&s.stats.takeovers));
                rs.hooks = s.hooks.clone();
                rs.hooks_coalesced = s.hooks_coalesced;
            }
            (Ownership::Bgp(_), _) => {
                let b = agent.routers.bgp.status(&r.name);
                rs.owned = b.as_ref().is_some_and(|b| b.route_up);
                rs.state = state_without_vrrp(rs.owned, &rs.gates_closed).into();
                if agent.operator.demoted.contains(&r.name) {
                    rs.admin = Some("demoted".into());
                }
                rs.bgp = b;
            }
            _ => {
                rs.state = state_without_vrrp(owned, &rs.gates_closed).into();
            }
        }
        status.routers.push(rs);
    }

    status.vrrp_unrouted_drops = agent
        .routers
        .vrrp
        .unrouted_drops()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

    let slots = plane.table.slots();
    for s in &agent.config.services {
        let proto = match s.protocol {
            fo_config::Protocol::Tcp => fo_common::PROTO_TCP,
            fo_config::Protocol::Udp => fo_common::PROTO_UDP,
        };
        let backends = s
            .backends()
            .iter()
            .map(|b| {
                let slot = slots.iter().find(|x| {
                    x.vip == s.vip
                        && x.port == s.port
                        && x.proto == proto
                        && x.backend == b.address
                        && x.backend_port == b.port
                });
                let stats = slot
                    .and_then(|x| plane.dp.backend_stats(x.slot).ok())
                    .unwrap_or_default();
                BackendStatus {
                    name: b.name.clone(),
                    address: b.address,
                    port: b.port,
                    weight: u32::from(b.weight),
                    effective_weight: slot.map_or(0, |x| x.weight),
                    healthy: snap.backend_up(&s.name, &b.name),
                    detail: snap
                        .get(&Target::backend(s.name.clone(), b.name.clone()))
                        .and_then(|t| t.last.as_ref().map(|l| l.detail.clone())),
                    drained: is_drained(s, b, &agent.operator.drains),
                    // NAT backends need no MAC of their own (the FIB gives the next hop).
                    resolved: match s.mode {
                        fo_config::ForwardMode::Nat => true,
                        fo_config::ForwardMode::Dsr => {
                            agent.services.neighbours.0.contains_key(&b.address)
                        }
                        fo_config::ForwardMode::Tunnel => {
                            agent.services.neighbours.1.contains_key(&b.address)
                        }
                    },
                    next_hop: (s.mode == fo_config::ForwardMode::Tunnel)
                        .then(|| agent.services.neighbours.1.get(&b.address))
                        .flatten()
                        .map(crate::net::route::NextHop::describe),
                    packets: stats.packets,
                    bytes: stats.bytes,
                }
            })
            .collect();
        status.services.push(ServiceStatus {
            name: s.name.clone(),
            vip: s.vip,
            port: s.port,
            protocol: s.protocol.as_str().to_string(),
            mode: s.mode.as_str().to_string(),
            fail_open: agent.services.fail_open.contains(&s.name),
            backends,
        });
    }

    for c in &agent.config.checks {
        let t = snap.get(&Target::check(c.name.clone()));
        status.checks.push(CheckStatus {
            name: c.name.clone(),
            up: t.is_some_and(|t| t.up),
            detail: t.and_then(|t| t.last.as_ref().map(|l| l.detail.clone())),
        });
    }
    if let Ok(counters) = plane.dp.counters() {
        status.xdp = counters
            .into_iter()
            .map(|(c, n)| (c.name().to_string(), n))
            .collect();
    }
    status.sync = agent.sync.as_ref().map(crate::sync::NatSync::status);
    status
}
