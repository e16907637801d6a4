//! L4 load balancing of the services on owned VIPs: flow table first, Maglev for
//! new flows, then DSR (rewrite the MACs, send out again) or full NAT (`nat.rs`).
//!
//! The VIP's flags route NAT traffic without costing DSR anything: only a VIP with
//! NAT services looks up its connection table (`NAT_FWD`, or `NAT_UDP_FWD` for UDP)
//! and the embryonic `NAT_EMBRYO_FWD` before the DSR flow table, and only a SNAT
//! address goes to the reply path.
//!
//! DSR flows seen only as a SYN live in `FLOWS_NEW` until their next packet moves
//! them to `FLOWS`, so a SYN flood never evicts an established flow from `FLOWS`
//! (an evicted flow would follow Maglev again, and break at the next change of the
//! backend set).

use aya_ebpf::{helpers::bpf_redirect, programs::XdpContext};
use fo_common::{
    Addr, BACKEND_ACTIVE, BACKEND_TUNNEL, Backend, Counter, FAMILY_V4, FAMILY_V6, FlowKey,
    FlowValue, MAGLEV_EMPTY, SVC_HASH_5TUPLE, SVC_NAT, ServiceKey, TCP_ACK, TCP_RST, TCP_SYN,
    VIP_NAT, VIP_SNAT, VipKey, hash, xdp_action::XDP_TX,
};

use crate::maps::{self, Aligned, BACKENDS, FLOWS, FLOWS_NEW, MAGLEV, SERVICES};
use crate::parse::{
    ETH_LEN, EthHdr, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN,
    Ipv4Hdr, Ipv6Hdr, TcpHdr, UdpHdr, frame_len, ptr_at, ptr_at_mut,
};
use crate::{nat, nat_icmp, nd, tunnel};

/// IPv4 more-fragments flag and fragment offset.
const IP_MF_OFFSET: u16 = 0x3fff;

/// The IPv4 and IPv6 paths are separate BPF functions, each with its own stack frame:
/// the BPF stack allows 512 bytes for a whole call chain, and both chains go on into
/// the NAT functions.
///
/// `L2` is where the IP header starts: `ETH_LEN`, or `ETH_VLAN_LEN` after an 802.1Q tag
/// of VLAN `vlan` (0 when untagged). Each is its own copy, so offsets stay constants.
#[inline(never)]
pub fn ipv4<const L2: usize>(ctx: &XdpContext, vlan: u16) -> Result<u32, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, L2).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (proto, src, dst, total) = unsafe {
        let version_ihl = (*ip).version_ihl;
        if version_ihl >> 4 != 4 || version_ihl & 0xf < 5 {
            return Err(Counter::PassBadIp);
        }
        if version_ihl & 0xf != 5 {
            return Err(Counter::PassIpOptions);
        }
        if u16::from_be_bytes((*ip).frag) & IP_MF_OFFSET != 0 {
            return Err(Counter::PassFragment);
        }
        (
            (*ip).proto,
            Addr::v4((*ip).src),
            Addr::v4((*ip).dst),
            usize::from(u16::from_be_bytes((*ip).total_len)),
        )
    };
    // Whole: the IPv4 length covers the transport header and ends within the frame
    // (Ethernet padding may follow). NAT translates only whole packets; the kernel drops
    // the others, so they go to it untouched.
    let l4_min = match proto {
        IPPROTO_TCP => 20,
        IPPROTO_UDP => 8,
        _ => 0,
    };
    let whole = total >= IPV4_LEN + l4_min && total <= frame_len(ctx) - L2;
    // Tunnels are untagged only (the config refuses a tunnel service on a VLAN VIP).
    if L2 == ETH_LEN
        && proto == tunnel::relay::IPPROTO_ICMP
        && tunnel::relay::is_source(&dst, FAMILY_V4)
    {
        return Ok(tunnel::PENDING_RELAY4);
    }
    let addrs = Aligned([src, dst]);
    forward::<L2>(ctx, vlan, L2 + IPV4_LEN, proto, &addrs, FAMILY_V4, whole)
}

