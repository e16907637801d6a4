//! ICMP errors from the tunnel's path: a router beyond the first hop that cannot
//! forward an encapsulated packet sends "fragmentation needed" (ICMP 3/4) or "packet
//! too big" (ICMPv6 2) to its outer source, one of the tunnel source addresses
//! (`TUNNEL_SOURCES`, which route back to this node). The client never sees it, so
//! its PMTU discovery would stall. This module turns it into the same error for the
//! client: from the VIP, about the client's own packet (the inner header and 8 bytes
//! after it, read from the router's quote), with the router's MTU less the tunnel's
//! headers; sent to the client through the FIB's next hop.
//!
//! Relayed only about a packet to a VIP this node serves, and only when the router
//! quoted enough (outer header, UDP + GUE if any, inner
//! header + 8 bytes: routers quote 576 bytes (IPv4, RFC 1812) or up to 1280 (ICMPv6));
//! anything else to a tunnel source passes to the kernel, counted.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use fo_common::{
    Addr, Counter, FAMILY_V4, GUE_LEN, TUNNEL_GUE, TUNNEL_IPIP, TunnelSourceKey, UDP_LEN,
    client_mtu, xdp_action::XDP_TX,
};

pub use super::too_big::IPPROTO_ICMP;
use super::too_big::{self, ICMP_LEN};
/// ICMPv6 "packet too big".
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
use super::{IPPROTO_IPIP, IPPROTO_IPV6};
use crate::maps::{self, TUNNEL_SCRATCH, TUNNEL_SOURCES};
use crate::parse::{ETH_LEN, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr, ptr_at};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Is `addr` in a tunnel source prefix?
#[inline(always)]
pub fn is_source(addr: &Addr, family: u8) -> bool {
    let key = Key::new(
        if family == FAMILY_V4 { 8 + 32 } else { 8 + 128 },
        TunnelSourceKey {
            family,
            addr: addr.bytes,
            _pad: [0; 3],
        },
    );
    TUNNEL_SOURCES.get(&key).is_some_and(|v| *v != 0)
}

/// An ICMP (`family` 4) or ICMPv6 packet to a tunnel source: relay it to the client,
/// or pass it (counted).
#[inline(never)]
pub fn relay<const V4: bool>(ctx: &XdpContext) -> u32 {
    super::verdict(try_relay::<V4>(ctx))
}

