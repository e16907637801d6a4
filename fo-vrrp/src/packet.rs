//! The VRRP advertisement codec: RFC 5798 (version 3, IPv4 and IPv6) and RFC 3768
//! (version 2, IPv4, with keepalived's `auth_pass` simple password).
//!
//! Only the VRRP message (the IP payload, IP protocol 112) is handled here; the caller reads
//! the source, destination and TTL / hop limit from the IP header and passes them in
//! [`RxMeta`], because the v3 checksum covers a pseudo-header and RFC 5798 §7.1 requires the
//! TTL / hop limit to be 255.
//!
//! VRRP v3 (RFC 5798 §5.1), after the IPv4 or IPv6 header:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                       IPvX Address(es)                        |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Version 3, Type 1 (ADVERTISEMENT), Max Adver Int in centiseconds (12 bits, the 4 reserved
//! bits are sent as zero and ignored on receipt), IPvX addresses of 4 or 16 bytes each in the
//! family of the IP header. The checksum (§5.2.8) covers the VRRP message and a pseudo-header:
//!
//! ```text
//! IPv4 (as TCP/UDP):                     IPv6 (RFC 2460 §8.1):
//! +--------+--------+--------+--------+  +-----------------------------------+
//! |          Source Address           |  |     Source Address (16 bytes)     |
//! +--------+--------+--------+--------+  +-----------------------------------+
//! |        Destination Address        |  |  Destination Address (16 bytes)   |
//! +--------+--------+--------+--------+  +-----------------------------------+
//! |  zero  |  112   |   VRRP length   |  |     Upper-Layer Packet Length     |
//! +--------+--------+--------+--------+  +--------+--------+--------+--------+
//!                                        |          zero            |  112   |
//!                                        +--------+--------+--------+--------+
//! ```
//!
//! Both give the same one's-complement sum, so one routine serves both families.
//!
//! VRRP v2 (RFC 3768 §5.1), IPv4 only:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Adver Int   |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (1)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            .                                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         IP Address (n)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (1)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Authentication Data (2)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Adver Int in whole seconds; Auth Type 0 (none, data zero) or 1 (simple text password,
//! zero-padded, RFC 2338 §5.3.6.1 — what keepalived sends for `auth_pass`). The checksum
//! covers the VRRP message only, no pseudo-header (RFC 3768 §5.3.8). The 8 authentication
//! bytes are always present, as keepalived sends and expects them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::drops::DropReason;
use crate::types::{AdverInterval, Auth, Centisecs, Password, Priority, Seconds, Version, Vrid};

/// IP protocol number of VRRP.
pub const IP_PROTO_VRRP: u8 = 112;
/// The TTL (IPv4) or hop limit (IPv6) every advertisement is sent and received with.
pub const VRRP_TTL: u8 = 255;
/// The IPv4 multicast group of VRRP (RFC 5798 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP (RFC 5798 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;
const MAX_ADDRESSES: usize = u8::MAX as usize;

/// One VRRP advertisement, decoded or to be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Router Identifier.
    pub vrid: Vrid,
    /// The sender's priority (0 = stopping, 255 = address owner).
    pub priority: Priority,
    /// Max Adver Int (v3, centiseconds) or Adver Int (v2, seconds); the variant is the version.
    pub max_adver_interval: AdverInterval,
    /// The virtual addresses, all of one family (v2: IPv4 only).
    pub addresses: Vec<IpAddr>,
    /// v2 authentication; always [`Auth::None`] for v3.
    pub auth: Auth,
}

/// What the caller knows about a received packet from its IP header, and what the virtual
/// router it is meant for expects. Find the router first with [`peek_vrid`].
#[derive(Clone, Copy, Debug)]
pub struct RxMeta<'a> {
    /// IP source address.
    pub src: IpAddr,
    /// IP destination address.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl_or_hop_limit: u8,
    /// The version the virtual router is configured for.
    pub version: Version,
    /// The virtual router's identifier.
    pub vrid: Vrid,
    /// The configured interval. For v2 the received Adver Int must equal it (RFC 3768 §7.1);
    /// for v3 only its unit matters (backups adopt the master's interval, RFC 5798 §6.4.2).
    pub interval: AdverInterval,
    /// The configured v2 authentication (ignored for v3).
    pub auth: Auth,
    /// Unicast peers. Empty means multicast: the destination must then be the VRRP group.
    /// Otherwise the source must be one of them.
    pub peers: &'a [IpAddr],
}

