//! The timer arithmetic of RFC 5798 §6.1 (and RFC 3768 §6.1 for version 2): the one home of
//! Skew_Time and Master_Down_Interval.
//!
//! * v3: `Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256` and
//!   `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`, all in centiseconds with
//!   integer (truncating) division, as the RFC's unit suggests. Example: priority 100,
//!   interval 100 cs: skew = 15600 / 256 = 60 cs (60.9 truncated), down = 360 cs = 3.6 s.
//!   (keepalived computes in microseconds and gets 3.609375 s; the difference is below one
//!   centisecond per unit of interval and does not change who wins.)
//! * v2: `Skew_Time = (256 - Priority) / 256` seconds, independent of the interval, computed in
//!   whole microseconds, truncating: priority 100 gives 609 375 µs, so with a 1 s interval
//!   `Master_Down_Interval` = 3.609375 s (the same value keepalived uses for v2).
//!
//! Two values, one rounding choice, named here once:
//! - [`skew_time`] and [`master_down_interval`] are what fo **arms**: truncated to the wire
//!   unit, as above.
//! - [`master_down_interval_exact`] is the formula in exact [`Duration`] arithmetic
//!   (keepalived's value): never below fo's and, for v3, less than one centisecond per
//!   interval unit above it. Tests, chaos and benches use it as the **bound** a takeover is
//!   measured against.

use std::time::Duration;

use crate::types::{AdverInterval, Centisecs, Priority, Seconds};

/// How many advertisement intervals a Backup waits before Skew_Time is added (the `3` of
/// `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`).
pub const MASTER_DOWN_ADVERTS: u32 = 3;

/// The divisor of the skew: `Skew_Time = ((256 - Priority) * interval) / 256`.
const SKEW_DIVISOR: u64 = 256;

/// `Skew_Time` for a router of `priority` hearing `master_adver_interval` (see the module
/// docs for units and rounding).
pub fn skew_time(priority: Priority, master_adver_interval: AdverInterval) -> Duration {
    let weight = SKEW_DIVISOR - u64::from(priority.0);
    match master_adver_interval {
        AdverInterval::Centisecs(Centisecs(cs)) => {
            Duration::from_millis(weight * u64::from(cs) / SKEW_DIVISOR * 10)
        }
        AdverInterval::Seconds(Seconds(_)) => {
            Duration::from_micros(weight * 1_000_000 / SKEW_DIVISOR)
        }
    }
}

/// `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`, as fo arms it.
pub fn master_down_interval(priority: Priority, master_adver_interval: AdverInterval) -> Duration {
    master_adver_interval.to_duration() * MASTER_DOWN_ADVERTS
        + skew_time(priority, master_adver_interval)
}

/// Master_Down_Interval without truncation (keepalived's value): the bound a measured
/// takeover is compared with. v3 skews by the interval, v2 by one second.
pub fn master_down_interval_exact(
    priority: Priority,
    master_adver_interval: AdverInterval,
) -> Duration {
    let weight = u32::from(u8::MAX) + 1 - u32::from(priority.0);
    let unit = match master_adver_interval {
        AdverInterval::Centisecs(_) => master_adver_interval.to_duration(),
        AdverInterval::Seconds(_) => Duration::from_secs(1),
    };
    master_adver_interval.to_duration() * MASTER_DOWN_ADVERTS + unit * weight / 256
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(cs: u16) -> AdverInterval {
        AdverInterval::Centisecs(Centisecs(cs))
    }

    #[test]
    fn constants_are_the_rfc_literals() {
        assert_eq!(
            MASTER_DOWN_ADVERTS, 3,
            "RFC 5798 §6.1: 3 * Master_Adver_Interval"
        );
        assert_eq!(SKEW_DIVISOR, 256, "RFC 5798 §6.1: (256 - Priority) / 256");
    }

    #[test]
    fn exact_is_keepalived_and_never_below_what_fo_arms() {
        // 100 ms, priority 150: 300 ms + 100 ms * 106 / 256 = 341.40625 ms.
        assert_eq!(
            master_down_interval_exact(Priority(150), v3(10)).as_nanos(),
            341_406_250
        );
        assert_eq!(master_down_interval(Priority(150), v3(10)).as_millis(), 340);
        // 1 s, priority 100: fo arms 3.6 s, keepalived 3.609375 s.
        assert_eq!(
            master_down_interval(Priority(100), v3(100)).as_millis(),
            3_600
        );
        assert_eq!(
            master_down_interval_exact(Priority(100), v3(100)).as_micros(),
            3_609_375
        );
        // v2 skews by one second whatever the interval, and both agree.
        let v2 = AdverInterval::Seconds(Seconds(2));
        assert_eq!(
            master_down_interval_exact(Priority(100), v2),
            master_down_interval(Priority(100), v2)
        );
        assert_eq!(
            master_down_interval(Priority(100), v2).as_micros(),
            6_609_375
        );
        for p in 1..=255u8 {
            for cs in [1u16, 7, 10, 100, 4095] {
                let (armed, exact) = (
                    master_down_interval(Priority(p), v3(cs)),
                    master_down_interval_exact(Priority(p), v3(cs)),
                );
                assert!(
                    armed <= exact && exact - armed < Duration::from_millis(10),
                    "priority {p}, {cs} cs: armed {armed:?}, exact {exact:?}"
                );
            }
        }
    }
}
