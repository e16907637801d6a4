//! Tunnelled DSR: the client's IP packet, untouched, goes to its backend inside an
//! outer IPv4 header (IPv4 VIPs, protocol 4) or IPv6 header (IPv6 VIPs, next header
//! 41), optionally inside UDP + GUE (version 0, 4-byte header whose protocol field is
//! the inner protocol, 4 or 41: what Linux's `fou` in `gue` mode strips), through the
//! next hop whose MACs the agent keeps in the backend's slot.
//!
//! Outer header: TTL / hop limit 64, DSCP and ECN copied from the inner packet, IPv4
//! DF set and ID 0 (an atomic datagram, RFC 6864), IPv6 flow label from the flow's
//! tunnel hash. The outer source is the service's source base with its low bits from
//! the tunnel hash (client address and port), and so is GUE's UDP source port: each
//! connection keeps its own, connections spread over the backend's RSS queues.
//! UDP checksum: 0 over IPv4 (allowed, and what `fou` sends by default); computed over
//! IPv6, where 0 is refused (RFC 8200 §8.1) unless the receiver opted in. It is
//! computed without reading the payload (as Linux's local checksum offload does): a
//! valid inner TCP/UDP checksum makes the inner segment sum to the complement of its
//! pseudo-header, which the inner IPv6 header contains, so the payload's sum is known
//! from the inner header alone. A client segment with a bad checksum then gets a bad
//! outer checksum, and the backend drops it, as it would have dropped the segment.
//!
//! Too big for the path once encapsulated (outer length over the service's `mtu`): an
//! ICMP "fragmentation needed" / ICMPv6 "packet too big" goes back to the client
//! (`too_big`), unless an IPv4 packet has DF clear: that one goes to the kernel,
//! counted (fo never fragments).

mod csum;
pub mod relay;
mod too_big;

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use fo_common::{
    Backend, Counter, FAMILY_V4, TUNNEL_GUE, TUNNEL_TTL, TunnelService, UDP_LEN, tunnel_overhead,
    tunnel_source, xdp_action::XDP_TX,
};

use crate::maps::{self, TUNNEL_SERVICES};
use crate::parse::{
    ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr,
    UdpHdr, frame_len, ptr_at, ptr_at_mut,
};

/// What `lb` returns instead of an action when the tunnel takes the packet over: the
/// entry point then calls [`finish`], in a call chain of its own (the BPF stack's 512
/// bytes are shared by a chain, and `lb`'s frames are large). Above every XDP action.
pub const PENDING: u32 = 1 << 31;
/// `PENDING` for an ICMP error to relay (`relay`): IPv4, IPv6.
pub const PENDING_RELAY4: u32 = PENDING | 1 << 30;
pub const PENDING_RELAY6: u32 = PENDING | 1 << 30 | 1;
/// Backend slots fit below this bit (with `PENDING`: encapsulate to that slot).
const SLOT_MASK: u32 = (1 << 30) - 1;

/// `PENDING` for encapsulating the packet to backend `slot`.
#[inline(always)]
pub fn pending_encap(slot: u32) -> u32 {
    PENDING | (slot & SLOT_MASK)
}

/// Carry out what `lb` left pending (`PENDING*`): the action.
#[inline(never)]
pub fn finish(ctx: &XdpContext, pending: u32) -> u32 {
    if pending == PENDING_RELAY4 {
        relay::relay::<true>(ctx)
    } else if pending == PENDING_RELAY6 {
        relay::relay::<false>(ctx)
    } else {
        let slot = pending & SLOT_MASK;
        match encapsulate(ctx, slot) {
            // Too big: answered in a call of its own, not under `encapsulate`'s frame.
            TOO_BIG => too_big::reply(ctx, slot),
            action => action,
        }
    }
}

/// What `encapsulate` returns for a packet too big for the tunnel, with DF set.
const TOO_BIG: u32 = PENDING | 1 << 29;

pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;
/// IPv4 don't-fragment flag.
const IP_DF: u16 = 0x4000;

/// The GUE header, version 0 without optional fields.
#[repr(C)]
pub struct GueHdr {
    /// Version (2 bits), C (1 bit), header length in words (5 bits): all 0.
    pub ver_c_hlen: u8,
    /// Inner IP protocol: 4 or 41.
    pub proto: u8,
    pub flags: [u8; 2],
}

/// What the encapsulation needs to know of the inner packet, read before the
/// headroom is taken.
struct Inner {
    /// IP packet length (header included).
    len: u16,
    /// DSCP + ECN.
    tos: u8,
    df: bool,
    /// IPv6 only: the one's-complement sum of the inner IPv6 header's words that are
    /// not in its pseudo-header (version/class/flow, next header + hop limit, minus
    /// the next header as the pseudo-header has it): the GUE payload's sum with the
    /// GUE header's (see the module documentation).
    v6_sum: u32,
}

