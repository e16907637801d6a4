//! `fo-agent run`: the data plane, VIP ownership (VRRP, BGP or static), health checks,
//! gates, hooks, the control socket and metrics, wired together in one tokio process.
//!
//! One main loop owns the agent's state and serialises every change: signals,
//! control requests, health changes, neighbour refreshes and the watchdog tick.
//! Protocol timers live in the VRRP router tasks and are never delayed by it.

mod backends;
mod detach;
mod nat;
mod operator;
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
use crate::vrrp::{Control, Vrrp};
use backends::{Drains, Neighbours};
pub use detach::detach;
use operator::{Drained, OperatorState};

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

/// How long the VRRP routers may take to stop (the longest of their hooks' stop bounds,
/// [`crate::hooks::stop_bound`], plus [`SHUTDOWN_MARGIN`]), and the whole shutdown (BGP
/// withdrawals first, then that, then the rest within the margin).
fn stop_timeouts(config: &Config) -> (Duration, Duration) {
    let hooks = config
        .routers
        .iter()
        .filter(|r| r.vrrp().is_some())
        .map(|r| crate::hooks::stop_bound(r.hooks.timeout))
        .max()
        .unwrap_or_default();
    let vrrp = hooks + SHUTDOWN_MARGIN;
    (vrrp, BGP_WITHDRAW_TIMEOUT + vrrp + SHUTDOWN_MARGIN)
}

/// Descriptors the agent may hold at once with `config`: a fixed part (BPF maps and
/// programs, VRRP, ARP, netlink, sync and listening sockets, the journal), the capped
/// control and metrics connections, and up to four per check target, hook and router
/// (a probe's socket, or an exec check's or hook's pipes).
pub fn fd_budget(config: &Config) -> u64 {
    let targets: usize = config
        .services
        .iter()
        .filter(|s| s.check.is_some())
        .map(|s| s.backends().len())
        .sum::<usize>()
        + config.checks.len()
        + config.routers.len();
    (256 + crate::api::conns::METRICS_CAP + crate::api::conns::CONTROL_CAP + 4 * targets) as u64
}

/// Warn when the open-file limit is below [`fd_budget`]: past it, health probes and
/// control connections would fail with EMFILE. The packaged unit sets 65,536.
fn check_fd_limit(config: &Config) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) fills the rlimit we own; RLIMIT_NOFILE always exists.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let need = fd_budget(config);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        warn!(
            limit = lim.rlim_cur,
            need,
            "the open-file limit is below what this config may need: raise LimitNOFILE (the packaged unit sets 65536)"
        );
    }
}

/// A static or BGP router's ownership changed: its state before and after (as
/// `status` shows them: master while it serves, fault while a gate is closed or the
/// program detached, else backup) and why, for the transition's log entry.
fn moved(
    states: &mut BTreeMap<String, &'static str>,
    attached: bool,
    router: &str,
    own: bool,
    closed: &[String],
    demoted: bool,
) -> (&'static str, &'static str, &'static str) {
    let (to, reason) = if own {
        ("master", "gates_pass")
    } else if demoted {
        ("backup", "admin_demote")
    } else if !attached {
        ("fault", "dataplane")
    } else if !closed.is_empty() {
        ("fault", "gate_closed")
    } else {
        ("backup", "released")
    };
    let from = states.insert(router.to_string(), to).unwrap_or("init");
    (from, to, reason)
}

fn all_vips(config: &Config) -> Vec<std::net::IpAddr> {
    config
        .routers
        .iter()
        .flat_map(|r| r.owned_addresses())
        .collect()
}

