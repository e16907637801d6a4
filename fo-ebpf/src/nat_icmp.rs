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
//! Only the parsing (`translate4`, `IcmpQuote4`) and the rewrite (`rewrite4`) are
//! IPv4's; the lookups and the direction logic (`to_client`, `to_backend`) work on
//! `Addr`/`FlowKey`: ICMPv6 (packet too big, destination unreachable) for NAT66
//! needs its own parser and rewrite (ICMPv6's checksum covers a pseudo-header, so
//! the outer addresses enter it too) and a family-generic `nat::route`.

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

/// The quoted packet's addresses and ports, as quoted (any family).
struct Quoted {
    src: Addr,
    dst: Addr,
    sport_be: u16,
    dport_be: u16,
    proto: u8,
    family: u8,
}

impl Quoted {
    /// The key of the NAT maps for the quoted packet's tuple reversed: the packet
    /// this node sent was the reverse of a packet it translated (to a backend: the
    /// reply key; to a client: the client's key).
    #[inline(always)]
    fn reversed(&self) -> Aligned<FlowKey> {
        Aligned(FlowKey {
            src: self.dst,
            dst: self.src,
            sport_be: self.dport_be,
            dport_be: self.sport_be,
            proto: self.proto,
            family: self.family,
            _pad: [0; 2],
        })
    }
}

/// What the frame becomes (any family): outer source and destination, quoted source
/// and destination with their ports.
struct Translation {
    outer_src: Addr,
    outer_dst: Addr,
    src: Addr,
    sport_be: u16,
    dst: Addr,
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
            Addr::v4((*ip).dst),
            Quoted {
                src: Addr::v4(inner.src),
                dst: Addr::v4(inner.dst),
                sport_be: u16::from_ne_bytes((*q).sport),
                dport_be: u16::from_ne_bytes((*q).dport),
                proto,
                family: FAMILY_V4,
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

/// An error about SNAT:sport -> backend:bport: the reply tuple reversed is the
/// connection's reply key.
#[inline(always)]
fn to_client<const U: bool>(ctx: &XdpContext, total: usize, q: &Quoted) -> Result<u32, Counter> {
    let rflow = q.reversed();
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
    let t = Translation {
        outer_src: fwd.dst,
        outer_dst: fwd.src,
        src: fwd.src,
        sport_be: fwd.sport_be,
        dst: fwd.dst,
        dport_be: fwd.dport_be,
    };
    let hop = route(
        ctx,
        v4(&fwd.dst),
        v4(&fwd.src),
        IPPROTO_ICMP,
        Some(client_mac),
    )?;
    rewrite4(ctx, total, q.proto, &t)?;
    maps::count(Counter::NatIcmpToClient);
    send(ctx, &hop, slot)
}

/// An error about VIP:vport -> client:cport: the tuple reversed is the connection's
/// client key.
#[inline(always)]
fn to_backend<const U: bool>(ctx: &XdpContext, total: usize, q: &Quoted) -> Result<u32, Counter> {
    let flow = q.reversed();
    let entry: *const NatFlow = conn_fwd::<U>()
        .get_ptr(&flow.0)
        .or_else(|| NAT_EMBRYO_FWD.get_ptr(&flow.0))
        .ok_or(Counter::PassNatIcmpNoFlow)?;
    // SAFETY: a live map value, read field by field.
    let (snat, snat_port_be, backend, backend_port_be, slot) = unsafe {
        (
            (*entry).snat,
            (*entry).snat_port_be,
            (*entry).backend,
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
    let hop = route(ctx, v4(&snat), v4(&backend), IPPROTO_ICMP, None)?;
    rewrite4(ctx, total, q.proto, &t)?;
    maps::count(Counter::NatIcmpToBackend);
    send(ctx, &hop, slot)
}

/// Rewrite the outer addresses, the quoted addresses and ports, and the four
/// checksums, IPv4. `total`: the outer IPv4 length, checked to cover the minimal
/// quote.
#[inline(always)]
fn rewrite4(ctx: &XdpContext, total: usize, proto: u8, t: &Translation) -> Result<(), Counter> {
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
    let (outer_src, outer_dst) = (v4(&t.outer_src), v4(&t.outer_dst));
    let (src, dst) = (v4(&t.src), v4(&t.dst));
    // SAFETY: every pointer bounds-checked by `ptr_at_mut`; the checksum field lies
    // after the quote's fixed part (offset 6 of UDP is the struct's `l4_word[2..4]`,
    // the same bytes, written through one pointer only below).
    unsafe {
        let c = Csum::new(word((*ip).check))
            .addr4((*ip).src, outer_src)
            .addr4((*ip).dst, outer_dst)
            .finish();
        (*ip).check = c.to_be_bytes();
        (*ip).src = outer_src;
        (*ip).dst = outer_dst;

        let inner = &mut (*q).ip;
        let (old_src, old_dst) = (inner.src, inner.dst);
        let old_ip_check = word(inner.check);
        let new_ip_check = Csum::new(old_ip_check)
            .addr4(old_src, src)
            .addr4(old_dst, dst)
            .finish();
        let old_sport = word((*q).sport);
        let old_dport = word((*q).dport);
        let new_sport = word(t.sport_be.to_ne_bytes());
        let new_dport = word(t.dport_be.to_ne_bytes());
        let mut icmp = Csum::new(word((*q).check))
            .addr4(old_src, src)
            .addr4(old_dst, dst)
            .word(old_ip_check, new_ip_check)
            .word(old_sport, new_sport)
            .word(old_dport, new_dport);
        if let Some(p) = l4_check {
            let old = word(*p);
            // UDP: 0 is "no checksum" and stays; a computed 0 is sent as 0xffff.
            if !(proto == IPPROTO_UDP && old == 0) {
                let mut new = Csum::new(old)
                    .addr4(old_src, src)
                    .addr4(old_dst, dst)
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
        inner.src = src;
        inner.dst = dst;
        (*q).sport = t.sport_be.to_ne_bytes();
        (*q).dport = t.dport_be.to_ne_bytes();
        (*q).check = icmp.finish().to_be_bytes();
    }
    Ok(())
}
