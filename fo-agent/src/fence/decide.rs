//! The fencing rule, pure: from what this node still reaches and its VRRP state,
//! whether it must fence itself. No sockets, no clocks of its own: times come in.
//!
//! | reaches peer | reaches witness | master            | backup / init       | fault        |
//! |--------------|-----------------|-------------------|---------------------|--------------|
//! | yes          | any             | serve             | elect as usual      | elect        |
//! | no           | yes             | serve (peer died) | take over as usual  | elect        |
//! | no           | no              | **stop serving**  | **must not claim**  | stay fenced  |
//!
//! A node that hears neither cannot tell "my peer died" from "I am cut off"; only the
//! second is possible while the witness, which the peer also reaches, is silent too.

use std::time::{Duration, Instant};

use fo_vrrp::State;

/// Reachability of one probed target, from the times of its replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    timeout: Duration,
    last: Instant,
    replied: bool,
}

impl Tracker {
    /// A target starts reachable for one `timeout` from `start`: probes need that long
    /// to show anything, and a node starting up must not fence before they could.
    pub fn new(start: Instant, timeout: Duration) -> Tracker {
        Tracker {
            timeout,
            last: start,
            replied: false,
        }
    }

    /// A reply (or another proof of life, such as a VRRP advert) arrived at `at`.
    pub fn reply(&mut self, at: Instant) {
        self.last = self.last.max(at);
        self.replied = true;
    }

    /// Heard within the last `timeout`.
    pub fn reachable(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) < self.timeout
    }

    /// When it turns unreachable if nothing more arrives.
    pub fn expires(&self) -> Instant {
        self.last + self.timeout
    }

    /// The last reply, if any arrived.
    pub fn last_reply(&self) -> Option<Instant> {
        self.replied.then_some(self.last)
    }
}

/// What the rule says a node in a given state must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Elections as usual (the peer is reachable).
    Elect,
    /// The peer is unreachable but the witness answers: the peer is gone, not us. A
    /// master keeps serving, a backup takes over when its Master_Down_Timer says so.
    PeerLost,
    /// A master reaching neither: stop serving the VIPs.
    StopServing,
    /// A backup (or a starting node) reaching neither: never claim the VIPs.
    MustNotClaim,
    /// Already in fault, still reaching neither.
    StayFenced,
}

impl Verdict {
    /// Whether the router must be held in fault.
    pub fn fenced(self) -> bool {
        matches!(
            self,
            Verdict::StopServing | Verdict::MustNotClaim | Verdict::StayFenced
        )
    }
}

/// The rule. `peer`: any peer answered within the timeout; `witness`: the witness did.
pub fn decide(state: State, peer: bool, witness: bool) -> Verdict {
    match (peer, witness, state) {
        (true, _, _) => Verdict::Elect,
        (false, true, _) => Verdict::PeerLost,
        (false, false, State::Master) => Verdict::StopServing,
        (false, false, State::Backup | State::Initialize) => Verdict::MustNotClaim,
        (false, false, State::Fault) => Verdict::StayFenced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use State::*;
        use Verdict::*;
        #[rustfmt::skip]
        let table = [
            // state       peer   witness  verdict        fenced
            (Master,       true,  true,    Elect,         false),
            (Master,       true,  false,   Elect,         false),
            (Master,       false, true,    PeerLost,      false),
            (Master,       false, false,   StopServing,   true),
            (Backup,       true,  true,    Elect,         false),
            (Backup,       true,  false,   Elect,         false),
            (Backup,       false, true,    PeerLost,      false),
            (Backup,       false, false,   MustNotClaim,  true),
            (Initialize,   false, true,    PeerLost,      false),
            (Initialize,   false, false,   MustNotClaim,  true),
            (Fault,        true,  false,   Elect,         false),
            (Fault,        false, true,    PeerLost,      false),
            (Fault,        false, false,   StayFenced,    true),
        ];
        for (state, peer, witness, verdict, fenced) in table {
            let v = decide(state, peer, witness);
            assert_eq!(
                (v, v.fenced()),
                (verdict, fenced),
                "state {state:?}, peer reachable {peer}, witness reachable {witness}"
            );
        }
    }

    #[test]
    fn tracker_times_out_and_recovers() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(200);
        let mut t = Tracker::new(t0, timeout);
        assert!(t.reachable(t0), "grace at start");
        assert_eq!(t.last_reply(), None);
        assert!(t.reachable(t0 + Duration::from_millis(199)));
        assert!(!t.reachable(t0 + timeout), "no reply within the timeout");
        t.reply(t0 + Duration::from_millis(250));
        assert!(t.reachable(t0 + Duration::from_millis(300)));
        assert_eq!(t.expires(), t0 + Duration::from_millis(450));
        // A late-delivered older reply does not move the clock back.
        t.reply(t0 + Duration::from_millis(100));
        assert_eq!(t.last_reply(), Some(t0 + Duration::from_millis(250)));
        assert!(!t.reachable(t0 + Duration::from_millis(450)));
    }
}
