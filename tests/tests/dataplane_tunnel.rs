//! Tunnelled DSR in the XDP program, through BPF_PROG_TEST_RUN on the real object:
//! IPv4-in-IPv4, IPv6-in-IPv6 and GUE (both families) with exact output frames (built
//! here, independently of the program's code), outer sources and GUE ports spread per
//! flow, the MTU boundary (the ICMP "fragmentation needed" / "packet too big" answer),
//! the relay of a path router's ICMP error to the client, and the backends'
//! decapsulation program. Then scapy, an independent parser, reads every encapsulated
//! frame as the kernel's ipip / ip6_tunnel / fou would.
//!
//! Everything runs in a network namespace made for the test (`tdp…`): the relay asks
//! the kernel's FIB for the client's next hop.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use aya::maps::{HashMap, MapData, PerCpuArray};
use fo_agent::dataplane::tunnel::{
    DECAP_ADDRS_MAP, DECAP_GUE_PORT_GLOBAL, DECAP_OBJECT, DECAP_PROGRAM, DECAP_STATS_MAP, Encap,
    TunnelSpec,
};
use fo_agent::dataplane::{BackendSpec, ServiceSpec};
use fo_common::xdp_action::{XDP_PASS, XDP_REDIRECT, XDP_TX};
use fo_common::{DECAP_GUE, DECAP_IPIP, DECAP_PASS_OTHER, PROTO_TCP, VipKey};
use fo_tests::build::Frame;
use fo_tests::fixture::{Fixture, OUR_MAC};
use fo_tests::frames::{self, Mac};
use fo_tests::netns::Netns;
use fo_tests::table::{CLIENT, CLIENT_MAC, CLIENT6, VIP, VIP6};

/// The next hop towards the backends (a router).
const HOP_MAC: Mac = [0x02, 0x40, 0, 0, 0, 0x01];
/// A router on the backends' path that sends ICMP errors.
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 30, 0, 1);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x30, 0, 0, 0, 0, 1);
/// Backends' outer addresses, two router hops away.
const OUTER4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 21);
const OUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 0x21);
/// Tunnel source ranges: a /24 and a /120 whose last 8 bits vary per flow.
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 0);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 0);
const SRC_BITS: u8 = 8;
const GUE_PORT: u16 = 6080;
const MTU: u16 = 1500;
/// Ports: IPIP service, GUE service (same VIPs).
const IPIP_PORT: u16 = 1514;
const GUE_SVC_PORT: u16 = 1515;

fn tunnel_service(vip: IpAddr, port: u16, outer: IpAddr, encap: Encap) -> ServiceSpec {
    let source = if vip.is_ipv4() {
        IpAddr::V4(SRC4)
    } else {
        IpAddr::V6(SRC6)
    };
    ServiceSpec {
        vip,
        port,
        proto: PROTO_TCP,
        hash_5tuple: false,
        backends: vec![BackendSpec {
            addr: outer,
            port,
            weight: 1,
            mac: HOP_MAC,
            src_mac: OUR_MAC,
            ifindex: 0,
        }],
        nat: None,
        tunnel: Some(TunnelSpec {
            source,
            source_bits: SRC_BITS,
            encap,
            mtu: MTU,
        }),
    }
}

/// The test's namespace: an interface `tdp0` on the clients' subnet (both families),
/// permanent neighbour entries for the clients, forwarding on (the FIB helper asks).
fn namespace() -> Netns {
    let ns = Netns::new("tdp");
    let mac = |m: Mac| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    ns.sh(&format!(
        "ip link set lo up \
         && ip link add tdp0 type veth peer name tdp0p \
         && ip link set tdp0 address {} && ip link set tdp0 up && ip link set tdp0p up \
         && ip addr add 198.51.100.1/24 dev tdp0 \
         && ip -6 addr add 2001:db8::1/64 dev tdp0 nodad \
         && ip neigh add {CLIENT} lladdr {} dev tdp0 nud permanent \
         && ip -6 neigh add {CLIENT6} lladdr {} dev tdp0 nud permanent \
         && sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv6.conf.all.forwarding=1",
        mac(OUR_MAC),
        mac(CLIENT_MAC),
        mac(CLIENT_MAC)
    ));
    ns
}

fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    fx.services(&[
        tunnel_service(IpAddr::V4(VIP), IPIP_PORT, IpAddr::V4(OUTER4), Encap::Ipip),
        tunnel_service(
            IpAddr::V4(VIP),
            GUE_SVC_PORT,
            IpAddr::V4(OUTER4),
            Encap::Gue { port: GUE_PORT },
        ),
        tunnel_service(IpAddr::V6(VIP6), IPIP_PORT, IpAddr::V6(OUTER6), Encap::Ipip),
        tunnel_service(
            IpAddr::V6(VIP6),
            GUE_SVC_PORT,
            IpAddr::V6(OUTER6),
            Encap::Gue { port: GUE_PORT },
        ),
    ]);
    fx.dp
        .set_tunnel_sources(&[(IpAddr::V4(SRC4), 24), (IpAddr::V6(SRC6), 120)])
        .expect("TUNNEL_SOURCES");
    fx
}

/// Run `test` with a fresh fixture inside a fresh namespace.
fn in_namespace(test: impl FnOnce(Fixture) + Send + 'static) {
    let ns = namespace();
    ns.run(move || test(fixture()));
}

fn u16_at(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// A TCP segment from the client to `port` on the VIP of the family, with `payload`
/// bytes of payload.
fn client_tcp(v4: bool, sport: u16, port: u16, payload: usize) -> Frame {
    let f = Frame::eth(OUR_MAC, CLIENT_MAC);
    let f = if v4 {
        f.ipv4(CLIENT, VIP)
    } else {
        f.ipv6(CLIENT6, VIP6)
    };
    f.tcp(sport, port).psh_ack().payload(&vec![0x5a; payload])
}

/// The flow's tunnel hash, from the client's address and port in `frame`.
fn flow_hash(frame: &[u8]) -> u32 {
    let v4 = u16_at(frame, 12) == 0x0800;
    let mut client = [0u8; 16];
    let sport = if v4 {
        client[..4].copy_from_slice(&frame[26..30]);
        [frame[34], frame[35]]
    } else {
        client.copy_from_slice(&frame[22..38]);
        [frame[54], frame[55]]
    };
    fo_common::tunnel_hash(&client, u16::from_ne_bytes(sport))
}

/// What the program must send for the client's `frame`: the IP packet inside an outer
/// header (and UDP + GUE), to the next hop. Built from the RFCs' layouts.
fn encapsulated(frame: &[u8], gue: bool) -> Vec<u8> {
    let v4 = u16_at(frame, 12) == 0x0800;
    let inner_len = if v4 {
        usize::from(u16_at(frame, 16))
    } else {
        usize::from(u16_at(frame, 18)) + 40
    };
    let inner = &frame[14..14 + inner_len];
    let h = flow_hash(frame);
    let host = (h & 0xff) as u8;
    let sport = 0x8000 | ((h >> 16) as u16 & 0x7fff);
    let mut gue_part = Vec::new();
    if gue {
        let udp_len = (8 + 4 + inner_len) as u16;
        gue_part.extend_from_slice(&sport.to_be_bytes());
        gue_part.extend_from_slice(&GUE_PORT.to_be_bytes());
        gue_part.extend_from_slice(&udp_len.to_be_bytes());
        gue_part.extend_from_slice(&[0, 0]);
        gue_part.extend_from_slice(&[0, if v4 { 4 } else { 41 }, 0, 0]);
        gue_part.extend_from_slice(inner);
    }
    let mut out;
    if v4 {
        out = frames::eth(HOP_MAC, OUR_MAC, 0x0800);
        let payload = if gue { gue_part.len() } else { inner_len };
        let total = (20 + payload) as u16;
        let mut ip = vec![0x45, inner[1]];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, if gue { 17 } else { 4 }, 0, 0]);
        ip.extend_from_slice(&[10, 9, 0, host]);
        ip.extend_from_slice(&OUTER4.octets());
        let c = frames::fold(frames::sum16(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&ip);
    } else {
        out = frames::eth(HOP_MAC, OUR_MAC, 0x86dd);
        let tc = (inner[0] << 4) | (inner[1] >> 4);
        let fl = h & 0xf_ffff;
        let payload = if gue { gue_part.len() } else { inner_len };
        let mut src = SRC6.octets();
        src[15] = host;
        let mut ip = vec![
            0x60 | (tc >> 4),
            (tc << 4) | (fl >> 16) as u8,
            (fl >> 8) as u8,
            fl as u8,
        ];
        ip.extend_from_slice(&(payload as u16).to_be_bytes());
        ip.extend_from_slice(&[if gue { 17 } else { 41 }, 64]);
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&OUTER6.octets());
        if gue {
            // The UDP checksum over IPv6: pseudo-header and the whole datagram.
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src);
            pseudo.extend_from_slice(&OUTER6.octets());
            pseudo.extend_from_slice(&(payload as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
            let mut c = frames::fold(frames::sum16(&pseudo) + frames::sum16(&gue_part));
            if c == 0 {
                c = 0xffff;
            }
            gue_part[6..8].copy_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&ip);
    }
    if gue {
        out.extend_from_slice(&gue_part);
    } else {
        out.extend_from_slice(inner);
    }
    out
}

