//! `fo-agent import` behaves like the original: two realistic keepalived pairs, each run
//! three ways on one segment in network namespaces:
//!
//! 1. keepalived on both nodes with the original configs;
//! 2. fo on both nodes, each with the config `fo-agent import` printed for its
//!    keepalived.conf (the import runs in the test);
//! 3. a mixed pair: fo (imported) on one node, keepalived (original) on the other —
//!    both ways round.
//!
//! Each run records who is master (its log and the MAC that answers ARP for the VIP
//! from a client), then fails the tracked script on the master (its file goes away),
//! records again, restores it and records again. Every run must elect the same master
//! at every step as the keepalived pair, and the keepalived pair must do what the
//! weights say (so the comparison cannot pass with nothing happening).
//!
//! - (a) multicast, VRRPv3 at 100 ms, a `track_script` with a positive weight (+30
//!   while the script succeeds): B (110 + 30) is master; its script fails, A (100 + 30)
//!   takes over; restored, B preempts back. Read as a penalty, the weight would keep B.
//! - (b) unicast, VRRPv2 with `auth_pass`, notify scripts (`notify_master` and
//!   `notify`, whose log must end with each node's state), a negative weight (−60 while
//!   the script fails): A (150) is master; its script fails (90), B (100) takes over;
//!   restored, A preempts back.
//!
//! Correctness, not timings, is asserted: each step waits for the pair to settle.
//! Run: `cargo test -p fo-tests --test import_equivalence -- --test-threads=1` (root).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fo_tests::vrrp_lab::{Claim, Kind, Lab, agent_binary, fmt_mac, serial};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const A: usize = 0;
const B: usize = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    Keepalived,
    Fo,
    /// Which node runs fo.
    Mixed(usize),
}

/// A scenario: per node, its keepalived.conf (given the node's directory), and how long
/// a settled master must stay (a few advert and script intervals).
struct Scenario {
    name: &'static str,
    conf: fn(node: usize, dir: &Path) -> String,
    hold: Duration,
    /// Masters the keepalived pair must elect: initially, with the master's script
    /// failing, after the restore.
    expected: [usize; 3],
    notify: bool,
}

fn multicast_positive(node: usize, dir: &Path) -> String {
    let priority = if node == A { 100 } else { 110 };
    format!(
        r#"global_defs {{
    vrrp_version 3
}}
vrrp_script chk_app {{
    script "/usr/bin/test -e {ok}"
    interval 1
    weight 30
}}
vrrp_instance VI_web {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
    track_script {{
        chk_app
    }}
}}
"#,
        ok = dir.join("app.ok").display()
    )
}

fn unicast_negative(node: usize, dir: &Path) -> String {
    let (me, peer, priority) = if node == A {
        ("192.0.2.11", "192.0.2.12", 150)
    } else {
        ("192.0.2.12", "192.0.2.11", 100)
    };
    let notify = dir.join("notify.sh");
    format!(
        r#"vrrp_script chk_svc {{
    script "/usr/bin/test -e {ok}"
    interval 1
    weight -60
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 61
    priority {priority}
    advert_int 1
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    authentication {{
        auth_type PASS
        auth_pass s3cr3t
    }}
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
    track_script {{
        chk_svc
    }}
    notify_master "{notify} master-hook"
    notify "{notify}"
}}
"#,
        ok = dir.join("app.ok").display(),
        notify = notify.display()
    )
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        name: "(a) multicast, VRRPv3 100 ms, positive weight",
        conf: multicast_positive,
        hold: Duration::from_secs(3),
        expected: [B, A, B],
        notify: false,
    },
    Scenario {
        name: "(b) unicast, VRRPv2 auth_pass, notify scripts, negative weight",
        conf: unicast_negative,
        hold: Duration::from_secs(4),
        expected: [A, B, A],
        notify: true,
    },
];

