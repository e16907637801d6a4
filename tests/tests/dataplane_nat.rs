//! Full NAT in the XDP program, through BPF_PROG_TEST_RUN on the real object: both
//! directions with exact output frames (built independently by `frames`, checksums
//! verified by summing), port translation, TCP state and aging, table-full.
//!
//! The program asks the kernel's FIB for next hops, so every run happens inside a
//! network namespace made for the test: an interface `d0` (a veth) (192.0.2.1/24, our
//! MAC), a gateway 192.0.2.254 to the backends' subnet 10.1.0.0/24, the client's
//! subnet on-link, forwarding on, and permanent neighbour entries.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use fo_agent::dataplane::nat::NatTimeouts;
use fo_agent::dataplane::{MonoNanos, NatSpec};
use fo_common::{
    Addr, FAMILY_V4, FlowKey, NAT_TCP_CLOSED, NAT_TCP_ESTABLISHED, NAT_TCP_FIN, NAT_TCP_SYN,
    NAT_UDP, NatFlow, PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_PASS, XDP_REDIRECT},
};
use fo_tests::fixture::{Fixture, backend, service};
use fo_tests::frames::{self, Mac};
use fo_tests::netns::Netns;

const D0_MAC: Mac = [0x02, 0xf0, 0, 0, 0, 0x02];
const GW_MAC: Mac = [0x02, 0x99, 0, 0, 0, 0xfe];
const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
/// Source MAC of frames from CLIENT2, which has no neighbour entry on the node.
const CLIENT2_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x02];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CLIENT2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 8);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 21);
const TCP_PORT: u16 = 1514;
const TCP_BACKEND_PORT: u16 = 11514;
const UDP_PORT: u16 = 514;
const UDP_BACKEND_PORT: u16 = 5514;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const SYN_ACK: u8 = 0x12;

/// The namespace the test's runs happen in.
fn fib_namespace() -> Netns {
    let ns = Netns::new("natfib");
    ns.sh(&format!(
        "ip link add d0 type veth peer name d0p && ip link set d0 address {} && ip link set d0 up && ip link set d0p up \
         && ip addr add 192.0.2.1/24 dev d0 \
         && ip route add 198.51.100.0/24 dev d0 \
         && ip route add 10.1.0.0/24 via 192.0.2.254 dev d0 \
         && ip neigh add 192.0.2.254 lladdr {} dev d0 nud permanent \
         && ip neigh add {CLIENT} lladdr {} dev d0 nud permanent \
         && sysctl -qw net.ipv4.ip_forward=1",
        mac_str(D0_MAC),
        mac_str(GW_MAC),
        mac_str(CLIENT_MAC)
    ));
    ns
}

