//! Small value types shared by the codec and the state machine. Units live in the types:
//! an interval on the wire is either [`Centisecs`] (VRRP v3) or [`Seconds`] (VRRP v2), never
//! a bare integer.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The VRRP protocol version a virtual router speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Version {
    /// RFC 3768, IPv4 only, interval in seconds, optional simple password (keepalived `auth_pass`).
    V2,
    /// RFC 5798, IPv4 or IPv6, interval in centiseconds, no authentication.
    V3,
}

impl Version {
    /// The value of the 4-bit version field on the wire.
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl From<Version> for u8 {
    fn from(v: Version) -> u8 {
        v.number()
    }
}

impl TryFrom<u8> for Version {
    type Error = InvalidValue;

    fn try_from(n: u8) -> Result<Self, InvalidValue> {
        match n {
            2 => Ok(Version::V2),
            3 => Ok(Version::V3),
            _ => Err(InvalidValue {
                what: "VRRP version",
                value: n.into(),
                allowed: "2 or 3",
            }),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A value outside the range a type accepts (used by the `TryFrom` conversions and serde).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value}: expected {allowed}")]
pub struct InvalidValue {
    /// What was being converted.
    pub what: &'static str,
    /// The rejected value.
    pub value: u32,
    /// The accepted range, in words.
    pub allowed: &'static str,
}

/// Virtual Router Identifier, 1..=255 (RFC 5798 §5.2.3). Zero is not a valid VRID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Vrid(u8);

impl Vrid {
    /// The valid identifiers (RFC 5798 §5.2.3).
    pub const RANGE: RangeInclusive<u8> = 1..=255;

    /// `None` for 0.
    pub const fn new(n: u8) -> Option<Vrid> {
        if n == 0 { None } else { Some(Vrid(n)) }
    }

    /// The identifier as a number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl From<Vrid> for u8 {
    fn from(v: Vrid) -> u8 {
        v.0
    }
}

impl TryFrom<u8> for Vrid {
    type Error = InvalidValue;

    fn try_from(n: u8) -> Result<Self, InvalidValue> {
        Vrid::new(n).ok_or(InvalidValue {
            what: "VRID",
            value: n.into(),
            allowed: "1..=255",
        })
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// VRRP priority (RFC 5798 §5.2.4): 255 is the address owner, 1..=254 a backup router,
/// 0 "the current Master has stopped participating".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub u8);

impl Priority {
    /// Sent by a Master that stops (shutdown, admin demote): backups take over after Skew_Time.
    pub const STOP: Priority = Priority(0);
    /// The lowest a router may advertise while it participates.
    pub const MIN: Priority = Priority(1);
    /// The highest a non-owner may use; also what an admin promote advertises.
    pub const MAX_BACKUP: Priority = Priority(254);
    /// The router that owns the virtual addresses as real interface addresses.
    pub const OWNER: Priority = Priority(255);
    /// What a router that does not own the addresses may advertise (§5.2.4).
    pub const BACKUP: RangeInclusive<u8> = Priority::MIN.0..=Priority::MAX_BACKUP.0;
    /// What a router may be configured with: a backup's priority, or the owner's.
    pub const CONFIGURABLE: RangeInclusive<u8> = Priority::MIN.0..=Priority::OWNER.0;

    /// `true` for 255.
    pub const fn is_owner(self) -> bool {
        self.0 == Priority::OWNER.0
    }

    /// The priority a router configured with `configured` advertises when tracking asks for
    /// `wanted`: within [`Priority::BACKUP`], or up to 255 for an address owner. Tracking
    /// never stops a router (0) and never makes a backup an owner.
    pub fn clamp_tracked(configured: Priority, wanted: i32) -> Priority {
        let ceiling = if configured.is_owner() {
            Priority::OWNER
        } else {
            Priority::MAX_BACKUP
        };
        let clamped = wanted.clamp(i32::from(Priority::MIN.0), i32::from(ceiling.0));
        Priority(u8::try_from(clamped).unwrap_or(Priority::MIN.0))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Hundredths of a second: the unit of the 12-bit Max Adver Int field of VRRP v3
/// (RFC 5798 §5.2.7). Valid on the wire: 1..=4095.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Centisecs(pub u16);

impl Centisecs {
    /// The shortest valid interval (10 ms).
    pub const MIN: Centisecs = Centisecs(1);
    /// Largest value the 12-bit field holds (40.95 s).
    pub const MAX: Centisecs = Centisecs(0x0fff);

    /// The same span as a [`Duration`].
    pub fn to_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }
}

/// Whole seconds: the unit of the 8-bit Adver Int field of VRRP v2 (RFC 3768 §5.3.7).
/// Valid on the wire: 1..=255.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub u8);

impl Seconds {
    /// The shortest valid interval.
    pub const MIN: Seconds = Seconds(1);
    /// Largest value the 8-bit field holds.
    pub const MAX: Seconds = Seconds(u8::MAX);

    /// The same span as a [`Duration`].
    pub fn to_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

/// An advertisement interval with its unit, which also says the protocol version:
/// v3 counts centiseconds, v2 whole seconds.
///
/// In JSON: `{"centisecs": 100}` or `{"seconds": 1}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdverInterval {
    /// VRRP v3 Max Adver Int.
    Centisecs(Centisecs),
    /// VRRP v2 Adver Int.
    Seconds(Seconds),
}

impl AdverInterval {
    /// The protocol version this unit belongs to.
    pub const fn version(self) -> Version {
        match self {
            AdverInterval::Centisecs(_) => Version::V3,
            AdverInterval::Seconds(_) => Version::V2,
        }
    }

    /// The span as a [`Duration`].
    pub fn to_duration(self) -> Duration {
        match self {
            AdverInterval::Centisecs(c) => c.to_duration(),
            AdverInterval::Seconds(s) => s.to_duration(),
        }
    }

    /// Whether the value fits its wire field and is not zero.
    pub const fn is_valid(self) -> bool {
        match self {
            AdverInterval::Centisecs(Centisecs(c)) => {
                c >= Centisecs::MIN.0 && c <= Centisecs::MAX.0
            }
            AdverInterval::Seconds(Seconds(s)) => s >= Seconds::MIN.0,
        }
    }

    /// The interval of `version` that is exactly `d`: whole centiseconds within
    /// [`Centisecs::MIN`]..=[`Centisecs::MAX`] (v3), or whole seconds within
    /// [`Seconds::MIN`]..=[`Seconds::MAX`] (v2).
    pub fn from_duration(version: Version, d: Duration) -> Result<AdverInterval, IntervalError> {
        let (unit, min, max) = match version {
            Version::V3 => (
                Duration::from_millis(10),
                Centisecs::MIN.to_duration(),
                Centisecs::MAX.to_duration(),
            ),
            Version::V2 => (
                Duration::from_secs(1),
                Seconds::MIN.to_duration(),
                Seconds::MAX.to_duration(),
            ),
        };
        if !d.as_nanos().is_multiple_of(unit.as_nanos()) || d < min || d > max {
            return Err(IntervalError {
                version,
                interval: d,
            });
        }
        let units = d.as_nanos() / unit.as_nanos();
        Ok(match version {
            Version::V3 => AdverInterval::Centisecs(Centisecs(
                u16::try_from(units).expect("at most Centisecs::MAX"),
            )),
            Version::V2 => {
                AdverInterval::Seconds(Seconds(u8::try_from(units).expect("at most Seconds::MAX")))
            }
        })
    }
}

/// An advertisement interval that its version cannot carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "advert interval {interval:?} does not fit VRRP {version:?}: v3 takes whole centiseconds from 10ms to 40.95s, v2 whole seconds from 1s to 255s"
)]
pub struct IntervalError {
    /// The version asked for.
    pub version: Version,
    /// The interval given.
    pub interval: Duration,
}

impl fmt::Display for AdverInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdverInterval::Centisecs(c) => write!(f, "{}cs", c.0),
            AdverInterval::Seconds(s) => write!(f, "{}s", s.0),
        }
    }
}

/// The 8-byte simple-text password of VRRP v2 auth type 1 (RFC 2338 §5.3.6.1), as keepalived's
/// `auth_pass`: at most 8 bytes, zero-padded on the wire. `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Password([u8; 8]);

impl Password {
    /// Longest password the field holds.
    pub const MAX_LEN: usize = 8;

