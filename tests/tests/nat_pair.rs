//! `mode = "nat"` end to end: two fo agents (VRRP), backends that do NOT hold the VIP
//! on their own subnet 10.1.0.0/24 behind a router namespace, a client fleet of
//! long-lived TCP connections sending numbered events to VIP:1514, translated to
//! backend:11514 from the floating SNAT address.

use std::time::Duration;

use fo_tests::pair::{NAT_BACKEND_PORT, Pair, PairOptions, SNAT};

fn nat_lab(extra_node: &str) -> Pair {
    Pair::new(&PairOptions {
        nat: true,
        node_extra: extra_node.to_string(),
        ..Default::default()
    })
}

fn fleet_report(lab: &Pair) -> fo_lab::report::FleetReport {
    serde_json::from_str(&std::fs::read_to_string(&lab.fleet_report).expect("fleet report"))
        .expect("fleet report JSON")
}

#[test]
fn three_hundred_connections_through_routed_backends() {
    let mut lab = nat_lab("");
    lab.a.start();
    lab.b.start();
    assert!(
        lab.wait_master(&lab.a, Duration::from_secs(10)),
        "A (priority 150) never became master:\n{}",
        lab.a.log()
    );
    for b in &lab.backends {
        let addrs = b.ns.sh("ip -br addr show");
        assert!(
            !addrs.contains("192.0.2.100"),
            "a NAT backend must not hold the VIP: {addrs}"
        );
    }
    lab.start_fleet(300);
    std::thread::sleep(Duration::from_secs(5));
    let status = lab.a.status();
    let (merged, sinks) = lab.finish();
    let fleet = fleet_report(&lab);
    println!("fleet/sink figures: {merged:?}");
    let connected = fleet.agents.iter().filter(|a| a.acked > 0).count();
    println!(
        "NAT: {connected}/300 connections completed through {SNAT} -> backends:{NAT_BACKEND_PORT}; xdp counters {}",
        status["xdp"]
    );
    assert_eq!(
        connected, 300,
        "every connection must get its events acknowledged through the VIP: {merged:?}"
    );
    assert_eq!(merged.connections_reset, 0, "resets: {merged:?}");
    assert_eq!(merged.lost_acked, 0, "acknowledged events lost: {merged:?}");
    let per_sink: Vec<usize> = sinks.iter().map(|s| s.agents.len()).collect();
    assert!(
        per_sink.iter().all(|&n| n > 0),
        "every backend must get connections (5-tuple hash): {per_sink:?}"
    );
    let nat_new = status["xdp"]["nat_new"].as_u64().unwrap_or(0);
    assert!(
        nat_new >= 300,
        "the data plane must have opened >= 300 NAT connections, counted {nat_new}: {}",
        status["xdp"]
    );
}
