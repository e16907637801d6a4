//! Full NAT for `mode = "nat"` services (IPv4, and IPv6 through `nat6`'s routing and
//! rewriting): client -> VIP:port becomes
//! SNAT:port -> backend:bport, and the backend's reply SNAT:port <- backend:bport
//! becomes VIP:port -> client. Checksums are updated incrementally (RFC 1624); the
//! next hop and its MACs come from the kernel's FIB (`bpf_fib_lookup`), so backends
//! may sit behind a router.
//!
//! Only a TCP SYN (or any UDP datagram) opens a connection: a mid-stream segment of
//! an unknown connection is passed, never given a fresh SNAT port that the backend
//! would answer with an RST. A new connection lives in the embryonic maps until its
//! client proves it receives replies, then moves to the connection table
//! (`NAT_FWD`/`NAT_REV`, UDP flows to `NAT_UDP_FWD`/`NAT_UDP_REV`) and is reported to
//! the sync (see `fo_common::nat`). Aging is the agent's: the program keeps each
//! entry's state, sequence tracking and last-seen time current.
//!
//! One piece on purpose: the forward, open and reply paths share the parsing, routing
//! and rewriting helpers below, and are checked against each other (and the verifier)
//! as one.

use aya_ebpf::maps::HashMap;
use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use fo_common::{
    Addr, Backend, Counter, Csum, FAMILY_V4, FAMILY_V6, FlowKey, NAT_BACKEND, NAT_EVENT_CLOSED,
    NAT_EVENT_NEW, NAT_MAX_SNAT, NAT_PORT_TRIES, NAT_SEQ_END, NAT_TCP_CLOSED, NAT_TCP_ESTABLISHED,
    NAT_TCP_SYN, NAT_TOUCH_NS, NAT_UDP, NatEvent, NatFlow, NatSeq, TCP_ACK, TCP_RST, TCP_SYN,
    TcpSeg, hash, tcp_track,
    xdp_action::{XDP_PASS, XDP_TX},
};

use crate::maps::{
    self, BACKENDS, NAT_EMBRYO_FWD, NAT_EMBRYO_REV, NAT_EVENTS, NAT_FWD, NAT_REV, NAT_SCRATCH,
    NAT_SERVICES, NAT_UDP_FWD, NAT_UDP_REV, NatScratch,
};
use crate::nat6;
use crate::parse::{
    ETH_LEN, EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, Ipv6Hdr, TcpHdr, UdpHdr, frame_len, ptr_at,
    ptr_at_mut,
};

const AF_INET: u8 = 2;
const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

/// Where a rewritten frame goes: the next hop `route` left in the scratch space.
pub(crate) struct Hop(pub(crate) *mut NatScratch);

/// `hop_ifindex` meaning "no neighbour entry: let the kernel forward it".
pub(crate) const KERNEL_FORWARDS: u32 = 0;

/// The connection table (client side) of UDP flows (`U`) or TCP connections: UDP
/// flows have their own, so that a UDP flood that passes UDP's weak proof fills that
/// one at most. A constant per instance of the code that uses it: a map chosen at run
/// time would make the verifier give up inlining the lookups of that call site.
#[inline(always)]
pub(crate) fn conn_fwd<const U: bool>() -> &'static HashMap<FlowKey, NatFlow> {
    if U { &NAT_UDP_FWD } else { &NAT_FWD }
}

/// The reply side of [`conn_fwd`].
#[inline(always)]
pub(crate) fn conn_rev<const U: bool>() -> &'static HashMap<FlowKey, FlowKey> {
    if U { &NAT_UDP_REV } else { &NAT_REV }
}

/// A client packet of a NAT VIP: translated if it belongs to a known connection (the
/// connection table first, then the embryonic one); `None` otherwise.
#[inline(always)]
pub fn forward_known(ctx: &XdpContext, l4_offset: usize, flow: &FlowKey) -> Option<u32> {
    match (flow.proto == IPPROTO_UDP, flow.family == FAMILY_V6) {
        (true, false) => forward_known_in::<true, false>(ctx, l4_offset, flow),
        (false, false) => forward_known_in::<false, false>(ctx, l4_offset, flow),
        (true, true) => forward_known_in::<true, true>(ctx, l4_offset, flow),
        (false, true) => forward_known_in::<false, true>(ctx, l4_offset, flow),
    }
}