    /// Builds the zero-padded field; refuses an empty password or one longer than 8 bytes
    /// (keepalived silently truncates; fo makes the operator choose).
    pub fn new(password: &[u8]) -> Result<Password, PasswordError> {
        if password.is_empty() {
            return Err(PasswordError::Empty);
        }
        if password.len() > Self::MAX_LEN {
            return Err(PasswordError::TooLong {
                len: password.len(),
            });
        }
        let mut field = [0u8; 8];
        field[..password.len()].copy_from_slice(password);
        Ok(Password(field))
    }

    /// The 8 bytes as sent on the wire (zero-padded).
    pub const fn wire_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// Builds from the 8 bytes of the wire field as received.
    pub const fn from_wire(field: [u8; 8]) -> Password {
        Password(field)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Zero bytes.
    #[error("the VRRP v2 password is empty")]
    Empty,
    /// More than [`Password::MAX_LEN`] bytes.
    #[error("the VRRP v2 password is {len} bytes long; at most 8 fit in the packet")]
    TooLong {
        /// The length given.
        len: usize,
    },
}

/// VRRP v2 authentication (RFC 3768 §5.3.6 keeps the 8-byte field; RFC 2338 defined type 1).
/// VRRP v3 has no authentication: a v3 advert always carries [`Auth::None`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Auth type 0; the 8 authentication bytes are sent as zeros and ignored on receipt.
    #[default]
    None,
    /// Auth type 1, simple text password.
    Simple(Password),
}

impl Auth {
    /// The Auth Type field value.
    pub const fn type_code(&self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Simple(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_to_durations() {
        assert_eq!(Centisecs(100).to_duration(), Duration::from_secs(1));
        assert_eq!(Centisecs(1).to_duration(), Duration::from_millis(10));
        assert_eq!(Seconds(3).to_duration(), Duration::from_secs(3));
        assert_eq!(
            AdverInterval::Centisecs(Centisecs(4095)).to_duration(),
            Duration::from_millis(40_950)
        );
    }

    #[test]
    fn interval_validity_follows_the_wire_fields() {
        assert!(!AdverInterval::Centisecs(Centisecs(0)).is_valid());
        assert!(AdverInterval::Centisecs(Centisecs(4095)).is_valid());
        assert!(!AdverInterval::Centisecs(Centisecs(4096)).is_valid());
        assert!(!AdverInterval::Seconds(Seconds(0)).is_valid());
        assert!(AdverInterval::Seconds(Seconds(255)).is_valid());
    }

    #[test]
    fn password_is_zero_padded_and_bounded() {
        let p = Password::new(b"secret").expect("6 bytes fit");
        assert_eq!(p.wire_bytes(), b"secret\0\0");
        assert_eq!(Password::new(b""), Err(PasswordError::Empty));
        assert_eq!(
            Password::new(b"123456789"),
            Err(PasswordError::TooLong { len: 9 })
        );
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
    }

    #[test]
    fn serde_shapes_are_stable() {
        let json = serde_json::to_string(&AdverInterval::Centisecs(Centisecs(100))).unwrap();
        assert_eq!(json, r#"{"centisecs":100}"#);
        let json = serde_json::to_string(&AdverInterval::Seconds(Seconds(1))).unwrap();
        assert_eq!(json, r#"{"seconds":1}"#);
        assert_eq!(serde_json::to_string(&Version::V3).unwrap(), "3");
        assert!(serde_json::from_str::<Vrid>("0").is_err());
        assert_eq!(serde_json::from_str::<Vrid>("51").unwrap(), Vrid(51));
    }

    #[test]
    fn rfc_numbers_are_the_rfc_literals() {
        assert_eq!(Priority::STOP.0, 0, "RFC 5798 §5.2.4: 0 = the Master stops");
        assert_eq!(Priority::BACKUP, 1..=254, "§5.2.4: backups use 1-254");
        assert_eq!(Priority::OWNER.0, 255, "§5.2.4: the owner uses 255");
        assert_eq!(Priority::CONFIGURABLE, 1..=255);
        assert_eq!(Vrid::RANGE, 1..=255, "§5.2.3: VRID 1-255");
        assert_eq!(
            (Centisecs::MIN.0, Centisecs::MAX.0),
            (1, 4095),
            "§5.2.7: 12 bits"
        );
        assert_eq!(
            (Seconds::MIN.0, Seconds::MAX.0),
            (1, 255),
            "RFC 3768 §5.3.7"
        );
    }

    #[test]
    fn tracking_stays_within_the_backup_range_unless_owner() {
        let p = |n| Priority(n);
        assert_eq!(Priority::clamp_tracked(p(100), -500), p(1));
        assert_eq!(Priority::clamp_tracked(p(100), 90), p(90));
        assert_eq!(Priority::clamp_tracked(p(100), 300), p(254));
        assert_eq!(Priority::clamp_tracked(p(255), 300), p(255));
        assert_eq!(Priority::clamp_tracked(p(255), 200), p(200));
        assert_eq!(Priority::clamp_tracked(p(255), 0), p(1));
    }

    #[test]
    fn intervals_from_durations_fit_their_version() {
        let ms = Duration::from_millis;
        assert_eq!(
            AdverInterval::from_duration(Version::V3, ms(100)),
            Ok(AdverInterval::Centisecs(Centisecs(10)))
        );
        assert_eq!(
            AdverInterval::from_duration(Version::V3, ms(40_950)),
            Ok(AdverInterval::Centisecs(Centisecs::MAX))
        );
        for bad in [ms(0), ms(5), ms(15), ms(40_960)] {
            assert!(
                AdverInterval::from_duration(Version::V3, bad).is_err(),
                "{bad:?} in v3"
            );
        }
        assert_eq!(
            AdverInterval::from_duration(Version::V2, ms(255_000)),
            Ok(AdverInterval::Seconds(Seconds::MAX))
        );
        for bad in [ms(0), ms(1_500), ms(256_000)] {
            assert!(
                AdverInterval::from_duration(Version::V2, bad).is_err(),
                "{bad:?} in v2"
            );
        }
    }
}
