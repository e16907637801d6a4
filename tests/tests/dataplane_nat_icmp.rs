//! ICMP errors through NAT (`fo-ebpf/src/nat_icmp.rs`), through BPF_PROG_TEST_RUN on
//! the real object, with exact expected frames built independently (`frames`):
//! - an error from a router on the backend's path (or the backend) to the SNAT
//!   address, quoting the translated packet, reaches the client as VIP -> client,
//!   quoting the client's own packet;
//! - an error from a client to the VIP, quoting a reply it got, reaches the backend
//!   as SNAT -> backend, quoting the backend's packet;
//! - a client without a neighbour entry gets it at the MAC its frames came from;
//! - whole and partial quotes (the quoted transport checksum is translated when the
//!   quote holds it), TCP (established and embryonic) and UDP (with and without a
//!   checksum);
//! - what is not translated passes untouched, counted: queries, cut-short or
//!   malformed errors, errors about no known connection.
//!
//! The runs happen in a namespace with the NAT fuzz fixture's FIB (as
//! `dataplane_nat.rs`).

use std::net::Ipv4Addr;

use fo_common::xdp_action::{XDP_PASS, XDP_REDIRECT};
use fo_tests::fixture::Fixture;
use fo_tests::frames::{self, Mac, Tcp4};
use fo_tests::netns::Netns;
use fo_tests::xdp_oracle::nat::{
    self as nat_oracle, BACKEND, CLIENT, CLIENT_MAC, D0_MAC, GW_MAC, NatVerdict, SNAT, VIP,
};

const TCP_PORT: u16 = nat_oracle::SERVICES[0].1;
const TCP_BACKEND_PORT: u16 = nat_oracle::SERVICES[0].2;
const UDP_PORT: u16 = nat_oracle::SERVICES[1].1;
const UDP_BACKEND_PORT: u16 = nat_oracle::SERVICES[1].2;
/// The backends' gateway: the router that sends frag needed / time exceeded.
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// A client with no neighbour entry on the node (as in `dataplane_nat.rs`).
const CLIENT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
const CLIENT2_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x02];
const CLIENT_ISN: u32 = 1000;
const BACKEND_ISN: u32 = 5000;
/// Frag needed, next-hop MTU 1400.
const FRAG_NEEDED: (u8, u8, [u8; 4]) = (3, 4, [0, 0, 0x05, 0x78]);
const PORT_UNREACHABLE: (u8, u8, [u8; 4]) = (3, 3, [0; 4]);
const TTL_EXCEEDED: (u8, u8, [u8; 4]) = (11, 0, [0; 4]);

fn in_fib(test: impl FnOnce(Fixture) + Send + 'static) {
    let ns = Netns::new("nixfib");
    ns.sh(&nat_oracle::fib_setup());
    ns.run(move || test(nat_oracle::fixture()));
}

/// A client's segment to the VIP, as it arrives, and as the backend gets it.
fn c2v(sport: u16) -> Tcp4 {
    Tcp4::new((D0_MAC, CLIENT_MAC), (CLIENT, sport), (VIP, TCP_PORT))
}
fn s2b(snat_port: u16) -> Tcp4 {
    Tcp4::new(
        (GW_MAC, D0_MAC),
        (SNAT, snat_port),
        (BACKEND, TCP_BACKEND_PORT),
    )
}
/// A backend's segment to the SNAT address, and as the client gets it.
fn b2s(snat_port: u16) -> Tcp4 {
    Tcp4::new(
        (D0_MAC, GW_MAC),
        (BACKEND, TCP_BACKEND_PORT),
        (SNAT, snat_port),
    )
}
fn v2c(sport: u16) -> Tcp4 {
    Tcp4::new((CLIENT_MAC, D0_MAC), (VIP, TCP_PORT), (CLIENT, sport))
}

/// A SYN through the program: the SNAT port it was given.
fn syn(fx: &mut Fixture, sport: u16) -> u16 {
    let run = fx.run(&c2v(sport).flags(frames::TCP_SYN).frame());
    assert_eq!(run.action, XDP_REDIRECT, "SYN {sport}");
    u16::from_be_bytes([run.frame[34], run.frame[35]])
}

/// A whole handshake: the SNAT port.
fn handshake(fx: &mut Fixture, sport: u16) -> u16 {
    let p = syn(fx, sport);
    let syn_ack = b2s(p)
        .flags(frames::TCP_SYN | frames::TCP_ACK)
        .seq(BACKEND_ISN)
        .ack(CLIENT_ISN + 1)
        .frame();
    assert_eq!(fx.run(&syn_ack).action, XDP_REDIRECT, "SYN-ACK {sport}");
    let ack = c2v(sport)
        .flags(frames::TCP_ACK)
        .seq(CLIENT_ISN + 1)
        .ack(BACKEND_ISN + 1)
        .frame();
    assert_eq!(fx.run(&ack).action, XDP_REDIRECT, "ACK {sport}");
    p
}

