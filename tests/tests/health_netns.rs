//! Issue 4's acceptance tests, in the two-node lab (`fo_tests::pair`): health checks
//! move backends out of and back into the Maglev table, a failing tracked check
//! hands mastership over, a closed gate keeps a backup from taking the VIP even
//! when the master dies, and a hook that hangs is killed without holding up the
//! transition. Each test prints the figures it measures.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fo_tests::netns::wait_for;
use fo_tests::pair::{Node, Pair, PairOptions, VIP};

/// VRRP advert interval in these labs.
const ADVERT: Duration = Duration::from_millis(200);
const ADVERT_TOML: &str = "200ms";
/// A's and B's configured priorities (see `fo_tests::pair`).
const PRIO_A: u32 = 150;
const PRIO_B: u32 = 100;

/// RFC 5798 Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time,
/// Skew_Time = (256 − Priority) × Advertisement_Interval / 256.
fn master_down(prio: u32) -> Duration {
    3 * ADVERT + ADVERT * (256 - prio) / 256
}

fn lab(extra: &str) -> Pair {
    Pair::new(&PairOptions {
        advert_interval: ADVERT_TOML,
        backends: 3,
        extra: extra.to_string(),
        ..Default::default()
    })
}

/// Add `line` to the `[[router]]` table of `node`'s config (right after `preempt`).
fn add_to_router(node: &Node, line: &str) {
    let text = std::fs::read_to_string(&node.config).expect("read config");
    assert!(
        text.contains("preempt = true\n"),
        "unexpected config:\n{text}"
    );
    let text = text.replacen("preempt = true\n", &format!("preempt = true\n{line}\n"), 1);
    std::fs::write(&node.config, text).expect("write config");
}

/// Append `toml` (whole tables) to `node`'s config.
fn append(node: &Node, toml: &str) {
    let mut text = std::fs::read_to_string(&node.config).expect("read config");
    text.push('\n');
    text.push_str(toml);
    std::fs::write(&node.config, text).expect("write config");
}

/// A node-level file check: passes while `path` exists.
fn file_check(name: &str, path: &Path, interval: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\nkind = \"file\"\npath = \"{}\"\ninterval = \"{interval}\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n",
        path.display()
    )
}

/// Router "lab" in a status.
fn router(status: &serde_json::Value) -> serde_json::Value {
    status["routers"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "lab"))
        .cloned()
        .unwrap_or_else(|| panic!("no router \"lab\" in status: {status}"))
}

/// How often `node`'s router "lab" became master.
fn master_transitions(node: &Node) -> u64 {
    router(&node.status())["transitions_total"]["master"]
        .as_u64()
        .unwrap_or(0)
}

/// Backend `addr` of service "events" in a status.
fn backend(status: &serde_json::Value, addr: &str) -> serde_json::Value {
    status["services"][0]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["address"] == addr))
        .cloned()
        .unwrap_or_else(|| panic!("no backend {addr} in status: {status}"))
}

fn in_table(b: &serde_json::Value) -> bool {
    b["healthy"] != false && b["effective_weight"].as_u64().unwrap_or(0) > 0
}

/// Poll `node`'s status until `pred` holds; the time it took.
fn time_until(
    node: &Node,
    timeout: Duration,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> Option<Duration> {
    let t0 = Instant::now();
    wait_for(timeout, || pred(&node.status()).then(|| t0.elapsed()))
}

fn start_a_master(lab: &mut Pair) {
    lab.a.start();
    lab.assert_a_master();
}

/// 200 new connections to the VIP, every one of which must succeed (`with` says how the
/// backends stand); A's status before and after them.
fn connect_200(lab: &Pair, with: &str) -> (serde_json::Value, serde_json::Value) {
    let before = lab.a.status();
    let errors = connect_many(lab, 200);
    let after = lab.a.status();
    assert!(
        errors.is_empty(),
        "{} of 200 new connections failed with {with} (expected 0): {errors:?}",
        errors.len()
    );
    (before, after)
}

/// `n` new TCP connections from the client to VIP:1514, each from a new source
/// port (so `hash = "5-tuple"` spreads them): the errors, by kind.
fn connect_many(lab: &Pair, n: usize) -> Vec<String> {
    lab.client.run(move || {
        let target: SocketAddr = format!("{VIP}:1514").parse().expect("VIP:1514");
        (0..n)
            .filter_map(
                |i| match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    Ok(s) => {
                        drop(s);
                        None
                    }
                    Err(e) => Some(format!("connection {i}: {e}")),
                },
            )
            .collect()
    })
}

