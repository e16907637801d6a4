//! The third fixture of the XDP oracle: tunnel services (`mode = "tunnel"`), with
//! small MTUs so that fuzzed frames cross them, and the contract every frame keeps:
//! - never `XDP_ABORTED`; `XDP_PASS` hands the frame back byte for byte;
//! - `XDP_TX` sends an ARP reply / Neighbor Advertisement (as the DSR fixture), an
//!   encapsulated packet, or an ICMP "fragmentation needed" / "packet too big" to the
//!   frame's sender;
//! - an encapsulated packet: the next hop's MACs, an outer header that is valid (IPv4
//!   checksum, lengths, TTL 64, DF; IPv6 lengths, hop limit 64) from the tunnel source
//!   range to the backend, GUE with the inner protocol, UDP checksum 0 over IPv4 and,
//!   over IPv6, valid exactly when the inner TCP/UDP checksum is, and inside the
//!   client's IP packet, unchanged;
//! - an ICMP error: valid checksums, from the packet's destination to its source,
//!   quoting its header and 8 bytes, with the service's MTU less the tunnel's headers;
//! - `XDP_REDIRECT` only for a relayed router error: the same shape, from a VIP, to
//!   the client's next hop, quoting bytes the router quoted.
//!
//! Runs in a network namespace of its own ([`fib_setup`]): the relay asks the FIB.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_agent::dataplane::tunnel::{Encap, TunnelSpec};
use fo_agent::dataplane::{BackendSpec, ServiceSpec, TestRun};
use fo_common::xdp_action::{XDP_ABORTED, XDP_PASS, XDP_REDIRECT, XDP_TX};
use fo_common::{PROTO_TCP, PROTO_UDP};

use super::{CLIENT_MAC, VIP, VIP6, Verdict};
use crate::fixture::{Fixture, OUR_MAC};
use crate::frames::{self, Mac, Tcp4};

/// The next hop towards the backends.
pub const HOP_MAC: Mac = [0x02, 0x40, 0, 0, 0, 0x01];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
pub const OUTER4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 21);
pub const OUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x21);
/// Tunnel sources: 10.9.0.0/24, 2001:db8:9::/120 (8 bits per flow).
pub const SRC4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 0);
pub const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 0);
pub const GUE_PORT: u16 = 6080;
/// The smallest MTUs the agent writes, so fuzzed frames cross them.
pub const MTU4: u16 = fo_common::TUNNEL_MIN_MTU_V4;
pub const MTU6: u16 = fo_common::TUNNEL_MIN_MTU_V6;
/// Services: (VIP is v4, port, protocol, GUE).
pub const SERVICES: [(bool, u16, u8, bool); 4] = [
    (true, 1514, PROTO_TCP, false),
    (true, 514, PROTO_UDP, true),
    (false, 1514, PROTO_TCP, false),
    (false, 1515, PROTO_TCP, true),
];

/// Shell commands for the namespace: `tdpf0` on the clients' subnet (both families),
/// the clients' neighbour entries, forwarding on.
pub fn fib_setup() -> String {
    let mac = |m: Mac| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    format!(
        "ip link set lo up \
         && ip link add tdpf0 type veth peer name tdpf0p \
         && ip link set tdpf0 address {} && ip link set tdpf0 up && ip link set tdpf0p up \
         && ip addr add 198.51.100.1/24 dev tdpf0 \
         && ip -6 addr add 2001:db8::1/64 dev tdpf0 nodad \
         && ip neigh add {CLIENT} lladdr {} dev tdpf0 nud permanent \
         && ip -6 neigh add {CLIENT6} lladdr {} dev tdpf0 nud permanent \
         && sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv6.conf.all.forwarding=1",
        mac(OUR_MAC),
        mac(CLIENT_MAC),
        mac(CLIENT_MAC)
    )
}

