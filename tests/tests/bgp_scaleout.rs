//! Active-active over BGP (issue 9), end to end with real BIRD 2 daemons: a router
//! spreading the VIP by ECMP (L4 hash) over three fo nodes that announce it through
//! their own BIRD, three DSR backends, and 200 long-lived client connections.
//!
//! - traffic spreads over the three nodes, also while one node's agent alone is
//!   dead (BIRD keeps announcing, the pinned program keeps forwarding);
//! - a node crash (agent and BIRD, kill -9) and a cut link each withdraw the node,
//!   and the connections it carried continue on the others without a reset and
//!   without a lost event (identical Maglev tables + DSR); convergence is printed;
//! - a failing gate withdraws a node's announcement and traffic stops reaching it;
//!   the gate passing again brings it back; so do `demote`/`resume`, and a stopping
//!   agent withdraws before it exits.

use std::time::Duration;

use fo_tests::bgp_lab::{BgpLab, VIP};
use fo_tests::netns::wait_for;

const AGENTS: u32 = 200;
/// Far above the BFD (0.3 s) and BGP close figures, for a loaded machine.
const CONVERGE: Duration = Duration::from_secs(10);

fn others(lab: &BgpLab, gone: usize) -> Vec<String> {
    (0..lab.nodes.len())
        .filter(|&i| i != gone)
        .map(BgpLab::node_addr)
        .collect()
}

/// Wait up to `timeout` until the router's next hops for the VIP are `want` (else
/// panic: `never`, and the lab's state); print how long it took (`what`).
fn converge(lab: &BgpLab, (want, timeout): (&[String], Duration), never: &str, what: &str) {
    let took = lab
        .wait_nexthops(want, timeout)
        .unwrap_or_else(|| panic!("{never}\n{}", lab.dump()));
    println!("{what}: {:.0} ms", took.as_secs_f64() * 1000.0);
}

/// The packets the switch delivers to each node in 2 s, printed (`when`), spread over
/// the `active` nodes as [`assert_spread`] checks.
fn spread_over_2s(lab: &BgpLab, when: &str, active: &[usize], what: &str) {
    let counts = lab.delivered_during(Duration::from_secs(2));
    println!("packets delivered to each node {when}, 2 s: {counts:?}");
    assert_spread(lab, &counts, active, what);
}

fn assert_spread(lab: &BgpLab, counts: &[u64], active: &[usize], what: &str) {
    let total: u64 = counts.iter().sum();
    assert!(
        total > 0,
        "{what}: no packet reached any node\n{}",
        lab.dump()
    );
    for (i, &c) in counts.iter().enumerate() {
        if active.contains(&i) {
            // 200 connections over 3 next hops: about a third each; 10 % is a floor
            // that only a node left out of ECMP falls under.
            assert!(
                c * 10 >= total,
                "{what}: node {i} received {c} of {total} packets: ECMP does not spread over it ({counts:?})\n{}",
                lab.dump()
            );
        } else {
            assert!(
                c * 100 <= total,
                "{what}: withdrawn node {i} still received {c} of {total} packets ({counts:?})\n{}",
                lab.dump()
            );
        }
    }
}

