//! One virtual router's state machine (RFC 5798 §6.4): [`Router::handle`] and the rules
//! of each state. The module docs of [`crate::fsm`] list where it goes beyond the RFC.
//!
//! One piece (about 600 lines) on purpose: every rule reads and writes the same `Router`
//! fields, and the states' rules are meant to be read side by side against §6.4. The
//! vocabulary is in `events.rs`, fo's claim inputs in `claim.rs`, the arithmetic in
//! [`crate::timing`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use super::claim::{FaultSource, NotReady};
use super::events::{Action, Admin, Event, Reason, State, Time, Timer};
use crate::timing::{master_down_interval, skew_time};
use crate::types::{AdverInterval, Priority};

/// The parameters of one virtual router (RFC 5798 §6.1) that the state machine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Configured priority: 1..=254, or 255 for the address owner.
    pub priority: Priority,
    /// Advertisement_Interval; its unit gives the version (centiseconds: v3, seconds: v2).
    pub advert_interval: AdverInterval,
    /// Preempt_Mode.
    pub preempt: bool,
    /// Wait before preempting a lower priority Master (zero: at once, as the RFC).
    pub preempt_delay: Duration,
    /// Our primary address on the interface: the source of our adverts, and the tie-breaker
    /// between equal priorities (RFC 5798 §6.4.3).
    pub primary_address: IpAddr,
    /// fo's fencing: when set, a Backup whose Master_Down_Timer fires claims only if the peer
    /// or the witness was heard ([`Event::PeerAlive`]) within this long; otherwise it refuses
    /// ([`Action::ClaimRefused`]) and goes to Fault with [`FaultSource::Fenced`].
    pub fence_timeout: Option<Duration>,
    /// fo's sync-then-claim: the router has NAT services and connection sync is on, so each
    /// entry to Master first waits for the table ([`Action::AwaitSync`]).
    pub sync_then_claim: bool,
    /// fo's make-before-break: how long a Master that yielded to a Master it heard keeps
    /// forwarding what still reaches it, without answering ARP/ND ([`Action::Drain`]).
    pub drain_grace: Duration,
}

/// Why a [`Config`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Priority 0 is reserved for "stopping".
    #[error("priority 0 is reserved; use 1..=254, or 255 for the address owner")]
    ZeroPriority,
    /// Interval zero or too large for its field.
    #[error("advertisement interval {interval} does not fit the packet")]
    Interval {
        /// The rejected interval.
        interval: AdverInterval,
    },
}

/// The Master as last heard by a Backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MasterInfo {
    /// Its primary address.
    pub address: IpAddr,
    /// Its advertised priority.
    pub priority: Priority,
}

/// A received advertisement: its sender and the interval it carries.
#[derive(Clone, Copy, Debug)]
struct Heard {
    sender: MasterInfo,
    interval: AdverInterval,
}

/// One virtual router's state machine.
#[derive(Clone, Debug)]
pub struct Router {
    config: Config,
    state: State,
    /// Effective priority from tracking (starts at the configured one).
    tracked: Priority,
    admin: Admin,
    /// The failing fault sources; the router is in Fault while any is.
    faults: BTreeSet<FaultSource>,
    /// Master_Adver_Interval (RFC 5798 §6.1): adopted from the Master in v3.
    master_adver_interval: AdverInterval,
    master: Option<MasterInfo>,
    deadlines: [Option<Time>; 5],
    master_since: Option<Time>,
    /// A Master already answered a lower-priority advert since its last Adver_Timer.
    answered: bool,
    /// The last time the peer or the witness answered (fencing); starts at the epoch, which
    /// gives one `fence_timeout` of grace after start.
    last_alive: Time,
    /// The NAT connection table lacks what the peers hold (sync-then-claim).
    sync_pending: bool,
    /// When the demote's handover in progress began.
    handover_from: Time,
}