/// Why an [`Advert`] cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// No addresses, or more than 255.
    #[error("{count} addresses; an advertisement carries 1..=255")]
    AddressCount {
        /// How many were given.
        count: usize,
    },
    /// Source, destination and addresses are not all of one family, or IPv6 with v2.
    #[error("address {address} does not match the family of the packet (VRRP v{version})")]
    Family {
        /// The first offending address.
        address: IpAddr,
        /// The advert's version.
        version: Version,
    },
    /// The interval is zero or does not fit its field.
    #[error("advertisement interval {interval} does not fit the packet")]
    Interval {
        /// The rejected interval.
        interval: AdverInterval,
    },
    /// A v3 advert with v2 authentication.
    #[error("VRRP v3 has no authentication")]
    AuthWithV3,
}

impl Advert {
    /// The protocol version, given by the unit of the interval.
    pub const fn version(&self) -> Version {
        self.max_adver_interval.version()
    }

    /// Builds the VRRP message (the IP payload) with its checksum: v3 over the pseudo-header
    /// of `src` and `dst`, v2 over the message alone.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
        let version = self.version();
        let count = self.addresses.len();
        if count == 0 || count > MAX_ADDRESSES {
            return Err(EncodeError::AddressCount { count });
        }
        if !self.max_adver_interval.is_valid() {
            return Err(EncodeError::Interval {
                interval: self.max_adver_interval,
            });
        }
        if version == Version::V3 && self.auth != Auth::None {
            return Err(EncodeError::AuthWithV3);
        }
        let v4 = src.is_ipv4();
        if let Some(&address) = [src, dst]
            .iter()
            .chain(&self.addresses)
            .find(|a| a.is_ipv4() != v4 || (version == Version::V2 && !a.is_ipv4()))
        {
            return Err(EncodeError::Family { address, version });
        }

        let addr_len = if v4 { 4 } else { 16 };
        let auth_len = if version == Version::V2 {
            V2_AUTH_LEN
        } else {
            0
        };
        let mut buf = Vec::with_capacity(HEADER_LEN + count * addr_len + auth_len);
        buf.push(version.number() << 4 | TYPE_ADVERTISEMENT);
        buf.push(self.vrid.get());
        buf.push(self.priority.0);
        buf.push(u8::try_from(count).map_err(|_| EncodeError::AddressCount { count })?);
        match self.max_adver_interval {
            AdverInterval::Centisecs(Centisecs(cs)) => buf.extend_from_slice(&cs.to_be_bytes()),
            AdverInterval::Seconds(Seconds(s)) => {
                buf.extend_from_slice(&[self.auth.type_code(), s])
            }
        }
        buf.extend_from_slice(&[0, 0]);
        for address in &self.addresses {
            match address {
                IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
            }
        }
        match (version, self.auth) {
            (Version::V3, _) => {}
            (Version::V2, Auth::None) => buf.extend_from_slice(&[0; V2_AUTH_LEN]),
            (Version::V2, Auth::Simple(password)) => buf.extend_from_slice(password.wire_bytes()),
        }
        let checksum = checksum(version, src, dst, &buf);
        buf[6..8].copy_from_slice(&checksum.to_be_bytes());
        Ok(buf)
    }
}

/// The VRID of a message, read before any validation so the caller can find the virtual
/// router (and thus the [`RxMeta`] expectations). `None` if too short or 0.
pub fn peek_vrid(payload: &[u8]) -> Option<Vrid> {
    payload.get(1).copied().and_then(Vrid::new)
}