fn packets(status: &serde_json::Value, addr: &str) -> u64 {
    backend(status, addr)["packets"].as_u64().unwrap_or(0)
}

/// Service check interval, rise and fall of the first test.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
const RISE: u32 = 2;
const FALL: u32 = 2;

#[test]
fn a_dead_backend_leaves_the_table_and_returns() {
    // The extra line lands in the [[service]] table.
    let mut lab = lab(
        "check = { kind = \"tcp\", interval = \"500ms\", timeout = \"200ms\", rise = 2, fall = 2 }\n",
    );
    // Sinks on 0.0.0.0: the check connects to each backend's own address, the
    // client's connections arrive for the VIP (DSR).
    for b in &mut lab.backends {
        b.start_sink("0.0.0.0:1514");
    }
    start_a_master(&mut lab);
    lab.b.start();
    let addrs: Vec<String> = lab.backends.iter().map(|b| b.addr.clone()).collect();
    let all_in = time_until(&lab.a, Duration::from_secs(10), |st| {
        addrs
            .iter()
            .all(|a| in_table(&backend(st, a)) && backend(st, a)["resolved"] == true)
    });
    assert!(
        all_in.is_some(),
        "all three backends should be healthy and in the table: {}",
        lab.a.status()
    );
    let (live1, dead, live2) = (&addrs[0], &addrs[1], &addrs[2]);

    // 1. The listener dies: out of the table within interval × fall + one interval.
    let leave_bound = CHECK_INTERVAL * (FALL + 1);
    lab.backends[1].kill_sink();
    let left = time_until(&lab.a, Duration::from_secs(10), |st| {
        let b = backend(st, dead);
        b["healthy"] == false && b["effective_weight"] == 0
    });
    let st = lab.a.status();
    let left = left.unwrap_or_else(|| {
        panic!("backend {dead} never left the table after its sink was killed: {st}")
    });
    println!(
        "backend {dead} out of the table {:.3} s after its sink was killed (bound {:.1} s)",
        left.as_secs_f64(),
        leave_bound.as_secs_f64()
    );
    assert!(
        left <= leave_bound,
        "backend {dead} left the table after {left:?}, expected within interval × fall + interval = {leave_bound:?}"
    );
    assert_eq!(
        st["services"][0]["fail_open"], false,
        "two backends are healthy: no fail-open: {st}"
    );

    // 2. 200 new connections meanwhile: every one reaches a live sink.
    let (before, after) = connect_200(&lab, &format!("backend {dead} out of the table"));
    let gained = |a: &str| packets(&after, a).saturating_sub(packets(&before, a));
    println!(
        "200 connections with {dead} out: packets to {live1} +{}, {dead} +{}, {live2} +{}",
        gained(live1),
        gained(dead),
        gained(live2)
    );
    assert!(
        gained(live1) > 0 && gained(live2) > 0,
        "5-tuple hashing should spread 200 connections over both live backends: {live1} +{}, {live2} +{}",
        gained(live1),
        gained(live2)
    );
    assert_eq!(
        gained(dead),
        0,
        "no packet may be forwarded to the dead backend {dead}"
    );

    // 3. The listener is back: in the table within interval × rise + one interval.
    let return_bound = CHECK_INTERVAL * (RISE + 1);
    lab.backends[1].start_sink("0.0.0.0:1514");
    let restarted = Instant::now();
    let back = time_until(&lab.a, Duration::from_secs(10), |st| {
        in_table(&backend(st, dead))
    })
    .unwrap_or_else(|| {
        panic!(
            "backend {dead} never came back after its sink restarted: {}",
            lab.a.status()
        )
    });
    println!(
        "backend {dead} back in the table {:.3} s after its sink listened again (bound {:.1} s)",
        back.as_secs_f64(),
        return_bound.as_secs_f64()
    );
    assert!(
        back <= return_bound,
        "backend {dead} returned after {back:?}, expected within interval × rise + interval = {return_bound:?}"
    );
    let (before, after) = connect_200(&lab, "every backend back");
    assert!(
        packets(&after, dead) > packets(&before, dead),
        "the returned backend {dead} should get new connections again"
    );
    // B, the backup, followed the same health (it must forward the same way when
    // it takes over). Its checks run on their own schedule, so it may see the return
    // later than A did, but within the same bound from the sink's restart.
    let b_left = return_bound.saturating_sub(restarted.elapsed());
    assert!(
        time_until(&lab.b, b_left, |st| in_table(&backend(st, dead))).is_some(),
        "B should have {dead} back too, within interval × rise + interval = {return_bound:?} of the sink's restart: {}",
        lab.b.status()
    );
}