/// A UDP datagram through the program: the SNAT port it was given.
fn udp_flow(fx: &mut Fixture, sport: u16, payload: &[u8]) -> u16 {
    let dg = frames::udp4(D0_MAC, CLIENT_MAC, CLIENT, VIP, sport, UDP_PORT, payload);
    let run = fx.run(&dg);
    assert_eq!(run.action, XDP_REDIRECT, "UDP {sport}");
    u16::from_be_bytes([run.frame[34], run.frame[35]])
}

/// An error `(type, code, rest)` quoting `quote_len` bytes of `quoted`.
fn error(
    macs: (Mac, Mac),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    kind: (u8, u8, [u8; 4]),
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    frames::icmp4_error(macs, src, dst, kind.0, kind.1, kind.2, quoted, quote_len)
}

/// `input` must come out as `output`, sent (`XDP_REDIRECT`), counted as `counter`,
/// with valid checksums, and be what the fuzz oracle calls `verdict`.
#[track_caller]
fn expect_translated(
    fx: &mut Fixture,
    what: &str,
    input: &[u8],
    output: &[u8],
    counter: &str,
    verdict: NatVerdict,
) {
    let before = fx.counter(counter);
    let run = fx.run(input);
    assert_eq!(run.action, XDP_REDIRECT, "{what}: action");
    assert_eq!(
        run.frame, output,
        "{what}: output frame\n  expected {output:02x?}\n  got      {:02x?}",
        run.frame
    );
    assert!(
        frames::icmp4_checksums_ok(&run.frame),
        "{what}: outer IPv4, ICMP or quoted IPv4 checksum does not verify"
    );
    assert_eq!(fx.counter(counter), before + 1, "{what}: counter {counter}");
    assert_eq!(
        nat_oracle::check(input, &run),
        Ok(verdict),
        "{what}: the fuzz oracle's view"
    );
}

#[track_caller]
fn expect_passed(fx: &mut Fixture, what: &str, input: &[u8], counter: &str) {
    let before = fx.counter(counter);
    let run = fx.run(input);
    assert_eq!(run.action, XDP_PASS, "{what}: action");
    assert_eq!(run.frame, input, "{what}: passed untouched");
    assert_eq!(fx.counter(counter), before + 1, "{what}: counter {counter}");
}

