//! Keys and values of the data plane's BPF maps.
//!
//! Addresses of both families are stored in 16 bytes, network order, with a family
//! tag: an IPv4 address fills the first four bytes and the rest are zero.

use core::mem::size_of;
use core::net::IpAddr;

/// `family` tag for IPv4 in keys.
pub const FAMILY_V4: u8 = 4;
/// `family` tag for IPv6 in keys.
pub const FAMILY_V6: u8 = 6;

/// IANA protocol numbers used in keys.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// An address in a map key: 16 bytes, network order, IPv4 in the first four.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addr {
    pub bytes: [u8; 16],
}
const _: () = assert!(size_of::<Addr>() == 16);

impl Addr {
    pub const fn v4(octets: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[0] = octets[0];
        bytes[1] = octets[1];
        bytes[2] = octets[2];
        bytes[3] = octets[3];
        Self { bytes }
    }

    pub const fn v6(octets: [u8; 16]) -> Self {
        Self { bytes: octets }
    }

    /// The address and its family tag.
    pub fn from_ip(ip: IpAddr) -> (Self, u8) {
        match ip {
            IpAddr::V4(a) => (Self::v4(a.octets()), FAMILY_V4),
            IpAddr::V6(a) => (Self::v6(a.octets()), FAMILY_V6),
        }
    }

    /// Back to an `IpAddr`, given the family tag stored next to it.
    pub fn to_ip(self, family: u8) -> IpAddr {
        if family == FAMILY_V4 {
            let b = self.bytes;
            IpAddr::from([b[0], b[1], b[2], b[3]])
        } else {
            IpAddr::from(self.bytes)
        }
    }
}

/// Entries of the `VIPS` map, fixed when the program is built: every VIP and SNAT
/// address of every router takes one. `fo-agent check` refuses a config with more.
pub const VIPS_CAPACITY: u32 = 1024;

/// Key of `VIPS`: a virtual IP address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    pub addr: Addr,
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<VipKey>() == 20);

impl VipKey {
    pub fn new(ip: IpAddr) -> Self {
        let (addr, family) = Addr::from_ip(ip);
        Self {
            addr,
            family,
            _pad: [0; 3],
        }
    }
}

/// Words (u64) of `VIP_FILTER`: a bitmap of 65,536 bits, one per hash of an address,
/// set for every key of `VIPS`. A frame whose destination's bit is clear is no VIP's,
/// and passes without the hash lookup of `VIPS`. With all `VIPS_CAPACITY` addresses
/// in use at most 1.6 % of the bits are set (the share of other addresses that still
/// pay the lookup); with a few VIPs, next to none.
pub const VIP_FILTER_WORDS: u32 = 1024;

/// The word of `VIP_FILTER` and the bit in it that stand for `addr` (either family:
/// the family is left out, at worst an IPv4 and an IPv6 address share a bit). The 16
/// bytes folded into one word by XOR, read in network order (an IPv4 address is its
/// first word, the host part in the low bits), then a Fibonacci hash (multiplication
/// by 2^32 / φ) whose top 16 bits pick the bit: addresses that differ in their low
/// bits, as a subnet's do, land far apart.
#[inline(always)]
pub const fn vip_filter_bit(addr: &Addr) -> (u32, u64) {
    let b = &addr.bytes;
    let mut folded = 0u32;
    let mut i = 0;
    while i < 16 {
        folded ^= u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        i += 4;
    }
    let bit = folded.wrapping_mul(0x9e37_79b1) >> 16;
    (bit >> 6, 1u64 << (bit & 63))
}

/// `VipState::flags`: this node owns the VIP now (answers ARP/ND, forwards services).
pub const VIP_OWNED: u32 = 1;
/// `VipState::flags`: the VIP is routed to this node (announced over BGP): forward
/// its services, but never answer ARP/ND for it.
pub const VIP_ROUTED: u32 = 2;
/// `VipState::flags`: the VIP has NAT services, so `NAT_FWD` is looked up before the
/// DSR flow table (VIPs without it never pay for that lookup).
pub const VIP_NAT: u32 = 4;
/// `VipState::flags`: the address is a SNAT address (replies of NAT connections
/// arrive on it and are looked up in `NAT_REV`), not a VIP with services.
pub const VIP_SNAT: u32 = 8;

/// `VipState::flags`: the VIP is draining (make before break): another node has taken it
/// over, and this one forwards what still reaches it (hosts whose neighbour entry has not
/// followed yet) but no longer answers ARP/ND for it, and opens no NAT connection (a new
/// one goes to the kernel, which does not hold the VIP: a forwarding node routes it on to
/// the new owner, another drops it and the client retransmits there). Set without `VIP_OWNED`, for a grace period, then cleared.
pub const VIP_DRAINING: u32 = 16;

