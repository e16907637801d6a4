//! Tunnelled DSR (`mode = "tunnel"`): the layouts of the tunnel maps and the pure
//! arithmetic (outer source per flow, GUE source port, overheads) that the XDP
//! program runs and the agent and tests use to predict its frames.
//!
//! A tunnel service is a DSR service whose frames are encapsulated instead of
//! MAC-rewritten: the client's IP packet, untouched, goes inside an outer IPv4
//! header (protocol 4, IPv4 VIPs) or IPv6 header (next header 41, IPv6 VIPs),
//! optionally inside UDP + GUE (RFC draft-ietf-intarea-gue, version 0, as Linux's
//! `fou` module in `gue` mode expects it). Maps:
//! - `SERVICES[vip, port, proto].flags` has [`SVC_TUNNEL`](crate::SVC_TUNNEL);
//! - `TUNNEL_SERVICES[service slot]`: a [`TunnelService`], written before the service
//!   is published (as `NAT_SERVICES`);
//! - `BACKENDS[slot]` as for DSR, except that `addr` is the outer destination and
//!   `dst_mac` / `src_mac` / `ifindex` are those of the **next hop** towards it (the
//!   agent resolves the FIB's next hop and its neighbour, and refreshes them), so the
//!   program needs no FIB lookup per packet;
//! - `TUNNEL_SOURCES`: an LPM trie of the outer source prefixes ([`TunnelSourceKey`]),
//!   looked up only for ICMP errors, so that a "fragmentation needed" / "packet too
//!   big" a router sends about an encapsulated packet is turned into the same error
//!   for the client.

use core::mem::size_of;

use crate::maps::{Addr, FAMILY_V4};

/// `TunnelService::encap`: IPv4-in-IPv4 (protocol 4) for an IPv4 VIP, IPv6-in-IPv6
/// (next header 41) for an IPv6 VIP.
pub const TUNNEL_IPIP: u8 = 1;
/// `TunnelService::encap`: IP in UDP + GUE (4-byte header, version 0), the outer
/// family that of the VIP.
pub const TUNNEL_GUE: u8 = 2;

/// Outer hop limit / TTL of encapsulated packets.
pub const TUNNEL_TTL: u8 = 64;
/// GUE header length (version 0, no optional fields).
pub const GUE_LEN: usize = 4;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// The smallest `mtu` the agent may write: an IPv4 path must carry 576 bytes
/// (RFC 791), an IPv6 one 1280 (RFC 8200) plus the tunnel's own headers.
pub const TUNNEL_MIN_MTU_V4: u16 = 576;
pub const TUNNEL_MIN_MTU_V6: u16 = 1280 + 40 + (UDP_LEN + GUE_LEN) as u16;

/// Value of `TUNNEL_SERVICES` (array indexed by service slot), written by the agent
/// before a tunnel service is published.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelService {
    /// Outer source address (the VIP's family). Its low `src_bits` bits are replaced
    /// by bits of the flow's tunnel hash ([`tunnel_source`]).
    pub src_base: Addr,
    /// How many low bits of `src_base` vary per flow, 0..=32 (0: a fixed source).
    pub src_bits: u8,
    /// [`TUNNEL_IPIP`] or [`TUNNEL_GUE`].
    pub encap: u8,
    /// GUE: the backend's UDP port (network order). Unused for IPIP.
    pub gue_port_be: u16,
    /// Largest outer L3 packet (bytes) the path to the backends carries; a client
    /// packet that would exceed it once encapsulated is answered with an ICMP
    /// "fragmentation needed" / "packet too big" instead. At least
    /// [`TUNNEL_MIN_MTU_V4`] / [`TUNNEL_MIN_MTU_V6`].
    pub mtu: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<TunnelService>() == 24);

/// Key of `TUNNEL_SOURCES` (LPM trie): the data the prefix length covers is
/// `family` (always all 8 bits of it) then the address, so a key's prefix length
/// is `8 + prefix`. Value: a `u32`, non-zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelSourceKey {
    pub family: u8,
    pub addr: [u8; 16],
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<TunnelSourceKey>() == 20);

/// Hash that picks a flow's outer source and GUE source port: the client's address
/// and port, so each connection keeps its own and connections spread (what the
/// backend's RSS hashes). Cheaper than the 5-tuple hash; computed per packet.
#[inline(always)]
pub const fn tunnel_hash(client: &[u8; 16], sport_be: u16) -> u32 {
    crate::hash::hash_tunnel(client, sport_be)
}

