//! The VRRP state machine of RFC 5798 §6.4 (and RFC 3768 §6.4 for version 2), pure: no
//! sockets, no clock. The caller owns time and effects:
//!
//! ```text
//! caller ──(now, Event)──▶ Router::handle ──▶ Vec<Action> ──▶ caller performs them in order
//! ```
//!
//! `now` is a [`Time`]: the caller's monotonic clock read as time since an epoch it chooses.
//! Timers are data: [`Action::ArmTimer`] asks for [`Event::TimerFired`] to be delivered
//! `after` from `now` (re-arming a timer replaces its previous deadline),
//! [`Action::CancelTimer`] withdraws it. The router keeps each deadline too and ignores a
//! `TimerFired` that is not armed or not yet due, so a late or duplicate timer event from the
//! caller's runtime cannot move the machine. Deliver `TimerFired` with a `now` at or after
//! the deadline (`now_at_arm + after`).
//!
//! # Timer arithmetic
//!
//! Skew_Time and Master_Down_Interval, with their units and rounding, are in [`crate::timing`].
//!
//! # Where fo goes beyond the RFC (each choice converges with a keepalived peer)
//!
//! * A Master that hears a lower priority (or an equal priority from a lower address) answers
//!   at once with an advertisement. RFC 5798 §6.4.3 says to discard it; keepalived answers, and
//!   answering ends a split brain one interval sooner. The Adver_Timer is not reset. The
//!   answer comes with a gratuitous ARP/NA for the addresses (keepalived's
//!   `garp_lower_prio_repeat`): the lower Master announced them when it took over, and the
//!   hosts that listened would otherwise keep sending to it after it yields, until their
//!   neighbour entries expire (tens of seconds). At most one such answer per
//!   Advertisement_Interval (until the Adver_Timer next fires): a flood of
//!   forged lower-priority adverts must not make the Master flood the link in return; the
//!   regular advert still follows within one interval.
//! * A Master that yields to a higher one (§6.4.3) first sends one advert at its own priority.
//!   The winner may have been heard first (a partition heals, a stalled Backup took over and
//!   hears the Master's next advert): then it never hears the lower Master, never announces
//!   again, and the hosts that followed the lower Master's gratuitous ARP stay with it, a
//!   Backup that no longer serves, until their neighbour entries expire. The last advert makes
//!   the winner answer and announce (above). A backup that hears it discards it (preempt) or
//!   follows it until the winner's next advert (no preempt): neither takes over.
//! * `preempt_delay` (keepalived's option of that name): a Backup that would preempt a lower
//!   priority Master first waits this long, behaving meanwhile as if preemption were off; when
//!   [`Timer::PreemptDelay`] fires and the Master is still of lower priority, it takes over.
//! * Admin promote: the router advertises priority 254 (255 stays 255) until resume and, if
//!   Backup, becomes Master at once. A Master of lower priority steps down on hearing it
//!   (RFC 5798 §6.4.3) whatever its preempt setting, and a Backup does not preempt a higher
//!   priority, so a keepalived peer agrees. Only an address owner (255), or a peer at 254
//!   with a higher address, beats a promoted router. A promote does not override a fault; it
//!   takes effect when the fault clears.
//! * Admin demote: a Master advertises priority 0 once (backups take over after Skew_Time,
//!   §6.4.2), releases the addresses and stays Backup; a demoted Backup arms no
//!   Master_Down_Timer, so it never becomes Master until resume.
//! * Fault (link down, a gate failing): release the addresses, cancel the timers, send
//!   nothing; when cleared, start again as on Startup (Master if owner, else Backup).
//! * Priority changes (tracked checks): a Master advertises the new priority at once.
//! * An advertisement from our own primary address (a looped-back multicast) is ignored.
//!
//! # Action order
//!
//! A transition emits, in order: [`Action::Transition`], [`Action::SetOwnership`] (true only
//! for Master), then the advertisements, gratuitous ARP/NA and timers of the new state, then
//! [`Action::RunHook`] (not for Initialize: there is no stop hook).

use std::net::IpAddr;
use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::packet::Advert;
pub use crate::timing::{master_down_interval, skew_time};
use crate::types::{AdverInterval, Priority};

/// A reading of the caller's monotonic clock, as time since an epoch the caller picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(Duration);

impl Time {
    /// The epoch itself.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The instant `since_epoch` after the caller's epoch.
    pub const fn from_epoch(since_epoch: Duration) -> Time {
        Time(since_epoch)
    }

    /// Time since the caller's epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }
}

