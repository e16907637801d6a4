//! `mode = "nat"` end to end: two fo agents (VRRP), backends that do NOT hold the VIP
//! on their own subnet 10.1.0.0/24 behind a router namespace, a client fleet of
//! long-lived TCP connections sending numbered events to VIP:1514, translated to
//! backend:11514 from the floating SNAT address.

use std::time::{Duration, Instant};

use fo_tests::pair::{NAT_BACKEND_PORT, Pair, PairOptions, SNAT, SyncKey as Key};

fn nat_lab(extra_node: &str) -> Pair {
    Pair::new(&PairOptions {
        nat: true,
        node_extra: extra_node.to_string(),
        ..Default::default()
    })
}

/// Stop the fleet and the sinks ([`Pair::finish`]); with the merged figures, how many
/// of the fleet's connections lived through without a reset or a second connection.
fn finish_counting_survivors(lab: &mut Pair) -> (fo_lab::report::Merged, usize) {
    let (merged, _) = lab.finish();
    let survivors = lab
        .fleet
        .read_report()
        .agents
        .iter()
        .filter(|a| a.resets == 0 && a.connections == 1 && a.connected_at_exit)
        .count();
    (merged, survivors)
}

/// The NAT connections a status counts, over every state.
fn nat_connections(status: &serde_json::Value) -> u64 {
    status["nat_connections"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn three_hundred_connections_through_routed_backends() {
    let mut lab = nat_lab("");
    lab.start_a_master();
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
    let fleet = lab.fleet.read_report();
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

#[test]
fn killed_master_connections_continue_on_the_synced_backup() {
    failover(false);
}

/// The master's agent is killed and its link goes down with it (the node is gone;
/// its pinned data plane cannot bridge the gap): everything rests on the sync.
#[test]
fn dead_master_node_connections_continue_on_the_synced_backup() {
    failover(true);
}

fn failover(node_dies: bool) {
    const AGENTS: u32 = 200;
    let key = Key::new();
    let mut lab = Pair::synced_nat(&key);
    lab.assert_b_in_sync();
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(4));
    let a_conns = lab.a.status()["nat_connections"].clone();
    let b_status = lab.b.status();
    let b_conns = nat_connections(&b_status);
    println!(
        "before the kill: A's NAT table {a_conns}, B's (synced) {}, B's sync {}",
        b_status["nat_connections"], b_status["sync"]
    );
    assert!(
        b_conns >= u64::from(AGENTS),
        "B must hold the {AGENTS} connections A opened: {}",
        b_status["sync"]
    );

    lab.a.kill9();
    if node_dies {
        lab.a.ns.sh("ip link set eth0 down");
    }
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(15)),
        "B did not take over after A was killed:\n{}",
        lab.b.log()
    );
    std::thread::sleep(Duration::from_secs(6));
    let b_after = lab.b.status();
    let (merged, survivors) = finish_counting_survivors(&mut lab);
    let takeover = b_after["routers"][0]["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .and_then(|t| t["takeover_seconds"].as_f64());
    println!(
        "NAT failover (kill -9 of the master{}, sync on): survivors {survivors}/{AGENTS}, \
         gap (longest silence of a connection at the sinks) {:.0} ms, takeover {takeover:?} s, acked {} lost_acked {} resets {} reconnects {}; \
         B's sync after: {}; B's xdp nat counters: nat_hit {} nat_reply {} nat_new {} nat_no_flow {}",
        if node_dies { " and its link down" } else { "" },
        merged.max_silence_ms,
        merged.events_acked,
        merged.lost_acked,
        merged.connections_reset,
        merged.reconnects,
        b_after["sync"],
        b_after["xdp"]["nat_hit"],
        b_after["xdp"]["nat_reply"],
        b_after["xdp"]["nat_new"],
        b_after["xdp"]["nat_no_flow"],
    );
    assert!(
        survivors * 100 >= AGENTS as usize * 99,
        "at least 99% of the connections must continue without a reset: {survivors}/{AGENTS}; {merged:?}"
    );
    assert_eq!(
        merged.lost_acked, 0,
        "acknowledged events were lost: {merged:?}"
    );
    let log = lab.b.log();
    assert!(
        log.contains("connection table current: claiming the VIPs"),
        "B must claim only with a current table (sync-then-claim):\n{log}"
    );
}

/// The master's agent restarts (kill -9, start again) while its pinned data plane keeps
/// translating: the restarted sync must not drop the connections it holds (its backup
/// owns nothing, so the backup's snapshot speaks for no VIP), and nothing moves.
#[test]
fn restarted_nat_master_keeps_its_connections() {
    const AGENTS: u32 = 100;
    let key = Key::new();
    let mut lab = Pair::synced_nat(&key);
    lab.start_fleet(AGENTS);
    std::thread::sleep(Duration::from_secs(3));
    lab.a.restart();
    std::thread::sleep(Duration::from_secs(3));
    let a = lab.a.status();
    let held = nat_connections(&a);
    assert_eq!(lab.a.state("lab"), "master", "A must resume as master");
    assert_eq!(lab.b.state("lab"), "backup", "B must stay backup");
    let (merged, survivors) = finish_counting_survivors(&mut lab);
    println!(
        "NAT master agent restart: A holds {held} connections after, survivors {survivors}/{AGENTS}, gap {:.0} ms, lost_acked {}",
        merged.max_silence_ms, merged.lost_acked
    );
    assert!(
        held >= u64::from(AGENTS),
        "the restarted master must keep its connections: {}",
        a["nat_connections"]
    );
    assert_eq!(survivors, AGENTS as usize, "{merged:?}");
    assert_eq!(merged.lost_acked, 0, "{merged:?}");
}

/// A NAT lab with `extra` in A's `[node]`, A alone and master, and `n` idle established
/// connections to the VIP put straight into its pinned NAT table.
fn master_holding(extra: &str, n: u32) -> Pair {
    let mut lab = nat_lab(extra);
    lab.a.start();
    lab.fill_nat_of_master_a(n);
    lab
}

/// `status` counts NAT connections by state, which walks the whole NAT table: hundreds
/// of milliseconds over a big one, even in batches. A monitoring poll must not hold up
/// the agent meanwhile (a takeover arriving during the walk would wait for it): another
/// request sent while a status walks is answered before that status.
#[test]
fn a_status_walk_of_a_big_nat_table_does_not_hold_up_the_agent() {
    const ENTRIES: u32 = 1_000_000;
    let lab = master_holding("nat_table_size = 1048576", ENTRIES);
    // How long one walk takes on this machine.
    let started = Instant::now();
    let st = lab.a.status();
    let walk = started.elapsed();
    let held = nat_connections(&st);
    assert!(
        held >= u64::from(ENTRIES),
        "status must count the table: {}",
        st["nat_connections"]
    );
    let node = &lab.a;
    // A count under a second old is handed out again: the next status walks anew.
    std::thread::sleep(Duration::from_millis(1100));
    let (answered_during_walk, other) = std::thread::scope(|s| {
        let poll = s.spawn(|| node.status());
        // A quarter into the walk: the poll's request is in, most of its walk ahead.
        std::thread::sleep(walk / 4);
        let other = node.ctl(&["resume", "lab"]);
        let during = !poll.is_finished();
        let _ = poll.join().expect("status poll");
        (during, other)
    });
    println!(
        "status over {ENTRIES} NAT entries took {walk:?}; resume answered during the next walk: {answered_during_walk}"
    );
    assert!(other.0, "resume failed: {}", other.1);
    assert!(
        answered_during_walk,
        "a request sent {:?} into a status walk ({walk:?}) was answered only after it",
        walk / 4
    );
}

/// `[node] nat_timeouts` reaches the aging: idle established connections go after the
/// configured 2 s (the default is an hour; every other state is set to an hour too, so
/// only `established` can age them), and the table empties.
#[test]
fn configured_nat_timeouts_age_idle_connections() {
    const ENTRIES: u32 = 1_000;
    let lab = master_holding(
        "nat_timeouts = { established = \"2s\", syn = \"1h\", fin = \"1h\", closed = \"1h\", udp = \"1h\" }",
        ENTRIES,
    );
    let filled = Instant::now();
    let held = |lab: &Pair| fo_tests::pins::nat_entries(&lab.a.pin_dir) as u64;
    assert!(
        held(&lab) >= u64::from(ENTRIES),
        "the connections must be there at first"
    );
    // Status shares one NAT walk for up to a second: a count taken while the helper
    // filled the table may still be served, so wait out that window.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        lab.a.status()["nat_connections"]["established"].as_u64(),
        Some(u64::from(ENTRIES)),
        "status counts them by state"
    );
    // 2 s of idleness, aging every second: gone after about 3 s; 15 s is the margin of
    // a loaded machine, far below the default hour.
    let mut left = u64::MAX;
    while filled.elapsed() < Duration::from_secs(15) {
        left = held(&lab);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "{ENTRIES} idle connections: {left} left after {:?}",
        filled.elapsed()
    );
    assert_eq!(
        left, 0,
        "idle connections outlived nat_timeouts.established = 2s"
    );
}