fn mac_str(m: Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// VIP with a NAT service tcp/1514 -> BACKEND:11514 and udp/514 -> BACKEND:5514,
/// SNAT address owned.
fn fixture(nat_table_size: u32) -> Fixture {
    let mut fx = Fixture::with_nat_table(251, nat_table_size);
    let d0 = fo_agent::dataplane::ifindex("d0").expect("d0");
    fx.dp.set_iface(d0, D0_MAC).expect("IFACES");
    fx.dp
        .set_vip_role(IpAddr::V4(VIP), true, false)
        .expect("role");
    fx.dp
        .set_vip_role(IpAddr::V4(SNAT), false, true)
        .expect("role");
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V4(SNAT));
    let nat = || {
        Some(NatSpec {
            snat: vec![IpAddr::V4(SNAT)],
        })
    };
    let mut tcp = service(
        IpAddr::V4(VIP),
        TCP_PORT,
        PROTO_TCP,
        vec![backend(IpAddr::V4(BACKEND), TCP_BACKEND_PORT, 1, [0; 6])],
    );
    tcp.nat = nat();
    let mut udp = service(
        IpAddr::V4(VIP),
        UDP_PORT,
        PROTO_UDP,
        vec![backend(IpAddr::V4(BACKEND), UDP_BACKEND_PORT, 1, [0; 6])],
    );
    udp.nat = nat();
    fx.services(&[tcp, udp]);
    fx
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

#[test]
fn both_directions_with_port_translation_exact_frames() {
    let ns = fib_namespace();
    ns.run(|| {
        let mut fx = fixture(1024);
        // 1. SYN: a SNAT port is reserved, both entries written, the frame translated.
        let syn = client_tcp(CLIENT, CLIENT_MAC, 40000, frames::TCP_SYN, b"");
        let run = fx.run(&syn);
        assert_eq!(run.action, XDP_REDIRECT, "SYN to a NAT service goes out d0");
        let k = key(CLIENT, 40000, TCP_PORT, PROTO_TCP);
        let flow = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .flow(&k)
            .expect("NAT_FWD")
            .expect("a NAT entry for the SYN");
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
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .reverse(&flow.reverse_key(&k))
                .expect("NAT_REV"),
            Some(k),
            "the reply tuple is reserved for this connection"
        );
        assert_eq!(fx.counter("nat_new"), 1);

        // 2. SYN-ACK from the backend: back to VIP:1514 -> client, established.
        expect(
            &mut fx,
            "SYN-ACK",
            &from_backend_tcp(snat_port, SYN_ACK, b""),
            XDP_REDIRECT,
            &frames::tcp4(
                CLIENT_MAC, D0_MAC, VIP, CLIENT, TCP_PORT, 40000, SYN_ACK, b"",
            ),
            "nat_reply",
        );
        let state = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .flow(&k)
            .expect("map")
            .expect("entry")
            .state;
        assert_eq!(state, NAT_TCP_ESTABLISHED, "SYN-ACK establishes");

        // 3. Data both ways, payload untouched.
        expect(
            &mut fx,
            "client data",
            &client_tcp(CLIENT, CLIENT_MAC, 40000, frames::TCP_PSH_ACK, b"event 1\n"),
            XDP_REDIRECT,
            &to_backend_tcp(snat_port, frames::TCP_PSH_ACK, b"event 1\n"),
            "nat_hit",
        );
        expect(
            &mut fx,
            "backend data",
            &from_backend_tcp(snat_port, frames::TCP_PSH_ACK, b"ack 1\n"),
            XDP_REDIRECT,
            &frames::tcp4(
                CLIENT_MAC,
                D0_MAC,
                VIP,
                CLIENT,
                TCP_PORT,
                40000,
                frames::TCP_PSH_ACK,
                b"ack 1\n",
            ),
            "nat_reply",
        );

        // 4. UDP with port translation, both ways.
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
        let uflow = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .flow(&uk)
            .expect("map")
            .expect("UDP entry");
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

        // 5. A client without a neighbour entry: replies go to the MAC its frames
        //    came from, out of the interface the FIB names.
        let syn2 = client_tcp(CLIENT2, CLIENT2_MAC, 40001, frames::TCP_SYN, b"");
        assert_eq!(fx.run(&syn2).action, XDP_REDIRECT);
        let k2 = key(CLIENT2, 40001, TCP_PORT, PROTO_TCP);
        let p2 = u16::from_be(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&k2)
                .expect("map")
                .expect("entry")
                .snat_port_be,
        );
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

        // 6. Mid-stream segment of an unknown connection: passed, nothing reserved.
        let stray = client_tcp(CLIENT, CLIENT_MAC, 40099, frames::TCP_ACK, b"");
        expect(
            &mut fx,
            "stray ACK",
            &stray,
            XDP_PASS,
            &stray,
            "nat_no_flow",
        );
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&key(CLIENT, 40099, TCP_PORT, PROTO_TCP))
                .expect("map"),
            None,
            "a non-SYN must not open a NAT connection"
        );
        // 7. A reply nobody asked for.
        let unknown = from_backend_tcp(9, frames::TCP_PSH_ACK, b"x");
        expect(
            &mut fx,
            "unknown reply",
            &unknown,
            XDP_PASS,
            &unknown,
            "nat_no_flow",
        );
    });
}

