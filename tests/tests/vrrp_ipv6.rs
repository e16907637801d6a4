//! VRRPv3 over IPv6 between two fo nodes (multicast ff02::12, link-local sources): one
//! master; the client learns the master's MAC for the IPv6 VIP from the data plane's
//! Neighbor Advertisement; after kill -9 of the master the backup takes over and its
//! unsolicited NA (override) moves the client's neighbour entry.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use fo_tests::netns::wait_for;
use fo_tests::pair::{Node, Pair, PairOptions};

const VIP6: &str = "2001:db8::100";

fn config(node: &Node, prio: u8) -> String {
    format!(
        r#"{node}
flow_table_size = 4096

[[router]]
name = "lab"
vrid = 61
priority = {prio}
advert_interval = "100ms"
vips = ["{VIP6}"]
"#,
        node = fo_tests::node_table(&node.pin_dir, &node.socket, node.metrics_port),
    )
}

fn client_sees(lab: &Pair, mac: [u8; 6]) -> bool {
    // Ask: a ping makes the client solicit the VIP (the echo itself goes unanswered:
    // no node has the VIP as an address).
    let _ = lab
        .client
        .try_sh(&format!("ping -6 -c1 -W0.2 {VIP6} >/dev/null 2>&1"));
    lab.client.neighbour(VIP6.parse::<IpAddr>().expect("VIP6")) == Some(mac)
}

#[test]
fn ipv6_pair_elects_and_fails_over() {
    let mut lab = Pair::new(&PairOptions {
        backends: 0,
        ..Default::default()
    });
    // Link-local multicast must reach every port whatever MLD snooping learned.
    lab.segment
        .switch
        .sh("ip link set br0 type bridge mcast_snooping 0");
    lab.client
        .sh("ip -6 addr add 2001:db8::10/64 dev eth0 nodad");
    std::fs::write(&lab.a.config, config(&lab.a, 150)).expect("config a");
    std::fs::write(&lab.b.config, config(&lab.b, 100)).expect("config b");
    lab.a.start();
    lab.b.start();
    assert!(
        lab.wait_master(&lab.a, Duration::from_secs(15)),
        "A never became master over IPv6:\n{}",
        lab.a.log()
    );
    assert!(
        lab.b.wait_state("lab", "backup", Duration::from_secs(5)),
        "B must hear A's IPv6 adverts and stay backup:\n{}",
        lab.b.log()
    );
    let (a_mac, b_mac) = (lab.a.ns.mac("eth0"), lab.b.ns.mac("eth0"));
    assert!(
        wait_for(Duration::from_secs(5), || client_sees(&lab, a_mac)
            .then_some(()))
        .is_some(),
        "the client should resolve the IPv6 VIP to A's MAC {a_mac:02x?}, has {:02x?}",
        lab.client.neighbour(VIP6.parse().expect("VIP6"))
    );

    let killed = Instant::now();
    lab.a.kill9();
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(5)),
        "B did not take over over IPv6:\n{}",
        lab.b.log()
    );
    let took = killed.elapsed();
    // B's unsolicited NA overrides the client's entry without the client asking.
    assert!(
        wait_for(Duration::from_secs(3), || (lab
            .client
            .neighbour(VIP6.parse().expect("VIP6"))
            == Some(b_mac))
        .then_some(()))
        .is_some(),
        "the client's neighbour entry for the VIP should move to B's MAC {b_mac:02x?} by B's unsolicited NA, has {:02x?}",
        lab.client.neighbour(VIP6.parse().expect("VIP6"))
    );
    println!(
        "IPv6 takeover (kill -9 -> B master seen by status): {} ms",
        took.as_millis()
    );
}
