//! The agent's two ways in, the metrics endpoint and the control socket, under crowds
//! of clients, on a NAT master holding a million connections (so every status walks a
//! big table): abandoned scrapes share one walk, and idle connections neither starve
//! the agent of descriptors nor keep `status` out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fo_tests::netns::wait_for;
use fo_tests::pair::{Pair, PairOptions};

const ENTRIES: u32 = 1_000_000;

/// A check on the NAT service's backends (each runs a sink on 0.0.0.0:11514).
const BACKEND_CHECK: &str =
    "check = { kind = \"tcp\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }\n";

fn lab(extra: &str) -> Pair {
    Pair::new(&PairOptions {
        nat: true,
        node_extra: "nat_table_size = 1048576".to_string(),
        extra: extra.to_string(),
        ..Default::default()
    })
}

/// A's NAT table filled with `ENTRIES` idle established connections, A master.
fn fill(lab: &Pair) {
    lab.fill_nat_of_master_a(ENTRIES);
}

/// `fo-agent status --json` of A, or `None` if it did not answer.
fn try_status(lab: &Pair) -> Option<serde_json::Value> {
    let (ok, text) = lab.a.ctl(&["status", "--json"]);
    ok.then(|| serde_json::from_str(&text).ok()).flatten()
}

fn nat_walks(st: &serde_json::Value) -> u64 {
    st["tables"]["nat"]["walks"]
        .as_u64()
        .unwrap_or_else(|| panic!("status lacks tables.nat.walks: {}", st["tables"]))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// 500 scrapes sent at once, whose clients all leave before an answer, walk the NAT
/// table at most twice (shared walks, at most a second old; the requests of clients
/// that left are dropped). Before, each made a walk of its own, one after another,
/// long after its client had gone, and a `status` behind them waited for them all.
#[test]
fn abandoned_scrapes_of_a_big_nat_table_share_one_walk() {
    const GETS: usize = 500;
    fo_tests::require_root();
    let mut lab = lab("");
    lab.a.start();
    fill(&lab);
    let st = lab.a.status();
    let counted = st["tables"]["nat"]["entries"].as_u64().unwrap_or(0);
    assert!(
        counted >= u64::from(ENTRIES),
        "status must count the table: {}",
        st["tables"]
    );
    let before = nat_walks(&st);
    // The next count needs a new walk (the last one is over a second old then).
    std::thread::sleep(Duration::from_millis(1100));
    let port = lab.a.metrics_port;
    let sent = lab.a.ns.run(move || {
        use std::io::Write as _;
        let mut conns = Vec::new();
        for _ in 0..GETS {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            // A connection the agent already closed (its cap) may refuse the request.
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
            conns.push(s);
        }
        // Every client leaves at once.
        let n = conns.len();
        drop(conns);
        n
    });
    let asked = unix_now();
    let st = wait_for(Duration::from_secs(120), || try_status(&lab)).unwrap_or_else(|| {
        panic!("status did not answer within 120 s of {sent} abandoned GETs: their walks queue ahead of it")
    });
    let after = nat_walks(&st);
    // The status made a walk of its own if the walk behind its count started after
    // the GETs' clients had left.
    let nat = &st["tables"]["nat"];
    let walk_started =
        nat["counted_at"].as_f64().unwrap_or(0.0) - nat["walk_seconds"].as_f64().unwrap_or(0.0);
    let own = u64::from(walk_started >= asked);
    let by_gets = after - before - own;
    println!(
        "{sent} GETs over {counted} NAT entries, all abandoned: {by_gets} walk(s) (one walk took {:.0} ms); metrics connections: {}",
        st["tables"]["nat"]["walk_seconds"].as_f64().unwrap_or(0.0) * 1e3,
        st["node"]["connections"]["metrics"]
    );
    assert!(
        by_gets <= 2,
        "{sent} abandoned scrapes made {by_gets} walks of the NAT table (at most 2 allowed)"
    );
}

/// Raise this process's own open-file limit to `n` (within the hard limit): it holds
/// thousands of connections.
fn raise_own_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on an rlimit we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

fn open_fds(pid: u64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Every backend of every service healthy, or what is not.
fn unhealthy(st: &serde_json::Value) -> Vec<String> {
    st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["backends"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["healthy"] != true)
        .map(|b| format!("{} ({})", b["name"], b["detail"]))
        .collect()
}

/// 2,000 connections opened and held idle (1,000 on the metrics endpoint, 1,000 on the
/// control socket, as root) against an agent limited to 1,024 descriptors — the
/// kernel's default for a process started by hand; the unit's 65,536 is as reachable
/// for a client with more addresses. Every check stays up and `status` answers
/// throughout, and the agent holds no more descriptors than its caps allow. Before,
/// each connection took a descriptor until its deadline (10 s, 30 s): the agent ran
/// out, health probes failed with EMFILE and the control socket stopped accepting.
#[test]
fn idle_connections_leave_checks_up_and_status_answering() {
    const IDLE_EACH: usize = 1_000;
    const AGENT_NOFILE: u64 = 1_024;
    const WINDOW: Duration = Duration::from_secs(8);
    fo_tests::require_root();
    raise_own_nofile(4 * IDLE_EACH as u64 + 1_024);
    let mut lab = lab(BACKEND_CHECK);
    lab.a.start_with(|cmd| {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: setrlimit(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: AGENT_NOFILE,
                    rlim_max: AGENT_NOFILE,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    fill(&lab);
    let healthy = wait_for(Duration::from_secs(15), || {
        let st = try_status(&lab)?;
        unhealthy(&st).is_empty().then_some(st)
    })
    .unwrap_or_else(|| panic!("the backends never all came up: {}", lab.a.status()));
    let pid = healthy["node"]["pid"].as_u64().expect("pid");
    let fds_before = open_fds(pid);

    // Watched from before the first connection to the end: status every half second
    // with every backend up, and the agent's descriptors.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let watch = || {
        let (mut answered, mut unanswered, mut max_fds) = (0, 0, 0);
        let mut down: Vec<String> = Vec::new();
        let mut last = serde_json::Value::Null;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            max_fds = max_fds.max(open_fds(pid));
            match try_status(&lab) {
                Some(st) => {
                    answered += 1;
                    down.extend(unhealthy(&st));
                    last = st;
                }
                None => unanswered += 1,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        (answered, unanswered, max_fds, down, last)
    };
    // Open them all, as fast as the agent takes them, and hold them without a byte
    // for longer than the read deadline.
    let port = lab.a.metrics_port;
    let socket = lab.a.socket.clone();
    let open_and_hold = || {
        let (tcp, unix, refused) = lab.a.ns.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let t = Duration::from_secs(1);
                let (mut tcp, mut unix, mut refused) = (Vec::new(), Vec::new(), 0usize);
                for _ in 0..IDLE_EACH {
                    match tokio::time::timeout(
                        t,
                        tokio::net::TcpStream::connect(("127.0.0.1", port)),
                    )
                    .await
                    {
                        Ok(Ok(s)) => tcp.push(s.into_std().expect("std")),
                        _ => refused += 1,
                    }
                    match tokio::time::timeout(t, tokio::net::UnixStream::connect(&socket)).await {
                        Ok(Ok(s)) => unix.push(s.into_std().expect("std")),
                        _ => refused += 1,
                    }
                }
                (tcp, unix, refused)
            })
        });
        std::thread::sleep(WINDOW);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (tcp.len() + unix.len(), refused)
    };
    let ((held, refused), (answered, unanswered, max_fds, down, last)) = std::thread::scope(|s| {
        let watcher = s.spawn(watch);
        let held = open_and_hold();
        (held, watcher.join().expect("watcher"))
    });
    let conns = &last["node"]["connections"];
    println!(
        "{held} idle connections held ({refused} not accepted by the kernel in 1 s): status answered {answered}, failed {unanswered}; \
         agent descriptors {fds_before} before, at most {max_fds} during (limit {AGENT_NOFILE}); connections: {conns}"
    );
    assert_eq!(
        unanswered,
        0,
        "status failed {unanswered} times of {} under {held} idle connections:\n{}",
        answered + unanswered,
        lab.a.log()
    );
    assert!(
        down.is_empty(),
        "checks went down under {held} idle connections: {down:?}\n{}",
        lab.a.log()
    );
    let caps = fo_agent::api::conns::METRICS_CAP + fo_agent::api::conns::CONTROL_CAP;
    assert!(
        max_fds <= fds_before + caps + 32,
        "the agent held {max_fds} descriptors under {held} idle connections ({fds_before} before; the caps allow {caps} more)"
    );
    for listener in ["metrics", "control"] {
        let c = &conns[listener];
        let closed: u64 = c["closed"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0);
        assert!(
            closed > 0,
            "the {listener} listener closed none of the idle connections: {c}"
        );
    }
}
