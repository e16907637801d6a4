//! What a receiver knows about one peer's connection stream and the snapshot it asked
//! that peer for, and what to do with each accepted message: pure, so every loss,
//! restart and incomplete snapshot is tested without a socket.
//!
//! A peer's stream is (epoch, seq): Update messages count up from 1 within an epoch;
//! Heartbeats repeat the last sequence, a SnapshotEnd names the last one its snapshot
//! covers. A lost Update (a sequence skipped), a new epoch (the peer restarted) or our
//! own start means our table may miss connections: we want a snapshot, and are not
//! "current" until one completes.
//!
//! A snapshot is complete when its end arrives and we received exactly the datagrams
//! and connection records the end counts; otherwise we ask again at once. A request
//! that makes no progress (no datagram of it) for [`SNAPSHOT_RETRY`] is asked again;
//! after [`SNAPSHOT_ATTEMPTS`] such asks the peer counts as unreachable and stops
//! holding a takeover back (asking goes on).

use std::time::{Duration, Instant};

use super::codec::Kind;

/// How long a snapshot may make no progress before it is asked again.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(1);
/// Asks without progress before the peer counts as unreachable.
pub const SNAPSHOT_ATTEMPTS: u32 = 3;
/// The receiver acknowledges every this many snapshot datagrams.
pub const ACK_EVERY: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Apply the records.
    Apply,
    /// Apply the records, and ask the peer for a snapshot (something was missed).
    ApplyAndResync,
    /// A duplicate or stale message: drop it.
    Ignore,
}

/// A datagram of the snapshot we asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Install its records; acknowledge `Some(n)` datagrams received so far.
    Apply { ack: Option<u32> },
    /// Of another snapshot (an older request): drop it.
    Stale,
}

/// The end of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Everything arrived: remove what it did not contain; the table is current.
    Complete(Completed),
    /// Something was lost: ask again.
    Incomplete(Received),
    /// Of another snapshot: drop it.
    Stale,
}

/// What arrived of a snapshot, against what its end says was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub datagrams: u32,
    pub records: u64,
    pub sent_datagrams: u32,
    pub sent_records: u32,
}

/// A complete snapshot: what arrived, since when it was wanted, and how many requests
/// it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    pub got: Received,
    pub since: Instant,
    pub asks: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTrack {
    pub epoch: Option<u64>,
    pub seq: u64,
    /// A snapshot is wanted (asked for, or to be asked once the peer can hear us).
    pub want: Option<Want>,
    pub last_rx: Option<Instant>,
    pub gaps: u64,
    /// Snapshots that ended incomplete (each asked again).
    pub incomplete: u64,
}

