//! One tokio task per VRRP router: it owns the pure [`fo_vrrp::Router`], feeds it the
//! adverts of its VRID, its timers (at or after their deadlines, never early) and admin
//! events, and performs the actions it returns, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fo_vrrp::packet::{MULTICAST_V4, MULTICAST_V6};
use fo_vrrp::{
    Action, Admin, AdverInterval, Advert, Auth, AuthKey, Event, Priority, Reason, ReplayGuard,
    RxMeta, SequenceGen, State, Time, Timer, Vrid,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::garp::Announcer;
use super::socket::{Received, VrrpSocket};
use crate::dataplane::SharedPlane;
use crate::hooks::{HookState, RouterHooks, RouterInfo};
use crate::locks::lock;

/// Everything a router task needs to know about its router, resolved from the config.
#[derive(Clone, Debug)]
pub struct RouterSpec {
    pub name: String,
    pub vrid: Vrid,
    pub vips: Vec<IpAddr>,
    /// SNAT addresses of the router's NAT services: owned and announced with the VIPs,
    /// never advertised.
    pub snat: Vec<IpAddr>,
    /// The router has NAT services: with sync on, a takeover waits for the table.
    pub nat: bool,
    /// Unicast peers; empty = multicast.
    pub peers: Vec<IpAddr>,
    pub auth: Auth,
    /// HMAC mode (`auth_key_file`): adverts carry and must carry fo's HMAC trailer.
    pub auth_key: Option<AuthKey>,
    pub fsm: fo_vrrp::Config,
    pub garp: GarpTiming,
    pub hooks: fo_config::Hooks,
    /// Inputs known before the router starts, applied before its Startup so that it
    /// never acts on a state it is about to leave: the operator's demote (kept in
    /// `state_file`), the gates already closed, the tracked priority.
    pub initial: Vec<Control>,
    /// The agent restarted while the pinned program served this router's VIPs (decided
    /// once, with the checks' initial states): it resumes as Master at once.
    pub resume: bool,
}

impl RouterSpec {
    /// Every address the master owns: the VIPs, then the SNAT addresses.
    pub fn owned(&self) -> Vec<IpAddr> {
        self.vips.iter().chain(&self.snat).copied().collect()
    }

    /// The advert interval as on the wire (its unit is the version).
    pub fn interval(&self) -> AdverInterval {
        self.fsm.advert_interval
    }

    /// Where adverts go: the VRRP group, or each unicast peer.
    pub fn destinations(&self) -> Vec<IpAddr> {
        if !self.peers.is_empty() {
            self.peers.clone()
        } else if self.fsm.primary_address.is_ipv6() {
            vec![IpAddr::V6(MULTICAST_V6)]
        } else {
            vec![IpAddr::V4(MULTICAST_V4)]
        }
    }
}

/// keepalived's garp_master_repeat / garp_master_delay / garp_master_refresh, from `[node]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GarpTiming {
    /// Announcements sent on becoming master (at least one).
    pub count: u32,
    /// Spacing of those.
    pub interval: Duration,
    /// One more every this long while master; `None` = off.
    pub refresh: Option<Duration>,
}

/// An administrative input to a router (control socket, health checks, link monitor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// `fo-agent promote`.
    Promote,
    /// `fo-agent demote`.
    Demote,
    /// `fo-agent resume`.
    Resume,
    /// A new effective priority (configured priority plus the weights of failing tracks).
    Priority(Priority),
    /// A fault source (e.g. "link", a gate's name) is failing or has recovered. The router
    /// is faulted while any source is failing.
    Fault { source: String, failing: bool },
    /// A reload read the key file again: the HMAC key to use from now on (`None`: HMAC
    /// mode off).
    AuthKey(Option<AuthKey>),
}

pub(super) enum Msg {
    Control(Control),
    Shutdown,
}

/// How many advert senders a router's status remembers.
const HEARD_MAX: usize = 16;

/// How many transitions a router's status keeps.
pub const HISTORY: usize = 16;

