//! The NAT connection-state sync under attack and at scale, on the NAT pair lab (two fo
//! agents with `sync`, backends behind a router; see `fo_tests::pair`):
//! - every kind of sync datagram, captured on the wire and sent again from the peer's
//!   address (live, after the backup restarted, after the master restarted), is
//!   refused and counted, and changes nothing;
//! - an unprivileged process cannot take the sync port;
//! - a backup restarted under a master holding a million connections ends up with
//!   exactly the master's set.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fo_tests::capture::{Capture, Datagram, replay};
use fo_tests::netns::{unique_tag, wait_for};
use fo_tests::pair::{CLIENT, Node, Pair, PairOptions, SNAT, SyncKey, VIP};

const SYNC_PORT: u16 = 7480;
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

fn v4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().expect("IPv4").octets()
}

/// A NAT pair with sync; `sync_extra` goes into the sync table, `node_extra` into
/// `[node]`.
fn sync_lab(key: &SyncKey, sync_extra: &str, node_extra: &str) -> Pair {
    Pair::new(&PairOptions {
        nat: true,
        node_extra: format!(
            "sync = {{ peers = [\"{{peer}}\"], key_file = \"{}\"{sync_extra} }}\n{node_extra}",
            key.0.display()
        ),
        ..Default::default()
    })
}

fn sync_of(node: &Node) -> serde_json::Value {
    let (ok, text) = node.ctl(&["status", "--json"]);
    assert!(
        ok,
        "fo-agent status failed on {}: {text}\n{}",
        node.name,
        node.log()
    );
    let status: serde_json::Value = serde_json::from_str(&text).expect("status JSON");
    status["sync"].clone()
}

/// Wait until both nodes' sync is current and the backup holds the master's stream.
fn settle(lab: &Pair, what: &str) {
    for n in [&lab.a, &lab.b] {
        let ok = wait_for(Duration::from_secs(60), || {
            let s = sync_of(n);
            let streaming = n.name != "b" || s["peers"][0]["state"] == "in_sync";
            (s["current"] == true && streaming).then_some(())
        });
        assert!(
            ok.is_some(),
            "{what}: {}'s sync never got current: {}\n{}",
            n.name,
            sync_of(n),
            n.log()
        );
    }
    // Whatever a re-sync set off (held updates, the peer's own snapshot) goes out.
    std::thread::sleep(Duration::from_secs(1));
}

/// Start A and wait for it to be master, then start B and wait for the first sync.
fn start_synced(lab: &mut Pair) {
    lab.a.start();
    assert!(lab.wait_master(&lab.a, Duration::from_secs(10)));
    lab.b.start();
    settle(lab, "first sync");
}

/// A TCP connection from the client's `port` to VIP:1514.
fn connect_from(lab: &Pair, port: u16) -> socket2::Socket {
    lab.client.run(move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_reuse_address(true).expect("SO_REUSEADDR");
        let from: SocketAddr = format!("{CLIENT}:{port}").parse().expect("addr");
        let to: SocketAddr = format!("{VIP}:1514").parse().expect("addr");
        s.bind(&from.into()).expect("bind the client port");
        s.connect_timeout(&to.into(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect from {from} to {to}: {e}"));
        s
    })
}

/// Close with a reset (SO_LINGER 0): the master sees an RST, marks the connection
/// closed, and its aging removes it.
fn reset(s: socket2::Socket) {
    s.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    drop(s);
}

/// The NAT_FWD key of the client's connection from `port`.
fn has_client_port(node: &Node, port: u16) -> bool {
    fo_tests::pins::nat_connections(&node.pin_dir)
        .keys()
        .any(|k| k.src.bytes[..4] == v4(CLIENT) && u16::from_be(k.sport_be) == port)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    assert!(
        wait_for(timeout, || f().then_some(())).is_some(),
        "{what}: not within {timeout:?}"
    );
}

fn kind_name(k: u8) -> &'static str {
    match k {
        1 => "Update",
        2 => "Snapshot",
        3 => "SnapshotEnd",
        4 => "Heartbeat",
        5 => "SnapshotRequest",
        6 => "SnapshotAck",
        _ => "?",
    }
}