/// Validates and decodes one VRRP message, in the order of RFC 5798 §7.1 / RFC 3768 §7.1:
/// TTL, addressing (family, multicast group or unicast peer), length, version, type, VRID,
/// address count, checksum, interval, authentication. Never panics, whatever the input.
///
/// Not checked here (RFC 5798 §7.1 says MAY): whether the addresses match the configured
/// virtual addresses — a mismatch is a configuration problem for the caller to log, not a
/// reason to ignore the current master.
pub fn decode(payload: &[u8], meta: &RxMeta<'_>) -> Result<Advert, DropReason> {
    check_ip(meta)?;
    decode_message(payload, meta)
}

/// [`decode`] for a router in HMAC mode (fo nodes only): the IP checks, then the trailer
/// ([`crate::auth::open`]: key ID, tag), then the VRRP message before it. Returns the
/// sequence for the caller's [`crate::auth::ReplayGuard`], which must then accept it.
pub fn decode_authenticated(
    payload: &[u8],
    meta: &RxMeta<'_>,
    key: &crate::auth::AuthKey,
) -> Result<(Advert, crate::auth::Sequence), DropReason> {
    check_ip(meta)?;
    let (msg, seq) = crate::auth::open(payload, meta.src, meta.dst, key)?;
    Ok((decode_message(msg, meta)?, seq))
}

/// RFC 5798 §7.1 checks on the IP header: TTL / hop limit 255, one family usable by the
/// version, the multicast group or a configured unicast peer.
fn check_ip(meta: &RxMeta<'_>) -> Result<(), DropReason> {
    if meta.ttl_or_hop_limit != VRRP_TTL {
        return Err(DropReason::Ttl {
            got: meta.ttl_or_hop_limit,
        });
    }
    let v4 = meta.src.is_ipv4();
    if meta.dst.is_ipv4() != v4 || (meta.version == Version::V2 && !v4) {
        return Err(DropReason::Family {
            version: meta.version,
            src: meta.src,
            dst: meta.dst,
        });
    }
    if meta.peers.is_empty() {
        let group = match meta.dst {
            IpAddr::V4(a) => a == MULTICAST_V4,
            IpAddr::V6(a) => a == MULTICAST_V6,
        };
        if !group {
            return Err(DropReason::Destination { dst: meta.dst });
        }
    } else if !meta.peers.contains(&meta.src) {
        return Err(DropReason::NotPeer { src: meta.src });
    }
    Ok(())
}

/// The checks and decoding of the VRRP message itself (after [`check_ip`]).
fn decode_message(payload: &[u8], meta: &RxMeta<'_>) -> Result<Advert, DropReason> {
    let v4 = meta.src.is_ipv4();
    let len = payload.len();
    let auth_len = match meta.version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    let [first, vrid, priority, count, b4, b5, c0, c1, rest @ ..] = payload else {
        return Err(DropReason::Length { len });
    };
    let got_version = first >> 4;
    if got_version != meta.version.number() {
        return Err(DropReason::Version {
            got: got_version,
            expected: meta.version,
        });
    }
    if first & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DropReason::Type { got: first & 0x0f });
    }
    if *vrid != meta.vrid.get() {
        return Err(DropReason::Vrid {
            got: *vrid,
            expected: meta.vrid,
        });
    }
    if rest.len() < auth_len {
        return Err(DropReason::Length { len });
    }
    let addr_len = if v4 { 4 } else { 16 };
    if *count == 0 || rest.len() != usize::from(*count) * addr_len + auth_len {
        return Err(DropReason::AddressCount { count: *count, len });
    }

    let got_checksum = u16::from_be_bytes([*c0, *c1]);
    let computed = checksum_parts(meta.version, meta.src, meta.dst, &payload[..6], rest, len);
    if got_checksum != computed {
        return Err(DropReason::Checksum {
            got: got_checksum,
            computed,
        });
    }

    let (addr_bytes, auth_bytes) = rest.split_at(rest.len() - auth_len);
    let (max_adver_interval, auth) = match meta.version {
        Version::V3 => {
            // The 4 reserved bits are ignored on receipt (RFC 5798 §5.2.6).
            let cs = u16::from_be_bytes([*b4, *b5]) & 0x0fff;
            if cs == 0 {
                return Err(DropReason::Interval {
                    got: cs,
                    configured: meta.interval,
                });
            }
            (AdverInterval::Centisecs(Centisecs(cs)), Auth::None)
        }
        Version::V2 => {
            let interval = AdverInterval::Seconds(Seconds(*b5));
            if *b5 == 0 || interval != meta.interval {
                return Err(DropReason::Interval {
                    got: (*b5).into(),
                    configured: meta.interval,
                });
            }
            (interval, check_v2_auth(*b4, auth_bytes, meta.auth)?)
        }
    };

    let addresses = if v4 {
        let (quads, _) = addr_bytes.as_chunks::<4>();
        quads.iter().map(|&q| IpAddr::from(q)).collect()
    } else {
        let (octets, _) = addr_bytes.as_chunks::<16>();
        octets.iter().map(|&o| IpAddr::from(o)).collect()
    };

    Ok(Advert {
        vrid: meta.vrid,
        priority: Priority(*priority),
        max_adver_interval,
        addresses,
        auth,
    })
}