/// An outstanding snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    /// When it was first wanted (its time to complete is measured from here).
    pub since: Instant,
    /// The request in force: its id (our counter when we sent it).
    pub request: Option<u64>,
    /// Last ask or progress; `None`: ask at once.
    pub at: Option<Instant>,
    /// Asks since the last progress.
    pub attempts: u32,
    /// Asks in all.
    pub asks: u32,
    pub got: Received,
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
            want: None,
            last_rx: None,
            gaps: 0,
            incomplete: 0,
        }
    }

    /// Our table holds everything this peer sent (no snapshot outstanding), or the
    /// peer is unreachable and cannot tell us more.
    pub fn current(&self) -> bool {
        self.want.is_none() || self.unreachable()
    }

    pub fn unreachable(&self) -> bool {
        self.want
            .as_ref()
            .is_some_and(|w| w.attempts >= SNAPSHOT_ATTEMPTS)
    }

    /// We need a snapshot; `restart` drops the request in force (it went to a peer
    /// process that is gone, or it cannot complete): ask again now.
    pub fn need_snapshot(&mut self, now: Instant, restart: bool) {
        match &mut self.want {
            Some(w) if restart => {
                w.request = None;
                w.got = Received::default();
                w.at = None;
            }
            Some(_) => {}
            None => {
                self.want = Some(Want {
                    since: now,
                    request: None,
                    at: None,
                    attempts: 0,
                    asks: 0,
                    got: Received::default(),
                })
            }
        }
    }

    /// Is a (new) request due now? One is when none is in force, or the one in force
    /// made no progress for [`SNAPSHOT_RETRY`]. Counts the attempt.
    pub fn ask_due(&mut self, now: Instant) -> bool {
        let Some(w) = &mut self.want else {
            return false;
        };
        if w.at
            .is_some_and(|at| now.duration_since(at) < SNAPSHOT_RETRY)
        {
            return false;
        }
        w.attempts += 1;
        w.at = Some(now);
        true
    }

    /// Request `id` was sent (`None`: it could not be, the peer has not been heard).
    pub fn asked(&mut self, id: Option<u64>) {
        if let Some(w) = &mut self.want {
            w.request = id;
            w.got = Received::default();
            w.asks += u32::from(id.is_some());
        }
    }

    /// An accepted Update or Heartbeat.
    pub fn on_stream(&mut self, now: Instant, kind: Kind, epoch: u64, seq: u64) -> Verdict {
        self.last_rx = Some(now);
        let new_epoch = self.epoch != Some(epoch);
        let restarted = new_epoch && self.epoch.is_some();
        if new_epoch {
            self.epoch = Some(epoch);
            self.seq = 0;
        }
        let missed = match kind {
            Kind::Update => {
                if !new_epoch && seq <= self.seq {
                    return Verdict::Ignore;
                }
                let missed = seq > self.seq + 1;
                self.seq = seq;
                missed
            }
            Kind::Heartbeat => {
                let missed = seq > self.seq;
                self.seq = self.seq.max(seq);
                missed
            }
            _ => false,
        };
        if restarted {
            // Whatever was asked went to the process that is gone.
            self.need_snapshot(now, true);
        }
        if missed {
            self.gaps += 1;
        }
        if restarted || missed {
            Verdict::ApplyAndResync
        } else {
            Verdict::Apply
        }
    }

    /// The peer says it is preparing snapshot `id` (a heartbeat naming it): our
    /// request is in hand, however long its table takes to walk.
    pub fn in_hand(&mut self, now: Instant, id: u64) {
        if let Some(w) = &mut self.want
            && w.request == Some(id)
        {
            w.at = Some(now);
            w.attempts = 0;
        }
    }

    /// An accepted Snapshot datagram of snapshot `id` with `records` records.
    pub fn on_chunk(&mut self, now: Instant, id: u64, records: usize) -> Chunk {
        self.last_rx = Some(now);
        let Some(w) = &mut self.want else {
            return Chunk::Stale;
        };
        if w.request != Some(id) {
            return Chunk::Stale;
        }
        w.at = Some(now);
        w.attempts = 0;
        w.got.datagrams += 1;
        w.got.records += records as u64;
        let ack = w
            .got
            .datagrams
            .is_multiple_of(ACK_EVERY)
            .then_some(w.got.datagrams);
        Chunk::Apply { ack }
    }

    /// An accepted SnapshotEnd of snapshot `id`: it covers the stream up to `seq`, and
    /// `datagrams` datagrams with `records` records were sent before it.
    pub fn on_end(
        &mut self,
        now: Instant,
        epoch: u64,
        id: u64,
        seq: u64,
        datagrams: u32,
        records: u32,
    ) -> End {
        self.last_rx = Some(now);
        let Some(w) = &mut self.want else {
            return End::Stale;
        };
        if w.request != Some(id) {
            return End::Stale;
        }
        let got = Received {
            sent_datagrams: datagrams,
            sent_records: records,
            ..w.got
        };
        if got.datagrams != datagrams || got.records != u64::from(records) {
            self.incomplete += 1;
            self.need_snapshot(now, true);
            return End::Incomplete(got);
        }
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            self.seq = 0;
        }
        self.seq = self.seq.max(seq);
        let (since, asks) = (w.since, w.asks);
        self.want = None;
        End::Complete(Completed { got, since, asks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 7;

    /// A new track that needs a snapshot, asked for it at once as request `id`.
    fn asking(id: Option<u64>) -> (PeerTrack, Instant) {
        let now = Instant::now();
        let mut p = PeerTrack::new();
        p.need_snapshot(now, false);
        assert!(!p.current(), "a snapshot is outstanding");
        assert!(p.ask_due(now));
        p.asked(id);
        (p, now)
    }

    /// A track that asked for snapshot 1 and received it whole (one empty datagram).
    fn synced() -> (PeerTrack, Instant) {
        let (mut p, now) = asking(Some(1));
        assert_eq!(p.on_chunk(now, 1, 0), Chunk::Apply { ack: None });
        assert!(matches!(p.on_end(now, E, 1, 0, 1, 0), End::Complete(_)));
        assert!(p.current());
        (p, now)
    }

    #[test]
    fn updates_in_order_are_applied_and_duplicates_ignored() {
        let (mut p, now) = synced();
        assert_eq!(p.on_stream(now, Kind::Update, E, 1), Verdict::Apply);
        assert_eq!(p.on_stream(now, Kind::Update, E, 2), Verdict::Apply);
        assert_eq!(p.on_stream(now, Kind::Update, E, 2), Verdict::Ignore);
        assert_eq!(p.on_stream(now, Kind::Update, E, 1), Verdict::Ignore);
        assert_eq!(p.on_stream(now, Kind::Heartbeat, E, 2), Verdict::Apply);
        assert!(p.current());
        assert_eq!(p.gaps, 0);
    }

    #[test]
    fn a_lost_update_shows_as_a_gap_in_updates_or_heartbeats() {
        let (mut p, now) = synced();
        assert_eq!(p.on_stream(now, Kind::Update, E, 1), Verdict::Apply);
        assert_eq!(
            p.on_stream(now, Kind::Update, E, 3),
            Verdict::ApplyAndResync
        );
        let (mut q, now) = synced();
        assert_eq!(
            q.on_stream(now, Kind::Heartbeat, E, 1),
            Verdict::ApplyAndResync
        );
        assert_eq!(q.gaps, 1);
    }

    #[test]
    fn a_restarted_peer_is_a_new_epoch_and_a_new_request() {
        let (mut p, now) = synced();
        assert_eq!(
            p.on_stream(now, Kind::Update, E + 1, 1),
            Verdict::ApplyAndResync,
            "the restarted peer's table may differ from what we hold"
        );
        assert!(!p.current());
        assert!(p.ask_due(now), "asked at once");
        p.asked(Some(2));
        // It restarts again before answering: the request in force is dropped.
        assert_eq!(
            p.on_stream(now, Kind::Heartbeat, E + 2, 0),
            Verdict::ApplyAndResync
        );
        assert_eq!(p.want.as_ref().and_then(|w| w.request), None);
        assert!(p.ask_due(now), "asked again at once");
    }

    #[test]
    fn snapshot_end_covers_the_updates_before_it() {
        let (mut p, now) = asking(Some(3));
        assert!(matches!(p.on_end(now, E, 3, 9, 0, 0), End::Complete(_)));
        assert_eq!(p.seq, 9);
        assert_eq!(p.on_stream(now, Kind::Update, E, 10), Verdict::Apply);
    }

    #[test]
    fn a_snapshot_that_lost_a_datagram_is_asked_again_at_once() {
        let (mut p, now) = asking(Some(4));
        for _ in 0..ACK_EVERY - 1 {
            assert_eq!(p.on_chunk(now, 4, 32), Chunk::Apply { ack: None });
        }
        assert_eq!(
            p.on_chunk(now, 4, 32),
            Chunk::Apply {
                ack: Some(ACK_EVERY)
            }
        );
        assert_eq!(p.on_chunk(now, 3, 32), Chunk::Stale, "an older request's");
        // The sender says 18 datagrams, 570 records: one of 32 went missing.
        let end = p.on_end(now, E, 4, 0, ACK_EVERY + 2, (ACK_EVERY + 1) * 32 + 26);
        assert_eq!(
            end,
            End::Incomplete(Received {
                datagrams: ACK_EVERY,
                records: u64::from(ACK_EVERY) * 32,
                sent_datagrams: ACK_EVERY + 2,
                sent_records: (ACK_EVERY + 1) * 32 + 26,
            })
        );
        assert!(!p.current());
        assert_eq!(p.incomplete, 1);
        assert!(p.ask_due(now), "asked again at once");
        p.asked(Some(5));
        assert_eq!(p.on_end(now, E, 4, 0, 0, 0), End::Stale);
        assert!(matches!(p.on_end(now, E, 5, 0, 0, 0), End::Complete(_)));
        assert!(p.current());
    }

    #[test]
    fn a_request_is_repeated_without_progress_and_the_peer_stops_holding_takeovers() {
        let (mut p, t0) = asking(Some(1));
        assert!(!p.ask_due(t0 + Duration::from_millis(500)));
        // Progress holds the next ask back.
        let t = t0 + Duration::from_millis(900);
        assert_eq!(p.on_chunk(t, 1, 1), Chunk::Apply { ack: None });
        assert!(!p.ask_due(t0 + SNAPSHOT_RETRY));
        assert!(p.ask_due(t + SNAPSHOT_RETRY));
        p.asked(Some(2));
        assert!(p.ask_due(t + SNAPSHOT_RETRY * 2));
        p.asked(Some(3));
        assert!(!p.current());
        assert!(p.ask_due(t + SNAPSHOT_RETRY * 3));
        p.asked(Some(4));
        assert!(
            p.unreachable() && p.current(),
            "three asks unanswered: no longer holds a takeover"
        );
        assert!(p.ask_due(t + SNAPSHOT_RETRY * 4), "asking goes on");
    }

    #[test]
    fn a_request_in_hand_is_not_asked_again_while_the_peer_walks_its_table() {
        let (mut p, t0) = asking(Some(6));
        for i in 1..=10 {
            let t = t0 + SNAPSHOT_RETRY / 2 * i;
            p.in_hand(t, 6);
            assert!(!p.ask_due(t), "asked again at {i}");
        }
        p.in_hand(t0 + SNAPSHOT_RETRY * 6, 5);
        assert!(
            p.ask_due(t0 + SNAPSHOT_RETRY * 6),
            "another request's is no sign"
        );
    }

    #[test]
    fn a_peer_never_heard_is_asked_as_soon_as_it_is() {
        let (mut p, t0) = asking(None);
        assert!(!p.ask_due(t0 + Duration::from_millis(10)));
        // Heard now (its epoch known): asking is due at once.
        p.need_snapshot(t0 + Duration::from_millis(50), true);
        assert!(p.ask_due(t0 + Duration::from_millis(50)));
    }
}
