//! What the XDP program leaves to the kernel, through BPF_PROG_TEST_RUN on the real object:
//! truncated frames, IPv4 options and fragments, VLAN tags, IPv6 extension headers, other
//! EtherTypes and other IP protocols all pass untouched, each counted under its reason.

use fo_tests::build::{DEST_OPTS, Frame};
use fo_tests::fixture::OUR_MAC;
use fo_tests::frames::BROADCAST;
use fo_tests::table::{self, CLIENT, CLIENT_MAC, CLIENT6, Row, VIP, VIP6};

/// The table's rows; the count guards against a row lost in a move.
const ROWS: usize = 15;

fn rows() -> Vec<Row> {
    let to_vip = || Frame::eth(OUR_MAC, CLIENT_MAC).ipv4(CLIENT, VIP);
    let syn = || to_vip().tcp(40000, 1514).syn();
    let udp = to_vip().udp(5140, 514).payload(b"<13>syslog line");
    let syn6 = || {
        Frame::eth(OUR_MAC, CLIENT_MAC)
            .ipv6(CLIENT6, VIP6)
            .tcp(40000, 1514)
            .syn()
    };
    let arp_req = Frame::eth(BROADCAST, CLIENT_MAC).arp_request(CLIENT, VIP);
    let group = fo_tests::frames::solicited_node(VIP6);
    let o = group.octets();
    let ns = Frame::eth([0x33, 0x33, o[12], o[13], o[14], o[15]], CLIENT_MAC)
        .ipv6(CLIENT6, group)
        .neighbor_solicit(VIP6);
    vec![
        // A frame shorter than an Ethernet header never reaches XDP (drivers and
        // BPF_PROG_TEST_RUN both refuse it), so the shortest case is a bare header.
        Row::new("Ethernet header alone, IPv4 EtherType")
            .input(syn().truncated(14))
            .counts("truncated"),
        Row::new("Ethernet header alone, ARP EtherType")
            .input(arp_req.clone().truncated(14))
            .counts("truncated"),
        Row::new("truncated ARP body")
            .input(arp_req.truncated(14 + 20))
            .counts("truncated"),
        Row::new("truncated Neighbor Solicitation")
            .input(ns.truncated(14 + 40 + 12))
            .counts("truncated"),
        Row::new("truncated IPv4 header")
            .input(syn().truncated(14 + 12))
            .counts("truncated"),
        Row::new("truncated IPv6 header")
            .input(syn6().truncated(14 + 30))
            .counts("truncated"),
        Row::new("truncated TCP header")
            .input(syn().truncated(14 + 20 + 10))
            .counts("truncated"),
        Row::new("truncated UDP header")
            .input(udp.truncated(14 + 20 + 6))
            .counts("truncated"),
        Row::new("IPv4 with options")
            .input(to_vip().ihl_words(6).tcp(40000, 1514).syn().build())
            .counts("ip_options"),
        Row::new("IPv4 first fragment (MF)")
            .input(
                to_vip()
                    .more_fragments()
                    .tcp(40000, 1514)
                    .psh_ack()
                    .payload(b"event 1\n")
                    .build(),
            )
            .counts("fragment"),
        Row::new("IPv4 later fragment (offset)")
            .input(
                to_vip()
                    .frag_offset(16)
                    .tcp(40000, 1514)
                    .psh_ack()
                    .payload(b"event 1\n")
                    .build(),
            )
            .counts("fragment"),
        Row::new("802.1Q tagged frame")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .vlan(10)
                    .ipv4(CLIENT, VIP)
                    .tcp(40000, 1514)
                    .syn()
                    .build(),
            )
            .counts("vlan"),
        Row::new("IPv6 with an extension header")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .ipv6(CLIENT6, VIP6)
                    .ext_header(DEST_OPTS)
                    .tcp(40000, 1514)
                    .syn()
                    .build(),
            )
            .counts("ipv6_ext_header"),
        Row::new("neither IP nor ARP")
            .input(
                Frame::eth(OUR_MAC, CLIENT_MAC)
                    .ether_type(0x88cc)
                    .payload(&[0u8; 46])
                    .build(),
            ) // LLDP
            .counts("not_ip"),
        Row::new("ICMP echo to the VIP")
            .input(to_vip().icmp_echo().build())
            .counts("not_tcp_udp"),
    ]
}

#[test]
fn every_row_of_the_table() {
    table::run_standard("pass", ROWS, &rows());
}
