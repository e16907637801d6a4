//! Tunnel mode end to end, in network namespaces: backends two router hops away on
//! another subnet (`fo_tests::tunnel_lab`), reached by IPIP through the FIB's next hop,
//! decapsulated by `fo-agent decap`, answering the client directly.

use std::net::IpAddr;
use std::time::Duration;

use fo_tests::netns::{Netns, wait_for};
use fo_tests::tunnel_lab::{
    BulkServer, CLIENT, CLIENT6, LbNode, PORT, RoutedLab, VIP, VIP6, upload,
};

/// One load balancer on segment A running the real agent (generic XDP), with static
/// routers for VIP and VIP6; `service_extra` goes into the tunnel service on VIP:1514,
/// `more` after it.
fn tunnel_lb(lab: &RoutedLab, service_extra: &str, more: &str) -> LbNode {
    let rest = format!(
        r#"[[router]]
name = "lab"
ownership = "static"
vips = ["{VIP}"]

[[router]]
name = "lab6"
ownership = "static"
vips = ["{VIP6}"]

[[service]]
vip = "{VIP}"
port = {PORT}
hash = "5-tuple"
mode = "tunnel"
{service_extra}
backends = {backends}
{more}
"#,
        backends = lab.backends_toml(),
    );
    LbNode::new(lab, "tcp", "", &rest)
}

/// Every backend of the (first) service is resolved (its next hop known) and in the
/// table.
fn all_resolved(st: &serde_json::Value, n: usize) -> bool {
    service_resolved(st, 0, n)
}

fn service_resolved(st: &serde_json::Value, i: usize, n: usize) -> bool {
    st["services"][i]["backends"].as_array().is_some_and(|b| {
        b.len() == n
            && b.iter()
                .all(|b| b["resolved"] == true && b["effective_weight"] != 0)
    })
}

fn wait_resolved(lb: &LbNode, n: usize) {
    assert!(
        wait_for(Duration::from_secs(15), || all_resolved(&lb.status(), n)
            .then_some(()))
        .is_some(),
        "the tunnel backends' next hops never resolved: {}\n{}",
        lb.status(),
        lb.log()
    );
}

#[test]
fn three_hundred_connections_reach_routed_backends_through_ipip() {
    let lab = RoutedLab::new(3, 0);
    let mut lb = tunnel_lb(&lab, "", "");
    lb.start();
    wait_resolved(&lb, 3);

    let st = lb.status();
    let svc = &st["services"][0];
    assert_eq!(svc["mode"], "tunnel", "status: {st}");
    for b in svc["backends"].as_array().expect("backends") {
        let hop = b["next_hop"].as_str().unwrap_or_default();
        assert!(
            hop.starts_with("via 192.0.2.1 dev eth0 "),
            "backend {} must go via router 1 on eth0, status says {hop:?}",
            b["address"]
        );
    }
    let text = lb.text_status();
    assert!(
        text.contains("next hop: via 192.0.2.1 dev eth0"),
        "fo-agent status must show the next hop:\n{text}"
    );

    let counts = lab.connect(300);
    assert_eq!(
        counts[1..].iter().sum::<usize>(),
        300,
        "answers per backend: {counts:?}"
    );
    for (b, &c) in counts.iter().enumerate().skip(1) {
        assert!(
            (60..=140).contains(&c),
            "backend {b} got {c} of 300 connections, expected about 100 ({counts:?})"
        );
    }
    let client: IpAddr = CLIENT.parse().expect("client");
    let peers = lab.peers();
    assert_eq!(peers.len(), 300, "connections the backends accepted");
    assert!(
        peers.iter().all(|p| *p == client),
        "the backends must see the client's address {client}, saw {:?}",
        peers
            .iter()
            .filter(|p| **p != client)
            .take(5)
            .collect::<Vec<_>>()
    );

    // kill -9: the pinned data plane keeps tunnelling; a restarted agent adopts it and
    // keeps every tunnel backend (next hops resolved again, or kept from the maps).
    lb.kill9();
    let counts = lab.connect(60);
    assert_eq!(
        counts[1..].iter().sum::<usize>(),
        60,
        "after kill -9: {counts:?}"
    );
    // The kernel forgets the gateway's MAC: the restarted agent keeps the one in the
    // maps (with the route's interface) until the gateway resolves again.
    lb.ns.sh("ip neigh flush dev eth0");
    lb.start();
    let st = lb.status();
    assert!(
        all_resolved(&st, 3) && lb.log().contains("its MAC from the data plane stays"),
        "the restarted agent must keep every tunnel backend at once: {st}\n{}",
        lb.log()
    );
    let counts = lab.connect(60);
    assert_eq!(
        counts[1..].iter().sum::<usize>(),
        60,
        "after the restart: {counts:?}"
    );
}

