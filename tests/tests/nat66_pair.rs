//! NAT66 between two synced fo nodes, in namespaces (prefix `n6x` for the ones made
//! here): an IPv6 VIP (VRRPv3 over IPv6, multicast) with a `mode = "nat"` service to
//! three backends in fd00:1::/64 behind a router, SNAT address 2001:db8::101; the
//! nodes sync over IPv4. 200 long-lived connections from the client, then kill -9 of
//! the master: the backup takes over with the synced table and no connection is reset.
//! Neither the VIP nor the SNAT address is on any interface: ND for both is answered
//! by the master's XDP program.

use std::time::Duration;

use fo_tests::netns::{Netns, Segment};
use fo_tests::pair::{Backend, Node, Pair, PairOptions, SyncKey};

const VIP6: &str = "2001:db8::100";
const SNAT6: &str = "2001:db8::101";
const AGENTS: u32 = 200;

fn config(node: &Node, prio: u8, peer: &str, key: &SyncKey, backends: &[String]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\", port = 11514 }}"))
        .collect();
    format!(
        r#"{node}
flow_table_size = 65536
sync = {{ peers = ["{peer}"], key_file = "{key}" }}

[[router]]
name = "lab"
vrid = 61
priority = {prio}
advert_interval = "1s"
preempt = true
vips = ["{VIP6}"]
snat = ["{SNAT6}"]

[[service]]
name = "events"
vip = "{VIP6}"
port = 1514
hash = "5-tuple"
mode = "nat"
backends = [{list}]
"#,
        node = fo_tests::node_table(&node.pin_dir, &node.socket, node.metrics_port),
        key = key.0.display(),
        list = list.join(", "),
    )
}

/// The pair's namespaces given IPv6: the client and the nodes on 2001:db8::/64, a
/// router to the backends' fd00:1::/64, three backends with a sink on [::]:11514.
fn nat66_lab(key: &SyncKey) -> Pair {
    let mut lab = Pair::new(&PairOptions {
        backends: 0,
        ..Default::default()
    });
    // Link-local multicast (VRRPv3, ND) must reach every port whatever MLD snooping
    // learned.
    lab.segment
        .switch
        .sh("ip link set br0 type bridge mcast_snooping 0");
    // Software checksums everywhere: NAT updates them incrementally (see pair.rs).
    lab.client
        .sh("ip -6 addr add 2001:db8::10/64 dev eth0 nodad && ethtool -K eth0 tx off >/dev/null");
    for (n, addr) in [(&lab.a, "2001:db8::2"), (&lab.b, "2001:db8::3")] {
        n.ns.sh(&format!(
            "ip -6 addr add {addr}/64 dev eth0 nodad && ip -6 route add fd00:1::/64 via 2001:db8::1"
        ));
    }
    let rt = Netns::new("n6xrt");
    lab.segment.plug(&rt, "eth0", "192.0.2.1/24");
    let inner = Segment::new();
    inner.plug(&rt, "eth1", "10.1.0.1/24");
    rt.sh("ip -6 addr add 2001:db8::1/64 dev eth0 nodad && ip -6 addr add fd00:1::1/64 dev eth1 nodad \
           && sysctl -qw net.ipv6.conf.all.forwarding=1 \
           && ethtool -K eth0 tx off >/dev/null && ethtool -K eth1 tx off >/dev/null");
    let mut addrs = Vec::new();
    for i in 1..=3u8 {
        let addr = format!("fd00:1::{}", 20 + i);
        let ns = Netns::new(&format!("n6xb{i}"));
        inner.plug(&ns, "eth0", &format!("10.1.0.{}/24", 20 + i));
        ns.sh(&format!(
            "ip -6 addr add {addr}/64 dev eth0 nodad && ip -6 route add default via fd00:1::1 \
             && ethtool -K eth0 tx off >/dev/null"
        ));
        addrs.push(addr.clone());
        lab.backends
            .push(Backend::with_sink(addr, ns, &lab.dir, i, "[::]:11514"));
    }
    lab.router = Some(rt);
    lab.backend_segment = Some(inner);
    std::fs::write(&lab.a.config, config(&lab.a, 150, lab.b.addr, key, &addrs)).expect("config a");
    std::fs::write(&lab.b.config, config(&lab.b, 100, lab.a.addr, key, &addrs)).expect("config b");
    lab
}

fn nat_connections(status: &serde_json::Value) -> u64 {
    status["nat_connections"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn nat66_killed_master_connections_continue_on_the_synced_backup() {
    let key = SyncKey::new();
    let mut lab = nat66_lab(&key);
    lab.start_a_master();
    lab.assert_b_in_sync();
    lab.fleet
        .start(&lab.client, &format!("[{VIP6}]:1514"), AGENTS);
    std::thread::sleep(Duration::from_secs(4));
    let a_status = lab.a.status();
    let b_status = lab.b.status();
    println!(
        "before the kill: A's NAT table {}, A's xdp nat_new {} nat_hit {} nat_reply {}; B's (synced) {}, B's sync {}",
        a_status["nat_connections"],
        a_status["xdp"]["nat_new"],
        a_status["xdp"]["nat_hit"],
        a_status["xdp"]["nat_reply"],
        b_status["nat_connections"],
        b_status["sync"]
    );
    assert!(
        nat_connections(&b_status) >= u64::from(AGENTS),
        "B must hold the {AGENTS} IPv6 connections A opened: {}\nA: {}",
        b_status["sync"],
        a_status["xdp"]
    );

    lab.a.kill9();
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(15)),
        "B did not take over after A was killed:\n{}",
        lab.b.log()
    );
    std::thread::sleep(Duration::from_secs(6));
    let b_after = lab.b.status();
    let (merged, _) = lab.finish();
    let agents = lab.fleet.read_report().agents;
    let survivors = agents
        .iter()
        .filter(|a| a.resets == 0 && a.connections == 1 && a.connected_at_exit)
        .count();
    println!(
        "NAT66 failover (kill -9 of the master, sync on): survivors {survivors}/{AGENTS}, \
         gap {:.0} ms, acked {} lost_acked {} resets {} reconnects {}; B's xdp: nat_hit {} nat_reply {} nat_new {} nat_no_flow {}",
        merged.max_silence_ms,
        merged.events_acked,
        merged.lost_acked,
        merged.connections_reset,
        merged.reconnects,
        b_after["xdp"]["nat_hit"],
        b_after["xdp"]["nat_reply"],
        b_after["xdp"]["nat_new"],
        b_after["xdp"]["nat_no_flow"],
    );
    assert_eq!(
        merged.connections_reset, 0,
        "no connection may be reset: {merged:?}"
    );
    assert_eq!(
        survivors, AGENTS as usize,
        "every connection continues: {merged:?}"
    );
    assert_eq!(
        merged.lost_acked, 0,
        "acknowledged events were lost: {merged:?}"
    );
    assert!(
        b_after["xdp"]["nat_hit"].as_u64().unwrap_or(0) > 0
            && b_after["xdp"]["nat_reply"].as_u64().unwrap_or(0) > 0,
        "B's XDP must translate the synced connections both ways: {}",
        b_after["xdp"]
    );
    let log = lab.b.log();
    assert!(
        log.contains("connection table current: claiming the VIPs"),
        "B must claim only with a current table (sync-then-claim):\n{log}"
    );
}
