//! The XDP program, table-driven through BPF_PROG_TEST_RUN: each row is an input
//! frame, the expected action, the exact expected output frame and the counter
//! that must move. Runs the real compiled object in the real kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_common::{
    PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_PASS, XDP_TX},
};
use fo_tests::fixture::{Fixture, OUR_MAC, backend, service};
use fo_tests::frames::{self, Mac};

const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
const BACKEND_MAC: Mac = [0x02, 0xbe, 0, 0, 0, 0x01];
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP_UNOWNED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);
const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const BACKEND6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21);

/// Loaded once per test: VIP and VIP6 owned, VIP_UNOWNED known but not owned,
/// services tcp/1514 and udp/514 on VIP and tcp/1514 on VIP6, one backend each.
fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    fx.dp
        .set_vip(
            IpAddr::V4(VIP_UNOWNED),
            false,
            fo_agent::dataplane::MonoNanos(0),
        )
        .expect("VIPS");
    let b4 = || vec![backend(IpAddr::V4(BACKEND), 1514, 1, BACKEND_MAC)];
    fx.services(&[
        service(IpAddr::V4(VIP), 1514, PROTO_TCP, b4()),
        service(
            IpAddr::V4(VIP),
            514,
            PROTO_UDP,
            vec![backend(IpAddr::V4(BACKEND), 514, 1, BACKEND_MAC)],
        ),
        service(IpAddr::V4(VIP_UNOWNED), 1514, PROTO_TCP, b4()),
        service(
            IpAddr::V6(VIP6),
            1514,
            PROTO_TCP,
            vec![backend(IpAddr::V6(BACKEND6), 1514, 1, BACKEND_MAC)],
        ),
    ]);
    fx
}

/// The frame with its MACs rewritten for DSR to the backend.
fn dsr(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&BACKEND_MAC);
    out[6..12].copy_from_slice(&OUR_MAC);
    out
}

struct Row {
    what: &'static str,
    input: Vec<u8>,
    action: u32,
    /// None: the output must equal the input (passed untouched).
    output: Option<Vec<u8>>,
    counter: &'static str,
}

fn pass(what: &'static str, input: Vec<u8>, counter: &'static str) -> Row {
    Row {
        what,
        input,
        action: XDP_PASS,
        output: None,
        counter,
    }
}

