//! fo's decapsulation program for the backends of tunnel services (`fo-decap`), an
//! XDP object of its own: a backend that loads it gets none of the load balancer's
//! maps, only the two below.
//!
//! It strips the outer header of IPv4-in-IPv4 / IPv6-in-IPv6 (and the 4-in-6 / 6-in-4
//! mixes) and of IP in UDP + GUE (version 0, no optional fields, to the configured
//! port), when the outer destination is one of the configured local addresses
//! (`DECAP_ADDRS`), and passes the inner packet to the kernel (`XDP_PASS`), as if it had
//! arrived bare. Everything else passes untouched: frames of other protocols, tunnel
//! packets to other addresses or ports, and whatever does not parse (counted).
//!
//! The outer checksums are not verified (the kernel's own ipip does not verify what
//! has none; the inner packet's checksums still are, by the kernel, after this).
#![no_std]
#![no_main]

#[path = "../parse.rs"]
#[allow(dead_code)]
mod parse;

use aya_ebpf::{
    Global,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray},
    programs::XdpContext,
};
use fo_common::{
    Addr, DECAP_GUE, DECAP_IPIP, DECAP_PASS_OTHER, DECAP_STATS_COUNT, FAMILY_V4, FAMILY_V6,
    GUE_LEN, UDP_LEN, VipKey, xdp_action::XDP_PASS,
};
use parse::{
    ETH_LEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr,
    UdpHdr, ptr_at, ptr_at_mut,
};

/// IPv4-in-IP (protocol 4) and IPv6-in-IP (41).
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
/// IPv4 more-fragments flag and fragment offset.
const IP_MF_OFFSET: u16 = 0x3fff;

/// GUE's UDP port, host order; 0: no GUE. Set by the loader.
#[unsafe(no_mangle)]
static DECAP_GUE_PORT: Global<u16> = Global::new(0);

/// Local outer addresses to decapsulate for (key: address and family, value non-zero).
/// Written by `fo-agent decap`.
#[map]
static DECAP_ADDRS: HashMap<VipKey, u32> = HashMap::pinned(64, 0);

/// Per-CPU counts: `fo_common::DECAP_*`.
#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DECAP_STATS_COUNT, 0);

/// A map key built on the stack, 8-byte aligned (as the load balancer's).
#[repr(C, align(8))]
struct Aligned<T>(T);

/// The GUE header (version 0): version, C bit and header length in the first byte,
/// then the inner protocol, then flags.
#[repr(C)]
struct GueHdr {
    ver_c_hlen: u8,
    proto: u8,
    flags: [u8; 2],
}

#[xdp]
pub fn fo_decap(ctx: XdpContext) -> u32 {
    match try_decap(&ctx) {
        Ok(Some(slot)) => count(slot),
        Ok(None) => {}
        Err(()) => count(DECAP_PASS_OTHER),
    }
    XDP_PASS
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(c) = DECAP_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

/// `Ok(Some(counter))` when the frame was decapsulated, `Ok(None)` when it is no
/// tunnel packet (not counted), `Err` for a tunnel packet left alone.
#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<Option<u32>, ()> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(())?;
    // SAFETY: bounds-checked by `ptr_at`.
    let ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    let (proto, outer_len, dst, family) = match ether_type {
        ETH_P_IP => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, ETH_LEN).ok_or(())?;
            // SAFETY: bounds-checked.
            unsafe {
                let proto = (*ip).proto;
                if !matches!(proto, IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_UDP) {
                    return Ok(None);
                }
                if (*ip).version_ihl != 0x45 || u16::from_be_bytes((*ip).frag) & IP_MF_OFFSET != 0 {
                    return Err(());
                }
                (proto, IPV4_LEN, Addr::v4((*ip).dst), FAMILY_V4)
            }
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(())?;
            // SAFETY: bounds-checked.
            unsafe {
                let proto = (*ip).next_header;
                if !matches!(proto, IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_UDP) {
                    return Ok(None);
                }
                if (*ip).version_tc_flow[0] >> 4 != 6 {
                    return Err(());
                }
                (proto, IPV6_LEN, Addr::v6((*ip).dst), FAMILY_V6)
            }
        }
        _ => return Ok(None),
    };
    let (inner, strip, slot) = if proto == IPPROTO_UDP {
        let port = DECAP_GUE_PORT.load();
        let udp: *const UdpHdr = ptr_at(ctx, ETH_LEN + outer_len).ok_or(())?;
        // SAFETY: bounds-checked.
        if port == 0 || u16::from_be_bytes(unsafe { (*udp).dport }) != port {
            return Ok(None);
        }
        let gue: *const GueHdr = ptr_at(ctx, ETH_LEN + outer_len + UDP_LEN).ok_or(())?;
        // SAFETY: bounds-checked.
        let (first, inner) = unsafe { ((*gue).ver_c_hlen, (*gue).proto) };
        // Version 0, data message (C clear), no optional fields.
        if first != 0 {
            return Err(());
        }
        (inner, outer_len + UDP_LEN + GUE_LEN, DECAP_GUE)
    } else {
        (proto, outer_len, DECAP_IPIP)
    };
    let inner_type = match inner {
        IPPROTO_IPIP => ETH_P_IP,
        IPPROTO_IPV6 => ETH_P_IPV6,
        _ => return Err(()),
    };
    let key = Aligned(VipKey {
        addr: dst,
        family,
        _pad: [0; 3],
    });
    // SAFETY: plain data written whole by the agent.
    if unsafe { DECAP_ADDRS.get(&key.0) }.is_none_or(|v| *v == 0) {
        return Err(());
    }
    // The inner packet's first byte must be there, of the version announced.
    let version: *const u8 = ptr_at(ctx, ETH_LEN + strip).ok_or(())?;
    // SAFETY: bounds-checked.
    let version = unsafe { *version } >> 4;
    if (inner_type == ETH_P_IP && version != 4) || (inner_type == ETH_P_IPV6 && version != 6) {
        return Err(());
    }
    // The Ethernet header moves forward over the outer headers, then the frame starts
    // there.
    let new_eth: *mut EthHdr = ptr_at_mut(ctx, strip).ok_or(())?;
    // SAFETY: both headers bounds-checked; `strip` >= 20, so they do not overlap.
    unsafe {
        (*new_eth).dst = (*eth).dst;
        (*new_eth).src = (*eth).src;
        (*new_eth).ether_type = inner_type.to_be_bytes();
    }
    // SAFETY: `ctx.ctx` is the live xdp_md of this invocation.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
        return Err(());
    }
    Ok(Some(slot))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
