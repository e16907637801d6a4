//! Effective VRRP priority, tracked faults and gates: pure functions of the
//! configuration and a health [`Snapshot`].
//!
//! **Priority** follows keepalived's `track_script` rules, by the sign of each tracked
//! check's weight:
//!
//! | weight | check passing | check failing (or not proven yet) |
//! |---|---|---|
//! | `w > 0` | `+w` | — |
//! | `w < 0` | — | `+w` (lowers) |
//! | `0` | — | the router is in fault ([`track_faults`], source `track:NAME`) |
//!
//! `effective = configured + Σ` of the table, clamped to `1..=254`. A tracked check
//! that is down, not yet proven (node checks start down) or unknown to the snapshot
//! counts as failing: the safe side is the lower priority (no bonus, the penalty, the
//! fault).
//!
//! - 0 is never produced: RFC 5798 §5.2.4 reserves it for a master that resigns.
//! - 255 is never produced by arithmetic: it is reserved for the address owner.
//! - A configured 255 (the address owner) stays 255 whatever its weighted checks say,
//!   like keepalived, which ignores track weights on an address owner. By RFC 5798
//!   the owner answers for the addresses it owns, so lowering its advertised priority
//!   would not move the traffic anyway. Weight 0 still faults an owner (keepalived
//!   too), and so do `gates`.
//!
//! **Gates.** A router may become master only when every gate check is up; a gate
//! unknown to the snapshot is closed.

use fo_config::{Track, TrackEffect};

use super::scheduler::Snapshot;

/// Lowest priority a backup may advertise.
pub const MIN: u8 = 1;
/// Highest priority of a router that does not own the addresses.
pub const MAX_BACKUP: u8 = 254;
/// The address owner's priority.
pub const OWNER: u8 = 255;

/// The priority to advertise: see the module docs.
pub fn effective(configured: u8, track: &[Track], snapshot: &Snapshot) -> u8 {
    effective_with(configured, track, |check| {
        snapshot.check_up(check) == Some(true)
    })
}

/// [`effective`] with the health of each tracked check given by `is_up`.
pub fn effective_with(configured: u8, track: &[Track], is_up: impl Fn(&str) -> bool) -> u8 {
    if configured == OWNER {
        return OWNER;
    }
    let delta: i32 = track
        .iter()
        .map(|t| match (t.effect(), is_up(&t.check)) {
            (TrackEffect::AddWhileUp(w), true) | (TrackEffect::AddWhileDown(w), false) => {
                i32::from(w)
            }
            _ => 0,
        })
        .sum();
    let p = (i32::from(configured) + delta).clamp(i32::from(MIN), i32::from(MAX_BACKUP));
    u8::try_from(p).unwrap_or(MIN)
}

/// The checks tracked with weight 0 that are not up: each one puts the router in
/// fault (source `track:NAME`).
pub fn track_faults<'a>(track: &'a [Track], snapshot: &Snapshot) -> Vec<&'a str> {
    track
        .iter()
        .filter(|t| t.effect() == TrackEffect::Fault && snapshot.check_up(&t.check) != Some(true))
        .map(|t| t.check.as_str())
        .collect()
}

/// The tracked checks that are not up (whatever their weight), for logs and status.
pub fn failing_tracks<'a>(track: &'a [Track], snapshot: &Snapshot) -> Vec<&'a Track> {
    track
        .iter()
        .filter(|t| snapshot.check_up(&t.check) != Some(true))
        .collect()
}

/// True when every gate check is up (also for no gates).
pub fn all_pass(gates: &[String], snapshot: &Snapshot) -> bool {
    gates.iter().all(|g| snapshot.check_up(g) == Some(true))
}

