//! Command-line values: durations (`10ms`, `1.5s`, `2m`, the config's grammar) and rates
//! (`100/s`).

use std::net::IpAddr;
use std::time::Duration;

/// A value on the command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("rate {input:?}: expected events per second, e.g. 100/s (or 100)")]
    Rate { input: String },
    #[error("source address {input:?}: expected an IP, or a range A-B of the same family")]
    Source { input: String },
    #[error("source range {input:?} holds more than {max} addresses")]
    SourceRangeTooLarge { input: String, max: u32 },
}

/// Durations on the command line use the config's grammar (`500us`, `10ms`, `1.5s`,
/// `1m30s`, `1h`; a unit is required, `0s` is zero).
pub use fo_units::parse_duration;

/// Parses a rate in events per second (`100/s`, `100`, `0.5/s`) into the interval
/// between two events.
pub fn parse_rate(input: &str) -> Result<Duration, ParseError> {
    let err = || ParseError::Rate {
        input: input.to_owned(),
    };
    let s = input.trim();
    let num = s.strip_suffix("/s").unwrap_or(s);
    let per_sec: f64 = num.parse().map_err(|_| err())?;
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return Err(err());
    }
    Duration::try_from_secs_f64(1.0 / per_sec).map_err(|_| err())
}

/// Largest range `A-B` accepted by [`parse_sources`].
pub const MAX_SOURCE_RANGE: u32 = 65_536;

/// Parses a comma-separated list of source addresses; an element may be a range
/// `10.0.1.1-10.0.1.200` (inclusive, IPv4 or IPv6).
pub fn parse_sources(input: &str) -> Result<Vec<IpAddr>, ParseError> {
    let mut out = Vec::new();
    for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let err = || ParseError::Source {
            input: part.to_owned(),
        };
        match part.split_once('-') {
            None => out.push(part.parse().map_err(|_| err())?),
            Some((a, b)) => {
                let a: IpAddr = a.trim().parse().map_err(|_| err())?;
                let b: IpAddr = b.trim().parse().map_err(|_| err())?;
                let (lo, hi) = match (a, b) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => {
                        (u128::from(u32::from(a)), u128::from(u32::from(b)))
                    }
                    (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
                    _ => return Err(err()),
                };
                if hi < lo {
                    return Err(err());
                }
                if hi - lo >= u128::from(MAX_SOURCE_RANGE) {
                    return Err(ParseError::SourceRangeTooLarge {
                        input: part.to_owned(),
                        max: MAX_SOURCE_RANGE,
                    });
                }
                for v in lo..=hi {
                    out.push(match a {
                        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
                        IpAddr::V6(_) => IpAddr::V6(v.into()),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("10ms", Duration::from_millis(10)),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            ("500us", Duration::from_micros(500)),
            ("2m", Duration::from_secs(120)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for s in ["10", "0", "120", "ms", "1x", "-1s", ""] {
            assert!(parse_duration(s).is_err(), "{s:?} must be refused");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_rate("4"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_rate("0.5/s"), Ok(Duration::from_secs(2)));
        for s in ["0/s", "x/s", "-1", "inf"] {
            assert!(parse_rate(s).is_err(), "{s:?} must be refused");
        }
    }

    #[test]
    fn sources() {
        let v = parse_sources("10.0.0.1, 10.0.1.254-10.0.2.1,::1").expect("valid list");
        let want: Vec<IpAddr> = [
            "10.0.0.1",
            "10.0.1.254",
            "10.0.1.255",
            "10.0.2.0",
            "10.0.2.1",
            "::1",
        ]
        .iter()
        .map(|s| s.parse().expect("literal"))
        .collect();
        assert_eq!(v, want);
        assert!(parse_sources("10.0.0.2-10.0.0.1").is_err());
        assert!(parse_sources("10.0.0.1-::2").is_err());
        assert!(matches!(
            parse_sources("10.0.0.0-10.2.0.0"),
            Err(ParseError::SourceRangeTooLarge { .. })
        ));
    }
}