/// The ICMP error the program must send the client for its `frame`: from the VIP,
/// MTU `mtu`, quoting the IP header and 8 bytes, back to the client's MAC.
fn too_big(frame: &[u8], mtu: u16) -> Vec<u8> {
    let v4 = u16_at(frame, 12) == 0x0800;
    if v4 {
        let quote = &frame[14..14 + 28];
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(quote);
        let c = frames::fold(frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&frame[30..34]);
        ip.extend_from_slice(&frame[26..30]);
        let c = frames::fold(frames::sum16(&ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(CLIENT_MAC, OUR_MAC, 0x0800);
        out.extend_from_slice(&ip);
        out.extend_from_slice(&icmp);
        out
    } else {
        let quote = &frame[14..14 + 48];
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&u32::from(mtu).to_be_bytes());
        icmp.extend_from_slice(quote);
        let (client, vip) = (&frame[22..38], &frame[38..54]);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(vip);
        pseudo.extend_from_slice(client);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        let c = frames::fold(frames::sum16(&pseudo) + frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(CLIENT_MAC, OUR_MAC, 0x86dd);
        out.extend_from_slice(&[0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 64]);
        out.extend_from_slice(vip);
        out.extend_from_slice(client);
        out.extend_from_slice(&icmp);
        out
    }
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    action: u32,
    output: Vec<u8>,
    counter: &'static str,
}

fn encap_case(what: &'static str, input: Vec<u8>, gue: bool) -> Case {
    Case {
        what,
        output: encapsulated(&input, gue),
        input,
        action: XDP_TX,
        counter: "tunnel_encap",
    }
}

fn too_big_case(what: &'static str, input: Vec<u8>, mtu: u16) -> Case {
    Case {
        what,
        output: too_big(&input, mtu),
        input,
        action: XDP_TX,
        counter: "tunnel_too_big",
    }
}

/// IPv4 packet lengths: 20 IP + 20 TCP + payload. IPv6: 40 + 20 + payload.
fn cases() -> Vec<Case> {
    let v4 = |sport, port, payload| client_tcp(true, sport, port, payload).build();
    let v6 = |sport, port, payload| client_tcp(false, sport, port, payload).build();
    let syn4 = Frame::eth(OUR_MAC, CLIENT_MAC)
        .ipv4(CLIENT, VIP)
        .tcp(40000, IPIP_PORT)
        .syn()
        .build();
    let mut no_df = v4(40001, IPIP_PORT, 1441);
    no_df[20] = 0; // DF clear
    let c = frames::fold(frames::sum16(
        &[&no_df[14..24], &[0, 0], &no_df[26..34]].concat(),
    ));
    no_df[24..26].copy_from_slice(&c.to_be_bytes());
    let mut padded = syn4.clone();
    padded.extend_from_slice(&[0; 6]); // Ethernet's 60-byte minimum
    vec![
        encap_case("IPIP: a SYN", syn4, false),
        encap_case(
            "IPIP: Ethernet padding stays out of the tunnel",
            padded,
            false,
        ),
        encap_case(
            "IPIP: a data segment of the flow",
            v4(40000, IPIP_PORT, 100),
            false,
        ),
        encap_case("GUE over IPv4", v4(40002, GUE_SVC_PORT, 100), true),
        encap_case("IP6IP6", v6(40003, IPIP_PORT, 100), false),
        encap_case("GUE over IPv6", v6(40004, GUE_SVC_PORT, 100), true),
        encap_case(
            "IPIP: 1480 bytes fit a 1500 MTU once encapsulated",
            v4(40005, IPIP_PORT, 1440),
            false,
        ),
        too_big_case(
            "IPIP: 1481 bytes do not: frag needed, MTU 1480",
            v4(40005, IPIP_PORT, 1441),
            1480,
        ),
        encap_case(
            "GUE/IPv4: 1468 bytes fit",
            v4(40006, GUE_SVC_PORT, 1428),
            true,
        ),
        too_big_case(
            "GUE/IPv4: 1469 do not: MTU 1468",
            v4(40006, GUE_SVC_PORT, 1429),
            1468,
        ),
        encap_case("IP6IP6: 1460 bytes fit", v6(40007, IPIP_PORT, 1400), false),
        too_big_case(
            "IP6IP6: 1461 do not: packet too big, MTU 1460",
            v6(40007, IPIP_PORT, 1401),
            1460,
        ),
        encap_case(
            "GUE/IPv6: 1448 bytes fit",
            v6(40008, GUE_SVC_PORT, 1388),
            true,
        ),
        too_big_case(
            "GUE/IPv6: 1449 do not: MTU 1448",
            v6(40008, GUE_SVC_PORT, 1389),
            1448,
        ),
        Case {
            what: "too big with DF clear: passed to the kernel untouched",
            output: no_df.clone(),
            input: no_df,
            action: XDP_PASS,
            counter: "tunnel_too_big_no_df",
        },
    ]
}

const CASES: usize = 15;

fn run_cases(fx: &mut Fixture, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let before = fx.counter(case.counter);
        let run = fx.run(&case.input);
        let after = fx.counter(case.counter);
        if run.action != case.action {
            failures.push(format!(
                "{}: expected action {}, got {}",
                case.what, case.action, run.action
            ));
        } else if run.frame != case.output {
            failures.push(format!(
                "{}: output differs\n  expected {:02x?}\n  got      {:02x?}",
                case.what, case.output, run.frame
            ));
        } else if after != before + 1 {
            failures.push(format!(
                "{}: counter {} went {before} -> {after}",
                case.what, case.counter
            ));
        }
    }
    failures
}

#[test]
fn every_row_of_the_tunnel_table() {
    in_namespace(|mut fx| {
        let cases = cases();
        assert_eq!(cases.len(), CASES, "rows in the table");
        let failures = run_cases(&mut fx, &cases);
        assert!(
            failures.is_empty(),
            "{} rows failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

#[test]
fn flows_spread_over_outer_sources_and_ports_and_each_keeps_its_own() {
    in_namespace(|mut fx| {
        let mut sources = std::collections::BTreeSet::new();
        let mut ports = std::collections::BTreeSet::new();
        let mut flow_labels = std::collections::BTreeSet::new();
        for sport in 41000..41064u16 {
            let f = client_tcp(true, sport, GUE_SVC_PORT, 10).build();
            let first = fx.run(&f);
            let again = fx.run(&f);
            assert_eq!(first.action, XDP_TX);
            assert_eq!(first.frame, again.frame, "one flow keeps its outer header");
            assert_eq!(first.frame, encapsulated(&f, true));
            sources.insert(first.frame[26..30].to_vec());
            ports.insert(u16_at(&first.frame, 34));
            let f6 = client_tcp(false, sport, IPIP_PORT, 10).build();
            let out6 = fx.run(&f6);
            assert_eq!(out6.frame, encapsulated(&f6, false));
            sources.insert(out6.frame[22..38].to_vec());
            flow_labels.insert(out6.frame[15..18].to_vec());
        }
        // 64 flows per family over 256 sources each: about 57 distinct per family.
        assert!(
            sources.len() > 2 * 45,
            "{} distinct sources of 128",
            sources.len()
        );
        assert!(ports.len() > 60, "{} distinct GUE ports of 64", ports.len());
        assert!(
            flow_labels.len() > 60,
            "{} flow labels of 64",
            flow_labels.len()
        );
    });
}

/// A path router's "fragmentation needed" about an encapsulated packet, quoting `quote`
/// bytes of it (from its outer header on), to its outer source.
fn router_error(encapsulated: &[u8], mtu: u16, quote: usize) -> Vec<u8> {
    let v4 = u16_at(encapsulated, 12) == 0x0800;
    let quoted = &encapsulated[14..(14 + quote).min(encapsulated.len())];
    if v4 {
        let tunnel_src = Ipv4Addr::new(
            encapsulated[26],
            encapsulated[27],
            encapsulated[28],
            encapsulated[29],
        );
        let mut icmp = vec![3, 4, 0, 0, 0, 0];
        icmp.extend_from_slice(&mtu.to_be_bytes());
        icmp.extend_from_slice(quoted);
        let c = frames::fold(frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(OUR_MAC, HOP_MAC, 0x0800);
        out.extend_from_slice(&frames::ipv4_header(ROUTER, tunnel_src, 1, icmp.len()));
        out.extend_from_slice(&icmp);
        out
    } else {
        let mut tunnel_src = [0u8; 16];
        tunnel_src.copy_from_slice(&encapsulated[22..38]);
        let mut icmp = vec![2, 0, 0, 0];
        icmp.extend_from_slice(&u32::from(mtu).to_be_bytes());
        icmp.extend_from_slice(quoted);
        let mut pseudo = ROUTER6.octets().to_vec();
        pseudo.extend_from_slice(&tunnel_src);
        pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        let c = frames::fold(frames::sum16(&pseudo) + frames::sum16(&icmp));
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut out = frames::eth(OUR_MAC, HOP_MAC, 0x86dd);
        out.extend_from_slice(&frames::ipv6_header(
            ROUTER6,
            Ipv6Addr::from(tunnel_src),
            58,
            icmp.len(),
            64,
        ));
        out.extend_from_slice(&icmp);
        out
    }
}

#[test]
fn a_path_routers_too_big_reaches_the_client() {
    in_namespace(|mut fx| {
        let mut failures = Vec::new();
        // (what, client frame, gue, router's MTU, MTU the client must get)
        let table: [(&str, Vec<u8>, bool, u16, u16); 4] = [
            (
                "IPIP, router MTU 1400",
                client_tcp(true, 42000, IPIP_PORT, 1300).build(),
                false,
                1400,
                1380,
            ),
            (
                "GUE/IPv4, router MTU 1400",
                client_tcp(true, 42001, GUE_SVC_PORT, 1300).build(),
                true,
                1400,
                1368,
            ),
            (
                "IP6IP6, router MTU 1400",
                client_tcp(false, 42002, IPIP_PORT, 1300).build(),
                false,
                1400,
                1360,
            ),
            (
                "GUE/IPv6, router MTU 1400",
                client_tcp(false, 42003, GUE_SVC_PORT, 1300).build(),
                true,
                1400,
                1348,
            ),
        ];
        for (what, client, gue, router_mtu, client_mtu) in table {
            let sent = fx.run(&client);
            assert_eq!(sent.action, XDP_TX, "{what}: encapsulated");
            assert_eq!(sent.frame, encapsulated(&client, gue), "{what}");
            // Routers quote 576 bytes (IPv4) or up to 1280 (IPv6) of the packet.
            let quote = if u16_at(&client, 12) == 0x0800 {
                548
            } else {
                1232
            };
            let error = router_error(&sent.frame, router_mtu, quote);
            let before = fx.counter("tunnel_icmp_relayed");
            let run = fx.run(&error);
            let expected = too_big(&client, client_mtu);
            if run.action != XDP_REDIRECT {
                failures.push(format!("{what}: action {} (want redirect)", run.action));
            } else if run.frame != expected {
                failures.push(format!(
                    "{what}: relayed error differs\n  expected {expected:02x?}\n  got      {:02x?}",
                    run.frame
                ));
            } else if fx.counter("tunnel_icmp_relayed") != before + 1 {
                failures.push(format!("{what}: not counted"));
            }
            // Cut short (only the outer header and 8 bytes, RFC 792's minimum): passed.
            let short = router_error(&sent.frame, router_mtu, if gue { 40 } else { 28 });
            let run = fx.run(&short);
            if run.action != XDP_PASS || run.frame != short {
                failures.push(format!("{what}: a short quote must pass untouched"));
            }
        }
        // About a packet to an address that is no VIP of ours (a forged quote): passed,
        // never relayed from that address.
        let client = client_tcp(true, 42010, IPIP_PORT, 300).build();
        let sent = fx.run(&client);
        let mut forged = router_error(&sent.frame, 1400, 548);
        // The quoted inner destination: Ethernet, IPv4 and ICMP headers, outer header.
        let at = 14 + 20 + 8 + 20 + 16;
        forged[at..at + 4].copy_from_slice(&[192, 0, 2, 55]);
        forged[36..38].copy_from_slice(&[0, 0]);
        let c = frames::fold(frames::sum16(&forged[34..]));
        forged[36..38].copy_from_slice(&c.to_be_bytes());
        let run = fx.run(&forged);
        if run.action != XDP_PASS || run.frame != forged {
            failures.push("an error about a packet to no VIP must pass untouched".into());
        }
        // An echo request to a tunnel source is not ours to relay.
        let ping = Frame::eth(OUR_MAC, HOP_MAC)
            .ipv4(ROUTER, Ipv4Addr::new(10, 9, 0, 7))
            .icmp_echo()
            .build();
        let before = fx.counter("tunnel_icmp");
        let run = fx.run(&ping);
        if run.action != XDP_PASS || run.frame != ping || fx.counter("tunnel_icmp") != before + 1 {
            failures.push("an echo request to a tunnel source must pass, counted".into());
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    });
}

/// scapy (Debian's python3-scapy) reads each encapsulated frame: outer header valid
/// (checksum recomputed equal, lengths, TTL 64, DF), GUE header, and the inner packet
/// identical to the client's, its own checksums still valid.
const SCAPY_CHECK: &str = r#"
import sys
from scapy.all import Ether, IP, IPv6, UDP, TCP, raw
bad = []
for n, line in enumerate(sys.stdin):
    kind, out_hex, in_hex = line.split()
    out, inp = bytes.fromhex(out_hex), bytes.fromhex(in_hex)
    e = Ether(out)
    outer = e.payload
    def recomputed(layer, field):
        c = layer.copy(); setattr(c, field, None)
        return getattr(layer.__class__(raw(c)), field)
    if isinstance(outer, IP):
        if outer.chksum != recomputed(outer, 'chksum'): bad.append((n, 'outer IPv4 checksum'))
        if outer.ttl != 64 or outer.flags != 'DF' or outer.len != len(raw(outer)): bad.append((n, 'outer IPv4 fields'))
        want = 17 if kind == 'gue' else 4
    else:
        if outer.hlim != 64 or outer.plen != len(raw(outer.payload)): bad.append((n, 'outer IPv6 fields'))
        want = 17 if kind == 'gue' else 41
    if (outer.proto if isinstance(outer, IP) else outer.nh) != want: bad.append((n, 'outer protocol'))
    if kind == 'gue':
        udp = outer[UDP]
        if udp.dport != 6080 or udp.sport < 32768 or udp.len != len(raw(udp)): bad.append((n, 'UDP header'))
        if isinstance(outer, IP):
            if udp.chksum != 0: bad.append((n, 'IPv4 GUE sends UDP checksum 0'))
        elif udp.chksum != recomputed(udp, 'chksum'): bad.append((n, 'IPv6 UDP checksum'))
        g = raw(udp.payload)
        if g[0] != 0 or g[1] != (4 if isinstance(outer, IP) else 41) or g[2:4] != b'\0\0': bad.append((n, 'GUE header'))
        inner = g[4:]
    else:
        inner = raw(outer.payload)
    if inner != inp[14:14 + len(inner)] or len(inner) < 40: bad.append((n, 'inner packet differs'))
    ip = (IP if inner[0] >> 4 == 4 else IPv6)(inner)
    if isinstance(ip, IP) and ip.chksum != recomputed(ip, 'chksum'): bad.append((n, 'inner IPv4 checksum'))
    t = ip[TCP]
    if t.chksum != recomputed(t, 'chksum'): bad.append((n, 'inner TCP checksum'))
print(bad)
sys.exit(1 if bad else 0)
"#;

#[test]
fn scapy_reads_the_encapsulated_frames_as_the_kernel_would() {
    let lines = Netns::new("tdpscapy").run(|| {
        let mut fx = fixture();
        let mut lines = String::new();
        for case in cases().into_iter().filter(|c| c.counter == "tunnel_encap") {
            let run = fx.run(&case.input);
            assert_eq!(run.action, XDP_TX, "{}", case.what);
            let gue = u16_at(
                &case.input,
                if u16_at(&case.input, 12) == 0x0800 {
                    36
                } else {
                    56
                },
            ) == GUE_SVC_PORT;
            lines.push_str(&format!(
                "{} {} {}\n",
                if gue { "gue" } else { "ipip" },
                hex(&run.frame),
                hex(&case.input)
            ));
        }
        lines
    });
    assert_eq!(lines.lines().count(), 10, "encapsulated frames checked");
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCAPY_CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt-get install python3-scapy; cargo xtask setup does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write frames");
    let out = child.wait_with_output().expect("scapy");
    assert!(
        out.status.success(),
        "scapy found faults: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The backends' program: the object loaded alone, its maps pinned in a directory of
/// the test's own, removed when dropped.
struct Decap {
    ebpf: aya::Ebpf,
    dir: std::path::PathBuf,
}

impl Drop for Decap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(DECAP_ADDRS_MAP));
        let _ = std::fs::remove_file(self.dir.join(DECAP_STATS_MAP));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Decap {
    fn load(gue_port: u16, local: &[IpAddr]) -> Decap {
        let dir = std::path::PathBuf::from(format!("/sys/fs/bpf/tdp-decap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pin directory");
        let ebpf = aya::EbpfLoader::new()
            .default_map_pin_directory(&dir)
            .override_global(DECAP_GUE_PORT_GLOBAL, &gue_port, true)
            .load(DECAP_OBJECT);
        let mut decap = Decap {
            ebpf: ebpf.expect("load fo-decap"),
            dir,
        };
        let ebpf = &mut decap.ebpf;
        // Besides the globals' section (read-only data), two maps.
        let mut sorted: Vec<String> = ebpf
            .maps()
            .map(|(n, _)| n.to_string())
            .filter(|n| !n.starts_with('.'))
            .collect();
        sorted.sort();
        assert_eq!(
            sorted,
            [DECAP_ADDRS_MAP, DECAP_STATS_MAP],
            "fo-decap has its two maps and no other"
        );
        {
            let mut addrs: HashMap<&mut MapData, VipKey, u32> =
                HashMap::try_from(ebpf.map_mut(DECAP_ADDRS_MAP).expect("map")).expect("type");
            for a in local {
                addrs.insert(&VipKey::new(*a), &1, 0).expect("DECAP_ADDRS");
            }
        }
        let prog: &mut aya::programs::Xdp = ebpf
            .program_mut(DECAP_PROGRAM)
            .expect("program")
            .try_into()
            .expect("XDP");
        prog.load().expect("verifier");
        decap
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &mut aya::programs::Xdp = self
            .ebpf
            .program_mut(DECAP_PROGRAM)
            .expect("program")
            .try_into()
            .expect("XDP");
        let mut out = vec![0u8; frame.len() + 256];
        use aya::programs::TestRun as _;
        let r = prog
            .test_run(aya::programs::TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn stat(&self, slot: u32) -> u64 {
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(DECAP_STATS_MAP).expect("map")).expect("type");
        stats.get(&slot, 0).expect("DECAP_STATS").iter().sum()
    }
}

#[test]
fn the_decapsulation_program_strips_only_what_is_addressed_to_it() {
    fo_tests::require_root();
    // Frames the load balancer sends (from its own table), to decapsulate.
    let sent: Vec<(Vec<u8>, Vec<u8>, u32)> = Netns::new("tdpdecap").run(|| {
        let mut fx = fixture();
        cases()
            .into_iter()
            .filter(|c| c.counter == "tunnel_encap")
            .map(|c| {
                let run = fx.run(&c.input);
                let gue = run.frame[23] == 17 || run.frame[20] == 17;
                (c.input, run.frame, if gue { DECAP_GUE } else { DECAP_IPIP })
            })
            .collect()
    });
    let mut decap = Decap::load(GUE_PORT, &[IpAddr::V4(OUTER4), IpAddr::V6(OUTER6)]);
    let mut failures = Vec::new();
    for (n, (client, encapsulated, slot)) in sent.iter().enumerate() {
        let before = decap.stat(*slot);
        let (action, out) = decap.run(encapsulated);
        // The inner packet behind the next hop's Ethernet header (the backend's MAC and
        // the hop's, as they arrived).
        let mut want = encapsulated[..12].to_vec();
        let ip_len = if u16_at(client, 12) == 0x0800 {
            usize::from(u16_at(client, 16))
        } else {
            usize::from(u16_at(client, 18)) + 40
        };
        want.extend_from_slice(&client[12..14 + ip_len]);
        if action != XDP_PASS || out != want {
            failures.push(format!("frame {n}: not decapsulated\n  {out:02x?}"));
        } else if decap.stat(*slot) != before + 1 {
            failures.push(format!("frame {n}: not counted"));
        }
    }
    // Not ours: another outer destination, another UDP port, plain TCP, a truncated
    // tunnel packet, GUE with optional fields.
    let (_, ipip, _) = &sent[0];
    let mut other_dst = ipip.clone();
    other_dst[33] = 99;
    let gue = sent
        .iter()
        .find(|(_, f, s)| *s == DECAP_GUE && u16_at(f, 12) == 0x0800)
        .expect("a GUE frame")
        .1
        .clone();
    let mut other_port = gue.clone();
    other_port[36..38].copy_from_slice(&6081u16.to_be_bytes());
    let mut with_options = gue.clone();
    with_options[42] = 1;
    let plain = sent[0].0.clone();
    let passes = [
        ("another outer destination", other_dst, true),
        ("another UDP port", other_port, false),
        ("plain TCP", plain, false),
        ("cut short", ipip[..34].to_vec(), true),
        ("GUE with optional fields", with_options, true),
    ];
    for (what, frame, counted) in passes {
        let before = decap.stat(DECAP_PASS_OTHER);
        let (action, out) = decap.run(&frame);
        if action != XDP_PASS || out != frame {
            failures.push(format!("{what}: must pass untouched"));
        }
        let expected = before + u64::from(counted);
        if decap.stat(DECAP_PASS_OTHER) != expected {
            failures.push(format!("{what}: pass_other counter"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
