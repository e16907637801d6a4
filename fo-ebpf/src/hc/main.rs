//! fo's health-check encapsulation (`fo-hc`), a TC egress program of its own
//! object, attached by the load balancer's agent (tcx) to the interface its probes
//! leave by.
//!
//! A packet whose `skb->mark` lies in the health-check range (`HC_MARK_BASE_CFG`,
//! low 16 bits free, see `fo_common::hc`) is a probe of a tunnel service's backend:
//! it is encapsulated as the XDP program encapsulates that service's clients' packets
//! (IPv4-in-IPv4 / IPv6-in-IPv6, or IPv4 in UDP + GUE when the mark's low 16 bits
//! name a GUE port), with the outer header from the packet's own source (the node's
//! address, so the backend's bare answer comes back to the probe's socket) to the
//! packet's own destination (for a probe, the backend's address: the agent marks only
//! probe sockets, and the program takes any packet so marked). The backend's decapsulation
//! must strip it for the probe to reach the backend's socket: a backend whose
//! tunnel is broken fails its check. Everything unmarked passes untouched.
//!
//! `bpf_skb_adjust_room` with the ENCAP flags makes the room after the Ethernet
//! header and marks the skb encapsulated, so the kernel's checksum and GSO fallbacks
//! (which run after TC egress) treat the inner headers as inner.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::{
        __sk_buff, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, TC_ACT_OK, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    },
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use fo_common::{
    GUE_LEN, HC_GUE, HC_IPIP, HC_MARK_MASK, HC_PASS_OTHER, HC_STATS_COUNT, TUNNEL_TTL, UDP_LEN,
    hc_gue_source_port,
};

const ETH_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_UDP: u8 = 17;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
/// The IPv4 don't-fragment flag, in the frag field's first byte.
const IP_DF_HI: u8 = 0x40;

/// Base of the mark range (low 16 bits zero); 0: the program encapsulates nothing.
/// Set by the loader.
#[unsafe(no_mangle)]
static HC_MARK_BASE_CFG: Global<u32> = Global::new(0);

/// Per-CPU counts: `fo_common::HC_*`.
#[map]
static HC_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(HC_STATS_COUNT, 0);

#[classifier]
pub fn fo_hc(ctx: TcContext) -> i32 {
    let base = HC_MARK_BASE_CFG.load();
    // SAFETY: `skb` is the live __sk_buff of this invocation.
    let mark = unsafe { (*(ctx.as_ptr() as *const __sk_buff)).mark };
    if base == 0 || mark & HC_MARK_MASK != base {
        return TC_ACT_OK as i32;
    }
    let gue_port = (mark & 0xffff) as u16;
    let slot = match encap(&ctx, gue_port) {
        Ok(slot) => slot,
        Err(()) => HC_PASS_OTHER,
    };
    if let Some(c) = HC_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
    TC_ACT_OK as i32
}

#[inline(always)]
fn encap(ctx: &TcContext, gue_port: u16) -> Result<u32, ()> {
    let ether_type = u16::from_be(ctx.load::<u16>(12).map_err(|_| ())?);
    match ether_type {
        ETH_P_IP => encap_v4(ctx, gue_port),
        ETH_P_IPV6 if gue_port == 0 => encap_v6(ctx),
        _ => Err(()),
    }
}

/// The one's-complement checksum of a 20-byte IPv4 header (its checksum field zero).
#[inline(always)]
fn ipv4_checksum(h: &[u8; IPV4_LEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IPV4_LEN {
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[inline(always)]
fn encap_v4(ctx: &TcContext, gue_port: u16) -> Result<u32, ()> {
    let inner: [u8; IPV4_LEN] = ctx.load(ETH_LEN).map_err(|_| ())?;
    if inner[0] >> 4 != 4 {
        return Err(());
    }
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    let inner_len = (ctx.len() as usize).checked_sub(ETH_LEN).ok_or(())?;
    let gue = gue_port != 0;
    let extra = if gue { UDP_LEN + GUE_LEN } else { 0 };
    let outer_len = inner_len + IPV4_LEN + extra;
    if outer_len > 0xffff {
        return Err(());
    }
    // The GUE source port comes from the probe's own source port (TCP or UDP).
    let sport = if gue {
        u16::from_be(ctx.load::<u16>(ETH_LEN + ihl).map_err(|_| ())?)
    } else {
        0
    };
    let mut flags = u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4);
    if gue {
        flags |= u64::from(BPF_F_ADJ_ROOM_ENCAP_L4_UDP);
    }
    ctx.adjust_room((IPV4_LEN + extra) as i32, BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| ())?;
    let total = (outer_len as u16).to_be_bytes();
    let mut outer = [
        0x45,
        inner[1],
        total[0],
        total[1],
        0,
        0,
        inner[6] & IP_DF_HI,
        0,
        TUNNEL_TTL,
        if gue { IPPROTO_UDP } else { IPPROTO_IPIP },
        0,
        0,
        inner[12],
        inner[13],
        inner[14],
        inner[15],
        inner[16],
        inner[17],
        inner[18],
        inner[19],
    ];
    let check = ipv4_checksum(&outer).to_be_bytes();
    outer[10] = check[0];
    outer[11] = check[1];
    ctx.store(ETH_LEN, &outer, 0).map_err(|_| ())?;
    if !gue {
        return Ok(HC_IPIP);
    }
    let sp = hc_gue_source_port(sport).to_be_bytes();
    let dp = gue_port.to_be_bytes();
    let ulen = ((inner_len + UDP_LEN + GUE_LEN) as u16).to_be_bytes();
    // UDP (checksum 0: allowed over IPv4), then GUE version 0 carrying IPv4.
    let udp_gue: [u8; UDP_LEN + GUE_LEN] = [
        sp[0],
        sp[1],
        dp[0],
        dp[1],
        ulen[0],
        ulen[1],
        0,
        0,
        0,
        IPPROTO_IPIP,
        0,
        0,
    ];
    ctx.store(ETH_LEN + IPV4_LEN, &udp_gue, 0).map_err(|_| ())?;
    Ok(HC_GUE)
}

#[inline(always)]
fn encap_v6(ctx: &TcContext) -> Result<u32, ()> {
    let inner: [u8; IPV6_LEN] = ctx.load(ETH_LEN).map_err(|_| ())?;
    if inner[0] >> 4 != 6 {
        return Err(());
    }
    let inner_len = (ctx.len() as usize).checked_sub(ETH_LEN).ok_or(())?;
    if inner_len > 0xffff {
        return Err(());
    }
    ctx.adjust_room(
        IPV6_LEN as i32,
        BPF_ADJ_ROOM_MAC,
        u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV6),
    )
    .map_err(|_| ())?;
    let mut outer = inner;
    // Version 6, the inner traffic class, flow label 0.
    outer[1] &= 0xf0;
    outer[2] = 0;
    outer[3] = 0;
    let plen = (inner_len as u16).to_be_bytes();
    outer[4] = plen[0];
    outer[5] = plen[1];
    outer[6] = IPPROTO_IPV6;
    outer[7] = TUNNEL_TTL;
    ctx.store(ETH_LEN, &outer, 0).map_err(|_| ())?;
    Ok(HC_IPIP)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