impl Agent {
    /// Write the services as health, drains and MACs say now.
    fn apply_services(&mut self) -> anyhow::Result<()> {
        let snap = self.health.snapshot();
        let plans = backends::plans(
            &self.config,
            &self.link,
            &self.neighbours,
            &snap,
            &self.drains,
        );
        let fail_open: BTreeSet<String> = self
            .config
            .services
            .iter()
            .zip(&plans)
            .filter(|(_, p)| p.fail_open)
            .map(|(s, _)| s.name.clone())
            .collect();
        for s in fail_open.difference(&self.fail_open) {
            error!(service = %s, "no healthy backend: forwarding to all of them (fail open)");
        }
        for s in self.fail_open.difference(&fail_open) {
            info!(service = %s, "healthy backends again: fail-open over");
        }
        self.fail_open = fail_open;
        let specs: Vec<_> = plans.into_iter().map(|p| p.spec).collect();
        let mut p = self.plane.lock();
        let p = &mut *p;
        let summary = p
            .table
            .apply(&mut p.dp, &specs)
            .context("writing services to the data plane")?;
        if summary != Default::default() {
            info!(?summary, "services applied");
        }
        Ok(())
    }

    /// Priorities (tracking), gates and data-plane faults into the routers; static
    /// routers own their VIPs while every gate passes and the program is attached.
    async fn apply_ownership_inputs(&mut self) {
        let snap = self.health.snapshot();
        for router in self.config.routers.clone() {
            let closed: Vec<String> = health::priority::closed_gates(&router.gates, &snap)
                .into_iter()
                .map(String::from)
                .collect();
            match &router.ownership {
                Ownership::Static => {
                    let own = closed.is_empty() && self.dataplane_attached;
                    // After the data plane (a no-op unless the wish changes).
                    let addresses = self.static_addresses.get(&router.name);
                    let owns = self.plane.lock().owns(router.vips[0]);
                    if own != owns {
                        let _span = info_span!("static", router = %router.name).entered();
                        if let Err(e) = self.plane.lock().set_owned(
                            &router.owned_addresses(),
                            own,
                            STATIC_LEASE,
                        ) {
                            error!(error = %e, "writing VIP ownership failed");
                        } else {
                            let (from, to, reason) = moved(
                                &mut self.ownership_states,
                                self.dataplane_attached,
                                &router.name,
                                own,
                                &closed,
                                false,
                            );
                            if own {
                                info!(from, to, reason, vips = ?router.vips, "static ownership: serving the VIPs");
                            } else {
                                warn!(from, to, reason, gates_closed = ?closed, dataplane_attached = self.dataplane_attached, "static ownership: VIPs released");
                            }
                        }
                    }
                    if let Some(a) = addresses
                        && self.plane.lock().owns(router.vips[0]) == own
                    {
                        a.set(own);
                    }
                }
                Ownership::Vrrp(v) => {
                    let Some(h) = self.vrrp.router(&router.name).cloned() else {
                        continue;
                    };
                    let eff = health::priority::effective(v.priority, &v.track, &snap);
                    let last = self.priorities.insert(router.name.clone(), eff);
                    if last != Some(eff) {
                        // Logged when tracking moves it, not for the configured value at start.
                        if last.is_some() || eff != v.priority {
                            let failing: Vec<&str> =
                                health::priority::failing_tracks(&v.track, &snap)
                                    .iter()
                                    .map(|t| t.check.as_str())
                                    .collect();
                            info!(router = %router.name, priority = eff, configured = v.priority, ?failing, "effective priority");
                        }
                        let _ = h.send(Control::Priority(fo_vrrp::Priority(eff))).await;
                    }
                    let mut wanted: BTreeSet<FaultSource> = closed
                        .iter()
                        .map(|g| FaultSource::Gate(g.to_string()))
                        .collect();
                    wanted.extend(
                        health::priority::track_faults(&v.track, &snap)
                            .into_iter()
                            .map(|c| FaultSource::Track(c.to_string())),
                    );
                    if !self.dataplane_attached {
                        wanted.insert(FaultSource::Dataplane);
                    }
                    let had = self.faults.entry(router.name.clone()).or_default().clone();
                    for src in wanted.difference(&had) {
                        warn!(router = %router.name, source = %src, "fault: this node may not be master");
                        let _ = h
                            .send(Control::Fault {
                                source: src.clone(),
                                failing: true,
                            })
                            .await;
                    }
                    for src in had.difference(&wanted) {
                        info!(router = %router.name, source = %src, "fault cleared");
                        let _ = h
                            .send(Control::Fault {
                                source: src.clone(),
                                failing: false,
                            })
                            .await;
                    }
                    self.faults.insert(router.name.clone(), wanted);
                }
                Ownership::Bgp(_) => {
                    let demoted = self.demoted.contains(&router.name);
                    let want = closed.is_empty() && self.dataplane_attached && !demoted;
                    if self.bgp.set_wanted(&router.name, want) {
                        let _span = info_span!("bgp", router = %router.name).entered();
                        let (from, to, reason) = moved(
                            &mut self.ownership_states,
                            self.dataplane_attached,
                            &router.name,
                            want,
                            &closed,
                            demoted,
                        );
                        if want {
                            info!(from, to, reason, vips = ?router.vips, "bgp: announcing");
                        } else if demoted {
                            info!(from, to, reason, "bgp: withdrawing");
                        } else {
                            warn!(from, to, reason, gates_closed = ?closed, dataplane_attached = self.dataplane_attached, demoted, "bgp: withdrawing");
                        }
                    }
                }
            }
        }
    }

