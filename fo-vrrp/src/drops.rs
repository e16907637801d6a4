//! Why a received advert was dropped: one reason per RFC 5798 §7.1 receive check (and fo's
//! HMAC and replay checks), each with a stable metrics label. A leaf module, so both the
//! codec and the HMAC check report through it without using each other.

use std::net::IpAddr;

use crate::types::{AdverInterval, Version, Vrid};

/// Why a received packet was dropped. [`DropReason::as_str`] gives a stable metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// TTL / hop limit was not 255 (RFC 5798 §7.1): the packet crossed a router.
    #[error("TTL or hop limit is {got}, expected 255")]
    Ttl {
        /// What the packet carried.
        got: u8,
    },
    /// Source and destination of different families, or a family the version cannot carry.
    #[error("address family not usable for VRRP v{version} (source {src}, destination {dst})")]
    Family {
        /// The configured version.
        version: Version,
        /// IP source.
        src: IpAddr,
        /// IP destination.
        dst: IpAddr,
    },
    /// Multicast mode and the destination is not the VRRP group.
    #[error("destination {dst} is not the VRRP multicast group")]
    Destination {
        /// IP destination.
        dst: IpAddr,
    },
    /// Unicast mode and the source is not a configured peer.
    #[error("source {src} is not a configured peer")]
    NotPeer {
        /// IP source.
        src: IpAddr,
    },
    /// Shorter than the fixed part of the message.
    #[error("VRRP message of {len} bytes is shorter than its fixed part")]
    Length {
        /// Payload length.
        len: usize,
    },
    /// Version field differs from the configured version.
    #[error("version {got}, configured {expected}")]
    Version {
        /// The 4-bit field.
        got: u8,
        /// The configured version.
        expected: Version,
    },
    /// Type field is not 1 (ADVERTISEMENT).
    #[error("type {got}, expected 1 (ADVERTISEMENT)")]
    Type {
        /// The 4-bit field.
        got: u8,
    },
    /// The VRID is not the router's.
    #[error("VRID {got}, expected {expected}")]
    Vrid {
        /// The field.
        got: u8,
        /// The configured VRID.
        expected: Vrid,
    },
    /// Count IPvX Addr is zero or disagrees with the length.
    #[error("{count} addresses announced in a {len}-byte message")]
    AddressCount {
        /// The count field.
        count: u8,
        /// Payload length.
        len: usize,
    },
    /// Checksum mismatch.
    #[error("checksum {got:#06x}, computed {computed:#06x}")]
    Checksum {
        /// The field.
        got: u16,
        /// The value it should have been.
        computed: u16,
    },
    /// Interval zero (v3, v2), or different from the configured one (v2, RFC 3768 §7.1).
    #[error("advertisement interval {got} not acceptable (configured {configured})")]
    Interval {
        /// The interval in the packet (raw field).
        got: u16,
        /// The configured interval.
        configured: AdverInterval,
    },
    /// v2 auth type differs from the configured one (including type 2, IP AH, never accepted).
    #[error("v2 auth type {got}, configured {expected}")]
    AuthType {
        /// The field.
        got: u8,
        /// The configured type.
        expected: u8,
    },
    /// v2 auth type 1 with a wrong password.
    #[error("v2 simple password mismatch")]
    AuthPassword,
    /// HMAC mode: no fo trailer (a plain advert, or a truncated one).
    #[error(
        "no HMAC trailer in a {len}-byte payload (the sender is not in HMAC mode, or the packet was cut)"
    )]
    AuthMissing {
        /// Payload length.
        len: usize,
    },
    /// HMAC mode: the trailer names another key.
    #[error("signed with key ID {got:08x}, ours is {ours:08x} (the sender has another key)")]
    AuthKey {
        /// The key ID in the trailer.
        got: u32,
        /// Ours.
        ours: u32,
    },
    /// HMAC mode: the tag does not verify (altered in transit, or forged).
    #[error("HMAC does not verify")]
    AuthTag,
    /// HMAC mode: the sequence is not above the last one accepted from this source.
    #[error(
        "sequence {seq} is not above the last accepted {last} (replayed, or the sender's clock went back before it restarted)"
    )]
    Replay {
        /// The sequence in the trailer.
        seq: u64,
        /// The last accepted from the same source.
        last: u64,
    },
}

impl DropReason {
    /// Every label [`DropReason::as_str`] can return, to pre-register metrics series.
    pub const LABELS: &'static [&'static str] = &[
        "ttl",
        "family",
        "destination",
        "not_peer",
        "length",
        "version",
        "type",
        "vrid",
        "address_count",
        "checksum",
        "interval",
        "auth",
        "replay",
    ];

    /// A stable label for `fo_vrrp_dropped_total{reason}`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            DropReason::Ttl { .. } => "ttl",
            DropReason::Family { .. } => "family",
            DropReason::Destination { .. } => "destination",
            DropReason::NotPeer { .. } => "not_peer",
            DropReason::Length { .. } => "length",
            DropReason::Version { .. } => "version",
            DropReason::Type { .. } => "type",
            DropReason::Vrid { .. } => "vrid",
            DropReason::AddressCount { .. } => "address_count",
            DropReason::Checksum { .. } => "checksum",
            DropReason::Interval { .. } => "interval",
            DropReason::AuthType { .. }
            | DropReason::AuthPassword
            | DropReason::AuthMissing { .. }
            | DropReason::AuthKey { .. }
            | DropReason::AuthTag => "auth",
            DropReason::Replay { .. } => "replay",
        }
    }
}
