//! The kinds of fault, the record of one, and the seeded generator that schedules them.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::lab::unix_ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL an agent (its pinned data plane stays), restart it after a while.
    KillAgent,
    /// `ip link set eth0 down`, then up, on a node.
    LinkFlap,
    /// Take the node's switch port out of the bridge: its link stays up, nothing passes.
    Partition,
    /// Stop a backend's fo-sink (SIGTERM), start it again.
    StopBackend,
    /// SIGHUP with a changed, valid config (a second service toggled).
    ReloadValid,
    /// SIGHUP with a broken config (must be refused), then the good one back.
    ReloadBroken,
    /// Remove the file the node's gate checks (the gate closes), put it back.
    GateFail,
}

impl Kind {
    /// Relative weights: the faults that move the VIP come more often.
    const WEIGHTS: [(Kind, u32); 7] = [
        (Kind::KillAgent, 3),
        (Kind::LinkFlap, 3),
        (Kind::Partition, 3),
        (Kind::StopBackend, 2),
        (Kind::ReloadValid, 2),
        (Kind::ReloadBroken, 2),
        (Kind::GateFail, 2),
    ];

    pub const ALL: [Kind; 7] = [
        Kind::KillAgent,
        Kind::LinkFlap,
        Kind::Partition,
        Kind::StopBackend,
        Kind::ReloadValid,
        Kind::ReloadBroken,
        Kind::GateFail,
    ];

    pub fn pick(rng: &mut Rng) -> Kind {
        let total: u32 = Self::WEIGHTS.iter().map(|w| w.1).sum();
        let mut n = rng.below(total as usize) as u32;
        for (k, w) in Self::WEIGHTS {
            if n < w {
                return k;
            }
            n -= w;
        }
        Kind::KillAgent
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillAgent => "kill -9 agent (restarted)",
            Kind::LinkFlap => "link flap",
            Kind::Partition => "partition (switch port off the bridge)",
            Kind::StopBackend => "backend sink stopped (restarted)",
            Kind::ReloadValid => "reload, valid changed config",
            Kind::ReloadBroken => "reload, broken config (refused)",
            Kind::GateFail => "gate failing (its file removed, then back)",
        }
    }
}

/// Which fault comes next: first every kind once, in a shuffled order (so a run of any
/// length that completes its first round has seen each kind), then kinds picked at
/// random by [`Kind::WEIGHTS`].
pub struct Schedule {
    /// The first round, still to come (taken from the end).
    round: Vec<Kind>,
}

impl Schedule {
    pub fn new(rng: &mut Rng) -> Schedule {
        let mut round = Kind::ALL.to_vec();
        // Fisher-Yates.
        for i in (1..round.len()).rev() {
            round.swap(i, rng.below(i + 1));
        }
        Schedule { round }
    }

    pub fn next(&mut self, rng: &mut Rng) -> Kind {
        self.round.pop().unwrap_or_else(|| Kind::pick(rng))
    }

    /// Has every kind come up once?
    pub fn covered(&self) -> bool {
        self.round.is_empty()
    }
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// Node or backend.
    pub target: String,
    pub started: SystemTime,
    /// When it was lifted (the agent running again, the link up, …).
    pub ended: SystemTime,
    pub note: String,
}

impl Fault {
    pub fn new(kind: Kind) -> Fault {
        let now = SystemTime::now();
        Fault {
            kind,
            target: String::new(),
            started: now,
            ended: now,
            note: String::new(),
        }
    }

    fn held(&self) -> Duration {
        self.ended.duration_since(self.started).unwrap_or_default()
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} on {} for {} ms",
            self.kind.name(),
            self.target,
            self.held().as_millis()
        );
        if !self.note.is_empty() {
            s.push_str(&format!(" ({})", self.note));
        }
        s
    }

    pub fn to_json(&self, origin: SystemTime) -> Value {
        let rel = |t: SystemTime| {
            t.duration_since(origin)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        json!({
            "kind": self.kind.name(),
            "target": self.target,
            "t_s": rel(self.started),
            "held_ms": self.held().as_millis() as u64,
            "started_unix_ns": unix_ns(self.started),
            "ended_unix_ns": unix_ns(self.ended),
            "note": self.note,
        })
    }
}

/// xorshift64*: small and seeded, so a schedule replays from its seed.
pub struct Rng {
    seed: u64,
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            seed,
            // Zero is xorshift's fixed point.
            state: seed ^ 0x9e37_79b9_7f4a_7c15 | 1,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration in `[lo, hi)` milliseconds.
    pub fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let sa: Vec<Kind> = (0..200).map(|_| Kind::pick(&mut a)).collect();
        let sb: Vec<Kind> = (0..200).map(|_| Kind::pick(&mut b)).collect();
        assert_eq!(sa, sb);
        // Every kind comes up, about as often as its weight says.
        let total: u32 = Kind::WEIGHTS.iter().map(|w| w.1).sum();
        for (k, w) in Kind::WEIGHTS {
            let n = sa.iter().filter(|&&x| x == k).count();
            let expected = 200 * w as usize / total as usize;
            assert!(
                n > 0 && n < 3 * expected,
                "{k:?} picked {n} times in 200 (weight {w} of {total})"
            );
        }
        let mut z = Rng::new(0);
        assert_ne!(z.next(), 0);
    }

    #[test]
    fn the_first_round_is_every_kind_once_then_random() {
        let mut orders = std::collections::BTreeSet::new();
        // Even seeds: `Rng::new` sets the low bit, so seeds 2k and 2k + 1 are one.
        for seed in (0..100).step_by(2) {
            let mut rng = Rng::new(seed);
            let mut s = Schedule::new(&mut rng);
            let first: Vec<Kind> = (0..Kind::ALL.len())
                .map(|i| {
                    assert!(!s.covered(), "seed {seed}: covered after {i} faults");
                    s.next(&mut rng)
                })
                .collect();
            assert!(s.covered());
            for k in Kind::ALL {
                assert_eq!(
                    first.iter().filter(|&&x| x == k).count(),
                    1,
                    "seed {seed}: {k:?} in the first round {first:?}"
                );
            }
            orders.insert(format!("{first:?}"));
            // After the round: weighted picks, replayable from the seed.
            let mut again = Rng::new(seed);
            let mut s2 = Schedule::new(&mut again);
            let replay: Vec<Kind> = (0..40).map(|_| s2.next(&mut again)).collect();
            let mut rest: Vec<Kind> = first.clone();
            rest.extend((0..33).map(|_| s.next(&mut rng)));
            assert_eq!(replay, rest, "seed {seed} replays its schedule");
        }
        assert!(
            orders.len() > 40,
            "the first round is shuffled: {} orders",
            orders.len()
        );
    }
}