#[inline(always)]
fn forward_known_in<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
) -> Option<u32> {
    if let Some(entry) = conn_fwd::<U>().get_ptr_mut(flow) {
        return Some(forward_pkt::<U, V6>(ctx, l4_offset, flow, entry, false));
    }
    let entry = NAT_EMBRYO_FWD.get_ptr_mut(flow)?;
    Some(forward_pkt::<U, V6>(ctx, l4_offset, flow, entry, true))
}

/// The first packet of a connection to a NAT service.
#[inline(always)]
pub fn open_new(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
    service_id: u32,
    slot: u32,
) -> u32 {
    match (flow.proto == IPPROTO_UDP, flow.family == FAMILY_V6) {
        (true, false) => open_pkt::<true, false>(ctx, l4_offset, flow, service_id, slot),
        (false, false) => open_pkt::<false, false>(ctx, l4_offset, flow, service_id, slot),
        (true, true) => open_pkt::<true, true>(ctx, l4_offset, flow, service_id, slot),
        (false, true) => open_pkt::<false, true>(ctx, l4_offset, flow, service_id, slot),
    }
}

/// A packet to a SNAT address: a backend's reply.
#[inline(always)]
pub fn reply_any(ctx: &XdpContext, l4_offset: usize, rflow: &FlowKey) -> u32 {
    match (rflow.proto == IPPROTO_UDP, rflow.family == FAMILY_V6) {
        (true, false) => reply_pkt::<true, false>(ctx, l4_offset, rflow),
        (false, false) => reply_pkt::<false, false>(ctx, l4_offset, rflow),
        (true, true) => reply_pkt::<true, true>(ctx, l4_offset, rflow),
        (false, true) => reply_pkt::<false, true>(ctx, l4_offset, rflow),
    }
}

/// The entry points below are separate BPF functions (own stack frame), so the NAT
/// paths do not crowd the DSR path's stack; they count their own pass reason. `U`:
/// a UDP flow (else TCP). `embryo`: the entry is in `NAT_EMBRYO_FWD` (else the
/// connection table).
#[inline(never)]
fn forward_pkt<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
    entry: *mut NatFlow,
    embryo: bool,
) -> u32 {
    verdict(
        udp6_checksummed::<U, V6>(ctx, l4_offset)
            .and_then(|()| forward::<U, V6>(ctx, l4_offset, flow, entry, embryo)),
    )
}

#[inline(never)]
fn open_pkt<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
    service_id: u32,
    slot: u32,
) -> u32 {
    verdict(
        udp6_checksummed::<U, V6>(ctx, l4_offset).and_then(|()| match BACKENDS.get(slot) {
            Some(backend) => open::<U, V6>(ctx, l4_offset, flow, service_id, slot, backend),
            None => Err(Counter::PassNoBackend),
        }),
    )
}

#[inline(never)]
fn reply_pkt<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    rflow: &FlowKey,
) -> u32 {
    verdict(
        udp6_checksummed::<U, V6>(ctx, l4_offset)
            .and_then(|()| reply::<U, V6>(ctx, l4_offset, rflow)),
    )
}

/// A UDP datagram (`U`) over IPv6 has a checksum: zero is illegal there (RFC 8200
/// §8.1), and the kernel drops such a datagram, so it goes there untranslated,
/// before anything is looked up or reserved.
#[inline(always)]
fn udp6_checksummed<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
) -> Result<(), Counter> {
    if U && V6 {
        let udp: *const UdpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        if unsafe { (*udp).check } == [0, 0] {
            return Err(Counter::PassBadIp);
        }
    }
    Ok(())
}

/// The family tag of an instance for IPv6 (`V6`) or IPv4.
#[inline(always)]
const fn family_of<const V6: bool>() -> u8 {
    if V6 { FAMILY_V6 } else { FAMILY_V4 }
}

