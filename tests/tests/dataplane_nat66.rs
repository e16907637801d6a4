//! NAT66 in the XDP program, through BPF_PROG_TEST_RUN on the real object: both
//! directions of a TCP handshake and of a UDP exchange with exact output frames (the
//! expected ones built independently by `build::Frame`, which computes every checksum
//! over the IPv6 pseudo-header from scratch), the connection's entries, and a UDP
//! datagram without a checksum (illegal in IPv6) passed untouched.
//!
//! The program asks the kernel's FIB for next hops, so every run happens inside a
//! network namespace made for the test (prefix `n6x`): an interface `d0` (a veth)
//! with 2001:db8::1/64 and our MAC, the clients' prefix 2001:db8:c::/64 on-link, the
//! backends' prefix fd00:1::/64 through the gateway 2001:db8::fe, IPv6 forwarding
//! on, and permanent neighbour entries.

use std::net::{IpAddr, Ipv6Addr};

use fo_agent::dataplane::NatSpec;
use fo_common::{
    Addr, FAMILY_V6, FlowKey, NAT_TCP_ESTABLISHED, NAT_TCP_SYN, NAT_UDP, PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use fo_tests::build::Frame;
use fo_tests::fixture::{Fixture, backend, service};
use fo_tests::frames::{self, Mac};
use fo_tests::netns::Netns;

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const SNAT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50);
const BACKEND: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0x21);
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 7);
const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
const D0_MAC: Mac = [0x02, 0xf0, 0, 0, 0, 0x02];
const GW_MAC: Mac = [0x02, 0x99, 0, 0, 0, 0xfe];
const TCP_PORT: u16 = 1514;
const TCP_BACKEND_PORT: u16 = 11514;
const UDP_PORT: u16 = 514;
const UDP_BACKEND_PORT: u16 = 5514;

fn mac(m: Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Run `test` in a fresh namespace with the FIB above.
fn in_fib(test: impl FnOnce(Fixture) + Send + 'static) {
    let ns = Netns::new("n6xfib");
    ns.sh(&format!(
        "ip link set lo up \
         && ip link add d0 type veth peer name d0p && ip link set d0 address {} \
         && ip link set d0 up && ip link set d0p up \
         && ip -6 addr add 2001:db8::1/64 dev d0 nodad \
         && ip -6 route add 2001:db8:c::/64 dev d0 \
         && ip -6 route add fd00:1::/64 via 2001:db8::fe dev d0 \
         && ip -6 neigh add 2001:db8::fe lladdr {} dev d0 nud permanent \
         && ip -6 neigh add {CLIENT} lladdr {} dev d0 nud permanent \
         && sysctl -qw net.ipv6.conf.all.forwarding=1 \
         && sysctl -qw net.ipv6.conf.d0.forwarding=1",
        mac(D0_MAC),
        mac(GW_MAC),
        mac(CLIENT_MAC)
    ));
    ns.run(move || test(fixture()));
}

/// VIP with NAT66 services tcp/1514 -> BACKEND:11514 and udp/514 -> BACKEND:5514,
/// SNAT address owned.
fn fixture() -> Fixture {
    let mut fx = Fixture::with_nat_table(251, 1024);
    let d0 = fo_agent::dataplane::ifindex("d0").expect("d0");
    fx.dp.set_iface(d0, D0_MAC).expect("IFACES");
    fx.dp
        .set_vip_role(IpAddr::V6(VIP), true, false)
        .expect("role");
    fx.dp
        .set_vip_role(IpAddr::V6(SNAT), false, true)
        .expect("role");
    fx.own(IpAddr::V6(VIP));
    fx.own(IpAddr::V6(SNAT));
    let specs: Vec<_> = [
        (PROTO_TCP, TCP_PORT, TCP_BACKEND_PORT),
        (PROTO_UDP, UDP_PORT, UDP_BACKEND_PORT),
    ]
    .iter()
    .map(|&(proto, port, bport)| {
        let mut s = service(
            IpAddr::V6(VIP),
            port,
            proto,
            vec![backend(IpAddr::V6(BACKEND), bport, 1, [0; 6])],
        );
        s.nat = Some(NatSpec {
            snat: vec![IpAddr::V6(SNAT)],
        });
        s
    })
    .collect();
    fx.services(&specs);
    fx
}

fn key(sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: Addr::v6(CLIENT.octets()),
        dst: Addr::v6(VIP.octets()),
        sport_be: sport.to_be(),
        dport_be: dport.to_be(),
        proto,
        family: FAMILY_V6,
        _pad: [0; 2],
    }
}

/// Client -> VIP, as it arrives.
fn c2v(sport: u16, dport: u16) -> Frame {
    Frame::eth(D0_MAC, CLIENT_MAC)
        .ipv6(CLIENT, VIP)
        .tcp(sport, dport)
}

/// SNAT -> backend, as the backend must receive it.
fn s2b(snat_port: u16, bport: u16) -> Frame {
    Frame::eth(GW_MAC, D0_MAC)
        .ipv6(SNAT, BACKEND)
        .tcp(snat_port, bport)
}

/// Backend -> SNAT, as it arrives.
fn b2s(bport: u16, snat_port: u16) -> Frame {
    Frame::eth(D0_MAC, GW_MAC)
        .ipv6(BACKEND, SNAT)
        .tcp(bport, snat_port)
}

/// VIP -> client, as the client must receive it.
fn v2c(dport: u16, sport: u16) -> Frame {
    Frame::eth(CLIENT_MAC, D0_MAC)
        .ipv6(VIP, CLIENT)
        .tcp(dport, sport)
}