/// The last state change of a router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionRecord {
    pub from: State,
    pub to: State,
    pub reason: Reason,
    pub at: SystemTime,
    /// For a takeover after the Master went silent: from the Master_Down_Timer's expiry
    /// (detection) to the VIPs written to the data plane and the first gratuitous ARP/NA
    /// sent (served).
    pub takeover: Option<Duration>,
}

/// Counters of one router, for metrics (`fo_vrrp_adverts_total`, `fo_vrrp_dropped_total`,
/// `fo_vrrp_transitions_total`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RouterStats {
    pub adverts_in: u64,
    pub adverts_out: u64,
    /// Adverts that could not be sent (link down, no route).
    pub send_errors: u64,
    /// Gratuitous ARP / unsolicited NA rounds sent.
    pub announcements: u64,
    /// Received packets dropped, by [`fo_vrrp::DropReason::as_str`], plus "queue" (the
    /// router's receive queue was full).
    pub drops: BTreeMap<&'static str, u64>,
    /// Adverts of another Master heard while Master (both masters at once).
    pub dual_master: u64,
    /// Transitions by the state entered ([`State::as_str`]).
    pub transitions: BTreeMap<&'static str, u64>,
    /// Every takeover's time since the router started (`fo_takeover_seconds`).
    pub takeovers: TakeoverBuckets,
}

/// Upper bounds of the takeover-time buckets, in seconds: from a DSR takeover's few
/// milliseconds to a NAT sync-then-claim that waited a whole 1 s advert interval, and
/// beyond to 10 s.
pub const TAKEOVER_BOUNDS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Takeover times in [`TAKEOVER_BOUNDS`] buckets (not cumulative), their count and sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TakeoverBuckets {
    /// `counts[i]`: takeovers in (`TAKEOVER_BOUNDS[i-1]`, `TAKEOVER_BOUNDS[i]`]; the
    /// last entry, those above 10 s.
    pub counts: [u64; TAKEOVER_BOUNDS.len() + 1],
    pub count: u64,
    pub sum_ns: u64,
}

impl TakeoverBuckets {
    pub fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        let i = TAKEOVER_BOUNDS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(TAKEOVER_BOUNDS.len());
        self.counts[i] += 1;
        self.count += 1;
        self.sum_ns = self
            .sum_ns
            .saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// A router's state as the status command and metrics see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouterStatus {
    pub name: String,
    pub vrid: u8,
    pub vips: Vec<IpAddr>,
    pub state: State,
    pub configured_priority: u8,
    /// What this router advertises now (tracking, promote).
    pub effective_priority: u8,
    pub admin: Admin,
    /// "hmac-sha256 key NNNNNNNN" in HMAC mode (the key ID, never the key), else `None`.
    pub auth: Option<String>,
    /// Failing fault sources.
    pub faults: BTreeSet<String>,
    pub master_since: Option<SystemTime>,
    /// The Master this Backup hears.
    pub master: Option<IpAddr>,
    /// Every sender of a valid advert of this VRID, with when it was last heard (the
    /// fence's proof of life of a peer; its peer list in multicast mode).
    #[serde(skip)]
    pub heard: BTreeMap<IpAddr, Instant>,
    pub last_transition: Option<TransitionRecord>,
    /// The last [`HISTORY`] transitions, oldest first.
    pub history: Vec<TransitionRecord>,
    pub stats: RouterStats,
    /// Runs of each configured hook.
    pub hooks: BTreeMap<String, crate::hooks::HookStats>,
    /// Transitions whose hooks were replaced by a newer transition's.
    pub hooks_coalesced: u64,
}

/// The control socket's and the health checks' way to a router.
#[derive(Clone)]
pub struct RouterHandle {
    name: String,
    tx: mpsc::Sender<Msg>,
    status: Arc<Mutex<RouterStatus>>,
    /// Packets the receive task dropped because this router's queue was full.
    queue_drops: Arc<AtomicU64>,
    fence: Option<Arc<crate::fence::Gate>>,
    hooks: crate::hooks::HookCounters,
}

