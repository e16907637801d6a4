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
/// The longest frame the harnesses feed (Ethernet MTU 1500 plus the header).
pub const MAX_FRAME: usize = 1514;
/// The shortest frame BPF_PROG_TEST_RUN accepts for XDP (an Ethernet header).
pub const MIN_FRAME: usize = 14;

/// A data plane owning [`VIP`] and [`VIP6`], with TCP 1514 and UDP 514 on the VIP and
/// TCP 1514 on the VIP6, each to one backend of MAC [`BACKEND_MAC`].
pub fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    let b4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 21));
    let b6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21));
    // Each service has one backend, of weight 1, on the service's own port.
    let one =
        |vip, port, proto, to| service(vip, port, proto, vec![backend(to, port, 1, BACKEND_MAC)]);
    fx.services(&[
        one(IpAddr::V4(VIP), 1514, PROTO_TCP, b4),
        one(IpAddr::V4(VIP), 514, PROTO_UDP, b4),
        one(IpAddr::V6(VIP6), 1514, PROTO_TCP, b6),
    ]);
    fx
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
    let v4 = VIP.octets();
    let v6 = VIP6.octets();
    body.windows(4).any(|w| w == v4) || body.windows(16).any(|w| w == v6)
}

/// What a transmitted frame may be.
fn check_tx(input: &[u8], out: &[u8]) -> Result<(), String> {
    let ether_type = u16::from_be_bytes([input[12], input[13]]);
    if ether_type == 0x0806 || (ether_type == 0x86dd && input.get(20) == Some(&58)) {
        return check_tx_answer(input, out);
    }
    // DSR: only the MACs change.
    if out.len() != input.len() || out[12..] != input[12..] {
        return Err("a forwarded frame changed beyond its MACs".into());
    }
    if out[0..6] != BACKEND_MAC || out[6..12] != OUR_MAC {
        return Err("a forwarded frame has the wrong MACs".into());
    }
    Ok(())
}

/// A transmitted answer: an ARP reply or a Neighbor Advertisement for the VIP.
pub(crate) fn check_tx_answer(input: &[u8], out: &[u8]) -> Result<(), String> {
    let ether_type = u16::from_be_bytes([input[12], input[13]]);
    if ether_type == 0x0806 {
        // An ARP reply for the VIP from our MAC to the asker, same length.
        let ok = out.len() == input.len()
            && input.len() >= 42
            && out[6..12] == OUR_MAC
            && out[20..22] == [0, 2]
            && out[22..28] == OUR_MAC
            && out[28..32] == VIP.octets()
            && out[32..38] == input[22..28]
            && out[38..42] == input[28..32];
        return if ok {
            Ok(())
        } else {
            Err("ARP reply malformed".into())
        };
    }
    if ether_type == 0x86dd && input.get(20) == Some(&58) {
        let ok = out.len() == 86
            && out[6..12] == OUR_MAC
            && out[54] == 136
            && out[62..78] == VIP6.octets()
            && frames::icmpv6_checksum_ok(out);
        return if ok {
            Ok(())
        } else {
            Err("Neighbor Advertisement malformed".into())
        };
    }
    Err("a transmitted frame is no ARP reply or Neighbor Advertisement".into())
}
