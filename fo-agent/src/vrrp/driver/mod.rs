//! One tokio task per VRRP router: it owns the pure [`fo_vrrp::Router`], feeds it the
//! adverts of its VRID, its timers (at or after their deadlines, never early) and admin
//! events, and performs the actions it returns, in order.
//!
//! This file is the task's state and loop; `io` is where its effects go (the socket, the
//! data plane, gratuitous ARP/NA), `status` what it shows (status, metrics, logs).

mod io;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fo_vrrp::packet::{MULTICAST_V4, MULTICAST_V6};
use fo_vrrp::{
    Action, Admin, AdverInterval, Auth, AuthKey, Event, FaultSource, Priority, ReplayGuard,
    SequenceGen, State, Time, Timer, Vrid,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::socket::Received;
use crate::hooks::{HookState, RouterHooks, RouterInfo};
use crate::locks::{Flag, LastSeen, lock};
pub(in crate::vrrp) use io::Io;
use io::{RateLimit, sleep_until};
pub use status::{
    HISTORY, RouterStats, RouterStatus, TAKEOVER_BOUNDS, TakeoverBuckets, TransitionRecord,
};
use status::{Pending, auth_label};

/// Everything a router task needs to know about its router, resolved from the config.
#[derive(Clone, Debug)]
pub struct RouterSpec {
    pub name: String,
    pub vrid: Vrid,
    pub vips: Vec<IpAddr>,
    /// SNAT addresses of the router's NAT services: owned and announced with the VIPs,
    /// never advertised.
    pub snat: Vec<IpAddr>,
    /// The 802.1Q VLAN the VIPs live on (`vlan` in the config): announcements carry its tag.
    pub vlan: Option<u16>,
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
    /// `fo-agent demote --force`: release at once, whether or not a peer takes over.
    DemoteNow,
    /// `fo-agent resume`.
    Resume,
    /// A new effective priority (configured priority plus the weights of failing tracks).
    Priority(Priority),
    /// A fault source (the link, a gate, the fence, …) is failing or has recovered. The
    /// router is faulted while any source is failing.
    Fault { source: FaultSource, failing: bool },
    /// A reload read the key file again: the HMAC key to use from now on (`None`: HMAC
    /// mode off).
    AuthKey(Option<AuthKey>),
}

pub(super) enum Msg {
    Control(Control),
    /// An operator's promote, demote or resume: answered once the router has taken it, or
    /// refused with the reason (a promote on a node not ready to serve).
    Admin(Control, tokio::sync::oneshot::Sender<Result<(), String>>),
    Shutdown,
}

/// The control socket's and the health checks' way to a router.
#[derive(Clone)]
pub struct RouterHandle {
    name: String,
    tx: mpsc::Sender<Msg>,
    status: Arc<Mutex<RouterStatus>>,
    /// Packets the receive task dropped because this router's queue was full.
    queue_drops: Arc<AtomicU64>,
    liveness: Option<Arc<LastSeen>>,
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

    /// Deliver an operator's promote, demote or resume and wait until the router has taken
    /// it. A promote is refused, with the reason, while the router is not ready to serve
    /// (a fault source failing: gates, link…; with sync-then-claim, the connection table
    /// not current): make before break, never a claim queued until it would break.
    pub async fn admin(&self, control: Control) -> Result<(), String> {
        let gone = || {
            RouterGone {
                name: self.name.clone(),
            }
            .to_string()
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(Msg::Admin(control, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Where the fence task of a router with a witness reports the last answer of the
    /// peer or the witness (the router reads it at Master_Down).
    pub fn liveness(&self) -> Option<Arc<LastSeen>> {
        self.liveness.clone()
    }

    pub(super) async fn shutdown(&self) {
        let _ = self.tx.send(Msg::Shutdown).await;
    }
}

/// Start the task of one router on `timing` (the VRRP timing thread; its hooks' queue on
/// the caller's runtime). `packets` delivers the received packets with its VRID;
/// `queue_drops` counts those the receive task could not queue.
pub(super) fn spawn(
    spec: RouterSpec,
    io: Io,
    packets: mpsc::Receiver<Received>,
    queue_drops: Arc<AtomicU64>,
    epoch: Instant,
    timing: &tokio::runtime::Handle,
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
        draining: false,
        handover: None,
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
        liveness: io.claim.liveness.clone(),
        hooks: hooks.counters(),
    };
    let driver = Driver {
        hooks,
        spec,
        router,
        io,
        status,
        epoch,
        fed: Fed::default(),
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
    let task = timing.spawn(tracing::Instrument::instrument(
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
    /// The claim inputs as last told to the router.
    fed: Fed,
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
        // demoted or faulted: then the FSM treats it as an ordinary Startup).
        let serving = self.spec.resume;
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
                    Some(Msg::Admin(c, reply)) => {
                        let _ = reply.send(self.admin(c));
                    }
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
        // Let the hooks of the last transitions (stop, notify STOP) run, each within its
        // timeout.
        let bound = crate::hooks::stop_bound(self.spec.hooks.timeout);
        let _ = tokio::time::timeout(bound, self.hooks.flush()).await;
        info!("VRRP router stopped");
    }

    fn instant(&self, t: Time) -> Instant {
        self.epoch + t.since_epoch()
    }

    fn time(&self, now: Instant) -> Time {
        Time::from_epoch(now.saturating_duration_since(self.epoch))
    }

    /// An operator's promote, demote or resume. A promote on a router that may not serve
    /// now is refused ([`fo_vrrp::Router::not_ready`], with the claim inputs read now).
    fn admin(&mut self, c: Control) -> Result<(), String> {
        if c == Control::Promote {
            let now = Instant::now();
            self.feed_claim_inputs(now);
            if let Some(why) = self.router.not_ready() {
                warn!(%why, "promote refused");
                return Err(why.to_string());
            }
        }
        if matches!(
            c,
            Control::Promote | Control::Demote | Control::DemoteNow | Control::Resume
        ) {
            // A new operator decision: the last handover's outcome is history.
            lock(&self.status).handover = None;
        }
        self.control(c);
        Ok(())
    }

    fn control(&mut self, c: Control) {
        let event = match c {
            Control::Promote => Event::AdminPromote,
            Control::Demote => Event::AdminDemote,
            Control::DemoteNow => Event::AdminDemoteNow,
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
                match (failing, self.router.faults().contains(&source)) {
                    (true, false) => warn!(source = %source, "fault set"),
                    (false, true) => info!(source = %source, "fault cleared"),
                    _ => {}
                }
                Event::Fault { source, failing }
            }
        };
        self.handle(Instant::now(), event);
    }

    /// Feed one event and perform the actions, in order. The claim inputs are brought up
    /// to date first, so the router decides on what they say now.
    fn handle(&mut self, now: Instant, event: Event) {
        self.feed_claim_inputs(now);
        let actions = self.router.handle(self.time(now), event);
        let mut pending: Option<Pending> = None;
        let mut dual = None;
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
                Action::Drain { grace } => self.drain(grace),
                Action::HandoverFailed { waited } => {
                    let message = format!(
                        "no peer took over within {} ms; still master",
                        waited.as_millis()
                    );
                    warn!(
                        "demote: {message}; the demote is cancelled (demote again once the peer is ready, or demote --force to release without a taker)"
                    );
                    lock(&self.status).handover = Some(message);
                }
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
                Action::ClaimRefused { source } => {
                    if source == FaultSource::Fenced {
                        warn!(
                            "Master_Down_Timer expired, but neither peer nor witness answers: not claiming the VIPs"
                        );
                    } else {
                        warn!(source = %source, "Master_Down_Timer expired: not claiming the VIPs");
                    }
                    warn!(source = %source, "fault set");
                }
                Action::AwaitSync { bound } => self.await_sync(bound),
                Action::DualMaster {
                    peer,
                    priority,
                    stays,
                } => {
                    self.stats.dual_master += 1;
                    // Warned after the transition it may have caused is logged.
                    dual = Some((peer, priority, stays));
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
        if let Some((peer, theirs, stays)) = dual {
            self.warn_dual_master(now, peer, theirs, stays);
        }
        self.publish();
    }

    /// Tell the router what changed among its claim inputs since it was last told: the
    /// last answer of the peer or the witness, and whether the connection table is
    /// current. Read at the instant of the event they may decide (no channel between).
    fn feed_claim_inputs(&mut self, now: Instant) {
        let mut events = Vec::new();
        let alive = self.io.claim.liveness.as_ref().and_then(|l| l.get());
        if alive.is_some() && alive != self.fed.alive {
            self.fed.alive = alive;
            events.extend(alive.map(|at| Event::PeerAlive { at: self.time(at) }));
        }
        if let Some(current) = &self.io.claim.table_current {
            let pending = !current.get();
            if self.fed.sync_pending != Some(pending) {
                self.fed.sync_pending = Some(pending);
                events.push(Event::SyncPending { pending });
            }
        }
        for event in events {
            let actions = self.router.handle(self.time(now), event);
            debug_assert!(actions.is_empty(), "an input acts only on a later event");
        }
    }
}

/// What the router was last told of its claim inputs.
#[derive(Default)]
struct Fed {
    alive: Option<Instant>,
    sync_pending: Option<bool>,
}

/// The inputs of fo's claim rules (`fo_vrrp::fsm::claim`) that other tasks keep: read
/// before every event the router handles.
#[derive(Default)]
pub(in crate::vrrp) struct ClaimInputs {
    /// The last answer of the peer or the witness, reported by the fence task (routers
    /// with a witness; the router's `fence_timeout` is the witness's timeout).
    pub liveness: Option<Arc<LastSeen>>,
    /// Whether the connection table holds what the peers sent, set by the sync task
    /// (routers with NAT services, when sync is on: `sync_then_claim`).
    pub table_current: Option<Flag>,
}

fn hook_state(s: State) -> HookState {
    match s {
        State::Initialize => HookState::Initialize,
        State::Backup => HookState::Backup,
        State::Master => HookState::Master,
        State::Fault => HookState::Fault,
    }
}
