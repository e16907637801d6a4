//! VRRP on the wire: raw sockets ([`socket`]), gratuitous ARP / unsolicited NA
//! ([`garp`]) and one task per virtual router ([`driver`]) around the pure state machine
//! of `fo-vrrp`. The data plane is driven through [`crate::dataplane::SharedPlane`].
//!
//! ```text
//!  socket rx task ──peek_vrid──▶ router task ──decode──▶ fo_vrrp::Router::handle
//!  (one per family)  unknown VRID: dropped   ▲ timers      │ actions, in order
//!                    (counted "vrid")        │ admin       ▼
//!                    queue full: dropped     │ (before packets: a flood cannot starve them)
//!                    (counted "queue")       │
//!                                            │ events   SetOwnership → data plane (lease =
//!  link monitor ──Fault{source: Link}────────┘          Master_Down_Interval), SendAdvert,
//!  control socket, checks ──RouterHandle::send──┘       SendGratuitous, Transition, RunHook,
//!                                                       AwaitSync, ClaimRefused, DualMaster
//! ```
//!
//! May a backup claim? The state machine decides (`fo_vrrp::fsm::claim`); the router task
//! only feeds it. Faults arrive as [`Control::Fault`] with a [`fo_vrrp::FaultSource`];
//! the fence task's last answer from peer or witness ([`RouterHandle::liveness`]) and the
//! sync's "table current" flag are read before every event (`PeerAlive`, `SyncPending`).
//! The task performs what the machine says: `AwaitSync` waits for the NAT table (at most
//! its bound), `ClaimRefused` and `DualMaster` are logged and counted.
//!
//! Public API for the control socket and metrics: [`Vrrp::routers`] gives a
//! [`RouterHandle`] per router: [`RouterHandle::send`] takes a [`Control`] (promote,
//! demote, resume, priority, fault by source), [`RouterHandle::status`] returns a
//! [`RouterStatus`] (state, priorities, master since, last [`TransitionRecord`] with the
//! takeover time, [`RouterStats`] counters). [`Vrrp::unrouted_drops`] counts packets no
//! router claimed ("vrid": a VRID no router has; "length": too short to carry one;
//! "overflow": dropped by the kernel on a full socket buffer), shown as
//! `fo_vrrp_dropped_total{router=""}`.
//!
//! Input safety (RFC 5798 §7.1, per router, in [`fo_vrrp::decode`]): TTL / hop limit 255,
//! the multicast group or, with unicast `peers`, a configured peer as the source, the
//! router's version, VRID, checksum, interval and v2 authentication; in HMAC mode
//! (`auth_key_file`, [`keyfile`]) fo's trailer with a valid tag and a fresh sequence. Every
//! rejection is counted by reason; "auth" and "replay" also warn (once per 10 s).

pub mod driver;
pub mod garp;
pub mod keyfile;
pub mod socket;
mod timing;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fo_config::{Config, VrrpVersion};
use fo_vrrp::{AdverInterval, Auth, FaultSource, Password, Priority, Version, Vrid};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info, info_span, warn};

pub use driver::{
    Control, GarpTiming, RouterGone, RouterHandle, RouterSpec, RouterStats, RouterStatus,
    TransitionRecord,
};

use crate::dataplane::SharedPlane;
use crate::net::{self, link::LinkInfo};
use garp::Announcer;
use socket::VrrpSocket;

/// How long to wait for the interface's source address (an IPv6 link-local address is
/// unusable while duplicate address detection runs, about a second after link up).
const ADDRESS_WAIT: Duration = Duration::from_secs(5);
/// How often the link state is read for the "link" fault.
const LINK_POLL: Duration = Duration::from_millis(100);
/// Packets queued per router before the receive task drops (counted "queue").
pub(super) const ROUTER_QUEUE: usize = 256;

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
    Key {
        router: String,
        #[source]
        source: keyfile::KeyFileError,
    },
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
    unrouted: Arc<Unrouted>,
}