/// Send one frame from router 2's backend-side port, built by scapy (`layers` is the
/// scapy expression after `Ether(dst=...)/`).
fn send_from_r2(lab: &RoutedLab, dst_mac: [u8; 6], layers: &str) {
    let mac = dst_mac.map(|b| format!("{b:02x}")).join(":");
    lab.r2.sh(&format!(
        "/usr/bin/python3 -c \"from scapy.all import *; sendp(Ether(dst='{mac}')/{layers}, iface='eth1', verbose=False)\""
    ));
}

fn in_echos(ns: &Netns) -> u64 {
    ns.sh("nstat -az IcmpInEchos | awk '/IcmpInEchos/ {print $2}'")
        .trim()
        .parse()
        .expect("IcmpInEchos")
}

fn decap_stats(lab: &RoutedLab, i: usize) -> Option<[u64; 3]> {
    fo_agent::dataplane::decap::stats(lab.backends[i].decap_dir(), "eth0").expect("decap stats")
}

#[test]
fn decap_strips_ipip_and_gue_to_its_own_address_and_detaches() {
    let lab = RoutedLab::new(2, 6080);
    let b1 = &lab.backends[0];
    let mac = b1.ns.mac("eth0");
    let inner = format!("IP(src='{CLIENT}', dst='{VIP}')/ICMP()");
    let before = in_echos(&b1.ns);
    send_from_r2(
        &lab,
        mac,
        &format!("IP(src='10.2.0.1', dst='10.2.0.21', proto=4)/{inner}"),
    );
    send_from_r2(
        &lab,
        mac,
        &format!(
            "IP(src='10.2.0.1', dst='10.2.0.21')/UDP(sport=40000, dport=6080)/Raw(b'\\\\x00\\\\x04\\\\x00\\\\x00')/{inner}"
        ),
    );
    // To another backend's address: not ours, passed untouched (counted; the kernel
    // drops it).
    send_from_r2(
        &lab,
        mac,
        &format!("IP(src='10.2.0.1', dst='10.2.0.22', proto=4)/{inner}"),
    );
    let seen = wait_for(Duration::from_secs(5), || {
        (in_echos(&b1.ns) >= before + 2).then_some(())
    });
    assert!(
        seen.is_some(),
        "the backend's kernel must get both echo requests to the VIP once decapsulated: IcmpInEchos {} -> {}",
        before,
        in_echos(&b1.ns)
    );
    let stats = decap_stats(&lab, 0).expect("pinned counters");
    assert_eq!(
        stats,
        [1, 1, 1],
        "decapsulated IPIP, GUE, and tunnel packets passed untouched (the one to 10.2.0.22)"
    );
    assert_eq!(
        in_echos(&b1.ns),
        before + 2,
        "exactly the two packets to 10.2.0.21"
    );

    // Attaching again updates in place: same link, fresh counters.
    let bin = fo_tests::agent_bin();
    let dir = b1.decap_dir().display().to_string();
    let again = b1.ns.sh(&format!(
        "'{}' decap --interface eth0 --xdp-mode generic --bpf-dir '{dir}'",
        bin.display()
    ));
    assert!(again.contains("updated on eth0"), "second attach: {again}");
    assert_eq!(
        decap_stats(&lab, 0),
        Some([0, 0, 0]),
        "fresh maps after the update"
    );

    let out = b1.ns.sh(&format!(
        "'{}' decap --interface eth0 --detach --bpf-dir '{dir}'",
        bin.display()
    ));
    assert!(out.contains("detached from eth0"), "detach: {out}");
    assert_eq!(decap_stats(&lab, 0), None, "pins removed");
    let link = b1.ns.sh("ip -d link show dev eth0");
    assert!(
        !link.contains("prog/xdp"),
        "the program must be gone: {link}"
    );
    let out = b1.ns.sh(&format!(
        "'{}' decap --interface eth0 --detach --bpf-dir '{dir}'",
        bin.display()
    ));
    assert!(out.contains("nothing attached"), "a second detach: {out}");
}

/// How the master fails in [`tunnel_failover`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    /// kill -9 of its agent (the pinned data plane stays).
    Kill,
    /// kill -9, then its link goes down: the node is gone.
    NodeDies,
    /// Its link goes down while its agent keeps running.
    LinkDown,
}