#[inline(never)]
pub fn ipv6<const L2: usize>(ctx: &XdpContext, vlan: u16) -> Result<u32, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, L2).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (next, payload) = unsafe {
        if (*ip).version_tc_flow[0] >> 4 != 6 {
            return Err(Counter::PassBadIp);
        }
        (
            (*ip).next_header,
            usize::from(u16::from_be_bytes((*ip).payload_len)),
        )
    };
    match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            // Whole, as in `ipv4`: the payload length covers the transport header and
            // ends within the frame (a jumbogram's zero length is not whole).
            let l4_min = if next == IPPROTO_TCP { 20 } else { 8 };
            let whole = payload >= l4_min && payload <= frame_len(ctx) - L2 - IPV6_LEN;
            let mut addrs = Aligned([Addr::default(); 2]);
            // SAFETY: `ip` bounds-checked; the destination is ours.
            unsafe {
                copy_addr(&(*ip).src, &mut addrs.0[0]);
                copy_addr(&(*ip).dst, &mut addrs.0[1]);
            }
            // NAT is untagged only (the config refuses NAT on a VLAN VIP).
            if L2 != ETH_LEN {
                return forward6::<L2>(ctx, vlan, &addrs, next, whole);
            }
            match nat66(ctx, &addrs, next, whole)? {
                NOT_NAT => forward6::<L2>(ctx, vlan, &addrs, next, whole),
                action => Ok(action),
            }
        }
        IPPROTO_ICMPV6 => {
            // A "packet too big" may be about a tunnelled packet (`tunnel::relay`; untagged
            // only, as tunnels are).
            let icmp_type: *const u8 = ptr_at(ctx, L2 + IPV6_LEN).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked.
            if L2 == ETH_LEN && unsafe { *icmp_type } == tunnel::relay::ICMPV6_PACKET_TOO_BIG {
                return Ok(tunnel::PENDING_RELAY6);
            }
            nd::advertise::<L2>(ctx, ip, vlan)
        }
        // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6.
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Err(Counter::PassIpv6ExtHeader),
        _ => Err(Counter::PassNotTcpUdp),
    }
}

/// Copy an IPv6 address out of the frame into (8-byte aligned) memory, one byte at a
/// time in order: LLVM would otherwise load all 32 bytes of the two addresses at once
/// and spill every byte to a stack slot of its own (256 bytes of a frame that goes on
/// into NAT, under the BPF stack limit). From there, the program reads whole words.
///
/// # Safety
/// `from` lies in the frame, bounds-checked.
#[inline(always)]
unsafe fn copy_addr(from: &[u8; 16], to: &mut Addr) {
    let (s, d) = (from.as_ptr(), to.bytes.as_mut_ptr());
    let mut i = 0;
    while i < 16 {
        // SAFETY: `i < 16`, within both.
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
        i += 1;
    }
}

/// `nat66`'s answer for a packet that is not NAT's (the DSR path takes it).
const NOT_NAT: u32 = u32::MAX;

/// The IPv6 DSR path, a BPF function of its own: its frame is not on NAT66's chain.
#[inline(never)]
fn forward6<const L2: usize>(
    ctx: &XdpContext,
    vlan: u16,
    addrs: &Aligned<[Addr; 2]>,
    proto: u8,
    whole: bool,
) -> Result<u32, Counter> {
    forward::<L2>(ctx, vlan, L2 + IPV6_LEN, proto, addrs, FAMILY_V6, whole)
}

