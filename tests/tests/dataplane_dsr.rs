//! The XDP program's load-balancing table, through BPF_PROG_TEST_RUN on the real object:
//! TCP and UDP to a service go to its backend by DSR (MACs rewritten, the rest untouched),
//! and what is not a service on an owned VIP passes. Then the dead-man switch, routed
//! VIPs, backend counters and the Maglev table read back. (ARP/ND: `dataplane_arp_nd.rs`;
//! frames the program leaves to the kernel: `dataplane_pass.rs`.)

use std::net::{IpAddr, Ipv4Addr};

use fo_agent::dataplane::{Forwarded, MonoNanos};
use fo_common::PROTO_TCP;
use fo_common::xdp_action::{XDP_PASS, XDP_TX};
use fo_tests::build::Frame;
use fo_tests::fixture::{Fixture, OUR_MAC, backend, service};
use fo_tests::frames;
use fo_tests::table::{
    self, BACKEND_MAC, CLIENT, CLIENT_MAC, CLIENT6, OTHER, Row, VIP, VIP_UNOWNED, VIP6,
};

/// The table's rows; the count guards against a row lost in a move.
const ROWS: usize = 8;

fn fixture() -> Fixture {
    table::standard_fixture()
}

/// The frame with its MACs rewritten for DSR to the backend.
fn dsr(frame: &[u8]) -> Vec<u8> {
    fo_tests::build::dsr(frame, BACKEND_MAC, OUR_MAC)
}

/// A TCP segment from the client to the VIP's port 1514, to our MAC.
fn to_vip(sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frames::tcp4(
        OUR_MAC, CLIENT_MAC, CLIENT, VIP, sport, 1514, flags, payload,
    )
}

/// A row whose `frame` goes to the backend by DSR, counted as `counter`.
fn forwarded(what: &'static str, frame: Vec<u8>, counter: &'static str) -> Row {
    Row::new(what).tx(dsr(&frame)).input(frame).counts(counter)
}

fn rows() -> Vec<Row> {
    let to_vip = || Frame::eth(OUR_MAC, CLIENT_MAC).ipv4(CLIENT, VIP);
    let syn = to_vip().tcp(40000, 1514).syn().build();
    let data = to_vip()
        .tcp(40000, 1514)
        .psh_ack()
        .payload(b"event 1\n")
        .build();
    let udp = to_vip().udp(5140, 514).payload(b"<13>syslog line").build();
    let syn6 = Frame::eth(OUR_MAC, CLIENT_MAC)
        .ipv6(CLIENT6, VIP6)
        .tcp(40000, 1514)
        .syn()
        .build();
    vec![
        forwarded("TCP SYN to a service goes to its backend (DSR)", syn, "tx"),
        forwarded(
            "a later segment of the flow, payload untouched",
            data,
            "flow_hit",
        ),
        forwarded("UDP to a service", udp, "tx"),
        forwarded("TCP SYN to an IPv6 service", syn6, "tx"),
        Row::new("TCP to a port with no service")
            .input(to_vip().tcp(40000, 22).syn().build())
            .counts("no_service"),
        Row::new("UDP to the TCP service port")
            .input(to_vip().udp(5140, 1514).payload(b"x").build())
            .counts("no_service"),
        Row::new("TCP to a service on a VIP not owned")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .ipv4(CLIENT, VIP_UNOWNED)
                    .tcp(40000, 1514)
                    .syn()
                    .build(),
            )
            .counts("not_owned"),
        Row::new("TCP to an address that is no VIP")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .ipv4(CLIENT, OTHER)
                    .tcp(40000, 1514)
                    .syn()
                    .build(),
            )
            .counts("not_vip"),
    ]
}

#[test]
fn every_row_of_the_table() {
    table::run_standard("DSR", ROWS, &rows());
}

/// A client's ARP request for the VIP (which is `what`) is passed untouched, once,
/// and counted as `counter`.
fn arp_for_the_vip_passes(fx: &mut Fixture, what: &str, counter: &str) {
    let req = frames::arp(1, CLIENT_MAC, CLIENT, [0; 6], VIP);
    let run = fx.run(&req);
    assert_eq!(
        run.action, XDP_PASS,
        "ARP for {what} must pass, got {}",
        run.action
    );
    assert_eq!(run.frame, req, "the request must be passed untouched");
    assert_eq!(fx.counter(counter), 1, "{counter}");
}