#[inline(always)]
fn try_relay<const V4: bool>(ctx: &XdpContext) -> Result<u32, Counter> {
    let family = if V4 { FAMILY_V4 } else { fo_common::FAMILY_V6 };
    if !V4 {
        // IPv6: `lb` hands over every "packet too big"; only those to a tunnel source
        // are ours (IPv4: it checked).
        let ip: *const crate::parse::Ipv6Hdr =
            ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        let dst = Addr::v6(unsafe { (*ip).dst });
        if !is_source(&dst, family) {
            return Err(Counter::PassNdOther);
        }
    }
    let ip_len = if V4 { IPV4_LEN } else { IPV6_LEN };
    let icmp: *const [u8; ICMP_LEN] =
        ptr_at(ctx, ETH_LEN + ip_len).ok_or(Counter::PassTunnelIcmp)?;
    // SAFETY: bounds-checked.
    let icmp = unsafe { &*icmp };
    let reported = if V4 {
        if icmp[0] != 3 || icmp[1] != 4 {
            return Err(Counter::PassTunnelIcmp);
        }
        u32::from(u16::from_be_bytes([icmp[6], icmp[7]]))
    } else {
        if icmp[0] != 2 || icmp[1] != 0 {
            return Err(Counter::PassTunnelIcmp);
        }
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]])
    };
    // The quoted outer header: ours (no options, no extension headers).
    let outer_at = ETH_LEN + ip_len + ICMP_LEN;
    let proto = if V4 {
        let q: *const [u8; IPV4_LEN] = ptr_at(ctx, outer_at).ok_or(Counter::PassTunnelIcmp)?;
        // SAFETY: bounds-checked.
        let q = unsafe { &*q };
        if q[0] != 0x45 {
            return Err(Counter::PassTunnelIcmp);
        }
        q[9]
    } else {
        let q: *const [u8; IPV6_LEN] = ptr_at(ctx, outer_at).ok_or(Counter::PassTunnelIcmp)?;
        // SAFETY: bounds-checked.
        let q = unsafe { &*q };
        if q[0] >> 4 != 6 {
            return Err(Counter::PassTunnelIcmp);
        }
        q[6]
    };
    let inner_proto = if V4 { IPPROTO_IPIP } else { IPPROTO_IPV6 };
    let (encap, inner_at) = if proto == IPPROTO_UDP {
        let gue: *const [u8; GUE_LEN] =
            ptr_at(ctx, outer_at + ip_len + UDP_LEN).ok_or(Counter::PassTunnelIcmp)?;
        // SAFETY: bounds-checked.
        let gue = unsafe { &*gue };
        if gue[0] != 0 || gue[1] != inner_proto {
            return Err(Counter::PassTunnelIcmp);
        }
        (TUNNEL_GUE, outer_at + ip_len + UDP_LEN + GUE_LEN)
    } else if proto == inner_proto {
        (TUNNEL_IPIP, outer_at + ip_len)
    } else {
        return Err(Counter::PassTunnelIcmp);
    };
    let mtu = client_mtu(reported.min(u32::from(u16::MAX)) as u16, family, encap);
    if V4 && mtu < 68 {
        return Err(Counter::PassTunnelIcmp);
    }
    // The client's packet: its version, then the next hop towards its source (the
    // client), from its destination (the VIP).
    let version: *const u8 = ptr_at(ctx, inner_at).ok_or(Counter::PassTunnelIcmp)?;
    // SAFETY: bounds-checked.
    if unsafe { *version } >> 4 != if V4 { 4 } else { 6 } {
        return Err(Counter::PassTunnelIcmp);
    }
    // Only about a packet to one of our VIPs: a forged quote must not make this node
    // send errors from any address it names.
    let vip = if V4 {
        let q: *const Ipv4Hdr = ptr_at(ctx, inner_at).ok_or(Counter::PassTunnelIcmp)?;
        // SAFETY: bounds-checked.
        Addr::v4(unsafe { (*q).dst })
    } else {
        let q: *const Ipv6Hdr = ptr_at(ctx, inner_at).ok_or(Counter::PassTunnelIcmp)?;
        // SAFETY: bounds-checked.
        Addr::v6(unsafe { (*q).dst })
    };
    let key = crate::maps::Aligned(fo_common::VipKey {
        addr: vip,
        family,
        _pad: [0; 3],
    });
    // SAFETY: plain data replaced whole by the agent.
    let ours = unsafe { crate::maps::VIPS.get(&key.0) }.is_some_and(|v| {
        v.flags & (fo_common::VIP_OWNED | fo_common::VIP_DRAINING) != 0
            && v.flags & fo_common::VIP_SNAT == 0
    });
    if !ours {
        return Err(Counter::PassTunnelIcmp);
    }
    let (ifindex, src_mac, dst_mac) = route::<V4>(ctx, inner_at)?;
    too_big::build::<V4>(ctx, mtu, inner_at, &dst_mac, &src_mac)?;
    maps::count(Counter::TunnelIcmpRelayed);
    if ifindex == ctx.ingress_ifindex() as u32 {
        Ok(XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(ifindex, 0) } as u32)
    }
}

/// The next hop towards the source of the client's packet quoted at `inner_at`, from
/// its destination (the kernel's FIB and neighbour table): interface and MACs. An
/// unresolved neighbour passes the error to the kernel, unrelayed. The query lives in
/// a per-CPU scratch (`TUNNEL_SCRATCH`), not on the stack.
#[inline(always)]
fn route<const V4: bool>(
    ctx: &XdpContext,
    inner_at: usize,
) -> Result<(u32, [u8; 6], [u8; 6]), Counter> {
    let scratch = TUNNEL_SCRATCH
        .get_ptr_mut(0)
        .ok_or(Counter::PassTunnelIcmp)?;
    // SAFETY: a field of the per-CPU scratch.
    let p: *mut bpf_fib_lookup = unsafe { &mut (*scratch).fib };
    // SAFETY: per-CPU scratch, ours for this run; all-zero is a valid query; the
    // quoted header is bounds-checked; the helper gets the query's real size.
    unsafe {
        core::ptr::write_bytes(p, 0, 1);
        (*p).ifindex = ctx.ingress_ifindex() as u32;
        if V4 {
            let q: *const Ipv4Hdr = ptr_at(ctx, inner_at).ok_or(Counter::PassTunnelIcmp)?;
            (*p).family = AF_INET;
            (*p).l4_protocol = too_big::IPPROTO_ICMP;
            (*p).__bindgen_anon_3.ipv4_src = u32::from_ne_bytes((*q).dst);
            (*p).__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes((*q).src);
        } else {
            let q: *const Ipv6Hdr = ptr_at(ctx, inner_at).ok_or(Counter::PassTunnelIcmp)?;
            (*p).family = AF_INET6;
            (*p).l4_protocol = too_big::IPPROTO_ICMPV6;
            (*p).__bindgen_anon_3.ipv6_src = words(&(*q).dst);
            (*p).__bindgen_anon_4.ipv6_dst = words(&(*q).src);
        }
        let rc = fib_lookup(
            ctx.ctx as *mut _,
            p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        );
        if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
            return Err(Counter::PassTunnelIcmp);
        }
        let macs = (*p).__bindgen_anon_6.__bindgen_anon_2;
        Ok(((*p).ifindex, macs.smac, macs.dmac))
    }
}

#[inline(always)]
fn words(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}
