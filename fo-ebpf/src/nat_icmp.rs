//! ICMP errors through NAT (IPv4), both ways, so that path MTU discovery and
//! unreachables work for NAT connections:
//!
//! - An error to a SNAT address quoting SNAT:port -> backend:bport (a router on the
//!   backend's path: frag needed, unreachable, TTL exceeded) goes to the connection's
//!   client as VIP -> client, quoting client:cport -> VIP:vport. The outer source is
//!   the VIP, the address the client sent to: always routable back to this node, and
//!   Linux (like other stacks) matches an ICMP error to its socket by the quote, not
//!   by the outer source. The router's own address may be one the client cannot
//!   route to, or filters.
//! - An error from a client to a NAT VIP quoting VIP:vport -> client:cport (port
//!   unreachable and the like, about a reply) goes to the backend as SNAT -> backend,
//!   quoting backend:bport -> SNAT:sport.
//!
//! The connection is found by the quoted packet's tuple, reversed: the same keys
//! the reply and forward paths use (`NAT_REV`/`NAT_UDP_REV`/`NAT_EMBRYO_REV`, and
//! `NAT_FWD`/`NAT_UDP_FWD`/`NAT_EMBRYO_FWD`). The outer IPv4 checksum, the quoted
//! IPv4 header's checksum, the quoted TCP/UDP checksum and the ICMP checksum are all
//! updated incrementally (RFC 1624): the quoted transport checksum covers the whole
//! original packet, but its change depends only on the addresses and ports, so it
//! is updated whenever the quote holds it (RFC 5508 §4.2), and left as it is when
//! the quote ends before it. The ICMP checksum is not verified first: an incremental
//! update keeps a wrong one wrong, and the receiver drops it. Lengths and every other
//! byte (the next-hop MTU of a frag needed, the pointer of a parameter problem) stay.
//!
//! Passed untouched: ICMP queries (echo and the rest, as before), an error whose
//! quote is cut short or is not a TCP/UDP packet of this node (`nat_icmp_bad`), and
//! one that quotes no known connection (`nat_icmp_no_flow`). Connection state is not
//! touched: an error proves nothing about either end.
//!
//! The quote's layout is family-specific (`IcmpQuote4`); the lookups and the
//! direction logic are written over `Addr`/`FlowKey` so that ICMPv6 (packet too big,
//! destination unreachable) can take the same shape.

use aya_ebpf::programs::XdpContext;
use fo_common::{Addr, Counter, Csum, FAMILY_V4, FlowKey, NatFlow, VIP_SNAT};

use crate::maps::{self, Aligned, NAT_EMBRYO_FWD, NAT_EMBRYO_REV};
use crate::nat::{conn_fwd, conn_rev, route, send, v4, verdict};
use crate::parse::{
    ETH_LEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IcmpQuote4, Ipv4Hdr, frame_len,
    ptr_at, ptr_at_mut,
};

/// Where the ICMP header starts (`lb::ipv4` passes IPv4 options).
const ICMP_AT: usize = ETH_LEN + IPV4_LEN;
/// Where the quoted TCP/UDP header starts.
const QUOTE_L4_AT: usize = ICMP_AT + 8 + IPV4_LEN;
/// The shortest quote translated: the IPv4 header and 8 bytes of TCP/UDP.
const QUOTE_MIN: usize = IPV4_LEN + 8;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Whether an ICMPv4 frame is an error this module translates (by its type); the
/// others go the way they went before (`not_tcp_udp`).
#[inline(always)]
pub fn is_error4(ctx: &XdpContext) -> bool {
    match ptr_at::<u8>(ctx, ICMP_AT) {
        // SAFETY: bounds-checked by `ptr_at`.
        Some(t) => matches!(
            unsafe { *t },
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
        ),
        None => false,
    }
}

/// An ICMP error to an owned VIP with NAT services (`vip_flags` without `VIP_SNAT`)
/// or to a SNAT address (with it). A BPF function of its own (stack frame).
#[inline(never)]
pub fn error4(ctx: &XdpContext, vip_flags: u32) -> u32 {
    verdict(translate4(ctx, vip_flags))
}

/// The quoted packet's addresses and ports, as quoted.
struct Quoted {
    src: [u8; 4],
    dst: [u8; 4],
    sport_be: u16,
    dport_be: u16,
    proto: u8,
}

/// What the frame becomes: outer source and destination, quoted source and
/// destination with their ports.
struct Translation {
    outer_src: [u8; 4],
    outer_dst: [u8; 4],
    src: [u8; 4],
    sport_be: u16,
    dst: [u8; 4],
    dport_be: u16,
}

