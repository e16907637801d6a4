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
//! * Admin demote, make before break: a Master hands over. It advertises priority 0 (backups
//!   take over after Skew_Time, §6.4.2) at once and at every Adver_Timer, keeps the
//!   addresses, and arms [`Timer::Handover`] (Master_Down_Interval). The first advert of
//!   another Master (not priority 0) ends it: Backup with reason `handover`, draining (below).
//!   If none comes in time it stays Master, advertises its priority again and says so
//!   ([`Action::HandoverFailed`]); the demote stays in force (a later demote tries again,
//!   resume ends it). A demoted Backup arms no Master_Down_Timer, so it never becomes Master
//!   until resume.
//! * Draining, make before break: a Master that yields to a Master it heard (a higher
//!   priority: a promote, a returning owner; its own demote's handover) does not release the
//!   addresses at once. [`Action::Drain`] replaces `SetOwnership { owned: false }`: no more
//!   ARP/ND answers, but what still arrives is forwarded for [`Config::drain_grace`], until
//!   [`Timer::Drain`] fires and `SetOwnership { owned: false }` follows. Any later transition
//!   ends the draining with its own `SetOwnership`.
//! * Readiness ([`Router::not_ready`]): the caller refuses a promote while a fault source is
//!   failing or, with sync-then-claim, while the connection table is not current.
//! * Fault (link down, a gate failing, the data plane detached, fenced): release the
//!   addresses, cancel the timers, send nothing; when the last source clears, start again as
//!   on Startup (Master if owner, else Backup). The sources are data ([`FaultSource`]), so
//!   the router says which keep it down.
//! * Fencing ([`Config::fence_timeout`]): a Backup whose Master_Down_Timer fires claims only
//!   if its peer or its witness answered ([`Event::PeerAlive`]) within the timeout; otherwise
//!   this node may be the one partitioned away, so it emits [`Action::ClaimRefused`] and goes
//!   to Fault with [`FaultSource::Fenced`] until that source clears. A Master is not fenced
//!   by this rule (the agent's fence task sets the fault when it decides so).
//! * Sync-then-claim ([`Config::sync_then_claim`], for routers with NAT services and
//!   connection sync): every entry to Master emits [`Action::AwaitSync`] between
//!   `Transition` and `SetOwnership`, with a bound of one advertisement interval while the
//!   table is not current ([`Event::SyncPending`]; pending from start) and zero once it is,
//!   so a takeover does not reset the connections the peer was carrying.
//! * Dual-master reporting: a Master that hears another Master (an advert that is not
//!   priority 0) emits [`Action::DualMaster`] as the last action of that event, saying
//!   whether it stays Master or yielded, for the operator's count and warning.
//! * Priority changes (tracked checks): a Master advertises the new priority at once.
//! * An advertisement from our own primary address (a looped-back multicast) is ignored.
//!
//! # Action order
//!
//! A transition emits, in order: [`Action::Transition`], [`Action::SetOwnership`] (true only
//! for Master), then the advertisements, gratuitous ARP/NA and timers of the new state, then
//! [`Action::RunHook`] (not for Initialize: there is no stop hook). A yield to a heard
//! Master emits [`Action::Drain`] where the others emit `SetOwnership`.

mod claim;
mod events;
mod router;

pub use crate::timing::{master_down_interval, skew_time};
pub use claim::{FaultSource, NotReady};
pub use events::{Action, Admin, Event, Reason, State, Time, Timer};
pub use router::{Config, ConfigError, MasterInfo, Router};

#[cfg(test)]
mod tests;