/// The gates that are closed, for status and for the reason of a refused takeover.
pub fn closed_gates<'a>(gates: &'a [String], snapshot: &Snapshot) -> Vec<&'a str> {
    gates
        .iter()
        .filter(|g| snapshot.check_up(g) != Some(true))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::scheduler::Target;

    fn track(list: &[(&str, i16)]) -> Vec<Track> {
        list.iter()
            .map(|(c, w)| Track {
                check: (*c).to_owned(),
                weight: *w,
            })
            .collect()
    }

    fn snapshot(states: &[(&str, bool)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (name, up) in states {
            s.set(Target::check(*name), *up);
        }
        s
    }

    /// keepalived's three cases, one row each: a positive weight is added while the
    /// check passes, a negative one while it fails, and weight 0 never moves the
    /// priority but faults the router while the check fails.
    #[test]
    fn keepalived_weight_rules() {
        let rows: [(i16, bool, u8, bool); 6] = [
            // weight, check up, effective priority from 100, fault
            (20, true, 120, false),
            (20, false, 100, false),
            (-20, true, 100, false),
            (-20, false, 80, false),
            (0, true, 100, false),
            (0, false, 100, true),
        ];
        for (w, up, want, fault) in rows {
            let t = track(&[("chk", w)]);
            let s = snapshot(&[("chk", up)]);
            assert_eq!(
                effective(100, &t, &s),
                want,
                "weight {w}, check up = {up}: priority"
            );
            assert_eq!(
                !track_faults(&t, &s).is_empty(),
                fault,
                "weight {w}, check up = {up}: fault"
            );
        }
        // Not proven yet (missing from the snapshot) is failing: no bonus, the
        // penalty, the fault.
        let none = Snapshot::default();
        assert_eq!(effective(100, &track(&[("chk", 20)]), &none), 100);
        assert_eq!(effective(100, &track(&[("chk", -20)]), &none), 80);
        assert_eq!(track_faults(&track(&[("chk", 0)]), &none), vec!["chk"]);
    }

    #[test]
    fn the_owner_ignores_weights_but_not_weight_zero() {
        let t = track(&[("a", 50), ("b", -50), ("c", 0)]);
        let s = snapshot(&[("a", true), ("b", false), ("c", false)]);
        assert_eq!(effective(255, &t, &s), 255);
        assert_eq!(track_faults(&t, &s), vec!["c"]);
    }

    #[test]
    fn only_failing_tracks_count() {
        let t = track(&[("docker", -60), ("nfs", -30), ("disk", -5)]);
        let cases = [
            (vec![("docker", true), ("nfs", true), ("disk", true)], 150),
            (vec![("docker", false), ("nfs", true), ("disk", true)], 90),
            (vec![("docker", false), ("nfs", false), ("disk", true)], 60),
            (vec![("docker", false), ("nfs", false), ("disk", false)], 55),
            // A check missing from the snapshot counts as failing.
            (vec![("docker", true), ("nfs", true)], 145),
        ];
        for (states, want) in cases {
            let got = effective(150, &t, &snapshot(&states));
            assert_eq!(
                got, want,
                "priority 150 with {states:?}: expected {want}, saw {got}"
            );
        }
    }

    #[test]
    fn positive_weights_add_while_up_and_the_result_is_clamped() {
        let all_down = |_: &str| false;
        let all_up = |_: &str| true;
        assert_eq!(
            effective_with(100, &track(&[("a", 50), ("b", -20)]), all_down),
            80,
            "a is down: no bonus; b is down: its penalty"
        );
        assert_eq!(
            effective_with(100, &track(&[("a", 50), ("b", -20)]), all_up),
            150
        );
        assert_eq!(
            effective_with(200, &track(&[("a", 100)]), all_up),
            254,
            "never 255 by arithmetic"
        );
        assert_eq!(
            effective_with(50, &track(&[("a", -60)]), all_down),
            1,
            "never 0 (resign)"
        );
        assert_eq!(
            effective_with(254, &track(&[("a", -254), ("b", -254)]), all_down),
            1,
            "no overflow with large weights"
        );
        assert_eq!(effective_with(100, &[], all_down), 100);
    }

    #[test]
    fn the_address_owner_stays_255() {
        let t = track(&[("docker", -60)]);
        assert_eq!(effective_with(255, &t, |_| false), 255);
        assert_eq!(effective_with(255, &t, |_| true), 255);
    }

    #[test]
    fn gates_pass_only_when_every_check_is_up() {
        let gates = vec!["nfs".to_owned(), "docker".to_owned()];
        assert!(all_pass(
            &gates,
            &snapshot(&[("nfs", true), ("docker", true)])
        ));
        let s = snapshot(&[("nfs", true), ("docker", false)]);
        assert!(!all_pass(&gates, &s));
        assert_eq!(closed_gates(&gates, &s), vec!["docker"]);
        let s = snapshot(&[("nfs", true)]);
        assert!(!all_pass(&gates, &s), "an unknown gate is closed");
        assert!(all_pass(&[], &s), "no gates: open");
        let t = track(&[("nfs", -10), ("docker", -20)]);
        let f: Vec<_> = failing_tracks(&t, &s)
            .iter()
            .map(|t| t.check.as_str())
            .collect();
        assert_eq!(f, vec!["docker"]);
    }
}