/// The tunnel data plane: VIP and VIP6 owned, the [`SERVICES`], the tunnel sources.
pub fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    let specs: Vec<ServiceSpec> = SERVICES
        .iter()
        .map(|&(v4, port, proto, gue)| ServiceSpec {
            vip: if v4 {
                IpAddr::V4(VIP)
            } else {
                IpAddr::V6(VIP6)
            },
            port,
            proto,
            hash_5tuple: false,
            backends: vec![BackendSpec {
                addr: if v4 {
                    IpAddr::V4(OUTER4)
                } else {
                    IpAddr::V6(OUTER6)
                },
                port,
                weight: 1,
                mac: HOP_MAC,
                src_mac: OUR_MAC,
                ifindex: 0,
            }],
            nat: None,
            tunnel: Some(TunnelSpec {
                source: if v4 {
                    IpAddr::V4(SRC4)
                } else {
                    IpAddr::V6(SRC6)
                },
                source_bits: 8,
                encap: if gue {
                    Encap::Gue { port: GUE_PORT }
                } else {
                    Encap::Ipip
                },
                mtu: if v4 { MTU4 } else { MTU6 },
            }),
        })
        .collect();
    fx.services(&specs);
    fx.dp
        .set_tunnel_sources(&[(IpAddr::V4(SRC4), 24), (IpAddr::V6(SRC6), 120)])
        .expect("TUNNEL_SOURCES");
    fx
}

/// Valid frames: one per service, one too big per family, ARP and NS.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let tcp4 = |port, payload: usize| {
        Tcp4::new((OUR_MAC, CLIENT_MAC), (CLIENT, 40000), (VIP, port))
            .flags(frames::TCP_PSH_ACK)
            .payload(&vec![0x5a; payload])
            .frame()
    };
    let tcp6 = |port, payload: usize| {
        frames::tcp6(
            OUR_MAC,
            CLIENT_MAC,
            CLIENT6,
            VIP6,
            40000,
            port,
            frames::TCP_PSH_ACK,
            &vec![0x5a; payload],
        )
    };
    vec![
        (
            "arp_request",
            frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP),
        ),
        (
            "ns_with_slla",
            frames::neighbor_solicit(CLIENT_MAC, CLIENT6, VIP6, true),
        ),
        ("ipip4", tcp4(1514, 100)),
        (
            "gue4_udp",
            frames::udp4(OUR_MAC, CLIENT_MAC, CLIENT, VIP, 5140, 514, b"<13>line"),
        ),
        ("ip6ip6", tcp6(1514, 100)),
        ("gue6", tcp6(1515, 100)),
        ("ipip4_too_big", tcp4(1514, 600)),
        ("ip6ip6_too_big", tcp6(1514, 1300)),
        ("relay4", router_error(&tcp4(1514, 400))),
        ("relay6", router_error(&tcp6(1514, 400))),
    ]
}

/// A path router's "fragmentation needed" / "packet too big" (MTU 1400) to a tunnel
/// source, about the client's `frame` sent in IPIP / IP6IP6, quoting 548 bytes.
pub fn router_error(frame: &[u8]) -> Vec<u8> {
    let inner = &frame[14..];
    if u16_at(frame, 12) == 0x0800 {
        let tunnel_src = Ipv4Addr::new(10, 9, 0, 5);
        let mut quoted = frames::ipv4_header(tunnel_src, OUTER4, 4, inner.len());
        quoted.extend_from_slice(inner);
        quoted.truncate(548);
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&1400u16.to_be_bytes());
        icmp.extend_from_slice(&quoted);
        let c = frames::fold(frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(OUR_MAC, HOP_MAC, 0x0800);
        out.extend_from_slice(&frames::ipv4_header(
            Ipv4Addr::new(10, 30, 0, 1),
            tunnel_src,
            1,
            icmp.len(),
        ));
        out.extend_from_slice(&icmp);
        out
    } else {
        let tunnel_src = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 5);
        let router = Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, 0, 1);
        let mut quoted = frames::ipv6_header(tunnel_src, OUTER6, 41, inner.len(), 64);
        quoted.extend_from_slice(inner);
        quoted.truncate(548);
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&1400u32.to_be_bytes());
        icmp.extend_from_slice(&quoted);
        let mut pseudo = router.octets().to_vec();
        pseudo.extend_from_slice(&tunnel_src.octets());
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        let c = frames::fold(frames::sum16(&pseudo) + frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(OUR_MAC, HOP_MAC, 0x86dd);
        out.extend_from_slice(&frames::ipv6_header(router, tunnel_src, 58, icmp.len(), 64));
        out.extend_from_slice(&icmp);
        out
    }
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
        XDP_TX | XDP_REDIRECT if !super::carries_a_vip(input) => {
            Err("a frame that is not ours was sent".into())
        }
        XDP_TX => check_tx(input, &run.frame).map(|()| Verdict::Sent),
        XDP_REDIRECT => check_icmp_error(input, &run.frame, true).map(|()| Verdict::Sent),
        other => Err(format!("unexpected verdict {other}")),
    }
}

