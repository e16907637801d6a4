//! The sender's side of a snapshot: which requests it serves, and how fast it sends.
//! Pure, so the pacing and the rate limit are tested without a socket.
//!
//! A peer's request is served at most once per [`MIN_INTERVAL`]; a request arriving
//! sooner is refused (`rate_limited`), and the peer asks again after its retry time.
//! (The limit is per run of the peer: a restarted peer's first request is served.)
//! A request for a peer whose snapshot is in progress (the peer gave up waiting)
//! takes that snapshot over: the walk is not repeated, the records walked go out again
//! from the first under the new request's id. The table is walked off the async
//! runtime; meanwhile the heartbeats to the peer name the snapshot being prepared, so
//! the peer knows its request is in hand. Then the records go out in
//! datagrams of [`MAX_RECORDS`](super::codec::MAX_RECORDS), at most [`WINDOW`] ahead
//! of what the peer acknowledged (it acknowledges every
//! [`ACK_EVERY`](super::peer::ACK_EVERY) it received), so a burst never overruns the
//! receiver's socket buffer or its map writes. A peer that acknowledges nothing for
//! [`STALL`] is given up on (it asks again).
//!
//! While a snapshot to a peer is walked and sent, the Updates for that peer are held
//! and sent after its end, in order: the peer applies the snapshot first and every
//! change made since the walk began after it, so an older snapshot record never
//! overwrites a newer Update. The heartbeats to it state the position the end
//! will state, so the held Updates show as no gap.

use std::time::{Duration, Instant};

use super::codec::{MAX_RECORDS, RECORD6_SLOTS, Record};

/// IPv6 records per snapshot datagram (each takes [`RECORD6_SLOTS`] slots).
const MAX_RECORDS6: usize = MAX_RECORDS / RECORD6_SLOTS;

/// Least time between two snapshots served to one peer.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Snapshot datagrams sent and not yet acknowledged, at most.
pub const WINDOW: u32 = 64;
/// A snapshot whose peer acknowledges nothing for this long is abandoned.
pub const STALL: Duration = Duration::from_secs(3);
/// Updates held for one peer during its snapshot, at most (in datagrams); beyond,
/// the snapshot is abandoned and the peer, seeing a gap, asks again.
pub const MAX_HELD: usize = 8192;

/// Whether a peer may have a snapshot now.
#[derive(Clone, Debug, Default)]
pub struct RateLimit {
    last: Option<Instant>,
}