/// Encapsulate the client's packet for backend `slot` (a tunnel service's, that `lb`
/// chose) and send it. Returns the action (a reason to pass is counted here: a BPF
/// function returns one register, never a `Result`).
#[inline(never)]
fn encapsulate(ctx: &XdpContext, slot: u32) -> u32 {
    let Some(backend) = crate::maps::BACKENDS.get(slot) else {
        return verdict(Err(Counter::PassNoBackend));
    };
    let h = match flow_hash(ctx, backend.family) {
        Ok(h) => h,
        Err(reason) => return verdict(Err(reason)),
    };
    verdict(try_encapsulate(ctx, slot, backend, h))
}

/// The flow's tunnel hash: the client's address and port (`lb` parsed the packet:
/// no options or extension headers, TCP or UDP).
#[inline(always)]
fn flow_hash(ctx: &XdpContext, family: u8) -> Result<u32, Counter> {
    let mut client = [0u8; 16];
    let sport: [u8; 2];
    if family == FAMILY_V4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        let ports: *const [u8; 2] =
            ptr_at(ctx, ETH_LEN + IPV4_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        unsafe {
            let s = (*ip).src;
            client[0] = s[0];
            client[1] = s[1];
            client[2] = s[2];
            client[3] = s[3];
            sport = *ports;
        }
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        let ports: *const [u8; 2] =
            ptr_at(ctx, ETH_LEN + IPV6_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        unsafe {
            client = (*ip).src;
            sport = *ports;
        }
    }
    Ok(fo_common::tunnel_hash(&client, u16::from_ne_bytes(sport)))
}

/// The action, or `XDP_PASS` with its reason counted.
#[inline(always)]
pub fn verdict(r: Result<u32, Counter>) -> u32 {
    match r {
        Ok(action) => action,
        Err(reason) => {
            maps::count(reason);
            fo_common::xdp_action::XDP_PASS
        }
    }
}

#[inline(always)]
fn try_encapsulate(ctx: &XdpContext, slot: u32, backend: &Backend, h: u32) -> Result<u32, Counter> {
    let t = TUNNEL_SERVICES
        .get(backend.service_id)
        .ok_or(Counter::PassNoBackend)?;
    let family = backend.family;
    let inner = inner(ctx, family)?;
    let over = tunnel_overhead(family, t.encap);
    if usize::from(inner.len) + over > usize::from(t.mtu) {
        if family == FAMILY_V4 && !inner.df {
            return Err(Counter::PassTunnelTooBig);
        }
        return Ok(TOO_BIG);
    }
    // What follows the IP packet (Ethernet padding) stays out of the tunnel.
    let Some(extra) = (frame_len(ctx) - ETH_LEN).checked_sub(usize::from(inner.len)) else {
        return Err(Counter::PassTruncated);
    };
    // SAFETY: `ctx.ctx` is the live xdp_md of this invocation.
    if extra > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(extra as i32)) } != 0 {
        return Err(Counter::PassAdjustFailed);
    }
    // SAFETY: as above.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(over as i32)) } != 0 {
        return Err(Counter::PassAdjustFailed);
    }
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).dst = backend.dst_mac;
        (*eth).src = backend.src_mac;
    }
    if family == FAMILY_V4 {
        let src = fo_common::tunnel_source_v4(&t.src_base, t.src_bits, h);
        let b = &backend.addr.bytes;
        write_v4(ctx, t, &inner, src, [b[0], b[1], b[2], b[3]], h, over)?;
    } else {
        let src = tunnel_source(&t.src_base, t.src_bits, family, h);
        write_v6(ctx, t, &inner, &src.bytes, &backend.addr.bytes, h, over)?;
    }
    maps::count(Counter::TunnelEncap);
    maps::account(slot, frame_len(ctx));
    let ingress = ctx.ingress_ifindex() as u32;
    if backend.ifindex == 0 || backend.ifindex == ingress {
        Ok(XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(backend.ifindex, 0) } as u32)
    }
}

#[inline(always)]
fn inner(ctx: &XdpContext, family: u8) -> Result<Inner, Counter> {
    if family == FAMILY_V4 {
        let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        unsafe {
            Ok(Inner {
                len: u16::from_be_bytes((*ip).total_len),
                tos: (*ip).tos,
                df: u16::from_be_bytes((*ip).frag) & IP_DF != 0,
                v6_sum: 0,
            })
        }
    } else {
        let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        unsafe {
            let v = (*ip).version_tc_flow;
            let payload = u16::from_be_bytes((*ip).payload_len);
            if usize::from(payload) + IPV6_LEN > frame_len(ctx) - ETH_LEN {
                return Err(Counter::PassTruncated);
            }
            let nh = (*ip).next_header;
            let sum = u32::from(u16::from_be_bytes([v[0], v[1]]))
                + u32::from(u16::from_be_bytes([v[2], v[3]]))
                + u32::from(u16::from_be_bytes([nh, (*ip).hop_limit]))
                + u32::from(!u16::from(nh));
            Ok(Inner {
                len: payload.wrapping_add(IPV6_LEN as u16),
                tos: (v[0] << 4) | (v[1] >> 4),
                df: true,
                v6_sum: sum,
            })
        }
    }
}

