//! The XDP program's ARP and IPv6 Neighbor Discovery table, through BPF_PROG_TEST_RUN on
//! the real object: an owned VIP is answered exactly (and the NA's checksum verifies);
//! everything else about addresses passes to the kernel.

use std::net::Ipv6Addr;

use fo_tests::build::Frame;
use fo_tests::fixture::OUR_MAC;
use fo_tests::frames::{self, BROADCAST};
use fo_tests::table::{self, CLIENT, CLIENT_MAC, CLIENT6, OTHER, Row, VIP, VIP_UNOWNED, VIP6};

/// The table's rows; the count guards against a row lost in a move.
const ROWS: usize = 9;

/// A Neighbor Solicitation from `src` for `target`, to the target's solicited-node group.
fn ns(src: Ipv6Addr, target: Ipv6Addr) -> Frame {
    let group = frames::solicited_node(target);
    let o = group.octets();
    Frame::eth([0x33, 0x33, o[12], o[13], o[14], o[15]], CLIENT_MAC)
        .ipv6(src, group)
        .neighbor_solicit(target)
}

fn rows() -> Vec<Row> {
    let arp_req = |tpa| {
        Frame::eth(BROADCAST, CLIENT_MAC)
            .arp_request(CLIENT, tpa)
            .build()
    };
    vec![
        Row::new("ARP request for an owned VIP gets an exact reply")
            .input(arp_req(VIP))
            .tx(Frame::eth(CLIENT_MAC, OUR_MAC)
                .arp_reply(VIP, CLIENT_MAC, CLIENT)
                .build())
            .counts("arp_reply"),
        Row::new("ARP request for a VIP not owned now")
            .input(arp_req(VIP_UNOWNED))
            .counts("not_owned"),
        Row::new("ARP request for another address")
            .input(arp_req(OTHER))
            .counts("arp_other"),
        Row::new("gratuitous ARP for the VIP (a peer announcing)")
            .input(
                Frame::eth(BROADCAST, CLIENT_MAC)
                    .arp_request(VIP, VIP)
                    .build(),
            )
            .counts("arp_other"),
        Row::new("ARP reply about the VIP")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .arp_reply(CLIENT, OUR_MAC, VIP)
                    .build(),
            )
            .counts("arp_other"),
        Row::new("NS for an owned IPv6 VIP gets an exact NA")
            .input(ns(CLIENT6, VIP6).build())
            .tx(frames::neighbor_advert(OUR_MAC, VIP6, CLIENT_MAC, CLIENT6))
            .counts("na_reply"),
        Row::new("NS without a source link-layer option (frame grows to an NA)")
            .input(ns(CLIENT6, VIP6).without_slla().build())
            .tx(frames::neighbor_advert(OUR_MAC, VIP6, CLIENT_MAC, CLIENT6))
            .counts("na_reply"),
        Row::new("NS for duplicate address detection (from ::)")
            .input(ns(Ipv6Addr::UNSPECIFIED, VIP6).without_slla().build())
            .counts("nd_other"),
        Row::new("NS for another IPv6 address")
            .input(ns(CLIENT6, CLIENT6).build())
            .counts("nd_other"),
    ]
}

#[test]
fn every_row_of_the_table() {
    table::run_standard("ARP/ND", ROWS, &rows());
}