#[inline(always)]
pub(crate) fn verdict(r: Result<u32, Counter>) -> u32 {
    r.unwrap_or_else(|reason| {
        maps::count(reason);
        XDP_PASS
    })
}

/// A client packet of a known connection.
#[inline(always)]
fn forward<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
    entry: *mut NatFlow,
    embryo: bool,
) -> Result<u32, Counter> {
    let family = family_of::<V6>();
    let seg = segment(ctx, l4_offset, flow.proto, family)?;
    if embryo && !holds_port::<U>(flow, entry) {
        // Its port is another connection's now: sending from it would mix the two.
        let _ = NAT_EMBRYO_FWD.remove(flow);
        return Err(Counter::PassNatEmbryoLost);
    }
    // SAFETY: a live map value, read field by field (no 56-byte copy on the stack;
    // the addresses stay in the map); a torn read of a concurrent state update is
    // harmless, and the program never changes a connection's addresses.
    let (snat, backend, snat_port_be, backend_port_be, slot) = unsafe {
        (
            &(*entry).snat,
            &(*entry).backend,
            (*entry).snat_port_be,
            (*entry).backend_port_be,
            (*entry).backend_slot,
        )
    };
    let hop = route_any(ctx, family, snat, backend, flow.proto, None)?;
    rewrite_any(
        ctx,
        l4_offset,
        family,
        flow.proto,
        (snat, snat_port_be),
        (backend, backend_port_be),
    )?;
    if touch(entry, flow, &seg, true, embryo) && embryo {
        promote::<U>(flow, entry);
    }
    maps::count(Counter::NatHit);
    send(ctx, &hop, slot)
}