#[inline(always)]
fn translate4(ctx: &XdpContext, vip_flags: u32) -> Result<u32, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassNatIcmpBad)?;
    let q: *const IcmpQuote4 = ptr_at(ctx, ICMP_AT).ok_or(Counter::PassNatIcmpBad)?;
    // SAFETY: both bounds-checked by `ptr_at`.
    let (total, outer_dst, quoted) = unsafe {
        let total = usize::from(u16::from_be_bytes((*ip).total_len));
        let inner = &(*q).ip;
        if inner.version_ihl != 0x45 || u16::from_be_bytes(inner.frag) & 0x1fff != 0 {
            return Err(Counter::PassNatIcmpBad);
        }
        let proto = inner.proto;
        if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
            return Err(Counter::PassNatIcmpBad);
        }
        (
            total,
            (*ip).dst,
            Quoted {
                src: inner.src,
                dst: inner.dst,
                sport_be: u16::from_ne_bytes((*q).sport),
                dport_be: u16::from_ne_bytes((*q).dport),
                proto,
            },
        )
    };
    // Whole: the IPv4 length holds the ICMP header and the minimal quote, and ends
    // within the frame (Ethernet padding may follow).
    if total < IPV4_LEN + 8 + QUOTE_MIN || total > frame_len(ctx) - ETH_LEN {
        return Err(Counter::PassNatIcmpBad);
    }
    // About a packet this node sent from the address the error came to: from the
    // SNAT address (towards a backend) or from the VIP (a reply to a client).
    if quoted.src != outer_dst {
        return Err(Counter::PassNatIcmpBad);
    }
    match (vip_flags & VIP_SNAT != 0, quoted.proto == IPPROTO_UDP) {
        (true, true) => to_client::<true>(ctx, total, &quoted),
        (true, false) => to_client::<false>(ctx, total, &quoted),
        (false, true) => to_backend::<true>(ctx, total, &quoted),
        (false, false) => to_backend::<false>(ctx, total, &quoted),
    }
}

/// A key of the NAT maps, IPv4.
#[inline(always)]
fn key4(src: [u8; 4], dst: [u8; 4], sport_be: u16, dport_be: u16, proto: u8) -> Aligned<FlowKey> {
    Aligned(FlowKey {
        src: Addr::v4(src),
        dst: Addr::v4(dst),
        sport_be,
        dport_be,
        proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    })
}

/// An error about SNAT:sport -> backend:bport: the reply tuple reversed is the
/// connection's reply key.
#[inline(always)]
fn to_client<const U: bool>(ctx: &XdpContext, total: usize, q: &Quoted) -> Result<u32, Counter> {
    let rflow = key4(q.dst, q.src, q.dport_be, q.sport_be, q.proto);
    // SAFETY: map values are plain data, replaced whole.
    let (fwd, embryo): (&FlowKey, bool) = match unsafe { conn_rev::<U>().get(&rflow.0) } {
        Some(fwd) => (fwd, false),
        None => (
            unsafe { NAT_EMBRYO_REV.get(&rflow.0) }.ok_or(Counter::PassNatIcmpNoFlow)?,
            true,
        ),
    };
    let entry: *const NatFlow = if embryo {
        NAT_EMBRYO_FWD.get_ptr(fwd)
    } else {
        conn_fwd::<U>().get_ptr(fwd)
    }
    .ok_or(Counter::PassNatIcmpNoFlow)?;
    // SAFETY: a live map value, read field by field.
    let (client_mac, slot) = unsafe { ((*entry).client_mac, (*entry).backend_slot) };
    let (vip, client) = (v4(&fwd.dst), v4(&fwd.src));
    let t = Translation {
        outer_src: vip,
        outer_dst: client,
        src: client,
        sport_be: fwd.sport_be,
        dst: vip,
        dport_be: fwd.dport_be,
    };
    let hop = route(ctx, vip, client, IPPROTO_ICMP, Some(client_mac))?;
    rewrite(ctx, total, q.proto, &t)?;
    maps::count(Counter::NatIcmpToClient);
    send(ctx, &hop, slot)
}