impl RateLimit {
    /// Admit a request at `now` (and count it), or refuse it.
    pub fn admit(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < MIN_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// A snapshot being walked or sent to one peer.
#[derive(Debug)]
pub struct Outgoing {
    /// Its id: the counter of the request it answers.
    pub id: u64,
    pub started: Instant,
    /// The stream position when the walk began: what the end covers.
    pub start_seq: u64,
    /// `None` while the table is walked. IPv4 records first, then IPv6 ones
    /// ([`Outgoing::set_records`]): each datagram carries one family.
    pub records: Option<Vec<Record>>,
    /// What the end states: the VIPs this snapshot covers (`owns` records).
    pub owns: Vec<Record>,
    /// Datagrams sent.
    pub sent: u32,
    /// Datagrams the peer acknowledged.
    pub acked: u32,
    /// Last progress (sending or an acknowledgement).
    pub progress: Instant,
    /// Updates for the peer (their sequence and records), held until the end.
    pub held: Vec<(u64, Vec<Record>)>,
}

impl Outgoing {
    pub fn new(id: u64, now: Instant, start_seq: u64) -> Self {
        Outgoing {
            id,
            started: now,
            start_seq,
            records: None,
            owns: Vec::new(),
            sent: 0,
            acked: 0,
            progress: now,
            held: Vec::new(),
        }
    }

    /// The walked records, IPv4 ones first.
    pub fn set_records(&mut self, mut records: Vec<Record>) {
        records.sort_by_key(Record::is_v6);
        self.records = Some(records);
    }

    /// IPv4 records, and the datagrams they take.
    fn v4_part(records: &[Record]) -> (usize, usize) {
        let n4 = records.partition_point(|r| !r.is_v6());
        (n4, n4.div_ceil(MAX_RECORDS))
    }

    /// Datagrams in the whole snapshot (known once walked).
    pub fn datagrams(&self) -> Option<u32> {
        self.records.as_ref().map(|r| {
            let (n4, d4) = Self::v4_part(r);
            (d4 + (r.len() - n4).div_ceil(MAX_RECORDS6)) as u32
        })
    }

    /// The next datagram's records, if the window allows one now.
    pub fn next(&mut self, now: Instant) -> Option<(u32, &[Record])> {
        let total = self.datagrams()?;
        if self.sent >= total || self.sent - self.acked.min(self.sent) >= WINDOW {
            return None;
        }
        let i = self.sent;
        self.sent += 1;
        self.progress = now;
        let records = self.records.as_deref()?;
        let (n4, d4) = Self::v4_part(records);
        let i_ = i as usize;
        let (start, end) = if i_ < d4 {
            let start = i_ * MAX_RECORDS;
            (start, (start + MAX_RECORDS).min(n4))
        } else {
            let start = n4 + (i_ - d4) * MAX_RECORDS6;
            (start, (start + MAX_RECORDS6).min(records.len()))
        };
        Some((i, &records[start..end]))
    }

    /// A new request `id` from the peer takes this snapshot over: the records walked
    /// (and the Updates held since the walk began) go out again from the first.
    pub fn rekey(&mut self, id: u64, now: Instant) {
        self.id = id;
        self.sent = 0;
        self.acked = 0;
        self.progress = now;
    }

    /// Every datagram is out: the end may follow.
    pub fn all_sent(&self) -> bool {
        self.datagrams().is_some_and(|n| self.sent >= n)
    }

    /// The peer received `n` datagrams.
    pub fn ack(&mut self, now: Instant, n: u32) {
        if n > self.acked {
            self.acked = n.min(self.sent);
            self.progress = now;
        }
    }

    /// Nothing moved for [`STALL`] (a walk in progress is not stalled).
    pub fn stalled(&self, now: Instant) -> bool {
        self.records.is_some() && now.duration_since(self.progress) >= STALL
    }

    /// Hold an Update for after the end; false if too much is held already.
    pub fn hold(&mut self, seq: u64, records: Vec<Record>) -> bool {
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push((seq, records));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::codec::Op;
    use std::net::Ipv4Addr;

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                op: Op::Upsert,
                proto: 6,
                client: Ipv4Addr::from(0x0a00_0000 + i as u32).into(),
                vip: Ipv4Addr::new(192, 0, 2, 100).into(),
                client_port: 1024,
                vip_port: 1514,
                backend: Ipv4Addr::new(10, 1, 0, 21).into(),
                backend_port: 11514,
                snat: Ipv4Addr::new(192, 0, 2, 101).into(),
                snat_port: 2000,
                client_mac: [0; 6],
                state: 2,
                age: Duration::ZERO,
            })
            .collect()
    }

    /// Snapshot 1 from sequence `start_seq`, its table walked into `records`.
    fn walked(start_seq: u64, records: Vec<Record>) -> (Outgoing, Instant) {
        let t0 = Instant::now();
        let mut o = Outgoing::new(1, t0, start_seq);
        o.records = Some(records);
        (o, t0)
    }