#[test]
fn errors_from_the_backends_path_reach_the_client_exact_frames() {
    in_fib(|mut fx| {
        let p = handshake(&mut fx, 40000);
        // A large data segment, as the client sent it and as the router saw it (small
        // enough that the whole of it quoted still fits d0's MTU).
        let data = |t: Tcp4| {
            t.flags(frames::TCP_PSH_ACK)
                .seq(CLIENT_ISN + 1)
                .ack(BACKEND_ISN + 1)
                .payload(&[0x5a; 1200])
        };
        let sent = data(s2b(p)).frame();
        let original = data(c2v(40000)).frame();
        // Quotes: 28 bytes (RFC 792: header + 8: no TCP checksum), 38 (the TCP
        // checksum just inside), 548 (a Linux router: up to 576 bytes in all), whole.
        for quote in [28, 38, 548, original.len() - 14] {
            let input = error((D0_MAC, GW_MAC), (GW, SNAT), FRAG_NEEDED, &sent, quote);
            let output = error(
                (CLIENT_MAC, D0_MAC),
                (VIP, CLIENT),
                FRAG_NEEDED,
                &original,
                quote,
            );
            expect_translated(
                &mut fx,
                &format!("frag needed quoting {quote} bytes"),
                &input,
                &output,
                "nat_icmp_to_client",
                NatVerdict::IcmpToClient,
            );
            if quote == original.len() - 14 {
                assert!(
                    frames::ipv4_checksums_ok(&frames::icmp4_quoted_frame(&output)),
                    "the whole quote's TCP checksum verifies"
                );
            }
        }

        // An embryonic connection (SYN only): time exceeded about its SYN.
        let q = syn(&mut fx, 40001);
        let syn_sent = s2b(q).flags(frames::TCP_SYN).frame();
        let syn_orig = c2v(40001).flags(frames::TCP_SYN).frame();
        expect_translated(
            &mut fx,
            "time exceeded about an embryonic connection's SYN",
            &error((D0_MAC, GW_MAC), (GW, SNAT), TTL_EXCEEDED, &syn_sent, 28),
            &error(
                (CLIENT_MAC, D0_MAC),
                (VIP, CLIENT),
                TTL_EXCEEDED,
                &syn_orig,
                28,
            ),
            "nat_icmp_to_client",
            NatVerdict::IcmpToClient,
        );

        // A client the kernel has no neighbour entry for: the error goes to the MAC
        // its frames came from (as its replies do). Parameter problem, pointer 8 (the
        // quoted TTL): the pointer stays, the quoted header keeps its layout.
        let run = fx.run(
            &Tcp4::new((D0_MAC, CLIENT2_MAC), (CLIENT2, 40002), (VIP, TCP_PORT))
                .flags(frames::TCP_SYN)
                .frame(),
        );
        assert_eq!(run.action, XDP_REDIRECT, "SYN of CLIENT2");
        let p2 = u16::from_be_bytes([run.frame[34], run.frame[35]]);
        let problem = (12, 0, [8, 0, 0, 0]);
        expect_translated(
            &mut fx,
            "parameter problem about a connection of a client without a neighbour entry",
            &error(
                (D0_MAC, GW_MAC),
                (GW, SNAT),
                problem,
                &s2b(p2).flags(frames::TCP_SYN).frame(),
                28,
            ),
            &error(
                (CLIENT2_MAC, D0_MAC),
                (VIP, CLIENT2),
                problem,
                &Tcp4::new((D0_MAC, CLIENT2_MAC), (CLIENT2, 40002), (VIP, TCP_PORT))
                    .flags(frames::TCP_SYN)
                    .frame(),
                28,
            ),
            "nat_icmp_to_client",
            NatVerdict::IcmpToClient,
        );

        // UDP: port unreachable from the backend itself (its daemon is down).
        let u = udp_flow(&mut fx, 5140, b"<13>line");
        let dg_sent = frames::udp4(
            GW_MAC,
            D0_MAC,
            SNAT,
            BACKEND,
            u,
            UDP_BACKEND_PORT,
            b"<13>line",
        );
        let dg_orig = frames::udp4(D0_MAC, CLIENT_MAC, CLIENT, VIP, 5140, UDP_PORT, b"<13>line");
        let whole = dg_orig.len() - 14;
        let output = error(
            (CLIENT_MAC, D0_MAC),
            (VIP, CLIENT),
            PORT_UNREACHABLE,
            &dg_orig,
            whole,
        );
        expect_translated(
            &mut fx,
            "port unreachable from the backend about a UDP datagram",
            &error(
                (D0_MAC, GW_MAC),
                (BACKEND, SNAT),
                PORT_UNREACHABLE,
                &dg_sent,
                whole,
            ),
            &output,
            "nat_icmp_to_client",
            NatVerdict::IcmpToClient,
        );
        assert!(
            frames::ipv4_checksums_ok(&frames::icmp4_quoted_frame(&output)),
            "the quoted UDP checksum verifies"
        );

        // UDP without a checksum: it stays without one.
        let mut bare_sent = dg_sent.clone();
        bare_sent[40..42].copy_from_slice(&[0, 0]);
        let mut bare_orig = dg_orig.clone();
        bare_orig[40..42].copy_from_slice(&[0, 0]);
        expect_translated(
            &mut fx,
            "port unreachable about a UDP datagram without a checksum",
            &error(
                (D0_MAC, GW_MAC),
                (BACKEND, SNAT),
                PORT_UNREACHABLE,
                &bare_sent,
                whole,
            ),
            &error(
                (CLIENT_MAC, D0_MAC),
                (VIP, CLIENT),
                PORT_UNREACHABLE,
                &bare_orig,
                whole,
            ),
            "nat_icmp_to_client",
            NatVerdict::IcmpToClient,
        );
    });
}

#[test]
fn errors_from_clients_reach_the_backend_exact_frames() {
    in_fib(|mut fx| {
        let p = handshake(&mut fx, 40010);
        // The backend's data segment as the client got it, and as the backend sent it.
        let data = |t: Tcp4| {
            t.flags(frames::TCP_PSH_ACK)
                .seq(BACKEND_ISN + 1)
                .ack(CLIENT_ISN + 1)
                .payload(b"event 1\n")
        };
        let got = data(v2c(40010)).frame();
        let sent = data(b2s(p)).frame();
        for quote in [28, got.len() - 14] {
            expect_translated(
                &mut fx,
                &format!("host unreachable from the client quoting {quote} bytes"),
                &error(
                    (D0_MAC, CLIENT_MAC),
                    (CLIENT, VIP),
                    (3, 1, [0; 4]),
                    &got,
                    quote,
                ),
                &error(
                    (GW_MAC, D0_MAC),
                    (SNAT, BACKEND),
                    (3, 1, [0; 4]),
                    &sent,
                    quote,
                ),
                "nat_icmp_to_backend",
                NatVerdict::IcmpToBackend,
            );
        }

        // UDP: the client's port is closed (the reply came too late).
        let u = udp_flow(&mut fx, 5141, b"<13>a");
        let reply = b"ok";
        let got = frames::udp4(CLIENT_MAC, D0_MAC, VIP, CLIENT, UDP_PORT, 5141, reply);
        let sent = frames::udp4(D0_MAC, GW_MAC, BACKEND, SNAT, UDP_BACKEND_PORT, u, reply);
        let whole = got.len() - 14;
        expect_translated(
            &mut fx,
            "port unreachable from the client about a UDP reply",
            &error(
                (D0_MAC, CLIENT_MAC),
                (CLIENT, VIP),
                PORT_UNREACHABLE,
                &got,
                whole,
            ),
            &error(
                (GW_MAC, D0_MAC),
                (SNAT, BACKEND),
                PORT_UNREACHABLE,
                &sent,
                whole,
            ),
            "nat_icmp_to_backend",
            NatVerdict::IcmpToBackend,
        );
    });
}

