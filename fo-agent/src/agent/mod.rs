//! `fo-agent run`: the data plane, VIP ownership (VRRP, BGP or static), health checks,
//! gates, hooks, the control socket and metrics, wired together in one tokio process.
//!
//! One main loop owns the agent's state and serialises every change: signals,
//! control requests, health changes, neighbour refreshes and the watchdog tick.
//! Protocol timers live in the VRRP router tasks and are never delayed by it.

mod backends;
mod detach;
mod event_loop;
mod nat;
mod operator;
mod ownership;
mod reload;
mod requests;
mod start;
mod status;
mod tables;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use fo_config::{Config, Ownership, XdpMode};
use fo_vrrp::FaultSource;
use tokio::sync::mpsc;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::api::control::{self, Envelope, Request, Response};
use crate::bgp::Bgp;
use crate::dataplane::{
    Attach, Dataplane, LoadOptions, Origin, ServiceTable, SharedPlane, XdpAttachMode,
};
use crate::health::{self, Health};
use crate::net::{self, link::LinkInfo};
use crate::sdnotify;
use crate::vrrp::Vrrp;
use backends::{Drains, Neighbours};
pub use detach::detach;
use event_loop::stop_timeouts;
use operator::OperatorState;
use ownership::initial_inputs;
use start::check_fd_limit;
pub use start::fd_budget;

/// Lease of a statically owned VIP: how long the data plane keeps answering ARP/ND
/// for it after the agent stops refreshing.
pub const STATIC_LEASE: Duration = Duration::from_secs(1);
/// How long BIRD gets to confirm the withdrawal of BGP-announced VIPs on shutdown.
const BGP_WITHDRAW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long VRRP routers get to send their priority-0 adverts and release their VIPs,
/// beyond their last hooks' `hooks.timeout` (see [`stop_timeouts`]).
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);
/// How long to wait for a backend's MAC before leaving it out for now.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often backend MACs are checked again.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);
/// How often the XDP attachment is verified (and systemd's watchdog fed, at most this
/// far apart).
const TICK: Duration = Duration::from_secs(1);
/// NAT next hops are prodded every this many ticks.
const NAT_PROD_TICKS: u64 = 5;

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

/// Everything the main loop owns.
struct Agent {
    config: Config,
    config_path: PathBuf,
    loaded_at: SystemTime,
    handle: rtnetlink::Handle,
    link: LinkInfo,
    plane: SharedPlane,
    origin: Origin,
    prog_id: Option<u32>,
    vrrp: Vrrp,
    /// Split-brain protection of the routers with a witness.
    fences: crate::fence::Fences,
    /// Who may use the control socket; counts refusals.
    access: control::Access,
    /// The caps on control and metrics connections; count what they close.
    conns: crate::api::conns::Listeners,
    bgp: Bgp,
    /// Routers demoted by the operator until `resume` (or, VRRP, `promote`); kept in
    /// `state_file` with the drains.
    demoted: BTreeSet<String>,
    health: Health,
    neighbours: Neighbours,
    /// Tells the neighbour task which addresses to keep resolved.
    backend_addrs: tokio::sync::watch::Sender<Vec<std::net::IpAddr>>,
    /// Backends drained by the operator until `enable`.
    drains: Drains,
    /// Where `demoted` and `drains` are saved (the `state_file` the agent started with).
    state_file: PathBuf,
    /// Entries of `state_file` for routers or backends the config lacks: saved again
    /// with the rest, never applied.
    operator_unknown: OperatorState,
    /// Services forwarding to all backends because none is healthy.
    fail_open: BTreeSet<String>,
    /// Last effective priority sent to each VRRP router.
    priorities: BTreeMap<String, u8>,
    /// Fault sources reported failing to each VRRP router.
    faults: BTreeMap<String, BTreeSet<FaultSource>>,
    dataplane_attached: bool,
    /// VIP addresses of static routers on the interface (`vip_on_interface`).
    static_addresses: BTreeMap<String, net::addr::VipAddresses>,
    ticks: u64,
    /// Connection-state sync, when `[node] sync` is set.
    sync: Option<crate::sync::NatSync>,
    /// The NAT table's count by state, shared by every status and metrics request.
    nat_count: tables::NatCount,
    /// The flow table's count, shared by every status and metrics request.
    flow_count: tables::FlowCount,
    /// Reloads so far, and the last one's outcome.
    reloads: crate::api::status::ReloadStatus,
    /// The state each static and BGP router was last logged in (transition entries).
    ownership_states: BTreeMap<String, &'static str>,
}

