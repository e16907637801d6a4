//! The XDP program's 802.1Q table, through BPF_PROG_TEST_RUN on the real object: a VIP on
//! VLAN 100 is answered (ARP, NS) and balanced (DSR) for frames tagged 100 only, and what
//! is sent keeps the tag byte for byte; a tag that is not the VIP's VLAN, no tag for a
//! VLAN VIP, a tag for an untagged VIP, QinQ and priority tags all pass untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_common::{PROTO_TCP, PROTO_UDP};
use fo_tests::build::{Frame, dsr};
use fo_tests::fixture::{Fixture, OUR_MAC, backend, service};
use fo_tests::frames::{self, BROADCAST};
use fo_tests::table::{
    self, BACKEND, BACKEND_MAC, BACKEND6, CLIENT, CLIENT_MAC, CLIENT6, Row, VIP,
};

/// The table's rows; the count guards against a row lost in a move.
const ROWS: usize = 21;

const VLAN: u16 = 100;
const OTHER_VLAN: u16 = 200;
const VLAN_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 110);
const VLAN_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x110);

/// VIP untagged, VLAN_VIP and VLAN_VIP6 on VLAN 100; TCP 1514 on each and UDP 514 on
/// VLAN_VIP, one backend each.
fn fixture() -> Fixture {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own_on_vlan(IpAddr::V4(VLAN_VIP), VLAN);
    fx.own_on_vlan(IpAddr::V6(VLAN_VIP6), VLAN);
    let one =
        |vip, port, proto, to| service(vip, port, proto, vec![backend(to, port, 1, BACKEND_MAC)]);
    let (b4, b6) = (IpAddr::V4(BACKEND), IpAddr::V6(BACKEND6));
    fx.services(&[
        one(IpAddr::V4(VIP), 1514, PROTO_TCP, b4),
        one(IpAddr::V4(VLAN_VIP), 1514, PROTO_TCP, b4),
        one(IpAddr::V4(VLAN_VIP), 514, PROTO_UDP, b4),
        one(IpAddr::V6(VLAN_VIP6), 1514, PROTO_TCP, b6),
    ]);
    fx
}

/// `frame` with one more tag (`tpid`, `tci`) right after its MACs.
fn push_tag(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    [
        &frame[..12],
        &tpid.to_be_bytes()[..],
        &tci.to_be_bytes()[..],
        &frame[12..],
    ]
    .concat()
}

/// A Neighbor Solicitation from the client for `target`, to its solicited-node group.
fn ns(target: Ipv6Addr) -> Frame {
    let group = frames::solicited_node(target);
    let o = group.octets();
    Frame::eth([0x33, 0x33, o[12], o[13], o[14], o[15]], CLIENT_MAC)
        .ipv6(CLIENT6, group)
        .neighbor_solicit(target)
}