/// NAT66: an IPv6 packet to a NAT VIP or a SNAT address, as `forward` does for IPv4
/// (`NOT_NAT`: not NAT's). Its own lean BPF function: the BPF stack allows 512
/// bytes for a whole call chain, and the NAT packet functions take about half.
#[inline(never)]
fn nat66(
    ctx: &XdpContext,
    addrs: &Aligned<[Addr; 2]>,
    proto: u8,
    whole: bool,
) -> Result<u32, Counter> {
    let (src, dst) = (&addrs.0[0], &addrs.0[1]);
    let (word, mask) = fo_common::vip_filter_bit(dst);
    if maps::VIP_FILTER
        .get(word)
        .is_none_or(|bits| bits & mask == 0)
    {
        return Err(Counter::PassNotVip);
    }
    let vip_key = Aligned(VipKey {
        addr: *dst,
        family: FAMILY_V6,
        _pad: [0; 3],
    });
    // SAFETY (map reads below): values are plain data replaced whole by the agent.
    let vip = unsafe { maps::VIPS.get(&vip_key.0) }.ok_or(Counter::PassNotVip)?;
    let vip_flags = vip.flags;
    if vip_flags & (VIP_NAT | VIP_SNAT) == 0 || vip_flags & fo_common::VIP_ROUTED != 0 {
        return Ok(NOT_NAT);
    }
    if vip_flags & (fo_common::VIP_OWNED | fo_common::VIP_DRAINING) == 0 {
        return Err(Counter::PassNotOwned);
    }
    if !whole {
        return Err(Counter::PassTruncated);
    }
    let l4_offset = ETH_LEN + IPV6_LEN;
    let (sport_be, dport_be, tcp_flags) = ports(ctx, l4_offset, proto)?;
    if vip_flags & (fo_common::VIP_OWNED | VIP_SNAT) == fo_common::VIP_OWNED && maps::drilling() {
        maps::client_seen(*src, FAMILY_V6);
    }
    if tcp_flags & TCP_RST != 0 && maps::drilling() {
        maps::count(if vip_flags & VIP_SNAT != 0 {
            Counter::RstFromBackend
        } else {
            Counter::RstToVip
        });
    }
    let flow = Aligned(FlowKey {
        src: *src,
        dst: *dst,
        sport_be,
        dport_be,
        proto,
        family: FAMILY_V6,
        _pad: [0; 2],
    });
    let flow = &flow.0;
    if vip_flags & VIP_SNAT != 0 {
        return Ok(nat::reply_any(ctx, l4_offset, flow));
    }
    if let Some(action) = nat::forward_known(ctx, l4_offset, flow) {
        return Ok(action);
    }
    let service_key = Aligned(ServiceKey {
        vip: *dst,
        port_be: dport_be,
        proto,
        family: FAMILY_V6,
    });
    let service = unsafe { SERVICES.get(&service_key.0) }.ok_or(Counter::PassNoService)?;
    if service.flags & SVC_NAT == 0 {
        return Ok(NOT_NAT);
    }
    let service_id = service.id;
    let h = if service.flags & SVC_HASH_5TUPLE != 0 {
        hash::hash_5tuple(&src.bytes, &dst.bytes, sport_be, dport_be, proto)
    } else {
        hash::hash_source(&src.bytes)
    };
    let found = maglev_pick(service_id, h)?;
    // Draining: no NAT state the new owner cannot know about.
    if vip_flags & fo_common::VIP_DRAINING != 0 {
        return Err(Counter::PassNotOwned);
    }
    Ok(nat::open_new(ctx, l4_offset, flow, service_id, found.0))
}