#[test]
fn ecmp_spreads_and_a_lost_node_costs_no_connection() {
    let mut lab = BgpLab::new(3, 3);
    for n in &lab.nodes {
        // The status follows BIRD once per second.
        let announced = wait_for(Duration::from_secs(5), || {
            (n.router_status()["bgp"]["announced"] == true).then_some(())
        });
        let r = n.router_status();
        assert!(
            announced.is_some(),
            "{}: not announced per status: {r}",
            n.node.name
        );
        assert_eq!(r["ownership"], "bgp", "{r}");
        assert_eq!(r["state"], "master", "{r}");
        assert_eq!(r["bgp"]["routes"][0], format!("{VIP}/32"), "{r}");
        let bfd = r["bgp"]["bfd"].as_array().cloned().unwrap_or_default();
        assert!(
            wait_for(Duration::from_secs(10), || {
                (n.router_status()["bgp"]["bfd"][0]["up"] == true).then_some(())
            })
            .is_some(),
            "{}: BFD to the router never came up: {bfd:?}",
            n.node.name
        );
        let m = n.node.metrics();
        for needle in [
            format!("fo_bgp_announced{{router=\"ingest\",vip=\"{VIP}\"}} 1"),
            "fo_bgp_session_up{router=\"ingest\",session=\"upstream\"} 1".to_string(),
        ] {
            assert!(
                m.contains(&needle),
                "{}: metrics lack {needle}:\n{m}",
                n.node.name
            );
        }
    }
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));
    spread_over_2s(&lab, "with 3 active", &[0, 1, 2], "three nodes");

    // 0. Node 0's agent alone is killed -9 and restarted: BIRD keeps announcing and
    //    the pinned program keeps forwarding meanwhile.
    lab.nodes[0].node.kill9();
    std::thread::sleep(Duration::from_secs(1));
    let all: Vec<String> = (0..3).map(BgpLab::node_addr).collect();
    assert_eq!(
        lab.nexthops(),
        all,
        "a dead agent alone must not withdraw its node"
    );
    let counts = lab.delivered_during(Duration::from_secs(1));
    assert_spread(&lab, &counts, &[0, 1, 2], "agent of node 0 dead");
    lab.nodes[0].node.start();
    assert!(
        wait_for(Duration::from_secs(10), || {
            (lab.nodes[0].router_status()["bgp"]["announced"] == true).then_some(())
        })
        .is_some(),
        "the restarted agent did not announce again\n{}",
        lab.dump()
    );
    lab.wait_nexthops(&all, CONVERGE)
        .unwrap_or_else(|| panic!("node 0 not back after its agent restarted\n{}", lab.dump()));
    let log = lab.nodes[0].node.log();
    assert!(
        log.contains("their gates and tracked checks start passing")
            && !log.contains("bgp: withdrawing"),
        "the restarted agent must keep its announced node announced (gate taken as passing):\n{log}"
    );

    // 1. Node 2 crashes: agent and BIRD killed -9. BGP closes, the router drops it.
    lab.nodes[2].crash();
    converge(
        &lab,
        (&others(&lab, 2), CONVERGE),
        "node 2's crash was never withdrawn",
        "convergence after kill -9 of node 2 (agent + BIRD)",
    );
    std::thread::sleep(Duration::from_secs(1));
    spread_over_2s(&lab, "after the crash", &[0, 1], "after the crash");

    // 2. Node 1's link is cut at the switch: only BFD notices.
    lab.segment
        .switch
        .sh(&format!("ip link set {} down", lab.nodes[1].port));
    converge(
        &lab,
        (&[BgpLab::node_addr(0)], CONVERGE),
        "node 1's cut link was never withdrawn",
        "convergence after node 1's link went down (BFD 100 ms x 3)",
    );
    std::thread::sleep(Duration::from_secs(2));

    let (merged, _) = lab.finish();
    println!("fleet/sink figures: {merged:?}");
    assert!(merged.events_acked > 0, "nothing acknowledged: {merged:?}");
    assert_eq!(
        merged.connections_reset,
        0,
        "connections were reset when nodes left: {merged:?}\n{}",
        lab.dump()
    );
    assert_eq!(merged.reconnects, 0, "agents reconnected: {merged:?}");
    assert_eq!(merged.lost_acked, 0, "acknowledged events lost: {merged:?}");
    assert_eq!(
        merged.lost_unacked, 0,
        "events written but never received: {merged:?}"
    );
}

