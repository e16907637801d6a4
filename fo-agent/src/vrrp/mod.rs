//! VRRP on the wire: raw sockets ([`socket`]), gratuitous ARP / unsolicited NA
//! ([`garp`]) and one task per virtual router ([`driver`]) around the pure state machine
//! of `fo-vrrp`. The data plane is driven through [`crate::agent::SharedPlane`].
//!
//! ```text
//!  socket rx task ──peek_vrid──▶ router task ──decode──▶ fo_vrrp::Router::handle
//!  (one per family)  unknown VRID: dropped   ▲ timers      │ actions, in order
//!                    (counted "vrid")        │ admin       ▼
//!                                            │ events   SetOwnership → data plane (lease =
//!  link monitor ──Fault{source:"link"}───────┘          Master_Down_Interval), SendAdvert,
//!  control socket, checks ──RouterHandle::send──┘       SendGratuitous, Transition, RunHook
//! ```
//!
//! Public API for the control socket and metrics: [`Vrrp::routers`] gives a
//! [`RouterHandle`] per router: [`RouterHandle::send`] takes a [`Control`] (promote,
//! demote, resume, priority, fault by source), [`RouterHandle::status`] returns a
//! [`RouterStatus`] (state, priorities, master since, last [`TransitionRecord`] with the
//! takeover time, [`RouterStats`] counters). [`Vrrp::unknown_vrid_drops`] counts packets no
//! router claimed.

pub mod driver;
pub mod garp;
pub mod socket;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fo_config::{Config, VrrpVersion};
use fo_vrrp::{AdverInterval, Auth, Centisecs, Password, Priority, Seconds, Vrid};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, info_span, warn};

pub use driver::{
    Control, GarpTiming, RouterGone, RouterHandle, RouterSpec, RouterStats, RouterStatus,
    TransitionRecord,
};

use crate::agent::SharedPlane;
use crate::net::{self, link::LinkInfo};
use garp::Announcer;
use socket::VrrpSocket;

/// How long to wait for the interface's source address (an IPv6 link-local address is
/// unusable while duplicate address detection runs, about a second after link up).
const ADDRESS_WAIT: Duration = Duration::from_secs(5);
/// How often the link state is read for the "link" fault.
const LINK_POLL: Duration = Duration::from_millis(100);
/// Packets queued per router before the receive task drops (counted "queue").
const ROUTER_QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("router {router}: {problem}")]
    Spec { router: String, problem: String },
    #[error(
        "interface {interface} has no usable {family} address to send VRRP from after {waited:?}"
    )]
    NoAddress {
        interface: String,
        family: &'static str,
        waited: Duration,
    },
    #[error(transparent)]
    Net(#[from] net::NetError),
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    #[error(transparent)]
    Announce(#[from] garp::AnnounceError),
    #[error("router {router}")]
    Fsm {
        router: String,
        #[source]
        source: fo_vrrp::fsm::ConfigError,
    },
}

/// The running VRRP routers of this agent.
pub struct Vrrp {
    routers: Vec<RouterHandle>,
    tasks: Vec<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
    unknown_vrid: Arc<AtomicU64>,
}

impl Vrrp {
    /// Open the sockets and start a task per `ownership = "vrrp"` router of `config`.
    /// With no such router, nothing is opened.
    pub async fn start(
        config: &Config,
        handle: &rtnetlink::Handle,
        link: &LinkInfo,
        plane: SharedPlane,
        sync: Option<crate::sync::SyncGate>,
    ) -> Result<Vrrp, VrrpError> {
        let mut vrrp = Vrrp {
            routers: Vec::new(),
            tasks: Vec::new(),
            helpers: Vec::new(),
            unknown_vrid: Arc::default(),
        };
        let routers: Vec<_> = config
            .routers
            .iter()
            .filter(|r| r.vrrp().is_some())
            .collect();
        if routers.is_empty() {
            return Ok(vrrp);
        }
        let announcer = Arc::new(Announcer::open(link.index, link.mac)?);
        let epoch = Instant::now();
        for ipv6 in [false, true] {
            let family: Vec<_> = routers.iter().filter(|r| r.is_ipv6() == ipv6).collect();
            if family.is_empty() {
                continue;
            }
            let primary = wait_for_primary(handle, link, ipv6).await?;
            let multicast = family
                .iter()
                .any(|r| r.vrrp().is_some_and(|v| v.peers.is_empty()));
            let sock = Arc::new(VrrpSocket::open(&link.name, link.index, ipv6, multicast)?);
            let mut routes = HashMap::new();
            for r in family {
                let spec = spec_of(config, r, primary)?;
                let (tx, rx) = mpsc::channel(ROUTER_QUEUE);
                routes.insert(spec.vrid.get(), tx);
                let io = driver::Io {
                    socket: sock.clone(),
                    announcer: announcer.clone(),
                    plane: plane.clone(),
                    sync: sync.clone(),
                    addresses: config.node.vip_on_interface.then(|| {
                        net::addr::VipAddresses::spawn(handle.clone(), link.index, r.vips.clone())
                    }),
                };
                let (h, task) =
                    driver::spawn(spec, io, rx, epoch).map_err(|source| VrrpError::Fsm {
                        router: r.name.clone(),
                        source,
                    })?;
                vrrp.routers.push(h);
                vrrp.tasks.push(task);
            }
            let span = info_span!("vrrp_rx", family = if ipv6 { "ipv6" } else { "ipv4" }, interface = %link.name);
            vrrp.helpers.push(tokio::spawn(
                receive(sock, routes, vrrp.unknown_vrid.clone()).instrument(span),
            ));
        }
        vrrp.helpers.push(tokio::spawn(
            link_monitor(handle.clone(), link.name.clone(), vrrp.routers.clone())
                .instrument(info_span!("link", interface = %link.name)),
        ));
        Ok(vrrp)
    }

    /// One handle per VRRP router, in config order within each family (IPv4 first).
    pub fn routers(&self) -> &[RouterHandle] {
        &self.routers
    }

    /// The handle of router `name`.
    pub fn router(&self, name: &str) -> Option<&RouterHandle> {
        self.routers.iter().find(|r| r.name() == name)
    }

    /// Received packets with a VRID no router of this agent has (`fo_vrrp_dropped_total`
    /// reason "vrid", not attributable to a router).
    pub fn unknown_vrid_drops(&self) -> u64 {
        self.unknown_vrid.load(Ordering::Relaxed)
    }

    /// RFC 5798 Shutdown for every router: a Master sends priority 0 and releases its
    /// VIPs. Waits for the router tasks up to `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        for h in &self.helpers {
            h.abort();
        }
        for r in &self.routers {
            r.shutdown().await;
        }
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            warn!(?timeout, "VRRP routers did not stop in time");
        }
    }
}

