//! The ICMP error for a client packet that does not fit the tunnel: IPv4 "destination
//! unreachable, fragmentation needed" (type 3 code 4, RFC 1191) or ICMPv6 "packet too
//! big" (type 2, RFC 4443 §3.2), from the VIP to the client, built in place and sent
//! back the way the packet came (`XDP_TX`, MACs swapped).
//!
//! The MTU it reports is the path's less the tunnel's headers (IPv6: at least 1280).
//! It quotes the packet's IP header and the first 8 bytes after it (the ports and, for
//! TCP, the sequence number): what the client's stack needs to find the connection
//! (RFC 792; for ICMPv6, RFC 4443 asks for as much as fits in 1280 bytes, which would
//! cost a copy and checksum of the whole quote per error; header + 8 bytes is what
//! Linux and the BSDs read).
//!
//! The frame is put together in a per-CPU scratch, not on the stack: the BPF stack
//! is shared by the whole call chain.

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use fo_common::{Counter, FAMILY_V4, client_mtu, xdp_action::XDP_TX};

use crate::maps::{self, TUNNEL_SCRATCH, TunnelScratch};
use crate::parse::{ETH_LEN, EthHdr, IPV4_LEN, IPV6_LEN, frame_len, ptr_at, ptr_at_mut};

/// ICMP / ICMPv6 header: type, code, checksum, 4 bytes (unused + MTU, or MTU).
pub const ICMP_LEN: usize = 8;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
/// Bytes of the client's packet quoted: its IP header and 8 bytes more.
pub const QUOTE4: usize = IPV4_LEN + 8;
pub const QUOTE6: usize = IPV6_LEN + 8;
/// Hop limit / TTL of the errors sent.
const TTL: u8 = 64;

/// Answer the client's packet in the frame, which does not fit the tunnel of backend
/// `slot`: the service's MTU less the tunnel's overhead.
#[inline(never)]
pub fn reply(ctx: &XdpContext, slot: u32) -> u32 {
    super::verdict(try_reply(ctx, slot))
}

/// The client's packet to backend `slot` (a tunnel service's) does not fit.
#[inline(always)]
fn try_reply(ctx: &XdpContext, slot: u32) -> Result<u32, Counter> {
    let backend = crate::maps::BACKENDS
        .get(slot)
        .ok_or(Counter::PassNoBackend)?;
    let family = backend.family;
    let t = crate::maps::TUNNEL_SERVICES
        .get(backend.service_id)
        .ok_or(Counter::PassNoBackend)?;
    let mtu = client_mtu(t.mtu, family, t.encap);
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked.
    let (client_mac, our_mac) = unsafe { ((*eth).src, (*eth).dst) };
    if family == FAMILY_V4 {
        build::<true>(ctx, mtu, ETH_LEN, &client_mac, &our_mac)?;
    } else {
        build::<false>(ctx, mtu, ETH_LEN, &client_mac, &our_mac)?;
    }
    maps::count(Counter::TunnelTooBig);
    Ok(XDP_TX)
}