/// Value of `VIPS`, written by the agent only.
///
/// The dead-man switch: ARP/ND for the VIP is answered only while
/// `bpf_ktime_get_ns() < lease_until_ns` (CLOCK_MONOTONIC). The agent pushes the lease
/// forward while it runs; if it dies or hangs the lease runs out and the node stops
/// claiming the VIP, while packets that still reach it keep being forwarded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipState {
    pub flags: u32,
    /// The 802.1Q VLAN the VIP lives on (1..=4094), 0 for untagged. Frames for the VIP
    /// are served only with this tag (or without one, for 0); whatever the program sends
    /// for them carries the same tag.
    pub vlan: u16,
    pub _pad: u16,
    pub lease_until_ns: u64,
}
const _: () = assert!(size_of::<VipState>() == 16);

/// Key of `SERVICES`: VIP, port and transport protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub vip: Addr,
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<ServiceKey>() == 20);

impl ServiceKey {
    pub fn new(vip: IpAddr, port: u16, proto: u8) -> Self {
        let (vip, family) = Addr::from_ip(vip);
        Self {
            vip,
            port_be: port.to_be(),
            proto,
            family,
        }
    }
}

/// `ServiceValue::flags`: hash the whole 5-tuple (default: the source address only).
pub const SVC_HASH_5TUPLE: u32 = 1;
/// `ServiceValue::flags`: full NAT (`NAT_SERVICES[id]` holds its SNAT pool).
pub const SVC_NAT: u32 = 2;
/// `ServiceValue::flags`: tunnelled DSR (`TUNNEL_SERVICES[id]` holds the outer
/// source, encapsulation and MTU; `crate::tunnel`).
pub const SVC_TUNNEL: u32 = 4;

/// Value of `SERVICES`, written by the agent only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slot of this service: its Maglev table is `MAGLEV[id * M .. (id + 1) * M]`.
    pub id: u32,
    pub flags: u32,
}
const _: () = assert!(size_of::<ServiceValue>() == 8);

/// `Backend::flags`: the slot holds a live backend. Flows pinned to a backend whose
/// slot lost this flag are re-hashed.
pub const BACKEND_ACTIVE: u32 = 1;
/// `Backend::flags`: the slot is a backend of a tunnel service ([`SVC_TUNNEL`]): its
/// packets are encapsulated as `TUNNEL_SERVICES[service_id]` says, to `addr` through
/// the next hop `dst_mac` / `src_mac` / `ifindex`. On the backend, not only the
/// service, so that an established flow (no service lookup) branches on it.
pub const BACKEND_TUNNEL: u32 = 2;

/// Value of `BACKENDS` (an array indexed by backend slot), written by the agent only.
/// A slot belongs to one (service, backend) pair, so its counters are per service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: Addr,
    /// The backend's MAC (destination of forwarded frames).
    pub dst_mac: [u8; 6],
    /// The MAC of the interface that reaches the backend (source of forwarded frames).
    pub src_mac: [u8; 6],
    /// Interface to redirect to; 0, or the ingress interface, means XDP_TX.
    pub ifindex: u32,
    pub flags: u32,
    /// Service slot this backend belongs to (guards against stale flow entries).
    pub service_id: u32,
    pub family: u8,
    pub _pad: u8,
    /// The backend's port (the service port in DSR mode).
    pub port_be: u16,
}
const _: () = assert!(size_of::<Backend>() == 44);

/// Key of `FLOWS` (LRU): a connection's 5-tuple as the client sent it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// Value of `FLOWS`, written by the XDP program (new flows) and by the agent
/// (flow-state sync, later).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub backend: u32,
    pub service_id: u32,
}
const _: () = assert!(size_of::<FlowValue>() == 8);

/// Maglev table entry meaning "no backend". Entries hold `slot + 1`, so that a new
/// (zero-filled) table is empty without writing it.
pub const MAGLEV_EMPTY: u32 = 0;

/// Value of `IFACES` (hash keyed by ifindex): the MAC this node answers with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<Iface>() == 8);

/// Per-CPU traffic counters of a backend slot (`BACKEND_STATS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<TrafficStats>() == 16);

