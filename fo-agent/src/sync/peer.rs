//! What a receiver knows about one peer's stream, and what to do with each message:
//! pure, so every loss and restart case is tested without a socket.
//!
//! A peer's stream is (epoch, seq): Update messages count up from 1 within an epoch;
//! Heartbeats and SnapshotEnds repeat the last sequence. A lost Update (a sequence
//! skipped), a new epoch (the peer restarted) or our own start means our table may
//! miss connections: we ask for a snapshot and are not "current" until it ends.

use std::time::{Duration, Instant};

use super::codec::Kind;

/// How long to wait for a snapshot before asking again.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
/// Requests without an answer before the peer counts as unreachable (and stops
/// holding a takeover back).
pub const SNAPSHOT_ATTEMPTS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Apply the records.
    Apply,
    /// Apply the records, and ask the peer for a snapshot (something was missed).
    ApplyAndResync,
    /// A duplicate or stale message: drop it.
    Ignore,
    /// A snapshot completed: remove what it did not contain.
    SnapshotDone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTrack {
    pub epoch: Option<u64>,
    pub seq: u64,
    /// A snapshot was asked for at this time and has not ended.
    pub snapshot_asked: Option<Instant>,
    pub snapshot_attempts: u32,
    pub last_rx: Option<Instant>,
    pub gaps: u64,
    pub unreachable: bool,
}

impl Default for PeerTrack {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerTrack {
    pub fn new() -> Self {
        PeerTrack {
            epoch: None,
            seq: 0,
            snapshot_asked: None,
            snapshot_attempts: 0,
            last_rx: None,
            gaps: 0,
            unreachable: false,
        }
    }

    /// Our table holds everything this peer sent (no snapshot outstanding), or the
    /// peer is unreachable and cannot tell us more.
    pub fn current(&self) -> bool {
        self.snapshot_asked.is_none() || self.unreachable
    }

    /// We asked for a snapshot at `now`.
    pub fn asked(&mut self, now: Instant) {
        self.snapshot_asked = Some(now);
        self.snapshot_attempts += 1;
    }

    /// Should we ask (again) now? Gives up after `SNAPSHOT_ATTEMPTS` unanswered asks.
    pub fn should_ask(&mut self, now: Instant) -> bool {
        match self.snapshot_asked {
            None => false,
            Some(at) if now.duration_since(at) < SNAPSHOT_RETRY => false,
            Some(_) if self.snapshot_attempts >= SNAPSHOT_ATTEMPTS => {
                self.unreachable = true;
                false
            }
            Some(_) => true,
        }
    }

    /// A message arrived (already authenticated).
    pub fn on_message(&mut self, now: Instant, kind: Kind, epoch: u64, seq: u64) -> Verdict {
        self.last_rx = Some(now);
        self.unreachable = false;
        let new_epoch = self.epoch != Some(epoch);
        if new_epoch {
            self.epoch = Some(epoch);
            self.seq = 0;
        }
        match kind {
            Kind::SnapshotRequest => Verdict::Ignore,
            Kind::Snapshot => Verdict::Apply,
            Kind::SnapshotEnd => {
                self.seq = self.seq.max(seq);
                self.snapshot_asked = None;
                self.snapshot_attempts = 0;
                Verdict::SnapshotDone
            }
            Kind::Update => {
                if !new_epoch && seq <= self.seq {
                    return Verdict::Ignore;
                }
                let missed = new_epoch && seq > 1 || !new_epoch && seq > self.seq + 1;
                self.seq = seq;
                if missed {
                    self.gaps += 1;
                    Verdict::ApplyAndResync
                } else {
                    Verdict::Apply
                }
            }
            Kind::Heartbeat => {
                let missed = seq > self.seq;
                self.seq = self.seq.max(seq);
                if missed || new_epoch && seq > 0 {
                    self.gaps += 1;
                    Verdict::ApplyAndResync
                } else {
                    Verdict::Apply
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 7;

    fn synced() -> (PeerTrack, Instant) {
        let now = Instant::now();
        let mut p = PeerTrack::new();
        p.asked(now);
        assert!(!p.current(), "a snapshot is outstanding");
        assert_eq!(p.on_message(now, Kind::Snapshot, E, 0), Verdict::Apply);
        assert_eq!(
            p.on_message(now, Kind::SnapshotEnd, E, 0),
            Verdict::SnapshotDone
        );
        assert!(p.current());
        (p, now)
    }

    #[test]
    fn updates_in_order_are_applied_and_duplicates_ignored() {
        let (mut p, now) = synced();
        assert_eq!(p.on_message(now, Kind::Update, E, 1), Verdict::Apply);
        assert_eq!(p.on_message(now, Kind::Update, E, 2), Verdict::Apply);
        assert_eq!(p.on_message(now, Kind::Update, E, 2), Verdict::Ignore);
        assert_eq!(p.on_message(now, Kind::Update, E, 1), Verdict::Ignore);
        assert_eq!(p.on_message(now, Kind::Heartbeat, E, 2), Verdict::Apply);
        assert!(p.current());
        assert_eq!(p.gaps, 0);
    }

    #[test]
    fn a_lost_update_shows_as_a_gap_in_updates_or_heartbeats() {
        let (mut p, now) = synced();
        assert_eq!(p.on_message(now, Kind::Update, E, 1), Verdict::Apply);
        assert_eq!(
            p.on_message(now, Kind::Update, E, 3),
            Verdict::ApplyAndResync
        );
        let (mut q, now) = synced();
        assert_eq!(
            q.on_message(now, Kind::Heartbeat, E, 1),
            Verdict::ApplyAndResync
        );
        assert_eq!(q.gaps, 1);
    }

    #[test]
    fn a_restarted_peer_is_a_new_epoch() {
        let (mut p, now) = synced();
        assert_eq!(
            p.on_message(now, Kind::Update, E, 5),
            Verdict::ApplyAndResync
        );
        assert_eq!(p.on_message(now, Kind::Update, E + 1, 1), Verdict::Apply);
        assert_eq!(
            p.on_message(now, Kind::Update, E + 2, 4),
            Verdict::ApplyAndResync
        );
        // A restarted peer that sent nothing yet is no gap.
        assert_eq!(p.on_message(now, Kind::Heartbeat, E + 3, 0), Verdict::Apply);
    }

    #[test]
    fn snapshot_end_covers_the_updates_before_it() {
        let now = Instant::now();
        let mut p = PeerTrack::new();
        p.asked(now);
        assert_eq!(
            p.on_message(now, Kind::SnapshotEnd, E, 9),
            Verdict::SnapshotDone
        );
        assert_eq!(p.seq, 9);
        assert_eq!(p.on_message(now, Kind::Update, E, 10), Verdict::Apply);
    }

    #[test]
    fn an_unanswered_peer_stops_holding_takeovers_after_three_asks() {
        let t0 = Instant::now();
        let mut p = PeerTrack::new();
        p.asked(t0);
        assert!(!p.should_ask(t0 + Duration::from_millis(500)));
        assert!(p.should_ask(t0 + SNAPSHOT_RETRY));
        p.asked(t0 + SNAPSHOT_RETRY);
        assert!(p.should_ask(t0 + SNAPSHOT_RETRY * 2));
        p.asked(t0 + SNAPSHOT_RETRY * 2);
        assert!(!p.current());
        assert!(!p.should_ask(t0 + SNAPSHOT_RETRY * 3));
        assert!(
            p.unreachable && p.current(),
            "given up: no longer holds a takeover"
        );
    }
}
