//! Full NAT in the XDP program, through BPF_PROG_TEST_RUN on the real object: both
//! directions with exact output frames (built independently by `frames`, checksums
//! verified by summing), port translation, TCP state and aging, table-full, and the
//! defences against spoofing: RSTs and FINs outside the tracked window, SYN and UDP
//! floods that must not crowd out the connections that prove their client.
//!
//! The program asks the kernel's FIB for next hops, so every run happens inside a
//! network namespace made for the test: an interface `d0` (a veth) (192.0.2.1/24, our
//! MAC), a gateway 192.0.2.254 to the backends' subnet 10.1.0.0/24, the client's
//! subnet on-link, forwarding on, and permanent neighbour entries.

use std::net::Ipv4Addr;
use std::time::Duration;

use aya::maps::{Array, HashMap, Map, MapData};

use fo_agent::dataplane::nat::NatTimeouts;
use fo_agent::dataplane::{Forwarded, MonoNanos};
use fo_common::{
    Addr, FAMILY_V4, FlowKey, NAT_TCP_CLOSED, NAT_TCP_ESTABLISHED, NAT_TCP_FIN, NAT_TCP_SYN,
    NAT_UDP, NatFlow, NatService, PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use fo_tests::fixture::Fixture;
use fo_tests::frames::{self, Mac, Tcp4};
use fo_tests::netns::Netns;
use fo_tests::rng::Rng;
use fo_tests::xdp_oracle::nat::{
    self as nat_oracle, BACKEND, CLIENT, CLIENT_MAC, D0_MAC, GW_MAC, SNAT, VIP,
};

/// Source MAC of frames from CLIENT2, which has no neighbour entry on the node.
const CLIENT2_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x02];
const CLIENT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
/// The fixture's TCP service: its port, and its backend's.
const TCP_PORT: u16 = nat_oracle::SERVICES[0].1;
const TCP_BACKEND_PORT: u16 = nat_oracle::SERVICES[0].2;
/// The fixture's UDP service: its port, and its backend's.
const UDP_PORT: u16 = nat_oracle::SERVICES[1].1;
const UDP_BACKEND_PORT: u16 = nat_oracle::SERVICES[1].2;
const FIN_ACK: u8 = frames::TCP_FIN | frames::TCP_ACK;
const SYN_ACK: u8 = frames::TCP_SYN | frames::TCP_ACK;

/// The namespace the test's runs happen in: the XDP fuzzer's NAT FIB.
fn fib_namespace() -> Netns {
    let ns = Netns::new("natfib");
    ns.sh(&nat_oracle::fib_setup());
    ns
}

/// Run `test` in a fresh [`fib_namespace`], after the shell commands `setup` there,
/// with a [`fixture`] whose NAT table holds `nat_table_size` connections.
fn in_fib(setup: &[&str], nat_table_size: u32, test: impl FnOnce(Fixture) + Send + 'static) {
    let ns = fib_namespace();
    for cmd in setup {
        ns.sh(cmd);
    }
    ns.run(move || test(fixture(nat_table_size)));
}

/// VIP with a NAT service tcp/1514 -> BACKEND:11514 and udp/514 -> BACKEND:5514,
/// SNAT address owned (the XDP fuzzer's NAT fixture).
fn fixture(nat_table_size: u32) -> Fixture {
    nat_oracle::fixture_with_table(nat_table_size)
}