#[test]
fn what_is_not_a_nat_connections_error_passes_untouched() {
    in_fib(|mut fx| {
        let p = handshake(&mut fx, 40020);
        let sent = s2b(p).flags(frames::TCP_ACK).frame();
        let gw = (D0_MAC, GW_MAC);

        // A query (echo request) to the SNAT address and to the VIP: as before.
        for dst in [SNAT, VIP] {
            let echo = error(gw, (GW, dst), (8, 0, [0, 1, 0, 1]), &sent, 28);
            expect_passed(&mut fx, "echo request", &echo, "not_tcp_udp");
        }
        // No known connection: another SNAT port, another backend port, a reply
        // tuple quoted towards the VIP for a client port that has none.
        let other_port = s2b(p.wrapping_add(1)).flags(frames::TCP_ACK).frame();
        let input = error(gw, (GW, SNAT), FRAG_NEEDED, &other_port, 28);
        expect_passed(
            &mut fx,
            "error about another SNAT port",
            &input,
            "nat_icmp_no_flow",
        );
        let other_backend = Tcp4::new((GW_MAC, D0_MAC), (SNAT, p), (BACKEND, 9))
            .flags(frames::TCP_ACK)
            .frame();
        let input = error(gw, (GW, SNAT), FRAG_NEEDED, &other_backend, 28);
        expect_passed(
            &mut fx,
            "error about another backend port",
            &input,
            "nat_icmp_no_flow",
        );
        let stranger = v2c(40999).flags(frames::TCP_ACK).frame();
        let input = error(
            (D0_MAC, CLIENT_MAC),
            (CLIENT, VIP),
            PORT_UNREACHABLE,
            &stranger,
            28,
        );
        expect_passed(
            &mut fx,
            "client's error about no connection",
            &input,
            "nat_icmp_no_flow",
        );

        // Cut short: a quote of 27 bytes; a frame shorter than its IPv4 length.
        let input = error(gw, (GW, SNAT), FRAG_NEEDED, &sent, 27);
        expect_passed(&mut fx, "quote of 27 bytes", &input, "nat_icmp_bad");
        let full = error(gw, (GW, SNAT), FRAG_NEEDED, &sent, 40);
        let cut = full[..full.len() - 4].to_vec();
        expect_passed(
            &mut fx,
            "frame cut short of its IPv4 length",
            &cut,
            "nat_icmp_bad",
        );

        // Not a TCP/UDP packet of this node: quoted IPv4 options, a later fragment,
        // an ICMP packet, a quote whose source is not the address the error came to.
        let mut opts = error(gw, (GW, SNAT), FRAG_NEEDED, &sent, 40);
        opts[42] = 0x46;
        expect_passed(&mut fx, "quote with IPv4 options", &opts, "nat_icmp_bad");
        let mut frag = error(gw, (GW, SNAT), FRAG_NEEDED, &sent, 40);
        frag[48..50].copy_from_slice(&[0x00, 0x10]);
        expect_passed(&mut fx, "quote of a later fragment", &frag, "nat_icmp_bad");
        let echo = error(gw, (SNAT, BACKEND), (8, 0, [0; 4]), &sent, 28);
        let input = error(gw, (GW, SNAT), FRAG_NEEDED, &echo, 28);
        expect_passed(&mut fx, "quote of an ICMP packet", &input, "nat_icmp_bad");
        let from_vip = Tcp4::new((GW_MAC, D0_MAC), (VIP, p), (BACKEND, TCP_BACKEND_PORT))
            .flags(frames::TCP_ACK)
            .frame();
        let input = error(gw, (GW, SNAT), FRAG_NEEDED, &from_vip, 28);
        expect_passed(
            &mut fx,
            "quote from another address",
            &input,
            "nat_icmp_bad",
        );

        assert_eq!(fx.counter("nat_icmp_to_client"), 0);
        assert_eq!(fx.counter("nat_icmp_to_backend"), 0);
        assert_eq!(fx.counter("aborted"), 0);
    });
}