/// The first packet of a connection to a NAT service: reserve a SNAT port, record
/// both directions, translate.
#[inline(always)]
fn open<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    flow: &FlowKey,
    service_id: u32,
    slot: u32,
    backend: &Backend,
) -> Result<u32, Counter> {
    if backend.family != flow.family {
        return Err(Counter::PassNoService);
    }
    let family = family_of::<V6>();
    let seg = segment(ctx, l4_offset, flow.proto, family)?;
    if flow.proto == IPPROTO_TCP && (seg.flags & TCP_SYN == 0 || seg.flags & TCP_ACK != 0) {
        return Err(Counter::PassNatNoFlow);
    }
    let svc = NAT_SERVICES.get(service_id).ok_or(Counter::PassNoService)?;
    let count = svc.snat_count;
    if count == 0 || svc.port_max < svc.port_min {
        return Err(Counter::PassNoService);
    }
    // A client claiming one of the node's own addresses (the VIP, a SNAT address) is
    // spoofed, a martian the kernel drops: a connection opened for it would send the
    // backend's replies back to this node. Found by the NAT fuzz fixture.
    if flow.src == flow.dst {
        return Err(Counter::PassNatNoFlow);
    }
    let mut j = 0usize;
    while j < NAT_MAX_SNAT {
        if (j as u32) < count && svc.snat[j] == flow.src {
            return Err(Counter::PassNatNoFlow);
        }
        j += 1;
    }
    let range = (svc.port_max - svc.port_min) as u32 + 1;
    // Route first: nothing is reserved for a packet that cannot be forwarded.
    let hop = route_any(ctx, family, &svc.snat[0], &backend.addr, flow.proto, None)?;
    let scratch = NAT_SCRATCH
        .get_ptr_mut(0)
        .ok_or(Counter::PassNatTableFull)?;

    let h = hash::hash_5tuple(
        &flow.src.bytes,
        &flow.dst.bytes,
        flow.sport_be,
        flow.dport_be,
        flow.proto,
    );
    let mut chosen = NAT_MAX_SNAT;
    let mut i = 0u32;
    // SAFETY: per-CPU scratch, ours for this run; every field is written before use.
    unsafe {
        let rev = &mut (*scratch).rev;
        rev.src = backend.addr;
        rev.sport_be = backend.port_be;
        rev.proto = flow.proto;
        rev.family = family;
        rev._pad = [0; 2];
        while i < NAT_PORT_TRIES {
            let mut x = h ^ i.wrapping_mul(0x9e37_79b9);
            x = x.wrapping_mul(0x85eb_ca6b);
            x ^= x >> 16;
            let idx = (x % count) as usize;
            if idx >= NAT_MAX_SNAT {
                break;
            }
            rev.dst = svc.snat[idx];
            rev.dport_be = (svc.port_min + ((x >> 2) % range) as u16).to_be();
            // Free where no established connection holds it; then reserved among the
            // embryonic ones.
            if conn_rev::<U>().get(rev).is_some() {
                i += 1;
                continue;
            }
            match NAT_EMBRYO_REV.insert(rev, flow, BPF_NOEXIST) {
                Ok(()) => {
                    chosen = idx;
                    break;
                }
                Err(e) if e == -EEXIST => {}
                Err(_) => return Err(Counter::PassNatTableFull),
            }
            i += 1;
        }
    }
    if chosen >= NAT_MAX_SNAT {
        return Err(Counter::PassNatPortsExhausted);
    }

    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: scratch as above; `eth` bounds-checked.
    let (snat, snat_port_be) = unsafe {
        let rev = &(*scratch).rev;
        let value = &mut (*scratch).flow;
        value.backend = backend.addr;
        value.snat = rev.dst;
        value.client_mac = (*eth).src;
        value.backend_port_be = backend.port_be;
        value.snat_port_be = rev.dport_be;
        value._pad = 0;
        value.backend_slot = slot;
        value.last_seen_ns = bpf_ktime_get_ns();
        value.seq[1] = NatSeq::default();
        if flow.proto == IPPROTO_TCP {
            value.state = NAT_TCP_SYN;
            value.seq[0] = NatSeq::syn(&seg);
        } else {
            value.state = NAT_UDP;
            value.seq[0] = NatSeq {
                flags: NAT_SEQ_END,
                ..NatSeq::default()
            };
        }
        if NAT_EMBRYO_FWD.insert(flow, value, BPF_NOEXIST).is_err() {
            // Another CPU opened the same connection a moment ago (a retransmitted
            // SYN finds that entry).
            let _ = NAT_EMBRYO_REV.remove(rev);
            return Err(Counter::PassNatTableFull);
        }
        (&rev.dst, rev.dport_be)
    };
    rewrite_any(
        ctx,
        l4_offset,
        family,
        flow.proto,
        (snat, snat_port_be),
        (&backend.addr, backend.port_be),
    )?;
    maps::count(Counter::NatNew);
    send(ctx, &hop, slot)
}

/// A backend's reply, addressed to a SNAT address.
#[inline(always)]
fn reply<const U: bool, const V6: bool>(
    ctx: &XdpContext,
    l4_offset: usize,
    rflow: &FlowKey,
) -> Result<u32, Counter> {
    // SAFETY: map values are plain data, replaced whole.
    let (fwd, embryo): (&FlowKey, bool) = match unsafe { conn_rev::<U>().get(rflow) } {
        Some(fwd) => (fwd, false),
        None => (
            unsafe { NAT_EMBRYO_REV.get(rflow) }.ok_or(Counter::PassNatNoFlow)?,
            true,
        ),
    };
    let entry = if embryo {
        NAT_EMBRYO_FWD.get_ptr_mut(fwd)
    } else {
        conn_fwd::<U>().get_ptr_mut(fwd)
    }
    .ok_or(Counter::PassNatNoFlow)?;
    let seg = segment(ctx, l4_offset, rflow.proto, family_of::<V6>())?;
    // SAFETY: as in `forward`.
    let (client_mac, slot) = unsafe { ((*entry).client_mac, (*entry).backend_slot) };
    let (vport_be, cport_be) = (fwd.dport_be, fwd.sport_be);
    let family = family_of::<V6>();
    let hop = route_any(
        ctx,
        family,
        &fwd.dst,
        &fwd.src,
        rflow.proto,
        Some(client_mac),
    )?;
    rewrite_any(
        ctx,
        l4_offset,
        family,
        rflow.proto,
        (&fwd.dst, vport_be),
        (&fwd.src, cport_be),
    )?;
    touch(entry, fwd, &seg, false, embryo);
    maps::count(Counter::NatReply);
    send(ctx, &hop, slot)
}

