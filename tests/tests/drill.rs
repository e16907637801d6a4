//! `fo-agent drill` on the pair lab (`fo_tests::pair`), both nodes linked by the
//! connection-state sync:
//! - under a 200-connection fleet, in DSR and in NAT, the drill hands mastership to the
//!   peer and back (`--back`) with no connection reset and no event lost, and its JSON
//!   report carries the legs, the blackout per direction and both nodes' readiness;
//! - it refuses, saying why, while the peer's gate is closed, while the peer's sync is
//!   behind (it cannot take this node's snapshot), and on a node that is not master.

use std::time::Duration;

use fo_tests::netns::wait_for;
use fo_tests::pair::{Node, Pair, PairOptions, SyncKey};

const AGENTS: u32 = 200;
const SYNC_PORT: u16 = 7788;

fn drill_lab(key: &SyncKey, nat: bool) -> Pair {
    Pair::new(&PairOptions {
        nat,
        node_extra: format!(
            "sync = {{ peers = [\"{{peer}}\"], port = {SYNC_PORT}, key_file = \"{}\" }}",
            key.0.display()
        ),
        ..Default::default()
    })
}

/// Wait until A hears B ready for a drill: B backup with its sync in step with A's.
fn wait_peer_ready(lab: &Pair) {
    let ready = wait_for(Duration::from_secs(30), || {
        let st = lab.a.status();
        let r = &st["sync"]["peers"][0]["ready"];
        (r["in_sync"] == true && r["routers"][0]["state"] == "backup").then_some(())
    });
    assert!(
        ready.is_some(),
        "A never heard B ready on the sync channel: {}\n{}",
        lab.a.status()["sync"],
        lab.b.log()
    );
}

/// `fo-agent drill lab ARGS` on `node`: (success, output).
fn drill(node: &Node, args: &[&str]) -> (bool, String) {
    let mut all = vec!["drill", "lab"];
    all.extend_from_slice(args);
    node.ctl(&all)
}

fn under_fleet(nat: bool) {
    let key = SyncKey::new();
    let mut lab = drill_lab(&key, nat);
    lab.start_a_master();
    wait_peer_ready(&lab);
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));
    let (ok, out) = drill(&lab.a, &["--back", "--json"]);
    assert!(
        ok,
        "the drill failed: {out}\nA:\n{}\nB:\n{}",
        lab.a.log(),
        lab.b.log()
    );
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("drill JSON: {e}: {out}"));
    println!(
        "drill report ({}): {report:#}",
        if nat { "NAT" } else { "DSR" }
    );
    assert_eq!(report["result"], "passed", "{report:#}");
    assert_eq!(report["router"], "lab");
    let legs = report["legs"].as_array().expect("legs");
    assert_eq!(legs.len(), 2, "to_peer and back: {report:#}");
    let mut dirs = vec!["client_to_backend"];
    if nat {
        dirs.push("backend_to_client");
    }
    for leg in legs {
        assert!(leg["new_master_reported_ms"].is_u64(), "{leg:#}");
        assert!(
            leg["resolution_ms"].as_f64().is_some_and(|r| r > 0.0),
            "{leg:#}"
        );
        for d in &dirs {
            assert!(
                leg["blackout"][d]["ms"].is_u64(),
                "leg {} lacks the blackout {d}: {leg:#}",
                leg["name"]
            );
        }
    }
    for when in ["before", "after"] {
        for node in ["local", "peer"] {
            let n = &report[when][node];
            assert!(
                n["in_sync"].is_boolean() && n["routers"][0]["gates_open"] == true,
                "{when} {node}: {report:#}"
            );
        }
    }
    assert_eq!(report["after"]["local"]["routers"][0]["state"], "master");
    assert_eq!(report["after"]["peer"]["routers"][0]["state"], "backup");
    std::thread::sleep(Duration::from_secs(2));
    let (merged, _) = lab.finish();
    println!(
        "drill {} under {AGENTS} connections: resets {} (sinks saw {}), lost_acked {}, reconnects {}, longest silence at the sinks {:.0} ms",
        if nat { "NAT" } else { "DSR" },
        merged.connections_reset,
        merged.sink_connections_rst,
        merged.lost_acked,
        merged.reconnects,
        merged.max_silence_ms
    );
    assert_eq!(merged.connections_reset, 0, "{merged:?}");
    assert_eq!(merged.sink_connections_rst, 0, "{merged:?}");
    assert_eq!(merged.lost_acked, 0, "{merged:?}");
    assert_eq!(merged.reconnects, 0, "{merged:?}");
}