/// Packets no router claimed.
#[derive(Debug, Default)]
struct Unrouted {
    /// A VRID no router of this agent has (or 0).
    vrid: AtomicU64,
    /// Too short to carry a VRID.
    length: AtomicU64,
    /// Dropped by the kernel before fo could read them (socket buffer full), summed over
    /// the sockets (`SO_RXQ_OVFL`).
    overflow: AtomicU64,
}

/// Where the receive task sends a router's packets.
struct Route {
    tx: mpsc::Sender<socket::Received>,
    queue_drops: Arc<AtomicU64>,
}

impl Vrrp {
    /// Open the sockets and start a task per `ownership = "vrrp"` router of `config`,
    /// each first given its `initial` controls; the `resumed` ones (the pinned program
    /// still serves their VIPs) start with a Restart. With no such router, nothing is
    /// opened.
    pub async fn start(
        config: &Config,
        handle: &rtnetlink::Handle,
        link: &LinkInfo,
        plane: SharedPlane,
        table_current: Option<crate::locks::Flag>,
        initial: &HashMap<String, Vec<Control>>,
        resumed: &std::collections::BTreeSet<String>,
    ) -> Result<Vrrp, VrrpError> {
        let mut vrrp = Vrrp {
            routers: Vec::new(),
            tasks: Vec::new(),
            helpers: Vec::new(),
            unrouted: Arc::default(),
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
        // The routers, their sockets and receive tasks live on the timing thread.
        let timing = timing::handle();
        for ipv6 in [false, true] {
            let family: Vec<_> = routers.iter().filter(|r| r.is_ipv6() == ipv6).collect();
            if family.is_empty() {
                continue;
            }
            let primary = wait_for_primary(handle, link, ipv6).await?;
            let multicast = family
                .iter()
                .any(|r| r.vrrp().is_some_and(|v| v.peers.is_empty()));
            // Registered with the timing thread's reactor: its readiness wakes that thread.
            let sock = {
                let _timing = timing.enter();
                Arc::new(VrrpSocket::open(&link.name, link.index, ipv6, multicast)?)
            };
            let mut routes = HashMap::new();
            for r in family {
                let mut spec = spec_of(config, r, primary)?;
                spec.fsm.sync_then_claim = spec.nat && table_current.is_some();
                spec.initial = initial.get(&r.name).cloned().unwrap_or_default();
                spec.resume = resumed.contains(&r.name);
                let (tx, rx) = mpsc::channel(ROUTER_QUEUE);
                let queue_drops = Arc::new(AtomicU64::new(0));
                routes.insert(
                    spec.vrid.get(),
                    Route {
                        tx,
                        queue_drops: queue_drops.clone(),
                    },
                );
                let io = driver::Io {
                    socket: sock.clone(),
                    announcer: announcer.clone(),
                    plane: plane.clone(),
                    addresses: config.node.vip_on_interface.then(|| {
                        net::addr::VipAddresses::spawn(
                            handle.clone(),
                            link.index,
                            r.vips.clone(),
                            spec.resume,
                        )
                    }),
                    claim: driver::ClaimInputs {
                        liveness: spec.fsm.fence_timeout.map(|_| Arc::default()),
                        table_current: table_current.clone().filter(|_| spec.fsm.sync_then_claim),
                    },
                };
                let (h, task) =
                    driver::spawn(spec, io, rx, queue_drops, epoch, &timing).map_err(|source| {
                        VrrpError::Fsm {
                            router: r.name.clone(),
                            source,
                        }
                    })?;
                vrrp.routers.push(h);
                vrrp.tasks.push(task);
            }
            let span = info_span!("vrrp_rx", family = if ipv6 { "ipv6" } else { "ipv4" }, interface = %link.name);
            vrrp.helpers
                .push(timing.spawn(receive(sock, routes, vrrp.unrouted.clone()).instrument(span)));
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

    /// Received packets no router claimed, by reason: "vrid" (a VRID no router of this
    /// agent has), "length" (too short to carry a VRID) and "overflow" (dropped by the
    /// kernel, the socket's buffer being full, before anyone could look). Exported as
    /// `fo_vrrp_dropped_total{router=""}`. Reasons never seen are left out.
    pub fn unrouted_drops(&self) -> BTreeMap<&'static str, u64> {
        [
            ("vrid", self.unrouted.vrid.load(Ordering::Relaxed)),
            ("length", self.unrouted.length.load(Ordering::Relaxed)),
            ("overflow", self.unrouted.overflow.load(Ordering::Relaxed)),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }

    /// A router task, or a receive task, that has ended while the agent runs: a bug
    /// (a panic), after which the VIPs would stay answered with nobody advertising,
    /// or adverts would no longer be heard.
    pub fn ended(&self) -> Option<String> {
        self.routers
            .iter()
            .zip(&self.tasks)
            .find(|(_, t)| t.is_finished())
            .map(|(r, _)| format!("router {}", r.name()))
            .or_else(|| {
                self.helpers
                    .iter()
                    .any(|h| h.is_finished())
                    .then(|| "a VRRP receive or link task".to_string())
            })
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
    let version = match v.version {
        VrrpVersion::V3 => Version::V3,
        VrrpVersion::V2 => Version::V2,
    };
    let interval = AdverInterval::from_duration(version, v.advert_interval)
        .map_err(|e| bad(format!("advert_interval: {e}")))?;
    let auth = match &v.auth_pass {
        Some(p) => {
            Auth::Simple(Password::new(p.as_bytes()).map_err(|e| bad(format!("auth_pass: {e}")))?)
        }
        None => Auth::None,
    };
    let auth_key = match &v.auth_key_file {
        Some(path) => Some(keyfile::load(path).map_err(|source| VrrpError::Key {
            router: r.name.clone(),
            source,
        })?),
        None => None,
    };
    let n = &config.node;
    Ok(RouterSpec {
        name: r.name.clone(),
        vrid,
        vips: r.vips.clone(),
        snat: r.snat.clone(),
        vlan: r.vlan,
        nat: config
            .services
            .iter()
            .any(|s| s.router == r.name && s.mode == fo_config::ForwardMode::Nat),
        peers: v.peers.clone(),
        auth,
        auth_key,
        fsm: fo_vrrp::Config {
            priority: Priority(v.priority),
            advert_interval: interval,
            preempt: v.preempt,
            preempt_delay: v.preempt_delay,
            primary_address: primary,
            // A router with a witness claims only while its peer or the witness answers.
            fence_timeout: v.witness.as_ref().map(|w| w.timeout),
            // Set by `Vrrp::start`: NAT services, and the sync is on.
            sync_then_claim: false,
            drain_grace: drain_grace(interval.to_duration(), n),
        },
        garp: GarpTiming {
            count: n.garp_count.max(1),
            interval: n.garp_interval,
            refresh: n.garp_refresh,
        },
        hooks: r.hooks.clone(),
        initial: Vec::new(),
        resume: false,
    })
}

/// The shortest drain grace ([`drain_grace`]).
const DRAIN_GRACE_MIN: Duration = Duration::from_secs(2);

/// How long a Master that yielded to a Master it heard keeps forwarding what still reaches
/// it (`fo_vrrp::Action::Drain`): the new Master's whole gratuitous ARP/NA burst
/// (`garp_count` × `garp_interval`), so that a host that missed the first frames has had
/// every one, plus three advert intervals; at least 2 s, for hosts whose neighbour entry
/// follows a gratuitous ARP only when their stack gets to it. Packets that arrive later
/// (a host that missed every frame) find no owner here and are retransmitted by TCP once
/// the host asks again and hears the new Master.
fn drain_grace(advert_interval: Duration, node: &fo_config::Node) -> Duration {
    let burst = node.garp_interval * node.garp_count.max(1);
    (burst + advert_interval * 3).max(DRAIN_GRACE_MIN)
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
async fn receive(sock: Arc<VrrpSocket>, routes: HashMap<u8, Route>, unrouted: Arc<Unrouted>) {
    // This socket's share of the "overflow" count (the kernel's counter is cumulative).
    let mut overflow_seen = 0u32;
    loop {
        match sock.recv().await {
            Ok(packet) => dispatch(packet, &routes, &unrouted, &mut overflow_seen),
            Err(e) => {
                warn!(error = %e, "receiving VRRP failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One received packet to its router's queue, or counted: too short ("length"), a VRID no
/// router has ("vrid"), the router's queue full ("queue", per router); and the kernel's
/// cumulative `SO_RXQ_OVFL` count of this socket, past `overflow_seen`, as "overflow".
fn dispatch(
    packet: socket::Received,
    routes: &HashMap<u8, Route>,
    unrouted: &Unrouted,
    overflow_seen: &mut u32,
) {
    if let Some(n) = packet.kernel_drops
        && n > *overflow_seen
    {
        unrouted
            .overflow
            .fetch_add(u64::from(n - *overflow_seen), Ordering::Relaxed);
        *overflow_seen = n;
    }
    if packet.payload.len() < 2 {
        unrouted.length.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match fo_vrrp::peek_vrid(&packet.payload).and_then(|v| routes.get(&v.get())) {
        Some(route) => {
            if route.tx.try_send(packet).is_err() {
                // The router task is behind (a flood) or gone: drop, count, and keep
                // reading so the other routers are served.
                route.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            unrouted.vrid.fetch_add(1, Ordering::Relaxed);
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
            if running {
                info!(running, "link state changed: up");
            } else {
                warn!(
                    running,
                    "link state changed: down (the routers on it go to fault)"
                );
            }
            for r in &routers {
                let _ = r
                    .send(Control::Fault {
                        source: FaultSource::Link,
                        failing,
                    })
                    .await;
            }
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(payload: &[u8], kernel_drops: Option<u32>) -> socket::Received {
        socket::Received {
            src: "192.0.2.11".parse().unwrap(),
            dst: "224.0.0.18".parse().unwrap(),
            ttl_or_hop_limit: 255,
            payload: payload.to_vec(),
            kernel_drops,
        }
    }

    #[test]
    fn unclaimed_full_and_overflowed_packets_are_counted() {
        let (tx, mut rx) = mpsc::channel(2);
        let queue_drops = Arc::new(AtomicU64::new(0));
        let routes = HashMap::from([(
            51,
            Route {
                tx,
                queue_drops: queue_drops.clone(),
            },
        )]);
        let unrouted = Unrouted::default();
        let mut seen = 0;
        let ours = [0x31, 51, 100, 1, 0, 100, 0, 0];
        // Two fit the queue of 2; three more find it full.
        for _ in 0..5 {
            dispatch(packet(&ours, None), &routes, &unrouted, &mut seen);
        }
        assert_eq!(
            queue_drops.load(Ordering::Relaxed),
            3,
            "queue full: counted per router"
        );
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
        dispatch(
            packet(&[0x31, 99, 100, 1], None),
            &routes,
            &unrouted,
            &mut seen,
        );
        dispatch(packet(&[0x31, 0], None), &routes, &unrouted, &mut seen);
        dispatch(packet(&[0x31], None), &routes, &unrouted, &mut seen);
        // The kernel's counter is cumulative: 7, then 7 again, then 10 -> 10 in all.
        dispatch(packet(&ours, Some(7)), &routes, &unrouted, &mut seen);
        dispatch(packet(&ours, Some(7)), &routes, &unrouted, &mut seen);
        dispatch(packet(&ours, Some(10)), &routes, &unrouted, &mut seen);
        let vrrp = Vrrp {
            routers: Vec::new(),
            tasks: Vec::new(),
            helpers: Vec::new(),
            unrouted: Arc::new(unrouted),
        };
        assert_eq!(
            vrrp.unrouted_drops(),
            BTreeMap::from([("vrid", 2), ("length", 1), ("overflow", 10)]),
            "VRID 99 and VRID 0 are unclaimed, a 1-byte payload is too short"
        );
    }
}