fn rows() -> Vec<Row> {
    let arp = |vlan: Option<u16>, tpa| {
        let f = Frame::eth(BROADCAST, CLIENT_MAC);
        let f = match vlan {
            Some(v) => f.vlan(v),
            None => f,
        };
        f.arp_request(CLIENT, tpa).build()
    };
    let syn = |vlan: Option<u16>, dst| {
        let f = Frame::eth(OUR_MAC, CLIENT_MAC);
        let f = match vlan {
            Some(v) => f.vlan(v),
            None => f,
        };
        f.ipv4(CLIENT, dst).tcp(40000, 1514).syn().build()
    };
    let tagged_syn = syn(Some(VLAN), VLAN_VIP);
    let tagged_data = Frame::eth(OUR_MAC, CLIENT_MAC)
        .vlan(VLAN)
        .ipv4(CLIENT, VLAN_VIP)
        .tcp(40000, 1514)
        .psh_ack()
        .payload(b"event 1\n")
        .build();
    let tagged_udp = Frame::eth(OUR_MAC, CLIENT_MAC)
        .vlan(VLAN)
        .ipv4(CLIENT, VLAN_VIP)
        .udp(5140, 514)
        .payload(b"<13>syslog line")
        .build();
    let tagged_syn6 = Frame::eth(OUR_MAC, CLIENT_MAC)
        .vlan(VLAN)
        .ipv6(CLIENT6, VLAN_VIP6)
        .tcp(40000, 1514)
        .syn()
        .build();
    // Priority 5 and DEI clear: the VLAN is the low 12 bits of the TCI.
    let prio_syn = Frame::eth(OUR_MAC, CLIENT_MAC)
        .vlan(0xa000 | VLAN)
        .ipv4(CLIENT, VLAN_VIP)
        .tcp(40001, 1514)
        .syn()
        .build();
    let na = frames::neighbor_advert(OUR_MAC, VLAN_VIP6, CLIENT_MAC, CLIENT6);
    let forwarded = |what, frame: Vec<u8>, counter| {
        Row::new(what)
            .tx(dsr(&frame, BACKEND_MAC, OUR_MAC))
            .input(frame)
            .counts(counter)
    };
    vec![
        Row::new("tagged ARP request for a VLAN VIP gets an exact tagged reply")
            .input(arp(Some(VLAN), VLAN_VIP))
            .tx(Frame::eth(CLIENT_MAC, OUR_MAC)
                .vlan(VLAN)
                .arp_reply(VLAN_VIP, CLIENT_MAC, CLIENT)
                .build())
            .counts("arp_reply"),
        Row::new("tagged NS for a VLAN VIP6 gets an exact tagged NA")
            .input(ns(VLAN_VIP6).vlan(VLAN).build())
            .tx(push_tag(&na, 0x8100, VLAN))
            .counts("na_reply"),
        Row::new("tagged NS without a source link-layer option (frame grows to a tagged NA)")
            .input(ns(VLAN_VIP6).vlan(VLAN).without_slla().build())
            .tx(push_tag(&na, 0x8100, VLAN))
            .counts("na_reply"),
        forwarded(
            "tagged TCP SYN to a VLAN VIP goes to its backend, tag kept (DSR)",
            tagged_syn.clone(),
            "tx",
        ),
        forwarded(
            "a later tagged segment of the flow follows the flow table",
            tagged_data,
            "flow_hit",
        ),
        forwarded("tagged UDP to a VLAN VIP's service", tagged_udp, "tx"),
        forwarded(
            "tagged TCP SYN to a VLAN VIP6 goes to its backend, tag kept",
            tagged_syn6,
            "tx",
        ),
        forwarded(
            "a tag with priority bits: served, TCI sent on as it came",
            prio_syn,
            "tx",
        ),
        Row::new("tagged TCP to a VLAN VIP's port without a service")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .vlan(VLAN)
                    .ipv4(CLIENT, VLAN_VIP)
                    .tcp(40000, 80)
                    .syn()
                    .build(),
            )
            .counts("no_service"),
        Row::new("ARP for a VLAN VIP tagged with another VLAN")
            .input(arp(Some(OTHER_VLAN), VLAN_VIP))
            .counts("vlan"),
        Row::new("TCP SYN to a VLAN VIP tagged with another VLAN")
            .input(syn(Some(OTHER_VLAN), VLAN_VIP))
            .counts("vlan"),
        Row::new("NS for a VLAN VIP6 tagged with another VLAN")
            .input(ns(VLAN_VIP6).vlan(OTHER_VLAN).build())
            .counts("vlan"),
        Row::new("untagged ARP for a VLAN VIP")
            .input(arp(None, VLAN_VIP))
            .counts("vlan"),
        Row::new("untagged TCP SYN to a VLAN VIP")
            .input(syn(None, VLAN_VIP))
            .counts("vlan"),
        Row::new("tagged ARP for an untagged VIP")
            .input(arp(Some(VLAN), VIP))
            .counts("vlan"),
        Row::new("tagged TCP SYN to an untagged VIP")
            .input(syn(Some(VLAN), VIP))
            .counts("vlan"),
        Row::new("QinQ: an 802.1ad tag outside the VLAN VIP's tag")
            .input(push_tag(&tagged_syn, 0x88a8, 10))
            .counts("vlan"),
        Row::new("two 802.1Q tags")
            .input(push_tag(&tagged_syn, 0x8100, VLAN))
            .counts("vlan"),
        Row::new("priority tag (VLAN 0) on a SYN to the untagged VIP")
            .input(syn(Some(0), VIP))
            .counts("vlan"),
        Row::new("a tag cut short by the end of the frame")
            .input(tagged_syn[..16].to_vec())
            .counts("truncated"),
        forwarded(
            "untagged TCP SYN to the untagged VIP: unchanged (DSR)",
            syn(None, VIP),
            "tx",
        ),
    ]
}

#[test]
fn every_row_of_the_table() {
    let rows = rows();
    assert_eq!(rows.len(), ROWS, "rows in the VLAN table");
    table::run(&mut fixture(), &rows);
}

/// A VLAN VIP with NAT in the data plane (which the config refuses) is never translated
/// from a tagged frame: NAT sends untagged frames only.
#[test]
fn a_tagged_frame_for_a_nat_vip_passes() {
    let mut fx = fixture();
    fx.dp
        .set_vip_role(IpAddr::V4(VLAN_VIP), true, false)
        .expect("VIPS role");
    let syn = Frame::eth(OUR_MAC, CLIENT_MAC)
        .vlan(VLAN)
        .ipv4(CLIENT, VLAN_VIP)
        .tcp(40000, 1514)
        .syn()
        .build();
    table::run(
        &mut fx,
        &[Row::new("tagged SYN to a VLAN VIP marked NAT")
            .input(syn)
            .counts("vlan")],
    );
}