#[test]
fn drill_dsr_under_a_fleet_resets_nothing() {
    under_fleet(false);
}

#[test]
fn drill_nat_under_a_fleet_resets_nothing() {
    under_fleet(true);
}

/// Give both nodes a gate on a file of their own (present: open).
fn gated(lab: &Pair) -> Vec<std::path::PathBuf> {
    [&lab.a, &lab.b]
        .iter()
        .map(|n| {
            let ready = lab.dir.join(format!("{}.ready", n.name));
            std::fs::write(&ready, "").expect("ready file");
            let cfg = std::fs::read_to_string(&n.config).expect("config");
            let cfg = cfg.replacen("preempt = true\n", "preempt = true\ngates = [\"ready\"]\n", 1)
                + &format!(
                    "\n[[check]]\nname = \"ready\"\nkind = \"file\"\npath = \"{}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
                    ready.display()
                );
            std::fs::write(&n.config, cfg).expect("config");
            ready
        })
        .collect()
}

#[test]
fn drill_refuses_while_the_peer_is_not_ready() {
    let key = SyncKey::new();
    let mut lab = drill_lab(&key, false);
    let ready = gated(&lab);
    lab.start_a_master();
    wait_peer_ready(&lab);

    let (ok, out) = drill(&lab.b, &[]);
    assert!(!ok && out.contains("not master"), "B is backup: {out}");

    // B's gate closes: B goes to fault, and A hears it.
    std::fs::remove_file(&ready[1]).expect("close B's gate");
    let refused = wait_for(Duration::from_secs(10), || {
        let (ok, out) = drill(&lab.a, &[]);
        (!ok && out.contains("gates are closed")).then_some(out)
    });
    assert!(
        refused.is_some(),
        "the drill must refuse while B's gate is closed: {}",
        drill(&lab.a, &[]).1
    );
    assert_eq!(
        lab.a.state("lab"),
        "master",
        "a refused drill moves nothing"
    );
    std::fs::write(&ready[1], "").expect("open B's gate");
    wait_peer_ready(&lab);

    // B restarts and cannot take A's snapshot: A's datagrams longer than a heartbeat
    // (snapshot parts and ends, updates) are dropped on B's way in. B's readiness still
    // reaches A: its sync is behind.
    let tc = format!(
        "tc qdisc add dev eth0 ingress && \
         tc filter add dev eth0 parent ffff: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport {SYNC_PORT} 0xffff match u16 0 0xff80 at 2 action ok && \
         tc filter add dev eth0 parent ffff: protocol ip prio 2 u32 match ip protocol 17 0xff match ip dport {SYNC_PORT} 0xffff action drop"
    );
    lab.b.ns.sh(&tc);
    lab.b.restart();
    let refused = wait_for(Duration::from_secs(15), || {
        let (ok, out) = drill(&lab.a, &[]);
        (!ok && out.contains("sync is behind")).then_some(out)
    });
    assert!(
        refused.is_some(),
        "the drill must refuse while B's sync is behind: {}\nA's sync: {}",
        drill(&lab.a, &[]).1,
        lab.a.status()["sync"]
    );
    assert_eq!(
        lab.a.state("lab"),
        "master",
        "a refused drill moves nothing"
    );
    lab.b.ns.sh("tc qdisc del dev eth0 ingress");
}