fn u16_at(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn check_tx(input: &[u8], out: &[u8]) -> Result<(), String> {
    if out.len() >= 14 && out[0..6] == HOP_MAC {
        return check_encapsulated(input, out);
    }
    if out.len() >= 14 && out[0..6] == input[6..12] && (out.len() == 70 || out.len() == 110) {
        let is_icmp = match u16_at(out, 12) {
            0x0800 => out[23] == 1,
            0x86dd => out[20] == 58 && out.get(54) == Some(&2),
            _ => false,
        };
        if is_icmp {
            return check_icmp_error(input, out, false);
        }
    }
    // ARP reply or Neighbor Advertisement: as in the DSR fixture.
    super::check_tx_answer(input, out)
}

/// An encapsulated packet (module docs).
fn check_encapsulated(input: &[u8], out: &[u8]) -> Result<(), String> {
    let fail = |what: &str| Err(format!("encapsulated packet: {what}"));
    if out[6..12] != OUR_MAC || out[12..14] != input[12..14] {
        return fail("MACs or EtherType");
    }
    let v4 = u16_at(out, 12) == 0x0800;
    let (ip_len, next) = if v4 { (20, out[23]) } else { (40, out[20]) };
    if out.len() < 14 + ip_len {
        return fail("cut short");
    }
    let outer = &out[14..14 + ip_len];
    if v4 {
        let ok = outer[0] == 0x45
            && usize::from(u16_at(outer, 2)) == out.len() - 14
            && outer[6..8] == [0x40, 0]
            && outer[8] == 64
            && frames::fold(frames::sum16(outer)) == 0
            && outer[12..15] == SRC4.octets()[..3]
            && outer[16..20] == OUTER4.octets();
        if !ok {
            return fail("outer IPv4 header");
        }
    } else {
        let ok = outer[0] >> 4 == 6
            && usize::from(u16_at(outer, 4)) == out.len() - 54
            && outer[7] == 64
            && outer[8..23] == SRC6.octets()[..15]
            && outer[24..40] == OUTER6.octets();
        if !ok {
            return fail("outer IPv6 header");
        }
    }
    let inner_at = match next {
        4 | 41 => 14 + ip_len,
        17 => {
            let udp = &out[14 + ip_len..];
            let gue_proto = if v4 { 4 } else { 41 };
            let ok = udp.len() >= 12
                && u16_at(udp, 2) == GUE_PORT
                && u16_at(udp, 0) >= 0x8000
                && usize::from(u16_at(udp, 4)) == udp.len()
                && udp[8..12] == [0, gue_proto, 0, 0];
            if !ok {
                return fail("UDP / GUE header");
            }
            let check = u16_at(udp, 6);
            if v4 {
                if check != 0 {
                    return fail("IPv4 GUE's UDP checksum is not 0");
                }
            } else {
                let mut pseudo = outer[8..40].to_vec();
                pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
                let valid = frames::fold(frames::sum16(&pseudo) + frames::sum16(udp)) == 0;
                if valid != inner_l4_checksum_ok(&udp[12..]) {
                    return fail("IPv6 UDP checksum valid unlike the inner one's");
                }
            }
            14 + ip_len + 12
        }
        _ => return fail("outer protocol"),
    };
    let inner = &out[inner_at..];
    let expected_len = if v4 {
        usize::from(u16_at(input, 16))
    } else {
        usize::from(u16_at(input, 18)) + 40
    };
    if inner.len() != expected_len || inner != &input[14..14 + expected_len] {
        return fail("inner packet differs from the client's");
    }
    Ok(())
}

/// Does the IPv6 packet's TCP/UDP checksum verify?
fn inner_l4_checksum_ok(ip: &[u8]) -> bool {
    if ip.len() < 40 {
        return false;
    }
    let l4 = &ip[40..];
    let mut pseudo = ip[8..40].to_vec();
    pseudo.extend_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ip[6]]);
    frames::fold(frames::sum16(&pseudo) + frames::sum16(l4)) == 0
}