/// An error about VIP:vport -> client:cport: the tuple reversed is the connection's
/// client key.
#[inline(always)]
fn to_backend<const U: bool>(ctx: &XdpContext, total: usize, q: &Quoted) -> Result<u32, Counter> {
    let flow = key4(q.dst, q.src, q.dport_be, q.sport_be, q.proto);
    let entry: *const NatFlow = conn_fwd::<U>()
        .get_ptr(&flow.0)
        .or_else(|| NAT_EMBRYO_FWD.get_ptr(&flow.0))
        .ok_or(Counter::PassNatIcmpNoFlow)?;
    // SAFETY: a live map value, read field by field.
    let (snat, snat_port_be, backend, backend_port_be, slot) = unsafe {
        (
            v4(&(*entry).snat),
            (*entry).snat_port_be,
            v4(&(*entry).backend),
            (*entry).backend_port_be,
            (*entry).backend_slot,
        )
    };
    let t = Translation {
        outer_src: snat,
        outer_dst: backend,
        src: backend,
        sport_be: backend_port_be,
        dst: snat,
        dport_be: snat_port_be,
    };
    let hop = route(ctx, snat, backend, IPPROTO_ICMP, None)?;
    rewrite(ctx, total, q.proto, &t)?;
    maps::count(Counter::NatIcmpToBackend);
    send(ctx, &hop, slot)
}

/// Rewrite the outer addresses, the quoted addresses and ports, and the four
/// checksums. `total`: the outer IPv4 length, checked to cover the minimal quote.
#[inline(always)]
fn rewrite(ctx: &XdpContext, total: usize, proto: u8, t: &Translation) -> Result<(), Counter> {
    let ip: *mut Ipv4Hdr = ptr_at_mut(ctx, ETH_LEN).ok_or(Counter::PassNatIcmpBad)?;
    let q: *mut IcmpQuote4 = ptr_at_mut(ctx, ICMP_AT).ok_or(Counter::PassNatIcmpBad)?;
    // The quoted transport checksum, if the quote (by the outer length) and the
    // frame hold it.
    let check_at = if proto == IPPROTO_TCP { 16 } else { 6 };
    let l4_check: Option<*mut [u8; 2]> = if total >= QUOTE_L4_AT - ETH_LEN + check_at + 2 {
        ptr_at_mut::<[u8; 2]>(ctx, QUOTE_L4_AT + check_at)
    } else {
        None
    };
    let word = |b: [u8; 2]| u16::from_be_bytes(b);
    // SAFETY: every pointer bounds-checked by `ptr_at_mut`; the checksum field lies
    // after the quote's fixed part (offset 6 of UDP is the struct's `l4_word[2..4]`,
    // the same bytes, written through one pointer only below).
    unsafe {
        let c = Csum::new(word((*ip).check))
            .addr4((*ip).src, t.outer_src)
            .addr4((*ip).dst, t.outer_dst)
            .finish();
        (*ip).check = c.to_be_bytes();
        (*ip).src = t.outer_src;
        (*ip).dst = t.outer_dst;

        let inner = &mut (*q).ip;
        let (old_src, old_dst) = (inner.src, inner.dst);
        let old_ip_check = word(inner.check);
        let new_ip_check = Csum::new(old_ip_check)
            .addr4(old_src, t.src)
            .addr4(old_dst, t.dst)
            .finish();
        let old_sport = word((*q).sport);
        let old_dport = word((*q).dport);
        let new_sport = word(t.sport_be.to_ne_bytes());
        let new_dport = word(t.dport_be.to_ne_bytes());
        let mut icmp = Csum::new(word((*q).check))
            .addr4(old_src, t.src)
            .addr4(old_dst, t.dst)
            .word(old_ip_check, new_ip_check)
            .word(old_sport, new_sport)
            .word(old_dport, new_dport);
        if let Some(p) = l4_check {
            let old = word(*p);
            // UDP: 0 is "no checksum" and stays; a computed 0 is sent as 0xffff.
            if !(proto == IPPROTO_UDP && old == 0) {
                let mut new = Csum::new(old)
                    .addr4(old_src, t.src)
                    .addr4(old_dst, t.dst)
                    .word(old_sport, new_sport)
                    .word(old_dport, new_dport)
                    .finish();
                if proto == IPPROTO_UDP && new == 0 {
                    new = 0xffff;
                }
                icmp = icmp.word(old, new);
                *p = new.to_be_bytes();
            }
        }
        inner.check = new_ip_check.to_be_bytes();
        inner.src = t.src;
        inner.dst = t.dst;
        (*q).sport = t.sport_be.to_ne_bytes();
        (*q).dport = t.dport_be.to_ne_bytes();
        (*q).check = icmp.finish().to_be_bytes();
    }
    Ok(())
}