/// Run until SIGTERM or SIGINT. SIGHUP reloads the config at `config_path`.
pub async fn run(config: Config, config_path: &Path) -> anyhow::Result<()> {
    if let Some(problem) = crate::bgp::unsupported(&config).into_iter().next() {
        bail!("{problem}");
    }
    // A check whose TLS files cannot be used is down from its first probe, with the
    // reason in its status; the agent starts all the same. (`check` and `reload` refuse
    // such a config; refusing here would end HA over one check: a certificate renewal
    // that left a key at 0640 would keep the node down at its next restart.)
    for p in health::tls_problems(&config) {
        error!(
            "{}: that check stays down until the file is fixed and the config reloaded",
            p.in_file(config_path)
        );
    }
    // A hook or exec program others could change is refused outright, as by `check`.
    let programs = health::program_problems(&config);
    if !programs.is_empty() {
        bail!(
            "{}",
            programs
                .iter()
                .map(|p| p.in_file(config_path))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(problem) = health::run_as_problems(&config).into_iter().next() {
        bail!("{problem}");
    }
    // Key files before anything is touched (the router tasks read them again).
    if let Err(problems) = crate::vrrp::keyfile::load_all(&config) {
        bail!("{}", problems.join("; "));
    }
    check_fd_limit(&config);
    let handle = net::handle()?;
    let link = net::link::by_name(&handle, &config.node.interface)
        .await
        .with_context(|| format!("interface {}", config.node.interface))?;

    // The control socket first: a second agent on the same node stops here, before
    // it touches the data plane.
    let listener = control::bind(
        &config.node.control_socket,
        config.node.control_group.as_deref(),
    )
    .await
    .context("control socket")?;
    let access =
        control::Access::new(config.node.control_group.as_deref()).context("control socket")?;
    let metrics = match config.node.metrics {
        Some(addr) => Some(
            crate::api::http::bind(addr)
                .await
                .with_context(|| format!("metrics on {addr}"))?,
        ),
        None => None,
    };

    // The operator's demotes and drains survive a restart. A file that cannot be read
    // stops the start: forgetting a demote could take mastership mid-maintenance.
    let state_file = config.node.state_file.clone();
    let (operator, operator_unknown) = OperatorState::load(&state_file)?.split_known(&config);
    for d in operator_unknown.describe() {
        warn!(file = %state_file.display(), "operator state: {d} not applied (not in the config; kept in the file)");
    }
    if operator != OperatorState::empty() {
        info!(demoted = ?operator.demoted, drained = ?operator.drains(), "operator state restored");
    }

    let dp = Dataplane::open(&load_options(&config), &attach_of(&config))
        .context("opening the data plane")?;
    let origin = dp.origin();
    match origin {
        Origin::Loaded => info!(interface = %link.name, "XDP program loaded and attached"),
        Origin::Adopted => {
            info!(interface = %link.name, "adopted the pinned XDP program and maps (nothing reloaded)")
        }
        Origin::Upgraded => info!(
            interface = %link.name,
            "replaced the pinned XDP program with this build's in place (maps, flows and VIP ownership kept)"
        ),
    }
    let table = ServiceTable::from_dataplane(&dp).context("reading the service maps")?;
    let plane = SharedPlane::new(dp, table);
    {
        let mut p = plane.lock();
        p.dp.set_iface(link.index, link.mac)?;
        p.sync_vips(&all_vips(&config))?;
        // BGP VIPs are routed here by the upstream router: forward whatever arrives
        // (also while withdrawn, for flows still converging), never answer ARP/ND.
        for r in config.routers.iter().filter(|r| r.bgp().is_some()) {
            p.set_routed(&r.vips)?;
        }
        nat::apply_roles(&mut p.dp, &config)?;
    }
    nat::enable_forwarding(&config);
    let prog_id = net::link::xdp_prog_id(&handle, link.index)
        .await
        .unwrap_or(None);

    // Routers whose VIPs the pinned program still serves: the agent restarted under a
    // master (or a static node). Their gates and tracked checks start passing, so the
    // restart moves nothing unless a check then fails.
    let mut resumed: BTreeSet<String> = {
        let p = plane.lock();
        config
            .routers
            .iter()
            .filter(|r| !matches!(r.ownership, Ownership::Bgp(_)))
            .filter(|r| r.owned_addresses().iter().all(|v| p.serving(*v)))
            .map(|r| r.name.clone())
            .collect()
    };
    // A BGP router resumes if BIRD announces it now (a restart, not a first start).
    for r in config.routers.iter().filter(|r| r.bgp().is_some()) {
        if crate::bgp::announced(r).await == Some(true) {
            resumed.insert(r.name.clone());
        }
    }
    if !resumed.is_empty() {
        info!(routers = ?resumed, "the data plane still serves these routers: their gates and tracked checks start passing");
    }
    let health = Health::start_after(health::plan_resuming(&config, &resumed), None);
    let initial = initial_inputs(&config, &health.snapshot(), &operator.demoted);
    // A fresh data plane waits (a bounded time) for its backends' MACs. One kept from
    // an earlier run already forwards with the MACs it has: the agent takes what the
    // kernel knows now and keeps the maps' MACs for the rest (the neighbour task
    // probes them from 1 s on), so an unreachable backend cannot delay a restart past
    // the peer's Master_Down_Interval.
    let wait = if origin == Origin::Loaded {
        RESOLVE_TIMEOUT
    } else {
        Duration::ZERO
    };
    let (mut neighbours, failed) =
        Neighbours::resolve(&handle, &backends::backend_addrs(&config), &link, wait).await;
    let kept = if failed.is_empty() {
        BTreeMap::new()
    } else {
        plane.lock().dp.backend_macs().unwrap_or_default()
    };
    for (addr, why) in &failed {
        match kept.get(addr) {
            Some(mac) => {
                neighbours.0.insert(*addr, *mac);
                info!(backend = %addr, "backend not in the neighbour table yet: its MAC from the data plane stays until it resolves");
            }
            None => {
                warn!(backend = %addr, error = %why, "backend not resolved; left out until it is")
            }
        }
    }
    let (addrs_tx, addrs_rx) = tokio::sync::watch::channel(backends::backend_addrs(&config));
    let (neigh_tx, mut neigh_rx) = mpsc::channel::<Neighbours>(4);
    let neigh_task = tokio::spawn(
        backends::neighbour_task(
            handle.clone(),
            link.clone(),
            addrs_rx,
            neigh_tx,
            neighbours.clone(),
            backends::Rounds {
                first: if failed.is_empty() {
                    NEIGHBOUR_REFRESH
                } else {
                    backends::RETRY_UNRESOLVED
                },
                period: NEIGHBOUR_REFRESH,
                timeout: RESOLVE_TIMEOUT,
            },
        )
        .instrument(info_span!("neighbours")),
    );
    let lease = tokio::spawn(crate::dataplane::lease_task(plane.clone()));
    let (sync, sync_task) = match &config.node.sync {
        Some(c) => {
            let placement = crate::sync::Placement {
                // A netlink socket of its own: the kernel refuses a second dump at
                // once on one socket (EBUSY), and the sync reads addresses while
                // VRRP starts.
                handle: net::handle().context("a netlink socket for the sync")?,
                interface: link.name.clone(),
                ifindex: link.index,
                floating: config
                    .routers
                    .iter()
                    .flat_map(|r| r.owned_addresses())
                    .collect(),
                state_file: config.node.state_file.clone(),
            };
            let (s, t) = crate::sync::start(c, plane.clone(), placement)
                .instrument(info_span!("sync"))
                .await
                .context("starting the connection-state sync")?;
            (Some(s), Some(t))
        }
        None => (None, None),
    };
    let nat_discard = sync
        .is_none()
        .then(|| tokio::spawn(nat::discard_events(plane.clone()).instrument(info_span!("nat"))));
    let nat_gc = tokio::spawn(
        nat::gc_task(
            plane.clone(),
            config.node.bpf_dir.clone(),
            (&config.node.nat_timeouts).into(),
            sync.as_ref().map(|s| s.removed.clone()),
        )
        .instrument(info_span!("nat")),
    );
    let vrrp = Vrrp::start(
        &config,
        &handle,
        &link,
        plane.clone(),
        sync.as_ref().map(crate::sync::NatSync::table_current),
        &initial
            .iter()
            .map(|(name, i)| (name.clone(), i.controls()))
            .collect(),
        &resumed,
    )
    .await
    .context("starting VRRP")?;
    let fences = crate::fence::Fences::start(&config, &vrrp, link.index);

    let bgp = Bgp::start(&config);
    let mut agent = Agent {
        config,
        config_path: config_path.to_owned(),
        loaded_at: SystemTime::now(),
        handle,
        link,
        plane,
        origin,
        prog_id,
        vrrp,
        fences,
        access,
        conns: Default::default(),
        bgp,
        demoted: operator.demoted.clone(),
        health,
        neighbours,
        backend_addrs: addrs_tx,
        drains: operator.drains(),
        state_file,
        operator_unknown,
        fail_open: BTreeSet::new(),
        priorities: initial
            .iter()
            .map(|(name, i)| (name.clone(), i.priority))
            .collect(),
        faults: initial
            .into_iter()
            .map(|(name, i)| (name, i.faults))
            .collect(),
        dataplane_attached: true,
        static_addresses: BTreeMap::new(),
        ticks: 0,
        sync,
        nat_count: Default::default(),
        flow_count: Default::default(),
        reloads: Default::default(),
        ownership_states: BTreeMap::new(),
    };
    if agent.config.node.vip_on_interface {
        for r in agent
            .config
            .routers
            .iter()
            .filter(|r| matches!(r.ownership, Ownership::Static))
        {
            let a = net::addr::VipAddresses::spawn(
                agent.handle.clone(),
                agent.link.index,
                r.vips.clone(),
                resumed.contains(&r.name),
            );
            agent.static_addresses.insert(r.name.clone(), a);
        }
    }
    agent.apply_services()?;
    agent.apply_ownership_inputs().await;

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Envelope>(32);
    let ctl_server = tokio::spawn(control::serve(
        listener,
        agent.access.clone(),
        ctl_tx.clone(),
        agent.conns.control.clone(),
    ));
    let metrics_server = metrics.map(|l| {
        tokio::spawn(crate::api::http::serve(
            l,
            ctl_tx.clone(),
            agent.conns.metrics.clone(),
        ))
    });
    drop(ctl_tx);

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut health_rx = agent.health.watch();
    let mut tick = tokio::time::interval(sdnotify::watchdog_period().map_or(TICK, |w| w.min(TICK)));

    let mut failure: Option<String> = None;
    info!("running");
    if let Err(e) = sdnotify::notify("READY=1") {
        warn!(error = %e, "sd_notify READY failed");
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = agent.reload_counted("SIGHUP").await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                if matches!(req, Request::Status) {
                    // Walking a big NAT table takes a while (half a second for a
                    // million connections, in batches): the answer is finished by a task
                    // of its own, so that a transition arriving meanwhile is not held
                    // behind a monitoring poll. A requester that leaves (its client
                    // disconnected) ends that task; the shared walk goes on for the others.
                    let answer = agent.status_answer();
                    let mut reply = reply;
                    tokio::spawn(async move {
                        tokio::select! {
                            st = answer => { let _ = reply.send(st); }
                            () = reply.closed() => {}
                        }
                    });
                } else {
                    let what = format!("{req:?}");
                    let reload = matches!(req, Request::Reload);
                    let resp = agent.handle_request(req).await;
                    // A refused reload is logged (and counted) by the reload itself.
                    if let Response::Error { message } = &resp
                        && !reload
                    {
                        error!(request = %what, "control request refused: {message}");
                    }
                    let _ = reply.send(resp);
                }
            }
            changed = health_rx.changed() => {
                if changed.is_ok() {
                    agent.on_health_change().await;
                } else {
                    health_rx = agent.health.watch();
                }
            }
            Some(n) = neigh_rx.recv() => agent.neighbours_changed(n),
            _ = tick.tick() => {
                let ended = agent.vrrp.ended().or_else(|| lease.is_finished().then(|| "the lease task".to_string()));
                if let Some(what) = ended {
                    // Crash-only: exit, let systemd start a fresh agent. Meanwhile the
                    // data plane's leases run out and the peer takes over as usual.
                    error!(task = %what, "a task of the agent ended unexpectedly: exiting");
                    failure = Some(what);
                    break;
                }
                let _ = sdnotify::notify("WATCHDOG=1");
                agent.check_dataplane().await;
                agent.ticks += 1;
                if agent.ticks % NAT_PROD_TICKS == 1 {
                    nat::prod_next_hops(&agent.config).await;
                }
            }
        }
    }
    let (vrrp_stop, whole_stop) = stop_timeouts(&agent.config);
    let _ = sdnotify::notify("STOPPING=1");
    // The stop hooks (notify STOP, stop) get their hooks.timeout: ask systemd to wait
    // that long before it kills what is left (the unit's TimeoutStopSec is shorter).
    let _ = sdnotify::notify(&format!("EXTEND_TIMEOUT_USEC={}", whole_stop.as_micros()));
    info!(
        bound = ?whole_stop,
        "shutting down; the data plane stays pinned"
    );
    ctl_server.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    // No fence may fault a router while it shuts down.
    agent.fences.stop();
    // BGP announcements go first: the router moves the flows to the other nodes
    // while this one still forwards what arrives.
    std::mem::take(&mut agent.bgp)
        .shutdown(BGP_WITHDRAW_TIMEOUT)
        .await;
    // Masters send priority 0 and release their VIPs before the lease task stops.
    agent.vrrp.shutdown(vrrp_stop).await;
    if agent.config.node.vip_on_interface {
        // Released VRRP VIPs leave the interface before the process exits (static
        // routers keep serving through the pinned data plane, and keep their address).
        for r in agent.config.routers.iter().filter(|r| r.vrrp().is_some()) {
            for &vip in &r.vips {
                if let Err(e) =
                    net::addr::set_address(&agent.handle, agent.link.index, vip, false).await
                {
                    warn!(%vip, error = %e, "removing the VIP address");
                }
            }
        }
    }
    agent.health.stop().await;
    neigh_task.abort();
    nat_gc.abort();
    if let Some(t) = nat_discard {
        t.abort();
    }
    if let Some(t) = sync_task {
        t.abort();
    }
    lease.abort();
    let _ = std::fs::remove_file(&agent.config.node.control_socket);
    match failure {
        Some(what) => bail!("{what} ended unexpectedly"),
        None => Ok(()),
    }
}

fn all_vips(config: &Config) -> Vec<std::net::IpAddr> {
    config
        .routers
        .iter()
        .flat_map(|r| r.owned_addresses())
        .collect()
}
