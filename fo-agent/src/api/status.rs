//! What `fo-agent status` shows and `/metrics` exports: one snapshot of the agent,
//! assembled by the agent from its parts, serialised as JSON over the control socket.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub node: NodeStatus,
    pub routers: Vec<RouterStatus>,
    pub services: Vec<ServiceStatus>,
    pub checks: Vec<CheckStatus>,
    /// Data-plane counters by name (`fo_common::Counter::name`), summed over CPUs.
    pub xdp: BTreeMap<String, u64>,
    /// VRRP packets no router claimed, by reason ("vrid": a VRID no router has; "length":
    /// too short to carry one; "overflow": dropped by the kernel, the VRRP socket's buffer
    /// being full). `fo_vrrp_dropped_total{router=""}`.
    #[serde(default)]
    pub vrrp_unrouted_drops: BTreeMap<String, u64>,
    /// NAT connections in the table, by state (`syn`, `established`, `fin`, `closed`,
    /// `udp`); empty without NAT services.
    #[serde(default)]
    pub nat_connections: BTreeMap<String, u64>,
    /// Connection-state sync health; `None` when sync is off.
    #[serde(default)]
    pub sync: Option<crate::sync::SyncStatus>,
    /// Fill of the data plane's connection tables, by table (`flow`: the DSR/tunnel
    /// flow table, when such services exist; with NAT services, `nat`: the NAT
    /// connection table (TCP), `nat_udp`: the UDP flows, and `nat_embryonic`: the
    /// connections still in their handshake).
    #[serde(default)]
    pub tables: BTreeMap<String, TableFill>,
}

/// Entries in a data-plane table against its size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableFill {
    pub entries: u64,
    pub capacity: u64,
    /// Unix seconds of the walk that counted `entries` (walks are shared and reused
    /// for up to a second, see `agent::tables`).
    pub counted_at: f64,
    /// How long that walk took.
    pub walk_seconds: f64,
    /// Walks of this table made for status and metrics since the agent started.
    pub walks: u64,
}

