//! The vocabulary of the state machine: time, states, timers, reasons, and the events in
//! and actions out of [`Router::handle`](super::Router::handle), all serde types (the
//! golden tests' JSON Lines).

use std::net::IpAddr;
use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::claim::FaultSource;
use crate::packet::Advert;
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

    /// The name `fo-agent status` shows ("init" for Initialize, as the CLI always has).
    pub const fn status_name(self) -> &'static str {
        match self {
            State::Initialize => "init",
            other => other.as_str(),
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
    /// fo's make-before-break: a demoted Master hands over; if no other Master is heard by
    /// then, it stays Master ([`Action::HandoverFailed`]).
    Handover,
    /// fo's make-before-break: a Master that yielded ([`Action::Drain`]) releases the
    /// addresses fully.
    Drain,
}

impl Timer {
    /// Every timer, in a fixed order.
    pub const ALL: [Timer; 5] = [
        Timer::Adver,
        Timer::MasterDown,
        Timer::PreemptDelay,
        Timer::Handover,
        Timer::Drain,
    ];

    pub(super) const fn index(self) -> usize {
        match self {
            Timer::Adver => 0,
            Timer::MasterDown => 1,
            Timer::PreemptDelay => 2,
            Timer::Handover => 3,
            Timer::Drain => 4,
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
    /// A demoted Master handing over heard the new Master (make-before-break).
    Handover,
    /// The agent restarted while serving and resumed as Master ([`Event::Restart`]).
    Resumed,
}

impl Reason {
    /// The stable snake_case name (the same as its JSON), for logs, status and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::Shutdown => "shutdown",
            Reason::MasterDown => "master_down",
            Reason::Preempted => "preempted",
            Reason::PreemptDelay => "preempt_delay",
            Reason::Fault => "fault",
            Reason::FaultCleared => "fault_cleared",
            Reason::AdminPromote => "admin_promote",
            Reason::AdminDemote => "admin_demote",
            Reason::Handover => "handover",
            Reason::Resumed => "resumed",
        }
    }
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

/// An input to [`Router::handle`](super::Router::handle).
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
    /// A local failure (link down, gate failing) forbids serving. The same as
    /// `Fault { source: External, failing: true }`.
    FaultSet,
    /// The local failure is over. The same as `Fault { source: External, failing: false }`.
    FaultCleared,
    /// The peer or the witness answered at `at` (fencing, see
    /// [`Config::fence_timeout`](super::Config::fence_timeout)). In JSON
    /// `{"peer_alive":{"at_us":1000000}}`.
    PeerAlive {
        /// When it answered (may be before `now`).
        #[serde(rename = "at_us", with = "time_micros")]
        at: Time,
    },
    /// Whether the NAT connection table still lacks what the peers hold (sync-then-claim, see
    /// [`Config::sync_then_claim`](super::Config::sync_then_claim)). In JSON
    /// `{"sync_pending":{"pending":false}}`.
    SyncPending {
        /// `true` until the table is current.
        pending: bool,
    },
    /// A fault source starts or stops failing: `{"fault":{"source":{"gate":"db"},"failing":true}}`.
    /// The first failing source puts the router in Fault; when the last clears it starts
    /// again as on Startup.
    Fault {
        /// Which source.
        source: FaultSource,
        /// Whether it is failing now.
        failing: bool,
    },
    /// Take mastership now.
    AdminPromote,
    /// Give mastership away and stay Backup until resume. A Master hands over (make before
    /// break): it advertises priority 0 every interval but keeps the addresses until it
    /// hears the new Master, then drains ([`Action::Drain`]); if none is heard within
    /// Master_Down_Interval it stays Master ([`Action::HandoverFailed`]).
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
/// `{"drain":{"grace_us":2000000}}`, `{"handover_failed":{"waited_us":3609375}}`,
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
    /// fo's make-before-break, in place of `SetOwnership { owned: false }` when a Master
    /// yields to a Master it heard (a higher priority, a promote, its own demote's handover):
    /// stop answering ARP/ND for the addresses but keep forwarding what still arrives (hosts
    /// whose neighbour entry has not followed the new Master's gratuitous ARP/NA yet), for
    /// `grace`; `SetOwnership { owned: false }` follows when [`Timer::Drain`] fires (or at
    /// the next transition, whatever it sets).
    Drain {
        /// How long the draining lasts. In JSON, whole microseconds.
        #[serde(rename = "grace_us", with = "micros")]
        grace: Duration,
    },
    /// A demote's handover ended without another Master heard: this router stays Master
    /// and advertises its priority again (the demote stays in force for the next attempt;
    /// `resume` ends it).
    HandoverFailed {
        /// How long it waited. In JSON, whole microseconds.
        #[serde(rename = "waited_us", with = "micros")]
        waited: Duration,
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
    /// Master_Down_Timer fired but this Backup may not claim: `source` keeps it from serving
    /// (it is now failing, and the router goes to Fault). In JSON
    /// `{"claim_refused":{"source":"fenced"}}`.
    ClaimRefused {
        /// Why.
        source: FaultSource,
    },
    /// Entering Master with sync-then-claim: wait up to `bound` for the connection table to
    /// become current before taking the addresses (zero: it is current, claim at once). Comes
    /// between [`Action::Transition`] and [`Action::SetOwnership`]. In JSON
    /// `{"await_sync":{"bound_us":1000000}}`.
    AwaitSync {
        /// The longest wait: one advertisement interval.
        #[serde(rename = "bound_us", with = "micros")]
        bound: Duration,
    },
    /// As Master, another Master's advert (not priority 0) was heard: report it. The last
    /// action of that event, after the resolution (§6.4.3) the others performed. In JSON
    /// `{"dual_master":{"peer":"10.0.0.9","priority":100,"stays":true}}`.
    DualMaster {
        /// The other Master.
        peer: IpAddr,
        /// Its advertised priority.
        priority: Priority,
        /// Whether this router is still Master (it answered) or yielded.
        stays: bool,
    },
}

/// Serde for a [`Time`] as whole microseconds since the caller's epoch.
mod time_micros {
    use serde::{Deserializer, Serializer};

    use super::Time;

    pub fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
        super::micros::serialize(&t.since_epoch(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        super::micros::deserialize(d).map(Time::from_epoch)
    }
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
