//! Unix time, read one way: what status, logs and sequence numbers show as wall-clock time.
//! Everything that measures intervals uses `Instant` instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch; zero for a time before it (a clock set far back).
pub fn since_unix_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// [`since_unix_epoch`] in whole milliseconds, saturating.
pub fn unix_millis(t: SystemTime) -> u64 {
    u64::try_from(since_unix_epoch(t).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_epoch_is_zero_and_millis_saturate_nowhere_near() {
        assert_eq!(
            since_unix_epoch(UNIX_EPOCH - Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            unix_millis(UNIX_EPOCH + Duration::from_millis(1_500)),
            1_500
        );
    }
}
