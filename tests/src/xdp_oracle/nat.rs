//! The NAT fixture of the XDP fuzzer (`tests/fuzz`, target `xdp-nat`, and the seeded
//! test in `tests/dataplane_fuzz.rs`): a data plane owning [`VIP`] with full-NAT
//! services TCP 1514 -> [`BACKEND`]:11514 and UDP 514 -> [`BACKEND`]:5514 through the
//! SNAT address [`SNAT`], run inside a network namespace whose FIB the program asks for
//! next hops (see [`private_namespace`]).
//!
//! The contract checked on every frame, beyond the DSR fixture's (never `XDP_ABORTED`,
//! nothing written outside the frame):
//! - `XDP_PASS` hands the frame back unchanged, or translated with its MACs untouched
//!   (a next hop without a neighbour entry: the kernel forwards it);
//! - `XDP_TX` is an ARP reply for the VIP or the SNAT address (from the test's
//!   ingress interface), or a translation;
//!   `XDP_REDIRECT` is a translation;
//! - a translation is the same frame with only MACs, IPv4 addresses, L4 ports and the
//!   IPv4 and TCP/UDP checksums changed, either a client's packet to a NAT service
//!   turned into SNAT -> backend:port, or a backend's packet to the SNAT address turned
//!   into VIP:port -> a client;
//! - a translation of a frame whose IPv4 and TCP/UDP checksums verified verifies too
//!   (and a UDP datagram without a checksum stays without one);
//! - an ICMP error is translated only as a whole (`fo-ebpf/src/nat_icmp.rs`): MACs,
//!   outer addresses, the quoted addresses and ports and the four checksums (outer
//!   IPv4, ICMP, quoted IPv4, quoted TCP/UDP if quoted) change, nothing else; an error
//!   to the SNAT address quoting SNAT -> backend:bport becomes VIP -> a client quoting
//!   client -> VIP:port, an error to the VIP quoting VIP:port -> a client becomes
//!   SNAT -> backend quoting backend:bport -> SNAT; checksums that verified verify
//!   after (the quoted TCP/UDP one when the whole packet is quoted), and a quoted UDP
//!   datagram without a checksum stays without one.
//!
//! NAT66 the same way: the fixture also owns [`VIP6`] with the same services to
//! [`BACKEND6`] through [`SNAT6`]; an IPv6 translation changes only MACs, addresses,
//! ports and the TCP/UDP checksum (over the IPv6 pseudo-header; a UDP datagram
//! without one, illegal in IPv6, is never translated), and `XDP_TX` may also be a
//! Neighbor Advertisement for [`VIP6`] or [`SNAT6`].
//!
//! The inputs are `[mode, frame...]`; `mode` lets the fuzzer reach the connection table
//! without guessing addresses (see [`Harness::frame`]), and the harness fills in valid
//! checksums unless told not to, so the checksum rule is exercised on nearly every run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_agent::dataplane::{NatSpec, TestRun};
use fo_common::{
    PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_ABORTED, XDP_PASS, XDP_REDIRECT, XDP_TX},
};

use crate::fixture::{Fixture, OUR_MAC, backend, service};
use crate::frames::{self, Mac, Tcp4};

pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 21);
/// Clients live in 198.51.100.0/24, on-link; only [`CLIENT`] has a neighbour entry.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
/// The namespace's interface towards clients and the backends' gateway.
pub const D0_MAC: Mac = [0x02, 0xf0, 0, 0, 0, 0x02];
pub const GW_MAC: Mac = [0x02, 0x99, 0, 0, 0, 0xfe];
/// NAT66: the VIP, SNAT address and backend; clients live in 2001:db8:c::/64, on-link,
/// only [`CLIENT6`] with a neighbour entry; the backends' prefix is behind the gateway
/// 2001:db8::fe ([`GW_MAC`]).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
pub const SNAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50);
pub const BACKEND6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x21);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 7);
/// (protocol, service port, backend port).
pub const SERVICES: [(u8, u16, u16); 2] = [(PROTO_TCP, 1514, 11514), (PROTO_UDP, 514, 5514)];