/// Resolve a config router into what its task needs.
pub fn spec_of(
    config: &Config,
    r: &fo_config::Router,
    primary: IpAddr,
) -> Result<RouterSpec, VrrpError> {
    let bad = |problem: String| VrrpError::Spec {
        router: r.name.clone(),
        problem,
    };
    let v = r.vrrp().ok_or_else(|| bad("not a VRRP router".into()))?;
    let vrid = Vrid::new(v.vrid).ok_or_else(|| bad("VRID 0".into()))?;
    let interval = match v.version {
        VrrpVersion::V3 => {
            let cs = u16::try_from(v.advert_interval.as_millis() / 10)
                .map_err(|_| bad(format!("advert_interval {:?} too long", v.advert_interval)))?;
            AdverInterval::Centisecs(Centisecs(cs))
        }
        VrrpVersion::V2 => {
            let s = u8::try_from(v.advert_interval.as_secs())
                .map_err(|_| bad(format!("advert_interval {:?} too long", v.advert_interval)))?;
            AdverInterval::Seconds(Seconds(s))
        }
    };
    let auth = match &v.auth_pass {
        Some(p) => {
            Auth::Simple(Password::new(p.as_bytes()).map_err(|e| bad(format!("auth_pass: {e}")))?)
        }
        None => Auth::None,
    };
    let n = &config.node;
    Ok(RouterSpec {
        name: r.name.clone(),
        vrid,
        vips: r.vips.clone(),
        snat: r.snat.clone(),
        nat: config
            .services
            .iter()
            .any(|s| s.router == r.name && s.mode == fo_config::ForwardMode::Nat),
        peers: v.peers.clone(),
        auth,
        fsm: fo_vrrp::Config {
            priority: Priority(v.priority),
            advert_interval: interval,
            preempt: v.preempt,
            preempt_delay: v.preempt_delay,
            primary_address: primary,
        },
        garp: GarpTiming {
            count: n.garp_count.max(1),
            interval: n.garp_interval,
            refresh: n.garp_refresh,
        },
        hooks: r.hooks.clone(),
    })
}

async fn wait_for_primary(
    handle: &rtnetlink::Handle,
    link: &LinkInfo,
    ipv6: bool,
) -> Result<IpAddr, VrrpError> {
    let start = Instant::now();
    loop {
        if let Some(a) = net::addr::primary(handle, link.index, ipv6).await? {
            info!(interface = %link.name, source = %a, "VRRP source address");
            return Ok(a);
        }
        if start.elapsed() >= ADDRESS_WAIT {
            return Err(VrrpError::NoAddress {
                interface: link.name.clone(),
                family: if ipv6 { "IPv6 link-local" } else { "IPv4" },
                waited: ADDRESS_WAIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Demultiplex received packets by VRID to the router tasks.
async fn receive(
    sock: Arc<VrrpSocket>,
    routes: HashMap<u8, mpsc::Sender<socket::Received>>,
    unknown: Arc<AtomicU64>,
) {
    loop {
        match sock.recv().await {
            Ok(packet) => {
                match fo_vrrp::peek_vrid(&packet.payload).and_then(|v| routes.get(&v.get())) {
                    Some(tx) => {
                        if tx.try_send(packet).is_err() {
                            // The router task is behind (or gone); its "queue" drops are not
                            // countable from here without a second channel, so log them.
                            tracing::debug!("router queue full: packet dropped");
                        }
                    }
                    None => {
                        unknown.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "receiving VRRP failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The "link" fault: set while the interface is down or has no carrier.
async fn link_monitor(handle: rtnetlink::Handle, name: String, routers: Vec<RouterHandle>) {
    let mut failing = false;
    loop {
        let running = match net::link::by_name(&handle, &name).await {
            Ok(l) => l.running,
            Err(e) => {
                warn!(error = %e, "reading the link state failed");
                false
            }
        };
        if running == failing {
            failing = !running;
            info!(running, "link state changed");
            for r in &routers {
                let _ = r
                    .send(Control::Fault {
                        source: "link".into(),
                        failing,
                    })
                    .await;
            }
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}