#[inline(always)]
pub(crate) fn v4(a: &Addr) -> [u8; 4] {
    [a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3]]
}

/// The next hop towards `dst`, for either family.
#[inline(always)]
fn route_any(
    ctx: &XdpContext,
    family: u8,
    src: &Addr,
    dst: &Addr,
    proto: u8,
    fallback_mac: Option<[u8; 6]>,
) -> Result<Hop, Counter> {
    if family == FAMILY_V6 {
        nat6::route(ctx, src, dst, proto, fallback_mac)
    } else {
        route(ctx, v4(src), v4(dst), proto, fallback_mac)
    }
}

/// New source and destination (address, port) for either family.
#[inline(always)]
fn rewrite_any(
    ctx: &XdpContext,
    l4_offset: usize,
    family: u8,
    proto: u8,
    (src, sport_be): (&Addr, u16),
    (dst, dport_be): (&Addr, u16),
) -> Result<(), Counter> {
    if family == FAMILY_V6 {
        nat6::rewrite(ctx, l4_offset, proto, (src, sport_be), (dst, dport_be))
    } else {
        rewrite(ctx, l4_offset, proto, v4(src), sport_be, v4(dst), dport_be)
    }
}

/// Bytes after the IP header (IPv4 frames carry no options here: `lb::ipv4` passes
/// those), from the IP header's own length field.
#[inline(always)]
fn l4_len(ctx: &XdpContext, family: u8) -> Result<u32, Counter> {
    if family == FAMILY_V6 {
        let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        Ok(u32::from(u16::from_be_bytes(unsafe { (*ip).payload_len })))
    } else {
        let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
        // SAFETY: bounds-checked.
        Ok(u32::from(u16::from_be_bytes(unsafe { (*ip).total_len })).saturating_sub(20))
    }
}

/// The TCP fields the tracking needs (all zero for UDP). The window scale option is
/// read from SYNs only.
#[inline(always)]
fn segment(ctx: &XdpContext, l4_offset: usize, proto: u8, family: u8) -> Result<TcpSeg, Counter> {
    if proto != IPPROTO_TCP {
        return Ok(TcpSeg::default());
    }
    let total = l4_len(ctx, family)?;
    let tcp: *const TcpHdr = ptr_at(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked; the TCP fields past the ports are `rest` (seq 0..4,
    // ack 4..8, data offset 8, flags 9, window 10..12).
    let r = unsafe { (*tcp).rest };
    let doff = u32::from(r[8] >> 4) * 4;
    if doff < 20 {
        return Err(Counter::PassNatBadTcp);
    }
    let flags = r[9];
    let wscale = if flags & TCP_SYN != 0 {
        syn_wscale(ctx, l4_offset, doff)
    } else {
        None
    };
    Ok(TcpSeg {
        flags,
        seq: u32::from_be_bytes([r[0], r[1], r[2], r[3]]),
        ack: u32::from_be_bytes([r[4], r[5], r[6], r[7]]),
        win: u16::from_be_bytes([r[10], r[11]]),
        len: total.saturating_sub(doff),
        wscale,
    })
}

/// The window scale option (kind 3, RFC 7323) of a SYN whose header is `doff` bytes.
/// The options are copied to a zeroed scratch buffer first (zero ends the list), so
/// the walk indexes an array with a constant bound, not the packet.
#[inline(never)]
fn syn_wscale(ctx: &XdpContext, l4_offset: usize, doff: u32) -> Option<u8> {
    if doff <= 20 {
        return None;
    }
    // 4 to 40 option bytes. The volatile read keeps the compiler from folding the mask
    // and the check away: the verifier must see the length bounded by the buffer.
    // SAFETY: a local.
    let n = unsafe { core::ptr::read_volatile(&(doff - 20)) } & 0x3f;
    if n == 0 {
        return None;
    }
    let scratch = NAT_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch, ours for this run; the helper copies `n` (1..=63) bytes
    // into the 64-byte buffer, or fails if the frame is shorter.
    let opts = unsafe {
        let buf = &mut (*scratch).opts;
        // Zeroed word by word: a memset call would take stack of its own.
        let words = buf.as_mut_ptr() as *mut u64;
        let mut k = 0;
        while k < 8 {
            core::ptr::write_volatile(words.add(k), 0);
            k += 1;
        }
        let rc = bpf_xdp_load_bytes(
            ctx.ctx,
            (l4_offset + 20) as u32,
            buf.as_mut_ptr() as *mut _,
            n,
        );
        if rc != 0 {
            return None;
        }
        &*buf
    };
    let mut i = 0usize;
    while i < 40 {
        match opts[i & 63] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = opts[(i + 1) & 63] as usize;
                if kind == 3 && len == 3 {
                    return Some(opts[(i + 2) & 63]);
                }
                if len < 2 {
                    return None;
                }
                i += len;
            }
        }
    }
    None
}

