//! Counts per 10 ms bucket, lock-free, for the timeline plots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::report::TimelineReport;

/// Width of one bucket.
pub const BUCKET: Duration = Duration::from_millis(10);

/// A fixed array of atomic counters, one per 10 ms since a wall-clock origin aligned to
/// 10 ms, so timelines of different processes line up by `start_unix_ns`.
#[derive(Debug)]
pub struct Timeline {
    origin: Instant,
    origin_unix_ns: u64,
    counts: Box<[AtomicU64]>,
    /// Counts that fell after the last bucket.
    overflow: AtomicU64,
}

impl Timeline {
    /// A timeline covering `span` from now.
    pub fn new(span: Duration) -> Self {
        let now = Instant::now();
        let unix = unix_ns();
        let bucket_ns = BUCKET.as_nanos() as u64;
        let rem = unix % bucket_ns;
        let origin = now.checked_sub(Duration::from_nanos(rem)).unwrap_or(now);
        let n = (span.as_nanos() / BUCKET.as_nanos()).max(1) as usize + 1;
        Self {
            origin,
            origin_unix_ns: unix - rem,
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            overflow: AtomicU64::new(0),
        }
    }

    /// Adds `n` at `now`.
    pub fn add(&self, now: Instant, n: u64) {
        let i =
            (now.saturating_duration_since(self.origin).as_nanos() / BUCKET.as_nanos()) as usize;
        match self.counts.get(i) {
            Some(c) => c.fetch_add(n, Ordering::Relaxed),
            None => self.overflow.fetch_add(n, Ordering::Relaxed),
        };
    }

    /// The counts so far, trailing empty buckets trimmed.
    pub fn report(&self) -> TimelineReport {
        let mut counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        while counts.last() == Some(&0) {
            counts.pop();
        }
        TimelineReport {
            start_unix_ns: self.origin_unix_ns,
            bucket_ms: BUCKET.as_millis() as u64,
            counts,
            overflow: self.overflow.load(Ordering::Relaxed),
        }
    }
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_10ms_and_overflow() {
        let t = Timeline::new(Duration::from_millis(50));
        let o = t.origin;
        t.add(o, 1);
        t.add(o + Duration::from_millis(9), 1);
        t.add(o + Duration::from_millis(25), 3);
        t.add(o + Duration::from_secs(10), 7);
        let r = t.report();
        assert_eq!(r.counts, [2, 0, 3], "buckets 0-9 ms, 10-19 ms, 20-29 ms");
        assert_eq!(r.overflow, 7);
        assert_eq!(r.start_unix_ns % 10_000_000, 0, "origin aligned to 10 ms");
        assert_eq!(r.bucket_ms, 10);
    }
}