#[test]
fn a_failing_gate_withdraws_the_node_and_its_return_brings_it_back() {
    let mut lab = BgpLab::new(3, 3);
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));

    // The gate of node 0 fails: fo disables its route in BIRD, the router drops it.
    std::fs::remove_file(&lab.nodes[0].ready).expect("remove the gate's file");
    converge(
        &lab,
        (&others(&lab, 0), CONVERGE),
        "a closed gate did not withdraw node 0",
        "withdrawal after node 0's gate failed (check every 200 ms)",
    );
    wait_for(Duration::from_secs(5), || {
        (lab.nodes[0].router_status()["bgp"]["route_up"] == false).then_some(())
    });
    let r = lab.nodes[0].router_status();
    assert_eq!(r["state"], "fault", "{r}");
    assert_eq!(r["bgp"]["announced"], false, "{r}");
    assert_eq!(r["bgp"]["wanted"], false, "{r}");
    assert_eq!(r["gates_closed"][0], "ready", "{r}");
    let (ok, text) = lab.nodes[0].node.ctl(&["status"]);
    assert!(
        ok && text.contains("bgp (bird fo_ingest): withdrawn, sessions: upstream up"),
        "status must show the withdrawal and the live session: {text}"
    );
    let m = lab.nodes[0].node.metrics();
    let needle = format!("fo_bgp_announced{{router=\"ingest\",vip=\"{VIP}\"}} 0");
    assert!(m.contains(&needle), "metrics lack {needle}:\n{m}");
    std::thread::sleep(Duration::from_secs(1));
    spread_over_2s(&lab, "with node 0's gate closed", &[1, 2], "gate closed");

    // The gate passes again: announced again, traffic comes back to node 0.
    std::fs::write(&lab.nodes[0].ready, "").expect("restore the gate's file");
    let all: Vec<String> = (0..3).map(BgpLab::node_addr).collect();
    converge(
        &lab,
        (&all, Duration::from_secs(30)),
        "node 0 was not announced again",
        "announcement after node 0's gate passed again",
    );
    std::thread::sleep(Duration::from_secs(1));
    // Connections stay where ECMP put them while node 0 was out, and the router's
    // hash spreads them again now that the set changed: node 0 gets its share back.
    spread_over_2s(
        &lab,
        "after the gate passed",
        &[0, 1, 2],
        "gate passed again",
    );

    // Operator demote/resume withdraws and announces the same way.
    let (ok, text) = lab.nodes[1].node.ctl(&["demote", "ingest"]);
    assert!(ok, "demote failed: {text}");
    lab.wait_nexthops(&others(&lab, 1), CONVERGE)
        .unwrap_or_else(|| panic!("demote did not withdraw node 1\n{}", lab.dump()));
    let (ok, text) = lab.nodes[1].node.ctl(&["resume", "ingest"]);
    assert!(ok, "resume failed: {text}");
    lab.wait_nexthops(&all, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("resume did not announce node 1 again\n{}", lab.dump()));

    // BIRD restarts under a running agent: it comes up with fo's protocol disabled,
    // and the agent enables it again within its poll.
    lab.nodes[1].bird.kill9();
    lab.wait_nexthops(&others(&lab, 1), CONVERGE)
        .unwrap_or_else(|| panic!("a dead BIRD left node 1 announced\n{}", lab.dump()));
    let n1 = &mut lab.nodes[1];
    n1.bird.start(&n1.node.ns);
    let took = lab
        .wait_nexthops(&all, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "node 1 not announced again after BIRD restarted\n{}",
                lab.dump()
            )
        });
    println!(
        "announcement after node 1's BIRD restarted: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    // A stopping agent withdraws first, while BIRD stays up.
    let st = lab.nodes[2].node.terminate();
    assert!(
        st.is_some_and(|s| s.success()),
        "the agent did not exit cleanly on SIGTERM: {st:?}\n{}",
        lab.nodes[2].node.log()
    );
    lab.wait_nexthops(&others(&lab, 2), CONVERGE)
        .unwrap_or_else(|| panic!("a stopped agent left its VIP announced\n{}", lab.dump()));
    let shown = lab.nodes[2].bird.birdc("show protocols fo_ingest");
    assert!(
        shown.contains(" down "),
        "BIRD's fo_ingest must be down after the agent stopped: {shown}"
    );
    assert!(
        lab.nodes[2]
            .node
            .log()
            .contains("BGP announcement withdrawn"),
        "the agent must log the withdrawal:\n{}",
        lab.nodes[2].node.log()
    );
    std::thread::sleep(Duration::from_secs(1));

    let (merged, _) = lab.finish();
    println!("fleet/sink figures: {merged:?}");
    assert_eq!(merged.connections_reset, 0, "connections reset: {merged:?}");
    assert_eq!(merged.lost_acked, 0, "acknowledged events lost: {merged:?}");
    assert_eq!(merged.lost_unacked, 0, "events lost: {merged:?}");
}