impl Add<Duration> for Time {
    type Output = Time;

    /// Saturates instead of panicking at the far end of time.
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

/// RFC 5798 §6.4: the four states (Fault is fo's addition: a local failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Monitoring the Master; not owning the virtual addresses.
    Backup,
    /// Owning the virtual addresses and advertising.
    Master,
    /// A local failure forbids serving: no addresses, no adverts, no timers.
    Fault,
}

impl State {
    /// The value of the `fo_vrrp_state` gauge: 0 init, 1 backup, 2 master, 3 fault.
    pub const fn metric_value(self) -> u8 {
        match self {
            State::Initialize => 0,
            State::Backup => 1,
            State::Master => 2,
            State::Fault => 3,
        }
    }

    /// Lower-case name, for logs and labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// The router's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    /// Adver_Timer: a Master sends its next advertisement.
    Adver,
    /// Master_Down_Timer: a Backup concludes the Master is gone.
    MasterDown,
    /// fo's preempt delay: a Backup may now preempt a lower priority Master.
    PreemptDelay,
}

impl Timer {
    /// Every timer, in a fixed order.
    pub const ALL: [Timer; 3] = [Timer::Adver, Timer::MasterDown, Timer::PreemptDelay];

    const fn index(self) -> usize {
        match self {
            Timer::Adver => 0,
            Timer::MasterDown => 1,
            Timer::PreemptDelay => 2,
        }
    }
}

/// Why a transition happened (for logs, hooks and `fo_vrrp_transitions_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Startup event (to Backup, or to Master for the owner or a promoted router).
    Startup,
    /// Shutdown event.
    Shutdown,
    /// Master_Down_Timer fired: no advertisement for Master_Down_Interval, or Skew_Time
    /// after a priority 0 advertisement.
    MasterDown,
    /// A Master heard a higher priority, or an equal one from a higher address.
    Preempted,
    /// The preempt delay elapsed with a lower priority Master still present.
    PreemptDelay,
    /// A local fault was set.
    Fault,
    /// The local fault cleared.
    FaultCleared,
    /// `fo-agent promote`.
    AdminPromote,
    /// `fo-agent demote`.
    AdminDemote,
    /// The agent restarted while serving and resumed as Master ([`Event::Restart`]).
    Resumed,
}

/// Administrative override set by `promote` / `demote`, ended by `resume`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Admin {
    /// No override.
    #[default]
    None,
    /// Advertise priority 254 (owner: 255) and take mastership.
    Promoted,
    /// Never become Master.
    Demoted,
}

/// An input to [`Router::handle`].
///
/// In JSON (externally tagged, snake_case): `"startup"`,
/// `{"advert_received":{"from":"10.0.0.2","priority":200,"interval":{"centisecs":100}}}`,
/// `{"timer_fired":{"which":"master_down"}}`, `{"priority_changed":{"effective":90}}`…
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// RFC 5798 §6.4.1 Startup.
    Startup,
    /// fo: Startup of an agent that restarted while this node was Master and found its
    /// data plane still serving the VIPs. The router resumes as Master and advertises at
    /// once, so a peer that still sees it as Master (its Master_Down_Timer not yet expired)
    /// never takes over: a quick restart moves nothing. Without preemption rights
    /// (demoted, or a fault) this is an ordinary Startup. An owner or a higher-priority
    /// peer that took over meanwhile is handled by the usual advert rules.
    Restart,
    /// RFC 5798 §6.4.2/§6.4.3 Shutdown.
    Shutdown,
    /// A validated advertisement for this virtual router (see [`crate::packet::decode`]).
    AdvertReceived {
        /// The IP source: the sender's primary address.
        from: IpAddr,
        /// The advertised priority.
        priority: Priority,
        /// The advertised (Max) Adver Int.
        interval: AdverInterval,
    },
    /// A timer armed by [`Action::ArmTimer`] expired.
    TimerFired {
        /// Which one.
        which: Timer,
    },
    /// The effective priority changed (tracked checks). Clamped to 1..=254, or up to 255 if
    /// the configured priority is 255.
    PriorityChanged {
        /// The new effective priority.
        effective: Priority,
    },
    /// A local failure (link down, gate failing) forbids serving.
    FaultSet,
    /// The local failure is over.
    FaultCleared,
    /// Take mastership now.
    AdminPromote,
    /// Give mastership away and stay Backup until resume.
    AdminDemote,
    /// End a promote or demote.
    AdminResume,
}

