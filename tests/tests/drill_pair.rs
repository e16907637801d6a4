//! `fo-agent drill` on the pair lab (`fo_tests::pair`), both nodes linked by the
//! connection-state sync:
//! - under a 200-connection fleet, in DSR and in NAT, the drill hands mastership to the
//!   peer and back (`--back`) with no connection reset and no event lost, and its JSON
//!   report carries the legs, the blackout per direction, the fleet's client following
//!   the new master (seen by its XDP, after the request and within the window), the TCP
//!   resets both data planes counted (none) and both nodes' readiness;
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

/// Wait until A hears from B the readiness `f` accepts (a drill started before would
/// see B as it was).
fn wait_heard(lab: &Pair, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    let heard = wait_for(Duration::from_secs(15), || {
        f(&lab.a.status()["sync"]["peers"][0]["ready"]).then_some(())
    });
    assert!(
        heard.is_some(),
        "A never heard {what}: {}\nB:\n{}",
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
        // Every client of the fleet (one address here) followed the new master's MAC
        // after the request and within the window.
        let clients = &leg["clients"];
        let incoming = if leg["name"] == "to_peer" {
            "peer"
        } else {
            "this_node"
        };
        assert_eq!(clients["node"], incoming, "{leg:#}");
        assert!(clients["seen"].as_u64().is_some_and(|n| n >= 1), "{leg:#}");
        let window = leg["window_ms"].as_i64().expect("window_ms");
        let sane = |v: &serde_json::Value| v.as_i64().is_some_and(|ms| (0..=window).contains(&ms));
        assert!(
            sane(&clients["median_followed_ms"]) && sane(&clients["max_followed_ms"]),
            "{leg:#}"
        );
        let busiest = clients["busiest"].as_array().expect("busiest");
        assert!(
            busiest
                .iter()
                .any(|c| c["client"] == fo_tests::pair::CLIENT && sane(&c["followed_ms"])),
            "the fleet's client is not among the busiest that followed: {leg:#}"
        );
        // The TCP resets both data planes counted over the leg: none under the fleet.
        for node in ["this_node", "peer"] {
            let r = &leg["resets"][node];
            assert!(
                r["to_vip"] == 0 && r["from_backend"] == 0,
                "leg {} {node}: resets counted by XDP: {leg:#}",
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
    let metrics = lab.a.metrics();
    for line in [
        "fo_drill_total{router=\"lab\",result=\"passed\"} 1",
        "fo_drill_blackout_seconds{router=\"lab\",direction=\"client_to_backend\"}",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }
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
    wait_heard(&lab, "B's gate closed", |r| {
        r["routers"][0]["gates_open"] == false
    });
    let (ok, out) = drill(&lab.a, &[]);
    assert!(
        !ok && out.contains("gates are closed"),
        "the drill must refuse while B's gate is closed: {out}"
    );
    assert_eq!(
        lab.a.state("lab"),
        "master",
        "a refused drill moves nothing"
    );
    std::fs::write(&ready[1], "").expect("open B's gate");
    wait_peer_ready(&lab);

    // B restarts and cannot take A's snapshot: A's SnapshotEnd datagrams (kind 3, the
    // fifth byte of the UDP payload) go to a class whose queue holds nothing. B's readiness still reaches A: its sync is behind. (HTB and a u32
    // classifier: this kernel has no TC actions, and the lab no iptables.)
    lab.a.ns.sh(&format!(
        "tc qdisc add dev eth0 root handle 1: htb default 1 && \
         tc class add dev eth0 parent 1: classid 1:1 htb rate 10gbit && \
         tc class add dev eth0 parent 1: classid 1:2 htb rate 10gbit && \
         tc qdisc add dev eth0 parent 1:2 handle 20: pfifo limit 0 && \
         tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip protocol 17 0xff match ip dport {SYNC_PORT} 0xffff match u8 3 0xff at 32 flowid 1:2"
    ));
    lab.b.restart();
    // (B's gate check runs again after its restart: until it passes, B is in fault.)
    wait_heard(&lab, "B backup, its sync behind", |r| {
        r["in_sync"] == false && r["routers"][0]["state"] == "backup"
    });
    let (ok, out) = drill(&lab.a, &[]);
    assert!(
        !ok && out.contains("sync is behind"),
        "the drill must refuse while B's sync is behind: {out}"
    );
    assert_eq!(
        lab.a.state("lab"),
        "master",
        "a refused drill moves nothing"
    );
    lab.a.ns.sh("tc qdisc del dev eth0 root");
    let metrics = lab.a.metrics();
    assert!(
        metrics.contains("fo_drill_total{router=\"lab\",result=\"refused\"} 2"),
        "both refusals on A must be counted:\n{metrics}"
    );
}