impl Router {
    /// A router in Initialize; send it [`Event::Startup`] to begin.
    pub fn new(config: Config) -> Result<Router, ConfigError> {
        if config.priority == Priority::STOP {
            return Err(ConfigError::ZeroPriority);
        }
        if !config.advert_interval.is_valid() {
            return Err(ConfigError::Interval {
                interval: config.advert_interval,
            });
        }
        Ok(Router {
            tracked: config.priority,
            master_adver_interval: config.advert_interval,
            sync_pending: config.sync_then_claim,
            config,
            state: State::Initialize,
            admin: Admin::None,
            faults: BTreeSet::new(),
            last_alive: Time::ZERO,
            master: None,
            deadlines: [None; 5],
            master_since: None,
            answered: false,
            handover_from: Time::ZERO,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The priority this router advertises and compares with: 254 while promoted (255 for
    /// the owner), else the effective priority from tracking.
    pub fn priority(&self) -> Priority {
        if self.admin == Admin::Promoted && !self.tracked.is_owner() {
            Priority::MAX_BACKUP
        } else {
            self.tracked
        }
    }

    /// The effective priority from tracking, ignoring a promote.
    pub fn tracked_priority(&self) -> Priority {
        self.tracked
    }

    /// The administrative override in force.
    pub fn admin(&self) -> Admin {
        self.admin
    }

    /// Whether a local fault is set.
    pub fn is_faulted(&self) -> bool {
        !self.faults.is_empty()
    }

    /// The fault sources failing now, in order.
    pub fn faults(&self) -> &BTreeSet<FaultSource> {
        &self.faults
    }

    /// Master_Adver_Interval: the Master's interval as last adopted (v3), else ours.
    pub fn master_adver_interval(&self) -> AdverInterval {
        self.master_adver_interval
    }

    /// Skew_Time with the current priority and Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        skew_time(self.priority(), self.master_adver_interval)
    }

    /// Master_Down_Interval with the current priority and Master_Adver_Interval.
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.priority(), self.master_adver_interval)
    }

    /// The Master this Backup last heard (None in other states, or after a priority 0).
    pub fn master(&self) -> Option<MasterInfo> {
        self.master
    }

    /// When this router last became Master, while it is Master.
    pub fn master_since(&self) -> Option<Time> {
        self.master_since
    }

    /// The deadline of an armed timer.
    pub fn deadline(&self, which: Timer) -> Option<Time> {
        self.deadlines[which.index()]
    }

    /// A demoted Master is handing over: advertising priority 0, still serving, until it
    /// hears the new Master or [`Timer::Handover`] fires.
    pub fn handing_over(&self) -> bool {
        self.deadline(Timer::Handover).is_some()
    }

    /// A Master that yielded still forwards what reaches it ([`Action::Drain`]), until
    /// [`Timer::Drain`] fires.
    pub fn draining(&self) -> bool {
        self.deadline(Timer::Drain).is_some()
    }

    /// Why this router may not take mastership now, if it may not (make before break: a
    /// promote is refused, with this reason, rather than queued). A Master is ready.
    pub fn not_ready(&self) -> Option<NotReady> {
        if self.state == State::Master {
            return None;
        }
        if self.is_faulted() {
            return Some(NotReady::Faulted(self.faults.iter().cloned().collect()));
        }
        if self.config.sync_then_claim && self.sync_pending {
            return Some(NotReady::SyncPending);
        }
        None
    }

    /// The earliest armed timer, if any.
    pub fn next_deadline(&self) -> Option<(Timer, Time)> {
        Timer::ALL
            .into_iter()
            .filter_map(|t| self.deadline(t).map(|d| (t, d)))
            .min_by_key(|&(t, d)| (d, t))
    }

    /// Feeds one event; returns the effects to perform, in order.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => {
                if self.state == State::Initialize {
                    self.master_adver_interval = self.config.advert_interval;
                    self.start(now, Reason::Startup, &mut out);
                }
            }
            Event::Restart => {
                if self.state == State::Initialize {
                    self.master_adver_interval = self.config.advert_interval;
                    if self.is_faulted() || self.admin == Admin::Demoted {
                        self.start(now, Reason::Startup, &mut out);
                    } else {
                        self.enter_master(now, Reason::Resumed, &mut out);
                    }
                }
            }
            Event::Shutdown => self.shutdown(&mut out),
            Event::AdvertReceived {
                from,
                priority,
                interval,
            } => {
                let sender = MasterInfo {
                    address: from,
                    priority,
                };
                self.on_advert(now, Heard { sender, interval }, &mut out)
            }
            Event::TimerFired { which } => self.on_timer(now, which, &mut out),
            Event::PriorityChanged { effective } => self.on_priority(effective, &mut out),
            Event::FaultSet => self.set_fault(now, FaultSource::External, true, &mut out),
            Event::FaultCleared => self.set_fault(now, FaultSource::External, false, &mut out),
            Event::Fault { source, failing } => self.set_fault(now, source, failing, &mut out),
            Event::PeerAlive { at } => self.last_alive = self.last_alive.max(at),
            Event::SyncPending { pending } => self.sync_pending = pending,
            Event::AdminPromote => self.on_promote(now, &mut out),
            Event::AdminDemote => self.on_demote(now, &mut out),
            Event::AdminResume => self.on_resume(now, &mut out),
        }
        out
    }

    /// fo's fencing: neither the peer nor the witness has answered for `fence_timeout`.
    fn cut_off(&self, now: Time) -> bool {
        self.config.fence_timeout.is_some_and(|timeout| {
            now.since_epoch()
                .saturating_sub(self.last_alive.since_epoch())
                >= timeout
        })
    }

    /// fo: a failing source puts a Backup or Master in Fault; when the last one clears, a
    /// router in Fault starts again as on Startup.
    fn set_fault(&mut self, now: Time, source: FaultSource, failing: bool, out: &mut Vec<Action>) {
        if failing {
            self.faults.insert(source);
            if matches!(self.state, State::Backup | State::Master) {
                self.enter_fault(Reason::Fault, out);
            }
        } else {
            self.faults.remove(&source);
            if self.faults.is_empty() && self.state == State::Fault {
                self.master_adver_interval = self.config.advert_interval;
                self.start(now, Reason::FaultCleared, out);
            }
        }
    }

    /// RFC 5798 §6.4.1: the owner (priority 255) goes to Master, everyone else to Backup with
    /// Master_Down_Timer = Master_Down_Interval. fo: a fault goes to Fault, a promote to
    /// Master, a demote to Backup even for the owner.
    fn start(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        if self.is_faulted() {
            self.enter_fault(Reason::Fault, out);
        } else if self.admin != Admin::Demoted
            && (self.priority().is_owner() || self.admin == Admin::Promoted)
        {
            self.enter_master(now, reason, out);
        } else {
            self.enter_backup(now, reason, out);
        }
    }

    /// RFC 5798 §6.4.2 (Backup) and §6.4.3 (Master) on Shutdown.
    fn shutdown(&mut self, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        if self.state == State::Initialize {
            return;
        }
        self.transition(State::Initialize, Reason::Shutdown, out);
        if was_master {
            // "Send an ADVERTISEMENT with Priority = 0".
            out.push(Action::SendAdvert {
                priority: Priority::STOP,
            });
        }
        self.cancel_all(out);
    }

    /// RFC 5798 §6.4.2 / §6.4.3 "If an ADVERTISEMENT is received".
    fn on_advert(&mut self, now: Time, heard: Heard, out: &mut Vec<Action>) {
        if heard.sender.address == self.config.primary_address {
            return; // our own advert, looped back
        }
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => self.backup_advert(now, heard, out),
            State::Master => self.master_advert(now, heard, out),
        }
    }

    /// RFC 5798 §6.4.2, Backup.
    fn backup_advert(&mut self, now: Time, heard: Heard, out: &mut Vec<Action>) {
        let priority = heard.sender.priority;
        if priority == Priority::STOP {
            // "Set the Master_Down_Timer to Skew_Time."
            self.master = None;
            if self.admin != Admin::Demoted {
                let skew = self.skew_time();
                self.arm(now, Timer::MasterDown, skew, out);
            }
            return;
        }
        let local = self.priority();
        let lower = priority < local;
        if self.admin == Admin::Demoted {
            // Never becoming Master: just follow the current Master.
            self.follow(heard);
            return;
        }
        if self.config.preempt && lower && self.config.preempt_delay.is_zero() {
            // "else (Preempt_Mode true and priority lower): Discard the ADVERTISEMENT."
            return;
        }
        // "If Preempt_Mode is False, or If the Priority in the ADVERTISEMENT is greater than or
        // equal to the local Priority": adopt the interval, reset Master_Down_Timer. With a
        // preempt delay, a lower priority Master is followed the same way until the delay ends.
        self.follow(heard);
        let down = self.master_down_interval();
        self.arm(now, Timer::MasterDown, down, out);
        if self.config.preempt && lower {
            if self.deadline(Timer::PreemptDelay).is_none() {
                self.arm(now, Timer::PreemptDelay, self.config.preempt_delay, out);
            }
        } else {
            self.cancel(Timer::PreemptDelay, out);
        }
    }

    /// RFC 5798 §6.4.3, Master.
    fn master_advert(&mut self, now: Time, heard: Heard, out: &mut Vec<Action>) {
        let MasterInfo {
            address: from,
            priority,
        } = heard.sender;
        let local = self.priority();
        if self.handing_over() {
            // fo, make before break: the demote's handover. The first other Master heard has
            // taken the addresses: stop, draining. Another node stopping (priority 0) changes
            // nothing: keep serving until a Master is heard or the handover times out.
            if priority != Priority::STOP {
                self.follow(heard);
                self.yield_draining(now, Reason::Handover, out);
            }
            return;
        }
        if priority == Priority::STOP {
            // "Send an ADVERTISEMENT; Reset the Adver_Timer to Advertisement_Interval."
            out.push(Action::SendAdvert { priority: local });
            self.arm(
                now,
                Timer::Adver,
                self.config.advert_interval.to_duration(),
                out,
            );
            return;
        }
        let sender_wins = priority > local
            || (priority == local && address_greater(from, self.config.primary_address));
        if sender_wins {
            // fo: a last advert at our priority before yielding, so that the winner hears a
            // lower Master and announces the addresses again (see the module docs).
            out.push(Action::SendAdvert { priority: local });
            // Cancel Adver_Timer, adopt the interval, recompute, arm Master_Down_Timer, Backup.
            // fo: draining, as the winner already serves (make before break).
            self.follow(heard);
            self.yield_draining(now, Reason::Preempted, out);
        } else if !self.answered {
            // RFC: discard. fo (as keepalived): answer at once so a lower Master yields now,
            // and announce the addresses again: the other Master's gratuitous ARP/NA may
            // have moved the hosts to it. Once per interval (see the module docs).
            self.answered = true;
            out.push(Action::SendAdvert { priority: local });
            out.push(Action::SendGratuitous);
        }
        // fo: two Masters at once is worth an operator's attention (a partition healed, a
        // stalled node, a forged advert); the resolution is above, this reports it.
        out.push(Action::DualMaster {
            peer: from,
            priority,
            stays: self.state == State::Master,
        });
    }

    fn on_timer(&mut self, now: Time, which: Timer, out: &mut Vec<Action>) {
        match self.deadline(which) {
            Some(deadline) if now >= deadline => self.deadlines[which.index()] = None,
            _ => return, // not armed, or not due: a stale event from the caller's runtime
        }
        match (which, self.state) {
            (Timer::Adver, State::Master) => {
                // RFC 5798 §6.4.3: send an advert, reset Adver_Timer. fo: priority 0 again
                // while handing over, in case the first was lost (a Backup's Skew_Time is
                // shorter than the interval, so this never delays its takeover).
                self.answered = false;
                let priority = if self.handing_over() {
                    Priority::STOP
                } else {
                    self.priority()
                };
                out.push(Action::SendAdvert { priority });
                self.arm(
                    now,
                    Timer::Adver,
                    self.config.advert_interval.to_duration(),
                    out,
                );
            }
            (Timer::MasterDown, State::Backup) if self.admin != Admin::Demoted => {
                // RFC 5798 §6.4.2: Master_Down_Timer fires. fo: unless this node is cut off
                // from its peer and its witness (it may be the one partitioned away).
                if self.cut_off(now) {
                    out.push(Action::ClaimRefused {
                        source: FaultSource::Fenced,
                    });
                    self.faults.insert(FaultSource::Fenced);
                    self.enter_fault(Reason::Fault, out);
                } else {
                    self.enter_master(now, Reason::MasterDown, out);
                }
            }
            (Timer::Handover, State::Master) => {
                // fo: nobody took over. Do not break: stay Master and advertise our priority
                // again, so the Backups wait a whole Master_Down_Interval once more.
                out.push(Action::HandoverFailed {
                    waited: now
                        .since_epoch()
                        .saturating_sub(self.handover_from.since_epoch()),
                });
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
            }
            (Timer::Drain, State::Backup) => {
                // fo: the grace is over: release fully.
                out.push(Action::SetOwnership { owned: false });
            }
            (Timer::PreemptDelay, State::Backup) if self.admin != Admin::Demoted => {
                let local = self.priority();
                if self.config.preempt && self.master.is_some_and(|m| m.priority < local) {
                    self.enter_master(now, Reason::PreemptDelay, out);
                }
            }
            _ => {}
        }
    }

    fn on_priority(&mut self, effective: Priority, out: &mut Vec<Action>) {
        let before = self.priority();
        self.tracked = Priority::clamp_tracked(self.config.priority, i32::from(effective.0));
        let after = self.priority();
        // While handing over the adverts say priority 0 whatever the tracking does.
        if self.state == State::Master && after != before && !self.handing_over() {
            out.push(Action::SendAdvert { priority: after });
        }
    }

    fn on_promote(&mut self, now: Time, out: &mut Vec<Action>) {
        let before = self.priority();
        self.admin = Admin::Promoted;
        self.cancel(Timer::Handover, out);
        match self.state {
            State::Backup => self.enter_master(now, Reason::AdminPromote, out),
            State::Master if self.priority() != before => out.push(Action::SendAdvert {
                priority: self.priority(),
            }),
            _ => {}
        }
    }

    /// fo, make before break: a Master hands over (priority 0 now and at every
    /// Adver_Timer, the addresses kept) until another Master is heard or
    /// Master_Down_Interval passes; a Backup only stops waiting to become Master (a
    /// draining one finishes its grace).
    fn on_demote(&mut self, now: Time, out: &mut Vec<Action>) {
        self.admin = Admin::Demoted;
        match self.state {
            State::Master => {
                out.push(Action::SendAdvert {
                    priority: Priority::STOP,
                });
                let bound = self.master_down_interval();
                self.handover_from = now;
                self.arm(now, Timer::Handover, bound, out);
            }
            State::Backup => {
                self.cancel(Timer::MasterDown, out);
                self.cancel(Timer::PreemptDelay, out);
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn on_resume(&mut self, now: Time, out: &mut Vec<Action>) {
        let before = self.priority();
        let was = std::mem::take(&mut self.admin);
        let handing_over = self.handing_over();
        self.cancel(Timer::Handover, out);
        match self.state {
            State::Master if self.priority() != before || handing_over => {
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                })
            }
            State::Backup if was == Admin::Demoted => {
                let down = self.master_down_interval();
                self.arm(now, Timer::MasterDown, down, out);
            }
            _ => {}
        }
    }

    /// To Master: own the addresses, advertise, announce them, arm Adver_Timer
    /// (RFC 5798 §6.4.1 owner startup, §6.4.2 Master_Down_Timer fired).
    fn enter_master(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        self.transition(State::Master, reason, out);
        self.master = None;
        self.master_since = Some(now);
        self.answered = false;
        // The Master is now us: a later Backup period starts from our own interval until it
        // hears another Master (a stale adopted interval must not shorten Master_Down).
        self.master_adver_interval = self.config.advert_interval;
        out.push(Action::SendAdvert {
            priority: self.priority(),
        });
        out.push(Action::SendGratuitous);
        self.cancel(Timer::MasterDown, out);
        self.cancel(Timer::PreemptDelay, out);
        self.arm(
            now,
            Timer::Adver,
            self.config.advert_interval.to_duration(),
            out,
        );
        out.push(Action::RunHook {
            state: State::Master,
        });
    }

    /// fo, make before break: a Master yields to the Master it heard, which already serves:
    /// to Backup, draining for [`Config::drain_grace`] instead of releasing at once.
    fn yield_draining(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        self.enter_backup_with(now, reason, true, out);
    }

    /// To Backup: release, cancel Adver_Timer, arm Master_Down_Timer with the current
    /// Master_Adver_Interval (none while demoted).
    fn enter_backup(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        self.enter_backup_with(now, reason, false, out);
    }

    fn enter_backup_with(&mut self, now: Time, reason: Reason, drain: bool, out: &mut Vec<Action>) {
        self.transition_with(State::Backup, reason, drain, out);
        if drain {
            let grace = self.config.drain_grace;
            self.arm(now, Timer::Drain, grace, out);
        }
        self.cancel(Timer::Handover, out);
        self.cancel(Timer::Adver, out);
        if self.admin == Admin::Demoted {
            self.cancel(Timer::MasterDown, out);
        } else {
            let down = self.master_down_interval();
            self.arm(now, Timer::MasterDown, down, out);
        }
        out.push(Action::RunHook {
            state: State::Backup,
        });
    }

    /// fo: a Master entering Fault (a gate closed, a link went down) releases the VIPs and
    /// then sends one priority-0 advertisement, as on shutdown, so that a Backup takes over
    /// after Skew_Time instead of the whole Master_Down_Interval. On a dead link the send
    /// simply fails.
    fn enter_fault(&mut self, reason: Reason, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.transition(State::Fault, reason, out);
        if was_master {
            out.push(Action::SendAdvert {
                priority: Priority::STOP,
            });
        }
        self.cancel_all(out);
        out.push(Action::RunHook {
            state: State::Fault,
        });
    }

    /// Records the new state and emits Transition and SetOwnership.
    fn transition(&mut self, to: State, reason: Reason, out: &mut Vec<Action>) {
        self.transition_with(to, reason, false, out);
    }

    /// [`Router::transition`]; `drain`: [`Action::Drain`] instead of releasing (the caller
    /// arms [`Timer::Drain`]). Any other transition ends a draining.
    fn transition_with(&mut self, to: State, reason: Reason, drain: bool, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        if to != State::Master {
            self.master_since = None;
        }
        if to != State::Backup {
            self.master = None;
        }
        out.push(Action::Transition { from, to, reason });
        if to == State::Master && self.config.sync_then_claim {
            let bound = if self.sync_pending {
                self.config.advert_interval.to_duration()
            } else {
                Duration::ZERO
            };
            out.push(Action::AwaitSync { bound });
        }
        if drain {
            out.push(Action::Drain {
                grace: self.config.drain_grace,
            });
        } else {
            out.push(Action::SetOwnership {
                owned: to == State::Master,
            });
            self.cancel(Timer::Drain, out);
        }
    }

    /// Takes the sender of `heard` as the Master. RFC 5798 §6.4.2: "Set
    /// Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT" — v3 only;
    /// v2 requires equal intervals (checked by the decoder).
    fn follow(&mut self, heard: Heard) {
        let interval = heard.interval;
        if let (AdverInterval::Centisecs(_), AdverInterval::Centisecs(_)) =
            (self.config.advert_interval, interval)
            && interval.is_valid()
        {
            self.master_adver_interval = interval;
        }
        self.master = Some(heard.sender);
    }

    fn arm(&mut self, now: Time, which: Timer, after: Duration, out: &mut Vec<Action>) {
        self.deadlines[which.index()] = Some(now + after);
        out.push(Action::ArmTimer { which, after });
    }

    fn cancel(&mut self, which: Timer, out: &mut Vec<Action>) {
        if self.deadlines[which.index()].take().is_some() {
            out.push(Action::CancelTimer { which });
        }
    }

    fn cancel_all(&mut self, out: &mut Vec<Action>) {
        for which in Timer::ALL {
            self.cancel(which, out);
        }
    }
}

/// "based on an unsigned integer comparison of the IPvX addresses in network byte order"
/// (RFC 5798 §6.4.3). Addresses of different families do not compare: never greater.
pub(super) fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}