/// Source port, destination port (both as read) and TCP flags (0 for UDP).
#[inline(always)]
fn ports(ctx: &XdpContext, l4_offset: usize, proto: u8) -> Result<(u16, u16, u8), Counter> {
    match proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked; the flags are byte 13 of the TCP header.
            Ok(unsafe {
                (
                    u16::from_ne_bytes((*tcp).sport),
                    u16::from_ne_bytes((*tcp).dport),
                    (*tcp).rest[9],
                )
            })
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked.
            Ok(unsafe {
                (
                    u16::from_ne_bytes((*udp).sport),
                    u16::from_ne_bytes((*udp).dport),
                    0,
                )
            })
        }
        _ => Err(Counter::PassNotTcpUdp),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward<const L2: usize>(
    ctx: &XdpContext,
    vlan: u16,
    l4_offset: usize,
    proto: u8,
    // Source and destination.
    addrs: &Aligned<[Addr; 2]>,
    family: u8,
    // The packet is whole (see `ipv4`, `ipv6`): NAT translates only whole packets.
    whole: bool,
) -> Result<u32, Counter> {
    // No VIP's address has its filter bit clear: such a frame (most of what a node
    // receives) passes after one array lookup, which the verifier inlines, instead of
    // a hash lookup of `VIPS`.
    let (src, dst) = (&addrs.0[0], &addrs.0[1]);
    let (word, mask) = fo_common::vip_filter_bit(dst);
    if maps::VIP_FILTER
        .get(word)
        .is_none_or(|bits| bits & mask == 0)
    {
        return Err(Counter::PassNotVip);
    }
    let vip_key = Aligned(VipKey {
        addr: *dst,
        family,
        _pad: [0; 3],
    });
    // SAFETY (map reads below): values are plain data replaced whole by the agent.
    let vip = unsafe { maps::VIPS.get(&vip_key.0) }.ok_or(Counter::PassNotVip)?;
    // The frame's VLAN must be the VIP's; what is sent keeps the frame's tag. NAT sends
    // untagged frames only (the config refuses NAT on a VLAN VIP).
    let vlan = if L2 == ETH_LEN { 0 } else { vlan };
    if vip.vlan != vlan || (L2 != ETH_LEN && vip.flags & (VIP_NAT | VIP_SNAT) != 0) {
        return Err(Counter::PassVlan);
    }
    if vip.flags & (fo_common::VIP_OWNED | fo_common::VIP_DRAINING) == 0 {
        return Err(Counter::PassNotOwned);
    }
    if vip.flags & fo_common::VIP_ROUTED != 0 {
        // Every node serves a routed VIP: take only the frames the router sent to this
        // node, or a switch flooding unknown unicast would have every node forward a copy.
        let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
        let mac = maps::iface_mac(ctx.ingress_ifindex() as u32)?;
        // SAFETY: bounds-checked by `ptr_at`.
        if unsafe { (*eth).dst } != mac {
            return Err(Counter::PassOtherHost);
        }
    }
    let vip_flags = vip.flags;
    // An untagged IPv6 packet to a NAT VIP has been through `nat66`, which recorded it
    // for a drill already (a DSR service on a VIP that also has NAT66 ones).
    let drill_recorded = family == FAMILY_V6
        && L2 == ETH_LEN
        && vip_flags & (VIP_NAT | VIP_SNAT) != 0
        && vip_flags & fo_common::VIP_ROUTED == 0;
    // When each client follows a handover: recorded by the owner only, while a drill runs.
    if vip_flags & (fo_common::VIP_OWNED | VIP_SNAT) == fo_common::VIP_OWNED
        && !drill_recorded
        && maps::drilling()
    {
        maps::client_seen(*src, family);
    }
    let (sport_be, dport_be, tcp_flags) = match proto {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked; the flags are byte 13 of the TCP header.
            unsafe {
                (
                    u16::from_ne_bytes((*tcp).sport),
                    u16::from_ne_bytes((*tcp).dport),
                    (*tcp).rest[9],
                )
            }
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked.
            unsafe {
                (
                    u16::from_ne_bytes((*udp).sport),
                    u16::from_ne_bytes((*udp).dport),
                    0,
                )
            }
        }
        // An ICMP error about a NAT connection (`nat_icmp.rs`).
        IPPROTO_ICMP
            if family == FAMILY_V4
                && vip_flags & (VIP_NAT | VIP_SNAT) != 0
                && nat_icmp::is_error4(ctx) =>
        {
            return Ok(nat_icmp::error4(ctx, vip_flags));
        }
        _ => return Err(Counter::PassNotTcpUdp),
    };
    // TCP resets a drill reports: the flag is read only for an RST.
    if tcp_flags & TCP_RST != 0 && !drill_recorded && maps::drilling() {
        maps::count(if vip_flags & VIP_SNAT != 0 {
            Counter::RstFromBackend
        } else {
            Counter::RstToVip
        });
    }
    let flow = Aligned(FlowKey {
        src: *src,
        dst: *dst,
        sport_be,
        dport_be,
        proto,
        family,
        _pad: [0; 2],
    });
    let flow = &flow.0;
    // NAT66 is `nat66`'s: this path's IPv6 frame is too large to go on into NAT.
    if family == FAMILY_V4 && vip_flags & (VIP_NAT | VIP_SNAT) != 0 {
        if !whole {
            return Err(Counter::PassTruncated);
        }
        if vip_flags & VIP_SNAT != 0 {
            return Ok(nat::reply_any(ctx, l4_offset, flow));
        }
        if let Some(action) = nat::forward_known(ctx, l4_offset, flow) {
            return Ok(action);
        }
    }
    // Established flows first: one hash lookup, no service lookup. A SYN (without ACK)
    // opens a new connection: it skips the flow tables, takes the current Maglev choice
    // and replaces whatever entry an earlier connection on the same 5-tuple left (a
    // reused source port), so a drained backend gets no new connection through port
    // reuse. The price, as in Katran: a SYN retransmitted across a change of the
    // backend set may go to the new choice.
    let new_connection = proto == IPPROTO_TCP && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let known = if new_connection {
        None
    } else {
        established(flow).or_else(|| confirmed(flow))
    };
    let (slot, backend) = match known {
        Some(found) => {
            maps::count(Counter::FlowHit);
            found
        }
        None => {
            let service_key = Aligned(ServiceKey {
                vip: *dst,
                port_be: dport_be,
                proto,
                family,
            });
            let service = unsafe { SERVICES.get(&service_key.0) }.ok_or(Counter::PassNoService)?;
            let service_id = service.id;
            let h = if service.flags & SVC_HASH_5TUPLE != 0 {
                hash::hash_5tuple(&src.bytes, &dst.bytes, sport_be, dport_be, proto)
            } else {
                hash::hash_source(&src.bytes)
            };
            let found = maglev_pick(service_id, h)?;
            if family == FAMILY_V4 && service.flags & SVC_NAT != 0 {
                if L2 != ETH_LEN {
                    return Err(Counter::PassVlan);
                }
                if !whole {
                    return Err(Counter::PassTruncated);
                }
                // Draining: no NAT state the new owner cannot know about.
                if vip_flags & fo_common::VIP_DRAINING != 0 {
                    return Err(Counter::PassNotOwned);
                }
                return Ok(nat::open_new(ctx, l4_offset, flow, service_id, found.0));
            }
            maps::count(Counter::FlowMiss);
            let value = FlowValue {
                backend: found.0,
                service_id,
            };
            if new_connection {
                remember_syn(flow, value);
            } else {
                remember(flow, value);
            }
            found
        }
    };

    if backend.flags & BACKEND_TUNNEL != 0 {
        // Tunnels are untagged only (the config refuses a tunnel service on a VLAN VIP).
        if L2 != ETH_LEN {
            return Err(Counter::PassVlan);
        }
        // IPv4: the whole packet goes in the tunnel, so it must be whole.
        if !whole {
            return Err(Counter::PassTruncated);
        }
        return Ok(tunnel::pending_encap(slot));
    }
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).dst = backend.dst_mac;
        (*eth).src = backend.src_mac;
    }
    maps::account(slot, frame_len(ctx));
    let ingress = ctx.ingress_ifindex() as u32;
    if backend.ifindex == 0 || backend.ifindex == ingress {
        Ok(XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(backend.ifindex, 0) } as u32)
    }
}

