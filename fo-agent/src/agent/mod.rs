//! `fo-agent run`: the data plane, VIP ownership (VRRP, BGP or static), health checks,
//! gates, hooks, the control socket and metrics, wired together in one tokio process.
//!
//! One main loop owns the agent's state and serialises every change: signals,
//! control requests, health changes, neighbour refreshes and the watchdog tick.
//! Protocol timers live in the VRRP router tasks and are never delayed by it.

mod backends;
pub mod decap;
mod detach;
mod drill;
mod event_loop;
mod nat;
mod operator;
mod ownership;
mod reload;
mod requests;
mod start;
mod status;
mod tables;
mod tunnel;
mod tunnel_checks;
mod vlan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fo_config::{Config, XdpMode};
use fo_vrrp::FaultSource;

use crate::api::control;
use crate::bgp::Bgp;
use crate::dataplane::{Attach, LoadOptions, Origin, SharedPlane, XdpAttachMode};
use crate::health::Health;
use crate::net::{self, link::LinkInfo};
use crate::vrrp::Vrrp;
use backends::{Drains, Neighbours};
pub use detach::detach;
use operator::OperatorState;
pub use start::fd_budget;

/// Lease of a statically owned VIP: how long the data plane keeps answering ARP/ND
/// for it after the agent stops refreshing.
pub const STATIC_LEASE: Duration = Duration::from_secs(1);

pub fn load_options(config: &Config) -> LoadOptions {
    let n = &config.node;
    LoadOptions {
        pin_dir: n.bpf_dir.clone(),
        maglev_size: n.maglev_table_size,
        max_services: n.max_services,
        max_backends: n.max_backends,
        flow_table_size: n.flow_table_size,
        nat_table_size: n.nat_table_size,
    }
}

pub fn attach_of(config: &Config) -> Attach {
    Attach::Interface {
        name: config.node.interface.clone(),
        mode: match config.node.xdp_mode {
            XdpMode::Native => XdpAttachMode::Native,
            XdpMode::Generic => XdpAttachMode::Generic,
        },
    }
}

/// Everything the main loop owns, grouped by concern (a group's doc names the file
/// that mostly writes it); `status` reads them all.
struct Agent {
    /// The running config (replaced by `reload`).
    config: Config,
    loaded: Loaded,
    host: Host,
    xdp: Xdp,
    routers: Routers,
    operator: Operator,
    services: Services,
    api: Api,
    /// Connection-state sync, when `[node] sync` is set.
    sync: Option<crate::sync::NatSync>,
    /// Watchdog ticks so far (`event_loop`).
    ticks: u64,
}

/// Where the config came from and its reloads (`reload`).
struct Loaded {
    path: PathBuf,
    at: SystemTime,
    /// Reloads so far, and the last one's outcome.
    reloads: crate::api::status::ReloadStatus,
}

/// The interface the agent serves, and its netlink socket.
struct Host {
    handle: rtnetlink::Handle,
    link: LinkInfo,
}

/// The data plane and the program on the interface (`event_loop::check_dataplane`).
struct Xdp {
    plane: SharedPlane,
    origin: Origin,
    /// The program attached at start; another one on the interface counts as detached.
    prog_id: Option<u32>,
    attached: bool,
}

/// Who owns the VIPs, and what the agent last told them (`ownership`).
struct Routers {
    vrrp: Vrrp,
    /// Split-brain protection of the routers with a witness.
    fences: crate::fence::Fences,
    bgp: Bgp,
    /// VIP addresses of static routers on the interface (`vip_on_interface`).
    static_addresses: BTreeMap<String, net::addr::VipAddresses>,
    /// Last effective priority sent to each VRRP router.
    priorities: BTreeMap<String, u8>,
    /// Fault sources reported failing to each VRRP router.
    faults: BTreeMap<String, BTreeSet<FaultSource>>,
    /// The state each static and BGP router was last logged in (transition entries).
    states: BTreeMap<String, &'static str>,
}

/// What the operator set by hand (`requests`), kept in `state_file` (`operator`).
struct Operator {
    /// Routers demoted by the operator until `resume` (or, VRRP, `promote`).
    demoted: BTreeSet<String>,
    /// Backends drained by the operator until `enable`.
    drains: Drains,
    /// Where `demoted` and `drains` are saved (the `state_file` the agent started with).
    state_file: PathBuf,
    /// Entries of `state_file` for routers or backends the config lacks: saved again
    /// with the rest, never applied.
    unknown: OperatorState,
}

/// Health checks and backends, as written into the services (`backends`).
struct Services {
    health: Health,
    neighbours: Neighbours,
    /// Tells the neighbour task which addresses to keep resolved.
    backend_addrs: tokio::sync::watch::Sender<backends::Targets>,
    /// Services forwarding to all backends because none is healthy.
    fail_open: BTreeSet<String>,
}

/// The control socket and metrics endpoint (`requests`).
struct Api {
    /// Who may use the control socket; counts refusals.
    access: control::Access,
    /// The caps on control and metrics connections; count what they close.
    conns: crate::api::conns::Listeners,
    /// The NAT table's count by state, shared by every status and metrics request.
    nat_count: tables::NatCount,
    /// The flow table's count, shared by every status and metrics request.
    flow_count: tables::FlowCount,
    /// The way into the loop's own request channel: a drill makes the operator's
    /// requests through it (`drill`).
    requests: Option<tokio::sync::mpsc::Sender<control::Envelope>>,
    /// Set while a drill runs (`drill`).
    drill_running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Drills by router, for status and metrics (`drill`).
    drills: std::sync::Arc<std::sync::Mutex<BTreeMap<String, crate::api::drill::DrillTally>>>,
}

/// Run until SIGTERM or SIGINT. SIGHUP reloads the config at `config_path`.
pub async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    let (mut agent, tasks, inbox) = start::start(config, config_path).await?;
    let failure = event_loop::run(&mut agent, inbox, &tasks.lease).await?;
    event_loop::shutdown(agent, tasks, failure).await
}

fn all_vips(config: &Config) -> Vec<std::net::IpAddr> {
    config
        .routers
        .iter()
        .flat_map(|r| r.owned_addresses())
        .collect()
}