/// A link flap flushes the node's neighbour table, and the agent's resolution round
/// during the outage fails: the backends must keep their MACs (the data plane keeps
/// forwarding to them), so the node serves at once when its link returns and it takes
/// the VIP back. Before, they were left out until the next round after the link came
/// back (up to 5 s): the failover bench saw a 2.6 s gap on the old master's return.
#[test]
fn a_link_flap_keeps_the_backends_macs() {
    let mut lab = lab("");
    for b in &mut lab.backends {
        b.start_sink("0.0.0.0:1514");
    }
    start_a_master(&mut lab);
    let addrs: Vec<String> = lab.backends.iter().map(|b| b.addr.clone()).collect();
    let resolved =
        |st: &serde_json::Value| addrs.iter().all(|a| backend(st, a)["resolved"] == true);
    assert!(
        time_until(&lab.a, Duration::from_secs(10), resolved).is_some(),
        "the backends never resolved: {}",
        lab.a.status()
    );

    lab.a.ns.sh("ip link set eth0 down");
    // Long enough for a whole resolution round to run and fail: the agent's refresh
    // period (5 s) plus its resolve timeout (3 s), and a margin.
    std::thread::sleep(Duration::from_millis(9_500));
    let st = lab.a.status();
    let neigh = lab.a.ns.sh("ip neigh show dev eth0");
    assert!(
        neigh.trim().is_empty() || !addrs.iter().any(|a| neigh.contains(&format!("{a} lladdr"))),
        "the kernel kept neighbour entries across the link loss, so this test proves nothing:\n{neigh}"
    );
    assert!(
        resolved(&st),
        "after 9.5 s with the link down the backends lost their MACs: {st}\n{}",
        lab.a.log()
    );

    lab.a.ns.sh("ip link set eth0 up");
    assert!(
        lab.wait_master(&lab.a, Duration::from_secs(10)),
        "A did not become master again after its link returned:\n{}",
        lab.a.log()
    );
    let errors = connect_many(&lab, 50);
    assert!(
        errors.is_empty(),
        "{} of 50 connections failed right after A's link returned (expected 0): {errors:?}",
        errors.len()
    );
    println!("link down 9.5 s: backends kept their MACs; 50/50 connections right after link up");
}

/// The lab with A's router tracking a file check `app` (on the file returned) at
/// `weight`, the file there, A master at [`PRIO_A`] and B started.
fn tracking_a_master(weight: &str) -> (Pair, PathBuf) {
    let mut lab = lab("");
    let flag = lab.dir.join("app-ok");
    std::fs::write(&flag, "").expect("create app-ok");
    add_to_router(
        &lab.a,
        &format!("track = [{{ check = \"app\", weight = {weight} }}]"),
    );
    append(&lab.a, &file_check("app", &flag, "200ms"));
    start_a_master(&mut lab);
    lab.b.start();
    let settled = time_until(&lab.a, Duration::from_secs(5), |st| {
        let r = router(st);
        r["state"] == "master" && r["effective_priority"] == PRIO_A
    });
    assert!(
        settled.is_some(),
        "A should be master at priority {PRIO_A} while app-ok exists: {}",
        lab.a.status()
    );
    (lab, flag)
}

/// B is backup again within `within`.
fn b_backup_again(lab: &Pair, within: Duration) {
    assert!(
        lab.b.wait_state("lab", "backup", within),
        "B should be backup again: {}",
        router(&lab.b.status())
    );
}