fn key(client: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> FlowKey {
    FlowKey {
        src: Addr::v4(client.octets()),
        dst: Addr::v4(VIP.octets()),
        sport_be: sport.to_be(),
        dport_be: dport.to_be(),
        proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Client ISN of the handshakes here (`Tcp4`'s default sequence number).
const CLIENT_ISN: u32 = 1000;
/// Backend ISN of the handshakes here.
const BACKEND_ISN: u32 = 5000;
/// The window both sides advertise after the handshake (scale 7): 64,256 bytes.
const WIN: u16 = 502;

/// A client's segment to the VIP, as it arrives.
fn c2v(client: Ipv4Addr, mac: Mac, sport: u16) -> Tcp4 {
    Tcp4::new((D0_MAC, mac), (client, sport), (VIP, TCP_PORT))
}

/// That segment as the backend must receive it.
fn s2b(snat_port: u16) -> Tcp4 {
    Tcp4::new(
        (GW_MAC, D0_MAC),
        (SNAT, snat_port),
        (BACKEND, TCP_BACKEND_PORT),
    )
}

/// A backend's segment to the SNAT address, as it arrives.
fn b2s(snat_port: u16) -> Tcp4 {
    Tcp4::new(
        (D0_MAC, GW_MAC),
        (BACKEND, TCP_BACKEND_PORT),
        (SNAT, snat_port),
    )
}

/// That segment as the client must receive it.
fn v2c(client: Ipv4Addr, mac: Mac, sport: u16) -> Tcp4 {
    Tcp4::new((mac, D0_MAC), (VIP, TCP_PORT), (client, sport))
}

/// The backend's SYN-ACK of a handshake here.
fn syn_ack(t: Tcp4) -> Tcp4 {
    t.flags(SYN_ACK).seq(BACKEND_ISN).ack(CLIENT_ISN + 1)
}

/// The client's ACK that completes a handshake here.
fn handshake_ack(t: Tcp4) -> Tcp4 {
    t.flags(frames::TCP_ACK)
        .seq(CLIENT_ISN + 1)
        .ack(BACKEND_ISN + 1)
}

/// The MAC the frames of `client` come from.
fn mac_of(client: Ipv4Addr) -> Mac {
    if client == CLIENT2 {
        CLIENT2_MAC
    } else {
        CLIENT_MAC
    }
}

/// A three-way handshake through the program (window scale 7 both ways); returns the
/// connection's key and SNAT port. Asserts that it left the embryonic table.
fn handshake(fx: &mut Fixture, client: Ipv4Addr, sport: u16) -> (FlowKey, u16) {
    let mac = mac_of(client);
    let syn = c2v(client, mac, sport)
        .flags(frames::TCP_SYN)
        .options(&frames::linux_syn_options(7))
        .frame();
    assert_eq!(fx.run(&syn).action, XDP_REDIRECT, "SYN of {client}:{sport}");
    let k = key(client, sport, TCP_PORT, PROTO_TCP);
    let p = u16::from_be(flow_of(fx, &k).expect("an entry for the SYN").snat_port_be);
    let syn_ack = syn_ack(b2s(p))
        .options(&frames::linux_syn_options(7))
        .frame();
    assert_eq!(
        fx.run(&syn_ack).action,
        XDP_REDIRECT,
        "SYN-ACK of {client}:{sport}"
    );
    let ack = handshake_ack(c2v(client, mac, sport)).win(WIN).frame();
    assert_eq!(fx.run(&ack).action, XDP_REDIRECT, "ACK of {client}:{sport}");
    assert!(
        !is_embryonic(fx, &k),
        "{client}:{sport} completed its handshake but is still embryonic"
    );
    (k, p)
}

/// [`handshake`] of CLIENT without the checks, for bulk use: the SNAT port comes from
/// the translated SYN.
fn handshake_quiet(fx: &mut Fixture, sport: u16) -> (FlowKey, u16) {
    let syn = c2v(CLIENT, CLIENT_MAC, sport)
        .flags(frames::TCP_SYN)
        .frame();
    let run = fx.run(&syn);
    assert_eq!(run.action, XDP_REDIRECT, "SYN {sport}");
    let p = u16::from_be_bytes([run.frame[34], run.frame[35]]);
    let syn_ack = syn_ack(b2s(p)).frame();
    assert_eq!(fx.run(&syn_ack).action, XDP_REDIRECT, "SYN-ACK {sport}");
    let ack = handshake_ack(c2v(CLIENT, CLIENT_MAC, sport)).frame();
    assert_eq!(fx.run(&ack).action, XDP_REDIRECT, "ACK {sport}");
    (key(CLIENT, sport, TCP_PORT, PROTO_TCP), p)
}

/// Data both ways on an established connection (`n` bytes each, after `round` earlier
/// rounds): both must be translated exactly.
fn exchange(fx: &mut Fixture, client: Ipv4Addr, sport: u16, p: u16, round: u32) {
    let mac = mac_of(client);
    let n = 8u32;
    let (cseq, bseq) = (CLIENT_ISN + 1 + round * n, BACKEND_ISN + 1 + round * n);
    let line = b"event 1\n";
    let up = |t: Tcp4| {
        t.flags(frames::TCP_PSH_ACK)
            .seq(cseq)
            .ack(bseq)
            .win(WIN)
            .payload(line)
    };
    let down = |t: Tcp4| {
        t.flags(frames::TCP_PSH_ACK)
            .seq(bseq)
            .ack(cseq + n)
            .win(WIN)
            .payload(line)
    };
    let end = (client, mac, sport);
    expect_to_backend(fx, "client data", end, p, up, "nat_hit");
    expect_to_client(fx, "backend data", p, end, down);
}

/// The connection `k` in the NAT table, if any.
fn flow_of(fx: &Fixture, k: &FlowKey) -> Option<NatFlow> {
    fx.dp.nat_table().expect("NAT maps").flow(k).expect("map")
}

/// Whether `k` waits in the embryonic table.
fn is_embryonic(fx: &Fixture, k: &FlowKey) -> bool {
    fx.dp
        .nat_table()
        .expect("NAT maps")
        .is_embryonic(k)
        .expect("map")
}

/// The connection whose reply tuple is `rev`, if any.
fn reverse_of(fx: &Fixture, rev: &FlowKey) -> Option<FlowKey> {
    fx.dp
        .nat_table()
        .expect("NAT maps")
        .reverse(rev)
        .expect("map")
}

fn state_of(fx: &Fixture, k: &FlowKey) -> u8 {
    flow_of(fx, k)
        .unwrap_or_else(|| panic!("no NAT entry for {k:?}"))
        .state
}

fn client_tcp(src: Ipv4Addr, mac: Mac, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frames::tcp4(D0_MAC, mac, src, VIP, sport, TCP_PORT, flags, payload)
}

/// What the backend must receive for a client segment.
fn to_backend_tcp(snat_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frames::tcp4(
        GW_MAC,
        D0_MAC,
        SNAT,
        BACKEND,
        snat_port,
        TCP_BACKEND_PORT,
        flags,
        payload,
    )
}

fn from_backend_tcp(snat_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frames::tcp4(
        D0_MAC,
        GW_MAC,
        BACKEND,
        SNAT,
        TCP_BACKEND_PORT,
        snat_port,
        flags,
        payload,
    )
}

#[track_caller]
fn expect(fx: &mut Fixture, what: &str, input: &[u8], action: u32, output: &[u8], counter: &str) {
    let before = fx.counter(counter);
    let run = fx.run(input);
    assert_eq!(run.action, action, "{what}: action");
    assert_eq!(
        run.frame, output,
        "{what}: output frame\n  expected {output:02x?}\n  got      {:02x?}",
        run.frame
    );
    if action != XDP_PASS {
        assert!(
            frames::ipv4_checksums_ok(&run.frame),
            "{what}: IPv4/TCP/UDP checksums of the output do not verify"
        );
    }
    assert_eq!(fx.counter(counter), before + 1, "{what}: counter {counter}");
}

/// A client's end of a connection: its address, MAC and port.
type End = (Ipv4Addr, Mac, u16);

/// [`expect`] that the segment `seg` makes of one from `from` to the VIP reaches the
/// backend as the same segment from SNAT port `snat_port`, counted as `counter`.
#[track_caller]
fn expect_to_backend(
    fx: &mut Fixture,
    what: &str,
    (client, mac, sport): End,
    snat_port: u16,
    seg: impl Fn(Tcp4) -> Tcp4,
    counter: &str,
) {
    let input = seg(c2v(client, mac, sport)).frame();
    let output = seg(s2b(snat_port)).frame();
    expect(fx, what, &input, XDP_REDIRECT, &output, counter);
}

/// [`expect`] that the segment `seg` makes of one from the backend to SNAT port
/// `snat_port` reaches the client `to` as the same segment from the VIP (`nat_reply`).
#[track_caller]
fn expect_to_client(
    fx: &mut Fixture,
    what: &str,
    snat_port: u16,
    (client, mac, sport): End,
    seg: impl Fn(Tcp4) -> Tcp4,
) {
    let input = seg(b2s(snat_port)).frame();
    let output = seg(v2c(client, mac, sport)).frame();
    expect(fx, what, &input, XDP_REDIRECT, &output, "nat_reply");
}

/// [`expect`] that `input` is passed untouched, counted as `counter`.
#[track_caller]
fn expect_passed(fx: &mut Fixture, what: &str, input: &[u8], counter: &str) {
    expect(fx, what, input, XDP_PASS, input, counter);
}

#[test]
fn both_directions_with_port_translation_exact_frames() {
    in_fib(&[], 1024, |mut fx| {
        // 1. SYN: a SNAT port is reserved, both entries written (embryonic), the frame
        //    translated.
        let syn = client_tcp(CLIENT, CLIENT_MAC, 40000, frames::TCP_SYN, b"");
        let run = fx.run(&syn);
        assert_eq!(run.action, XDP_REDIRECT, "SYN to a NAT service goes out d0");
        let k = key(CLIENT, 40000, TCP_PORT, PROTO_TCP);
        let table = fx.dp.nat_table().expect("NAT maps");
        let flow = table
            .flow(&k)
            .expect("NAT maps")
            .expect("a NAT entry for the SYN");
        assert!(
            table.is_embryonic(&k).expect("map"),
            "a SYN alone is embryonic"
        );
        assert!(table.flows().expect("map").is_empty(), "nothing synced yet");
        let snat_port = u16::from_be(flow.snat_port_be);
        assert!(snat_port >= 1024, "SNAT port {snat_port} outside the range");
        assert_eq!(flow.state, NAT_TCP_SYN);
        assert_eq!(flow.client_mac, CLIENT_MAC);
        assert_eq!(
            run.frame,
            to_backend_tcp(snat_port, frames::TCP_SYN, b""),
            "SYN as the backend must see it"
        );
        assert!(frames::ipv4_checksums_ok(&run.frame), "SYN checksums");
        assert_eq!(
            table.reverse(&flow.reverse_key(&k)).expect("NAT_REV"),
            Some(k),
            "the reply tuple is reserved for this connection"
        );
        assert_eq!(fx.counter("nat_new"), 1);

        // 2. SYN-ACK from the backend: back to VIP:1514 -> client; not yet established.
        let end = (CLIENT, CLIENT_MAC, 40000);
        expect_to_client(&mut fx, "SYN-ACK", snat_port, end, syn_ack);
        assert_eq!(
            state_of(&fx, &k),
            NAT_TCP_SYN,
            "the SYN-ACK alone does not establish"
        );

        // 3. The client's ACK of the SYN-ACK: established, moved to the connection table.
        let promoted = fx.counter("nat_promoted");
        expect_to_backend(&mut fx, "ACK", end, snat_port, handshake_ack, "nat_hit");
        assert_eq!(
            state_of(&fx, &k),
            NAT_TCP_ESTABLISHED,
            "the handshake establishes"
        );
        assert_eq!(fx.counter("nat_promoted"), promoted + 1);
        let table = fx.dp.nat_table().expect("NAT maps");
        assert!(!table.is_embryonic(&k).expect("map"));
        assert_eq!(
            table.flows().expect("map").len(),
            1,
            "the connection table holds it"
        );
        assert!(table.embryonic().expect("map").is_empty());

        // 4. Data both ways, payload untouched.
        exchange(&mut fx, CLIENT, 40000, snat_port, 0);

        // 5. UDP with port translation, both ways; it is embryonic until the client
        //    sends again after a reply.
        let dg = frames::udp4(
            D0_MAC,
            CLIENT_MAC,
            CLIENT,
            VIP,
            5140,
            UDP_PORT,
            b"<13>syslog",
        );
        let run = fx.run(&dg);
        assert_eq!(run.action, XDP_REDIRECT, "UDP to a NAT service");
        let uk = key(CLIENT, 5140, UDP_PORT, PROTO_UDP);
        let uflow = flow_of(&fx, &uk).expect("UDP entry");
        assert_eq!(uflow.state, NAT_UDP);
        let up = u16::from_be(uflow.snat_port_be);
        assert_eq!(
            run.frame,
            frames::udp4(
                GW_MAC,
                D0_MAC,
                SNAT,
                BACKEND,
                up,
                UDP_BACKEND_PORT,
                b"<13>syslog"
            ),
            "UDP as the backend must see it"
        );
        assert!(frames::ipv4_checksums_ok(&run.frame), "UDP checksums");
        expect(
            &mut fx,
            "UDP reply",
            &frames::udp4(D0_MAC, GW_MAC, BACKEND, SNAT, UDP_BACKEND_PORT, up, b"ok"),
            XDP_REDIRECT,
            &frames::udp4(CLIENT_MAC, D0_MAC, VIP, CLIENT, UDP_PORT, 5140, b"ok"),
            "nat_reply",
        );
        assert!(is_embryonic(&fx, &uk));
        assert_eq!(fx.run(&dg).action, XDP_REDIRECT, "UDP again");
        assert!(
            !is_embryonic(&fx, &uk),
            "a UDP flow that saw a reply and sent again is established"
        );

        // 6. A client without a neighbour entry: replies go to the MAC its frames
        //    came from, out of the interface the FIB names.
        let syn2 = client_tcp(CLIENT2, CLIENT2_MAC, 40001, frames::TCP_SYN, b"");
        assert_eq!(fx.run(&syn2).action, XDP_REDIRECT);
        let k2 = key(CLIENT2, 40001, TCP_PORT, PROTO_TCP);
        let p2 = u16::from_be(flow_of(&fx, &k2).expect("entry").snat_port_be);
        assert_ne!(p2, snat_port, "two connections never share a reply tuple");
        expect(
            &mut fx,
            "SYN-ACK to a client the kernel never resolved",
            &from_backend_tcp(p2, SYN_ACK, b""),
            XDP_REDIRECT,
            &frames::tcp4(
                CLIENT2_MAC,
                D0_MAC,
                VIP,
                CLIENT2,
                TCP_PORT,
                40001,
                SYN_ACK,
                b"",
            ),
            "nat_reply",
        );

        // 7. Mid-stream segment of an unknown connection: passed, nothing reserved.
        let stray = client_tcp(CLIENT, CLIENT_MAC, 40099, frames::TCP_ACK, b"");
        expect_passed(&mut fx, "stray ACK", &stray, "nat_no_flow");
        assert_eq!(
            flow_of(&fx, &key(CLIENT, 40099, TCP_PORT, PROTO_TCP)),
            None,
            "a non-SYN must not open a NAT connection"
        );
        // 8. A reply nobody asked for.
        let unknown = from_backend_tcp(9, frames::TCP_PSH_ACK, b"x");
        expect_passed(&mut fx, "unknown reply", &unknown, "nat_no_flow");
    });
}

#[test]
fn a_draining_vip_translates_known_connections_but_opens_none() {
    in_fib(&[], 1024, |mut fx| {
        let (_, p) = handshake(&mut fx, CLIENT, 40100);
        // Make before break: another node has taken the VIP and the SNAT address over.
        for addr in [VIP, SNAT] {
            fx.dp
                .set_vip_draining(std::net::IpAddr::V4(addr))
                .expect("VIPS");
        }
        // What still reaches this node of a connection it knows is translated both ways.
        exchange(&mut fx, CLIENT, 40100, p, 0);
        // A new connection opens no NAT state the new owner could not know about: its SYN
        // goes to the kernel (which does not hold the VIP), the client retransmits.
        let syn = client_tcp(CLIENT, CLIENT_MAC, 40101, frames::TCP_SYN, b"");
        expect_passed(&mut fx, "a SYN to a draining VIP", &syn, "not_owned");
        assert!(
            flow_of(&fx, &key(CLIENT, 40101, TCP_PORT, PROTO_TCP)).is_none(),
            "no NAT entry for a connection opened while draining"
        );
    });
}

/// Age the NAT table at `now`, every connection's client last heard at 0, with the
/// default timeouts: the connections removed.
fn expired(fx: &Fixture, now: MonoNanos) -> Vec<FlowKey> {
    let removed = fx
        .dp
        .nat_table()
        .expect("NAT maps")
        .expire(now, |_| Some(MonoNanos(0)), &NatTimeouts::default())
        .expect("expire");
    removed.iter().map(|(k, _)| *k).collect()
}

#[test]
fn rst_and_fin_age_out_and_free_the_port() {
    in_fib(&[], 1024, |mut fx| {
        let (rst_k, rst_p) = handshake(&mut fx, CLIENT, 41000);
        let (fin_k, fin_p) = handshake(&mut fx, CLIENT, 41001);
        let (est_k, _) = handshake(&mut fx, CLIENT, 41002);

        // The backend resets at exactly the sequence the client expects next.
        let rst = b2s(rst_p)
            .flags(frames::TCP_RST)
            .seq(BACKEND_ISN + 1)
            .frame();
        assert_eq!(
            fx.run(&rst).action,
            XDP_REDIRECT,
            "the RST itself still reaches the client"
        );
        assert_eq!(state_of(&fx, &rst_k), NAT_TCP_CLOSED);
        let fin = c2v(CLIENT, CLIENT_MAC, 41001)
            .flags(FIN_ACK)
            .seq(CLIENT_ISN + 1)
            .ack(BACKEND_ISN + 1)
            .win(WIN)
            .frame();
        assert_eq!(fx.run(&fin).action, XDP_REDIRECT);
        assert_eq!(state_of(&fx, &fin_k), NAT_TCP_FIN);

        let now = MonoNanos::now();
        assert_eq!(
            expired(&fx, now.after(Duration::from_secs(11))),
            [rst_k],
            "11 s later only the reset connection is gone"
        );
        assert_eq!(
            reverse_of(&fx, &tcp_rev(rst_p)),
            None,
            "the reset connection's port is free again"
        );
        assert_eq!(
            expired(&fx, now.after(Duration::from_secs(61))),
            [fin_k],
            "61 s later the closing connection is gone too"
        );
        let _ = fin_p;
        assert!(
            flow_of(&fx, &est_k).is_some(),
            "the established connection stays"
        );
        // A late segment of the removed connection is passed, not re-opened.
        let late = from_backend_tcp(rst_p, frames::TCP_ACK, b"");
        expect_passed(&mut fx, "late reply after aging", &late, "nat_no_flow");
    });
}

/// A full connection table takes no more: a new connection is still translated from
/// the embryonic table (counted as `nat_promote_failed`), and every old one keeps its
/// translation.
#[test]
fn a_full_table_keeps_the_old_connections() {
    const SIZE: u32 = 16;
    in_fib(&[], SIZE, |mut fx| {
        let mut ports = Vec::new();
        for i in 0..SIZE as u16 {
            ports.push(handshake(&mut fx, CLIENT, 42000 + i).1);
        }
        let failed = fx.counter("nat_promote_failed");
        let one_more = client_tcp(CLIENT, CLIENT_MAC, 43000, frames::TCP_SYN, b"");
        assert_eq!(
            fx.run(&one_more).action,
            XDP_REDIRECT,
            "embryonic: translated"
        );
        let k = key(CLIENT, 43000, TCP_PORT, PROTO_TCP);
        let p = u16::from_be(flow_of(&fx, &k).expect("entry").snat_port_be);
        let syn_ack = syn_ack(b2s(p)).frame();
        assert_eq!(fx.run(&syn_ack).action, XDP_REDIRECT);
        let ack = handshake_ack(c2v(CLIENT, CLIENT_MAC, 43000)).frame();
        assert_eq!(fx.run(&ack).action, XDP_REDIRECT);
        assert_eq!(fx.counter("nat_promote_failed"), failed + 1);
        let mut table = fx.dp.nat_table().expect("NAT maps");
        assert!(table.is_embryonic(&k).expect("map"), "stays embryonic");
        assert_eq!(table.flows().expect("map").len(), SIZE as usize);
        // Status and metrics count the embryonic map apart: `nat` is full at SIZE of
        // SIZE, never more, and the one still in its handshake is `nat_embryonic`.
        let counts = table.counts().expect("count");
        assert_eq!(
            (counts.connections(), counts.embryonic),
            (u64::from(SIZE), 1),
            "connections and embryonic ones: {counts:?}"
        );
        // A slot frees up (the oldest connection aged out): the connection's next
        // packet moves it to the table. (Before, a connection that had completed its
        // handshake was never promoted again: a flood could evict it, and the sync
        // never heard of it.)
        let (gone_k, gone_p) = (key(CLIENT, 42000, TCP_PORT, PROTO_TCP), ports.remove(0));
        let gone = table.flow(&gone_k).expect("map").expect("the oldest");
        table.remove(&gone_k, &gone).expect("remove");
        let promoted = fx.counter("nat_promoted");
        let data = |t: Tcp4| {
            t.flags(frames::TCP_PSH_ACK)
                .seq(CLIENT_ISN + 1)
                .ack(BACKEND_ISN + 1)
                .payload(b"x")
        };
        let what = "the embryonic connection's next packet";
        expect_to_backend(
            &mut fx,
            what,
            (CLIENT, CLIENT_MAC, 43000),
            p,
            data,
            "nat_hit",
        );
        let table = fx.dp.nat_table().expect("NAT maps");
        assert!(
            !table.is_embryonic(&k).expect("map"),
            "promoted with its first packet after a slot freed up"
        );
        assert_eq!(fx.counter("nat_promoted"), promoted + 1);
        assert_eq!(
            table.flow(&k).expect("map").map(|f| f.state),
            Some(NAT_TCP_ESTABLISHED)
        );
        assert_eq!(table.flows().expect("map").len(), SIZE as usize);
        // Every old connection still translates to its own port.
        for (i, &p) in ports.iter().enumerate() {
            let i = i as u16 + 1;
            let data = |t: Tcp4| t.flags(frames::TCP_PSH_ACK).payload(b"x");
            let what = "old connection after table full";
            expect_to_backend(
                &mut fx,
                what,
                (CLIENT, CLIENT_MAC, 42000 + i),
                p,
                data,
                "nat_hit",
            );
        }
        let mut sorted = ports.clone();
        sorted.push(gone_p);
        sorted.push(p);
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ports.len() + 2,
            "SNAT ports are unique: {ports:?} and {p}"
        );
    });
}

/// A connection as the sync installs it (no sequence numbers, as `sync::entries`
/// writes it): client `sport`, SNAT port `port`.
fn put_synced(fx: &Fixture, sport: u16, port: u16) -> FlowKey {
    let k = key(CLIENT, sport, TCP_PORT, PROTO_TCP);
    let synced = NatFlow {
        backend: Addr::v4(BACKEND.octets()),
        snat: Addr::v4(SNAT.octets()),
        client_mac: CLIENT_MAC,
        backend_port_be: TCP_BACKEND_PORT.to_be(),
        snat_port_be: port.to_be(),
        state: NAT_TCP_ESTABLISHED,
        backend_slot: u32::MAX,
        last_seen_ns: MonoNanos::now().0,
        ..Default::default()
    };
    fx.dp
        .nat_table()
        .expect("NAT maps")
        .put(&k, &synced)
        .expect("install as the sync does");
    k
}

/// Connections installed by the sync, on the new master:
/// - a spoofer on the backend segment gets the first backend-side segment in, then
///   the real client speaks: an RST at the spoofer's own planted sequence changes
///   nothing (before, it closed the connection: a black hole 10 s later);
/// - a connection whose first segments after the failover are its close (the
///   client's FIN, the backend's FIN, the last ACK) moves to closing, aged after
///   `fin` (before, it stayed established for an hour).
#[test]
fn synced_connections_resist_a_planted_sequence_and_close_normally() {
    in_fib(&[], 1024, |mut fx| {
        let (c_next, b_next) = (90_000u32, 70_000u32);
        let client = |sport, flags, seq, ack| {
            c2v(CLIENT, CLIENT_MAC, sport)
                .flags(flags)
                .seq(seq)
                .ack(ack)
                .win(WIN)
                .frame()
        };

        let k = put_synced(&fx, 52_000, 30_000);
        let forged = b2s(30_000)
            .flags(frames::TCP_PSH_ACK)
            .seq(777_000)
            .ack(123)
            .payload(b"0123456789")
            .frame();
        assert_eq!(fx.run(&forged).action, XDP_REDIRECT, "forwarded");
        assert_eq!(
            fx.run(&client(52_000, frames::TCP_ACK, c_next, b_next))
                .action,
            XDP_REDIRECT
        );
        let ignored = fx.counter("nat_rst_ignored");
        let rst = b2s(30_000).flags(frames::TCP_RST).seq(777_010).frame();
        assert_eq!(fx.run(&rst).action, XDP_REDIRECT, "forwarded, for RFC 5961");
        assert_eq!(
            state_of(&fx, &k),
            NAT_TCP_ESTABLISHED,
            "an RST at the planted sequence"
        );
        assert_eq!(fx.counter("nat_rst_ignored"), ignored + 1);
        // The backend's real reset, at what the client acknowledged, closes.
        let rst = b2s(30_000).flags(frames::TCP_RST).seq(b_next).frame();
        assert_eq!(fx.run(&rst).action, XDP_REDIRECT);
        assert_eq!(state_of(&fx, &k), NAT_TCP_CLOSED, "the exact RST");

        let k = put_synced(&fx, 52_001, 30_001);
        assert_eq!(
            fx.run(&client(52_001, FIN_ACK, c_next, b_next)).action,
            XDP_REDIRECT
        );
        let backend_fin = b2s(30_001)
            .flags(FIN_ACK)
            .seq(b_next)
            .ack(c_next + 1)
            .frame();
        assert_eq!(fx.run(&backend_fin).action, XDP_REDIRECT);
        assert_eq!(
            fx.run(&client(52_001, frames::TCP_ACK, c_next + 1, b_next + 1))
                .action,
            XDP_REDIRECT
        );
        assert_eq!(
            state_of(&fx, &k),
            NAT_TCP_FIN,
            "a normal close after the failover"
        );
    });
}

/// Narrow every NAT service's SNAT port range to `port` alone (written into the
/// pinned `NAT_SERVICES` as the agent would), so that two connections must compete
/// for one port.
fn one_snat_port(fx: &Fixture, port: u16) {
    let map = MapData::from_pin(fx.dp.pin_dir().join("NAT_SERVICES")).expect("NAT_SERVICES");
    let mut services: Array<MapData, NatService> = Map::from_map_data(map)
        .expect("map")
        .try_into()
        .expect("NAT_SERVICES");
    for i in 0..services.len() {
        let mut svc = services.get(&i, 0).expect("NAT_SERVICES entry");
        if svc.snat_count > 0 {
            svc.port_min = port;
            svc.port_max = port;
            services.set(i, &svc, 0).expect("write NAT_SERVICES");
        }
    }
}

/// Remove `rev` from the pinned `NAT_EMBRYO_REV`, as the LRU does when it evicts a
/// port reservation but not its connection (the two embryonic maps evict
/// independently).
fn evict_reservation(fx: &Fixture, rev: &FlowKey) {
    let map = MapData::from_pin(fx.dp.pin_dir().join("NAT_EMBRYO_REV")).expect("NAT_EMBRYO_REV");
    let mut embryo_rev: HashMap<MapData, FlowKey, FlowKey> = Map::from_map_data(map)
        .expect("map")
        .try_into()
        .expect("NAT_EMBRYO_REV");
    embryo_rev.remove(rev).expect("the reservation to evict");
}

/// The reply tuple of the connections here when their SNAT port is `port`.
fn tcp_rev(port: u16) -> FlowKey {
    FlowKey {
        src: Addr::v4(BACKEND.octets()),
        dst: Addr::v4(SNAT.octets()),
        sport_be: TCP_BACKEND_PORT.to_be(),
        dport_be: port.to_be(),
        proto: PROTO_TCP,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

/// The embryonic maps are LRU hashes that evict independently. A connection whose
/// port reservation was evicted while the port is still free takes it again with its
/// next packet (here its retransmitted SYN), so the backend's SYN-ACK finds it.
/// (Before, the SYN-ACK was passed as belonging to no connection.)
#[test]
fn an_embryonic_connection_whose_reservation_was_evicted_takes_it_again() {
    const PORT: u16 = 40_000;
    in_fib(&[], 1024, |mut fx| {
        one_snat_port(&fx, PORT);
        let a = key(CLIENT, 50_000, TCP_PORT, PROTO_TCP);
        let a_end = (CLIENT, CLIENT_MAC, 50_000);
        let syn = |t: Tcp4| t.flags(frames::TCP_SYN);
        assert_eq!(
            fx.run(&syn(c2v(CLIENT, CLIENT_MAC, 50_000)).frame()).action,
            XDP_REDIRECT
        );
        evict_reservation(&fx, &tcp_rev(PORT));
        let what = "retransmitted SYN after the eviction";
        expect_to_backend(&mut fx, what, a_end, PORT, syn, "nat_hit");
        assert_eq!(
            reverse_of(&fx, &tcp_rev(PORT)),
            Some(a),
            "the port is reserved again"
        );
        let what = "SYN-ACK after the reservation was taken again";
        expect_to_client(&mut fx, what, PORT, a_end, syn_ack);
    });
}

/// As above, but another connection B was given the evicted port meanwhile: A's
/// handshake-completing ACK drops A (`nat_embryo_lost`) instead of promoting it over
/// B's reservation, and B's replies keep going to B's client. (Before, A's promotion
/// removed B's reservation and took the reply tuple, so B's SYN-ACK went to A's
/// client.)
#[test]
fn an_embryonic_connection_whose_port_was_given_away_never_takes_it_back() {
    const PORT: u16 = 40_000;
    in_fib(&[], 1024, |mut fx| {
        one_snat_port(&fx, PORT);
        let (a, b) = (
            key(CLIENT, 50_000, TCP_PORT, PROTO_TCP),
            key(CLIENT2, 50_001, TCP_PORT, PROTO_TCP),
        );
        let b_end = (CLIENT2, CLIENT2_MAC, 50_001);
        let syn = |t: Tcp4| t.flags(frames::TCP_SYN);
        assert_eq!(
            fx.run(&syn(c2v(CLIENT, CLIENT_MAC, 50_000)).frame()).action,
            XDP_REDIRECT
        );
        assert_eq!(fx.run(&syn_ack(b2s(PORT)).frame()).action, XDP_REDIRECT);
        evict_reservation(&fx, &tcp_rev(PORT));
        let what = "B's SYN, given the evicted port";
        expect_to_backend(&mut fx, what, b_end, PORT, syn, "nat_new");
        let ack = handshake_ack(c2v(CLIENT, CLIENT_MAC, 50_000)).frame();
        expect_passed(
            &mut fx,
            "A's ACK from a port that is B's now",
            &ack,
            "nat_embryo_lost",
        );
        let table = fx.dp.nat_table().expect("NAT maps");
        assert_eq!(table.flow(&a).expect("map"), None, "A is dropped");
        assert_eq!(
            table.reverse(&tcp_rev(PORT)).expect("map"),
            Some(b),
            "the port is B's"
        );
        assert!(table.flows().expect("map").is_empty(), "nothing promoted");
        expect_to_client(&mut fx, "B's SYN-ACK", PORT, b_end, syn_ack);
    });
}

/// UDP's proof that a client receives replies is weak: a spoofer that sends each
/// forged datagram twice, after the backend's reply, passes it. 6,000 such UDP flows
/// (datagram, the backend's reply, datagram again) against a table of 4,096 holding
/// 20 TCP connections, with 50 legitimate TCP handshakes among them: every handshake
/// reaches the connection table, and UDP flows hold at most their own table (a
/// quarter of the size). (Before, the UDP flows filled the one connection table
/// after about 4,000, and the later handshakes were left in the embryonic table,
/// where a flood evicts them.)
#[test]
fn a_udp_flood_that_repeats_its_tuples_leaves_tcp_its_table() {
    const UDP_FLOWS: u32 = 6_000;
    // Replies to the spoofed sources are routed (through the gateway).
    let route = "ip route add default via 192.0.2.254 dev d0";
    in_fib(&[route], 4096, |mut fx| {
        for i in 0..20 {
            handshake(&mut fx, CLIENT, 47_000 + i);
        }
        let mut rng = Rng(0x0d0d_f100d);
        let mut promoted = 0;
        for i in 0..UDP_FLOWS {
            let r = rng.next_u32();
            let src = Ipv4Addr::from(0x2000_0000 | (r & 0x0fff_ffff));
            let sport = (r >> 12) as u16 | 1024;
            let dg = frames::udp4(D0_MAC, CLIENT2_MAC, src, VIP, sport, UDP_PORT, b"x");
            let run = fx.run(&dg);
            assert_eq!(run.action, XDP_REDIRECT, "spoofed datagram {i}");
            let up = u16::from_be_bytes([run.frame[34], run.frame[35]]);
            let reply = frames::udp4(D0_MAC, GW_MAC, BACKEND, SNAT, UDP_BACKEND_PORT, up, b"r");
            fx.run(&reply);
            fx.run(&dg);
            if i % 120 == 60 {
                let (k, _) = handshake(&mut fx, CLIENT, 48_000 + (i / 120) as u16);
                assert_eq!(state_of(&fx, &k), NAT_TCP_ESTABLISHED);
                promoted += 1;
            }
        }
        let flows = fx.dp.nat_table().expect("NAT maps").flows().expect("map");
        let tcp = flows.iter().filter(|(k, _)| k.proto == PROTO_TCP).count();
        let udp = flows.iter().filter(|(k, _)| k.proto == PROTO_UDP).count();
        println!(
            "{UDP_FLOWS} spoofed UDP flows: {udp} in the connection tables, {tcp} TCP; \
             nat_promote_failed {}",
            fx.counter("nat_promote_failed")
        );
        assert_eq!(promoted, 50);
        assert_eq!(tcp, 70, "every TCP connection in the connection table");
        assert_eq!(
            udp, 1024,
            "UDP flows hold a quarter of the table size, no more"
        );
        // Status and metrics count them apart: `nat` (TCP) is far from full, `nat_udp`
        // is full (the alert watches both).
        let counts = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .counts()
            .expect("count");
        assert_eq!(
            (counts.connections(), counts.udp),
            (70, 1024),
            "nat and nat_udp entries: {counts:?}"
        );
    });
}

/// A TCP header's data offset under 5 words is not a header: the segment is passed
/// to the kernel (which drops it), neither opening a connection nor moving one's
/// tracking. (Before, its length was taken from a header size it does not have.)
#[test]
fn a_tcp_data_offset_under_five_words_is_passed() {
    in_fib(&[], 1024, |mut fx| {
        let short = |mut f: Vec<u8>| {
            // Byte 12 of the TCP header (frame offset 14 + 20 + 12): data offset 4.
            f[46] = 0x40;
            f
        };
        let syn = short(client_tcp(CLIENT, CLIENT_MAC, 51_000, frames::TCP_SYN, b""));
        expect_passed(&mut fx, "SYN, data offset 4", &syn, "nat_bad_tcp");
        assert_eq!(
            flow_of(&fx, &key(CLIENT, 51_000, TCP_PORT, PROTO_TCP)),
            None,
            "no connection opened"
        );
        let (k, _) = handshake(&mut fx, CLIENT, 51_001);
        let before = flow_of(&fx, &k);
        let data = short(
            c2v(CLIENT, CLIENT_MAC, 51_001)
                .flags(frames::TCP_PSH_ACK)
                .seq(CLIENT_ISN + 1)
                .ack(BACKEND_ISN + 1)
                .payload(b"0123456789")
                .frame(),
        );
        expect_passed(&mut fx, "data, data offset 4", &data, "nat_bad_tcp");
        assert_eq!(
            flow_of(&fx, &k),
            before,
            "the connection's tracking is untouched"
        );
    });
}

/// Spoofed RSTs with wrong sequence numbers, from the backend's side over every SNAT
/// port and from the clients' side, and spoofed FINs outside the window: every idle
/// established connection stays in place and carries data afterwards. Only the RST
/// at the exact sequence closes. (Before the tracking, the first RST moved each
/// connection to CLOSED and aging removed it 10 s later: a silent black hole.)
#[test]
fn spoofed_rsts_and_fins_leave_established_connections_in_place() {
    const CONNS: u16 = 60;
    in_fib(&[], 4096, |mut fx| {
        let mut conns = Vec::new();
        for i in 0..CONNS {
            let (k, p) = handshake(&mut fx, CLIENT, 46000 + i);
            exchange(&mut fx, CLIENT, 46000 + i, p, 0);
            conns.push((k, p));
        }
        // After one exchange the client expects the backend's 5009, the backend 1009.
        let (c_next, b_next) = (CLIENT_ISN + 1 + 8, BACKEND_ISN + 1 + 8);
        let mut rng = Rng(0x5eed_f00d);
        let mut wrong = |exact: [u32; 1]| loop {
            let v = rng.next_u32();
            // Far from anything a window would hold (64 KiB here).
            if exact
                .iter()
                .all(|&e| v.wrapping_sub(e) > 1 << 20 && e.wrapping_sub(v) > 1 << 20)
            {
                break v;
            }
        };
        let ignored = fx.counter("nat_rst_ignored");
        let mut sent = 0u64;
        // A sweep over every SNAT port, as from the backend, one RST each.
        for port in 1024..=u16::MAX {
            let rst = b2s(port)
                .flags(frames::TCP_RST)
                .seq(wrong([b_next]))
                .frame();
            fx.run(&rst);
            sent += u64::from(conns.iter().any(|&(_, p)| p == port));
        }
        // Three more for each connection's port, and three from the client's side.
        for (i, &(_, p)) in conns.iter().enumerate() {
            for _ in 0..3 {
                let rst = b2s(p)
                    .flags(frames::TCP_RST | frames::TCP_ACK)
                    .seq(wrong([b_next]))
                    .frame();
                assert_eq!(fx.run(&rst).action, XDP_REDIRECT, "forwarded, for RFC 5961");
                let rst = c2v(CLIENT, CLIENT_MAC, 46000 + i as u16)
                    .flags(frames::TCP_RST)
                    .seq(wrong([c_next]))
                    .frame();
                assert_eq!(fx.run(&rst).action, XDP_REDIRECT);
                let fin = b2s(p).flags(FIN_ACK).seq(wrong([b_next])).frame();
                assert_eq!(fx.run(&fin).action, XDP_REDIRECT);
                sent += 2;
            }
        }
        for (i, &(k, p)) in conns.iter().enumerate() {
            assert_eq!(
                state_of(&fx, &k),
                NAT_TCP_ESTABLISHED,
                "connection {i} after the spoofed RSTs and FINs"
            );
            exchange(&mut fx, CLIENT, 46000 + i as u16, p, 1);
        }
        assert_eq!(
            fx.counter("nat_rst_ignored"),
            ignored + sent,
            "every spoofed RST that hit a connection is counted as ignored"
        );
        // The real thing still works: an RST at the exact sequence closes.
        let (k0, p0) = conns[0];
        let rst = b2s(p0).flags(frames::TCP_RST).seq(b_next + 8).frame();
        assert_eq!(fx.run(&rst).action, XDP_REDIRECT);
        assert_eq!(state_of(&fx, &k0), NAT_TCP_CLOSED, "the exact RST closes");
    });
}

/// A NAT node with a table of 4,096 and 20 established connections takes 6,000
/// spoofed SYNs and 6,000 spoofed UDP datagrams (random sources), with 50 legitimate
/// handshakes among them, each SYN-ACK arriving after 100 more spoofed packets: every
/// legitimate connection completes and the established ones keep translating.
/// (Before the embryonic table, the flood filled the table and new SYNs were passed:
/// 0 of 50 completed.)
#[test]
fn syn_and_udp_floods_leave_room_for_legitimate_connections() {
    in_fib(&[], 4096, |mut fx| {
        let mut est = Vec::new();
        for i in 0..20 {
            let (k, p) = handshake(&mut fx, CLIENT, 47000 + i);
            est.push((k, p));
        }
        let mut rng = Rng(0xf100d);
        let mut flood = |fx: &mut Fixture, n: u32| {
            for _ in 0..n {
                let r = rng.next_u32();
                let src = Ipv4Addr::from(0x2000_0000 | (r & 0x0fff_ffff));
                let sport = (r >> 12) as u16 | 1024;
                let frame = if r & 1 == 0 {
                    c2v(src, CLIENT2_MAC, sport)
                        .flags(frames::TCP_SYN)
                        .seq(rng.next_u32())
                        .frame()
                } else {
                    frames::udp4(D0_MAC, CLIENT2_MAC, src, VIP, sport, UDP_PORT, b"x")
                };
                fx.run(&frame);
            }
        };
        let mut completed = 0;
        for i in 0..50u16 {
            flood(&mut fx, 120);
            let sport = 48000 + i;
            let syn = c2v(CLIENT, CLIENT_MAC, sport)
                .flags(frames::TCP_SYN)
                .frame();
            if fx.run(&syn).action != XDP_REDIRECT {
                continue;
            }
            let k = key(CLIENT, sport, TCP_PORT, PROTO_TCP);
            let Some(f) = flow_of(&fx, &k) else {
                continue;
            };
            let p = u16::from_be(f.snat_port_be);
            flood(&mut fx, 100);
            let syn_ack = syn_ack(b2s(p)).frame();
            if fx.run(&syn_ack).action != XDP_REDIRECT {
                continue;
            }
            let ack = handshake_ack(c2v(CLIENT, CLIENT_MAC, sport)).frame();
            let run = fx.run(&ack);
            let established = flow_of(&fx, &k);
            if run.action == XDP_REDIRECT
                && established.is_some_and(|f| f.state == NAT_TCP_ESTABLISHED)
            {
                completed += 1;
            }
        }
        println!(
            "{} spoofed packets, {completed} of 50 legitimate handshakes completed",
            50 * 220
        );
        assert_eq!(completed, 50, "legitimate connections under the flood");
        for (i, &(k, p)) in est.iter().enumerate() {
            assert_eq!(state_of(&fx, &k), NAT_TCP_ESTABLISHED, "connection {i}");
            exchange(&mut fx, CLIENT, 47000 + i as u16, p, 0);
        }
        let table = fx.dp.nat_table().expect("NAT maps");
        assert_eq!(
            table.flows().expect("map").len(),
            70,
            "the connection table holds only the proven connections"
        );
    });
}

#[test]
fn no_route_to_the_backend_passes_untouched() {
    in_fib(&["ip route del 10.1.0.0/24"], 1024, |mut fx| {
        let syn = client_tcp(CLIENT, CLIENT_MAC, 44000, frames::TCP_SYN, b"");
        expect_passed(&mut fx, "SYN without a route", &syn, "nat_no_route");
        assert!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flows()
                .expect("map")
                .is_empty(),
            "nothing is reserved for a packet that cannot be forwarded"
        );
    });
}

#[test]
fn an_unresolved_next_hop_hands_the_translated_packet_to_the_kernel() {
    // The gateway's neighbour entry is gone (e.g. aged while the link was down): the
    // program cannot address the frame itself, so the kernel forwards it (and
    // resolves the gateway on the way), already translated.
    in_fib(&["ip neigh del 192.0.2.254 dev d0"], 1024, |mut fx| {
        let syn = client_tcp(CLIENT, CLIENT_MAC, 45000, frames::TCP_SYN, b"");
        let before = fx.counter("nat_no_neigh");
        let run = fx.run(&syn);
        assert_eq!(run.action, XDP_PASS, "passed to the kernel to forward");
        let k = key(CLIENT, 45000, TCP_PORT, PROTO_TCP);
        let flow = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .flow(&k)
            .expect("NAT_FWD")
            .expect("the connection is open although the next hop is unresolved");
        let p = u16::from_be(flow.snat_port_be);
        assert_eq!(
            run.frame,
            frames::tcp4(
                D0_MAC,
                CLIENT_MAC,
                SNAT,
                BACKEND,
                p,
                TCP_BACKEND_PORT,
                frames::TCP_SYN,
                b""
            ),
            "translated, MACs as received (the kernel routes it)"
        );
        assert!(frames::ipv4_checksums_ok(&run.frame), "checksums");
        assert_eq!(fx.counter("nat_no_neigh"), before + 1);
    });
}

/// When the agent does not drain the connection-event ring (it fell behind), a new
/// connection is still translated, and the event that could not be queued is
/// counted (`nat_event_lost`): the sync has its peers resynchronise on it.
#[test]
fn a_full_event_ring_is_counted_and_translation_goes_on() {
    // The ring holds 4 MiB of 136-byte events (plus headers): about 29,000. A
    // connection's handshake and its RST make two events; UDP flows one each
    // (datagram, reply, datagram). (Each kind has its own SNAT port space, kept
    // below half full.)
    const TCP: u16 = 12_000;
    const UDP: u16 = 12_000;
    const EVENTS: u64 = 2 * TCP as u64 + UDP as u64;
    in_fib(&[], 65_536, |mut fx| {
        for i in 0..TCP {
            let (_, p) = handshake_quiet(&mut fx, 2000 + i);
            let rst = b2s(p).flags(frames::TCP_RST).seq(BACKEND_ISN + 1).frame();
            assert_eq!(fx.run(&rst).action, XDP_REDIRECT, "reset of connection {i}");
        }
        for i in 0..UDP {
            let dg = frames::udp4(D0_MAC, CLIENT_MAC, CLIENT, VIP, 2000 + i, UDP_PORT, b"e");
            assert_eq!(fx.run(&dg).action, XDP_REDIRECT, "UDP flow {i}");
            let k = key(CLIENT, 2000 + i, UDP_PORT, PROTO_UDP);
            let up = u16::from_be(flow_of(&fx, &k).expect("entry").snat_port_be);
            let reply = frames::udp4(D0_MAC, GW_MAC, BACKEND, SNAT, UDP_BACKEND_PORT, up, b"r");
            assert_eq!(fx.run(&reply).action, XDP_REDIRECT, "UDP reply {i}");
            assert_eq!(fx.run(&dg).action, XDP_REDIRECT, "UDP flow {i} again");
        }
        let lost = fx.counter("nat_event_lost");
        println!("{EVENTS} connection events, ring not drained: {lost} lost");
        assert_eq!(fx.counter("nat_new"), u64::from(TCP + UDP));
        assert_eq!(fx.counter("nat_promoted"), u64::from(TCP + UDP));
        assert!(
            lost > 0 && lost < EVENTS / 4,
            "the ring must fill after about 29,000 of {EVENTS} events: {lost} lost"
        );
    });
}

/// Aging walks the whole NAT table every second, and `status` walks it too: the walk
/// reads it in batches (BPF_MAP_LOOKUP_BATCH, several calls here) and must return
/// every connection, each with its own translation.
#[test]
fn the_nat_table_is_walked_in_batches_and_whole() {
    const N: u32 = 50_000;
    in_fib(&[], 65_536, |fx| {
        let mut table = fx.dp.nat_table().expect("NAT maps");
        let mut put = std::collections::BTreeMap::new();
        for i in 0..N {
            let client = Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8);
            let k = key(client, 40000 + (i >> 16) as u16, TCP_PORT, PROTO_TCP);
            let flow = NatFlow {
                backend: Addr::v4(BACKEND.octets()),
                snat: Addr::v4(SNAT.octets()),
                backend_port_be: TCP_BACKEND_PORT.to_be(),
                snat_port_be: (10_000 + i as u16).to_be(),
                state: NAT_TCP_ESTABLISHED,
                backend_slot: i,
                last_seen_ns: u64::from(i),
                ..Default::default()
            };
            table.put(&k, &flow).expect("put");
            put.insert(k.src.bytes, (k, flow));
        }
        let fallbacks = fo_agent::dataplane::batch_fallbacks();
        let walked = table.flows().expect("walk");
        assert_eq!(
            fo_agent::dataplane::batch_fallbacks(),
            fallbacks,
            "the batch lookup failed and the walk went entry by entry"
        );
        assert_eq!(walked.len(), N as usize, "every connection, once");
        let got: std::collections::BTreeMap<_, _> = walked
            .into_iter()
            .map(|(k, f)| (k.src.bytes, (k, f)))
            .collect();
        assert_eq!(got.len(), N as usize, "no connection twice");
        assert!(
            got == put,
            "the walk must return what was put, entry for entry"
        );
        let counts = table.count_by_state().expect("count");
        assert_eq!(
            counts,
            std::collections::BTreeMap::from([(NAT_TCP_ESTABLISHED, u64::from(N))]),
            "counted as read, in batches"
        );
        assert_eq!(
            fo_agent::dataplane::batch_fallbacks(),
            fallbacks,
            "the counting walk fell back to one lookup per entry"
        );
    });
}

/// The drill's reset counters: a backend's RST to the SNAT address and a client's RST
/// to the VIP are counted only while the `DRILL` flag is set.
#[test]
fn resets_are_counted_only_while_a_drill_records() {
    in_fib(&[], 1024, |mut fx| {
        let mut drill = Forwarded::open(fx.dp.pin_dir()).expect("COUNTERS, DRILL");
        let p0 = handshake(&mut fx, CLIENT, 41100).1;
        let p1 = handshake(&mut fx, CLIENT, 41101).1;
        handshake(&mut fx, CLIENT, 41102);
        handshake(&mut fx, CLIENT, 41103);
        let backend_rst = |p: u16| b2s(p).flags(frames::TCP_RST).seq(BACKEND_ISN + 1).frame();
        let client_rst = |sport: u16| {
            c2v(CLIENT, CLIENT_MAC, sport)
                .flags(frames::TCP_RST)
                .seq(CLIENT_ISN + 1)
                .frame()
        };
        let counted = |drill: &Forwarded| {
            let c = drill.read().expect("COUNTERS");
            (c.rst_to_vip, c.rst_from_backend)
        };
        assert_eq!(fx.run(&backend_rst(p0)).action, XDP_REDIRECT);
        assert_eq!(counted(&drill), (0, 0), "no drill: nothing counted");
        drill.set_drill(true).expect("DRILL");
        assert_eq!(fx.run(&backend_rst(p1)).action, XDP_REDIRECT);
        assert_eq!(fx.run(&client_rst(41102)).action, XDP_REDIRECT);
        assert_eq!(
            counted(&drill),
            (1, 1),
            "one RST each way while the drill records"
        );
        drill.set_drill(false).expect("DRILL");
        assert_eq!(fx.run(&client_rst(41103)).action, XDP_REDIRECT);
        assert_eq!(
            counted(&drill),
            (1, 1),
            "the drill over: nothing more counted"
        );
    });
}
