//! OpenMetrics text of a [`Status`], with the names of the contract. Encoding is
//! `prometheus-client`'s: it gets types, escaping and `_total` right. (`exposition`
//! turns it into Prometheus' own text format for clients that ask for that.)

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::status::{Histogram, Status, state_code};

type Labels = Vec<(&'static str, String)>;
type GaugeF64 = Gauge<f64, AtomicU64>;

/// A histogram taken whole from a [`Histogram`] snapshot (prometheus-client's own
/// `Histogram` only grows by observing).
#[derive(Debug, Default)]
struct Snapshot(std::sync::OnceLock<Histogram>);

impl TypedMetric for Snapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Snapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let Some(h) = self.0.get() else {
            return Ok(());
        };
        // Per-bucket counts (the encoder makes them cumulative), ending with +Inf.
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(h.counts.iter().copied())
            .collect();
        encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Render every metric of the contract from one snapshot.
pub fn render(status: &Status) -> String {
    let mut reg = Registry::default();
    operations(&mut reg, status);
    let state = Family::<Labels, Gauge>::default();
    let transitions = Family::<Labels, Counter>::default();
    let priority = Family::<Labels, Gauge>::default();
    let failover = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let adverts = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    let dual_master = Family::<Labels, Counter>::default();
    let backend_up = Family::<Labels, Gauge>::default();
    let backend_packets = Family::<Labels, Counter>::default();
    let backend_bytes = Family::<Labels, Counter>::default();
    let xdp_actions = Family::<Labels, Counter>::default();
    let xdp_pass = Family::<Labels, Counter>::default();
    let check_up = Family::<Labels, Gauge>::default();
    let owned = Family::<Labels, Gauge>::default();
    let fail_open = Family::<Labels, Gauge>::default();
    let witness_up = Family::<Labels, Gauge>::default();
    let peer_up = Family::<Labels, Gauge>::default();
    let fenced = Family::<Labels, Gauge>::default();
    let fences = Family::<Labels, Counter>::default();
    let refused = Family::<Labels, Counter>::default();
    let bgp_announced = Family::<Labels, Gauge>::default();
    let bgp_daemon_up = Family::<Labels, Gauge>::default();
    let bgp_session_up = Family::<Labels, Gauge>::default();
    let bgp_bfd_up = Family::<Labels, Gauge>::default();
    let nat_connections = Family::<Labels, Gauge>::default();
    let sync_current = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    let sync_peer_up = Family::<Labels, Gauge>::default();
    let sync_lag = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let sync_gaps = Family::<Labels, Counter>::default();
    let sync_messages = Family::<Labels, Counter>::default();
    let sync_refused = Family::<Labels, Counter>::default();
    let sync_snapshot = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let sync_incomplete = Family::<Labels, Counter>::default();
    for (state, n) in &status.nat_connections {
        nat_connections
            .get_or_create(&vec![("state", state.clone())])
            .set(*n as i64);
    }
    if let Some(sy) = &status.sync {
        sync_current.set(i64::from(sy.current));
        for (reason, n) in &sy.refused_by {
            sync_refused
                .get_or_create(&vec![("reason", reason.clone())])
                .inc_by(*n);
        }
        sync_messages
            .get_or_create(&vec![("direction", "out".into())])
            .inc_by(sy.sent_messages);
        for p in &sy.peers {
            let l = vec![("peer", p.address.to_string())];
            sync_peer_up
                .get_or_create(&l)
                .set(i64::from(p.state == "in_sync"));
            if let Some(lag) = p.lag_ms {
                sync_lag.get_or_create(&l).set(lag / 1000.0);
            }
            sync_gaps.get_or_create(&l).inc_by(p.gaps);
            sync_incomplete
                .get_or_create(&l)
                .inc_by(p.incomplete_snapshots);
            if let Some(s) = &p.last_snapshot {
                sync_snapshot.get_or_create(&l).set(s.seconds);
            }
            sync_messages
                .get_or_create(&vec![
                    ("direction", "in".into()),
                    ("peer", p.address.to_string()),
                ])
                .inc_by(p.received_messages);
        }
    }

    for r in &status.routers {
        let l = || vec![("router", r.name.clone())];
        state.get_or_create(&l()).set(state_code(&r.state));
        owned.get_or_create(&l()).set(i64::from(r.owned));
        if let Some(p) = r.effective_priority {
            priority.get_or_create(&l()).set(i64::from(p));
        }
        for (to, n) in &r.transitions_total {
            transitions
                .get_or_create(&vec![("router", r.name.clone()), ("to", to.clone())])
                .inc_by(*n);
        }
        if let Some(t) = r.transitions.iter().rev().find_map(|t| t.takeover_seconds) {
            failover.get_or_create(&l()).set(t);
        }
        adverts
            .get_or_create(&vec![
                ("router", r.name.clone()),
                ("direction", "in".into()),
            ])
            .inc_by(r.adverts_received);
        adverts
            .get_or_create(&vec![
                ("router", r.name.clone()),
                ("direction", "out".into()),
            ])
            .inc_by(r.adverts_sent);
        if let Some(f) = &r.fence {
            witness_up
                .get_or_create(&l())
                .set(i64::from(f.witness.reachable));
            fenced.get_or_create(&l()).set(i64::from(f.fenced));
            fences.get_or_create(&l()).inc_by(f.fences_total);
            for p in &f.peers {
                peer_up
                    .get_or_create(&vec![
                        ("router", r.name.clone()),
                        ("peer", p.address.to_string()),
                    ])
                    .set(i64::from(p.reachable));
            }
        }
        if let Some(b) = &r.bgp {
            for vip in &r.vips {
                bgp_announced
                    .get_or_create(&vec![("router", r.name.clone()), ("vip", vip.to_string())])
                    .set(i64::from(b.announced));
            }
            bgp_daemon_up
                .get_or_create(&l())
                .set(i64::from(b.daemon_up));
            for s in &b.sessions {
                bgp_session_up
                    .get_or_create(&vec![
                        ("router", r.name.clone()),
                        ("session", s.name.clone()),
                    ])
                    .set(i64::from(s.up));
            }
            for s in &b.bfd {
                bgp_bfd_up
                    .get_or_create(&vec![("router", r.name.clone()), ("peer", s.peer.clone())])
                    .set(i64::from(s.up));
            }
        }
        for (reason, n) in &r.dropped {
            dropped
                .get_or_create(&vec![
                    ("router", r.name.clone()),
                    ("reason", reason.clone()),
                ])
                .inc_by(*n);
        }
        if r.ownership == "vrrp" {
            dual_master.get_or_create(&l()).inc_by(r.dual_master);
        }
    }
    // Packets no router claimed (unknown VRID, too short): router="".
    for (reason, n) in &status.vrrp_unrouted_drops {
        dropped
            .get_or_create(&vec![("router", String::new()), ("reason", reason.clone())])
            .inc_by(*n);
    }
    for s in &status.services {
        fail_open
            .get_or_create(&vec![("service", s.name.clone())])
            .set(i64::from(s.fail_open));
        for b in &s.backends {
            let l = vec![("service", s.name.clone()), ("backend", b.name.clone())];
            backend_up
                .get_or_create(&l)
                .set(i64::from(b.healthy.unwrap_or(true) && !b.drained));
            backend_packets.get_or_create(&l).inc_by(b.packets);
            backend_bytes.get_or_create(&l).inc_by(b.bytes);
        }
    }
    for (name, n) in &status.xdp {
        if ["aborted", "drop", "pass", "tx", "redirect"].contains(&name.as_str()) {
            xdp_actions
                .get_or_create(&vec![("action", name.clone())])
                .inc_by(*n);
        } else {
            xdp_pass
                .get_or_create(&vec![("event", name.clone())])
                .inc_by(*n);
        }
    }
    for (reason, n) in &status.node.control_refused {
        refused
            .get_or_create(&vec![("reason", reason.clone())])
            .inc_by(*n);
    }
    for c in &status.checks {
        check_up
            .get_or_create(&vec![("check", c.name.clone())])
            .set(i64::from(c.up));
    }

    reg.register(
        "fo_vrrp_state",
        "VRRP state: 0 init, 1 backup, 2 master, 3 fault",
        state,
    );
    reg.register(
        "fo_vrrp_transitions",
        "VRRP transitions by target state",
        transitions,
    );
    reg.register("fo_vrrp_priority", "Effective VRRP priority", priority);
    reg.register(
        "fo_vip_owned",
        "1 while this node serves the router's VIPs",
        owned,
    );
    reg.register(
        "fo_failover_seconds",
        "Last takeover: from master-down detection to the VIP served",
        failover,
    );
    reg.register(
        "fo_vrrp_adverts",
        "VRRP advertisements by direction",
        adverts,
    );
    reg.register(
        "fo_vrrp_dropped",
        "VRRP advertisements dropped, by reason",
        dropped,
    );
    reg.register(
        "fo_vrrp_dual_master",
        "Adverts of another master heard while master (both masters at once)",
        dual_master,
    );
    reg.register(
        "fo_service_fail_open",
        "1 while no backend of the service is healthy and all of them get traffic",
        fail_open,
    );
    reg.register(
        "fo_backend_up",
        "1 when the backend is healthy and not drained",
        backend_up,
    );
    reg.register(
        "fo_backend_packets",
        "Packets forwarded to the backend",
        backend_packets,
    );
    reg.register(
        "fo_backend_bytes",
        "Bytes forwarded to the backend",
        backend_bytes,
    );
    reg.register(
        "fo_xdp_actions",
        "XDP verdicts of the data plane",
        xdp_actions,
    );
    reg.register(
        "fo_xdp_events",
        "Data-plane events: replies sent, flow table use, reasons a packet was passed",
        xdp_pass,
    );
    reg.register("fo_check_up", "1 when the node check passes", check_up);
    reg.register(
        "fo_witness_up",
        "1 while the router's witness answers (routers with a witness)",
        witness_up,
    );
    reg.register(
        "fo_peer_up",
        "1 while the peer answers ICMP echo or sends adverts (routers with a witness)",
        peer_up,
    );
    reg.register(
        "fo_fenced",
        "1 while the router is fenced: neither peer nor witness answers, so it neither serves nor claims the VIPs",
        fenced,
    );
    reg.register(
        "fo_fences",
        "Times the router fenced itself since the agent started",
        fences,
    );
    reg.register(
        "fo_control_refused",
        "Control socket connections refused, by reason",
        refused,
    );
    let conns_open = Family::<Labels, Gauge>::default();
    let conns_limit = Family::<Labels, Gauge>::default();
    let conns_closed = Family::<Labels, Counter>::default();
    for (listener, c) in &status.node.connections {
        let l = vec![("listener", listener.clone())];
        conns_open
            .get_or_create(&l)
            .set(i64::try_from(c.open).unwrap_or(i64::MAX));
        conns_limit
            .get_or_create(&l)
            .set(i64::try_from(c.limit).unwrap_or(i64::MAX));
        for (reason, n) in &c.closed {
            conns_closed
                .get_or_create(&vec![
                    ("listener", listener.clone()),
                    ("reason", reason.clone()),
                ])
                .inc_by(*n);
        }
    }
    reg.register(
        "fo_api_connections",
        "Connections open now on the control socket or the metrics endpoint",
        conns_open,
    );
    reg.register(
        "fo_api_connections_limit",
        "How many connections the listener serves at once",
        conns_limit,
    );
    reg.register(
        "fo_api_connections_closed",
        "Connections the agent closed, by reason: full (every place busy), evicted (the oldest idle one, for a new one), timeout (no request in time), client_gone (the client left before its answer)",
        conns_closed,
    );
    reg.register(
        "fo_bgp_announced",
        "1 while the VIP is announced over BGP by this node (fo's route up in the daemon and a session established)",
        bgp_announced,
    );
    reg.register(
        "fo_bgp_daemon_up",
        "1 while the BGP daemon answers on its control socket",
        bgp_daemon_up,
    );
    reg.register(
        "fo_bgp_session_up",
        "1 while the daemon's BGP session is established",
        bgp_session_up,
    );
    reg.register(
        "fo_bgp_bfd_up",
        "1 while the daemon's BFD session to the peer is up",
        bgp_bfd_up,
    );
    reg.register(
        "fo_nat_connections",
        "NAT connections in the table, by TCP state (or udp)",
        nat_connections,
    );
    if status.sync.is_some() {
        reg.register(
            "fo_sync_current",
            "1 when the NAT table holds everything the peers sent (a takeover would not wait)",
            sync_current,
        );
        reg.register(
            "fo_sync_peer_up",
            "1 while the peer's connection stream is in sync",
            sync_peer_up,
        );
        reg.register(
            "fo_sync_lag_seconds",
            "Connection event on the peer to installed here, last update",
            sync_lag,
        );
        reg.register(
            "fo_sync_gaps",
            "Lost sync messages noticed (each answered by a snapshot)",
            sync_gaps,
        );
        reg.register("fo_sync_messages", "Sync datagrams", sync_messages);
        reg.register(
            "fo_sync_refused",
            "Sync datagrams refused, by reason: unknown_peer, auth, version, malformed, clock_skew, old_epoch, unverified (a replay, or once or twice at a restart), replay, rate_limited",
            sync_refused,
        );
        reg.register(
            "fo_sync_snapshot_seconds",
            "The last complete snapshot from the peer: from wanting it to its end",
            sync_snapshot,
        );
        reg.register(
            "fo_sync_snapshots_incomplete",
            "Snapshots from the peer that arrived incomplete (each asked again)",
            sync_incomplete,
        );
    }

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// What an operator watches beside the protocol: the build, reloads, hooks, takeover
/// times, backends' health apart from their drain, and how full the tables are.
fn operations(reg: &mut Registry, status: &Status) {
    reg.register(
        "fo_build",
        "The running fo-agent: version and data-plane ABI",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("abi", fo_common::ABI_VERSION.to_string()),
        ]),
    );

    let r = &status.node.reloads;
    let reloads = Family::<Labels, Counter>::default();
    reloads
        .get_or_create(&vec![("result", "success".into())])
        .inc_by(r.succeeded);
    reloads
        .get_or_create(&vec![("result", "failure".into())])
        .inc_by(r.failed);
    reg.register(
        "fo_config_reloads",
        "Config reloads (SIGHUP or fo-agent reload) by result; a failure is a refused reload, the running config stays",
        reloads,
    );
    let last_ok = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    last_ok.set(i64::from(r.last_succeeded));
    reg.register(
        "fo_config_last_reload_successful",
        "1 unless the last reload was refused",
        last_ok,
    );
    let success_at = GaugeF64::default();
    success_at.set(status.node.config_loaded_at);
    reg.register(
        "fo_config_last_reload_success_timestamp_seconds",
        "Unix time the running config was loaded (start or last successful reload)",
        success_at,
    );
    if let Some(at) = r.last_failure_at {
        let failure_at = GaugeF64::default();
        failure_at.set(at);
        reg.register(
            "fo_config_last_reload_failure_timestamp_seconds",
            "Unix time of the last refused reload",
            failure_at,
        );
    }

    let router_info = Family::<Labels, Gauge>::default();
    let interval = Family::<Labels, GaugeF64>::default();
    let takeovers = Family::<Labels, Snapshot>::default();
    let hook_runs = Family::<Labels, Counter>::default();
    let hook_failures = Family::<Labels, Counter>::default();
    let hook_timeouts = Family::<Labels, Counter>::default();
    let hooks_coalesced = Family::<Labels, Counter>::default();
    for rs in &status.routers {
        router_info
            .get_or_create(&vec![
                ("router", rs.name.clone()),
                ("ownership", rs.ownership.clone()),
            ])
            .set(1);
        let l = || vec![("router", rs.name.clone())];
        if let Some(s) = rs.advert_interval_seconds {
            interval.get_or_create(&l()).set(s);
        }
        if let Some(h) = &rs.takeovers {
            let _ = takeovers.get_or_create(&l()).0.set(h.clone());
        }
        if !rs.hooks.is_empty() {
            hooks_coalesced
                .get_or_create(&l())
                .inc_by(rs.hooks_coalesced);
        }
        for (hook, n) in &rs.hooks {
            let l = vec![("router", rs.name.clone()), ("hook", hook.clone())];
            hook_runs.get_or_create(&l).inc_by(n.runs);
            hook_failures.get_or_create(&l).inc_by(n.failures);
            hook_timeouts.get_or_create(&l).inc_by(n.timeouts);
        }
    }
    reg.register(
        "fo_router_info",
        "1 for each configured router, with its ownership (vrrp, static or bgp)",
        router_info,
    );
    reg.register(
        "fo_vrrp_advert_interval_seconds",
        "Configured VRRP advertisement interval; also the bound of a takeover (sync-then-claim waits at most this long)",
        interval,
    );
    reg.register(
        "fo_takeover_seconds",
        "VRRP takeovers since the agent started: from master-down detection to the VIP served",
        takeovers,
    );
    reg.register(
        "fo_hook_runs",
        "Hook runs (started or attempted), by router and hook",
        hook_runs,
    );
    reg.register(
        "fo_hook_failures",
        "Hook runs that exited non-zero or could not start",
        hook_failures,
    );
    reg.register(
        "fo_hook_timeouts",
        "Hook runs killed at their timeout",
        hook_timeouts,
    );
    reg.register(
        "fo_hook_coalesced",
        "Transitions whose hooks never ran: replaced by a newer transition while a hook ran, by router",
        hooks_coalesced,
    );

    let healthy = Family::<Labels, Gauge>::default();
    let drained = Family::<Labels, Gauge>::default();
    for s in &status.services {
        for b in &s.backends {
            let l = vec![("service", s.name.clone()), ("backend", b.name.clone())];
            healthy
                .get_or_create(&l)
                .set(i64::from(b.healthy.unwrap_or(true)));
            drained.get_or_create(&l).set(i64::from(b.drained));
        }
    }
    reg.register(
        "fo_backend_healthy",
        "1 when the backend's check passes (or it has none), drained or not",
        healthy,
    );
    reg.register(
        "fo_backend_drained",
        "1 while the operator drains the backend (fo-agent backend drain)",
        drained,
    );

    let entries = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    let walk = Family::<Labels, GaugeF64>::default();
    let walks = Family::<Labels, Counter>::default();
    for (table, t) in &status.tables {
        let l = vec![("table", table.clone())];
        entries
            .get_or_create(&l)
            .set(i64::try_from(t.entries).unwrap_or(i64::MAX));
        capacity
            .get_or_create(&l)
            .set(i64::try_from(t.capacity).unwrap_or(i64::MAX));
        walk.get_or_create(&l).set(t.walk_seconds);
        walks.get_or_create(&l).inc_by(t.walks);
    }
    reg.register(
        "fo_table_entries",
        "Entries in a data-plane connection table (flow: DSR and tunnel flows, an LRU; nat: NAT TCP connections; nat_udp: NAT UDP flows; nat_embryonic: NAT connections still in their handshake, an LRU)",
        entries,
    );
    reg.register(
        "fo_table_capacity",
        "Size of the table (flow: flow_table_size; nat: nat_table_size; nat_udp and nat_embryonic: a quarter of nat_table_size each)",
        capacity,
    );
    reg.register(
        "fo_table_walk_seconds",
        "How long the last count of the table took (a walk of the whole map, shared by concurrent scrapes)",
        walk,
    );
    reg.register(
        "fo_table_walks",
        "Walks of the table made to count it for status and metrics (one serves every request for up to a second)",
        walks,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::*;

    #[test]
    fn nat_and_sync_health_are_exported() {
        let mut status = Status::default();
        status.nat_connections.insert("established".into(), 200);
        status.sync = Some(crate::sync::SyncStatus {
            current: true,
            peers: vec![crate::sync::PeerStatus {
                address: "192.0.2.3".parse().unwrap(),
                state: "in_sync".into(),
                last_heard_seconds: Some(0.05),
                received_messages: 80,
                installed: 200,
                removed: 0,
                gaps: 1,
                lag_ms: Some(4.0),
                max_lag_ms: 6.0,
                incomplete_snapshots: 1,
                last_snapshot: Some(crate::sync::SnapshotFigures {
                    connections: 200,
                    datagrams: 7,
                    seconds: 0.25,
                    asks: 2,
                    stale_removed: 0,
                }),
            }],
            sent_messages: 70,
            refused: 3,
            refused_by: [("replay".to_string(), 2), ("auth".to_string(), 1)]
                .into_iter()
                .collect(),
            ..Default::default()
        });
        let text = render(&status);
        for needle in [
            "fo_nat_connections{state=\"established\"} 200",
            "fo_sync_current 1",
            "fo_sync_peer_up{peer=\"192.0.2.3\"} 1",
            "fo_sync_lag_seconds{peer=\"192.0.2.3\"} 0.004",
            "fo_sync_gaps_total{peer=\"192.0.2.3\"} 1",
            "fo_sync_messages_total{direction=\"in\",peer=\"192.0.2.3\"} 80",
            "fo_sync_messages_total{direction=\"out\"} 70",
            "fo_sync_refused_total{reason=\"replay\"} 2",
            "fo_sync_refused_total{reason=\"auth\"} 1",
            "fo_sync_snapshot_seconds{peer=\"192.0.2.3\"} 0.25",
            "fo_sync_snapshots_incomplete_total{peer=\"192.0.2.3\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(
            !render(&Status::default()).contains("fo_sync_"),
            "no sync metrics without sync"
        );
    }

    #[test]
    fn contract_names_are_exported() {
        let mut status = Status::default();
        status.routers.push(RouterStatus {
            name: "wazuh".into(),
            ownership: "vrrp".into(),
            state: "master".into(),
            dual_master: 3,
            effective_priority: Some(150),
            adverts_sent: 7,
            transitions_total: [("master".to_string(), 1)].into(),
            dropped: [("ttl".to_string(), 2)].into(),
            transitions: vec![TransitionRecord {
                takeover_seconds: Some(0.31),
                ..Default::default()
            }],
            fence: Some(FenceStatus {
                fenced: true,
                witness: Reach {
                    address: "192.0.2.254".parse().unwrap(),
                    reachable: false,
                    last_reply_seconds_ago: Some(0.4),
                },
                peers: vec![Reach {
                    address: "192.0.2.3".parse().unwrap(),
                    reachable: false,
                    last_reply_seconds_ago: None,
                }],
                fences_total: 1,
            }),
            ..Default::default()
        });
        status
            .node
            .control_refused
            .insert("not_root_or_group".into(), 2);
        status.routers.push(RouterStatus {
            name: "ingest".into(),
            ownership: "bgp".into(),
            state: "master".into(),
            vips: vec!["192.0.2.200".parse().unwrap()],
            bgp: Some(crate::bgp::BgpStatus {
                daemon_up: true,
                route_up: true,
                announced: true,
                sessions: vec![crate::bgp::SessionStatus {
                    name: "up1".into(),
                    info: "Established".into(),
                    up: true,
                }],
                bfd: vec![crate::bgp::BfdStatus {
                    peer: "10.0.0.1".into(),
                    state: "Down".into(),
                    up: false,
                }],
                ..Default::default()
            }),
            ..Default::default()
        });
        status.services.push(ServiceStatus {
            name: "events".into(),
            vip: "192.0.2.1".parse().unwrap(),
            port: 1514,
            protocol: "tcp".into(),
            mode: "dsr".into(),
            fail_open: false,
            backends: vec![BackendStatus {
                name: "b1".into(),
                address: "192.0.2.21".parse().unwrap(),
                port: 1514,
                weight: 1,
                effective_weight: 1,
                healthy: Some(true),
                detail: None,
                drained: false,
                resolved: true,
                packets: 5,
                bytes: 500,
            }],
        });
        status.checks.push(CheckStatus {
            name: "docker".into(),
            up: false,
            detail: None,
        });
        status.xdp.insert("tx".into(), 9);
        status.vrrp_unrouted_drops.insert("vrid".into(), 4);
        let text = render(&status);
        for needle in [
            "fo_vrrp_state{router=\"wazuh\"} 2",
            "fo_vrrp_transitions_total{router=\"wazuh\",to=\"master\"} 1",
            "fo_vrrp_priority{router=\"wazuh\"} 150",
            "fo_failover_seconds{router=\"wazuh\"} 0.31",
            "fo_vrrp_adverts_total{router=\"wazuh\",direction=\"out\"} 7",
            "fo_vrrp_dropped_total{router=\"wazuh\",reason=\"ttl\"} 2",
            "fo_vrrp_dropped_total{router=\"\",reason=\"vrid\"} 4",
            "fo_vrrp_dual_master_total{router=\"wazuh\"} 3",
            "fo_backend_up{service=\"events\",backend=\"b1\"} 1",
            "fo_backend_packets_total{service=\"events\",backend=\"b1\"} 5",
            "fo_backend_bytes_total{service=\"events\",backend=\"b1\"} 500",
            "fo_xdp_actions_total{action=\"tx\"} 9",
            "fo_check_up{check=\"docker\"} 0",
            "fo_service_fail_open{service=\"events\"} 0",
            "fo_witness_up{router=\"wazuh\"} 0",
            "fo_peer_up{router=\"wazuh\",peer=\"192.0.2.3\"} 0",
            "fo_fenced{router=\"wazuh\"} 1",
            "fo_fences_total{router=\"wazuh\"} 1",
            "fo_control_refused_total{reason=\"not_root_or_group\"} 2",
            "fo_bgp_announced{router=\"ingest\",vip=\"192.0.2.200\"} 1",
            "fo_bgp_daemon_up{router=\"ingest\"} 1",
            "fo_bgp_session_up{router=\"ingest\",session=\"up1\"} 1",
            "fo_bgp_bfd_up{router=\"ingest\",peer=\"10.0.0.1\"} 0",
        ] {
            assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
        }
    }

    #[test]
    fn operations_are_exported() {
        let mut status = Status::default();
        status.node.config_loaded_at = 1_700_000_000.5;
        status.node.reloads = ReloadStatus {
            succeeded: 3,
            failed: 1,
            last_succeeded: false,
            last_failure_at: Some(1_700_000_100.0),
            last_error: Some("bad".into()),
        };
        status.routers.push(RouterStatus {
            name: "wazuh".into(),
            ownership: "vrrp".into(),
            advert_interval_seconds: Some(0.1),
            takeovers: Some(Histogram {
                bounds: vec![0.01, 0.1],
                counts: vec![2, 1, 1],
                count: 4,
                sum: 3.5,
            }),
            hooks: [(
                "master".to_string(),
                crate::hooks::HookStats {
                    runs: 5,
                    failures: 2,
                    timeouts: 1,
                },
            )]
            .into(),
            hooks_coalesced: 4,
            ..Default::default()
        });
        status.services.push(ServiceStatus {
            name: "events".into(),
            vip: "192.0.2.1".parse().unwrap(),
            port: 1514,
            protocol: "tcp".into(),
            mode: "dsr".into(),
            fail_open: false,
            backends: vec![BackendStatus {
                name: "b1".into(),
                address: "192.0.2.21".parse().unwrap(),
                port: 1514,
                weight: 1,
                effective_weight: 0,
                healthy: Some(true),
                detail: None,
                drained: true,
                resolved: true,
                packets: 0,
                bytes: 0,
            }],
        });
        status.tables.insert(
            "flow".into(),
            TableFill {
                entries: 1200,
                capacity: 65536,
                counted_at: 0.0,
                walk_seconds: 0.002,
                walks: 1,
            },
        );
        status.node.connections.insert(
            "metrics".into(),
            crate::api::conns::ConnStats {
                open: 2,
                limit: 64,
                closed: [("evicted".to_string(), 7)].into(),
            },
        );
        let text = render(&status);
        for needle in [
            "fo_table_walks_total{table=\"flow\"} 1",
            "fo_api_connections{listener=\"metrics\"} 2",
            "fo_api_connections_limit{listener=\"metrics\"} 64",
            "fo_api_connections_closed_total{listener=\"metrics\",reason=\"evicted\"} 7",
            &format!(
                "fo_build_info{{version=\"{}\",abi=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                fo_common::ABI_VERSION
            ),
            "fo_config_reloads_total{result=\"success\"} 3",
            "fo_config_reloads_total{result=\"failure\"} 1",
            "fo_config_last_reload_successful 0",
            "fo_config_last_reload_success_timestamp_seconds 1700000000.5",
            "fo_config_last_reload_failure_timestamp_seconds 1700000100.0",
            "fo_router_info{router=\"wazuh\",ownership=\"vrrp\"} 1",
            "fo_vrrp_advert_interval_seconds{router=\"wazuh\"} 0.1",
            "fo_takeover_seconds_sum{router=\"wazuh\"} 3.5",
            "fo_takeover_seconds_count{router=\"wazuh\"} 4",
            "fo_takeover_seconds_bucket{le=\"0.01\",router=\"wazuh\"} 2",
            "fo_takeover_seconds_bucket{le=\"0.1\",router=\"wazuh\"} 3",
            "fo_takeover_seconds_bucket{le=\"+Inf\",router=\"wazuh\"} 4",
            "fo_hook_runs_total{router=\"wazuh\",hook=\"master\"} 5",
            "fo_hook_failures_total{router=\"wazuh\",hook=\"master\"} 2",
            "fo_hook_timeouts_total{router=\"wazuh\",hook=\"master\"} 1",
            "fo_hook_coalesced_total{router=\"wazuh\"} 4",
            "fo_backend_up{service=\"events\",backend=\"b1\"} 0",
            "fo_backend_healthy{service=\"events\",backend=\"b1\"} 1",
            "fo_backend_drained{service=\"events\",backend=\"b1\"} 1",
            "fo_table_entries{table=\"flow\"} 1200",
            "fo_table_capacity{table=\"flow\"} 65536",
            "fo_table_walk_seconds{table=\"flow\"} 0.002",
        ] {
            assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
        }
        assert!(
            !render(&Status::default()).contains("fo_config_last_reload_failure_timestamp_seconds"),
            "no failure time before a refused reload"
        );
    }
}