#[test]
fn dead_man_switch_stops_arp_but_not_forwarding() {
    let mut fx = fixture();
    // Lease already over: the agent stopped refreshing it.
    fx.dp
        .set_vip(IpAddr::V4(VIP), true, fo_agent::dataplane::MonoNanos::now())
        .expect("VIPS");
    arp_for_the_vip_passes(&mut fx, "a VIP whose lease ran out", "lease_expired");
    let syn = to_vip(40001, frames::TCP_SYN, b"");
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
    arp_for_the_vip_passes(&mut fx, "a routed VIP", "routed_vip");
    let syn = to_vip(40004, frames::TCP_SYN, b"");
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
fn a_draining_vip_is_forwarded_but_never_answered_for() {
    // Make before break: another node has taken the VIP over; this one forwards what
    // still reaches it (hosts whose ARP cache has not followed yet), answers no ARP.
    let mut fx = fixture();
    fx.dp.set_vip_draining(IpAddr::V4(VIP)).expect("VIPS");
    arp_for_the_vip_passes(&mut fx, "a draining VIP", "not_owned");
    for (sport, flags) in [(40006, frames::TCP_PSH_ACK), (40007, frames::TCP_SYN)] {
        let frame = to_vip(sport, flags, b"");
        let run = fx.run(&frame);
        assert_eq!(run.action, XDP_TX, "a draining VIP's service is forwarded");
        assert_eq!(run.frame, dsr(&frame), "forwarded by DSR to the backend");
    }
}

/// The drill's reset counter: a client's RST to the VIP is forwarded always, counted
/// (`rst_to_vip`) only while the `DRILL` flag is set; other segments never.
#[test]
fn resets_to_the_vip_are_counted_only_while_a_drill_records() {
    let mut fx = fixture();
    let mut drill = Forwarded::open(fx.dp.pin_dir()).expect("COUNTERS, DRILL");
    let rst = to_vip(40008, frames::TCP_RST, b"");
    let data = to_vip(40008, frames::TCP_PSH_ACK, b"x");
    let counted = |drill: &Forwarded| drill.read().expect("COUNTERS").rst_to_vip;
    assert_eq!(fx.run(&rst).action, XDP_TX);
    assert_eq!(counted(&drill), 0, "no drill: not counted");
    drill.set_drill(true).expect("DRILL");
    assert_eq!(fx.run(&rst).action, XDP_TX);
    assert_eq!(fx.run(&data).action, XDP_TX);
    assert_eq!(counted(&drill), 1, "the RST, not the data segment");
    assert_eq!(fx.counter("rst_to_vip"), 1, "and in the counters' listing");
    drill.set_drill(false).expect("DRILL");
    assert_eq!(fx.run(&rst).action, XDP_TX);
    assert_eq!(counted(&drill), 1, "the drill over: not counted");
}

/// The drill's client record: a client's packets to an owned VIP land in
/// `DRILL_CLIENTS` (first packet's CLOCK_MONOTONIC time, packets) only while the
/// `DRILL` flag is set; packets to a VIP this node does not own never.
#[test]
fn clients_are_recorded_only_while_a_drill_records() {
    let mut fx = fixture();
    let mut drill = Forwarded::open(fx.dp.pin_dir()).expect("DRILL_CLIENTS");
    let data = to_vip(40009, frames::TCP_PSH_ACK, b"x");
    let unowned = frames::tcp4(
        OUR_MAC,
        CLIENT_MAC,
        OTHER,
        VIP_UNOWNED,
        40010,
        1514,
        frames::TCP_PSH_ACK,
        b"",
    );
    assert_eq!(fx.run(&data).action, XDP_TX);
    assert!(drill.clients().expect("read").is_empty(), "no drill: none");
    drill.set_drill(true).expect("DRILL");
    let before = MonoNanos::now().0;
    for _ in 0..3 {
        assert_eq!(fx.run(&data).action, XDP_TX);
    }
    let after = MonoNanos::now().0;
    assert_eq!(fx.run(&unowned).action, XDP_PASS);
    drill.set_drill(false).expect("DRILL");
    assert_eq!(fx.run(&data).action, XDP_TX);
    let clients = drill.clients().expect("read");
    assert_eq!(
        clients.len(),
        1,
        "only the client of the owned VIP: {clients:?}"
    );
    let (client, seen) = clients[0];
    assert_eq!(client, IpAddr::V4(CLIENT));
    assert_eq!(seen.packets, 3, "the packets while the drill recorded");
    assert!(
        (before..=after).contains(&seen.first_ns),
        "first packet at {} ns, sent between {before} and {after}",
        seen.first_ns
    );
    drill.clear_clients().expect("clear");
    assert!(drill.clients().expect("read").is_empty(), "cleared");
}

#[test]
fn backend_counters_count_packets_and_bytes() {
    let mut fx = fixture();
    let data = to_vip(40002, frames::TCP_PSH_ACK, b"0123456789");
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
    let syn = to_vip(40003, frames::TCP_SYN, b"");
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

/// `VIP_FILTER` holds a bit per VIP address, which addresses may share: removing one
/// VIP must leave the bit of another that shares it, or the program would pass that
/// VIP's traffic as no VIP's.
#[test]
fn removing_a_vip_keeps_the_filter_bit_another_vip_shares() {
    let vip_bit = |ip: Ipv4Addr| fo_common::vip_filter_bit(&fo_common::Addr::v4(ip.octets()));
    let twin = (0x0a00_0000u32..0x0b00_0000)
        .map(Ipv4Addr::from)
        .find(|&ip| vip_bit(ip) == vip_bit(VIP))
        .expect("an address in 10.0.0.0/8 with the VIP's filter bit");
    let mut fx = fixture();
    fx.own(IpAddr::V4(twin));
    fx.dp.remove_vip(IpAddr::V4(twin)).expect("remove the twin");
    let syn = to_vip(40005, frames::TCP_SYN, b"");
    let run = fx.run(&syn);
    assert_eq!(
        run.action, XDP_TX,
        "the VIP ({VIP}) must still be served after {twin}, which shares its filter bit, went"
    );
    assert_eq!(fx.counter("not_vip"), 0, "not_vip");
}
