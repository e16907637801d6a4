//! The operator's metrics beside the protocol's (build, reloads, hooks, takeovers,
//! backends' health and drains, table fill), and the histogram adapter for takeovers.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::{GaugeF64, Labels};
use crate::api::status::{Histogram, Status};

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

/// What an operator watches beside the protocol: the build, reloads, hooks, takeover
/// times, backends' health apart from their drain, and how full the tables are.
pub(super) fn operations(reg: &mut Registry, status: &Status) {
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