/// An ICMP "fragmentation needed" / "packet too big" (module docs): answered to the
/// frame's sender (`relayed` false) or relayed to a client (`relayed` true).
fn check_icmp_error(input: &[u8], out: &[u8], relayed: bool) -> Result<(), String> {
    let fail = |what: &str| Err(format!("ICMP error: {what}"));
    // Relayed: to the client's neighbour entry from our interface; answered: back to
    // the sender, MACs swapped.
    let macs_ok = out.len() >= 14
        && if relayed {
            out[0..6] == CLIENT_MAC && out[6..12] == OUR_MAC
        } else {
            out[0..6] == input[6..12] && out[6..12] == input[0..6]
        };
    if !macs_ok {
        return fail("MACs");
    }
    let v4 = u16_at(out, 12) == 0x0800;
    let (ip_len, quote_len) = if v4 { (20, 28) } else { (40, 48) };
    if out.len() != 14 + ip_len + 8 + quote_len {
        return fail("length");
    }
    let ip = &out[14..14 + ip_len];
    let icmp = &out[14 + ip_len..];
    let quote = &icmp[8..];
    let (src, dst, q_src, q_dst) = if v4 {
        (&ip[12..16], &ip[16..20], &quote[12..16], &quote[16..20])
    } else {
        (&ip[8..24], &ip[24..40], &quote[8..24], &quote[24..40])
    };
    if src != q_dst || dst != q_src {
        return fail("not from the quoted packet's destination to its source");
    }
    let mtu = if v4 {
        if frames::fold(frames::sum16(ip)) != 0 || ip[9] != 1 || icmp[0..2] != [3, 4] {
            return fail("IPv4 header or type");
        }
        if frames::fold(frames::sum16(icmp)) != 0 {
            return fail("ICMP checksum");
        }
        u32::from(u16_at(icmp, 6))
    } else {
        let mut pseudo = ip[8..40].to_vec();
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        if ip[6] != 58 || icmp[0..2] != [2, 0] {
            return fail("IPv6 header or type");
        }
        if frames::fold(frames::sum16(&pseudo) + frames::sum16(icmp)) != 0 {
            return fail("ICMPv6 checksum");
        }
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]])
    };
    if relayed {
        if src != VIP.octets().as_slice() && src != VIP6.octets().as_slice() {
            return fail("relayed from an address that is no VIP");
        }
        // The quote is the client's packet as the router quoted it.
        if !input.windows(quote.len()).any(|w| w == quote) {
            return fail("the quote is not from the router's error");
        }
    } else {
        if quote != &input[14..14 + quote_len] {
            return fail("the quote is not the packet's header and 8 bytes");
        }
        let allowed: &[u32] = if v4 {
            &[MTU4 as u32 - 20, MTU4 as u32 - 32]
        } else {
            &[MTU6 as u32 - 40, MTU6 as u32 - 52]
        };
        if !allowed.contains(&mtu) {
            return fail("MTU");
        }
    }
    Ok(())
}