/// The router task has ended (agent shutting down).
#[derive(Debug, thiserror::Error)]
#[error("router {name} is not running")]
pub struct RouterGone {
    pub name: String,
}

impl RouterHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deliver an admin event; waits only if the router's queue is full.
    pub async fn send(&self, control: Control) -> Result<(), RouterGone> {
        self.tx
            .send(Msg::Control(control))
            .await
            .map_err(|_| RouterGone {
                name: self.name.clone(),
            })
    }

    /// The fence gate of a router with a witness.
    pub fn fence_gate(&self) -> Option<Arc<crate::fence::Gate>> {
        self.fence.clone()
    }

    /// A snapshot of state, priorities, last transition and counters.
    pub fn status(&self) -> RouterStatus {
        let mut s = lock(&self.status).clone();
        let queue = self.queue_drops.load(Ordering::Relaxed);
        if queue > 0 {
            s.stats.drops.insert("queue", queue);
        }
        s.hooks = self.hooks.by_hook();
        s.hooks_coalesced = self.hooks.coalesced();
        s
    }

    pub(super) async fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown).await;
    }
}

/// Where the router's effects go.
pub(super) struct Io {
    pub socket: Arc<VrrpSocket>,
    pub announcer: Arc<Announcer>,
    pub plane: SharedPlane,
    /// The connection-state sync's gate (sync-then-claim), when sync is on.
    pub sync: Option<crate::sync::SyncGate>,
    /// The VIPs as interface addresses (`vip_on_interface = true`), else `None`.
    pub addresses: Option<crate::net::addr::VipAddresses>,
    /// Consulted when the Master_Down_Timer fires (routers with a witness).
    pub fence: Option<Arc<crate::fence::Gate>>,
}

/// Start the task of one router. `packets` delivers the received packets with its VRID;
/// `queue_drops` counts those the receive task could not queue.
pub(super) fn spawn(
    spec: RouterSpec,
    io: Io,
    packets: mpsc::Receiver<Received>,
    queue_drops: Arc<AtomicU64>,
    epoch: Instant,
) -> Result<(RouterHandle, JoinHandle<()>), fo_vrrp::fsm::ConfigError> {
    let router = fo_vrrp::Router::new(spec.fsm.clone())?;
    let status = Arc::new(Mutex::new(RouterStatus {
        name: spec.name.clone(),
        vrid: spec.vrid.get(),
        vips: spec.vips.clone(),
        state: State::Initialize,
        configured_priority: spec.fsm.priority.0,
        effective_priority: spec.fsm.priority.0,
        admin: Admin::None,
        auth: auth_label(spec.auth_key.as_ref()),
        faults: BTreeSet::new(),
        master_since: None,
        master: None,
        heard: BTreeMap::new(),
        last_transition: None,
        history: Vec::new(),
        stats: RouterStats::default(),
        hooks: BTreeMap::new(),
        hooks_coalesced: 0,
    }));
    let (tx, rx) = mpsc::channel(64);
    let span = tracing::info_span!("vrrp", router = %spec.name);
    let hooks = RouterHooks::start(
        RouterInfo {
            name: spec.name.clone(),
            vrid: spec.vrid.get(),
            vips: spec.vips.clone(),
        },
        spec.hooks.clone(),
    );
    let handle = RouterHandle {
        name: spec.name.clone(),
        tx,
        status: status.clone(),
        queue_drops,
        fence: io.fence.clone(),
        hooks: hooks.counters(),
    };
    let driver = Driver {
        hooks,
        spec,
        router,
        io,
        status,
        epoch,
        faults: BTreeSet::new(),
        burst: None,
        next_refresh: None,
        detected_at: None,
        send_failing: false,
        warned_addresses: false,
        stats: RouterStats::default(),
        sequence: SequenceGen::new(crate::clock::unix_millis(SystemTime::now())),
        replay: ReplayGuard::default(),
        auth_warn: RateLimit::default(),
        dual_warn: RateLimit::default(),
    };
    let task = tokio::spawn(tracing::Instrument::instrument(
        driver.run(rx, packets),
        span,
    ));
    Ok((handle, task))
}

