//! Two fo agents, three DSR backends running `fo-sink`, and a client holding 200
//! long-lived TCP connections to VIP:1514 that send a numbered event every 10 ms
//! (`fo-fleet`). What operators need from the agent, end to end: a killed master is
//! replaced and its node stops answering ARP; a restarted master moves nothing, also
//! when it upgrades the pinned XDP program;
//! reloads change backends without a transition; bad reloads are refused; the CLI
//! moves mastership; status and metrics say what happened.

use std::time::Duration;

use fo_tests::netns::wait_for;
use fo_tests::pair::{Node, Pair, PairOptions};

const AGENTS: u32 = 200;

fn transitions_to_master(status: &serde_json::Value) -> u64 {
    status["routers"][0]["transitions_total"]["master"]
        .as_u64()
        .unwrap_or(0)
}

/// After longer than B's Master_Down_Interval (3.6 s), nothing has moved: B has become
/// master no more often than `b_before` times, and A is master.
fn nothing_moved(lab: &Pair, b_before: u64, during: &str) {
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        transitions_to_master(&lab.b.status()),
        b_before,
        "B took over during A's {during}:\n{}",
        lab.b.log()
    );
    assert_eq!(lab.a.state("lab"), "master");
}

/// The operator's `fo-agent COMMAND lab` on node `on`, which must succeed, moves
/// mastership: `master` must be master within 10 s (`what` if not).
fn moves_master((on, command): (&Node, &str), master: &Node, what: &str) {
    let (ok, out) = on.ctl(&[command, "lab"]);
    assert!(ok, "{command}: {out}");
    assert!(
        master.wait_state("lab", "master", Duration::from_secs(10)),
        "{what}"
    );
}

#[test]
fn kill_and_restart_of_the_master_lose_nothing() {
    let mut lab = Pair::new(&PairOptions::default());
    lab.start_a_master();
    assert_eq!(
        lab.b.state("lab"),
        "backup",
        "B must be backup while A is master"
    );
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));

    // 1. Restart of the master within the advert interval: nothing moves.
    let b_before = transitions_to_master(&lab.b.status());
    lab.a.restart();
    assert!(
        lab.a.wait_log("resuming as master", Duration::from_secs(2)),
        "the restarted agent should resume as master from the pinned data plane:\n{}",
        lab.a.log()
    );
    nothing_moved(&lab, b_before, "restart");

    // 1b. An upgrade of the master under load: the pins say another build of the XDP
    // object runs; the restarted agent swaps this build's program into the link and
    // keeps the maps (the flow table, the VIP's ownership); nothing moves.
    let flows_map = fo_tests::pins::map_id(&lab.a.pin_dir, "FLOWS");
    lab.a.kill9();
    fo_tests::pins::set_build(&lab.a.pin_dir, [0xee; 16]);
    lab.a.start();
    let resumed = lab.a.wait_log("resuming as master", Duration::from_secs(2));
    let log = lab.a.log();
    assert!(
        log.contains("replaced the pinned XDP program with this build's in place") && resumed,
        "the restarted agent should upgrade the program in place and resume as master:\n{log}"
    );
    if let Some(line) = log.lines().find(|l| l.contains("program swapped")) {
        println!("upgrade: {line}");
    }
    assert_eq!(
        fo_tests::pins::map_id(&lab.a.pin_dir, "FLOWS"),
        flows_map,
        "the upgrade must keep the flow table"
    );
    nothing_moved(&lab, b_before, "upgrade");

    // 2. kill -9 of the master: B takes over; A's node stops answering ARP (dead-man lease).
    let a_mac = lab.a.ns.mac("eth0");
    let b_mac = lab.b.ns.mac("eth0");
    lab.a.kill9();
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(10)),
        "B did not take over after A was killed:\n{}",
        lab.b.log()
    );
    let status = lab.b.status();
    let last = status["routers"][0]["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        last["to"], "master",
        "B's last transition must be to master: {last}"
    );
    assert_eq!(
        last["reason"], "master_down",
        "B must take over because A went silent: {last}"
    );
    let takeover = last["takeover_seconds"].as_f64();
    assert!(
        takeover.is_some(),
        "a takeover must carry its duration: {last}"
    );
    println!("takeover by B after kill -9 of A: {takeover:?} s");
    let answerers = lab.arp_answerers();
    assert_eq!(
        answerers,
        vec![b_mac],
        "only B may answer ARP for the VIP (A is {a_mac:02x?}), got {answerers:02x?}"
    );
    std::thread::sleep(Duration::from_secs(3));

    let (merged, _) = lab.finish();
    println!("fleet/sink figures: {merged:?}");
    assert!(
        merged.events_acked > 0,
        "no event was acknowledged: {merged:?}"
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
}