impl Event {
    /// The event for a decoded advertisement received from `from` (the IP source).
    pub fn advert(from: IpAddr, advert: &Advert) -> Event {
        Event::AdvertReceived {
            from,
            priority: advert.priority,
            interval: advert.max_adver_interval,
        }
    }
}

/// An effect for the caller to perform, in order.
///
/// In JSON: `{"send_advert":{"priority":100}}`, `"send_gratuitous"`,
/// `{"set_ownership":{"owned":true}}`, `{"arm_timer":{"which":"adver","after_us":1000000}}`,
/// `{"cancel_timer":{"which":"master_down"}}`,
/// `{"transition":{"from":"backup","to":"master","reason":"master_down"}}`,
/// `{"run_hook":{"state":"master"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send one advertisement with this priority, the configured interval and addresses.
    SendAdvert {
        /// 0 when stopping.
        priority: Priority,
    },
    /// Gratuitous ARP for each IPv4 virtual address, unsolicited Neighbor Advertisement for
    /// each IPv6 one (RFC 5798 §6.4.1, §6.4.2).
    SendGratuitous,
    /// Own (serve) the virtual addresses, or release them.
    SetOwnership {
        /// `true` only in Master.
        owned: bool,
    },
    /// Deliver `TimerFired { which }` after this long; replaces any earlier arming.
    ArmTimer {
        /// Which timer.
        which: Timer,
        /// From the `now` of this call. In JSON, whole microseconds.
        #[serde(rename = "after_us", with = "micros")]
        after: Duration,
    },
    /// Withdraw an armed timer (only emitted for a timer that is armed).
    CancelTimer {
        /// Which timer.
        which: Timer,
    },
    /// The state changed.
    Transition {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Run the configured hook of this state (master, backup, fault).
    RunHook {
        /// The state entered.
        state: State,
    },
}

/// Serde for a [`Duration`] as whole microseconds: exact for every value the router computes.
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

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