struct Driver {
    hooks: RouterHooks,
    spec: RouterSpec,
    router: fo_vrrp::Router,
    io: Io,
    status: Arc<Mutex<RouterStatus>>,
    epoch: Instant,
    faults: BTreeSet<String>,
    /// The rest of the gratuitous ARP burst after a takeover.
    burst: Option<JoinHandle<()>>,
    next_refresh: Option<Instant>,
    /// When the Master_Down_Timer being delivered expired.
    detected_at: Option<Instant>,
    send_failing: bool,
    warned_addresses: bool,
    stats: RouterStats,
    /// HMAC mode: our adverts' sequence, and the last accepted per peer.
    sequence: SequenceGen,
    replay: ReplayGuard,
    auth_warn: RateLimit,
    dual_warn: RateLimit,
}

/// At most one warning per [`RateLimit::PERIOD`], saying how many were held back.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    const PERIOD: Duration = Duration::from_secs(10);

    /// `Some(held back since the last one)` when a warning may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < Self::PERIOD => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

fn auth_label(key: Option<&AuthKey>) -> Option<String> {
    key.map(|k| format!("hmac-sha256 key {:08x}", k.id()))
}

/// A transition waiting to be logged once the actions of its batch are done.
struct Pending {
    from: State,
    to: State,
    reason: Reason,
    at: SystemTime,
    takeover: Option<Duration>,
}

impl Driver {
    async fn run(
        mut self,
        mut control: mpsc::Receiver<Msg>,
        mut packets: mpsc::Receiver<Received>,
    ) {
        info!(
            vrid = self.spec.vrid.get(),
            priority = self.spec.fsm.priority.0,
            interval = %self.spec.interval(),
            source = %self.spec.fsm.primary_address,
            destinations = ?self.spec.destinations(),
            vips = ?self.spec.vips,
            "VRRP router starting"
        );
        for c in std::mem::take(&mut self.spec.initial) {
            if c == Control::Demote {
                info!(
                    "demoted by the operator before this start (state_file): staying backup until resume"
                );
            }
            self.control(c);
        }
        // An agent restarted while this node served the VIPs (kill, upgrade) resumes
        // as Master at once, before its peer's Master_Down_Timer runs out (not when
        // demoted: then the FSM treats it as an ordinary Startup).
        let serving = self.spec.resume && !self.spec.vips.is_empty();
        if serving {
            info!("the data plane still serves this router's VIPs: resuming as master");
        }
        self.handle(
            Instant::now(),
            if serving {
                Event::Restart
            } else {
                Event::Startup
            },
        );
        loop {
            let timer = self
                .router
                .next_deadline()
                .map(|(which, at)| (which, self.instant(at)));
            let refresh = self.next_refresh;
            tokio::select! {
                biased;
                msg = control.recv() => match msg {
                    Some(Msg::Control(c)) => self.control(c),
                    Some(Msg::Shutdown) | None => {
                        self.handle(Instant::now(), Event::Shutdown);
                        break;
                    }
                },
                () = sleep_until(timer.map(|(_, at)| at)) => {
                    let Some((which, at)) = timer else { continue };
                    let now = Instant::now();
                    // Never early: sleep_until may round, so check and sleep again.
                    if now < at {
                        continue;
                    }
                    // Adverts already queued arrived before this turn: hear them first (a
                    // Master's late advert re-arms Master_Down_Timer, and the stale
                    // TimerFired is then ignored), but at most one queue's worth, so a
                    // flood cannot starve the timer.
                    for _ in 0..super::ROUTER_QUEUE {
                        match packets.try_recv() {
                            Ok(p) => self.packet(p),
                            Err(_) => break,
                        }
                    }
                    if which == Timer::MasterDown
                        && self.router.state() == State::Backup
                        && self.io.fence.as_ref().is_some_and(|g| g.cut_off(now))
                    {
                        // Neither the peer nor the witness answers: this node may be the
                        // one cut off. Fence instead of claiming (the fence task lifts it).
                        warn!("Master_Down_Timer expired, but neither peer nor witness answers: not claiming the VIPs");
                        self.control(Control::Fault {
                            source: crate::fence::FENCED.to_string(),
                            failing: true,
                        });
                        continue;
                    }
                    if which == Timer::MasterDown {
                        self.detected_at = Some(at);
                    }
                    self.handle(now, Event::TimerFired { which });
                    self.detected_at = None;
                }
                () = sleep_until(refresh) => self.refresh(),
                // Last: a flood of packets cannot starve the timers (a due timer wins the
                // next turn, after at most one queue's worth of packets), and the queue is
                // bounded (full: dropped, counted "queue").
                Some(packet) = packets.recv() => self.packet(packet),
            }
        }
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        // Let the hooks of the last transitions (notify STOP) run, within their timeout.
        let _ = tokio::time::timeout(self.spec.hooks.timeout, self.hooks.flush()).await;
        info!("VRRP router stopped");
    }