    #[test]
    fn requests_are_served_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut r = RateLimit::default();
        assert!(r.admit(t0));
        assert!(!r.admit(t0 + Duration::from_millis(100)));
        assert!(!r.admit(t0 + MIN_INTERVAL - Duration::from_millis(1)));
        assert!(r.admit(t0 + MIN_INTERVAL));
        assert!(!r.admit(t0 + MIN_INTERVAL));
    }

    #[test]
    fn the_sender_stays_within_the_window_of_acknowledged_datagrams() {
        let t0 = Instant::now();
        let mut o = Outgoing::new(9, t0, 4);
        assert_eq!(o.next(t0), None, "nothing to send while walking");
        assert!(!o.stalled(t0 + STALL), "a walk is not a stall");
        let n = (WINDOW as usize + 10) * MAX_RECORDS + 5;
        o.records = Some(records(n));
        assert_eq!(o.datagrams(), Some(WINDOW + 11));
        let mut sent = 0;
        while let Some((i, r)) = o.next(t0) {
            assert_eq!(i, sent);
            assert_eq!(r.len(), MAX_RECORDS);
            sent += 1;
        }
        assert_eq!(sent, WINDOW, "a full window, then wait");
        o.ack(t0, 16);
        let more: Vec<usize> = std::iter::from_fn(|| o.next(t0).map(|(_, r)| r.len())).collect();
        assert_eq!(more.len(), 11, "16 acknowledged: the rest fits");
        assert_eq!(*more.last().expect("last"), 5, "the last datagram is short");
        assert!(o.all_sent());
        assert_eq!(o.next(t0), None);
    }

    #[test]
    fn ipv6_records_follow_the_ipv4_ones_in_datagrams_of_their_own() {
        let t0 = Instant::now();
        let v6 = |r: Record| Record {
            client: "2001:db8:c::1".parse().expect("address"),
            vip: "2001:db8::100".parse().expect("address"),
            backend: "fd00::21".parse().expect("address"),
            snat: "2001:db8::101".parse().expect("address"),
            ..r
        };
        let mut all: Vec<Record> = records(MAX_RECORDS + 1);
        all.splice(3..3, records(MAX_RECORDS6 + 2).into_iter().map(v6));
        let mut o = Outgoing::new(1, t0, 0);
        o.set_records(all);
        assert_eq!(o.datagrams(), Some(2 + 2));
        let sent: Vec<(usize, bool)> = std::iter::from_fn(|| {
            o.next(t0).map(|(_, r)| {
                assert!(crate::sync::codec::slots_of(r) <= MAX_RECORDS);
                assert!(r.iter().all(|x| x.is_v6() == r[0].is_v6()));
                (r.len(), r[0].is_v6())
            })
        })
        .collect();
        assert_eq!(
            sent,
            [
                (MAX_RECORDS, false),
                (1, false),
                (MAX_RECORDS6, true),
                (2, true)
            ]
        );
    }

    #[test]
    fn an_empty_table_is_one_end_and_no_datagram() {
        let (mut o, t0) = walked(0, Vec::new());
        assert_eq!(o.datagrams(), Some(0));
        assert!(o.all_sent());
        assert_eq!(o.next(t0), None);
    }

    #[test]
    fn a_silent_receiver_stalls_the_snapshot() {
        let (mut o, t0) = walked(0, records(WINDOW as usize * MAX_RECORDS * 2));
        while o.next(t0).is_some() {}
        assert!(!o.stalled(t0 + STALL / 2));
        o.ack(t0 + STALL / 2, 16);
        assert!(!o.stalled(t0 + STALL), "an acknowledgement is progress");
        assert!(o.stalled(t0 + STALL / 2 + STALL));
        // A stale or repeated acknowledgement moves nothing.
        o.ack(t0 + STALL * 2, 16);
        assert!(o.stalled(t0 + STALL * 2));
    }

    #[test]
    fn a_new_request_takes_the_snapshot_over_from_its_first_datagram() {
        let (mut o, t0) = walked(7, records(MAX_RECORDS * 3));
        assert!(o.hold(8, Vec::new()));
        while o.next(t0).is_some() {}
        o.ack(t0, 2);
        o.rekey(2, t0);
        assert_eq!((o.id, o.sent, o.acked, o.start_seq), (2, 0, 0, 7));
        assert_eq!(o.held.len(), 1, "held updates stay: they follow the end");
        assert_eq!(o.next(t0).map(|(i, _)| i), Some(0));
    }

    #[test]
    fn held_updates_are_bounded() {
        let mut o = Outgoing::new(1, Instant::now(), 0);
        for i in 0..MAX_HELD {
            assert!(o.hold(i as u64, Vec::new()));
        }
        assert!(!o.hold(0, Vec::new()));
    }
}