#[test]
fn reloads_and_operator_commands() {
    let mut lab = Pair::new(&PairOptions::default());
    lab.start_a_master();
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));

    // status --json and /metrics carry the contract's fields.
    let st = lab.a.status();
    let r = &st["routers"][0];
    for field in [
        "state",
        "configured_priority",
        "effective_priority",
        "vips",
        "master_since",
        "transitions",
    ] {
        assert!(!r[field].is_null(), "status router lacks {field}: {r}");
    }
    let backends = st["services"][0]["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 3);
    let packets: u64 = backends
        .iter()
        .map(|b| b["packets"].as_u64().unwrap_or(0))
        .sum();
    assert!(packets > 0, "no packets counted per backend: {backends:?}");
    let metrics = lab.a.metrics();
    for name in [
        "fo_vrrp_state{router=\"lab\"} 2",
        "fo_vrrp_transitions_total{router=\"lab\",to=\"master\"}",
        "fo_vrrp_priority{router=\"lab\"} 150",
        "fo_vrrp_adverts_total{router=\"lab\",direction=\"out\"}",
        "fo_backend_packets_total{service=\"events\"",
        "fo_backend_up{service=\"events\"",
        "fo_xdp_actions_total{action=\"tx\"}",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }

    // A broken config is refused with its line, and the running one stays.
    let good = std::fs::read_to_string(&lab.a.config).expect("config");
    std::fs::write(&lab.a.config, good.replace("port = 1514", "port = \"x\"")).expect("write");
    let (ok, text) = lab.a.ctl(&["reload"]);
    assert!(!ok, "a broken reload must fail: {text}");
    assert!(
        text.contains("a.toml:") && text.contains("refused"),
        "the error must name the file, line and column: {text}"
    );
    assert_eq!(
        lab.a.status()["services"][0]["backends"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "the running config must stay"
    );

    // Operator commands move mastership, and status says so. (Before the backend
    // change below: after one, a move of mastership would also move the flows whose
    // Maglev choice changed, which only flow-state sync can keep.)
    moves_master(
        (&lab.a, "demote"),
        &lab.b,
        "B did not take over after demote of A",
    );
    assert_eq!(lab.a.status()["routers"][0]["admin"], "demoted");

    // A demote and a drain outlive the agent (state_file): restarted, as by a crash
    // or an upgrade, A stays backup until resume, and the backend stays drained.
    let drained = lab.a.status()["services"][0]["backends"][0]["name"]
        .as_str()
        .expect("backend name")
        .to_owned();
    let (ok, out) = lab.a.ctl(&["backend", "drain", "events", &drained]);
    assert!(ok, "drain: {out}");
    let b_master = transitions_to_master(&lab.b.status());
    std::fs::write(&lab.a.config, &good).expect("restore the config the broken reload left");
    lab.a.restart();
    assert!(
        lab.a
            .wait_log("staying backup until resume", Duration::from_secs(2)),
        "the restarted agent must start demoted:\n{}",
        lab.a.log()
    );
    std::thread::sleep(Duration::from_secs(5)); // over A's Master_Down_Interval (3.4 s)
    let st = lab.a.status();
    assert_eq!(st["routers"][0]["admin"], "demoted", "{st}");
    assert_eq!(lab.a.state("lab"), "backup");
    assert_eq!(
        transitions_to_master(&lab.b.status()),
        b_master,
        "B lost mastership to the restarted, demoted A:\n{}",
        lab.a.log()
    );
    let b = &st["services"][0]["backends"][0];
    assert!(
        b["name"] == drained.as_str() && b["drained"] == true,
        "the drain must survive the restart: {b}"
    );
    let (ok, out) = lab.a.ctl(&["backend", "enable", "events", &drained]);
    assert!(ok, "enable: {out}");

    moves_master(
        (&lab.a, "resume"),
        &lab.a,
        "A did not preempt back after resume",
    );
    moves_master(
        (&lab.b, "promote"),
        &lab.b,
        "B did not take mastership on promote",
    );
    assert_eq!(lab.b.state("lab"), "master");
    assert_eq!(lab.a.state("lab"), "backup");
    moves_master(
        (&lab.b, "resume"),
        &lab.a,
        "A did not take mastership back after B's resume",
    );
    let (ok, out) = lab.a.ctl(&["promote", "nope"]);
    assert!(
        !ok && out.contains("no router named"),
        "an unknown router must be refused: {out}"
    );

    // Reload with backend .23 removed and .24 added: no transition; only the removed
    // backend's connections are reset.
    let new_backend = Pair::backend(&lab.segment, &lab.dir, 4);
    lab.backends.push(new_backend);
    let a_master_before = transitions_to_master(&lab.a.status());
    let b_master_before = transitions_to_master(&lab.b.status());
    for node in [&lab.a, &lab.b] {
        let text = std::fs::read_to_string(&node.config).expect("config");
        let text = if node.name == "a" { good.clone() } else { text };
        std::fs::write(&node.config, text.replace("192.0.2.23", "192.0.2.24")).expect("write");
        let (ok, out) = node.ctl(&["reload"]);
        assert!(ok, "reload of {} failed: {out}", node.name);
    }
    let added = wait_for(Duration::from_secs(15), || {
        let st = lab.a.status();
        let bs = st["services"][0]["backends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        bs.iter()
            .any(|b| b["address"] == "192.0.2.24" && b["resolved"] == true)
            .then_some(())
    });
    assert!(
        added.is_some(),
        "the added backend was not resolved and installed: {}",
        lab.a.status()
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        transitions_to_master(&lab.a.status()),
        a_master_before,
        "a reload caused a transition on A"
    );
    assert_eq!(
        transitions_to_master(&lab.b.status()),
        b_master_before,
        "a reload caused a transition on B"
    );

    let (merged, sinks) = lab.finish();
    println!("fleet/sink figures: {merged:?}");
    // Connections that were on the removed backend (index 2, .23) are reset when their
    // next segment reaches a backend without their socket; no other connection may be.
    let on_removed = sinks[2].totals.connections_accepted;
    assert_eq!(
        merged.connections_reset, on_removed,
        "resets must be exactly the {on_removed} connections of the removed backend: {merged:?}"
    );
    assert_eq!(
        merged.lost_acked, 0,
        "acknowledged events were lost: {merged:?}"
    );
}