/// Config reloads (SIGHUP or `fo-agent reload`) since the agent started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub succeeded: u64,
    /// Refused reloads: the running config stayed.
    pub failed: u64,
    /// Whether the last reload (or, before any, the start) succeeded.
    pub last_succeeded: bool,
    /// Unix seconds of the last refused reload.
    pub last_failure_at: Option<f64>,
    /// Why the last refused reload was refused.
    pub last_error: Option<String>,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            succeeded: 0,
            failed: 0,
            last_succeeded: true,
            last_failure_at: None,
            last_error: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub interface: String,
    pub xdp_mode: String,
    /// "loaded" (a new program on new maps), "adopted" (the pinned program and maps as
    /// they were) or "upgraded" (the pinned maps, with this build's program swapped in).
    pub dataplane: String,
    pub config: String,
    /// Seconds since the Unix epoch of the last successful (re)load.
    pub config_loaded_at: f64,
    pub pid: u32,
    /// Control socket connections refused since start, by reason.
    #[serde(default)]
    pub control_refused: BTreeMap<String, u64>,
    /// Control socket and metrics connections (`control`, `metrics`): open, cap, and
    /// closed by the agent by reason.
    #[serde(default)]
    pub connections: BTreeMap<String, crate::api::conns::ConnStats>,
    #[serde(default)]
    pub reloads: ReloadStatus,
    /// This build: `fo-agent --version`.
    #[serde(default)]
    pub version: String,
    /// `fo-agent drill` runs since start, by router.
    #[serde(default)]
    pub drills: BTreeMap<String, super::drill::DrillTally>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub name: String,
    /// "vrrp", "static" or "bgp".
    pub ownership: String,
    pub vrid: Option<u8>,
    /// "init", "backup", "master" or "fault".
    pub state: String,
    pub configured_priority: Option<u8>,
    pub effective_priority: Option<u8>,
    pub vips: Vec<IpAddr>,
    /// Whether this node serves the VIPs now (the data plane's ownership flag).
    pub owned: bool,
    /// Unix seconds since this node became master, if it is.
    pub master_since: Option<f64>,
    /// Who is master, as far as this node knows.
    pub master: Option<IpAddr>,
    /// Newest last.
    pub transitions: Vec<TransitionRecord>,
    pub adverts_received: u64,
    pub adverts_sent: u64,
    /// Dropped adverts by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Times this node, as Master, heard another Master (both masters at once).
    #[serde(default)]
    pub dual_master: u64,
    /// "hmac-sha256 key NNNNNNNN" (the key's ID, never the key) when adverts are
    /// authenticated with `auth_key_file`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Transitions by target state.
    pub transitions_total: BTreeMap<String, u64>,
    /// Gates failing now (this node may not become master while any is listed).
    pub gates_closed: Vec<String>,
    /// "demoted" or "promoted" while an operator override is in force.
    pub admin: Option<String>,
    /// Make before break: another node has taken the VIPs over and this one still forwards
    /// what reaches it (no ARP/ND answers) until the drain grace ends.
    #[serde(default)]
    pub draining: bool,
    /// A demote's handover: "in progress" (still master, advertising priority 0 until the
    /// peer is heard), or "no peer took over within N ms; still master".
    #[serde(default)]
    pub handover: Option<String>,
    /// Failing fault sources ("link", "dataplane", "gate:NAME", "track:NAME", "fenced: …"): the
    /// router is in fault while any is listed.
    #[serde(default)]
    pub faults: Vec<String>,
    /// Split-brain protection, when the router has a `witness`.
    #[serde(default)]
    pub fence: Option<FenceStatus>,
    /// `ownership = "bgp"`: the announcement and the daemon's sessions.
    pub bgp: Option<crate::bgp::BgpStatus>,
    /// VRRP: the configured advertisement interval, in seconds.
    #[serde(default)]
    pub advert_interval_seconds: Option<f64>,
    /// VRRP: every takeover since the agent started (the last ones are in
    /// `transitions`), as a histogram of `takeover_seconds`.
    #[serde(default)]
    pub takeovers: Option<Histogram>,
    /// Hook runs by hook (`master`, `backup`, `fault`, `notify`).
    #[serde(default)]
    pub hooks: BTreeMap<String, crate::hooks::HookStats>,
    /// Transitions whose hooks never ran: replaced by a newer transition while a hook
    /// ran (the hook queue is coalesced).
    #[serde(default)]
    pub hooks_coalesced: u64,
}

/// Observations in buckets, for `fo_takeover_seconds`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds, increasing; observations above the last are in `count` only.
    pub bounds: Vec<f64>,
    /// Observations in each bucket, not cumulative: `counts[i]` lie in
    /// (`bounds[i-1]`, `bounds[i]`]; one more entry for those above the last bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

// The fence's status types live with the fence, which owns that state; status assembles them.
pub use crate::fence::{FenceStatus, Reach};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub from: String,
    pub to: String,
    pub reason: String,
    /// Unix seconds.
    pub at: f64,
    /// For a takeover: seconds from master-down detection to the VIP being served.
    pub takeover_seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    /// No healthy backend: forwarding to all of them (fail open).
    pub fail_open: bool,
    pub backends: Vec<BackendStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// Configured weight; the weight in the table is 0 when drained or down.
    pub weight: u32,
    pub effective_weight: u32,
    /// None: no check configured.
    pub healthy: Option<bool>,
    /// The last check's result (why it failed, or what passed); None before the first
    /// check or without one.
    #[serde(default)]
    pub detail: Option<String>,
    pub drained: bool,
    /// Its MAC is known and it is in the data plane.
    pub resolved: bool,
    /// A tunnel backend's next hop as resolved now: `via GATEWAY dev IF (MAC) mtu N`,
    /// or `dev IF (MAC) mtu N` when on-link. None for other modes or unresolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub name: String,
    pub up: bool,
    pub detail: Option<String>,
}

/// `fo_vrrp_state` encoding of a state name.
pub fn state_code(state: &str) -> i64 {
    match state {
        "backup" => 1,
        "master" => 2,
        "fault" => 3,
        _ => 0,
    }
}
