//! What a router shows: its status (state, priorities, faults, heard peers, the last
//! transitions), its counters for metrics, and its transition log lines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use fo_vrrp::{Admin, AuthKey, Priority, Reason, State};
use serde::Serialize;
use tracing::{info, warn};

use super::{Driver, RouterHandle};
use crate::locks::lock;

/// How many advert senders a router's status remembers.
pub(super) const HEARD_MAX: usize = 16;

/// `RouterStatus::handover` while a demote hands over.
pub const HANDOVER_IN_PROGRESS: &str = "in progress";

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
    /// Make before break: yielded to a new Master, still forwarding what reaches this node
    /// (no ARP/ND answers) until the drain grace ends.
    pub draining: bool,
    /// A demote's handover: "in progress" while this Master advertises priority 0 and
    /// still serves; "no peer took over within N ms; still master" when it failed (until the
    /// next demote, resume or promote).
    pub handover: Option<String>,
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

impl RouterHandle {
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
}

pub(super) fn auth_label(key: Option<&AuthKey>) -> Option<String> {
    key.map(|k| format!("hmac-sha256 key {:08x}", k.id()))
}

/// A transition waiting to be logged once the actions of its batch are done.
pub(super) struct Pending {
    pub(super) from: State,
    pub(super) to: State,
    pub(super) reason: Reason,
    pub(super) at: SystemTime,
    pub(super) takeover: Option<Duration>,
}

impl Driver {
    /// Both masters at once (`Action::DualMaster`): we were Master and heard another
    /// Master's advert. The state machine has already applied RFC 5798 §6.4.3 (the lower
    /// yields; a higher or equal one with a higher address wins, else we answered at once
    /// so it yields): `stays` says which. One warning per period.
    pub(super) fn warn_dual_master(
        &mut self,
        now: Instant,
        peer: IpAddr,
        theirs: Priority,
        stays: bool,
    ) {
        let ours = self.router.priority();
        let resolution = if stays {
            "we stay master and answered at once: the peer yields on hearing it"
        } else {
            "we yield to the peer"
        };
        if let Some(held) = self.dual_warn.allow(now) {
            warn!(%peer, their_priority = theirs.0, our_priority = ours.0, held_back = held,
                "dual master: another master advertises for this router; {resolution}");
        }
    }

    /// One entry per transition, with `from`, `to` and `reason` fields (journald:
    /// `FO_FROM`, `FO_TO`, `FO_REASON`, and `FO_ROUTER` from the router's span); a
    /// takeover adds `takeover_ms`. Entering fault is a warning: this node cannot serve.
    pub(super) fn log_transition(&self, p: &Pending) {
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
                warn!(from = %from, to = %to, reason = %reason, faults = ?self.fault_labels(), "VRRP transition")
            }
            None => info!(from = %from, to = %to, reason = %reason, "VRRP transition"),
        }
    }

    /// The failing fault sources as `status` shows them (`link`, `gate:NAME`, …), in
    /// alphabetical order.
    fn fault_labels(&self) -> BTreeSet<String> {
        self.router
            .faults()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Copy the router's state and the counters where handles can read them.
    pub(super) fn publish(&self) {
        let mut s = lock(&self.status);
        s.state = self.router.state();
        s.effective_priority = self.router.priority().0;
        s.admin = self.router.admin();
        s.faults = self.fault_labels();
        s.draining = self.router.draining();
        if self.router.handing_over() {
            s.handover = Some(HANDOVER_IN_PROGRESS.into());
        } else if s.handover.as_deref() == Some(HANDOVER_IN_PROGRESS) {
            s.handover = None;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