#[test]
fn a_failing_tracked_check_moves_mastership() {
    let (lab, flag) = tracking_a_master("-60");
    let check_interval = Duration::from_millis(200);
    assert!(
        lab.b.wait_state("lab", "backup", Duration::from_secs(5)),
        "B should be backup: {}",
        lab.b.status()
    );

    // The check fails: A's priority 150 − 60 = 90 < B's 100, B preempts.
    let bound = check_interval * 2 + master_down(PRIO_B) + ADVERT + Duration::from_millis(500);
    std::fs::remove_file(&flag).expect("remove app-ok");
    let takeover = time_until(&lab.b, Duration::from_secs(10), |st| {
        router(st)["state"] == "master"
    })
    .unwrap_or_else(|| {
        panic!(
            "B did not take over after A's tracked check failed:\nA: {}\nB log:\n{}",
            lab.a.status(),
            lab.b.log()
        )
    });
    println!(
        "tracked check failed on A: B master after {:.3} s (bound {:.2} s = 2 check intervals + B's Master_Down_Interval {:.3} s + advert + 0.5 s)",
        takeover.as_secs_f64(),
        bound.as_secs_f64(),
        master_down(PRIO_B).as_secs_f64()
    );
    assert!(
        takeover <= bound,
        "B took over after {takeover:?}, expected within {bound:?}"
    );
    let a_backup = time_until(&lab.a, Duration::from_secs(3), |st| {
        let r = router(st);
        r["state"] == "backup" && r["effective_priority"] == PRIO_A - 60
    });
    assert!(
        a_backup.is_some(),
        "A should be backup with effective priority 90 (configured 150, app failing): {}",
        router(&lab.a.status())
    );
    let a = router(&lab.a.status());
    assert_eq!(a["configured_priority"], PRIO_A, "{a}");
    assert_eq!(a["owned"], false, "A must not serve the VIP as backup: {a}");
    let checks = lab.a.status()["checks"].clone();
    assert!(
        checks
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == "app" && c["up"] == false)),
        "status should show check app down: {checks}"
    );

    // The check passes again: A (150) preempts B back.
    let bound = check_interval * 2 + master_down(PRIO_A) + ADVERT + Duration::from_millis(500);
    std::fs::write(&flag, "").expect("recreate app-ok");
    let back = time_until(&lab.a, Duration::from_secs(10), |st| {
        let r = router(st);
        r["state"] == "master" && r["effective_priority"] == PRIO_A
    })
    .unwrap_or_else(|| {
        panic!(
            "A did not take mastership back after app recovered: {}\nA log:\n{}",
            router(&lab.a.status()),
            lab.a.log()
        )
    });
    println!(
        "tracked check passed again: A master after {:.3} s (bound {:.2} s)",
        back.as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        back <= bound,
        "A took mastership back after {back:?}, expected within {bound:?}"
    );
    b_backup_again(&lab, Duration::from_secs(3));
}

/// keepalived's weight 0: a tracked check that fails puts the router in fault (source
/// `track:NAME`): the master stops serving and B takes over; the check passes again and
/// A preempts back. (Before weight 0 meant fault, it moved nothing: A stayed master.)
#[test]
fn a_failing_check_tracked_with_weight_0_faults_the_router() {
    let (lab, flag) = tracking_a_master("0");

    std::fs::remove_file(&flag).expect("remove app-ok");
    let faulted = time_until(&lab.a, Duration::from_secs(10), |st| {
        let r = router(st);
        r["state"] == "fault"
            && r["faults"]
                .as_array()
                .is_some_and(|f| f.iter().any(|s| s == "track:app"))
    });
    assert!(
        faulted.is_some(),
        "A should be in fault with source track:app: {}\nA log:\n{}",
        router(&lab.a.status()),
        lab.a.log()
    );
    let a = router(&lab.a.status());
    assert_eq!(
        a["effective_priority"], PRIO_A,
        "weight 0 moves no priority: {a}"
    );
    assert_eq!(
        a["owned"], false,
        "a faulted router must not serve the VIP: {a}"
    );
    assert!(
        time_until(&lab.b, Duration::from_secs(10), |st| router(st)["state"]
            == "master")
        .is_some(),
        "B did not take over from the faulted A: {}\nB log:\n{}",
        router(&lab.b.status()),
        lab.b.log()
    );

    std::fs::write(&flag, "").expect("recreate app-ok");
    assert!(
        time_until(&lab.a, Duration::from_secs(10), |st| router(st)["state"]
            == "master")
        .is_some(),
        "A did not come back as master after app recovered: {}\nA log:\n{}",
        router(&lab.a.status()),
        lab.a.log()
    );
    b_backup_again(&lab, Duration::from_secs(5));
}