/// Record a new connection's backend. A 5-tuple the table still holds with the same
/// backend (an earlier connection's source port, reused, and the same Maglev choice) is
/// left alone: an insert would take a free LRU node and give the old one back, the
/// costliest part of a SYN. Anything else is inserted whole; never written in place, as
/// under eviction pressure the node found may be reused for another flow meanwhile.
#[inline(always)]
fn remember(flow: &FlowKey, value: FlowValue) {
    // SAFETY: read-only; a value torn by a concurrent replacement at worst makes this
    // insert (or skip) what the next packet's Maglev lookup would insert anyway.
    let same = unsafe { FLOWS.get(flow) }
        .is_some_and(|v| v.backend == value.backend && v.service_id == value.service_id);
    if !same && FLOWS.insert(flow, &value, 0).is_err() {
        maps::count(Counter::FlowInsertFailed);
    }
}

/// Record the backend of a connection seen only as a SYN, in `FLOWS_NEW`. An entry an
/// earlier connection on this 5-tuple left in `FLOWS` with another backend goes, so
/// the connection's next packet follows this choice.
#[inline(always)]
fn remember_syn(flow: &FlowKey, value: FlowValue) {
    // SAFETY: read-only, as in `remember`.
    let stale = unsafe { FLOWS.get(flow) }
        .is_some_and(|v| v.backend != value.backend || v.service_id != value.service_id);
    if stale {
        let _ = FLOWS.remove(flow);
    }
    // SAFETY: read-only, as in `remember`.
    let same = unsafe { FLOWS_NEW.get(flow) }
        .is_some_and(|v| v.backend == value.backend && v.service_id == value.service_id);
    if !same && FLOWS_NEW.insert(flow, &value, 0).is_err() {
        maps::count(Counter::FlowInsertFailed);
    }
}