/// The FIB the fixture expects: `d0` (192.0.2.1/24, [`D0_MAC`]), clients on-link, the
/// backends' subnet through a gateway with a permanent neighbour entry, forwarding on.
/// A shell script to run in an empty namespace (see [`private_namespace`]).
pub fn fib_setup() -> String {
    let mac = |m: Mac| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    format!(
        "ip link set lo up \
         && ip link add d0 type veth peer name d0p && ip link set d0 address {} \
         && ip link set d0 up && ip link set d0p up \
         && ip addr add 192.0.2.1/24 dev d0 \
         && ip route add 198.51.100.0/24 dev d0 \
         && ip route add 10.1.0.0/24 via 192.0.2.254 dev d0 \
         && ip neigh add 192.0.2.254 lladdr {} dev d0 nud permanent \
         && ip neigh add {CLIENT} lladdr {} dev d0 nud permanent \
         && sysctl -qw net.ipv4.ip_forward=1 \
         && ip -6 addr add 2001:db8::1/64 dev d0 nodad \
         && ip -6 route add 2001:db8:c::/64 dev d0 \
         && ip -6 route add fd00:1::/64 via 2001:db8::fe dev d0 \
         && ip -6 neigh add 2001:db8::fe lladdr {} dev d0 nud permanent \
         && ip -6 neigh add {CLIENT6} lladdr {} dev d0 nud permanent \
         && sysctl -qw net.ipv6.conf.all.forwarding=1",
        mac(D0_MAC),
        mac(GW_MAC),
        mac(CLIENT_MAC),
        mac(GW_MAC),
        mac(CLIENT_MAC)
    )
}

/// Move the calling thread into a network namespace of its own, set up for
/// [`fixture`]. Nothing to clean up: the namespace, its veth and routes go when the
/// thread (or the process) ends, also when it crashes.
pub fn private_namespace() {
    crate::require_root();
    // SAFETY: unshare(2) of the network namespace affects only the calling thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    // Children inherit the calling thread's namespace.
    crate::netns::sh(&fib_setup());
}

/// The NAT data plane; call it inside [`private_namespace`].
pub fn fixture() -> Fixture {
    fixture_with_table(1024)
}

/// The NAT data plane with a connection table of `nat_table_size`, in a namespace
/// set up by [`fib_setup`].
pub fn fixture_with_table(nat_table_size: u32) -> Fixture {
    let mut fx = Fixture::with_nat_table(251, nat_table_size);
    let d0 = fo_agent::dataplane::ifindex("d0").expect("d0 (call private_namespace first)");
    fx.dp.set_iface(d0, D0_MAC).expect("IFACES");
    fx.dp
        .set_vip_role(IpAddr::V4(VIP), true, false)
        .expect("role");
    fx.dp
        .set_vip_role(IpAddr::V4(SNAT), false, true)
        .expect("role");
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V4(SNAT));
    fx.dp
        .set_vip_role(IpAddr::V6(VIP6), true, false)
        .expect("role");
    fx.dp
        .set_vip_role(IpAddr::V6(SNAT6), false, true)
        .expect("role");
    fx.own(IpAddr::V6(VIP6));
    fx.own(IpAddr::V6(SNAT6));
    let families = [
        (IpAddr::V4(VIP), IpAddr::V4(BACKEND), IpAddr::V4(SNAT)),
        (IpAddr::V6(VIP6), IpAddr::V6(BACKEND6), IpAddr::V6(SNAT6)),
    ];
    let specs: Vec<_> = families
        .iter()
        .flat_map(|&(vip, be, snat)| {
            SERVICES.iter().map(move |&(proto, port, bport)| {
                let mut s = service(vip, port, proto, vec![backend(be, bport, 1, [0; 6])]);
                s.nat = Some(NatSpec { snat: vec![snat] });
                s
            })
        })
        .collect();
    fx.services(&specs);
    fx
}

/// What a run that kept the contract did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NatVerdict {
    Passed,
    /// Translated and passed to the kernel (no neighbour entry for the next hop).
    PassedTranslated,
    ArpReply,
    /// A client's packet translated towards the backend.
    Forward,
    /// A backend's packet translated back towards the client.
    Reply,
    /// An ICMP error about a connection translated towards its client.
    IcmpToClient,
    /// An ICMP error about a connection translated towards its backend.
    IcmpToBackend,
}

const ETH: usize = 14;

fn be16(f: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([f[i], f[i + 1]])
}

fn ip4(f: &[u8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[i], f[i + 1], f[i + 2], f[i + 3])
}

/// Where a frame's IPv4 header, L4 header and end (by the IPv4 total length) are, if it
/// is a whole IPv4 TCP or UDP packet (IHL respected).
#[derive(Debug, Clone, Copy)]
struct L4 {
    proto: u8,
    l4: usize,
    end: usize,
    v6: bool,
}

/// The IPv6 variant of [`l4_of`]: no extension header.
fn l4_of6(f: &[u8]) -> Option<L4> {
    if f.len() < ETH + 40 || be16(f, 12) != 0x86dd || f[ETH] >> 4 != 6 {
        return None;
    }
    let proto = f[ETH + 6];
    let min = match proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => return None,
    };
    let end = ETH + 40 + usize::from(be16(f, ETH + 4));
    (end <= f.len() && end >= ETH + 40 + min).then_some(L4 {
        proto,
        l4: ETH + 40,
        end,
        v6: true,
    })
}

