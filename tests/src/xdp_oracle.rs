//! What the XDP program must do with any frame, shared by the seeded test
//! (`tests/dataplane_fuzz.rs`) and the libFuzzer target (`tests/fuzz`, `xdp`): a data
//! plane that owns one IPv4 and one IPv6 VIP with three DSR services, the valid frames
//! the corpora start from, and the check of one BPF_PROG_TEST_RUN.
//!
//! The contract checked on every frame:
//! - never `XDP_ABORTED`, and no verdict but `XDP_PASS` or `XDP_TX`;
//! - nothing written outside the frame: the output buffer past the returned frame keeps
//!   its guard pattern, and the returned frame has the length its verdict allows;
//! - `XDP_PASS` hands the frame back byte for byte;
//! - `XDP_TX` sends one of three shapes: an ARP reply for the VIP, a Neighbor
//!   Advertisement for the VIP6 (valid checksum), or the same frame with only the MACs
//!   rewritten to backend/us (DSR);
//! - 802.1Q: the VLAN VIPs ([`VLAN_VIP`], [`VLAN_VIP6`], on [`VLAN`]) are answered and
//!   forwarded only for frames with that tag, the other VIPs only for untagged frames;
//!   what is sent keeps the tag (bytes 12..18) as it came, and has the same shapes
//!   after it;
//! - a frame that is not ours (it nowhere carries a VIP's address) passes unchanged.
//!
//! [`nat`] is the second fixture: NAT services, whose translations must keep valid
//! checksums and change nothing but addresses, ports and MACs. [`tunnel`] is the third:
//! tunnel services, whose encapsulations and ICMP errors must be well formed.

pub mod nat;
pub mod tunnel;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_agent::dataplane::TestRun;
use fo_common::{
    PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_ABORTED, XDP_PASS, XDP_TX},
};

use crate::fixture::{Fixture, OUR_MAC, backend, service};
use crate::frames::{self, Mac, Tcp4};

pub const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
pub const BACKEND_MAC: Mac = [0x02, 0xbe, 0, 0, 0, 0x01];
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The 802.1Q VLAN of [`VLAN_VIP`] and [`VLAN_VIP6`].
pub const VLAN: u16 = 100;
pub const VLAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 110);
pub const VLAN_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x110);
/// The longest frame the harnesses feed (Ethernet MTU 1500 plus the header).
pub const MAX_FRAME: usize = 1514;
/// The shortest frame BPF_PROG_TEST_RUN accepts for XDP (an Ethernet header).
pub const MIN_FRAME: usize = 14;

/// A data plane owning [`VIP`] and [`VIP6`], with TCP 1514 and UDP 514 on the VIP and
/// TCP 1514 on the VIP6, and [`VLAN_VIP`] and [`VLAN_VIP6`] on [`VLAN`] with TCP 1514,
/// each to one backend of MAC [`BACKEND_MAC`].
pub fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    fx.own_on_vlan(IpAddr::V4(VLAN_VIP), VLAN);
    fx.own_on_vlan(IpAddr::V6(VLAN_VIP6), VLAN);
    let b4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 21));
    let b6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21));
    // Each service has one backend, of weight 1, on the service's own port.
    let one =
        |vip, port, proto, to| service(vip, port, proto, vec![backend(to, port, 1, BACKEND_MAC)]);
    fx.services(&[
        one(IpAddr::V4(VIP), 1514, PROTO_TCP, b4),
        one(IpAddr::V4(VIP), 514, PROTO_UDP, b4),
        one(IpAddr::V6(VIP6), 1514, PROTO_TCP, b6),
        one(IpAddr::V4(VLAN_VIP), 1514, PROTO_TCP, b4),
        one(IpAddr::V6(VLAN_VIP6), 1514, PROTO_TCP, b6),
    ]);
    fx
}

/// `frame` with an 802.1Q tag of VLAN `vlan` after its MACs.
pub fn tagged(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&vlan.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// Valid frames for [`fixture`], by name; each one is answered or forwarded (`XDP_TX`).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    let to_vip = Tcp4::new((OUR_MAC, CLIENT_MAC), (client, 40000), (VIP, 1514));
    vec![
        (
            "arp_request",
            frames::arp(1, CLIENT_MAC, client, [0; 6], VIP),
        ),
        (
            "ns_with_slla",
            frames::neighbor_solicit(CLIENT_MAC, client6, VIP6, true),
        ),
        (
            "ns_without_slla",
            frames::neighbor_solicit(CLIENT_MAC, client6, VIP6, false),
        ),
        ("tcp4_syn", to_vip.clone().flags(frames::TCP_SYN).frame()),
        (
            "tcp4_data",
            to_vip
                .flags(frames::TCP_PSH_ACK)
                .payload(b"event 42\n")
                .frame(),
        ),
        (
            "udp4_syslog",
            frames::udp4(OUR_MAC, CLIENT_MAC, client, VIP, 5140, 514, b"<13>line"),
        ),
        (
            "tcp6_syn",
            frames::tcp6(
                OUR_MAC,
                CLIENT_MAC,
                client6,
                VIP6,
                40000,
                1514,
                frames::TCP_SYN,
                b"",
            ),
        ),
        (
            "vlan_arp_request",
            tagged(&frames::arp(1, CLIENT_MAC, client, [0; 6], VLAN_VIP), VLAN),
        ),
        (
            "vlan_ns",
            tagged(
                &frames::neighbor_solicit(CLIENT_MAC, client6, VLAN_VIP6, true),
                VLAN,
            ),
        ),
        (
            "vlan_tcp4_syn",
            tagged(
                &Tcp4::new((OUR_MAC, CLIENT_MAC), (client, 40000), (VLAN_VIP, 1514))
                    .flags(frames::TCP_SYN)
                    .frame(),
                VLAN,
            ),
        ),
        (
            "vlan_tcp6_syn",
            tagged(
                &frames::tcp6(
                    OUR_MAC,
                    CLIENT_MAC,
                    client6,
                    VLAN_VIP6,
                    40000,
                    1514,
                    frames::TCP_SYN,
                    b"",
                ),
                VLAN,
            ),
        ),
    ]
}

