//! fo's units: the one duration grammar of the config, the lab tools (`fo-fleet`,
//! `fo-sink`) and xtask. A leaf crate with no product code, so the lab side can use it and
//! still build on a bare machine; fo-config re-exports it unchanged.
//!
//! ```
//! use std::time::Duration;
//! assert_eq!(fo_units::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
//! assert!(fo_units::parse_duration("120").is_err()); // a unit is required
//! ```

pub mod duration;

pub use duration::{DurationError, HumanDuration, format_duration, parse_duration};
