//! OpenMetrics text of a [`Status`], with the names of the contract. Encoding is
//! `prometheus-client`'s: it gets types, escaping and `_total` right. (`exposition`
//! turns it into Prometheus' own text format for clients that ask for that.)

mod operations;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::status::{Status, state_code};
use operations::operations;

type Labels = Vec<(&'static str, String)>;
type GaugeF64 = Gauge<f64, AtomicU64>;

/// `fo_drill_total{router,result}` and `fo_drill_blackout_seconds{router,direction}`.
fn drills(reg: &mut Registry, status: &Status) {
    let total = Family::<Labels, Counter>::default();
    let blackout = Family::<Labels, GaugeF64>::default();
    for (router, t) in &status.node.drills {
        for (result, n) in &t.results {
            total
                .get_or_create(&vec![
                    ("router", router.clone()),
                    ("result", result.clone()),
                ])
                .inc_by(*n);
        }
        for (dir, s) in &t.last_blackout_seconds {
            blackout
                .get_or_create(&vec![
                    ("router", router.clone()),
                    ("direction", dir.clone()),
                ])
                .set(*s);
        }
    }
    reg.register(
        "fo_drill",
        "Drills (fo-agent drill) since the agent started, by result: passed, failed, refused",
        total,
    );
    reg.register(
        "fo_drill_blackout_seconds",
        "The last drill's longest silence in which neither node forwarded, per direction",
        blackout,
    );
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
    let draining = Family::<Labels, Gauge>::default();
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
        // The router's label and one more.
        let router_and = |k: &'static str, v: String| vec![("router", r.name.clone()), (k, v)];
        state.get_or_create(&l()).set(state_code(&r.state));
        owned.get_or_create(&l()).set(i64::from(r.owned));
        draining.get_or_create(&l()).set(i64::from(r.draining));
        if let Some(p) = r.effective_priority {
            priority.get_or_create(&l()).set(i64::from(p));
        }
        for (to, n) in &r.transitions_total {
            transitions
                .get_or_create(&router_and("to", to.clone()))
                .inc_by(*n);
        }
        if let Some(t) = r.transitions.iter().rev().find_map(|t| t.takeover_seconds) {
            failover.get_or_create(&l()).set(t);
        }
        adverts
            .get_or_create(&router_and("direction", "in".into()))
            .inc_by(r.adverts_received);
        adverts
            .get_or_create(&router_and("direction", "out".into()))
            .inc_by(r.adverts_sent);
        if let Some(f) = &r.fence {
            witness_up
                .get_or_create(&l())
                .set(i64::from(f.witness.reachable));
            fenced.get_or_create(&l()).set(i64::from(f.fenced));
            fences.get_or_create(&l()).inc_by(f.fences_total);
            for p in &f.peers {
                peer_up
                    .get_or_create(&router_and("peer", p.address.to_string()))
                    .set(i64::from(p.reachable));
            }
        }
        if let Some(b) = &r.bgp {
            for vip in &r.vips {
                bgp_announced
                    .get_or_create(&router_and("vip", vip.to_string()))
                    .set(i64::from(b.announced));
            }
            bgp_daemon_up
                .get_or_create(&l())
                .set(i64::from(b.daemon_up));
            for s in &b.sessions {
                bgp_session_up
                    .get_or_create(&router_and("session", s.name.clone()))
                    .set(i64::from(s.up));
            }
            for s in &b.bfd {
                bgp_bfd_up
                    .get_or_create(&router_and("peer", s.peer.clone()))
                    .set(i64::from(s.up));
            }
        }
        for (reason, n) in &r.dropped {
            dropped
                .get_or_create(&router_and("reason", reason.clone()))
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
        "fo_vip_draining",
        "1 while this node, having handed the router's VIPs over, still forwards what reaches it",
        draining,
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
    drills(&mut reg, status);
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

#[cfg(test)]
mod tests;