/// Two fo nodes (VRRP, `mode = "tunnel"`), backends behind a router running
/// `fo-agent decap`, 200 long-lived connections sending an event each 10 ms: the master
/// fails (`failure`); B takes over with the same Maglev table and next hops, and every
/// connection continues on its backend.
fn tunnel_failover(failure: Failure) {
    use fo_tests::pair::{Pair, PairOptions};
    const AGENTS: u32 = 200;
    let mut lab = Pair::new(&PairOptions {
        tunnel: true,
        ..Default::default()
    });
    lab.start_a_master();
    for n in [&lab.a, &lab.b] {
        let ok = wait_for(Duration::from_secs(15), || {
            all_resolved(&n.status(), lab.backends.len()).then_some(())
        });
        assert!(
            ok.is_some(),
            "node {}: the tunnel backends never resolved: {}\n{}",
            n.name,
            n.status(),
            n.log()
        );
    }
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(4));
    if failure != Failure::LinkDown {
        lab.a.kill9();
    }
    if failure != Failure::Kill {
        lab.a.ns.sh("ip link set eth0 down");
    }
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(15)),
        "B did not take over after A failed ({failure:?}):\n{}",
        lab.b.log()
    );
    std::thread::sleep(Duration::from_secs(5));
    let b_after = lab.b.status();
    let (merged, sinks) = lab.finish();
    let fleet = lab.fleet.read_report();
    let connected = fleet.agents.iter().filter(|a| a.acked > 0).count();
    println!(
        "tunnel failover ({failure:?}): connected {connected}/{AGENTS}, acked {} lost_acked {} resets {} reconnects {}, longest silence {:.0} ms; B's xdp {}",
        merged.events_acked,
        merged.lost_acked,
        merged.connections_reset,
        merged.reconnects,
        merged.max_silence_ms,
        b_after["xdp"],
    );
    assert_eq!(
        connected, AGENTS as usize,
        "every connection must get events acknowledged through the tunnel: {merged:?}"
    );
    assert_eq!(
        merged.connections_reset, 0,
        "connections were reset: {merged:?}"
    );
    assert_eq!(
        merged.lost_acked, 0,
        "acknowledged events were lost: {merged:?}"
    );
    assert_eq!(merged.reconnects, 0, "agents had to reconnect: {merged:?}");
    let per_sink: Vec<usize> = sinks.iter().map(|s| s.agents.len()).collect();
    assert!(
        per_sink.iter().all(|&n| n > 0),
        "every backend must get connections (5-tuple hash): {per_sink:?}"
    );
}

#[test]
fn killed_tunnel_master_loses_no_connection() {
    tunnel_failover(Failure::Kill);
}

#[test]
fn dead_tunnel_master_node_loses_no_connection() {
    tunnel_failover(Failure::NodeDies);
}

#[test]
fn tunnel_master_link_down_loses_no_connection() {
    tunnel_failover(Failure::LinkDown);
}

/// Router 1 forwards to router 2 over a 1400-byte link. The client's full-size segments
/// grow by 20 bytes in the tunnel: the LB's XDP answers those over its own 1500-byte
/// link with "fragmentation needed", and router 1 those over 1400 bytes (to the outer
/// source, the LB's address), which the LB relays to the client. A 10 MB upload
/// completes only if the client learns the path MTU from both.
#[test]
fn ten_megabytes_cross_a_1400_byte_path_through_the_tunnel() {
    const BULK: u16 = 1515;
    const SIZE: usize = 10 * 1024 * 1024;
    let lab = RoutedLab::with_middle_mtu(1, 0, Some(1400));
    let _bulk = BulkServer::start(&lab.backends[0].ns, BULK);
    let mut lb = tunnel_lb(
        &lab,
        "",
        &format!(
            "[[service]]\nvip = \"{VIP}\"\nport = {BULK}\nmode = \"tunnel\"\nbackends = {}\n",
            lab.backends_toml()
        ),
    );
    lb.start();
    wait_resolved(&lb, 1);
    // The relay sends through the kernel's FIB and neighbour table (bpf_fib_lookup);
    // a real LB knows its gateway's MAC, the next hop towards its clients. Here the
    // client is on the LB's own segment: make the LB's kernel resolve it.
    lb.ns.sh(&format!("ping -c 1 -W 2 {CLIENT} >/dev/null"));
    let got = upload(&lab.client, BULK, SIZE);
    let st = lb.status();
    let pmtu = lab.client.sh(&format!("ip route get {VIP}"));
    let sources = fo_tests::netns::sh(&format!(
        "bpftool map dump pinned {}/TUNNEL_SOURCES 2>&1 || true",
        lb.pin_dir.display()
    ));
    println!(
        "10 MB over a 1400-byte middle link: {got:?}; client route cache: {}; LB xdp: {}",
        pmtu.trim(),
        st["xdp"]
    );
    assert_eq!(
        got,
        Ok(SIZE as u64),
        "the upload must complete through the tunnel (client's route: {pmtu}; LB counters {}; TUNNEL_SOURCES {sources})",
        st["xdp"]
    );
}

