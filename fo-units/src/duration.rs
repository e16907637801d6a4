//! Durations written as strings with units: `"20ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1m30s"`,
//! `"30d"`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// A [`std::time::Duration`] that reads and writes as a string with units.
///
/// Accepted: one or more `<number><unit>` parts with no spaces between number
/// and unit, where the number is decimal (`1`, `1.5`) and the unit is one of
/// `ns`, `us` (or `µs`), `ms`, `s`, `m` (minutes), `h`, `d` (days of 24 hours, for
/// certificate lifetimes: `"30d"`). `"1m30s"` is 90 s, `"1d12h"` is 36 hours.
/// Unitless (`"5"`, `5`) and negative values are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// The inner [`std::time::Duration`].
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for HumanDuration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for std::time::Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write e.g. \"1s\" or \"100ms\"")]
    Empty,
    #[error("duration {input:?} cannot be negative")]
    Negative { input: String },
    #[error(
        "duration {input:?} has no unit: write e.g. \"{input}s\" or \"{input}ms\" (units: ns, us, ms, s, m, h, d)"
    )]
    MissingUnit { input: String },
    #[error("duration {input:?}: unknown unit {unit:?} (units: ns, us, ms, s, m, h, d)")]
    UnknownUnit { input: String, unit: String },
    #[error(
        "duration {input:?} is not a number followed by a unit, like \"1s\", \"1.5s\" or \"1m30s\""
    )]
    Malformed { input: String },
    #[error("duration {input:?} is too large")]
    Overflow { input: String },
    #[error("duration {input:?} is finer than one nanosecond")]
    TooPrecise { input: String },
}

/// Parse a duration string (see [`HumanDuration`]).
pub fn parse_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(DurationError::Negative {
            input: input.to_owned(),
        });
    }
    let malformed = || DurationError::Malformed {
        input: input.to_owned(),
    };
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(malformed());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(if total == 0 && after.is_empty() && rest.len() == s.len() {
                DurationError::MissingUnit {
                    input: input.to_owned(),
                }
            } else {
                malformed()
            });
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.starts_with(char::is_whitespace) {
                malformed()
            } else {
                DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.trim().to_owned(),
                }
            });
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(malformed());
        }
        let overflow = || DurationError::Overflow {
            input: input.to_owned(),
        };
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| overflow())?
        };
        let mut part = int.checked_mul(scale).ok_or_else(overflow)?;
        if !frac.is_empty() {
            if frac.len() > 18 {
                return Err(DurationError::TooPrecise {
                    input: input.to_owned(),
                });
            }
            let digits: u128 = frac.parse().map_err(|_| malformed())?;
            let denom = 10u128.pow(frac.len() as u32);
            let scaled = digits * scale;
            if !scaled.is_multiple_of(denom) {
                return Err(DurationError::TooPrecise {
                    input: input.to_owned(),
                });
            }
            part = part.checked_add(scaled / denom).ok_or_else(overflow)?;
        }
        total = total.checked_add(part).ok_or_else(overflow)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow {
        input: input.to_owned(),
    })?;
    Ok(std::time::Duration::new(
        secs,
        (total % 1_000_000_000) as u32,
    ))
}

/// Write a duration the way [`parse_duration`] reads it, in the largest unit
/// that represents it exactly (`"90s"`, `"1500ms"`, `"2m"`).
pub fn format_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    for &(unit, scale) in UNITS.iter().rev() {
        if unit == "µs" {
            continue;
        }
        if ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// `serialize_with` helper for plain `std::time::Duration` fields.
pub fn serialize_std<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// `serialize_with` helper for `Option<std::time::Duration>` fields.
pub fn serialize_std_opt<S: Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

/// The error for a bare number where a duration belongs: negative, or missing its unit.
fn unitless(negative: bool, input: String) -> DurationError {
    if negative {
        DurationError::Negative { input }
    } else {
        DurationError::MissingUnit { input }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"1s\" or \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                Err(E::custom(unitless(v < 0, v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Err(E::custom(unitless(false, v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                Err(E::custom(unitless(v < 0.0, v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as D;

    #[test]
    fn accepts_units_fractions_and_compounds() {
        let ok = [
            ("20ms", D::from_millis(20)),
            ("1s", D::from_secs(1)),
            ("1.5s", D::from_millis(1500)),
            ("0.25s", D::from_millis(250)),
            (".5s", D::from_millis(500)),
            ("2m", D::from_secs(120)),
            ("1h", D::from_secs(3600)),
            ("1m30s", D::from_secs(90)),
            ("1h2m3s4ms", D::from_millis(3_723_004)),
            ("0s", D::ZERO),
            ("0ms", D::ZERO),
            ("  40.95s ", D::from_millis(40_950)),
            ("7ns", D::from_nanos(7)),
            ("3us", D::from_micros(3)),
            ("3µs", D::from_micros(3)),
            ("+1s", D::from_secs(1)),
            ("30d", D::from_secs(30 * 86_400)),
            ("1d12h", D::from_secs(36 * 3_600)),
            ("0.5d", D::from_secs(12 * 3_600)),
            ("1d", D::from_secs(86_400)),
        ];
        for (input, want) in ok {
            assert_eq!(parse_duration(input), Ok(want), "parsing {input:?}");
        }
    }

    #[test]
    fn rejects_unitless_negative_and_garbage() {
        let cases = [
            ("", "empty duration"),
            ("   ", "empty duration"),
            ("5", "has no unit"),
            ("1.5", "has no unit"),
            ("-1s", "cannot be negative"),
            ("-5", "cannot be negative"),
            ("1x", "unknown unit \"x\""),
            ("1sec", "unknown unit \"sec\""),
            ("1w", "unknown unit \"w\" (units: ns, us, ms, s, m, h, d)"),
            ("1day", "unknown unit \"day\""),
            ("1d5", "is not a number"),
            ("s", "is not a number"),
            ("1 s", "is not a number"),
            ("1s5", "is not a number"),
            ("1..5s", "is not a number"),
            ("1.2.3s", "is not a number"),
            (".s", "is not a number"),
            ("0.5ns", "finer than one nanosecond"),
            ("99999999999999999999999999999h", "too large"),
            ("999999999999999999h", "too large"),
            ("999999999999999d", "too large"),
        ];
        for (input, want) in cases {
            let err = parse_duration(input).expect_err(input).to_string();
            assert!(
                err.contains(want),
                "parsing {input:?}: expected {want:?} in {err:?}"
            );
        }
    }

    #[test]
    fn formats_in_the_largest_exact_unit_and_round_trips() {
        for (d, s) in [
            (D::ZERO, "0s"),
            (D::from_millis(100), "100ms"),
            (D::from_millis(1500), "1500ms"),
            (D::from_secs(90), "90s"),
            (D::from_secs(120), "2m"),
            (D::from_secs(7200), "2h"),
            (D::from_secs(86_400), "1d"),
            (D::from_secs(30 * 86_400), "30d"),
            (D::from_secs(36 * 3_600), "36h"),
            (D::from_nanos(1_000_001), "1000001ns"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }
}