/// The outer source of a flow: `base` with its low `bits` bits (at most 32, of the
/// last 32 bits of the address: the IPv4 address, or an IPv6 address's last word)
/// taken from `h`.
#[inline(always)]
pub const fn tunnel_source(base: &Addr, bits: u8, family: u8, h: u32) -> Addr {
    let mut out = *base;
    if bits == 0 {
        return out;
    }
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let at = if family == FAMILY_V4 { 0 } else { 12 };
    let b = &base.bytes;
    let word = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let word = (word & !mask) | (h & mask);
    let w = word.to_be_bytes();
    out.bytes[at] = w[0];
    out.bytes[at + 1] = w[1];
    out.bytes[at + 2] = w[2];
    out.bytes[at + 3] = w[3];
    out
}

/// [`tunnel_source`] of an IPv4 `base`: the address's four bytes.
#[inline(always)]
pub const fn tunnel_source_v4(base: &Addr, bits: u8, h: u32) -> [u8; 4] {
    let b = &base.bytes;
    let word = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    ((word & !mask) | (h & mask)).to_be_bytes()
}

/// GUE's UDP source port for a flow: in 32768..=65535 (never 0), from the hash's
/// high half (the source address takes its low bits).
#[inline(always)]
pub const fn gue_source_port(h: u32) -> u16 {
    0x8000 | ((h >> 16) as u16 & 0x7fff)
}

/// Bytes the tunnel adds in front of the client's IP packet (Ethernet excluded).
#[inline(always)]
pub const fn tunnel_overhead(family: u8, encap: u8) -> usize {
    let ip = if family == FAMILY_V4 { 20 } else { 40 };
    if encap == TUNNEL_GUE {
        ip + UDP_LEN + GUE_LEN
    } else {
        ip
    }
}

/// The MTU reported to a client whose packet did not fit: the path's `mtu` less the
/// tunnel's headers, for IPv6 at least 1280 (RFC 8200 §5).
#[inline(always)]
pub const fn client_mtu(mtu: u16, family: u8, encap: u8) -> u16 {
    let inner = mtu.saturating_sub(tunnel_overhead(family, encap) as u16);
    if family != FAMILY_V4 && inner < 1280 {
        1280
    } else {
        inner
    }
}

/// `DECAP_STATS` slots of the backends' decapsulation program (`fo-decap`).
pub const DECAP_IPIP: u32 = 0;
pub const DECAP_GUE: u32 = 1;
/// Passed untouched: a tunnel packet to an address or port not configured, or cut short.
pub const DECAP_PASS_OTHER: u32 = 2;
pub const DECAP_STATS_COUNT: u32 = 3;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, integers and byte arrays with explicit padding.
    unsafe impl aya::Pod for TunnelService {}
    unsafe impl aya::Pod for TunnelSourceKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_keep_the_prefix_and_vary_the_host_bits() {
        let base = Addr::v4([10, 9, 0, 0]);
        let a = tunnel_source(&base, 8, FAMILY_V4, 0x1234_56ab);
        assert_eq!(&a.bytes[..4], &[10, 9, 0, 0xab]);
        assert_eq!(tunnel_source(&base, 0, FAMILY_V4, 0xffff_ffff), base);
        let six = Addr::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let b = tunnel_source(&six, 16, crate::FAMILY_V6, 0xaaaa_beef);
        assert_eq!(&b.bytes[12..], &[0, 0, 0xbe, 0xef]);
        assert_eq!(&b.bytes[..4], &[0x20, 1, 0xd, 0xb8]);
        assert_eq!(
            tunnel_source(&base, 32, FAMILY_V4, 7).bytes[..4],
            [0, 0, 0, 7]
        );
    }

    #[test]
    fn gue_ports_are_never_zero_and_overheads_add_up() {
        assert_eq!(gue_source_port(0), 0x8000);
        assert_eq!(gue_source_port(u32::MAX), 0xffff);
        assert_eq!(tunnel_overhead(FAMILY_V4, TUNNEL_IPIP), 20);
        assert_eq!(tunnel_overhead(FAMILY_V4, TUNNEL_GUE), 32);
        assert_eq!(tunnel_overhead(crate::FAMILY_V6, TUNNEL_GUE), 52);
        assert_eq!(client_mtu(1400, FAMILY_V4, TUNNEL_IPIP), 1380);
        assert_eq!(client_mtu(1300, crate::FAMILY_V6, TUNNEL_IPIP), 1280);
    }
}