#[test]
fn ipv6_connections_reach_routed_backends_through_ip6ip6() {
    let lab = RoutedLab::new(3, 0);
    let mut lb = tunnel_lb(
        &lab,
        "",
        &format!(
            "[[service]]\nvip = \"{VIP6}\"\nport = {PORT}\nhash = \"5-tuple\"\nmode = \"tunnel\"\nbackends = {}\n",
            lab.backends6_toml()
        ),
    );
    lb.start();
    let ok = wait_for(Duration::from_secs(15), || {
        service_resolved(&lb.status(), 1, 3).then_some(())
    });
    assert!(
        ok.is_some(),
        "the IPv6 tunnel backends never resolved: {}\n{}",
        lb.status(),
        lb.log()
    );
    for b in lb.status()["services"][1]["backends"]
        .as_array()
        .expect("backends")
    {
        let hop = b["next_hop"].as_str().unwrap_or_default();
        assert!(
            hop.starts_with("via 2001:db8:a::1 dev eth0 "),
            "backend {} must go via router 1, status says {hop:?}",
            b["address"]
        );
    }
    let counts = lab.connect_to(VIP6, 150);
    assert_eq!(
        counts[1..].iter().sum::<usize>(),
        150,
        "answers per backend: {counts:?}"
    );
    assert!(
        counts[1..].iter().all(|&c| c > 0),
        "every backend must get connections: {counts:?}"
    );
    let client: IpAddr = CLIENT6.parse().expect("client");
    let peers = lab.peers();
    assert!(
        peers.len() == 150 && peers.iter().all(|p| *p == client),
        "the backends must see the client's address {client} on all 150 connections: {:?}",
        peers.iter().take(5).collect::<Vec<_>>()
    );
}

/// GUE with a source prefix: the outer source varies over 10.9.0.0/24 and the UDP
/// source port per flow; the backends decapsulate GUE on port 6080.
#[test]
fn gue_with_a_source_prefix_reaches_the_backends() {
    let lab = RoutedLab::new(3, 6080);
    let mut lb = tunnel_lb(
        &lab,
        "encap = \"gue\"\ngue_port = 6080\ntunnel_source = \"10.9.0.0/24\"",
        "",
    );
    lb.start();
    wait_resolved(&lb, 3);
    let counts = lab.connect(150);
    assert_eq!(
        counts[1..].iter().sum::<usize>(),
        150,
        "answers per backend: {counts:?}"
    );
    let client: IpAddr = CLIENT.parse().expect("client");
    assert!(
        lab.peers().iter().all(|p| *p == client),
        "the backends must see the client's address"
    );
    let stats: Vec<[u64; 3]> = (0..3)
        .map(|i| decap_stats(&lab, i).expect("pinned counters"))
        .collect();
    assert!(
        stats.iter().all(|s| s[0] == 0 && s[1] > 0),
        "every backend must have decapsulated GUE only: {stats:?}"
    );
    let sources = fo_tests::netns::sh(&format!(
        "bpftool -j map dump pinned {}/TUNNEL_SOURCES",
        lb.pin_dir.display()
    ));
    let dump: serde_json::Value = serde_json::from_str(&sources).expect("bpftool JSON");
    let keys: Vec<Vec<String>> = dump
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            e["key"]
                .as_array()
                .expect("key bytes")
                .iter()
                .take(9)
                .map(|b| b.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .collect();
    // Prefix length 8 + 24 (the family byte counts), family 4, then 10.9.0.0.
    let want: Vec<String> = [
        "0x20", "0x00", "0x00", "0x00", "0x04", "0x0a", "0x09", "0x00", "0x00",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        keys,
        vec![want],
        "TUNNEL_SOURCES must hold exactly 10.9.0.0/24: {sources}"
    );
}