/// Next state, tracking and last-seen time; an RST of an established connection is
/// reported to the sync. Returns whether the client has proved that it receives
/// replies (TCP: it completed the handshake, now or earlier; UDP: it sent after a
/// reply), so an embryonic connection whose promotion failed tries again with its
/// next packet.
#[inline(always)]
fn touch(
    entry: *mut NatFlow,
    key: &FlowKey,
    seg: &TcpSeg,
    from_client: bool,
    embryo: bool,
) -> bool {
    // SAFETY: live map value; single-field loads and stores.
    unsafe {
        let old = (*entry).state;
        let mut proven = false;
        let state = if key.proto == IPPROTO_TCP {
            let step = tcp_track(old, &mut (*entry).seq, seg, from_client);
            if step.ignored {
                maps::count(if seg.flags & TCP_RST != 0 {
                    Counter::NatRstIgnored
                } else {
                    Counter::NatFinIgnored
                });
            }
            proven = step.state == NAT_TCP_ESTABLISHED;
            step.state
        } else {
            let backend_seen = (*entry).seq[NAT_BACKEND].flags & NAT_SEQ_END != 0;
            if from_client {
                proven = backend_seen;
            } else if !backend_seen {
                (*entry).seq[NAT_BACKEND].flags |= NAT_SEQ_END;
            }
            old
        };
        let now = bpf_ktime_get_ns();
        if state != old || now.wrapping_sub((*entry).last_seen_ns) > NAT_TOUCH_NS {
            (*entry).state = state;
            (*entry).last_seen_ns = now;
            if state == NAT_TCP_CLOSED && old != NAT_TCP_CLOSED && !embryo {
                event(key, &*entry, NAT_EVENT_CLOSED);
            }
        }
        proven
    }
}

/// Whether the embryonic connection `flow` still holds its SNAT port. The two
/// embryonic maps are LRU hashes that evict independently, so its reservation in
/// `NAT_EMBRYO_REV` may be gone while the connection is not: then the port is
/// reserved again if it is still free, and lost if another connection took it.
#[inline(always)]
fn holds_port<const U: bool>(flow: &FlowKey, entry: *const NatFlow) -> bool {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU scratch, ours for this run (`route` has not run yet); `entry`
    // a live map value; map values are plain data.
    unsafe {
        (*scratch).rev = (*entry).reverse_key(flow);
        let rev = &(*scratch).rev;
        if let Some(owner) = NAT_EMBRYO_REV.get(rev) {
            return *owner == *flow;
        }
        if let Some(owner) = conn_rev::<U>().get(rev) {
            return *owner == *flow;
        }
        NAT_EMBRYO_REV.insert(rev, flow, BPF_NOEXIST).is_ok()
    }
}