/// Single entry of `INFO`: what the running data plane was built with. Written by the
/// agent that loads (or upgrades) the program; read by an agent that adopts pinned maps.
/// It only ever grows at its end, so that an agent can read how an older layout's
/// program was attached (`attach_mode` stays the u32 at byte 24).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneInfo {
    pub abi: u32,
    pub maglev_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    pub flow_table_size: u32,
    /// Connections of the NAT table (`NAT_FWD`, `NAT_REV`).
    pub nat_table_size: u32,
    /// How the program was attached: 0 not attached (tests), 1 generic (SKB), 2 native.
    pub attach_mode: u32,
    /// Which build of the XDP object runs: the first 16 bytes of its SHA-256. Pinned
    /// maps of the same layout from another build are kept and the program swapped.
    pub build: [u8; 16],
}
const _: () = assert!(size_of::<DataplaneInfo>() == 44);

impl DataplaneInfo {
    /// Same map layout and sizes, attached the same way: the maps can be reused
    /// whatever build of the program runs on them.
    pub fn same_layout(&self, other: &DataplaneInfo) -> bool {
        DataplaneInfo {
            build: other.build,
            ..*self
        } == *other
    }
}

/// Entries of `DRILL_CLIENTS`: the clients a drill tells apart (least recently seen
/// go first beyond it).
pub const DRILL_CLIENTS_CAPACITY: u32 = 4096;

/// Value of `DRILL_CLIENTS` (key: the client's address, a [`VipKey`]): when a client's
/// first packet to an owned VIP came while a drill recorded, and how many came.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSeen {
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the first packet.
    pub first_ns: u64,
    /// Packets since (summed without atomics: approximate under parallel CPUs).
    pub packets: u64,
}
const _: () = assert!(size_of::<ClientSeen>() == 16);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: every type is repr(C), Copy, made of integers and byte arrays, with its
    // padding spelled out as fields, so any byte pattern is a valid value.
    unsafe impl aya::Pod for Addr {}
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipState {}
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for Iface {}
    unsafe impl aya::Pod for TrafficStats {}
    unsafe impl aya::Pod for DataplaneInfo {}
    unsafe impl aya::Pod for ClientSeen {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn addr_round_trips_both_families() {
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let (a, f) = Addr::from_ip(v4);
        assert_eq!(f, FAMILY_V4);
        assert_eq!(&a.bytes[..4], &[192, 0, 2, 10]);
        assert_eq!(&a.bytes[4..], &[0; 12]);
        assert_eq!(a.to_ip(f), v4);
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let (a, f) = Addr::from_ip(v6);
        assert_eq!(f, FAMILY_V6);
        assert_eq!(a.to_ip(f), v6);
    }

    #[test]
    fn vip_filter_bits_stay_in_the_map_and_spread() {
        let mut bits = [(0u32, 0u64); 256];
        for (i, slot) in bits.iter_mut().enumerate() {
            let ip = Ipv4Addr::from(0xc000_0200 + i as u32);
            let (word, mask) = vip_filter_bit(&Addr::from_ip(IpAddr::V4(ip)).0);
            assert!(word < VIP_FILTER_WORDS && mask.count_ones() == 1);
            *slot = (word, mask);
        }
        bits.sort_unstable();
        let distinct = 1 + bits.windows(2).filter(|w| w[0] != w[1]).count();
        // A /24 of VIPs takes (nearly) a bit each, spread over the words.
        assert!(distinct > 240, "{distinct} distinct bits of 256");
        let words = 1 + bits.windows(2).filter(|w| w[0].0 != w[1].0).count();
        assert!(words > 200, "{words} distinct words of 256");
        // IPv6: every byte counts.
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let b = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
        assert_ne!(
            vip_filter_bit(&Addr::from_ip(IpAddr::V6(a)).0),
            vip_filter_bit(&Addr::from_ip(IpAddr::V6(b)).0)
        );
    }

    #[test]
    fn service_key_port_is_network_order() {
        let k = ServiceKey::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1514, PROTO_TCP);
        assert_eq!(k.port_be.to_ne_bytes(), 1514u16.to_be_bytes());
    }

    #[test]
    fn the_build_is_not_part_of_the_layout() {
        let a = DataplaneInfo {
            abi: 3,
            maglev_size: 65537,
            flow_table_size: 1024,
            attach_mode: 1,
            build: [1; 16],
            ..Default::default()
        };
        let other_build = DataplaneInfo {
            build: [2; 16],
            ..a
        };
        assert!(a.same_layout(&other_build) && other_build.same_layout(&a));
        for other in [
            DataplaneInfo { abi: 2, ..a },
            DataplaneInfo {
                flow_table_size: 2048,
                ..a
            },
            DataplaneInfo {
                attach_mode: 2,
                ..a
            },
        ] {
            assert!(!a.same_layout(&other), "{other:?}");
        }
        // A newer agent reads how an older layout's program was attached from byte 24.
        assert_eq!(core::mem::offset_of!(DataplaneInfo, attach_mode), 24);
    }
}