fn rows() -> Vec<Row> {
    let arp_req = |tpa| frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], tpa);
    let syn = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40000,
        1514,
        frames::TCP_SYN,
        b"",
    );
    let data = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40000,
        1514,
        frames::TCP_PSH_ACK,
        b"event 1\n",
    );
    let udp = frames::udp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        5140,
        514,
        b"<13>syslog line",
    );
    let syn6 = frames::tcp6(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT6,
        VIP6,
        40000,
        1514,
        frames::TCP_SYN,
        b"",
    );

    let mut options = syn.clone();
    options[14] = 0x46; // IHL 6: one word of options (the bytes are the TCP header's, which is fine here)
    let mut fragment = data.clone();
    fragment[20] = 0x20; // MF
    let mut later_fragment = data.clone();
    later_fragment[20] = 0x00;
    later_fragment[21] = 0x10; // offset 16 * 8
    let mut vlan = frames::eth(OUR_MAC, CLIENT_MAC, 0x8100);
    vlan.extend_from_slice(&[0x00, 0x0a, 0x08, 0x00]);
    vlan.extend_from_slice(&syn[14..]);
    let mut ext6 = syn6.clone();
    ext6[20] = 60; // destination options header
    let mut not_ip = frames::eth(OUR_MAC, CLIENT_MAC, 0x88cc); // LLDP
    not_ip.extend_from_slice(&[0u8; 46]);

    vec![
        Row {
            what: "ARP request for an owned VIP gets an exact reply",
            input: arp_req(VIP),
            action: XDP_TX,
            output: Some(frames::arp(2, OUR_MAC, VIP, CLIENT_MAC, CLIENT)),
            counter: "arp_reply",
        },
        pass(
            "ARP request for a VIP not owned now",
            arp_req(VIP_UNOWNED),
            "not_owned",
        ),
        pass(
            "ARP request for another address",
            arp_req(OTHER),
            "arp_other",
        ),
        pass(
            "gratuitous ARP for the VIP (a peer announcing)",
            frames::arp(1, CLIENT_MAC, VIP, [0; 6], VIP),
            "arp_other",
        ),
        pass(
            "ARP reply about the VIP",
            frames::arp(2, CLIENT_MAC, CLIENT, OUR_MAC, VIP),
            "arp_other",
        ),
        Row {
            what: "NS for an owned IPv6 VIP gets an exact NA",
            input: frames::neighbor_solicit(CLIENT_MAC, CLIENT6, VIP6, true),
            action: XDP_TX,
            output: Some(frames::neighbor_advert(OUR_MAC, VIP6, CLIENT_MAC, CLIENT6)),
            counter: "na_reply",
        },
        Row {
            what: "NS without a source link-layer option (frame grows to an NA)",
            input: frames::neighbor_solicit(CLIENT_MAC, CLIENT6, VIP6, false),
            action: XDP_TX,
            output: Some(frames::neighbor_advert(OUR_MAC, VIP6, CLIENT_MAC, CLIENT6)),
            counter: "na_reply",
        },
        pass(
            "NS for duplicate address detection (from ::)",
            frames::neighbor_solicit(CLIENT_MAC, Ipv6Addr::UNSPECIFIED, VIP6, false),
            "nd_other",
        ),
        pass(
            "NS for another IPv6 address",
            frames::neighbor_solicit(CLIENT_MAC, CLIENT6, CLIENT6, true),
            "nd_other",
        ),
        Row {
            what: "TCP SYN to a service goes to its backend (DSR)",
            input: syn.clone(),
            action: XDP_TX,
            output: Some(dsr(&syn)),
            counter: "tx",
        },
        Row {
            what: "a later segment of the flow, payload untouched",
            input: data.clone(),
            action: XDP_TX,
            output: Some(dsr(&data)),
            counter: "flow_hit",
        },
        Row {
            what: "UDP to a service",
            input: udp.clone(),
            action: XDP_TX,
            output: Some(dsr(&udp)),
            counter: "tx",
        },
        Row {
            what: "TCP SYN to an IPv6 service",
            input: syn6.clone(),
            action: XDP_TX,
            output: Some(dsr(&syn6)),
            counter: "tx",
        },
        pass(
            "TCP to a port with no service",
            frames::tcp4(
                OUR_MAC,
                CLIENT_MAC,
                CLIENT,
                VIP,
                40000,
                22,
                frames::TCP_SYN,
                b"",
            ),
            "no_service",
        ),
        pass(
            "UDP to the TCP service port",
            frames::udp4(OUR_MAC, CLIENT_MAC, CLIENT, VIP, 5140, 1514, b"x"),
            "no_service",
        ),
        pass(
            "TCP to a service on a VIP not owned",
            frames::tcp4(
                OUR_MAC,
                CLIENT_MAC,
                CLIENT,
                VIP_UNOWNED,
                40000,
                1514,
                frames::TCP_SYN,
                b"",
            ),
            "not_owned",
        ),
        pass(
            "TCP to an address that is no VIP",
            frames::tcp4(
                OUR_MAC,
                CLIENT_MAC,
                CLIENT,
                OTHER,
                40000,
                1514,
                frames::TCP_SYN,
                b"",
            ),
            "not_vip",
        ),
        // A frame shorter than an Ethernet header never reaches XDP (drivers and
        // BPF_PROG_TEST_RUN both refuse it), so the shortest case is a bare header.
        pass(
            "Ethernet header alone, IPv4 EtherType",
            syn[..14].to_vec(),
            "truncated",
        ),
        pass(
            "Ethernet header alone, ARP EtherType",
            arp_req(VIP)[..14].to_vec(),
            "truncated",
        ),
        pass(
            "truncated ARP body",
            arp_req(VIP)[..14 + 20].to_vec(),
            "truncated",
        ),
        pass(
            "truncated Neighbor Solicitation",
            frames::neighbor_solicit(CLIENT_MAC, CLIENT6, VIP6, true)[..14 + 40 + 12].to_vec(),
            "truncated",
        ),
        pass(
            "truncated IPv4 header",
            syn[..14 + 12].to_vec(),
            "truncated",
        ),
        pass(
            "truncated IPv6 header",
            syn6[..14 + 30].to_vec(),
            "truncated",
        ),
        pass(
            "truncated TCP header",
            syn[..14 + 20 + 10].to_vec(),
            "truncated",
        ),
        pass(
            "truncated UDP header",
            udp[..14 + 20 + 6].to_vec(),
            "truncated",
        ),
        pass("IPv4 with options", options, "ip_options"),
        pass("IPv4 first fragment (MF)", fragment, "fragment"),
        pass("IPv4 later fragment (offset)", later_fragment, "fragment"),
        pass("802.1Q tagged frame", vlan, "vlan"),
        pass("IPv6 with an extension header", ext6, "ipv6_ext_header"),
        pass("neither IP nor ARP", not_ip, "not_ip"),
        pass(
            "ICMP echo to the VIP",
            {
                let mut f = frames::eth(OUR_MAC, CLIENT_MAC, 0x0800);
                f.extend(frames::ipv4_header(CLIENT, VIP, 1, 8));
                f.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
                f
            },
            "not_tcp_udp",
        ),
    ]
}