/// Move a connection that proved its client from the embryonic maps to the
/// connection table, and report it to the sync. The connection table taking it
/// comes first, so a packet never finds it in neither. If the table is full it stays
/// embryonic (counted) and tries again with its next packet.
#[inline(always)]
fn promote<const U: bool>(flow: &FlowKey, entry: *mut NatFlow) {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch, ours for this run (the hop fields `send` reads are not
    // touched); `entry` a live map value, copied whole.
    unsafe {
        (*scratch).flow = *entry;
        (*scratch).rev = (*entry).reverse_key(flow);
        let (value, rev) = (&(*scratch).flow, &(*scratch).rev);
        let (fwd_map, rev_map) = (conn_fwd::<U>(), conn_rev::<U>());
        if rev_map.insert(rev, flow, BPF_NOEXIST).is_err() {
            maps::count(Counter::NatPromoteFailed);
            return;
        }
        if fwd_map.insert(flow, value, BPF_NOEXIST).is_err() {
            let _ = rev_map.remove(rev);
            maps::count(Counter::NatPromoteFailed);
            return;
        }
        let _ = NAT_EMBRYO_FWD.remove(flow);
        let _ = NAT_EMBRYO_REV.remove(rev);
        event(flow, value, NAT_EVENT_NEW);
    }
    maps::count(Counter::NatPromoted);
}

#[inline(always)]
fn event(key: &FlowKey, flow: &NatFlow, kind: u32) {
    if let Some(mut slot) = NAT_EVENTS.reserve::<NatEvent>(0) {
        let p = slot.as_mut_ptr();
        // SAFETY: the reserved record is ours until submitted; every field is written.
        unsafe {
            (*p).key = *key;
            (*p).flow = *flow;
            (*p).kind = kind;
            (*p)._pad = 0;
        }
        slot.submit(0);
    } else {
        maps::count(Counter::NatEventLost);
    }
}

/// The kernel's next hop towards `dst`. For replies, `fallback_mac` (the MAC the
/// client's frames came from) stands in when the kernel has no neighbour entry for
/// the client: it never sent the client a packet itself.
#[inline(always)]
pub(crate) fn route(
    ctx: &XdpContext,
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    fallback_mac: Option<[u8; 6]>,
) -> Result<Hop, Counter> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let scratch = NAT_SCRATCH.get_ptr_mut(0).ok_or(Counter::PassNatNoRoute)?;
    // SAFETY: per-CPU scratch, ours for this run; all-zero is a valid query; `ip`
    // bounds-checked; the helper gets the query's real size.
    let (rc, p) = unsafe {
        let p: *mut bpf_fib_lookup = &mut (*scratch).fib;
        core::ptr::write_bytes(p, 0, 1);
        (*p).family = AF_INET;
        (*p).l4_protocol = proto;
        (*p).__bindgen_anon_1.tot_len = u16::from_be_bytes((*ip).total_len);
        (*p).ifindex = ctx.ingress_ifindex() as u32;
        (*p).__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
        (*p).__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
        let rc = fib_lookup(
            ctx.ctx as *mut _,
            p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        ) as u32;
        (rc, &*p)
    };
    hop_of(rc, p, scratch, fallback_mac)
}

/// The next hop from the answer `rc` of the FIB lookup `p` (in `scratch`), for either
/// family.
#[inline(always)]
pub(crate) fn hop_of(
    rc: u32,
    p: &bpf_fib_lookup,
    scratch: *mut NatScratch,
    fallback_mac: Option<[u8; 6]>,
) -> Result<Hop, Counter> {
    let ifindex = p.ifindex;
    // SAFETY: the union's MAC view is what the helper fills; `scratch` is this run's
    // per-CPU scratch.
    unsafe {
        let macs = p.__bindgen_anon_6.__bindgen_anon_2;
        match rc {
            BPF_FIB_LKUP_RET_SUCCESS => {
                (*scratch).hop_src_mac = macs.smac;
                (*scratch).hop_dst_mac = macs.dmac;
            }
            BPF_FIB_LKUP_RET_NO_NEIGH => match fallback_mac {
                Some(dst_mac) => {
                    (*scratch).hop_src_mac =
                        maps::iface_mac(ifindex).map_err(|_| Counter::PassNatNoNeigh)?;
                    (*scratch).hop_dst_mac = dst_mac;
                }
                None => {
                    // The next hop is not resolved (yet, or any more): the translated
                    // packet goes to the kernel, which forwards it and resolves the
                    // neighbour on the way (`send` passes it).
                    (*scratch).hop_ifindex = KERNEL_FORWARDS;
                    return Ok(Hop(scratch));
                }
            },
            8 => return Err(Counter::PassNatFragNeeded),
            _ => return Err(Counter::PassNatNoRoute),
        }
        (*scratch).hop_ifindex = ifindex;
    }
    Ok(Hop(scratch))
}