fn l4_of(f: &[u8]) -> Option<L4> {
    if f.len() >= 14 && be16(f, 12) == 0x86dd {
        return l4_of6(f);
    }
    if f.len() < ETH + 20 || be16(f, 12) != 0x0800 || f[ETH] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(f[ETH] & 0x0f) * 4;
    let end = ETH + usize::from(be16(f, ETH + 2));
    let proto = f[ETH + 9];
    let min = match proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => return None,
    };
    (ihl >= 20 && end <= f.len() && end >= ETH + ihl + min).then_some(L4 {
        proto,
        l4: ETH + ihl,
        end,
        v6: false,
    })
}

/// Offset of the L4 checksum from the L4 header.
fn l4_check_at(proto: u8) -> usize {
    if proto == PROTO_TCP { 16 } else { 6 }
}

fn l4_sum(f: &[u8], p: L4) -> u32 {
    let mut pseudo = if p.v6 {
        f[ETH + 8..ETH + 40].to_vec()
    } else {
        f[ETH + 12..ETH + 20].to_vec()
    };
    pseudo.extend_from_slice(&[0, p.proto]);
    pseudo.extend_from_slice(&((p.end - p.l4) as u16).to_be_bytes());
    frames::sum16(&pseudo) + frames::sum16(&f[p.l4..p.end])
}

/// Do the IPv4 header checksum and the TCP/UDP checksum verify? (A UDP checksum of 0
/// means "none" and verifies.)
pub fn checksums_ok(f: &[u8]) -> bool {
    let Some(p) = l4_of(f) else {
        return false;
    };
    if !p.v6 && frames::fold(frames::sum16(&f[ETH..p.l4])) != 0 {
        return false;
    }
    if p.proto == PROTO_UDP && be16(f, p.l4 + 6) == 0 {
        return !p.v6;
    }
    frames::fold(l4_sum(f, p)) == 0
}