#[test]
fn every_row_of_the_table() {
    let mut fx = fixture();
    let mut failures = Vec::new();
    for row in rows() {
        let before = fx.counter(row.counter);
        let run = fx.run(&row.input);
        let expected = row.output.clone().unwrap_or_else(|| row.input.clone());
        let after = fx.counter(row.counter);
        if run.action != row.action {
            failures.push(format!(
                "{}: expected action {}, got {}",
                row.what, row.action, run.action
            ));
        } else if run.frame != expected {
            failures.push(format!(
                "{}: output frame differs\n  expected {:02x?}\n  got      {:02x?}",
                row.what, expected, run.frame
            ));
        } else if after != before + 1 {
            failures.push(format!(
                "{}: counter {} went {} -> {}, expected +1",
                row.what, row.counter, before, after
            ));
        }
        if row.counter == "na_reply"
            && run.action == XDP_TX
            && !frames::icmpv6_checksum_ok(&run.frame)
        {
            failures.push(format!(
                "{}: the NA's ICMPv6 checksum does not verify",
                row.what
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the table's rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dead_man_switch_stops_arp_but_not_forwarding() {
    let mut fx = fixture();
    // Lease already over: the agent stopped refreshing it.
    fx.dp
        .set_vip(IpAddr::V4(VIP), true, fo_agent::dataplane::MonoNanos::now())
        .expect("VIPS");
    let req = frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP);
    let run = fx.run(&req);
    assert_eq!(
        run.action, XDP_PASS,
        "ARP for a VIP whose lease ran out must pass, got {}",
        run.action
    );
    assert_eq!(run.frame, req, "the request must be passed untouched");
    assert_eq!(fx.counter("lease_expired"), 1);
    let syn = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40001,
        1514,
        frames::TCP_SYN,
        b"",
    );
    let run = fx.run(&syn);
    assert_eq!(
        run.action, XDP_TX,
        "packets that still reach a node whose lease ran out are still forwarded"
    );
}

#[test]
fn a_routed_vip_is_forwarded_but_never_answered_for() {
    // BGP ownership: the router routes the VIP to every node; no node may answer ARP.
    let mut fx = fixture();
    fx.dp.set_vip_routed(IpAddr::V4(VIP)).expect("VIPS");
    let req = frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP);
    let run = fx.run(&req);
    assert_eq!(
        run.action, XDP_PASS,
        "ARP for a routed VIP must pass, got {}",
        run.action
    );
    assert_eq!(run.frame, req, "the request must be passed untouched");
    assert_eq!(fx.counter("routed_vip"), 1);
    let syn = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40004,
        1514,
        frames::TCP_SYN,
        b"",
    );
    let run = fx.run(&syn);
    assert_eq!(run.action, XDP_TX, "a routed VIP's service is forwarded");
    assert_eq!(run.frame, dsr(&syn), "forwarded by DSR to the backend");
    // A copy flooded by a switch, addressed to another node's MAC, is not ours.
    let flooded = frames::tcp4(
        [0x02, 0xf0, 0, 0, 0, 0x99],
        CLIENT_MAC,
        CLIENT,
        VIP,
        40005,
        1514,
        frames::TCP_SYN,
        b"",
    );
    let run = fx.run(&flooded);
    assert_eq!(
        run.action, XDP_PASS,
        "a frame for another node's MAC must pass"
    );
    assert_eq!(run.frame, flooded, "passed untouched");
    assert_eq!(fx.counter("other_host"), 1);
}