/// Build, over the frame, the error (IPv4 when `V4`) to the source of the packet
/// quoted at `quote_at` (its header and 8 bytes), from its destination, to `dst_mac`,
/// and cut the frame after it. The quote and the new headers are put together in a
/// per-CPU scratch (`TUNNEL_SCRATCH`: the BPF stack is shared by the whole call chain)
/// and stored into the frame with `bpf_xdp_store_bytes`.
#[inline(always)]
pub fn build<const V4: bool>(
    ctx: &XdpContext,
    mtu: u16,
    quote_at: usize,
    dst_mac: &[u8; 6],
    src_mac: &[u8; 6],
) -> Result<(), Counter> {
    let (ip_len, quote_len) = if V4 {
        (IPV4_LEN, QUOTE4)
    } else {
        (IPV6_LEN, QUOTE6)
    };
    let out = ETH_LEN + ip_len + ICMP_LEN + quote_len;
    if frame_len(ctx) < out {
        return Err(Counter::PassTruncated);
    }
    let s: *mut TunnelScratch = TUNNEL_SCRATCH
        .get_ptr_mut(0)
        .ok_or(Counter::PassTruncated)?;
    // SAFETY: per-CPU scratch, ours for this run; the helpers check the frame's bounds
    // and get the buffers' real sizes.
    unsafe {
        let q = &mut (*s).quote;
        let h = &mut (*s).hdr;
        if bpf_xdp_load_bytes(
            ctx.ctx,
            quote_at as u32,
            q.as_mut_ptr() as *mut _,
            quote_len as u32,
        ) != 0
        {
            return Err(Counter::PassTruncated);
        }
        let mut quote_sum = 0u32;
        let mut i = 0;
        while i < QUOTE6 {
            if i < quote_len {
                quote_sum += u32::from(q[i]) << 8 | u32::from(q[i + 1]);
            }
            i += 2;
        }
        if V4 {
            let total = (IPV4_LEN + ICMP_LEN + QUOTE4) as u16;
            // The quoted header's source (the client) and destination (the VIP) swap.
            let mut j = 0;
            while j < 4 {
                h[12 + j] = q[16 + j];
                h[16 + j] = q[12 + j];
                j += 1;
            }
            let addrs = super::csum::words4(&[q[12], q[13], q[14], q[15]])
                + super::csum::words4(&[q[16], q[17], q[18], q[19]]);
            let c = !super::csum::fold(
                0x4500 + u32::from(total) + (u32::from(TTL) << 8 | u32::from(IPPROTO_ICMP)) + addrs,
            );
            let ic = !super::csum::fold(0x0304 + u32::from(mtu) + quote_sum);
            h[0] = 0x45;
            h[1] = 0;
            h[2] = (total >> 8) as u8;
            h[3] = total as u8;
            h[4] = 0;
            h[5] = 0;
            h[6] = 0;
            h[7] = 0;
            h[8] = TTL;
            h[9] = IPPROTO_ICMP;
            h[10] = (c >> 8) as u8;
            h[11] = c as u8;
            h[20] = 3;
            h[21] = 4;
            h[22] = (ic >> 8) as u8;
            h[23] = ic as u8;
            h[24] = 0;
            h[25] = 0;
            h[26] = (mtu >> 8) as u8;
            h[27] = mtu as u8;
        } else {
            let len = (ICMP_LEN + QUOTE6) as u16;
            let mut addrs = 0u32;
            let mut j = 0;
            while j < 16 {
                h[8 + j] = q[24 + j];
                h[24 + j] = q[8 + j];
                j += 1;
            }
            let mut k = 8;
            while k < 40 {
                addrs += u32::from(q[k]) << 8 | u32::from(q[k + 1]);
                k += 2;
            }
            let ic = !super::csum::fold(
                addrs
                    + u32::from(len)
                    + u32::from(IPPROTO_ICMPV6)
                    + 0x0200
                    + u32::from(mtu)
                    + quote_sum,
            );
            h[0] = 0x60;
            h[1] = 0;
            h[2] = 0;
            h[3] = 0;
            h[4] = (len >> 8) as u8;
            h[5] = len as u8;
            h[6] = IPPROTO_ICMPV6;
            h[7] = TTL;
            h[40] = 2;
            h[41] = 0;
            h[42] = (ic >> 8) as u8;
            h[43] = ic as u8;
            h[44] = 0;
            h[45] = 0;
            h[46] = (mtu >> 8) as u8;
            h[47] = mtu as u8;
        }
        let hdr_len = (ip_len + ICMP_LEN) as u32;
        if bpf_xdp_store_bytes(ctx.ctx, ETH_LEN as u32, h.as_mut_ptr() as *mut _, hdr_len) != 0
            || bpf_xdp_store_bytes(
                ctx.ctx,
                (ETH_LEN + ip_len + ICMP_LEN) as u32,
                q.as_mut_ptr() as *mut _,
                quote_len as u32,
            ) != 0
        {
            return Err(Counter::PassTruncated);
        }
    }
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: bounds-checked.
    unsafe {
        (*eth).dst = *dst_mac;
        (*eth).src = *src_mac;
        (*eth).ether_type = if V4 {
            crate::parse::ETH_P_IP
        } else {
            crate::parse::ETH_P_IPV6
        }
        .to_be_bytes();
    }
    let len = frame_len(ctx);
    // SAFETY: `ctx.ctx` is the live xdp_md of this invocation.
    if len > out && unsafe { bpf_xdp_adjust_tail(ctx.ctx, out as i32 - len as i32) } != 0 {
        return Err(Counter::PassAdjustFailed);
    }
    Ok(())
}