/// `fo-agent import` of a keepalived.conf: the TOML it printed.
fn import(conf: &Path) -> String {
    let out = Command::new(agent_binary())
        .args(["import", "--keepalived"])
        .arg(conf)
        .args(["--interface", "eth0"])
        .output()
        .expect("run fo-agent import");
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(2),
        "fo-agent import {} failed ({code:?}):\n{}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 config")
}

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The master once the pair has settled: exactly one node claims master and the
/// others backup (or fault), unchanged for `hold`. A run is expected to elect `hint`
/// (the keepalived pair's choice), so settling waits for that first, up to
/// `max_wait`; a run that elects another node settles on it after `max_wait` and
/// fails the comparison.
fn settled_master(lab: &Lab, hint: usize, hold: Duration, what: &str) -> usize {
    let max_wait = Duration::from_secs(30);
    let start = Instant::now();
    let deadline = start + max_wait + Duration::from_secs(60);
    let mut stable_since: Option<(Instant, Vec<Claim>)> = None;
    loop {
        let claims: Vec<Claim> = lab.nodes.iter().map(|n| n.claim()).collect();
        let masters: Vec<usize> = (0..claims.len())
            .filter(|&i| claims[i] == Claim::Master)
            .collect();
        let settled = masters.len() == 1
            && claims
                .iter()
                .all(|c| matches!(c, Claim::Master | Claim::Backup | Claim::Fault))
            && (masters[0] == hint || start.elapsed() >= max_wait);
        if settled {
            match &stable_since {
                Some((t, c)) if *c == claims => {
                    if t.elapsed() >= hold {
                        return masters[0];
                    }
                }
                _ => stable_since = Some((Instant::now(), claims.clone())),
            }
        } else {
            stable_since = None;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no single master settled; claims {claims:?}\n{}",
            lab.dump()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last state each node's notify script logged (`INSTANCE NAME STATE PRIORITY`).
fn notified_state(dir: &Path) -> Option<String> {
    let log = std::fs::read_to_string(dir.join("notify.log")).ok()?;
    log.lines()
        .rev()
        .find(|l| l.starts_with("INSTANCE "))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

/// One run of a scenario: the master at each step.
fn run(s: &Scenario, runs: Runs) -> [usize; 3] {
    let mut lab = Lab::new(VIP);
    let a = lab.add(
        "a",
        Kind::KeepalivedFile {
            conf: String::new(),
        },
    );
    let b = lab.add(
        "b",
        Kind::KeepalivedFile {
            conf: String::new(),
        },
    );
    for i in [a, b] {
        let dir = lab.nodes[i].dir().to_owned();
        std::fs::write(dir.join("app.ok"), "").expect("ok file");
        write_exec(
            &dir.join("notify.sh"),
            &format!(
                "#!/bin/sh\necho \"$@\" >> {}\n",
                dir.join("notify.log").display()
            ),
        );
        let conf = (s.conf)(i, &dir);
        let conf_path = dir.join("original.conf");
        std::fs::write(&conf_path, &conf).expect("write keepalived.conf");
        let fo = match runs {
            Runs::Keepalived => false,
            Runs::Fo => true,
            Runs::Mixed(n) => n == i,
        };
        let kind = if fo {
            Kind::FoFile {
                toml: import(&conf_path),
            }
        } else {
            Kind::KeepalivedFile { conf }
        };
        lab.nodes[i].set_kind(kind);
    }
    let label = format!("{} with {runs:?}", s.name);
    lab.nodes[b].start();
    lab.nodes[a].start();
    let mut masters = [0; 3];
    for step in 0..3 {
        match step {
            0 => {}
            1 => {
                let dir = lab.nodes[masters[0]].dir().to_owned();
                std::fs::remove_file(dir.join("app.ok")).expect("fail the master's script");
            }
            _ => {
                let dir = lab.nodes[masters[0]].dir().to_owned();
                std::fs::write(dir.join("app.ok"), "").expect("restore the script");
            }
        }
        let m = &mut masters[step];
        let what = format!("{label}, step {step}");
        *m = settled_master(&lab, s.expected[step], s.hold, &what);
        // The data path agrees: only the master's MAC answers ARP for the VIP.
        let mac = lab.nodes[*m].mac;
        if let Err(seen) = lab.wait_arp(mac, Duration::from_secs(10)) {
            panic!(
                "{what}: {} claims master, but ARP for {VIP} is answered by {:?}\n{}",
                lab.nodes[*m].name,
                seen.iter().map(|m| fmt_mac(*m)).collect::<Vec<_>>(),
                lab.dump()
            );
        }
        if s.notify {
            // Hooks run after the transition; give them a moment.
            for (i, n) in lab.nodes.iter().enumerate() {
                let want = if i == *m { "MASTER" } else { "BACKUP" };
                let seen = fo_tests::netns::wait_for(Duration::from_secs(10), || {
                    (notified_state(n.dir()).as_deref() == Some(want)).then_some(())
                });
                assert!(
                    seen.is_some(),
                    "{what}: {}'s notify script last saw {:?}, expected {want}\n{}",
                    n.name,
                    notified_state(n.dir()),
                    lab.dump()
                );
            }
        }
        eprintln!("{what}: master {}", lab.nodes[*m].name);
    }
    masters
}

fn scenario(s: &Scenario) {
    let _serial = serial();
    let keepalived = run(s, Runs::Keepalived);
    assert_eq!(
        keepalived, s.expected,
        "{}: the keepalived pair elected {keepalived:?} (node 0 = a, 1 = b); the weights say {:?}",
        s.name, s.expected
    );
    for runs in [Runs::Fo, Runs::Mixed(A), Runs::Mixed(B)] {
        let seen = run(s, runs);
        assert_eq!(
            seen, keepalived,
            "{} with {runs:?}: masters {seen:?} at the three steps, keepalived's pair {keepalived:?} (0 = a, 1 = b)",
            s.name
        );
    }
}

#[test]
fn multicast_pair_with_a_positive_weight() {
    scenario(&SCENARIOS[0]);
}

#[test]
fn unicast_pair_with_auth_pass_notify_scripts_and_a_negative_weight() {
    scenario(&SCENARIOS[1]);
}