#[test]
fn backend_counters_count_packets_and_bytes() {
    let mut fx = fixture();
    let data = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40002,
        1514,
        frames::TCP_PSH_ACK,
        b"0123456789",
    );
    for _ in 0..5 {
        assert_eq!(fx.run(&data).action, XDP_TX);
    }
    let slot = fx
        .table
        .slots()
        .into_iter()
        .find(|s| s.vip == IpAddr::V4(VIP) && s.port == 1514)
        .expect("slot of the tcp/1514 backend")
        .slot;
    let stats = fx.dp.backend_stats(slot).expect("BACKEND_STATS");
    assert_eq!(stats.packets, 5, "packets");
    assert_eq!(stats.bytes, 5 * data.len() as u64, "bytes");
}

#[test]
fn a_service_without_backends_passes() {
    let mut fx = fixture();
    fx.services(&[service(IpAddr::V4(VIP), 1514, PROTO_TCP, vec![])]);
    let syn = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40003,
        1514,
        frames::TCP_SYN,
        b"",
    );
    let run = fx.run(&syn);
    assert_eq!(run.action, XDP_PASS);
    assert_eq!(run.frame, syn);
    assert_eq!(fx.counter("no_backend"), 1);
}

/// A restarted agent reads every service's Maglev table back from the maps (in
/// batches); applying the same services then writes nothing.
#[test]
fn maglev_tables_read_back_from_the_maps_match_what_was_written() {
    let mut fx = Fixture::new(65_537);
    let be = |n: u8, w: u32| {
        backend(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20 + n)),
            1514,
            w,
            [0x02, 0xbe, 0, 0, 0, n],
        )
    };
    let specs = [
        service(
            IpAddr::V4(VIP),
            1514,
            PROTO_TCP,
            vec![be(1, 1), be(2, 1), be(3, 1)],
        ),
        service(IpAddr::V4(VIP), 1515, PROTO_TCP, vec![be(2, 3), be(4, 1)]),
        service(IpAddr::V6(VIP6), 1514, PROTO_TCP, vec![]),
    ];
    fx.services(&specs);
    let started = std::time::Instant::now();
    let mut table =
        fo_agent::dataplane::ServiceTable::from_dataplane(&fx.dp).expect("read the maps back");
    println!(
        "3 services × 65,537 Maglev entries read back in {:?}",
        started.elapsed()
    );
    assert_eq!(
        fo_agent::dataplane::batch_fallbacks(),
        0,
        "the batch lookup failed and the slow path read the tables"
    );
    let summary = table.apply(&mut fx.dp, &specs).expect("apply again");
    assert_eq!(
        summary.maglev_entries_written, 0,
        "the table read back must equal the one written: {summary:?}"
    );
}
