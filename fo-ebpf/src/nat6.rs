//! The IPv6 half of NAT66: the FIB query and the header rewrite, beside `nat.rs`'s
//! IPv4 ones. Everything else (tables, port allocation, tracking, sync events) is
//! `nat.rs`'s, shared by both families.
//!
//! IPv6 has no header checksum; the TCP and UDP checksums cover the IPv6
//! pseudo-header (RFC 8200 §8.1), so both addresses enter the incremental update
//! (RFC 1624) with their eight words each. A UDP checksum of zero is illegal in IPv6:
//! such a datagram is passed before anything is looked up (`nat::udp6_checksummed`),
//! and a computed zero is sent as 0xffff. The hop limit is left alone, as the IPv4 path
//! leaves the TTL: the node translates in place and is not a routing hop of its own.

use aya_ebpf::{
    bindings::bpf_fib_lookup, helpers::bpf_fib_lookup as fib_lookup, programs::XdpContext,
};
use fo_common::{Addr, Counter, Csum};

use crate::maps::NAT_SCRATCH;
use crate::nat::{Hop, hop_of};
use crate::parse::{
    ETH_LEN, IPPROTO_TCP, IPPROTO_UDP, IPV6_LEN, Ipv6Hdr, TcpHdr, UdpHdr, ptr_at, ptr_at_mut,
};

const AF_INET6: u8 = 10;

/// The kernel's next hop from `src` towards `dst` (see `nat::route`).
#[inline(always)]
pub fn route(
    ctx: &XdpContext,
    src: &Addr,
    dst: &Addr,
    proto: u8,
    fallback_mac: Option<[u8; 6]>,
) -> Result<Hop, Counter> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let scratch = NAT_SCRATCH.get_ptr_mut(0).ok_or(Counter::PassNatNoRoute)?;
    // SAFETY: per-CPU scratch, ours for this run; all-zero is a valid query; `ip`
    // bounds-checked; the helper gets the query's real size.
    let (rc, p) = unsafe {
        let p: *mut bpf_fib_lookup = &mut (*scratch).fib;
        core::ptr::write_bytes(p, 0, 1);
        (*p).family = AF_INET6;
        (*p).l4_protocol = proto;
        // The whole packet, for the route's MTU check.
        (*p).__bindgen_anon_1.tot_len =
            u16::from_be_bytes((*ip).payload_len).saturating_add(IPV6_LEN as u16);
        (*p).ifindex = ctx.ingress_ifindex() as u32;
        copy16(
            &src.bytes,
            core::ptr::addr_of_mut!((*p).__bindgen_anon_3) as *mut u8,
        );
        copy16(
            &dst.bytes,
            core::ptr::addr_of_mut!((*p).__bindgen_anon_4) as *mut u8,
        );
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

/// Copy an address's 16 bytes to `to`, byte by byte and in order. Volatile, so that
/// LLVM neither keeps the bytes it loaded for the checksum until the copy (each in a
/// stack slot of its own: the BPF stack is 512 bytes for the whole call chain) nor
/// hoists the loads.
///
/// # Safety
/// `to` is valid for 16 bytes of writes.
#[inline(always)]
unsafe fn copy16(from: &[u8; 16], to: *mut u8) {
    let from = from.as_ptr();
    let mut i = 0;
    while i < 16 {
        // SAFETY: `i < 16`, in both 16-byte areas.
        unsafe { core::ptr::write_volatile(to.add(i), core::ptr::read_volatile(from.add(i))) };
        i += 1;
    }
}

/// `c` with an address changed from `old` to `new`, word by word. The bytes are read
/// volatile, each just before it is added: LLVM would otherwise load all of them
/// first and spill them, one 8-byte stack slot per byte.
#[inline(always)]
fn addr_words(mut c: Csum, old: &[u8; 16], new: &[u8; 16]) -> Csum {
    let (o, n) = (old.as_ptr(), new.as_ptr());
    let mut i = 0;
    while i < 16 {
        // SAFETY: `i + 1 < 16`, within both addresses.
        let (ow, nw) = unsafe {
            (
                u16::from_be_bytes([
                    core::ptr::read_volatile(o.add(i)),
                    core::ptr::read_volatile(o.add(i + 1)),
                ]),
                u16::from_be_bytes([
                    core::ptr::read_volatile(n.add(i)),
                    core::ptr::read_volatile(n.add(i + 1)),
                ]),
            )
        };
        c = c.word(ow, nw);
        i += 2;
    }
    c
}

/// Write new addresses and ports, updating the TCP/UDP checksum over the IPv6
/// pseudo-header.
#[inline(always)]
pub fn rewrite(
    ctx: &XdpContext,
    l4_offset: usize,
    proto: u8,
    (src, sport_be): (&Addr, u16),
    (dst, dport_be): (&Addr, u16),
) -> Result<(), Counter> {
    let ip: *mut Ipv6Hdr = ptr_at_mut(ctx, ETH_LEN).ok_or(Counter::PassTruncated)?;
    let word = |be: u16| u16::from_be_bytes(be.to_ne_bytes());
    // SAFETY: bounds-checked.
    unsafe {
        // The addresses' part of the update, folded once for either transport (the
        // old addresses read in the frame, before they are replaced): a checksum
        // "changed" from `delta` to 0xffff (negative zero) adds exactly that part.
        let delta = addr_words(
            addr_words(Csum::new(0xffff), &(*ip).src, &src.bytes),
            &(*ip).dst,
            &dst.bytes,
        )
        .finish();
        let addrs = |c: Csum| c.word(delta, 0xffff);
        if proto == IPPROTO_TCP {
            let tcp: *mut TcpHdr = ptr_at_mut(ctx, l4_offset).ok_or(Counter::PassTruncated)?;
            let old_sport = u16::from_ne_bytes((*tcp).sport);
            let old_dport = u16::from_ne_bytes((*tcp).dport);
            let check = u16::from_be_bytes([(*tcp).rest[12], (*tcp).rest[13]]);
            let c = addrs(Csum::new(check))
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
            let mut c = addrs(Csum::new(check))
                .word(word(old_sport), word(sport_be))
                .word(word(old_dport), word(dport_be))
                .finish();
            if c == 0 {
                c = 0xffff;
            }
            (*udp).check = c.to_be_bytes();
            (*udp).sport = sport_be.to_ne_bytes();
            (*udp).dport = dport_be.to_ne_bytes();
        }
        copy16(&src.bytes, (*ip).src.as_mut_ptr());
        copy16(&dst.bytes, (*ip).dst.as_mut_ptr());
    }
    Ok(())
}