/// RFC 3768 §7.1 (with RFC 2338 §5.3.6 for type 1): the auth type must be the configured one;
/// for type 1 the 8 bytes must equal the zero-padded password.
fn check_v2_auth(type_code: u8, data: &[u8], configured: Auth) -> Result<Auth, DropReason> {
    if type_code != configured.type_code() {
        return Err(DropReason::AuthType {
            got: type_code,
            expected: configured.type_code(),
        });
    }
    match configured {
        Auth::None => Ok(Auth::None),
        Auth::Simple(password) => {
            // Compare every byte so timing says nothing about how much matched.
            let diff = data
                .iter()
                .zip(password.wire_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff != 0 || data.len() != V2_AUTH_LEN {
                return Err(DropReason::AuthPassword);
            }
            Ok(Auth::Simple(Password::from_wire(*password.wire_bytes())))
        }
    }
}

/// The checksum of a complete message whose checksum field is zero.
fn checksum(version: Version, src: IpAddr, dst: IpAddr, msg: &[u8]) -> u16 {
    let (head, tail) = msg.split_at(6.min(msg.len()));
    checksum_parts(
        version,
        src,
        dst,
        head,
        tail.get(2..).unwrap_or(&[]),
        msg.len(),
    )
}

/// The checksum of a message given as the 6 bytes before the checksum field and the bytes
/// after it, so that a received message need not be copied to zero its field.
fn checksum_parts(
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    head: &[u8],
    tail: &[u8],
    msg_len: usize,
) -> u16 {
    let mut sum = sum_words(0, head);
    sum = sum_words(sum, tail);
    if version == Version::V3 {
        sum = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => sum_words(sum_words(sum, &s.octets()), &d.octets()),
            (IpAddr::V6(s), IpAddr::V6(d)) => sum_words(sum_words(sum, &s.octets()), &d.octets()),
            // Mixed families are refused before a checksum is computed.
            _ => sum,
        };
        // Length (32 bits covers both the IPv4 16-bit and the IPv6 32-bit field) and the
        // protocol: the one's-complement sum is the same for both pseudo-headers.
        let len = u32::try_from(msg_len).unwrap_or(u32::MAX);
        sum = sum_words(sum, &len.to_be_bytes());
        sum = sum_words(sum, &[0, IP_PROTO_VRRP]);
    }
    !fold(sum)
}

/// Adds big-endian 16-bit words; an odd last byte is padded with zero (RFC 1071).
fn sum_words(mut acc: u64, bytes: &[u8]) -> u64 {
    let (words, remainder) = bytes.as_chunks::<2>();
    for &w in words {
        acc += u64::from(u16::from_be_bytes(w));
    }
    if let [last] = remainder {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 0xffff.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod hmac_tests;
#[cfg(test)]
mod tests;