#[test]
fn a_closed_gate_keeps_the_backup_from_taking_over() {
    let mut lab = lab("");
    let flag = lab.dir.join("b-ready");
    add_to_router(&lab.b, "gates = [\"ready\"]");
    append(&lab.b, &file_check("ready", &flag, "200ms"));
    start_a_master(&mut lab);
    lab.b.start();
    let fault = time_until(&lab.b, Duration::from_secs(5), |st| {
        router(st)["state"] == "fault"
    });
    assert!(
        fault.is_some(),
        "B's gate is closed: B should be in fault: {}",
        router(&lab.b.status())
    );
    let a_mac = lab.a.ns.mac("eth0");
    let b_mac = lab.b.ns.mac("eth0");
    let answerers = lab.arp_answerers();
    assert_eq!(
        answerers,
        vec![a_mac],
        "before the kill only A answers ARP for the VIP, got {answerers:02x?}"
    );

    // The master dies. B may not take over; once A's lease ran out nobody answers.
    lab.a.kill9();
    let killed = Instant::now();
    // B's Master_Down_Interval, A's dead-man lease (its Master_Down_Interval), margin.
    let wait = master_down(PRIO_B) + master_down(PRIO_A) + Duration::from_secs(1);
    std::thread::sleep(wait);
    let r = router(&lab.b.status());
    assert_eq!(
        r["state"], "fault",
        "B must not become master with gate \"ready\" closed ({wait:?} after A died): {r}"
    );
    assert_eq!(
        r["gates_closed"],
        serde_json::json!(["ready"]),
        "status should list the closed gate: {r}"
    );
    assert_eq!(r["owned"], false, "B must not own the VIP: {r}");
    let metrics = lab.b.metrics();
    for line in [
        "fo_vrrp_state{router=\"lab\"} 3",
        "fo_vip_owned{router=\"lab\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "B's /metrics should have `{line}`:\n{metrics}"
        );
    }
    let answerers = lab.arp_answerers();
    println!(
        "{:.2} s after kill -9 of A with B's gate closed: B {}, ARP answers for the VIP: {answerers:02x?}",
        killed.elapsed().as_secs_f64(),
        r["state"]
    );
    assert!(
        answerers.is_empty(),
        "nobody may answer ARP for the VIP (A dead, its lease over; B gated), got {answerers:02x?}"
    );

    // The gate opens: B takes over.
    let bound = Duration::from_millis(200) * 2 + master_down(PRIO_B) + Duration::from_millis(500);
    std::fs::write(&flag, "").expect("create b-ready");
    let took = time_until(&lab.b, Duration::from_secs(10), |st| {
        router(st)["state"] == "master"
    })
    .unwrap_or_else(|| {
        panic!(
            "B did not become master after its gate opened: {}\n{}",
            router(&lab.b.status()),
            lab.b.log()
        )
    });
    println!(
        "gate opened: B master after {:.3} s (bound {:.2} s = 2 check intervals + Master_Down_Interval {:.3} s + 0.5 s)",
        took.as_secs_f64(),
        bound.as_secs_f64(),
        master_down(PRIO_B).as_secs_f64()
    );
    assert!(
        took <= bound,
        "B became master {took:?} after the gate opened, expected within {bound:?}"
    );
    let r = router(&lab.b.status());
    assert_eq!(
        r["gates_closed"],
        serde_json::json!([]),
        "no gate is closed now: {r}"
    );
    let metrics = lab.b.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "fo_vip_owned{router=\"lab\"} 1"),
        "B's /metrics should show the VIP owned:\n{metrics}"
    );
    let answerers = lab.arp_answerers();
    assert_eq!(
        answerers,
        vec![b_mac],
        "only B may answer ARP for the VIP, got {answerers:02x?}"
    );
}