/// Write valid IPv4 and TCP/UDP checksums into `f` if it is a whole IPv4 TCP/UDP packet
/// (a UDP checksum of 0, "none", stays 0); for an IPv4 ICMP message, valid IPv4 and ICMP
/// checksums, and a valid quoted IPv4 header checksum if one is quoted.
pub fn fix_checksums(f: &mut [u8]) {
    if let Some(end) = icmp_end(f) {
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let c = frames::fold(frames::sum16(&f[ETH..ICMP]));
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        if end >= QUOTE_L4 && f[QUOTE] == 0x45 {
            f[QUOTE + 10..QUOTE + 12].copy_from_slice(&[0, 0]);
            let c = frames::fold(frames::sum16(&f[QUOTE..QUOTE_L4]));
            f[QUOTE + 10..QUOTE + 12].copy_from_slice(&c.to_be_bytes());
        }
        f[ICMP + 2..ICMP + 4].copy_from_slice(&[0, 0]);
        let c = frames::fold(frames::sum16(&f[ICMP..end]));
        f[ICMP + 2..ICMP + 4].copy_from_slice(&c.to_be_bytes());
        return;
    }
    let Some(p) = l4_of(f) else {
        return;
    };
    if !p.v6 {
        f[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
        let c = frames::fold(frames::sum16(&f[ETH..p.l4]));
        f[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
    }
    let at = p.l4 + l4_check_at(p.proto);
    if !p.v6 && p.proto == PROTO_UDP && be16(f, at) == 0 {
        return;
    }
    f[at..at + 2].copy_from_slice(&[0, 0]);
    let mut c = frames::fold(l4_sum(f, p));
    if p.proto == PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Check one run of `input` against the NAT contract (module docs).
pub fn check(input: &[u8], run: &TestRun) -> Result<NatVerdict, String> {
    if run.guard_overwritten != 0 {
        return Err(format!(
            "{} bytes written past the returned frame",
            run.guard_overwritten
        ));
    }
    let out = &run.frame;
    match run.action {
        XDP_ABORTED => Err("XDP_ABORTED".into()),
        XDP_PASS if out == input => Ok(NatVerdict::Passed),
        XDP_PASS => {
            if out[..12] != input[..12] {
                return Err("a frame passed to the kernel had its MACs changed".into());
            }
            translation(input, out).map(|_| NatVerdict::PassedTranslated)
        }
        XDP_TX if input.len() >= 14 && be16(input, 12) == 0x0806 => arp_reply(input, out),
        XDP_TX if input.len() >= ETH + 40 && be16(input, 12) == 0x86dd && input[ETH + 6] == 58 => {
            na_reply(input, out)
        }
        XDP_TX | XDP_REDIRECT => {
            let v = translation(input, out)?;
            let hop: (Mac, Mac) = match v {
                NatVerdict::Forward | NatVerdict::IcmpToBackend => (GW_MAC, D0_MAC),
                _ => (out[..6].try_into().expect("6 bytes"), D0_MAC),
            };
            if (&out[..6], &out[6..12]) != (&hop.0[..], &hop.1[..]) {
                return Err(format!(
                    "translated frame sent with MACs {:02x?} -> {:02x?}",
                    &out[6..12],
                    &out[..6]
                ));
            }
            Ok(v)
        }
        other => Err(format!("unexpected verdict {other}")),
    }
}

fn arp_reply(input: &[u8], out: &[u8]) -> Result<NatVerdict, String> {
    let ok = out.len() == input.len()
        && input.len() >= 42
        && out[6..12] == OUR_MAC
        && out[20..22] == [0, 2]
        && out[22..28] == OUR_MAC
        && (out[28..32] == VIP.octets() || out[28..32] == SNAT.octets())
        && out[28..32] == input[38..42]
        && out[32..38] == input[22..28]
        && out[38..42] == input[28..32];
    if ok {
        Ok(NatVerdict::ArpReply)
    } else {
        Err("ARP reply malformed".into())
    }
}

/// Where an IPv4 ICMP message (no IPv4 options) of at least its 8-byte header ends,
/// by the IPv4 length, if it is one and the frame holds it.
fn icmp_end(f: &[u8]) -> Option<usize> {
    if f.len() < ICMP + 8 || be16(f, 12) != 0x0800 || f[ETH] != 0x45 || f[ETH + 9] != 1 {
        return None;
    }
    let end = ETH + usize::from(be16(f, ETH + 2));
    (end >= ICMP + 8 && end <= f.len()).then_some(end)
}

const ICMP: usize = ETH + 20;
const QUOTE: usize = ICMP + 8;
const QUOTE_L4: usize = QUOTE + 20;

/// Is `out` an ICMP error translation of `input` (module docs)? Which direction.
fn icmp_translation(input: &[u8], out: &[u8]) -> Result<NatVerdict, String> {
    let Some(end) = icmp_end(input) else {
        return Err("rewrote an ICMP frame that is not a whole IPv4 ICMP message".into());
    };
    if end < QUOTE_L4 + 8 || input[QUOTE] != 0x45 || !matches!(input[ICMP], 3 | 11 | 12) {
        return Err(format!(
            "translated an ICMP message of type {} that is no error quoting 8 bytes of TCP/UDP",
            input[ICMP]
        ));
    }
    let proto = input[QUOTE + 9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(format!("translated an ICMP error quoting protocol {proto}"));
    }
    let l4_check = QUOTE_L4 + l4_check_at(proto);
    let check_quoted = end >= l4_check + 2;
    let may_change = |i: usize| {
        i < 12
            || (ETH + 10..ETH + 20).contains(&i)
            || (ICMP + 2..ICMP + 4).contains(&i)
            || (QUOTE + 10..QUOTE + 20).contains(&i)
            || (QUOTE_L4..QUOTE_L4 + 4).contains(&i)
            || (check_quoted && (l4_check..l4_check + 2).contains(&i))
    };
    if let Some(i) = (0..input.len()).find(|&i| input[i] != out[i] && !may_change(i)) {
        return Err(format!(
            "byte {i} of an ICMP error changed ({:02x} -> {:02x}): only MACs, addresses, quoted ports and checksums may",
            input[i], out[i]
        ));
    }
    let outer = |f: &[u8]| (ip4(f, ETH + 12), ip4(f, ETH + 16));
    let quoted = |f: &[u8]| {
        (
            ip4(f, QUOTE + 12),
            be16(f, QUOTE_L4),
            ip4(f, QUOTE + 16),
            be16(f, QUOTE_L4 + 2),
        )
    };
    let ((_, dst), (qsrc, qsport, qdst, qdport)) = (outer(input), quoted(input));
    let ((osrc, odst), (oqsrc, oqsport, oqdst, oqdport)) = (outer(out), quoted(out));
    let by_backend_port = SERVICES.iter().find(|s| s.0 == proto && s.2 == qdport);
    let by_service_port = SERVICES.iter().find(|s| s.0 == proto && s.1 == qsport);
    let verdict = match (dst, by_backend_port, by_service_port) {
        (SNAT, Some(svc), _) if (qsrc, qdst) == (SNAT, BACKEND) => {
            let client = odst;
            if osrc != VIP
                || client == SNAT
                || client == VIP
                || (oqsrc, oqdst, oqdport) != (client, VIP, svc.1)
            {
                return Err(format!(
                    "an error about {qsrc}:{qsport} -> {qdst}:{qdport} became {osrc} -> {odst} about {oqsrc}:{oqsport} -> {oqdst}:{oqdport}"
                ));
            }
            NatVerdict::IcmpToClient
        }
        (VIP, _, Some(svc)) if qsrc == VIP => {
            if (osrc, odst) != (SNAT, BACKEND)
                || (oqsrc, oqsport, oqdst) != (BACKEND, svc.2, SNAT)
                || oqdport == 0
            {
                return Err(format!(
                    "an error about {qsrc}:{qsport} -> {qdst}:{qdport} became {osrc} -> {odst} about {oqsrc}:{oqsport} -> {oqdst}:{oqdport}"
                ));
            }
            NatVerdict::IcmpToBackend
        }
        _ => {
            return Err(format!(
                "translated an ICMP error to {dst} about {qsrc}:{qsport} -> {qdst}:{qdport}, no NAT connection's packet"
            ));
        }
    };
    if frames::icmp4_checksums_ok(input) && !frames::icmp4_checksums_ok(out) {
        return Err("the translation broke the checksums of an ICMP error that verified".into());
    }
    let whole_quote = usize::from(be16(input, QUOTE + 2)) == end - QUOTE;
    if whole_quote
        && checksums_ok(&frames::icmp4_quoted_frame(input))
        && !checksums_ok(&frames::icmp4_quoted_frame(out))
    {
        return Err("the translation broke the quoted packet's checksum".into());
    }
    if check_quoted
        && proto == PROTO_UDP
        && (be16(input, l4_check) == 0) != (be16(out, l4_check) == 0)
    {
        return Err("a quoted UDP checksum appeared or vanished in the translation".into());
    }
    Ok(verdict)
}

/// A Neighbor Advertisement from our MAC for the VIP6 or SNAT6 the solicitation asked
/// for (its exact bytes are `dataplane_arp_nd`'s business).
fn na_reply(input: &[u8], out: &[u8]) -> Result<NatVerdict, String> {
    let ns_target = input.get(ETH + 48..ETH + 64);
    let ok = out.len() >= ETH + 64
        && out[6..12] == OUR_MAC
        && be16(out, 12) == 0x86dd
        && out[ETH + 6] == 58
        && out[ETH + 40] == 136
        && ns_target == Some(&out[ETH + 48..ETH + 64])
        && (out[ETH + 48..ETH + 64] == VIP6.octets() || out[ETH + 48..ETH + 64] == SNAT6.octets());
    if ok {
        Ok(NatVerdict::ArpReply)
    } else {
        Err("Neighbor Advertisement malformed".into())
    }
}

/// The source and destination addresses of a packet `p` describes.
fn addrs(f: &[u8], p: L4) -> (IpAddr, IpAddr) {
    if p.v6 {
        let a = |i: usize| -> IpAddr {
            let b: [u8; 16] = f[i..i + 16].try_into().expect("16 bytes");
            IpAddr::from(b)
        };
        (a(ETH + 8), a(ETH + 24))
    } else {
        (IpAddr::V4(ip4(f, ETH + 12)), IpAddr::V4(ip4(f, ETH + 16)))
    }
}

/// Is `out` a NAT translation of `input` (module docs)? Which direction.
fn translation(input: &[u8], out: &[u8]) -> Result<NatVerdict, String> {
    if out.len() != input.len() {
        return Err(format!(
            "a translation changed the length from {} to {}",
            input.len(),
            out.len()
        ));
    }
    if input.len() > ETH + 9 && be16(input, 12) == 0x0800 && input[ETH + 9] == 1 {
        return icmp_translation(input, out);
    }
    let Some(p) = l4_of(input) else {
        return Err("rewrote a frame that is not a whole IPv4/IPv6 TCP/UDP packet".into());
    };
    if !p.v6 && p.l4 != ETH + 20 {
        return Err("translated a packet with IPv4 options".into());
    }
    let check = p.l4 + l4_check_at(p.proto);
    let may_change = |i: usize| {
        i < 12
            || (!p.v6 && (ETH + 10..ETH + 20).contains(&i))
            || (p.v6 && (ETH + 8..ETH + 40).contains(&i))
            || (p.l4..p.l4 + 4).contains(&i)
            || (check..check + 2).contains(&i)
    };
    if let Some(i) = (0..input.len()).find(|&i| input[i] != out[i] && !may_change(i)) {
        return Err(format!(
            "byte {i} changed ({:02x} -> {:02x}): only MACs, addresses, ports and checksums may",
            input[i], out[i]
        ));
    }
    let (src, dst) = addrs(input, p);
    let (sport, dport) = (be16(input, p.l4), be16(input, p.l4 + 2));
    let (osrc, odst) = addrs(out, p);
    let (vip, snat, backend_addr): (IpAddr, IpAddr, IpAddr) = if p.v6 {
        (VIP6.into(), SNAT6.into(), BACKEND6.into())
    } else {
        (VIP.into(), SNAT.into(), BACKEND.into())
    };
    let (osport, odport) = (be16(out, p.l4), be16(out, p.l4 + 2));
    let service = |port: u16| SERVICES.iter().find(|s| s.0 == p.proto && s.1 == port);
    let backend_port = |bport: u16| SERVICES.iter().find(|s| s.0 == p.proto && s.2 == bport);
    let verdict = if dst == vip && service(dport).is_some() {
        let bport = service(dport).expect("found").2;
        if (osrc, odst, odport) != (snat, backend_addr, bport) || osport == 0 {
            return Err(format!(
                "a client's packet {src}:{sport} -> {dst}:{dport} became {osrc}:{osport} -> {odst}:{odport}"
            ));
        }
        NatVerdict::Forward
    } else if src == backend_addr && dst == snat && backend_port(sport).is_some() {
        let vport = backend_port(sport).expect("found").1;
        // The client is whoever opened the connection (the fuzzer may make it any
        // address, a backend's too: hairpin), but never the node itself: the program
        // opens nothing for a client claiming the VIP or the SNAT address.
        let to_a_client = odst != snat && odst != vip;
        if (osrc, osport) != (vip, vport) || !to_a_client {
            return Err(format!(
                "a backend's packet {src}:{sport} -> {dst}:{dport} became {osrc}:{osport} -> {odst}:{odport}"
            ));
        }
        NatVerdict::Reply
    } else {
        return Err(format!(
            "translated {src}:{sport} -> {dst}:{dport}, neither a client's packet to a NAT service nor a backend's to the SNAT address"
        ));
    };
    if checksums_ok(input) && !checksums_ok(out) {
        return Err(
            "the translation broke the checksums of a frame whose checksums verified".into(),
        );
    }
    if p.proto == PROTO_UDP && (be16(input, check) == 0) != (be16(out, check) == 0) {
        return Err("a UDP checksum appeared or vanished in the translation".into());
    }
    Ok(verdict)
}

/// The fixture with what the fuzzer needs to reach the connection table: the tuple of
/// the last connection translated towards a backend.
pub struct Harness {
    pub fx: Fixture,
    /// (protocol, SNAT port, backend port, client, client port) of the last IPv4
    /// `Forward`.
    last: Option<(u8, u16, u16, Ipv4Addr, u16)>,
    /// (protocol, SNAT port, backend port) of the last IPv6 one.
    last6: Option<(u8, u16, u16)>,
}

impl Harness {
    /// Call it inside [`private_namespace`].
    pub fn new() -> Self {
        Harness {
            fx: fixture(),
            last: None,
            last6: None,
        }
    }

    /// The frame an input stands for. `mode` (the first byte), low two bits: 0 or 3 the
    /// frame as it is; 1 a client's packet: IPv4 from 198.51.100.x to the VIP on the
    /// service port of its protocol (TCP unless it is UDP); 2 a backend's answer on the
    /// last connection translated (as it is before there is one). Bit 2: keep the
    /// checksums as they are (else valid ones are filled in); bit 3: keep the IPv4
    /// total length (else it is made the frame's). Bit 4: modes 1 and 2 in IPv6 (a client
    /// in 2001:db8:c::/64 to [`VIP6`], [`BACKEND6`] to [`SNAT6`]; bit 3 then keeps the
    /// payload length). 3: an ICMP error about the last IPv4 connection translated (its
    /// type and code as they are): bit 4 clear, from the backends' gateway to the SNAT
    /// address quoting SNAT -> backend; set, from the client to the VIP quoting VIP ->
    /// client. `None` for a frame too short to run.
    pub fn frame(&self, input: &[u8]) -> Option<Vec<u8>> {
        let (&mode, rest) = input.split_first()?;
        let mut f = rest.to_vec();
        if f.len() < ETH {
            return None;
        }
        if mode & 16 != 0 && mode & 3 != 3 {
            return Some(self.frame6(mode, f));
        }
        let fits = f.len() >= ETH + 20 + 4;
        let set_ip = |f: &mut Vec<u8>, proto: u8, src: Ipv4Addr, dst: Ipv4Addr| {
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            f[ETH] = 0x45;
            f[ETH + 9] = proto;
            f[ETH + 12..ETH + 16].copy_from_slice(&src.octets());
            f[ETH + 16..ETH + 20].copy_from_slice(&dst.octets());
            if mode & 8 == 0 {
                let total = (f.len() - ETH).min(usize::from(u16::MAX)) as u16;
                f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
            }
        };
        match (mode & 3, self.last) {
            (3, Some((proto, snat_port, bport, client, cport))) if f.len() >= QUOTE_L4 + 8 => {
                let vport = SERVICES
                    .iter()
                    .find(|s| s.0 == proto && s.2 == bport)
                    .map_or(0, |s| s.1);
                let ((src, dst), (qsrc, qsport, qdst, qdport)) = if mode & 16 == 0 {
                    (
                        (Ipv4Addr::new(192, 0, 2, 254), SNAT),
                        (SNAT, snat_port, BACKEND, bport),
                    )
                } else {
                    ((client, VIP), (VIP, vport, client, cport))
                };
                set_ip(&mut f, 1, src, dst);
                f[QUOTE] = 0x45;
                f[QUOTE + 9] = proto;
                f[QUOTE + 12..QUOTE + 16].copy_from_slice(&qsrc.octets());
                f[QUOTE + 16..QUOTE + 20].copy_from_slice(&qdst.octets());
                f[QUOTE_L4..QUOTE_L4 + 2].copy_from_slice(&qsport.to_be_bytes());
                f[QUOTE_L4 + 2..QUOTE_L4 + 4].copy_from_slice(&qdport.to_be_bytes());
            }
            (1, _) if fits => {
                let proto = if f[ETH + 9] == PROTO_UDP {
                    PROTO_UDP
                } else {
                    PROTO_TCP
                };
                let client = Ipv4Addr::new(198, 51, 100, f[ETH + 15]);
                set_ip(&mut f, proto, client, VIP);
                let port = SERVICES.iter().find(|s| s.0 == proto).expect("a service").1;
                f[ETH + 22..ETH + 24].copy_from_slice(&port.to_be_bytes());
            }
            (2, Some((proto, snat_port, bport, _, _))) if fits => {
                set_ip(&mut f, proto, BACKEND, SNAT);
                f[ETH + 20..ETH + 22].copy_from_slice(&bport.to_be_bytes());
                f[ETH + 22..ETH + 24].copy_from_slice(&snat_port.to_be_bytes());
            }
            _ => {}
        }
        if mode & 4 == 0 {
            fix_checksums(&mut f);
        }
        Some(f)
    }

    /// [`Harness::frame`] for IPv6 (mode bit 4).
    fn frame6(&self, mode: u8, mut f: Vec<u8>) -> Vec<u8> {
        let fits = f.len() >= ETH + 40 + 4;
        let set_ip = |f: &mut Vec<u8>, proto: u8, src: Ipv6Addr, dst: Ipv6Addr| {
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            f[ETH..ETH + 4].copy_from_slice(&[0x60, 0, 0, 0]);
            f[ETH + 6] = proto;
            f[ETH + 7] = 64;
            f[ETH + 8..ETH + 24].copy_from_slice(&src.octets());
            f[ETH + 24..ETH + 40].copy_from_slice(&dst.octets());
            if mode & 8 == 0 {
                let len = (f.len() - ETH - 40).min(usize::from(u16::MAX)) as u16;
                f[ETH + 4..ETH + 6].copy_from_slice(&len.to_be_bytes());
            }
        };
        match (mode & 3, self.last6) {
            (1, _) if fits => {
                let proto = if f[ETH + 6] == PROTO_UDP {
                    PROTO_UDP
                } else {
                    PROTO_TCP
                };
                let mut client = CLIENT6.octets();
                client[15] = f[ETH + 23];
                set_ip(&mut f, proto, Ipv6Addr::from(client), VIP6);
                let port = SERVICES.iter().find(|s| s.0 == proto).expect("a service").1;
                f[ETH + 42..ETH + 44].copy_from_slice(&port.to_be_bytes());
            }
            (2, Some((proto, snat_port, bport))) if fits => {
                set_ip(&mut f, proto, BACKEND6, SNAT6);
                f[ETH + 40..ETH + 42].copy_from_slice(&bport.to_be_bytes());
                f[ETH + 42..ETH + 44].copy_from_slice(&snat_port.to_be_bytes());
            }
            _ => {}
        }
        if mode & 4 == 0 {
            fix_checksums(&mut f);
        }
        f
    }

    /// Run `frame` and check it; remembers a connection translated towards a backend.
    pub fn run(&mut self, frame: &[u8]) -> (TestRun, Result<NatVerdict, String>) {
        let run = self.fx.run(frame);
        let verdict = check(frame, &run);
        if verdict == Ok(NatVerdict::Forward) {
            let out = &run.frame;
            if be16(out, 12) == 0x86dd {
                self.last6 = Some((out[ETH + 6], be16(out, ETH + 40), be16(out, ETH + 42)));
            } else {
                self.last = Some((
                    out[ETH + 9],
                    be16(out, ETH + 20),
                    be16(out, ETH + 22),
                    ip4(frame, ETH + 12),
                    be16(frame, ETH + 20),
                ));
            }
        }
        (run, verdict)
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Inputs (`[mode, frame]`) that reach each path: a client's SYN, data, FIN and UDP
/// datagram to the services, a backend's SYN-ACK, data, RST and UDP answer on the last
/// connection, ICMP errors about the last connection both ways (frag needed from the
/// backends' gateway, port unreachable from the client), ARP requests for the VIP and
/// the SNAT address.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let client = |sport| Tcp4::new((D0_MAC, CLIENT_MAC), (CLIENT, sport), (VIP, 1514));
    let back = || Tcp4::new((D0_MAC, GW_MAC), (BACKEND, 11514), (SNAT, 1024));
    let with = |mode: u8, f: Vec<u8>| {
        let mut v = vec![mode];
        v.extend(f);
        v
    };
    let line = b"event 42\n";
    vec![
        (
            "client_syn",
            with(
                0,
                client(40000)
                    .flags(frames::TCP_SYN)
                    .options(&frames::linux_syn_options(7))
                    .frame(),
            ),
        ),
        (
            "client_data",
            with(
                1,
                client(40000)
                    .flags(frames::TCP_PSH_ACK)
                    .seq(1001)
                    .ack(5001)
                    .win(502)
                    .payload(line)
                    .frame(),
            ),
        ),
        (
            "client_fin",
            with(
                1,
                client(40000)
                    .flags(frames::TCP_FIN | frames::TCP_ACK)
                    .seq(1010)
                    .ack(5010)
                    .frame(),
            ),
        ),
        (
            "client_udp",
            with(
                0,
                frames::udp4(D0_MAC, CLIENT_MAC, CLIENT, VIP, 5140, 514, b"<13>line"),
            ),
        ),
        (
            "backend_syn_ack",
            with(
                2,
                back()
                    .flags(frames::TCP_SYN | frames::TCP_ACK)
                    .seq(5000)
                    .ack(1001)
                    .options(&frames::linux_syn_options(7))
                    .frame(),
            ),
        ),
        (
            "backend_data",
            with(
                2,
                back()
                    .flags(frames::TCP_PSH_ACK)
                    .seq(5001)
                    .ack(1010)
                    .win(502)
                    .payload(line)
                    .frame(),
            ),
        ),
        (
            "backend_rst",
            with(2, back().flags(frames::TCP_RST).seq(5010).frame()),
        ),
        (
            "backend_udp",
            with(
                2,
                frames::udp4(D0_MAC, GW_MAC, BACKEND, SNAT, 5514, 1024, b"<13>ack"),
            ),
        ),
        (
            "gateway_frag_needed",
            with(
                3,
                frames::icmp4_error(
                    (D0_MAC, GW_MAC),
                    Ipv4Addr::new(192, 0, 2, 254),
                    SNAT,
                    3,
                    4,
                    [0, 0, 0x05, 0x78],
                    &frames::udp4(GW_MAC, D0_MAC, SNAT, BACKEND, 1024, 5514, b"<13>line"),
                    36,
                ),
            ),
        ),
        (
            "client_port_unreachable",
            with(
                3 | 16,
                frames::icmp4_error(
                    (D0_MAC, CLIENT_MAC),
                    CLIENT,
                    VIP,
                    3,
                    3,
                    [0; 4],
                    &frames::udp4(CLIENT_MAC, D0_MAC, VIP, CLIENT, 514, 5140, b"<13>ack"),
                    35,
                ),
            ),
        ),
        (
            "client6_syn",
            with(
                16,
                crate::build::Frame::eth(D0_MAC, CLIENT_MAC)
                    .ipv6(CLIENT6, VIP6)
                    .tcp(40000, 1514)
                    .syn()
                    .tcp_options(&frames::linux_syn_options(7))
                    .build(),
            ),
        ),
        (
            "backend6_syn_ack",
            with(
                18,
                crate::build::Frame::eth(D0_MAC, GW_MAC)
                    .ipv6(BACKEND6, SNAT6)
                    .tcp(11514, 1024)
                    .flags(frames::TCP_SYN | frames::TCP_ACK)
                    .seq(5000)
                    .ack_number(1001)
                    .build(),
            ),
        ),
        (
            "client6_udp",
            with(
                16,
                crate::build::Frame::eth(D0_MAC, CLIENT_MAC)
                    .ipv6(CLIENT6, VIP6)
                    .udp(5140, 514)
                    .payload(b"<13>line")
                    .build(),
            ),
        ),
        (
            "ns_vip6",
            with(
                16,
                crate::build::Frame::eth(D0_MAC, CLIENT_MAC)
                    .ipv6(CLIENT6, VIP6)
                    .neighbor_solicit(VIP6)
                    .build(),
            ),
        ),
        (
            "arp_vip",
            with(0, frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP)),
        ),
        (
            "arp_snat",
            with(
                0,
                frames::arp(1, GW_MAC, Ipv4Addr::new(192, 0, 2, 254), [0; 6], SNAT),
            ),
        ),
    ]
}
