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
}