    fn instant(&self, t: Time) -> Instant {
        self.epoch + t.since_epoch()
    }

    fn time(&self, now: Instant) -> Time {
        Time::from_epoch(now.saturating_duration_since(self.epoch))
    }

    fn control(&mut self, c: Control) {
        let event = match c {
            Control::Promote => Event::AdminPromote,
            Control::Demote => Event::AdminDemote,
            Control::Resume => Event::AdminResume,
            Control::Priority(p) => Event::PriorityChanged { effective: p },
            Control::AuthKey(key) => {
                if key != self.spec.auth_key {
                    match &key {
                        Some(k) => {
                            info!(key_id = %format!("{:08x}", k.id()), "HMAC key (re)loaded")
                        }
                        None => info!("HMAC mode off"),
                    }
                    self.spec.auth_key = key;
                    lock(&self.status).auth = auth_label(self.spec.auth_key.as_ref());
                }
                return;
            }
            Control::Fault { source, failing } => {
                let was = !self.faults.is_empty();
                if failing {
                    if self.faults.insert(source.clone()) {
                        warn!(source = %source, "fault set");
                    }
                } else if self.faults.remove(&source) {
                    info!(source = %source, "fault cleared");
                }
                match (was, self.faults.is_empty()) {
                    (false, false) => Event::FaultSet,
                    (true, true) => Event::FaultCleared,
                    _ => {
                        self.publish();
                        return;
                    }
                }
            }
        };
        self.handle(Instant::now(), event);
    }