#[test]
fn rst_and_fin_age_out_and_free_the_port() {
    let ns = fib_namespace();
    ns.run(|| {
        let mut fx = fixture(1024);
        let open = |fx: &mut Fixture, sport: u16| -> (FlowKey, u16) {
            let syn = client_tcp(CLIENT, CLIENT_MAC, sport, frames::TCP_SYN, b"");
            assert_eq!(fx.run(&syn).action, XDP_REDIRECT);
            let k = key(CLIENT, sport, TCP_PORT, PROTO_TCP);
            let f = fx
                .dp
                .nat_table()
                .expect("NAT maps")
                .flow(&k)
                .expect("map")
                .expect("entry");
            let p = u16::from_be(f.snat_port_be);
            assert_eq!(
                fx.run(&from_backend_tcp(p, SYN_ACK, b"")).action,
                XDP_REDIRECT
            );
            (k, p)
        };
        let (rst_k, rst_p) = open(&mut fx, 41000);
        let (fin_k, fin_p) = open(&mut fx, 41001);
        let (est_k, _) = open(&mut fx, 41002);

        assert_eq!(
            fx.run(&from_backend_tcp(rst_p, RST, b"")).action,
            XDP_REDIRECT,
            "the RST itself still reaches the client"
        );
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&rst_k)
                .expect("map")
                .expect("entry")
                .state,
            NAT_TCP_CLOSED
        );
        assert_eq!(
            fx.run(&client_tcp(CLIENT, CLIENT_MAC, 41001, FIN_ACK, b""))
                .action,
            XDP_REDIRECT
        );
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&fin_k)
                .expect("map")
                .expect("entry")
                .state,
            NAT_TCP_FIN
        );

        let t = NatTimeouts::default();
        let zero = MonoNanos(0);
        let now = MonoNanos::now();
        let removed = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .expire(now.after(Duration::from_secs(11)), |_| Some(zero), &t)
            .expect("expire");
        let gone: Vec<FlowKey> = removed.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            gone,
            [rst_k],
            "11 s later only the reset connection is gone"
        );
        let rst_rev = FlowKey {
            src: Addr::v4(BACKEND.octets()),
            dst: Addr::v4(SNAT.octets()),
            sport_be: TCP_BACKEND_PORT.to_be(),
            dport_be: rst_p.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .reverse(&rst_rev)
                .expect("map"),
            None,
            "the reset connection's port is free again"
        );
        let removed = fx
            .dp
            .nat_table()
            .expect("NAT maps")
            .expire(now.after(Duration::from_secs(61)), |_| Some(zero), &t)
            .expect("expire");
        let gone: Vec<FlowKey> = removed.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            gone,
            [fin_k],
            "61 s later the closing connection is gone too"
        );
        let _ = fin_p;
        assert!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flow(&est_k)
                .expect("map")
                .is_some(),
            "the established connection stays"
        );
        // A late segment of the removed connection is passed, not re-opened.
        let late = from_backend_tcp(rst_p, frames::TCP_ACK, b"");
        expect(
            &mut fx,
            "late reply after aging",
            &late,
            XDP_PASS,
            &late,
            "nat_no_flow",
        );
    });
}

