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
    ETH_LEN, EthHdr, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ipv4Hdr,
    Ipv6Hdr, TcpHdr, UdpHdr, frame_len, ptr_at, ptr_at_mut,
};
use crate::{nat, nd, tunnel};

/// IPv4 more-fragments flag and fragment offset.
const IP_MF_OFFSET: u16 = 0x3fff;

/// The IPv4 and IPv6 paths are separate BPF functions, each with its own stack frame:
/// the BPF stack allows 512 bytes for a whole call chain, and the IPv4 chain goes on
/// into the NAT functions.
#[inline(never)]
pub fn ipv4(ctx: &XdpContext) -> Result<u32, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
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
    let whole = total >= IPV4_LEN + l4_min && total <= frame_len(ctx) - ETH_LEN;
    if proto == tunnel::relay::IPPROTO_ICMP && tunnel::relay::is_source(&dst, FAMILY_V4) {
        return Ok(tunnel::PENDING_RELAY4);
    }
    forward(ctx, ETH_LEN + IPV4_LEN, proto, src, dst, FAMILY_V4, whole)
}

#[inline(never)]
pub fn ipv6(ctx: &XdpContext) -> Result<u32, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked by `ptr_at`.
    let (next, src, dst) = unsafe {
        if (*ip).version_tc_flow[0] >> 4 != 6 {
            return Err(Counter::PassBadIp);
        }
        ((*ip).next_header, Addr::v6((*ip).src), Addr::v6((*ip).dst))
    };
    match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            forward(ctx, ETH_LEN + IPV6_LEN, next, src, dst, FAMILY_V6, true)
        }
        IPPROTO_ICMPV6 => {
            // A "packet too big" may be about a tunnelled packet (`tunnel::relay`).
            let icmp_type: *const u8 =
                ptr_at(ctx, ETH_LEN + IPV6_LEN).ok_or(Counter::PassTruncated)?;
            // SAFETY: bounds-checked.
            if unsafe { *icmp_type } == tunnel::relay::ICMPV6_PACKET_TOO_BIG {
                return Ok(tunnel::PENDING_RELAY6);
            }
            nd::advertise(ctx, ip)
        }
        // Hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP, shim6.
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 => Err(Counter::PassIpv6ExtHeader),
        _ => Err(Counter::PassNotTcpUdp),
    }
}

#[inline(always)]
fn forward(
    ctx: &XdpContext,
    l4_offset: usize,
    proto: u8,
    src: Addr,
    dst: Addr,
    family: u8,
    // For IPv4: the packet is whole (see `ipv4`); NAT is IPv4 only.
    whole: bool,
) -> Result<u32, Counter> {
    // No VIP's address has its filter bit clear: such a frame (most of what a node
    // receives) passes after one array lookup, which the verifier inlines, instead of
    // a hash lookup of `VIPS`.
    let (word, mask) = fo_common::vip_filter_bit(&dst);
    if maps::VIP_FILTER
        .get(word)
        .is_none_or(|bits| bits & mask == 0)
    {
        return Err(Counter::PassNotVip);
    }
    let vip_key = Aligned(VipKey {
        addr: dst,
        family,
        _pad: [0; 3],
    });
    // SAFETY (map reads below): values are plain data replaced whole by the agent.
    let vip = unsafe { maps::VIPS.get(&vip_key.0) }.ok_or(Counter::PassNotVip)?;
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
    // When each client follows a handover: recorded by the owner only, while a drill runs.
    if vip_flags & (fo_common::VIP_OWNED | VIP_SNAT) == fo_common::VIP_OWNED && maps::drilling() {
        maps::client_seen(src, family);
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
        _ => return Err(Counter::PassNotTcpUdp),
    };
    // TCP resets a drill reports: the flag is read only for an RST.
    if tcp_flags & TCP_RST != 0 && maps::drilling() {
        maps::count(if vip_flags & VIP_SNAT != 0 {
            Counter::RstFromBackend
        } else {
            Counter::RstToVip
        });
    }
    let flow = Aligned(FlowKey {
        src,
        dst,
        sport_be,
        dport_be,
        proto,
        family,
        _pad: [0; 2],
    });
    let flow = &flow.0;
    // NAT is IPv4 only (the config refuses it on IPv6 VIPs).
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
                vip: dst,
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