/// Is a process with this pid still running (not gone, not a zombie)?
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Pids of live processes whose command line contains `marker`.
fn with_marker(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_the_transition_stands() {
    let mut lab = lab("");
    let dir = lab.dir.clone();
    // A copy of sleep under a name unique to this lab: its command line carries the
    // lab's directory, which no other process has.
    let sleeper = dir.join("hook-sleep");
    std::fs::copy("/bin/sleep", &sleeper).expect("copy /bin/sleep");
    let hook = dir.join("master-sleeps.sh");
    let hook_pid = dir.join("hook.pid");
    let sleep_pid = dir.join("sleep.pid");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho $$ > {hp}\n{sl} 30 &\necho $! > {sp}\nwait\n",
            hp = hook_pid.display(),
            sl = sleeper.display(),
            sp = sleep_pid.display()
        ),
    )
    .expect("write hook");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    add_to_router(
        &lab.a,
        &format!(
            "hooks = {{ master = \"{}\", timeout = \"1s\" }}",
            hook.display()
        ),
    );
    let hook_timeout = Duration::from_secs(1);

    // A alone: it becomes master after its Master_Down_Interval.
    let started = Instant::now();
    lab.a.start();
    let bound = master_down(PRIO_A) + Duration::from_secs(1);
    let master = time_until(&lab.a, Duration::from_secs(10), |st| {
        router(st)["state"] == "master"
    })
    .unwrap_or_else(|| panic!("A never became master:\n{}", lab.a.log()));
    println!(
        "A master {:.3} s after its agent was running ({:.3} s after start; bound {:.2} s = Master_Down_Interval + 1 s)",
        master.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        bound.as_secs_f64()
    );
    assert!(
        master <= bound,
        "A became master {master:?} after start, expected within {bound:?}: the hook must not delay the transition"
    );
    let pids = wait_for(Duration::from_secs(3), || {
        Some((read_pid(&hook_pid)?, read_pid(&sleep_pid)?))
    });
    let (hp, sp) = pids.unwrap_or_else(|| {
        panic!(
            "the master hook did not start (no pid files in {}):\n{}",
            dir.display(),
            lab.a.log()
        )
    });
    assert!(
        router(&lab.a.status())["state"] == "master",
        "the state is master while the hook still runs"
    );

    // At its timeout the hook is killed with its whole process group, and logged.
    // The agent's and sinks' command lines name files in `dir` too: look for the
    // hook's own paths.
    let markers = [hook.display().to_string(), sleeper.display().to_string()];
    let leftovers = || -> Vec<u32> { markers.iter().flat_map(|m| with_marker(m)).collect() };
    let killed_line = "hook still running at its timeout: killed";
    let t = Instant::now();
    assert!(
        alive(sp) && leftovers().contains(&sp),
        "the hook's sleep ({sp}) should still be running (and be found by its command line) before the timeout: {:?}",
        leftovers()
    );
    let logged = wait_for(hook_timeout + Duration::from_secs(2), || {
        lab.a.log().contains(killed_line).then_some(())
    });
    let logged_after = t.elapsed();
    assert!(
        logged.is_some(),
        "the agent log should say `{killed_line}`:\n{}",
        lab.a.log()
    );
    println!(
        "hook (sh {hp}, sleep {sp}) killed and logged {:.3} s after its pid files were seen (timeout {hook_timeout:?})",
        logged_after.as_secs_f64()
    );
    let gone = wait_for(Duration::from_secs(3), || {
        (!alive(hp) && !alive(sp) && leftovers().is_empty()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the hook and its sleep must be gone after the kill: sh {hp} alive {}, sleep {sp} alive {}, processes running the hook or its sleep: {:?}",
        alive(hp),
        alive(sp),
        leftovers()
    );
    let log = lab.a.log();
    let line = log
        .lines()
        .find(|l| l.contains(killed_line))
        .unwrap_or_default();
    assert!(
        line.contains("master-sleeps.sh")
            && (line.contains("hook=\"master\"") || line.contains("hook=master")),
        "the kill line should name the hook and its path: {line}"
    );
    let r = router(&lab.a.status());
    assert_eq!(
        r["state"], "master",
        "the killed hook must not undo the transition: {r}"
    );
    assert_eq!(r["owned"], true, "A serves the VIP: {r}");
}

/// An agent restarted under a serving master does not wait for its gates to be proven
/// again (node checks otherwise start "not proven", closed): the restart moves
/// nothing. A gate that then fails still hands the VIP over.
#[test]
fn a_restart_of_a_gated_master_moves_nothing() {
    let mut lab = lab("");
    let flag = lab.dir.join("a-ready");
    std::fs::write(&flag, "").expect("flag");
    add_to_router(&lab.a, "gates = [\"ready\"]");
    // Slow to prove (rise 2 at 1 s): a restart that waited for it would fault A for
    // about 2 s, long past B's Master_Down_Interval.
    append(
        &lab.a,
        &format!(
            "[[check]]\nname = \"ready\"\nkind = \"file\"\npath = \"{}\"\ninterval = \"1s\"\ntimeout = \"100ms\"\nrise = 2\nfall = 1\n",
            flag.display()
        ),
    );
    start_a_master(&mut lab);
    lab.b.start();
    std::thread::sleep(Duration::from_secs(1));
    let b_before = master_transitions(&lab.b);

    lab.a.restart();
    std::thread::sleep(Duration::from_secs(3));
    let log = lab.a.log();
    assert!(
        log.contains("their gates and tracked checks start passing")
            && log.contains("resuming as master"),
        "A should resume as master with its gate taken as passing:\n{log}"
    );
    let r = router(&lab.a.status());
    assert_eq!(r["state"], "master", "A after its restart: {r}");
    let transitions: Vec<_> = r["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}:{}", t["to"], t["reason"]))
        .collect();
    assert_eq!(
        transitions,
        ["\"master\":\"resumed\""],
        "the restarted A must go straight back to master, never through fault: {r}"
    );
    assert_eq!(
        master_transitions(&lab.b),
        b_before,
        "B took over during A's restart:\n{}",
        lab.b.log()
    );

    // The gate now fails across a restart: taken as passing at start, it closes at the
    // first failed probe (fall 1) and B takes over.
    std::fs::remove_file(&flag).expect("remove flag");
    lab.a.restart();
    assert!(
        lab.wait_master(&lab.b, Duration::from_secs(10)),
        "B did not take over from A whose gate failed after a restart:\n{}",
        lab.a.log()
    );
    assert_eq!(router(&lab.a.status())["state"], "fault");
}

