//! The sinks' arrival timelines (events per 10 ms bucket) summed over backends, and the
//! silences in them: what a client of the service saw.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::Value;

use super::unix_ns;

pub const BUCKET_NS: u64 = 10_000_000;

/// Arrivals per 10 ms summed over every sink report, keyed by bucket start (Unix ns).
pub fn sum_timelines(sinks: &[Value]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for s in sinks {
        let t = &s["timeline"];
        let (Some(start), Some(bucket_ms), Some(counts)) = (
            t["start_unix_ns"].as_u64(),
            t["bucket_ms"].as_u64(),
            t["counts"].as_array(),
        ) else {
            continue;
        };
        for (i, c) in counts.iter().enumerate() {
            *out.entry(start + i as u64 * bucket_ms * 1_000_000)
                .or_insert(0) += c.as_u64().unwrap_or(0);
        }
    }
    out
}

/// The longest run of empty 10 ms buckets from `from` to `to`, in ms.
pub fn longest_empty_ms(buckets: &BTreeMap<u64, u64>, from: SystemTime, to: SystemTime) -> u64 {
    let (from, to) = (unix_ns(from), unix_ns(to));
    let (mut run, mut best) = (0, 0);
    let mut t = from - from % BUCKET_NS;
    while t < to {
        if buckets.get(&t).copied().unwrap_or(0) == 0 {
            run += 10;
            best = best.max(run);
        } else {
            run = 0;
        }
        t += BUCKET_NS;
    }
    best
}