/// The backend a connection's SYN chose, at its first other packet: the entry moves
/// from `FLOWS_NEW` to `FLOWS`, if that backend is still in service.
#[inline(always)]
fn confirmed(flow: &FlowKey) -> Option<(u32, &'static Backend)> {
    // SAFETY: as in `established`.
    let value = *unsafe { FLOWS_NEW.get(flow) }?;
    let _ = FLOWS_NEW.remove(flow);
    let backend = valid(flow, value)?;
    if FLOWS.insert(flow, &value, 0).is_err() {
        maps::count(Counter::FlowInsertFailed);
    }
    Some((value.backend, backend))
}

/// The backend of an established flow, if that backend is still in service.
///
/// A removed service deactivates its backends, so its flows fail here and go the
/// service lookup (and pass). The port check keeps a flow of a removed service from
/// following a slot that was reused for another service: in DSR the backend port is
/// the service port, which is the flow's destination port.
#[inline(always)]
fn established(flow: &FlowKey) -> Option<(u32, &'static Backend)> {
    // SAFETY: an LRU entry is replaced whole; a torn read would at worst pick a
    // backend that is then validated below.
    let value = *unsafe { FLOWS.get(flow) }?;
    Some((value.backend, valid(flow, value)?))
}

/// The backend `value` names, if it is still in service for `flow`.
#[inline(always)]
fn valid(flow: &FlowKey, value: FlowValue) -> Option<&'static Backend> {
    let backend = BACKENDS.get(value.backend)?;
    (backend.flags & BACKEND_ACTIVE != 0
        && backend.service_id == value.service_id
        && backend.port_be == flow.dport_be)
        .then_some(backend)
}

/// The Maglev choice for hash `h` in the service's table.
#[inline(always)]
fn maglev_pick(service_id: u32, h: u32) -> Result<(u32, &'static Backend), Counter> {
    let m = maps::maglev_size();
    let offset = h.checked_rem(m).ok_or(Counter::PassNoBackend)?;
    let index = service_id.wrapping_mul(m).wrapping_add(offset);
    let entry = *MAGLEV.get(index).ok_or(Counter::PassNoBackend)?;
    if entry == MAGLEV_EMPTY {
        return Err(Counter::PassNoBackend);
    }
    let slot = entry - 1;
    let backend = BACKENDS.get(slot).ok_or(Counter::PassNoBackend)?;
    if backend.flags & BACKEND_ACTIVE == 0 {
        return Err(Counter::PassNoBackend);
    }
    Ok((slot, backend))
}
