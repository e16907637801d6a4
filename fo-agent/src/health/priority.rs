//! Effective VRRP priority and gates: pure functions of the configuration and a
//! health [`Snapshot`].
//!
//! **Priority.** `effective = configured + Σ weight of every tracked check that is
//! failing`, clamped to `1..=254` (`fo-config` documents `track` as "a failing check
//! adds `weight`, usually negative"). A tracked check that is down, not yet proven
//! (node checks start down) or unknown to the snapshot counts as failing: the safe
//! side is a lower priority.
//!
//! - 0 is never produced: RFC 5798 §5.2.4 reserves it for a master that resigns.
//! - 255 is never produced by arithmetic: it is reserved for the address owner.
//! - A configured 255 (the address owner) stays 255 whatever its tracked checks
//!   say, like keepalived, which ignores track weights on an address owner. By
//!   RFC 5798 the owner answers for the addresses it owns, so lowering its
//!   advertised priority would not move the traffic anyway. To take an owner out
//!   of service when a dependency fails, use `gates` instead.
//!
//! **Gates.** A router may become master only when every gate check is up; a gate
//! unknown to the snapshot is closed.

use fo_config::Track;

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
        .filter(|t| !is_up(&t.check))
        .map(|t| i32::from(t.weight))
        .sum();
    let p = (i32::from(configured) + delta).clamp(i32::from(MIN), i32::from(MAX_BACKUP));
    u8::try_from(p).unwrap_or(MIN)
}

/// The tracked checks that currently lower (or raise) the priority, for status.
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
    fn positive_weights_add_and_the_result_is_clamped() {
        let all_down = |_: &str| false;
        assert_eq!(
            effective_with(100, &track(&[("a", 50), ("b", -20)]), all_down),
            130
        );
        assert_eq!(
            effective_with(200, &track(&[("a", 100)]), all_down),
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