    async fn on_health_change(&mut self) {
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
        self.apply_ownership_inputs().await;
    }

    fn neighbours_changed(&mut self, now: Neighbours) {
        info!(
            resolved = now.0.len(),
            "backend MACs changed; updating the data plane"
        );
        self.neighbours = now;
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
    }

    /// The node must not stay master without its program on the interface.
    async fn check_dataplane(&mut self) {
        let attached = match net::link::xdp_prog_id(&self.handle, self.link.index).await {
            Ok(Some(id)) => self.prog_id.is_none_or(|p| p == id),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the interface's XDP state");
                return;
            }
        };
        if attached != self.dataplane_attached {
            if attached {
                info!("XDP program attached again");
            } else {
                error!(interface = %self.link.name, "XDP program detached from the interface: giving up the VIPs");
            }
            self.dataplane_attached = attached;
            self.apply_ownership_inputs().await;
        }
    }

    /// The status as of now; the returned future adds, off the agent's loop, the NAT
    /// connection counts (when NAT services exist) and the flow table's fill (services
    /// with a flow table: DSR and tunnel), each from a count shared with every other
    /// request and at most a second old (`tables`).
    fn status_answer(&self) -> impl std::future::Future<Output = Response> + Send + 'static {
        let mut st = status::assemble(self);
        let node = &self.config.node;
        let nat_dir = self
            .config
            .services
            .iter()
            .any(|s| s.mode == fo_config::ForwardMode::Nat)
            .then(|| node.bpf_dir.clone());
        let flow_dir = self
            .config
            .services
            .iter()
            .any(|s| s.mode != fo_config::ForwardMode::Nat)
            .then(|| node.bpf_dir.clone());
        let (flow_size, nat_size) = (node.flow_table_size, node.nat_table_size);
        let nat_count = self.nat_count.clone();
        let flow_count = self.flow_count.clone();
        async move {
            if let Some(dir) = nat_dir
                && let Some(c) = nat_count.get(move || status::nat_connections(&dir)).await
            {
                // `nat`: NAT_FWD (TCP) against nat_table_size; `nat_udp`: the UDP
                // flows' table; `nat_embryonic`: the LRU of connections still in their
                // handshake (a quarter of nat_table_size each).
                let quarter = crate::dataplane::new_connection_entries(nat_size);
                for (table, entries, capacity) in [
                    ("nat", c.value.connections, nat_size),
                    ("nat_udp", c.value.udp, quarter),
                    ("nat_embryonic", c.value.embryonic, quarter),
                ] {
                    st.tables.insert(
                        table.into(),
                        status::table_fill(entries, &c, capacity, nat_count.walks()),
                    );
                }
                st.nat_connections = c.value.by_state;
            }
            if let Some(dir) = flow_dir
                && let Some(c) = flow_count.get(tables::walk_flows(dir)).await
            {
                st.tables.insert(
                    "flow".into(),
                    status::table_fill(c.value, &c, flow_size, flow_count.walks()),
                );
            }
            Response::Status {
                status: Box::new(st),
            }
        }
    }

    async fn handle_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status => self.status_answer().await,
            Request::Reload => match self.reload_counted("control socket").await {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error {
                    message: format!("reload refused, the running config stays: {message}"),
                },
            },
            Request::Promote { router } => self.admin(&router, Control::Promote, "promoted").await,
            Request::Demote { router } => self.admin(&router, Control::Demote, "demoted").await,
            Request::Resume { router } => self.admin(&router, Control::Resume, "resumed").await,
            Request::Drain { service, backend } => self.drain(service, backend, true),
            Request::Enable { service, backend } => self.drain(service, backend, false),
        }
    }

    async fn admin(&mut self, router: &str, control: Control, verb: &str) -> Response {
        let Some(r) = self.config.router(router) else {
            return Response::Error {
                message: format!("no router named {router:?}"),
            };
        };
        let kind = r.ownership_kind();
        if kind == fo_config::OwnershipKind::Bgp {
            let changed = match control {
                Control::Demote => self.demoted.insert(router.to_string()),
                Control::Resume => self.demoted.remove(router),
                _ => {
                    return Response::Error {
                        message: format!(
                            "router {router} is announced over BGP by every healthy node: there is no mastership to take (use demote/resume to withdraw/announce here)"
                        ),
                    };
                }
            };
            info!(router, "operator: {verb}");
            self.apply_ownership_inputs().await;
            let what = if self.demoted.contains(router) {
                "its VIPs are withdrawn from BGP until resume"
            } else {
                "its VIPs are announced over BGP while its gates pass"
            };
            let already = if changed { "" } else { " (it already was)" };
            let saved = if changed {
                self.save_operator_state()
            } else {
                String::new()
            };
            return Response::Ok {
                message: format!("router {router} {verb}{already}: {what}{saved}"),
            };
        }
        let Some(h) = self.vrrp.router(router) else {
            return Response::Error {
                message: format!(
                    "router {router} has {kind:?} ownership: there is no election to change"
                ),
            };
        };
        info!(router, "operator: {verb}");
        let demote = matches!(control, Control::Demote);
        if let Err(e) = h.send(control).await {
            return Response::Error {
                message: e.to_string(),
            };
        }
        // A promote ends a demote as resume does.
        let changed = if demote {
            self.demoted.insert(router.to_string())
        } else {
            self.demoted.remove(router)
        };
        let saved = if changed {
            self.save_operator_state()
        } else {
            String::new()
        };
        Response::Ok {
            message: format!("router {router} {verb}{saved}"),
        }
    }

    /// Save the operator's demotes and drains to `state_file`. Returns what to add to
    /// the operator's reply: nothing, or a warning that a restart would forget it.
    fn save_operator_state(&self) -> String {
        let state = OperatorState {
            demoted: self.demoted.clone(),
            drained: self
                .drains
                .iter()
                .map(|(service, backend)| Drained {
                    service: service.clone(),
                    backend: backend.clone(),
                })
                .collect(),
            ..OperatorState::empty()
        }
        .union(&self.operator_unknown);
        match state.save(&self.state_file) {
            Ok(()) => String::new(),
            Err(e) => {
                let why = crate::dataplane::error_chain(&e);
                error!(error = %why, "operator state not saved: a restart would forget it");
                format!(" (WARNING, not saved: {why}; a restart of the agent would forget it)")
            }
        }
    }

    fn drain(&mut self, service: String, backend: String, drain: bool) -> Response {
        let Some(s) = self.config.service(&service) else {
            return Response::Error {
                message: format!("no service named {service:?}"),
            };
        };
        if s.backend(&backend).is_none() {
            let names: Vec<_> = s.backends().iter().map(|b| b.name.clone()).collect();
            return Response::Error {
                message: format!(
                    "service {service} has no backend {backend:?} (backends: {})",
                    names.join(", ")
                ),
            };
        }
        let key = (service.clone(), backend.clone());
        let changed = if drain {
            self.drains.insert(key)
        } else {
            self.drains.remove(&key)
        };
        info!(
            service,
            backend,
            drain,
            "operator: backend {}",
            if drain { "drained" } else { "enabled" }
        );
        // Saved before the maps are written: the drain holds from now on (the next
        // write of the services applies it if this one fails).
        let saved = if changed {
            self.save_operator_state()
        } else {
            String::new()
        };
        if let Err(e) = self.apply_services() {
            return Response::Error {
                message: format!("{e:#}{saved}"),
            };
        }
        let verb = if drain {
            "drained: existing flows stay, new flows go elsewhere"
        } else {
            "enabled"
        };
        let already = if changed { "" } else { " (it already was)" };
        Response::Ok {
            message: format!("backend {backend} of {service} {verb}{already}{saved}"),
        }
    }

    /// [`Self::reload`], counted for status and metrics and logged: a refusal at error.
    async fn reload_counted(&mut self, via: &str) -> Result<String, String> {
        let outcome = self.reload().await;
        let r = &mut self.reloads;
        match &outcome {
            Ok(message) => {
                r.succeeded += 1;
                r.last_succeeded = true;
                info!(via, "{message}");
            }
            Err(message) => {
                r.failed += 1;
                r.last_succeeded = false;
                r.last_failure_at = Some(
                    SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                r.last_error = Some(message.clone());
                error!(via, "reload refused, the running config stays: {message}");
            }
        }
        outcome
    }

    /// Re-read the config: validate, refuse what cannot change live, apply the rest
    /// as a diff (services and backends in the maps, checks, priorities and gates),
    /// without a VRRP transition.
    ///
    /// All or nothing: everything that can fail is done before anything changes — the
    /// config read and validated (which bounds addresses, services and backends by the
    /// maps' sizes), key and TLS files read, the new services checked against the
    /// maps (service ids, and backend slots at every step of the write). Then the maps
    /// are written; a write the kernel refuses all the same puts the running config's
    /// services back before the refusal is reported. Only then do the config, the
    /// checks, the drains and the routers' inputs change. A refused reload leaves the
    /// running config, its checks and the maps as they were.
    async fn reload(&mut self) -> Result<String, String> {
        let new = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let blockers = reload_blockers(&self.config, &new);
        if !blockers.is_empty() {
            return Err(format!(
                "{} (restart fo-agent to apply these; the data plane stays pinned and forwarding)",
                blockers.join("; ")
            ));
        }
        let problems = health::problems(&new);
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|p| p.in_file(&self.config_path))
                .collect::<Vec<_>>()
                .join("; "));
        }
        if let Some(problem) = health::run_as_problems(&new).into_iter().next() {
            return Err(problem);
        }
        // Read every key file again: a bad one refuses the reload; a changed key (or
        // auth_key_file added, moved or removed) takes effect at once.
        let keys = crate::vrrp::keyfile::load_all(&new).map_err(|p| p.join("; "))?;

        // Prepare: the new checks (carrying over the results of unchanged ones), the
        // drains that still name a backend, and the services as they would be written.
        let previous = self.health.snapshot();
        let new_health = Health::start_after(health::plan(&new), Some(&previous));
        let mut drains = self.drains.clone();
        drains.retain(|(s, b)| new.service(s).is_some_and(|s| s.backend(b).is_some()));
        let specs = self.specs_for(&new, &new_health.snapshot(), &drains);
        let fits = self.plane.lock().table.check(&specs);
        if let Err(e) = fits {
            new_health.stop().await;
            return Err(format!(
                "the new services do not fit the data plane: {e} (nothing was changed)"
            ));
        }

        // Commit the maps; undo them if the kernel refuses a write.
        if let Err(e) = self.write_maps(&new, &specs) {
            let back = self.specs_for(&self.config, &previous, &self.drains);
            let restored = match self.write_maps(&self.config, &back) {
                Ok(()) => "the running config's services were written back".to_string(),
                Err(e2) => format!("writing the running config's services back failed too: {e2:#}"),
            };
            new_health.stop().await;
            return Err(format!("{e:#} ({restored})"));
        }

        // Then the rest, which cannot fail.
        let old_health = std::mem::replace(&mut self.health, new_health);
        old_health.stop().await;
        if drains != self.drains {
            // Drains of backends that no longer exist are forgotten.
            self.drains = drains;
            let _ = self.save_operator_state();
        }
        self.config = new;
        self.loaded_at = SystemTime::now();
        nat::enable_forwarding(&self.config);
        // New DSR backends are resolved by the neighbour task and added when they are.
        self.backend_addrs
            .send_replace(backends::backend_addrs(&self.config));
        // The services as health says now (the same unless a check moved meanwhile).
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
        self.apply_ownership_inputs().await;
        for r in self.config.routers.iter().filter(|r| r.vrrp().is_some()) {
            if let Some(h) = self.vrrp.router(&r.name) {
                let key = keys
                    .iter()
                    .find(|(n, _)| *n == r.name)
                    .map(|(_, k)| k.clone());
                let _ = h.send(Control::AuthKey(key)).await;
            }
        }
        Ok(format!("reloaded {}", self.config_path.display()))
    }

    /// The services `config` wants written, with `snap`'s health and `drains`.
    fn specs_for(
        &self,
        config: &Config,
        snap: &health::Snapshot,
        drains: &backends::Drains,
    ) -> Vec<crate::dataplane::ServiceSpec> {
        backends::plans(config, &self.link, &self.neighbours, snap, drains)
            .into_iter()
            .map(|p| p.spec)
            .collect()
    }

    /// Write `config`'s VIP entries and roles and the services `specs`.
    fn write_maps(
        &self,
        config: &Config,
        specs: &[crate::dataplane::ServiceSpec],
    ) -> anyhow::Result<()> {
        let mut p = self.plane.lock();
        let p = &mut *p;
        p.sync_vips(&all_vips(config)).context("writing VIPs")?;
        nat::apply_roles(&mut p.dp, config).context("writing VIP roles")?;
        p.table
            .apply(&mut p.dp, specs)
            .context("writing services to the data plane")?;
        Ok(())
    }
}

