//! Every bounds check of the program lives here: headers are read only through
//! `ptr_at`/`ptr_at_mut`, which prove to the verifier that the whole header lies
//! between `data` and `data_end`. Header structs are byte arrays (alignment 1), so
//! no field is ever read misaligned and multi-byte fields are decoded explicitly.

use aya_ebpf::programs::XdpContext;
use core::mem::size_of;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const ETH_LEN: usize = size_of::<EthHdr>();
/// Ethernet header with one 802.1Q tag: where the network header of a tagged frame starts.
pub const ETH_VLAN_LEN: usize = ETH_LEN + size_of::<VlanHdr>();
/// The VLAN identifier bits of a tag's TCI (the rest are priority and DEI).
pub const VLAN_VID_MASK: u16 = 0x0fff;
pub const IPV4_LEN: usize = size_of::<Ipv4Hdr>();
pub const IPV6_LEN: usize = size_of::<Ipv6Hdr>();

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

/// The rest of an 802.1Q tag, after the TPID that sits in `EthHdr::ether_type`: the
/// tag control information, then the EtherType of what the frame carries.
#[repr(C)]
pub struct VlanHdr {
    pub tci: [u8; 2],
    pub ether_type: [u8; 2],
}

/// ARP for Ethernet/IPv4 (RFC 826).
#[repr(C)]
pub struct ArpHdr {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub version_tc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// The part of a TCP header the program needs; its size is the minimum header
/// (20 bytes), so a truncated TCP header is not taken for a valid one.
#[repr(C)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub rest: [u8; 16],
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

/// An ICMPv4 error (RFC 792) and the start of the packet it quotes: the quoted
/// IPv4 header (without options) and the first 8 bytes of its TCP/UDP header (the
/// ports, then TCP's sequence number or UDP's length and checksum).
#[repr(C)]
pub struct IcmpQuote4 {
    pub icmp_type: u8,
    pub code: u8,
    pub check: [u8; 2],
    /// Unused, or the next-hop MTU (frag needed), or the pointer (parameter problem).
    pub rest: [u8; 4],
    pub ip: Ipv4Hdr,
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub l4_word: [u8; 4],
}

/// Neighbor Solicitation / Advertisement body (RFC 4861 §4.3, §4.4), without options.
#[repr(C)]
pub struct NdHdr {
    pub icmp_type: u8,
    pub code: u8,
    pub check: [u8; 2],
    pub flags: [u8; 4],
    pub target: [u8; 16],
}

/// Link-layer address option (RFC 4861 §4.6.1) for Ethernet.
#[repr(C)]
pub struct NdLlaOpt {
    pub opt_type: u8,
    pub len: u8,
    pub mac: [u8; 6],
}

/// A pointer to a `T` at `offset` in the frame, or `None` if the frame is too short.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// As [`ptr_at`], for headers the program rewrites.
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Frame length in bytes.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