#[test]
fn tcp_both_directions_with_port_translation_exact_frames() {
    in_fib(|mut fx| {
        // SYN: a SNAT port reserved, the frame translated towards the backend.
        let opts = [2, 4, 0x05, 0xa0, 1, 3, 3, 7];
        let syn = c2v(40000, TCP_PORT).syn().tcp_options(&opts);
        let run = fx.run(&syn.build());
        assert_eq!(
            run.action, XDP_REDIRECT,
            "SYN to a NAT66 service goes out d0"
        );
        let k = key(40000, TCP_PORT, PROTO_TCP);
        let table = fx.dp.nat_table().expect("NAT maps");
        let flow = table.flow(&k).expect("map").expect("an entry for the SYN");
        assert!(table.is_embryonic(&k).expect("map"));
        assert_eq!(flow.state, NAT_TCP_SYN);
        assert_eq!(flow.snat, Addr::v6(SNAT.octets()));
        assert_eq!(flow.backend, Addr::v6(BACKEND.octets()));
        assert_eq!(flow.client_mac, CLIENT_MAC);
        let sp = u16::from_be(flow.snat_port_be);
        assert!(sp >= 1024, "SNAT port {sp}");
        assert_eq!(
            run.frame,
            s2b(sp, TCP_BACKEND_PORT).syn().tcp_options(&opts).build(),
            "SYN as the backend must see it"
        );
        assert_eq!(
            table.reverse(&flow.reverse_key(&k)).expect("NAT_REV"),
            Some(k),
            "the reply tuple is reserved for this connection"
        );
        assert_eq!(fx.counter("nat_new"), 1);

        // SYN-ACK from the backend, back to VIP:1514 -> client.
        let syn_ack = |f: Frame| {
            f.flags(frames::TCP_SYN | frames::TCP_ACK)
                .seq(5000)
                .ack_number(1001)
                .tcp_options(&opts)
        };
        let run = fx.run(&syn_ack(b2s(TCP_BACKEND_PORT, sp)).build());
        assert_eq!(run.action, XDP_REDIRECT);
        assert_eq!(
            run.frame,
            syn_ack(v2c(TCP_PORT, 40000)).build(),
            "SYN-ACK as the client must see it"
        );
        assert_eq!(fx.counter("nat_reply"), 1);

        // The client's ACK: established, moved to the connection table, with data.
        let ack = |f: Frame| {
            f.flags(frames::TCP_ACK)
                .seq(1001)
                .ack_number(5001)
                .payload(b"hello over NAT66")
        };
        let run = fx.run(&ack(c2v(40000, TCP_PORT)).build());
        assert_eq!(run.action, XDP_REDIRECT);
        assert_eq!(run.frame, ack(s2b(sp, TCP_BACKEND_PORT)).build());
        let table = fx.dp.nat_table().expect("NAT maps");
        assert!(!table.is_embryonic(&k).expect("map"));
        assert_eq!(
            table.flow(&k).expect("map").expect("entry").state,
            NAT_TCP_ESTABLISHED
        );
        let flows = table.flows().expect("map");
        assert_eq!(flows.len(), 1, "the connection table holds it");
        assert_eq!(flows[0].0.family, FAMILY_V6);
        assert_eq!(fx.counter("nat_promoted"), 1);
    });
}

#[test]
fn udp_both_directions_exact_frames_and_no_checksum_passed() {
    in_fib(|mut fx| {
        let c2v = || {
            Frame::eth(D0_MAC, CLIENT_MAC)
                .ipv6(CLIENT, VIP)
                .udp(40001, UDP_PORT)
                .payload(b"<13>syslog over NAT66")
        };
        let run = fx.run(&c2v().build());
        assert_eq!(run.action, XDP_REDIRECT);
        let k = key(40001, UDP_PORT, PROTO_UDP);
        let flow = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .flow(&k)
            .expect("map")
            .expect("an entry for the datagram");
        assert_eq!(flow.state, NAT_UDP);
        let sp = u16::from_be(flow.snat_port_be);
        assert_eq!(
            run.frame,
            Frame::eth(GW_MAC, D0_MAC)
                .ipv6(SNAT, BACKEND)
                .udp(sp, UDP_BACKEND_PORT)
                .payload(b"<13>syslog over NAT66")
                .build()
        );
        let run = fx.run(
            &Frame::eth(D0_MAC, GW_MAC)
                .ipv6(BACKEND, SNAT)
                .udp(UDP_BACKEND_PORT, sp)
                .payload(b"ack")
                .build(),
        );
        assert_eq!(run.action, XDP_REDIRECT);
        assert_eq!(
            run.frame,
            Frame::eth(CLIENT_MAC, D0_MAC)
                .ipv6(VIP, CLIENT)
                .udp(UDP_PORT, 40001)
                .payload(b"ack")
                .build()
        );

        // A datagram whose checksum is zero (illegal in IPv6) goes to the kernel as it
        // came, and opens nothing.
        let mut bare = Frame::eth(D0_MAC, CLIENT_MAC)
            .ipv6(CLIENT, VIP)
            .udp(40002, UDP_PORT)
            .payload(b"x")
            .build();
        let at = 14 + 40 + 6;
        bare[at..at + 2].copy_from_slice(&[0, 0]);
        let bad = fx.counter("bad_ip");
        let run = fx.run(&bare);
        assert_eq!(run.action, XDP_PASS);
        assert_eq!(run.frame, bare, "passed untouched");
        assert_eq!(fx.counter("bad_ip"), bad + 1);
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&key(40002, UDP_PORT, PROTO_UDP))
                .expect("map"),
            None
        );
    });
}