#[test]
fn a_full_table_passes_new_connections_and_keeps_the_old() {
    let ns = fib_namespace();
    ns.run(|| {
        const SIZE: u32 = 16;
        let mut fx = fixture(SIZE);
        let mut ports = Vec::new();
        for i in 0..SIZE as u16 {
            let syn = client_tcp(CLIENT, CLIENT_MAC, 42000 + i, frames::TCP_SYN, b"");
            assert_eq!(fx.run(&syn).action, XDP_REDIRECT, "connection {i} fits");
            let k = key(CLIENT, 42000 + i, TCP_PORT, PROTO_TCP);
            ports.push(u16::from_be(
                fx.dp
                    .nat_table()
                    .expect("NAT maps")
                    .flow(&k)
                    .expect("map")
                    .expect("entry")
                    .snat_port_be,
            ));
        }
        let one_more = client_tcp(CLIENT, CLIENT_MAC, 43000, frames::TCP_SYN, b"");
        expect(
            &mut fx,
            "SYN beyond the table",
            &one_more,
            XDP_PASS,
            &one_more,
            "nat_table_full",
        );
        assert_eq!(
            fx.dp
                .nat_table()
                .expect("NAT maps")
                .flows()
                .expect("map")
                .len(),
            SIZE as usize
        );
        // Every old connection still translates to its own port.
        for (i, &p) in ports.iter().enumerate() {
            let i = i as u16;
            expect(
                &mut fx,
                "old connection after table full",
                &client_tcp(CLIENT, CLIENT_MAC, 42000 + i, frames::TCP_PSH_ACK, b"x"),
                XDP_REDIRECT,
                &to_backend_tcp(p, frames::TCP_PSH_ACK, b"x"),
                "nat_hit",
            );
        }
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            ports.len(),
            "SNAT ports are unique: {ports:?}"
        );
    });
}

#[test]
fn no_route_to_the_backend_passes_untouched() {
    let ns = fib_namespace();
    ns.sh("ip route del 10.1.0.0/24");
    ns.run(|| {
        let mut fx = fixture(1024);
        let syn = client_tcp(CLIENT, CLIENT_MAC, 44000, frames::TCP_SYN, b"");
        expect(
            &mut fx,
            "SYN without a route",
            &syn,
            XDP_PASS,
            &syn,
            "nat_no_route",
        );
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
    let ns = fib_namespace();
    // The gateway's neighbour entry is gone (e.g. aged while the link was down): the
    // program cannot address the frame itself, so the kernel forwards it (and
    // resolves the gateway on the way), already translated.
    ns.sh("ip neigh del 192.0.2.254 dev d0");
    ns.run(|| {
        let mut fx = fixture(1024);
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
    let ns = fib_namespace();
    ns.run(|| {
        // The ring holds 4 MiB of 104-byte events (plus headers): about 37,000. A
        // connection's SYN and its RST make two events; UDP flows one each. (Each kind
        // has its own SNAT port space, kept below half full.)
        const TCP: u16 = 15_000;
        const UDP: u16 = 12_000;
        const EVENTS: u64 = 2 * TCP as u64 + UDP as u64;
        let mut fx = fixture(65_536);
        for i in 0..TCP {
            let syn = client_tcp(CLIENT, CLIENT_MAC, 2000 + i, frames::TCP_SYN, b"");
            assert_eq!(fx.run(&syn).action, XDP_REDIRECT, "connection {i}");
            let rst = client_tcp(CLIENT, CLIENT_MAC, 2000 + i, RST, b"");
            assert_eq!(fx.run(&rst).action, XDP_REDIRECT, "reset of connection {i}");
        }
        for i in 0..UDP {
            let dg = frames::udp4(D0_MAC, CLIENT_MAC, CLIENT, VIP, 2000 + i, UDP_PORT, b"e");
            assert_eq!(fx.run(&dg).action, XDP_REDIRECT, "UDP flow {i}");
        }
        let lost = fx.counter("nat_event_lost");
        println!("{EVENTS} connection events, ring not drained: {lost} lost");
        assert_eq!(fx.counter("nat_new"), u64::from(TCP + UDP));
        assert!(
            lost > 0 && lost < EVENTS / 4,
            "the ring must fill after about 37,000 of {EVENTS} events: {lost} lost"
        );
    });
}

/// Aging walks the whole NAT table every second, and `status` walks it too: the walk
/// reads it in batches (BPF_MAP_LOOKUP_BATCH, several calls here) and must return
/// every connection, each with its own translation.
#[test]
fn the_nat_table_is_walked_in_batches_and_whole() {
    const N: u32 = 50_000;
    let ns = fib_namespace();
    ns.run(|| {
        let fx = fixture(65_536);
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