/// Write new addresses and ports, updating the IPv4 and TCP/UDP checksums.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    l4_offset: usize,
    proto: u8,
    src: [u8; 4],
    sport_be: u16,
    dst: [u8; 4],
    dport_be: u16,
) -> Result<(), Counter> {
    let ip: *mut Ipv4Hdr = ptr_at_mut(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let word = |be: u16| u16::from_be_bytes(be.to_ne_bytes());
    // SAFETY: bounds-checked.
    unsafe {
        let (old_src, old_dst) = ((*ip).src, (*ip).dst);
        let c = Csum::new(u16::from_be_bytes((*ip).check))
            .addr4(old_src, src)
            .addr4(old_dst, dst)
            .finish();
        (*ip).check = c.to_be_bytes();
        (*ip).src = src;
        (*ip).dst = dst;
        if proto == IPPROTO_TCP {
            let tcp: *mut TcpHdr = ptr_at_mut(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            let old_sport = u16::from_ne_bytes((*tcp).sport);
            let old_dport = u16::from_ne_bytes((*tcp).dport);
            let check = u16::from_be_bytes([(*tcp).rest[12], (*tcp).rest[13]]);
            let c = Csum::new(check)
                .addr4(old_src, src)
                .addr4(old_dst, dst)
                .word(word(old_sport), word(sport_be))
                .word(word(old_dport), word(dport_be))
                .finish();
            let cb = c.to_be_bytes();
            (*tcp).rest[12] = cb[0];
            (*tcp).rest[13] = cb[1];
            (*tcp).sport = sport_be.to_ne_bytes();
            (*tcp).dport = dport_be.to_ne_bytes();
        } else if proto == IPPROTO_UDP {
            let udp: *mut UdpHdr = ptr_at_mut(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            let old_sport = u16::from_ne_bytes((*udp).sport);
            let old_dport = u16::from_ne_bytes((*udp).dport);
            let check = u16::from_be_bytes((*udp).check);
            if check != 0 {
                // 0 = no checksum (IPv4); a computed 0 is sent as 0xffff (RFC 768).
                let mut c = Csum::new(check)
                    .addr4(old_src, src)
                    .addr4(old_dst, dst)
                    .word(word(old_sport), word(sport_be))
                    .word(word(old_dport), word(dport_be))
                    .finish();
                if c == 0 {
                    c = 0xffff;
                }
                (*udp).check = c.to_be_bytes();
            }
            (*udp).sport = sport_be.to_ne_bytes();
            (*udp).dport = dport_be.to_ne_bytes();
        }
    }
    Ok(())
}

/// MACs of the hop, count, and out: back through the ingress interface or to another.
#[inline(always)]
pub(crate) fn send(ctx: &XdpContext, hop: &Hop, slot: u32) -> Result<u32, Counter> {
    // SAFETY: the scratch holds this run's hop.
    if unsafe { (*hop.0).hop_ifindex } == KERNEL_FORWARDS {
        maps::account(slot, frame_len(ctx));
        maps::count(Counter::PassNatNoNeigh);
        return Ok(XDP_PASS);
    }
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked; the scratch holds this run's hop.
    let ifindex = unsafe {
        (*eth).dst = (*hop.0).hop_dst_mac;
        (*eth).src = (*hop.0).hop_src_mac;
        (*hop.0).hop_ifindex
    };
    maps::account(slot, frame_len(ctx));
    if ifindex == ctx.ingress_ifindex() as u32 {
        Ok(XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(ifindex, 0) } as u32)
    }
}