    fn packet(&mut self, p: Received) {
        let meta = RxMeta {
            src: p.src,
            dst: p.dst,
            ttl_or_hop_limit: p.ttl_or_hop_limit,
            version: self.spec.interval().version(),
            vrid: self.spec.vrid,
            interval: self.spec.interval(),
            auth: self.spec.auth,
            peers: &self.spec.peers,
        };
        let decoded = match &self.spec.auth_key {
            Some(key) => {
                fo_vrrp::decode_authenticated(&p.payload, &meta, key).and_then(|(advert, seq)| {
                    self.replay.check(p.src, seq)?;
                    Ok((advert, Some(seq)))
                })
            }
            None => fo_vrrp::decode(&p.payload, &meta).map(|a| (a, None)),
        };
        match decoded {
            Ok((advert, seq)) => {
                if let Some(seq) = seq {
                    self.replay.accept(p.src, seq);
                }
                self.stats.adverts_in += 1;
                {
                    let mut st = lock(&self.status);
                    st.heard.insert(p.src, Instant::now());
                    // A segment has a few VRRP speakers; keep forged sources from growing it.
                    if st.heard.len() > HEARD_MAX
                        && let Some(oldest) =
                            st.heard.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a)
                    {
                        st.heard.remove(&oldest);
                    }
                }
                if !self.warned_addresses && !same_set(&advert.addresses, &self.spec.vips) {
                    self.warned_addresses = true;
                    warn!(from = %p.src, theirs = ?advert.addresses, ours = ?self.spec.vips,
                        "the peer advertises other virtual addresses: check both configurations");
                }
                let dual = self.router.state() == State::Master
                    && advert.priority != Priority::STOP
                    && p.src != self.spec.fsm.primary_address;
                let now = Instant::now();
                self.handle(now, Event::advert(p.src, &advert));
                if dual {
                    self.dual_master(now, p.src, advert.priority);
                }
            }
            Err(reason) => {
                *self.stats.drops.entry(reason.as_str()).or_default() += 1;
                if matches!(reason.as_str(), "auth" | "replay") {
                    if let Some(held) = self.auth_warn.allow(Instant::now()) {
                        error!(from = %p.src, %reason, held_back = held,
                            "unauthenticated advert ignored (one warning per 10 s; all are counted in fo_vrrp_dropped_total)");
                    }
                } else {
                    debug!(from = %p.src, %reason, "advert dropped");
                }
                self.publish();
            }
        }
    }

    /// Both masters at once: we were Master and heard another Master's advert. The state
    /// machine has already applied RFC 5798 §6.4.3 (the lower yields; a higher or equal
    /// one with a higher address wins, else we answered at once so it yields).
    fn dual_master(&mut self, now: Instant, peer: IpAddr, theirs: Priority) {
        self.stats.dual_master += 1;
        let ours = self.router.priority();
        let resolution = if self.router.state() == State::Master {
            "we stay master and answered at once: the peer yields on hearing it"
        } else {
            "we yield to the peer"
        };
        if let Some(held) = self.dual_warn.allow(now) {
            warn!(%peer, their_priority = theirs.0, our_priority = ours.0, held_back = held,
                "dual master: another master advertises for this router; {resolution}");
        }
        self.publish();
    }

    /// Feed one event and perform the actions, in order.
    fn handle(&mut self, now: Instant, event: Event) {
        let actions = self.router.handle(self.time(now), event);
        let mut pending: Option<Pending> = None;
        for action in actions {
            match action {
                Action::Transition { from, to, reason } => {
                    *self.stats.transitions.entry(to.as_str()).or_default() += 1;
                    pending = Some(Pending {
                        from,
                        to,
                        reason,
                        at: SystemTime::now(),
                        takeover: None,
                    });
                }
                Action::SetOwnership { owned } => self.set_ownership(owned),
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::SendGratuitous => {
                    self.announce_burst();
                    if let (Some(p), Some(detected)) = (pending.as_mut(), self.detected_at)
                        && p.to == State::Master
                    {
                        let took = detected.elapsed();
                        p.takeover = Some(took);
                        self.stats.takeovers.observe(took);
                    }
                }
                Action::ArmTimer { .. } | Action::CancelTimer { .. } => {
                    // Timers are read back from the router (`next_deadline`) on every turn.
                }
                Action::ClaimRefused { .. } | Action::AwaitSync { .. } => {
                    // Not emitted yet: the router's fence_timeout is None and sync_then_claim
                    // false while this driver fences at Master_Down (see `run`) and waits for
                    // sync in `set_ownership` itself.
                }
                Action::DualMaster { .. } => {
                    // Counted and warned by `packet` (`dual_master`) until the driver acts
                    // on this action instead.
                }
                Action::RunHook { state } => {
                    let from = pending.as_ref().map_or(State::Initialize, |p| p.from);
                    self.hooks.transition(
                        hook_state(from),
                        hook_state(state),
                        self.router.priority().0,
                    );
                }
            }
        }
        if let Some(p) = pending {
            if p.to == State::Initialize {
                // `stop`, then `notify` with STOP.
                self.hooks.transition(
                    hook_state(p.from),
                    HookState::Stop,
                    self.router.priority().0,
                );
            }
            self.log_transition(&p);
            let record = TransitionRecord {
                from: p.from,
                to: p.to,
                reason: p.reason,
                at: p.at,
                takeover: p.takeover,
            };
            let mut st = lock(&self.status);
            if st.history.len() == HISTORY {
                st.history.remove(0);
            }
            st.history.push(record.clone());
            st.last_transition = Some(record);
        }
        self.publish();
    }

    /// One entry per transition, with `from`, `to` and `reason` fields (journald:
    /// `FO_FROM`, `FO_TO`, `FO_REASON`, and `FO_ROUTER` from the router's span); a
    /// takeover adds `takeover_ms`. Entering fault is a warning: this node cannot serve.
    fn log_transition(&self, p: &Pending) {
        let (from, to, reason) = (p.from.as_str(), p.to.as_str(), p.reason.as_str());
        match p.takeover {
            Some(t) => info!(
                from = %from, to = %to, reason = %reason,
                takeover_ms = format_args!("{:.3}", t.as_secs_f64() * 1e3),
                "VRRP transition: took over, VIPs served"
            ),
            None if p.to == State::Master => {
                info!(from = %from, to = %to, reason = %reason, "VRRP transition: VIPs served")
            }
            None if p.to == State::Fault => {
                warn!(from = %from, to = %to, reason = %reason, faults = ?self.faults, "VRRP transition")
            }
            None => info!(from = %from, to = %to, reason = %reason, "VRRP transition"),
        }
    }

    /// The data plane first: with the lease set to Master_Down_Interval, a dead agent's
    /// VIPs stop being answered about when a peer takes them over.
    fn set_ownership(&mut self, owned: bool) {
        if owned && self.spec.nat {
            self.wait_for_sync();
        }
        let lease = self.router.master_down_interval();
        if let Err(e) = self
            .io
            .plane
            .lock()
            .set_owned(&self.spec.owned(), owned, lease)
        {
            error!(error = %e, owned, "writing VIP ownership to the data plane failed");
        }
        if !owned {
            if let Some(b) = self.burst.take() {
                b.abort();
            }
            self.next_refresh = None;
        }
        if let Some(a) = &self.io.addresses {
            a.set(owned);
        }
    }

    /// Sync-then-claim: before serving the VIPs of NAT services, wait (at most one
    /// advert interval) until the connection table holds what the peers sent, so the
    /// connections the old master translated continue here.
    fn wait_for_sync(&self) {
        let Some(gate) = &self.io.sync else {
            return;
        };
        if gate.current() {
            info!("connection table current: claiming the VIPs");
            return;
        }
        let bound = self.spec.interval().to_duration();
        let (current, waited) = tokio::task::block_in_place(|| gate.wait_current(bound));
        if current {
            info!(
                waited_ms = waited.as_millis() as u64,
                "connection table current: claiming the VIPs"
            );
        } else {
            warn!(
                waited_ms = waited.as_millis() as u64,
                "connection table still not current after one advert interval: claiming the VIPs anyway"
            );
        }
    }

    fn send_advert(&mut self, priority: Priority) {
        let advert = Advert {
            vrid: self.spec.vrid,
            priority,
            max_adver_interval: self.spec.interval(),
            addresses: self.spec.vips.clone(),
            auth: self.spec.auth,
        };
        let src = self.spec.fsm.primary_address;
        let mut failed = None;
        for dst in self.spec.destinations() {
            let sent = advert
                .encode(src, dst)
                .map(|msg| match &self.spec.auth_key {
                    Some(key) => {
                        fo_vrrp::auth::seal(&msg, src, dst, key, self.sequence.next_sequence())
                    }
                    None => msg,
                })
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                .and_then(|bytes| self.io.socket.send(&bytes, src, dst));
            match sent {
                Ok(()) => self.stats.adverts_out += 1,
                Err(e) => {
                    self.stats.send_errors += 1;
                    failed = Some((dst, e));
                }
            }
        }
        // Log a failing link once, not at every advert.
        match (failed, self.send_failing) {
            (Some((dst, e)), false) => {
                warn!(%dst, error = %e, "sending the advert failed (logged once until it works again)");
                self.send_failing = true;
            }
            (None, true) => {
                info!("sending adverts works again");
                self.send_failing = false;
            }
            _ => {}
        }
    }

    /// The first announcement now; the rest of the burst spaced out by a task; then the
    /// periodic refresh while master.
    fn announce_burst(&mut self) {
        self.announce_once();
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        let GarpTiming {
            count,
            interval,
            refresh,
        } = self.spec.garp;
        if count > 1 {
            let announcer = self.io.announcer.clone();
            let vips = self.spec.owned();
            self.burst = Some(tokio::spawn(async move {
                for _ in 1..count {
                    tokio::time::sleep(interval).await;
                    if let Err(e) = announcer.announce(&vips) {
                        debug!(error = %e, "gratuitous ARP/NA failed");
                    }
                }
            }));
            self.stats.announcements += u64::from(count - 1);
        }
        self.next_refresh = refresh.map(|r| Instant::now() + r);
    }

    fn announce_once(&mut self) {
        match self.io.announcer.announce(&self.spec.owned()) {
            Ok(()) => self.stats.announcements += 1,
            Err(e) => warn!(error = %e, "gratuitous ARP/NA failed"),
        }
    }

    fn refresh(&mut self) {
        if self.router.state() == State::Master {
            self.announce_once();
            self.next_refresh = self.spec.garp.refresh.map(|r| Instant::now() + r);
        } else {
            self.next_refresh = None;
        }
        self.publish();
    }

    /// Copy the router's state and the counters where handles can read them.
    fn publish(&self) {
        let mut s = lock(&self.status);
        s.state = self.router.state();
        s.effective_priority = self.router.priority().0;
        s.admin = self.router.admin();
        s.faults = self.faults.clone();
        s.master_since = self.router.master_since().map(|t| {
            let ago = self
                .time(Instant::now())
                .since_epoch()
                .saturating_sub(t.since_epoch());
            SystemTime::now() - ago
        });
        s.master = self.router.master().map(|m| m.address);
        s.stats = self.stats.clone();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn hook_state(s: State) -> HookState {
    match s {
        State::Initialize => HookState::Initialize,
        State::Backup => HookState::Backup,
        State::Master => HookState::Master,
        State::Fault => HookState::Fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_to_one_per_period_and_count_what_was_held() {
        let mut l = RateLimit::default();
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0), "the first one is logged");
        for i in 1..=5 {
            assert_eq!(
                l.allow(t0 + Duration::from_secs(i)),
                None,
                "within the period"
            );
        }
        assert_eq!(
            l.allow(t0 + RateLimit::PERIOD),
            Some(5),
            "after the period: logged, with the 5 held back"
        );
        assert_eq!(l.allow(t0 + RateLimit::PERIOD), None);
    }

    #[test]
    fn takeovers_land_in_their_bucket() {
        let mut t = TakeoverBuckets::default();
        for ms in [1, 10, 11, 300, 1000, 20_000] {
            t.observe(Duration::from_millis(ms));
        }
        // (.., 10 ms], (10, 25], .., (0.5 s, 1 s], .., above 10 s.
        assert_eq!(t.counts, [2, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1]);
        assert_eq!(t.count, 6);
        assert_eq!(t.sum_ns, 21_322_000_000);
    }

    #[test]
    fn status_shows_the_key_id_never_the_key() {
        let key = AuthKey::new(b"0123456789abcdef0123456789abcdef").expect("key");
        let label = auth_label(Some(&key)).expect("HMAC mode");
        assert_eq!(label, format!("hmac-sha256 key {:08x}", key.id()));
        assert!(!label.contains("0123456789abcdef"));
        assert_eq!(auth_label(None), None);
    }
}