/// Refusals counted so far: the total, and by reason where the agent says.
fn refusals(node: &Node) -> (u64, BTreeMap<String, u64>) {
    let s = sync_of(node);
    let by = s["refused_by"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    (s["refused"].as_u64().unwrap_or(0), by)
}

/// What must not change when a replay is refused.
#[derive(Debug, PartialEq)]
struct Observed {
    /// B's connections (from the pinned NAT_FWD) and its NAT_REV entries.
    b_connections: usize,
    b_rev_entries: usize,
    b_installed: u64,
    b_removed: u64,
    a_snapshots_sent: u64,
    a_installed: u64,
    a_removed: u64,
}

fn observe(lab: &Pair) -> (Observed, HashMap<fo_common::FlowKey, fo_common::NatFlow>) {
    let table = fo_tests::pins::nat_connections(&lab.b.pin_dir);
    let (_, rev) = fo_tests::pins::nat_inconsistencies(&lab.b.pin_dir);
    let (a, b) = (sync_of(&lab.a), sync_of(&lab.b));
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (
        Observed {
            b_connections: table.len(),
            b_rev_entries: rev,
            b_installed: n(&b["peers"][0]["installed"]),
            b_removed: n(&b["peers"][0]["removed"]),
            a_snapshots_sent: n(&a["snapshots_sent"]),
            a_installed: n(&a["peers"][0]["installed"]),
            a_removed: n(&a["peers"][0]["removed"]),
        },
        table,
    )
}

/// Replay every captured datagram, kind by kind and direction by direction, each
/// towards the node it was sent to, from its sender's address; each must be refused
/// and counted, with a reason among `reasons(to)`, and nothing may change.
fn replay_all(
    lab: &Pair,
    phase: &str,
    groups: &BTreeMap<(Ipv4Addr, u8), Vec<Datagram>>,
    reasons: impl Fn(Ipv4Addr) -> &'static [&'static str],
) -> Vec<String> {
    settle(lab, phase);
    let (before, table_before) = observe(lab);
    let mut lines = Vec::new();
    for ((to, kind), datagrams) in groups {
        let node = if *to == B { &lab.b } else { &lab.a };
        let (total0, by0) = refusals(node);
        replay(&lab.client, datagrams, Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(500));
        let (total1, by1) = refusals(node);
        let by: BTreeMap<String, u64> = by1
            .iter()
            .map(|(k, v)| (k.clone(), v - by0.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        let line = format!(
            "{phase}: {} {} to {}: replayed {}, refused {} {by:?}",
            kind_name(*kind),
            if *to == B { "A->B" } else { "B->A" },
            node.name,
            datagrams.len(),
            total1 - total0
        );
        println!("{line}");
        assert_eq!(
            total1 - total0,
            datagrams.len() as u64,
            "every replayed datagram must be refused and counted: {line}\n{}",
            node.log()
        );
        let allowed = reasons(*to);
        assert!(
            by.keys().all(|r| allowed.contains(&r.as_str())),
            "{line}: reasons must be among {allowed:?}"
        );
        lines.push(line);
    }
    let (after, table_after) = observe(lab);
    assert_eq!(
        after, before,
        "{phase}: a replay installed or removed connections, or made A send a snapshot"
    );
    assert!(
        table_after == table_before,
        "{phase}: B's NAT table changed under the replay"
    );
    lines
}

/// Item 1 of issue 17: every message type, captured and replayed from the peer's
/// address, is refused and counted; nothing is installed or removed in the NAT maps and
/// no snapshot is sent. The clock-skew window is set to an hour here, so that what
/// refuses the replays is the counter, the echo and the epoch (the window is tested
/// on its own in `fo-agent`'s `sync::guard`).
#[test]
fn replayed_sync_datagrams_are_refused_and_change_nothing() {
    const FAKE: u32 = 1_000;
    const PORT_X: u16 = 40_001;
    const PORT_Y: u16 = 40_002;
    let key = SyncKey::new();
    let mut lab = sync_lab(
        &key,
        ", max_clock_skew = \"1h\"",
        "nat_timeouts = { closed = \"1s\" }",
    );
    let pcap = lab.dir.join(format!("sync-{}.pcap", unique_tag()));
    let mut capture = Capture::start(&lab.b.ns, "eth0", SYNC_PORT, &pcap);
    lab.a.start();
    lab.assert_a_master();
    // What B's first snapshot will carry: two real connections and 1,000 idle ones
    // (more than 16 datagrams, so B acknowledges).
    let x = connect_from(&lab, PORT_X);
    let y = connect_from(&lab, PORT_Y);
    fo_tests::pins::fill_nat_pairs(&lab.a.pin_dir, v4(VIP), v4(SNAT), 0, FAKE);
    lab.b.start();
    settle(&lab, "first sync");
    assert!(has_client_port(&lab.b, PORT_X) && has_client_port(&lab.b, PORT_Y));
    // Y is reset and aged out (an Update with its CLOSED state, then a Remove); so is
    // X, which then comes back on the same 5-tuple (a new Upsert). Replaying Y's
    // records or the snapshot would bring Y back; replaying X's would close or remove
    // the live X.
    reset(y);
    wait_until("Y removed on B", Duration::from_secs(20), || {
        !has_client_port(&lab.b, PORT_Y)
    });
    reset(x);
    wait_until("X removed on A", Duration::from_secs(20), || {
        !has_client_port(&lab.a, PORT_X)
    });
    wait_until("X removed on B", Duration::from_secs(20), || {
        !has_client_port(&lab.b, PORT_X)
    });
    let x_again = connect_from(&lab, PORT_X);
    wait_until("X again on B", Duration::from_secs(20), || {
        has_client_port(&lab.b, PORT_X)
    });
    std::thread::sleep(Duration::from_millis(500));
    let captured = capture.stop();

    let mut groups: BTreeMap<(Ipv4Addr, u8), Vec<Datagram>> = BTreeMap::new();
    for d in captured {
        let ours = d.sport == SYNC_PORT && d.dport == SYNC_PORT && d.payload.len() > 8;
        let between = (d.src, d.dst) == (A, B) || (d.src, d.dst) == (B, A);
        if ours && between && d.payload.starts_with(b"FOS") {
            groups.entry((d.dst, d.payload[4])).or_default().push(d);
        }
    }
    // Heartbeats flow every 100 ms both ways: every other kind is replayed whole,
    // heartbeats 100 at most per direction, spread over the capture.
    for ((_, kind), list) in groups.iter_mut() {
        if *kind == 4 && list.len() > 100 {
            let step = list.len() / 100;
            *list = list.iter().step_by(step).take(100).cloned().collect();
        }
    }
    let seen: Vec<String> = groups
        .iter()
        .map(|((to, k), l)| format!("{} to {to}: {}", kind_name(*k), l.len()))
        .collect();
    println!("captured: {seen:?}");
    // Every kind, in the direction it normally flows (the master also asks the
    // restarted backup for its, empty, snapshot: replayed too when captured).
    let mut expected = vec![(B, 1u8), (B, 2), (B, 3), (B, 4), (A, 5), (A, 4)];
    // Acknowledgements exist from wire version 2 on.
    if groups.values().flatten().any(|d| d.payload[3] == b'2') {
        expected.push((A, 6));
    }
    for (to, kind) in expected {
        assert!(
            groups.get(&(to, kind)).is_some_and(|l| !l.is_empty()),
            "no {} to {to} was captured: {seen:?}",
            kind_name(kind)
        );
    }
    let updates_to_b = &groups[&(B, 1)];
    println!(
        "Update datagrams captured A->B: {} (records {})",
        updates_to_b.len(),
        updates_to_b
            .iter()
            .map(|d| usize::from(u16::from_be_bytes([d.payload[6], d.payload[7]])))
            .sum::<usize>()
    );

    let mut report = replay_all(&lab, "live", &groups, |_| &["replay", "unverified"]);
    lab.b.restart();
    report.extend(replay_all(
        &lab,
        "after the backup restarted",
        &groups,
        |to| {
            if to == B {
                &["unverified"]
            } else {
                &["old_epoch"]
            }
        },
    ));
    lab.a.restart();
    assert!(
        lab.wait_master(&lab.a, Duration::from_secs(10)),
        "A must resume as master"
    );
    report.extend(replay_all(
        &lab,
        "after the master restarted",
        &groups,
        |_| &["old_epoch"],
    ));
    assert!(
        has_client_port(&lab.b, PORT_X) && !has_client_port(&lab.b, PORT_Y),
        "B must still hold the live X and not Y"
    );
    drop(x_again);
    println!("replay results:\n{}", report.join("\n"));
}

/// Item 2 of issue 17: a process of an unprivileged user (nobody) on the backup tries
/// to bind the sync port, on the node's address and on the wildcard, with
/// SO_REUSEADDR and SO_REUSEPORT (socat). It must fail, or receive nothing while the
/// sync keeps working.
#[test]
fn an_unprivileged_process_cannot_take_the_sync_port() {
    use std::os::unix::fs::PermissionsExt as _;
    let key = SyncKey::new();
    let mut lab = sync_lab(&key, "", "");
    start_synced(&mut lab);
    let drop_dir = lab.dir.join("nobody");
    std::fs::create_dir_all(&drop_dir).expect("dir");
    std::fs::set_permissions(&drop_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for target in [B.to_string(), "0.0.0.0".to_string()] {
        let file = drop_dir.join(format!("got-{target}"));
        std::fs::write(&file, b"").expect("file");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let received_before = sync_of(&lab.b)["peers"][0]["received_messages"]
            .as_u64()
            .unwrap_or(0);
        let mut cmd = lab.b.ns.command("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "socat",
            "-u",
            &format!("UDP4-RECV:{SYNC_PORT},bind={target},reuseaddr,reuseport"),
        ])
        .arg(format!("OPEN:{},wronly,append", file.display()));
        let mut socat = fo_tests::netns::ChildGuard::spawn("socat as nobody", cmd);
        let started = Instant::now();
        let exited = wait_for(Duration::from_secs(3), || socat.exited());
        let bound = exited.is_none();
        let said = socat.kill_and_collect();
        let diverted = std::fs::metadata(&file).map_or(0, |m| m.len());
        let received_after = sync_of(&lab.b)["peers"][0]["received_messages"]
            .as_u64()
            .unwrap_or(0);
        let line = format!(
            "nobody binding {target}:{SYNC_PORT} with SO_REUSEADDR+SO_REUSEPORT: {} after {:?}; bytes diverted to it {diverted}; B's sync received {} datagrams meanwhile; socat said: {}",
            if bound { "bound" } else { "refused" },
            started.elapsed(),
            received_after - received_before,
            said.trim()
        );
        println!("{line}");
        assert!(
            !bound || diverted == 0 && received_after > received_before,
            "the sync port was taken: {line}"
        );
    }
    settle(&lab, "after the attempts");
}

/// Item 3 of issue 17: the master holds 1,000,000 connections (put into its pinned
/// table, as its program would have: no Update announced them), the backup holds
/// 1,000 stale ones of the master's VIP; the backup restarts and takes a snapshot.
/// It must then hold exactly the master's set.
#[test]
fn a_restarted_backup_holds_exactly_the_masters_million_connections() {
    const ENTRIES: u32 = 1_000_000;
    const STALE: u32 = 1_000;
    let key = SyncKey::new();
    let mut lab = sync_lab(&key, "", "nat_table_size = 1048576");
    start_synced(&mut lab);
    let filled = Instant::now();
    fo_tests::pins::fill_nat_pairs(&lab.a.pin_dir, v4(VIP), v4(SNAT), 0, ENTRIES);
    fo_tests::pins::fill_nat_pairs(&lab.b.pin_dir, v4(VIP), v4(SNAT), 2 * ENTRIES, STALE);
    println!(
        "filled A with {ENTRIES} and B with {STALE} stale in {:?}",
        filled.elapsed()
    );
    lab.b.kill9();
    let restarted = Instant::now();
    lab.b.start();
    // Current once the snapshot is complete (a takeover would not wait any more).
    let done = wait_for(Duration::from_secs(300), || {
        let s = sync_of(&lab.b);
        (restarted.elapsed() > Duration::from_secs(2)
            && s["current"] == true
            && s["peers"][0]["state"] == "in_sync")
            .then_some(s)
    });
    let took = restarted.elapsed();
    let sync = done.clone().unwrap_or_else(|| sync_of(&lab.b));
    let a = fo_tests::pins::nat_connections(&lab.a.pin_dir);
    let b = fo_tests::pins::nat_connections(&lab.b.pin_dir);
    let missing = a.keys().filter(|k| !b.contains_key(k)).count();
    let extra = b.keys().filter(|k| !a.contains_key(k)).count();
    let differ = a
        .iter()
        .filter(|(k, f)| b.get(k).is_some_and(|g| g != *f))
        .count();
    let (broken, rev) = fo_tests::pins::nat_inconsistencies(&lab.b.pin_dir);
    println!(
        "1M snapshot: B restarted and current after {took:?}; A holds {}, B holds {}: missing {missing}, extra {extra}, differing {differ}; B's NAT_REV {rev} entries, {broken} inconsistent; B's last snapshot {}; incomplete snapshots {}",
        a.len(),
        b.len(),
        sync["peers"][0]["last_snapshot"],
        sync["peers"][0]["incomplete_snapshots"],
    );
    assert!(
        done.is_some(),
        "B's sync never got current and in sync after its restart: {sync}"
    );
    assert!(a.len() >= ENTRIES as usize, "A must hold the million");
    assert_eq!(
        (missing, extra, differ),
        (0, 0, 0),
        "B must hold exactly A's connections (missing, extra, differing)"
    );
    assert_eq!(
        (broken, rev),
        (0, b.len()),
        "B's reply table must match its connections"
    );
}