#[inline(always)]
fn write_v4(
    ctx: &XdpContext,
    t: &TunnelService,
    inner: &Inner,
    s: [u8; 4],
    d: [u8; 4],
    h: u32,
    over: usize,
) -> Result<(), Counter> {
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    let ip: *mut Ipv4Hdr = ptr_at_mut(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let total = inner.len + over as u16;
    let gue = t.encap == TUNNEL_GUE;
    let proto = if gue { IPPROTO_UDP } else { IPPROTO_IPIP };
    let check = csum::fold(
        0x4500
            + u32::from(inner.tos)
            + u32::from(total)
            + u32::from(IP_DF)
            + (u32::from(TUNNEL_TTL) << 8 | u32::from(proto))
            + csum::words4(&s)
            + csum::words4(&d),
    );
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).ether_type = ETH_P_IP.to_be_bytes();
        (*ip).version_ihl = 0x45;
        (*ip).tos = inner.tos;
        (*ip).total_len = total.to_be_bytes();
        (*ip).id = [0, 0];
        (*ip).frag = IP_DF.to_be_bytes();
        (*ip).ttl = TUNNEL_TTL;
        (*ip).proto = proto;
        (*ip).check = (!check).to_be_bytes();
        (*ip).src = s;
        (*ip).dst = d;
    }
    if gue {
        let udp: *mut UdpHdr = ptr_at_mut(ctx, ETH_LEN + IPV4_LEN).ok_or(Counter::PassTruncated)?;
        let g: *mut GueHdr =
            ptr_at_mut(ctx, ETH_LEN + IPV4_LEN + UDP_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        unsafe {
            (*udp).sport = fo_common::gue_source_port(h).to_be_bytes();
            (*udp).dport = t.gue_port_be.to_ne_bytes();
            (*udp).len = (total - IPV4_LEN as u16).to_be_bytes();
            (*udp).check = [0, 0];
            (*g).ver_c_hlen = 0;
            (*g).proto = IPPROTO_IPIP;
            (*g).flags = [0, 0];
        }
    }
    Ok(())
}

#[inline(always)]
fn write_v6(
    ctx: &XdpContext,
    t: &TunnelService,
    inner: &Inner,
    src: &[u8; 16],
    dst: &[u8; 16],
    h: u32,
    over: usize,
) -> Result<(), Counter> {
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    let ip: *mut Ipv6Hdr = ptr_at_mut(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let payload = inner.len + (over - IPV6_LEN) as u16;
    let gue = t.encap == TUNNEL_GUE;
    let nh = if gue { IPPROTO_UDP } else { IPPROTO_IPV6 };
    let flow = h & 0x000f_ffff;
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).ether_type = ETH_P_IPV6.to_be_bytes();
        (*ip).version_tc_flow = [
            0x60 | (inner.tos >> 4),
            (inner.tos << 4) | (flow >> 16) as u8,
            (flow >> 8) as u8,
            flow as u8,
        ];
        (*ip).payload_len = payload.to_be_bytes();
        (*ip).next_header = nh;
        (*ip).hop_limit = TUNNEL_TTL;
        (*ip).src = *src;
        (*ip).dst = *dst;
    }
    if gue {
        let udp: *mut UdpHdr = ptr_at_mut(ctx, ETH_LEN + IPV6_LEN).ok_or(Counter::PassTruncated)?;
        let g: *mut GueHdr =
            ptr_at_mut(ctx, ETH_LEN + IPV6_LEN + UDP_LEN).ok_or(Counter::PassTruncated)?;
        let sport = fo_common::gue_source_port(h);
        let dport = u16::from_be(t.gue_port_be);
        // Pseudo-header (addresses, UDP length, next header 17), UDP header (length
        // again), GUE header (protocol 41), and the payload's sum from the inner header.
        let sum = csum::words16(src)
            + csum::words16(dst)
            + 2 * u32::from(payload)
            + u32::from(IPPROTO_UDP)
            + u32::from(sport)
            + u32::from(dport)
            + u32::from(IPPROTO_IPV6)
            + inner.v6_sum;
        let mut check = !csum::fold(sum);
        if check == 0 {
            check = 0xffff;
        }
        // SAFETY: bounds-checked.
        unsafe {
            (*udp).sport = sport.to_be_bytes();
            (*udp).dport = t.gue_port_be.to_ne_bytes();
            (*udp).len = payload.to_be_bytes();
            (*udp).check = check.to_be_bytes();
            (*g).ver_c_hlen = 0;
            (*g).proto = IPPROTO_IPV6;
            (*g).flags = [0, 0];
        }
    }
    Ok(())
}
