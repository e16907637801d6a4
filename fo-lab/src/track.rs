//! Per-agent sequence accounting at the sink: pure, no I/O, unit-tested with synthetic
//! sequences.

/// What one arriving event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next sequence, in order.
    InOrder,
    /// Higher than the next expected one: opened a hole (missing sequences) before it.
    Jump,
    /// Lower than the highest already seen and not seen before: arrived late (fills a hole).
    Reordered,
    /// Already received.
    Duplicate,
}

/// The set of sequences one agent delivered to this sink, plus counters.
///
/// `floor` is the highest `resume_from` the agent announced in a HELLO: every sequence up
/// to it was acknowledged to the agent before (by this sink or an earlier one), so it is
/// not counted as missing here and acks start from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// Sorted, disjoint, non-adjacent inclusive ranges of received sequences.
    ranges: Vec<(u64, u64)>,
    floor: u64,
    highest: u64,
    received: u64,
    duplicates: u64,
    reorders: u64,
    jumps: u64,
}

impl SeqTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A HELLO announced `resume_from`.
    pub fn hello(&mut self, resume_from: u64) {
        self.floor = self.floor.max(resume_from);
    }

    /// Records one arrival.
    pub fn record(&mut self, seq: u64) -> Arrival {
        self.received += 1;
        // Fast path: extends the last range.
        if let Some(last) = self.ranges.last_mut()
            && seq == last.1 + 1
        {
            last.1 = seq;
            self.highest = seq;
            return Arrival::InOrder;
        }
        // Index of the first range starting after seq.
        let i = self.ranges.partition_point(|r| r.0 <= seq);
        if i > 0 && self.ranges[i - 1].1 >= seq {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        let joins_prev = i > 0 && self.ranges[i - 1].1 + 1 == seq;
        let joins_next = i < self.ranges.len() && self.ranges[i].0 == seq + 1;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = seq,
            (false, true) => self.ranges[i].0 = seq,
            (false, false) => self.ranges.insert(i, (seq, seq)),
        }
        if seq < self.highest {
            self.reorders += 1;
            Arrival::Reordered
        } else {
            let expected = self.highest.max(self.floor) + 1;
            self.highest = seq;
            if seq > expected {
                self.jumps += 1;
                Arrival::Jump
            } else {
                Arrival::InOrder
            }
        }
    }

    /// Highest `c` such that every sequence `1..=c` was received here or lies at or
    /// below the floor: the value to acknowledge.
    pub fn contiguous(&self) -> u64 {
        let mut c = self.floor;
        for &(start, end) in &self.ranges {
            if start > c + 1 {
                break;
            }
            c = c.max(end);
        }
        c
    }

    /// Sequences above the floor and up to the highest seen that never arrived.
    pub fn missing(&self) -> u64 {
        let lo = self.floor + 1;
        if self.highest < lo {
            return 0;
        }
        let covered: u64 = self
            .ranges
            .iter()
            .filter(|r| r.1 >= lo)
            .map(|r| r.1 - r.0.max(lo) + 1)
            .sum();
        (self.highest - lo + 1) - covered
    }

    /// Distinct sequences received.
    pub fn unique(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0 + 1).sum()
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
    pub fn floor(&self) -> u64 {
        self.floor
    }
    pub fn highest(&self) -> u64 {
        self.highest
    }
    pub fn received(&self) -> u64 {
        self.received
    }
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
    pub fn reorders(&self) -> u64 {
        self.reorders
    }
    /// How many times a hole was opened (an arrival jumped past the next expected one).
    pub fn gaps(&self) -> u64 {
        self.jumps
    }
}

#[cfg(test)]
mod tests {
    use super::Arrival::*;
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u64]) -> Vec<Arrival> {
        seqs.iter().map(|&s| t.record(s)).collect()
    }

    #[test]
    fn in_order_stream() {
        let mut t = SeqTracker::new();
        assert_eq!(feed(&mut t, &[1, 2, 3, 4]), [InOrder; 4]);
        assert_eq!(t.ranges(), [(1, 4)]);
        assert_eq!(
            (t.received(), t.unique(), t.contiguous(), t.missing()),
            (4, 4, 4, 0)
        );
        assert_eq!((t.duplicates(), t.reorders(), t.gaps()), (0, 0, 0));
    }

    #[test]
    fn gap_then_late_fill_then_duplicates() {
        let mut t = SeqTracker::new();
        assert_eq!(
            feed(&mut t, &[1, 2, 5, 6, 4, 3, 3, 6, 1, 7]),
            [
                InOrder, InOrder, Jump, InOrder, Reordered, Reordered, Duplicate, Duplicate,
                Duplicate, InOrder
            ]
        );
        assert_eq!(t.ranges(), [(1, 7)]);
        assert_eq!((t.received(), t.unique()), (10, 7));
        assert_eq!((t.duplicates(), t.reorders(), t.gaps()), (3, 2, 1));
        assert_eq!((t.contiguous(), t.missing(), t.highest()), (7, 0, 7));
    }

    #[test]
    fn holes_stay_missing_and_block_the_ack() {
        let mut t = SeqTracker::new();
        feed(&mut t, &[1, 2, 4, 7, 8, 10]);
        assert_eq!(t.ranges(), [(1, 2), (4, 4), (7, 8), (10, 10)]);
        assert_eq!(t.gaps(), 3, "jumps 2->4, 4->7, 8->10");
        assert_eq!(t.missing(), 4, "3, 5, 6, 9 never arrived");
        assert_eq!(t.contiguous(), 2, "ack must stop below the first hole");
        // Filling the middle hole merges the ranges around it.
        feed(&mut t, &[5, 6]);
        assert_eq!(t.ranges(), [(1, 2), (4, 8), (10, 10)]);
        assert_eq!((t.missing(), t.reorders(), t.contiguous()), (2, 2, 2));
        t.record(3);
        assert_eq!(t.contiguous(), 8);
    }

    #[test]
    fn resume_floor_from_an_earlier_sink() {
        // A fresh sink after a failover: the agent had 100 acknowledged elsewhere.
        let mut t = SeqTracker::new();
        t.hello(100);
        assert_eq!(t.contiguous(), 100, "ack what the agent already had acked");
        assert_eq!(feed(&mut t, &[101, 102]), [InOrder, InOrder]);
        assert_eq!((t.missing(), t.gaps(), t.contiguous()), (0, 0, 102));
        // A jump past the floor is a gap.
        assert_eq!(t.record(105), Jump);
        assert_eq!((t.missing(), t.contiguous()), (2, 102));
        // A later HELLO with a lower resume_from never lowers the floor.
        t.hello(50);
        assert_eq!(t.floor(), 100);
    }

    #[test]
    fn resend_after_reconnect_shows_as_duplicates() {
        // Sink got 1..=10, acked up to 6, connection died, agent resends 7.. from its ack.
        let mut t = SeqTracker::new();
        feed(&mut t, &(1..=10).collect::<Vec<_>>());
        t.hello(6);
        let arrivals = feed(&mut t, &(7..=12).collect::<Vec<_>>());
        assert_eq!(
            arrivals,
            [Duplicate, Duplicate, Duplicate, Duplicate, InOrder, InOrder]
        );
        assert_eq!((t.duplicates(), t.unique(), t.contiguous()), (4, 12, 12));
    }

    #[test]
    fn first_arrival_not_one_is_a_gap_without_floor() {
        let mut t = SeqTracker::new();
        assert_eq!(t.record(3), Jump);
        assert_eq!((t.missing(), t.contiguous()), (2, 0));
    }
}
