//! Start-up: the config's checks, the control socket and metrics, the operator's
//! saved state, the data plane, and every part of the agent started in order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use fo_config::{Config, Ownership};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, error, info, info_span, warn};

use super::backends::{self, Neighbours};
use super::operator::OperatorState;
use super::ownership::initial_inputs;
use super::{
    Agent, Api, Host, Loaded, Operator, Routers, Services, Xdp, all_vips, attach_of, load_options,
    nat, vlan,
};
use crate::api::control::{self, Envelope};
use crate::bgp::Bgp;
use crate::dataplane::{Dataplane, Origin, ServiceTable, SharedPlane};
use crate::health::{self, Health};
use crate::net;
use crate::vrrp::Vrrp;

/// How long to wait for a backend's MAC before leaving it out for now.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often backend MACs are checked again.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);

/// The tasks [`start`] spawned besides the routers' and the checks', ended by
/// [`super::event_loop::shutdown`].
pub(super) struct Tasks {
    pub(super) ctl_server: JoinHandle<()>,
    pub(super) metrics_server: Option<JoinHandle<()>>,
    pub(super) neigh_task: JoinHandle<()>,
    pub(super) lease: JoinHandle<()>,
    pub(super) nat_gc: JoinHandle<()>,
    pub(super) nat_discard: Option<JoinHandle<()>>,
    pub(super) sync_task: Option<JoinHandle<()>>,
}

impl Tasks {
    /// Stop the control socket and the metrics endpoint.
    pub(super) fn stop_listeners(&self) {
        self.ctl_server.abort();
        if let Some(m) = &self.metrics_server {
            m.abort();
        }
    }

    /// Stop the others, the lease last.
    pub(super) fn stop_rest(self) {
        self.neigh_task.abort();
        self.nat_gc.abort();
        for t in [self.nat_discard, self.sync_task].into_iter().flatten() {
            t.abort();
        }
        self.lease.abort();
    }
}

/// What the event loop receives besides signals, health changes and ticks.
pub(super) struct Inbox {
    pub(super) ctl_rx: mpsc::Receiver<Envelope>,
    pub(super) neigh_rx: mpsc::Receiver<Neighbours>,
}

/// Check the config, bind the control socket and metrics, open the data plane and
/// start every part of the agent (health, neighbours, NAT, sync, VRRP, fences, BGP,
/// static addresses), then serve the control socket and metrics.
pub(super) async fn start(
    config: Config,
    config_path: &Path,
) -> anyhow::Result<(Agent, Tasks, Inbox)> {
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
    super::tunnel_checks::attach(&config, &link.name);
    let table = ServiceTable::from_dataplane(&dp).context("reading the service maps")?;
    let plane = SharedPlane::new(dp, table);
    {
        let mut p = plane.lock();
        p.dp.set_iface(link.index, link.mac)?;
        // VLANs first: no write of a VIP's entry ever drops its tag.
        vlan::apply_vlans(&mut p.dp, &config)?;
        p.sync_vips(&all_vips(&config))?;
        // BGP VIPs are routed here by the upstream router: forward whatever arrives
        // (also while withdrawn, for flows still converging), never answer ARP/ND.
        for r in config.routers.iter().filter(|r| r.bgp().is_some()) {
            p.set_routed(&r.vips)?;
        }
        nat::apply_roles(&mut p.dp, &config)?;
    }
    nat::enable_forwarding(&config);
    super::tunnel::enable_forwarding(&config);
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
    let targets = backends::backend_addrs(&config);
    let (mut neighbours, failed) = Neighbours::resolve(&handle, &targets, &link, wait).await;
    let kept = if failed.is_empty() {
        BTreeMap::new()
    } else {
        plane.lock().dp.backend_macs().unwrap_or_default()
    };
    for (addr, why) in &failed {
        match kept.get(addr) {
            // A tunnel backend: the data plane has its next hop's MAC; the route
            // gives the rest.
            Some(mac) if targets.tunnel.contains(addr) => {
                match net::route::hop_with_mac(&handle, *addr, *mac).await {
                    Ok(hop) => {
                        neighbours.1.insert(*addr, hop);
                        info!(backend = %addr, "tunnel backend's next hop not in the neighbour table yet: its MAC from the data plane stays until it resolves");
                    }
                    Err(e) => {
                        warn!(backend = %addr, error = %e, "tunnel backend has no route; left out until it has")
                    }
                }
            }
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
    let (neigh_tx, neigh_rx) = mpsc::channel::<Neighbours>(4);
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
                bpf_dir: config.node.bpf_dir.clone(),
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
        loaded: Loaded {
            path: config_path.to_owned(),
            at: SystemTime::now(),
            reloads: Default::default(),
        },
        host: Host { handle, link },
        xdp: Xdp {
            plane,
            origin,
            prog_id,
            attached: true,
        },
        routers: Routers {
            vrrp,
            fences,
            bgp,
            static_addresses: BTreeMap::new(),
            priorities: initial
                .iter()
                .map(|(name, i)| (name.clone(), i.priority))
                .collect(),
            faults: initial
                .into_iter()
                .map(|(name, i)| (name, i.faults))
                .collect(),
            states: BTreeMap::new(),
        },
        operator: Operator {
            demoted: operator.demoted.clone(),
            drains: operator.drains(),
            state_file,
            unknown: operator_unknown,
        },
        services: Services {
            health,
            neighbours,
            backend_addrs: addrs_tx,
            fail_open: BTreeSet::new(),
        },
        api: Api {
            access,
            conns: Default::default(),
            nat_count: Default::default(),
            flow_count: Default::default(),
            requests: None,
            drill_running: Default::default(),
            drills: Default::default(),
        },
        sync,
        ticks: 0,
    };

    if agent.config.node.vip_on_interface {
        for r in agent
            .config
            .routers
            .iter()
            .filter(|r| matches!(r.ownership, Ownership::Static))
        {
            let a = net::addr::VipAddresses::spawn(
                agent.host.handle.clone(),
                agent.host.link.index,
                r.vips.clone(),
                resumed.contains(&r.name),
            );
            agent.routers.static_addresses.insert(r.name.clone(), a);
        }
    }
    agent.apply_services()?;
    agent.apply_ownership_inputs().await;

    let (ctl_tx, ctl_rx) = mpsc::channel::<Envelope>(32);
    let ctl_server = tokio::spawn(control::serve(
        listener,
        agent.api.access.clone(),
        ctl_tx.clone(),
        agent.api.conns.control.clone(),
    ));
    let metrics_server = metrics.map(|l| {
        tokio::spawn(crate::api::http::serve(
            l,
            ctl_tx.clone(),
            agent.api.conns.metrics.clone(),
        ))
    });
    agent.api.requests = Some(ctl_tx);
    if let Some(sync) = &agent.sync {
        let handles = agent.routers.vrrp.routers().to_vec();
        sync.set_ready_source(std::sync::Arc::new(move || {
            super::drill::routers_ready(&handles)
        }));
    }
    let tasks = Tasks {
        ctl_server,
        metrics_server,
        neigh_task,
        lease,
        nat_gc,
        nat_discard,
        sync_task,
    };
    Ok((agent, tasks, Inbox { ctl_rx, neigh_rx }))
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