/// One virtual router's state machine.
#[derive(Clone, Debug)]
pub struct Router {
    config: Config,
    state: State,
    /// Effective priority from tracking (starts at the configured one).
    tracked: Priority,
    admin: Admin,
    fault: bool,
    /// Master_Adver_Interval (RFC 5798 §6.1): adopted from the Master in v3.
    master_adver_interval: AdverInterval,
    master: Option<MasterInfo>,
    deadlines: [Option<Time>; 3],
    master_since: Option<Time>,
    /// A Master already answered a lower-priority advert since its last Adver_Timer.
    answered: bool,
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
            config,
            state: State::Initialize,
            admin: Admin::None,
            fault: false,
            master: None,
            deadlines: [None; 3],
            master_since: None,
            answered: false,
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
        self.fault
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
                    if self.fault || self.admin == Admin::Demoted {
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
            } => self.on_advert(now, from, priority, interval, &mut out),
            Event::TimerFired { which } => self.on_timer(now, which, &mut out),
            Event::PriorityChanged { effective } => self.on_priority(effective, &mut out),
            Event::FaultSet => {
                self.fault = true;
                if matches!(self.state, State::Backup | State::Master) {
                    self.enter_fault(Reason::Fault, &mut out);
                }
            }
            Event::FaultCleared => {
                self.fault = false;
                if self.state == State::Fault {
                    self.master_adver_interval = self.config.advert_interval;
                    self.start(now, Reason::FaultCleared, &mut out);
                }
            }
            Event::AdminPromote => self.on_promote(now, &mut out),
            Event::AdminDemote => self.on_demote(&mut out),
            Event::AdminResume => self.on_resume(now, &mut out),
        }
        out
    }

    /// RFC 5798 §6.4.1: the owner (priority 255) goes to Master, everyone else to Backup with
    /// Master_Down_Timer = Master_Down_Interval. fo: a fault goes to Fault, a promote to
    /// Master, a demote to Backup even for the owner.
    fn start(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        if self.fault {
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
    fn on_advert(
        &mut self,
        now: Time,
        from: IpAddr,
        priority: Priority,
        interval: AdverInterval,
        out: &mut Vec<Action>,
    ) {
        if from == self.config.primary_address {
            return; // our own advert, looped back
        }
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => self.backup_advert(now, from, priority, interval, out),
            State::Master => self.master_advert(now, from, priority, interval, out),
        }
    }

    /// RFC 5798 §6.4.2, Backup.
    fn backup_advert(
        &mut self,
        now: Time,
        from: IpAddr,
        priority: Priority,
        interval: AdverInterval,
        out: &mut Vec<Action>,
    ) {
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
            self.adopt(interval);
            self.master = Some(MasterInfo {
                address: from,
                priority,
            });
            return;
        }
        if self.config.preempt && lower && self.config.preempt_delay.is_zero() {
            // "else (Preempt_Mode true and priority lower): Discard the ADVERTISEMENT."
            return;
        }
        // "If Preempt_Mode is False, or If the Priority in the ADVERTISEMENT is greater than or
        // equal to the local Priority": adopt the interval, reset Master_Down_Timer. With a
        // preempt delay, a lower priority Master is followed the same way until the delay ends.
        self.adopt(interval);
        self.master = Some(MasterInfo {
            address: from,
            priority,
        });
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
    fn master_advert(
        &mut self,
        now: Time,
        from: IpAddr,
        priority: Priority,
        interval: AdverInterval,
        out: &mut Vec<Action>,
    ) {
        let local = self.priority();
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
            self.adopt(interval);
            self.master = Some(MasterInfo {
                address: from,
                priority,
            });
            self.enter_backup(now, Reason::Preempted, out);
        } else if !self.answered {
            // RFC: discard. fo (as keepalived): answer at once so a lower Master yields now,
            // and announce the addresses again: the other Master's gratuitous ARP/NA may
            // have moved the hosts to it. Once per interval (see the module docs).
            self.answered = true;
            out.push(Action::SendAdvert { priority: local });
            out.push(Action::SendGratuitous);
        }
    }

    fn on_timer(&mut self, now: Time, which: Timer, out: &mut Vec<Action>) {
        match self.deadline(which) {
            Some(deadline) if now >= deadline => self.deadlines[which.index()] = None,
            _ => return, // not armed, or not due: a stale event from the caller's runtime
        }
        match (which, self.state) {
            (Timer::Adver, State::Master) => {
                // RFC 5798 §6.4.3: send an advert, reset Adver_Timer.
                self.answered = false;
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                self.arm(
                    now,
                    Timer::Adver,
                    self.config.advert_interval.to_duration(),
                    out,
                );
            }
            (Timer::MasterDown, State::Backup) if self.admin != Admin::Demoted => {
                // RFC 5798 §6.4.2: Master_Down_Timer fires.
                self.enter_master(now, Reason::MasterDown, out);
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
        if self.state == State::Master && after != before {
            out.push(Action::SendAdvert { priority: after });
        }
    }

    fn on_promote(&mut self, now: Time, out: &mut Vec<Action>) {
        let before = self.priority();
        self.admin = Admin::Promoted;
        match self.state {
            State::Backup => self.enter_master(now, Reason::AdminPromote, out),
            State::Master if self.priority() != before => out.push(Action::SendAdvert {
                priority: self.priority(),
            }),
            _ => {}
        }
    }

    fn on_demote(&mut self, out: &mut Vec<Action>) {
        self.admin = Admin::Demoted;
        match self.state {
            State::Master => {
                self.transition(State::Backup, Reason::AdminDemote, out);
                out.push(Action::SendAdvert {
                    priority: Priority::STOP,
                });
                self.cancel_all(out);
                out.push(Action::RunHook {
                    state: State::Backup,
                });
            }
            State::Backup => self.cancel_all(out),
            State::Initialize | State::Fault => {}
        }
    }

    fn on_resume(&mut self, now: Time, out: &mut Vec<Action>) {
        let before = self.priority();
        let was = std::mem::take(&mut self.admin);
        match self.state {
            State::Master if self.priority() != before => out.push(Action::SendAdvert {
                priority: self.priority(),
            }),
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

    /// To Backup: release, cancel Adver_Timer, arm Master_Down_Timer with the current
    /// Master_Adver_Interval (none while demoted).
    fn enter_backup(&mut self, now: Time, reason: Reason, out: &mut Vec<Action>) {
        self.transition(State::Backup, reason, out);
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
        let from = self.state;
        self.state = to;
        if to != State::Master {
            self.master_since = None;
        }
        if to != State::Backup {
            self.master = None;
        }
        out.push(Action::Transition { from, to, reason });
        out.push(Action::SetOwnership {
            owned: to == State::Master,
        });
    }

    /// RFC 5798 §6.4.2: "Set Master_Adver_Interval to Adver Interval contained in the
    /// ADVERTISEMENT" — v3 only; v2 requires equal intervals (checked by the decoder).
    fn adopt(&mut self, interval: AdverInterval) {
        if let (AdverInterval::Centisecs(_), AdverInterval::Centisecs(_)) =
            (self.config.advert_interval, interval)
            && interval.is_valid()
        {
            self.master_adver_interval = interval;
        }
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
fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