/// A backend that does not answer ARP cannot delay a restart: the restarted master
/// resumes with the MACs it has (the unreachable backend is left out, as before).
#[test]
fn an_unreachable_backend_does_not_delay_a_restart() {
    let mut lab = lab("");
    let text = std::fs::read_to_string(&lab.a.config).expect("config");
    assert!(text.contains("backends = ["), "unexpected config:\n{text}");
    std::fs::write(
        &lab.a.config,
        text.replacen(
            "backends = [",
            "backends = [{ address = \"192.0.2.29\" }, ",
            1,
        ),
    )
    .expect("write config");
    start_a_master(&mut lab);
    lab.b.start();
    std::thread::sleep(Duration::from_secs(1));
    let b_before = master_transitions(&lab.b);

    lab.a.kill9();
    let restarted = Instant::now();
    lab.a.start();
    println!(
        "restart with an unreachable backend: running after {:?}",
        restarted.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    let log = lab.a.log();
    assert!(
        log.contains("resuming as master"),
        "A should resume as master:\n{log}"
    );
    assert_eq!(
        master_transitions(&lab.b),
        b_before,
        "B took over while A restarted:\nA:\n{log}\nB:\n{}",
        lab.b.log()
    );
    let errors = connect_many(&lab, 30);
    assert!(
        errors.is_empty(),
        "connections after the restart: {errors:?}"
    );
}

/// Hooks and exec checks run as root, so their programs are judged at reload as at
/// start, and again before each run: a hook whose directory became world-writable
/// refuses the reload (at the hook's line and column; the running config stays) and is
/// not run at the next transition (counted as a failure); an exec check added with its
/// program in a world-writable directory refuses the reload, and is added once fixed.
#[test]
fn a_reload_refuses_programs_others_could_change_and_the_running_config_stays() {
    use std::os::unix::fs::PermissionsExt as _;
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let mut lab = lab("");
    let hooks = lab.dir.join("hooks");
    std::fs::create_dir_all(&hooks).expect("mkdir");
    chmod(&hooks, 0o755);
    let ran = lab.dir.join("hooks.log");
    for name in ["master", "backup"] {
        let p = hooks.join(format!("{name}.sh"));
        std::fs::write(&p, format!("#!/bin/sh\necho {name} >> {}\n", ran.display()))
            .expect("write hook");
        chmod(&p, 0o755);
    }
    let hooks_line = format!(
        "hooks = {{ master = \"{d}/master.sh\", backup = \"{d}/backup.sh\" }}",
        d = hooks.display()
    );
    add_to_router(&lab.a, &hooks_line);
    start_a_master(&mut lab);
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(&ran)
            .is_ok_and(|t| t.ends_with("master\n"))
            .then_some(()))
        .is_some(),
        "the master hook did not run: {:?}",
        std::fs::read_to_string(&ran)
    );
    let before = std::fs::read_to_string(&ran).expect("hooks log");
    let text = std::fs::read_to_string(&lab.a.config).expect("config");
    let (line, col) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            Some((
                i + 1,
                l.find(&format!("\"{}/master.sh", hooks.display()))? + 1,
            ))
        })
        .expect("the hooks line");

    // The hooks' directory becomes world-writable: the reload is refused at the hook.
    chmod(&hooks, 0o777);
    let (ok, out) = lab.a.ctl(&["reload"]);
    assert!(!ok, "the reload must be refused: {out}");
    let at = format!(
        "a.toml:{line}:{col}: router lab: master hook {d}/master.sh: directory {d} is writable by others (mode 0777)",
        d = hooks.display()
    );
    assert!(out.contains(&at), "expected {at:?} in: {out}");
    let st = lab.a.status();
    assert_eq!(st["node"]["reloads"]["failed"], 1, "{}", st["node"]);
    assert_eq!(
        router(&st)["state"],
        "master",
        "the running config stays: {st}"
    );

    // ...and at the next transition the backup hook is not run (a demote hands over:
    // B takes over).
    lab.b.start();
    let (ok, out) = lab.a.ctl(&["demote", "lab"]);
    assert!(ok, "demote: {out}");
    assert!(
        lab.a.wait_log("hook refused", Duration::from_secs(5)),
        "the backup hook was not refused:\n{}",
        lab.a.log()
    );
    assert_eq!(
        std::fs::read_to_string(&ran).expect("hooks log"),
        before,
        "the refused backup hook ran"
    );
    let hooks_status = &router(&lab.a.status())["hooks"];
    assert_eq!(
        hooks_status["backup"]["failures"], 1,
        "the refused hook counts as a failure: {hooks_status}"
    );

    // An exec check added with its program in a world-writable directory: refused at
    // the program, and the check does not start.
    chmod(&hooks, 0o755);
    let open = lab.dir.join("open");
    std::fs::create_dir_all(&open).expect("mkdir");
    chmod(&open, 0o777);
    let probe = open.join("probe.sh");
    std::fs::write(&probe, "#!/bin/sh\nexit 0\n").expect("write");
    chmod(&probe, 0o755);
    append(
        &lab.a,
        &format!(
            "[[check]]\nname = \"probe\"\nkind = \"exec\"\ncommand = [\"{}\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\n",
            probe.display()
        ),
    );
    let text = std::fs::read_to_string(&lab.a.config).expect("config");
    let cmd_line = text
        .lines()
        .position(|l| l.starts_with("command = "))
        .expect("the command line")
        + 1;
    let (ok, out) = lab.a.ctl(&["reload"]);
    assert!(!ok, "the reload must be refused: {out}");
    let at = format!(
        "a.toml:{cmd_line}:12: check probe: command {}: directory {} is writable by others (mode 0777)",
        probe.display(),
        open.display()
    );
    assert!(out.contains(&at), "expected {at:?} in: {out}");
    let st = lab.a.status();
    assert_eq!(st["node"]["reloads"]["failed"], 2, "{}", st["node"]);
    assert!(
        st["checks"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["name"] != "probe")),
        "the refused check must not run: {}",
        st["checks"]
    );

    // Fixed: the same config reloads and the check runs.
    chmod(&open, 0o755);
    let (ok, out) = lab.a.ctl(&["reload"]);
    assert!(ok, "the fixed config must reload: {out}");
    assert!(
        wait_for(Duration::from_secs(5), || lab.a.status()["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "probe" && c["up"] == true))
            .then_some(()))
        .is_some(),
        "the check did not come up: {}",
        lab.a.status()["checks"]
    );
}
