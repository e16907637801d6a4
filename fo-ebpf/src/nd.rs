//! Neighbor Advertisements for owned IPv6 VIPs (RFC 4861 §7.2.4), built in place.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use fo_common::{Addr, Counter, FAMILY_V6, VipKey, xdp_action::XDP_TX};

use crate::maps;
use crate::parse::{
    ETH_LEN, EthHdr, IPPROTO_ICMPV6, IPV6_LEN, Ipv6Hdr, NdHdr, NdLlaOpt, frame_len, ptr_at,
    ptr_at_mut,
};

const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_OPT_TARGET_LLADDR: u8 = 2;
/// Solicited and Override set, Router clear.
const NA_FLAGS: [u8; 4] = [0x60, 0, 0, 0];
const NA_ICMP_LEN: usize = core::mem::size_of::<NdHdr>() + core::mem::size_of::<NdLlaOpt>();

/// The advertisement after the Ethernet header (and tag): what the solicitation is
/// turned into.
#[repr(C)]
struct NaBody {
    ip6: Ipv6Hdr,
    nd: NdHdr,
    opt: NdLlaOpt,
}
const NA_BODY_LEN: usize = core::mem::size_of::<NaBody>();
const _: () = assert!(ETH_LEN + NA_BODY_LEN == 86);

/// Answer a Neighbor Solicitation for an owned VIP; anything else is passed.
/// `ip6` has been bounds-checked by the caller and carries ICMPv6. `L2` is where the
/// IPv6 header starts (after an 802.1Q tag of VLAN `vlan`, or none for 0); the
/// advertisement keeps the Ethernet header's tag and EtherTypes as they came. A BPF
/// function of its own: its frame is not part of the IPv6 path's, which goes on into NAT.
#[inline(never)]
pub fn advertise<const L2: usize>(
    ctx: &XdpContext,
    ip6: *const Ipv6Hdr,
    vlan: u16,
) -> Result<u32, Counter> {
    let ns: *const NdHdr = ptr_at(ctx, L2 + IPV6_LEN).ok_or(Counter::PassTruncated)?;
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Counter::PassTruncated)?;
    // SAFETY: all three headers were bounds-checked.
    let (asker_mac, asker_ip, target) = unsafe {
        if (*ns).icmp_type != ND_NEIGHBOR_SOLICIT || (*ns).code != 0 || (*ip6).hop_limit != 255 {
            return Err(Counter::PassNdOther);
        }
        ((*eth).src, (*ip6).src, (*ns).target)
    };
    if asker_ip == [0u8; 16] {
        // Duplicate Address Detection: the asker has no address to answer to yet.
        return Err(Counter::PassNdOther);
    }
    let key = VipKey {
        addr: Addr::v6(target),
        family: FAMILY_V6,
        _pad: [0; 3],
    };
    maps::may_answer_for(&key, vlan, Counter::PassNdOther)?;
    let mac = maps::iface_mac(ctx.ingress_ifindex() as u32)?;

    // Size the frame to exactly one advertisement. Nothing has been written yet, so
    // if the kernel refuses, the solicitation still goes up untouched.
    let len = frame_len(ctx);
    let na_len = L2 + NA_BODY_LEN;
    if len != na_len {
        let delta = na_len as i32 - len as i32;
        // SAFETY: `ctx.ctx` is the live xdp_md of this invocation.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return Err(Counter::PassAdjustFailed);
        }
    }
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassAdjustFailed)?;
    let na: *mut NaBody = ptr_at_mut(ctx, L2).ok_or(Counter::PassAdjustFailed)?;
    // SAFETY: `ptr_at_mut` proved both headers.
    unsafe {
        (*eth).dst = asker_mac;
        (*eth).src = mac;
        (*na).ip6.version_tc_flow = [0x60, 0, 0, 0];
        (*na).ip6.payload_len = (NA_ICMP_LEN as u16).to_be_bytes();
        (*na).ip6.next_header = IPPROTO_ICMPV6;
        (*na).ip6.hop_limit = 255;
        (*na).ip6.src = target;
        (*na).ip6.dst = asker_ip;
        (*na).nd.icmp_type = ND_NEIGHBOR_ADVERT;
        (*na).nd.code = 0;
        (*na).nd.flags = NA_FLAGS;
        (*na).nd.target = target;
        (*na).opt.opt_type = ND_OPT_TARGET_LLADDR;
        (*na).opt.len = 1;
        (*na).opt.mac = mac;
        (*na).nd.check = checksum(&target, &asker_ip, &mac).to_be_bytes();
    }
    maps::count(Counter::NaReply);
    Ok(XDP_TX)
}

#[inline(always)]
fn sum16(bytes: &[u8; 16]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// ICMPv6 checksum of the advertisement (RFC 4443 §2.3: over the IPv6 pseudo-header
/// and the message), computed from the values written rather than read back.
#[inline(always)]
fn checksum(src: &[u8; 16], dst: &[u8; 16], mac: &[u8; 6]) -> u16 {
    let mut sum = sum16(src) + sum16(dst);
    sum += NA_ICMP_LEN as u32 + IPPROTO_ICMPV6 as u32;
    sum += (ND_NEIGHBOR_ADVERT as u32) << 8;
    sum += u16::from_be_bytes([NA_FLAGS[0], NA_FLAGS[1]]) as u32;
    sum += sum16(src); // target == source: we answer for the VIP from the VIP
    sum += ((ND_OPT_TARGET_LLADDR as u32) << 8) | 1;
    sum += u16::from_be_bytes([mac[0], mac[1]]) as u32;
    sum += u16::from_be_bytes([mac[2], mac[3]]) as u32;
    sum += u16::from_be_bytes([mac[4], mac[5]]) as u32;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
