//! ARP replies for owned VIPs (RFC 826), built in place and sent back out the
//! ingress interface.

use aya_ebpf::programs::XdpContext;
use fo_common::{Addr, Counter, FAMILY_V4, VipKey, xdp_action::XDP_TX};

use crate::maps;
use crate::parse::{ArpHdr, ETH_P_IP, EthHdr, ptr_at_mut};

const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const ARPOP_REPLY: u16 = 2;

/// A BPF function of its own: its stack frame stays out of the IPv4 chain's (the BPF
/// stack allows 512 bytes for a whole call chain, and NAT goes deepest).
///
/// `L2` is where the ARP header starts (after an 802.1Q tag of VLAN `vlan`, or none for
/// 0); the reply keeps the tag as it came.
#[inline(never)]
pub fn reply<const L2: usize>(ctx: &XdpContext, vlan: u16) -> Result<u32, Counter> {
    let eth: *mut EthHdr = ptr_at_mut(ctx, 0).ok_or(Counter::PassTruncated)?;
    let arp: *mut ArpHdr = ptr_at_mut(ctx, L2).ok_or(Counter::PassTruncated)?;
    // SAFETY: both headers were bounds-checked by `ptr_at_mut`.
    unsafe {
        if u16::from_be_bytes((*arp).htype) != ARPHRD_ETHER
            || u16::from_be_bytes((*arp).ptype) != ETH_P_IP
            || (*arp).hlen != 6
            || (*arp).plen != 4
            || u16::from_be_bytes((*arp).oper) != ARPOP_REQUEST
        {
            return Err(Counter::PassArpOther);
        }
        let target = (*arp).tpa;
        let sender = (*arp).spa;
        if target == sender {
            // Gratuitous ARP (an announcement, maybe by a peer taking over): not a question.
            return Err(Counter::PassArpOther);
        }
        let key = maps::Aligned(VipKey {
            addr: Addr::v4(target),
            family: FAMILY_V4,
            _pad: [0; 3],
        });
        maps::may_answer_for(&key.0, vlan, Counter::PassArpOther)?;
        let mac = maps::iface_mac(ctx.ingress_ifindex() as u32)?;

        let asker = (*arp).sha;
        (*eth).dst = asker;
        (*eth).src = mac;
        (*arp).oper = ARPOP_REPLY.to_be_bytes();
        (*arp).tha = asker;
        (*arp).tpa = sender;
        (*arp).sha = mac;
        (*arp).spa = target;
    }
    maps::count(Counter::ArpReply);
    Ok(XDP_TX)
}