/// The verdict of a run that kept the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Sent,
}

/// Check one run of `input` against the contract (module docs).
pub fn check(input: &[u8], run: &TestRun) -> Result<Verdict, String> {
    if run.guard_overwritten != 0 {
        return Err(format!(
            "{} bytes written past the returned frame",
            run.guard_overwritten
        ));
    }
    match run.action {
        XDP_ABORTED => Err("XDP_ABORTED".into()),
        XDP_PASS if run.frame != input => Err("a passed frame was modified".into()),
        XDP_PASS => Ok(Verdict::Passed),
        XDP_TX if !carries_a_vip(input) => Err("a frame that is not ours was transmitted".into()),
        XDP_TX => check_tx(input, &run.frame).map(|()| Verdict::Sent),
        other => Err(format!("unexpected verdict {other}")),
    }
}

/// Does the frame carry a VIP's address anywhere past the Ethernet header? A frame that
/// does not cannot be an ARP request, a solicitation or a packet for a VIP.
pub fn carries_a_vip(frame: &[u8]) -> bool {
    let body = frame.get(MIN_FRAME..).unwrap_or_default();
    body.windows(4)
        .any(|w| w == VIP.octets() || w == VLAN_VIP.octets())
        || body
            .windows(16)
            .any(|w| w == VIP6.octets() || w == VLAN_VIP6.octets())
}

/// What a transmitted frame may be.
fn check_tx(input: &[u8], out: &[u8]) -> Result<(), String> {
    let (l2, vip, vip6) = served_tag(input, out)?;
    let ether_type = u16::from_be_bytes([input[l2 - 2], input[l2 - 1]]);
    if ether_type == 0x0806 || (ether_type == 0x86dd && input.get(l2 + 6) == Some(&58)) {
        return check_tx_answer(input, out);
    }
    // DSR: only the MACs change, and the destination is a VIP served with this tag.
    if out.len() != input.len() || out[12..] != input[12..] {
        return Err("a forwarded frame changed beyond its MACs".into());
    }
    if out[0..6] != BACKEND_MAC || out[6..12] != OUR_MAC {
        return Err("a forwarded frame has the wrong MACs".into());
    }
    let dst_ok = match ether_type {
        0x0800 => input.get(l2 + 16..l2 + 20) == Some(&vip.octets()[..]),
        0x86dd => input.get(l2 + 24..l2 + 40) == Some(&vip6.octets()[..]),
        _ => false,
    };
    if !dst_ok {
        return Err("a frame forwarded for a VIP not served on its VLAN (or untagged)".into());
    }
    Ok(())
}

/// The Ethernet header's length of a transmitted frame and the VIPs it may be for: 18
/// with one 802.1Q tag, which must be the VLAN VIPs' and is sent on as it came; the
/// untagged VIPs are served untagged only.
fn served_tag(input: &[u8], out: &[u8]) -> Result<(usize, Ipv4Addr, Ipv6Addr), String> {
    let tagged = input[12..14] == [0x81, 0x00];
    let l2 = if tagged { 18 } else { 14 };
    if input.len() < l2 {
        return Err("a truncated tag was transmitted".into());
    }
    if tagged && u16::from_be_bytes([input[14], input[15]]) & 0x0fff != VLAN {
        return Err("a frame tagged with another VLAN was transmitted".into());
    }
    if out.len() < l2 || out[12..l2] != input[12..l2] {
        return Err("the tag (or EtherType) changed".into());
    }
    Ok(if tagged {
        (l2, VLAN_VIP, VLAN_VIP6)
    } else {
        (l2, VIP, VIP6)
    })
}

/// A transmitted answer: an ARP reply or a Neighbor Advertisement for the VIP (with the
/// frame's tag, if any).
pub(crate) fn check_tx_answer(input: &[u8], out: &[u8]) -> Result<(), String> {
    let (l2, vip, vip6) = served_tag(input, out)?;
    let ether_type = u16::from_be_bytes([input[l2 - 2], input[l2 - 1]]);
    if ether_type == 0x0806 {
        // An ARP reply for the VIP from our MAC to the asker, same length.
        let (i, o) = (&input[l2..], &out[l2..]);
        let ok = out.len() == input.len()
            && i.len() >= 28
            && out[6..12] == OUR_MAC
            && o[6..8] == [0, 2]
            && o[8..14] == OUR_MAC
            && o[14..18] == vip.octets()
            && o[18..24] == i[8..14]
            && o[24..28] == i[14..18];
        return if ok {
            Ok(())
        } else {
            Err("ARP reply malformed".into())
        };
    }
    if ether_type == 0x86dd && input.get(l2 + 6) == Some(&58) {
        let o = &out[l2..];
        let ok = out.len() == l2 + 72
            && out[6..12] == OUR_MAC
            && o[40] == 136
            && o[48..64] == vip6.octets()
            && frames::icmpv6_checksum_ok(out);
        return if ok {
            Ok(())
        } else {
            Err("Neighbor Advertisement malformed".into())
        };
    }
    Err("a transmitted frame is no ARP reply or Neighbor Advertisement".into())
}