/// What a VRRP router is told before its Startup (see `RouterSpec::initial`).
struct InitialInputs {
    demoted: bool,
    /// Fault sources failing already (gates, weight-0 tracks).
    faults: BTreeSet<FaultSource>,
    /// Effective priority (configured plus the weights of tracked checks).
    priority: u8,
    configured: u8,
}

impl InitialInputs {
    fn controls(&self) -> Vec<Control> {
        let mut out = Vec::new();
        if self.demoted {
            out.push(Control::Demote);
        }
        out.extend(self.faults.iter().map(|source| Control::Fault {
            source: source.clone(),
            failing: true,
        }));
        if self.priority != self.configured {
            out.push(Control::Priority(fo_vrrp::Priority(self.priority)));
        }
        out
    }
}

fn initial_inputs(
    config: &Config,
    snap: &health::Snapshot,
    demoted: &BTreeSet<String>,
) -> BTreeMap<String, InitialInputs> {
    config
        .routers
        .iter()
        .filter_map(|r| {
            let v = r.vrrp()?;
            let faults = health::priority::closed_gates(&r.gates, snap)
                .into_iter()
                .map(|g| FaultSource::Gate(g.to_string()))
                .chain(
                    health::priority::track_faults(&v.track, snap)
                        .into_iter()
                        .map(|c| FaultSource::Track(c.to_string())),
                )
                .collect();
            let inputs = InitialInputs {
                demoted: demoted.contains(&r.name),
                faults,
                priority: health::priority::effective(v.priority, &v.track, snap),
                configured: v.priority,
            };
            Some((r.name.clone(), inputs))
        })
        .collect()
}

/// What a reload cannot change without a restart: the node section and each
/// router's identity (everything but its priority, tracked checks and gates).
fn reload_blockers(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.node != new.node {
        out.push("[node] changed".to_string());
    }
    let names = |c: &Config| c.routers.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        out.push("the set of routers changed".to_string());
        return out;
    }
    for (o, n) in old.routers.iter().zip(&new.routers) {
        let mut o = o.clone();
        let mut n = n.clone();
        o.gates.clear();
        n.gates.clear();
        if let (Ownership::Vrrp(ov), Ownership::Vrrp(nv)) = (&mut o.ownership, &mut n.ownership) {
            ov.priority = 0;
            nv.priority = 0;
            // The key file is read again on every reload (rotation, on or off).
            ov.auth_key_file = None;
            nv.auth_key_file = None;
            ov.track.clear();
            nv.track.clear();
        }
        if o != n {
            out.push(format!(
                "router {} changed beyond priority, track and gates",
                o.name
            ));
        }
    }
    out
}
