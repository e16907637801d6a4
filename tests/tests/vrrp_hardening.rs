//! VRRP input safety against real agents on a real link (issue 8): crafted adverts for
//! every rejection reason, HMAC mode (same key, wrong key, a replayed capture), both masters
//! at once, and a flood of 10,000 adverts per second.
//!
//! Crafted frames come from the lab's client namespace through an `AF_PACKET` socket, so
//! their TTL, source address and contents are exactly as written; a node's own raw socket
//! captures real adverts for the replay. Every crafted advert carries priority 0 ("the
//! Master is stopping"): had the backup accepted one, it would have taken over after
//! Skew_Time, so "no transition" is part of every check.
//!
//! Run: `cargo test -p fo-tests --test vrrp_hardening -- --test-threads=1 --nocapture` (root).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fo_tests::netns::wait_for;
use fo_tests::vrrp_craft::{
    Capture, Injector, VRRP_GROUP, VRRP_MULTICAST_MAC, fix_v3_checksum, frame, seal, v3_message,
};
use fo_tests::vrrp_lab::{Claim, Kind, Lab, fmt_mac, serial};
use fo_vrrp::AuthKey;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const INTERVAL_MS: u64 = 100;
const KEY: &str = "5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee5f0c0ffee0123456789";
const WRONG_KEY: &str = "this-is-not-the-key-the-others-have-0123456789";
/// Each crafted advert is sent this many times.
const N: u64 = 5;

fn write_key(dir: &std::path::Path, key: &str) -> PathBuf {
    let path = dir.join("vrrp.key");
    std::fs::write(&path, format!("{key}\n")).expect("write the key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

fn router(priority: u8, peers: Option<Ipv4Addr>, key_file: Option<&std::path::Path>) -> Kind {
    let mut r = format!(
        "name = \"web\"\nvrid = 51\npriority = {priority}\nadvert_interval = \"{INTERVAL_MS}ms\""
    );
    if let Some(p) = peers {
        r.push_str(&format!("\npeers = [\"{p}\"]"));
    }
    if let Some(k) = key_file {
        r.push_str(&format!("\nauth_key_file = \"{}\"", k.display()));
    }
    Kind::Fo { router: r }
}

/// A JSON object of counts as a map (absent: empty).
fn json_counts(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// `dropped` of a router status as a map (reasons never seen are absent).
fn drops(router: &serde_json::Value) -> BTreeMap<String, u64> {
    json_counts(&router["dropped"])
}

fn unrouted(status: &serde_json::Value) -> BTreeMap<String, u64> {
    json_counts(&status["vrrp_unrouted_drops"])
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

/// Start a (priority 200) and b (priority 100); wait until a is master and b backup.
fn start_pair(lab: &mut Lab, a: usize, b: usize) {
    lab.start_master_backup(a, b, START_TIMEOUT);
    // A few adverts, so b has heard a (and, in HMAC mode, holds a's sequence floor).
    std::thread::sleep(Duration::from_millis(5 * INTERVAL_MS));
}

/// The transitions each node logged after `since`.
fn transitions_since(lab: &Lab, since: Instant) -> Vec<String> {
    lab.nodes
        .iter()
        .flat_map(|n| {
            n.lines(|l| l.contains("VRRP transition"))
                .into_iter()
                .filter(|(t, _)| *t >= since)
                .map(|(_, l)| format!("{}: {l}", n.name))
        })
        .collect()
}

/// A crafted advert: what it is, the frame, and the counter it must land in.
struct Case {
    what: &'static str,
    frame: Vec<u8>,
}

fn send_all(lab: &Lab, cases: &[Case]) {
    let inj = Injector::open(&lab.client, "eth0");
    for _ in 0..N {
        for c in cases {
            inj.send(&c.frame)
                .unwrap_or_else(|e| panic!("sending the {} advert: {e}", c.what));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn crafted_adverts_hmac_unicast_are_dropped_by_reason() {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, None, None));
    let b = lab.add("b", router(100, None, None));
    let (a_addr, b_addr) = (lab.nodes[a].addr, lab.nodes[b].addr);
    let ka = write_key(lab.nodes[a].dir(), KEY);
    let kb = write_key(lab.nodes[b].dir(), KEY);
    lab.nodes[a].set_kind(router(200, Some(b_addr), Some(&ka)));
    lab.nodes[b].set_kind(router(100, Some(a_addr), Some(&kb)));
    start_pair(&mut lab, a, b);

    // A real advert of a to b, captured in b's namespace, to be replayed later.
    let capture = Capture::open(&lab.nodes[b].ns);
    let (cap_dst, captured) = capture
        .next_from(a_addr, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no advert of a captured at b.\n{}", lab.dump()));
    assert_eq!(cap_dst, b_addr, "unicast adverts go to the peer");
    drop(capture);
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));

    let key = AuthKey::from_file_content(KEY.as_bytes()).expect("key");
    let wrong = AuthKey::from_file_content(WRONG_KEY.as_bytes()).expect("key");
    let client_mac = lab.client.mac("eth0");
    let b_mac = lab.nodes[b].mac;
    // Priority 0 from a to b: accepted, it would hand b the mastership after Skew_Time.
    let stop = |src: Ipv4Addr| v3_message(51, 0, 10, &[VIP], src, b_addr);
    let sealed = |msg: &[u8], src: Ipv4Addr| seal(msg, src, b_addr, &key, 1);
    let to_b = |src: Ipv4Addr, ttl: u8, payload: &[u8]| {
        frame(b_mac, client_mac, src, b_addr, ttl, payload)
    };
    // The stop message with one field broken (`edit`), sealed as a's.
    let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bad = stop(a_addr);
        edit(&mut bad);
        to_b(a_addr, 255, &sealed(&bad, a_addr))
    };
    let wrong_key = seal(&stop(a_addr), a_addr, b_addr, &wrong, u64::MAX - 1);
    let unknown_vrid = v3_message(99, 0, 10, &[VIP], a_addr, b_addr);
    let cases: Vec<Case> = [
        ("TTL 254", to_b(a_addr, 254, &sealed(&stop(a_addr), a_addr))),
        (
            "not a peer",
            to_b(CLIENT, 255, &sealed(&stop(CLIENT), CLIENT)),
        ),
        (
            "unknown VRID",
            to_b(a_addr, 255, &sealed(&unknown_vrid, a_addr)),
        ),
        ("bad checksum", broken(&|m| m[7] ^= 0xff)),
        ("version 2", broken(&|m| m[0] = 0x21)),
        ("type 2", broken(&|m| m[0] = 0x32)),
        (
            "truncated",
            to_b(a_addr, 255, &sealed(&stop(a_addr)[..6], a_addr)),
        ),
        ("address count", broken(&|m| m[3] = 2)),
        (
            "interval 0",
            broken(&|m| {
                m[4] = 0;
                m[5] = 0;
                fix_v3_checksum(m, a_addr, b_addr);
            }),
        ),
        ("no HMAC trailer", to_b(a_addr, 255, &stop(a_addr))),
        ("wrong key", to_b(a_addr, 255, &wrong_key)),
        (
            "cut trailer",
            to_b(a_addr, 255, &sealed(&stop(a_addr), a_addr)[..12 + 40]),
        ),
        (
            "old sequence",
            to_b(a_addr, 255, &sealed(&stop(a_addr), a_addr)),
        ),
        ("replayed capture", to_b(a_addr, 255, &captured)),
    ]
    .into_iter()
    .map(|(what, frame)| Case { what, frame })
    .collect();

    let before_b = lab.nodes[b].status();
    let before_a = lab.nodes[a].router_status();
    let sent_at = Instant::now();
    send_all(&lab, &cases);
    // Long enough for a priority 0 to have taken effect (Skew_Time 60 ms) many times over.
    std::thread::sleep(Duration::from_millis(10 * INTERVAL_MS));
    let after_b = lab.nodes[b].status();
    let after_a = lab.nodes[a].router_status();

    let got = delta(
        &drops(&after_b["routers"][0]),
        &drops(&before_b["routers"][0]),
    );
    let expected = counts(&[
        ("ttl", N),
        ("not_peer", N),
        ("checksum", N),
        ("version", N),
        ("type", N),
        ("length", N),
        ("address_count", N),
        ("interval", N),
        ("auth", 3 * N),
        ("replay", 2 * N),
    ]);
    println!("b counted, by reason: {got:?}");
    assert_eq!(
        got,
        expected,
        "b's fo_vrrp_dropped_total by reason (delta) differs.\n{}",
        lab.dump()
    );
    let got = delta(&unrouted(&after_b), &unrouted(&before_b));
    assert_eq!(
        got,
        counts(&[("vrid", N)]),
        "b's unrouted drops (router=\"\")"
    );
    assert_eq!(
        transitions_since(&lab, sent_at),
        Vec::<String>::new(),
        "no crafted advert may move either node.\n{}",
        lab.dump()
    );
    assert_eq!(lab.nodes[a].claim(), Claim::Master);
    assert_eq!(lab.nodes[b].claim(), Claim::Backup);
    assert_eq!(after_b["routers"][0]["state"], "backup");
    assert_eq!(after_a["state"], "master");
    assert_eq!(
        after_a["dropped"], before_a["dropped"],
        "a received none of it"
    );
    // b kept hearing a all along.
    let heard = after_b["routers"][0]["adverts_received"]
        .as_u64()
        .unwrap_or(0)
        - before_b["routers"][0]["adverts_received"]
            .as_u64()
            .unwrap_or(0);
    assert!(
        heard >= 5,
        "b heard only {heard} adverts of a in over a second"
    );

    // Rate-limited warnings; the key appears nowhere.
    let warns = lab.nodes[b].lines(|l| l.contains("unauthenticated advert ignored"));
    assert!(
        (1..=2).contains(&warns.len()),
        "expected 1 or 2 rate-limited warnings for {} auth/replay drops, saw {}:\n{warns:?}",
        5 * N,
        warns.len()
    );
    let text = format!("{}\n{after_b}\n{after_a}", lab.dump());
    assert!(
        !text.contains(KEY),
        "the key leaked into a log or the status"
    );
    let label = after_b["routers"][0]["auth"].as_str().unwrap_or("");
    assert!(
        label.starts_with("hmac-sha256 key ") && label.ends_with(&format!("{:08x}", key.id())),
        "status shows the key ID: {label}"
    );
}

#[test]
fn crafted_adverts_plain_multicast_are_dropped_by_reason() {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, None, None));
    let b = lab.add("b", router(100, None, None));
    let (a_addr, b_addr) = (lab.nodes[a].addr, lab.nodes[b].addr);
    start_pair(&mut lab, a, b);

    let client_mac = lab.client.mac("eth0");
    let b_mac = lab.nodes[b].mac;
    let stop = || v3_message(51, 0, 10, &[VIP], a_addr, VRRP_GROUP);
    let group = |ttl: u8, payload: &[u8]| {
        frame(
            VRRP_MULTICAST_MAC,
            client_mac,
            a_addr,
            VRRP_GROUP,
            ttl,
            payload,
        )
    };
    let mut cases = vec![
        Case {
            what: "TTL 1",
            frame: group(1, &stop()),
        },
        Case {
            what: "unicast in multicast mode",
            frame: frame(
                b_mac,
                client_mac,
                a_addr,
                b_addr,
                255,
                &v3_message(51, 0, 10, &[VIP], a_addr, b_addr),
            ),
        },
        Case {
            what: "unknown VRID",
            frame: group(255, &v3_message(99, 0, 10, &[VIP], a_addr, VRRP_GROUP)),
        },
        Case {
            what: "truncated",
            frame: group(255, &stop()[..6]),
        },
        Case {
            what: "one byte",
            frame: group(255, &stop()[..1]),
        },
    ];
    let mut bad = stop();
    bad[7] ^= 0xff;
    cases.push(Case {
        what: "bad checksum",
        frame: group(255, &bad),
    });
    let mut bad = stop();
    bad[0] = 0x21;
    cases.push(Case {
        what: "version 2",
        frame: group(255, &bad),
    });
    let mut bad = stop();
    bad[4] = 0;
    bad[5] = 0;
    fix_v3_checksum(&mut bad, a_addr, VRRP_GROUP);
    cases.push(Case {
        what: "interval 0",
        frame: group(255, &bad),
    });

    let before = lab.nodes[b].status();
    let sent_at = Instant::now();
    send_all(&lab, &cases);
    std::thread::sleep(Duration::from_millis(10 * INTERVAL_MS));
    let after = lab.nodes[b].status();
    let got = delta(&drops(&after["routers"][0]), &drops(&before["routers"][0]));
    println!("b counted, by reason: {got:?}");
    assert_eq!(
        got,
        counts(&[
            ("ttl", N),
            ("destination", N),
            ("length", N),
            ("checksum", N),
            ("version", N),
            ("interval", N),
        ]),
        "b's fo_vrrp_dropped_total by reason (delta).\n{}",
        lab.dump()
    );
    assert_eq!(
        delta(&unrouted(&after), &unrouted(&before)),
        counts(&[("vrid", N), ("length", N)]),
        "b's unrouted drops (router=\"\"): the unknown VRID and the 1-byte message"
    );
    assert_eq!(
        transitions_since(&lab, sent_at),
        Vec::<String>::new(),
        "no crafted advert may move either node.\n{}",
        lab.dump()
    );
    assert_eq!(after["routers"][0]["state"], "backup");
    assert_eq!(lab.nodes[a].router_status()["state"], "master");
}

#[test]
fn hmac_pair_fails_over_ignores_a_wrong_key_and_resolves_dual_master() {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, None, None));
    let b = lab.add("b", router(100, None, None));
    let c = lab.add("c", router(250, None, None));
    let keys: Vec<PathBuf> = [a, b]
        .iter()
        .map(|&i| write_key(lab.nodes[i].dir(), KEY))
        .collect();
    let kc = write_key(lab.nodes[c].dir(), WRONG_KEY);
    lab.nodes[a].set_kind(router(200, None, Some(&keys[0])));
    lab.nodes[b].set_kind(router(100, None, Some(&keys[1])));
    lab.nodes[c].set_kind(router(250, None, Some(&kc)));
    start_pair(&mut lab, a, b);
    let (a_mac, b_mac, c_mac) = (lab.nodes[a].mac, lab.nodes[b].mac, lab.nodes[c].mac);
    lab.wait_arp(a_mac, Duration::from_secs(5))
        .unwrap_or_else(|seen| panic!("expected a to answer ARP, saw {seen:?}"));

    // Failover with the same key: kill -9 a, b takes over.
    let killed = lab.nodes[a].kill9();
    let took = lab.expect_claim(
        b,
        Claim::Master,
        killed,
        Duration::from_secs(5),
        "b did not take over from the killed a",
    );
    println!(
        "HMAC pair: b took over {:?} after kill -9 of a",
        took - killed
    );
    lab.wait_arp(b_mac, Duration::from_secs(3))
        .unwrap_or_else(|seen| panic!("expected b to answer ARP after the takeover, saw {seen:?}"));

    // The restarted a starts a new sequence above its old one: b accepts it and a preempts.
    lab.expect_preempt_back(
        (a, b),
        (START_TIMEOUT, Duration::from_secs(5)),
        [
            "the restarted a did not preempt back",
            "b must yield to the restarted a (its adverts were accepted)",
        ],
    );
    let b_replays = drops(&lab.nodes[b].router_status()).get("replay").copied();
    assert_eq!(
        b_replays, None,
        "b must not see the restarted a as a replay"
    );
    lab.wait_arp(a_mac, Duration::from_secs(3))
        .unwrap_or_else(|seen| panic!("expected a to answer ARP again, saw {seen:?}"));

    // c (priority 250) with another key: nobody accepts anybody across the key boundary.
    let c_started = Instant::now();
    lab.nodes[c].start();
    lab.nodes[c]
        .wait_claim(Claim::Master, c_started, START_TIMEOUT)
        .unwrap_or_else(|| {
            panic!(
                "c (wrong key) hears nothing it can verify and must become master.\n{}",
                lab.dump()
            )
        });
    std::thread::sleep(Duration::from_millis(10 * INTERVAL_MS));
    assert_eq!(lab.nodes[a].claim(), Claim::Master, "a ignores c's adverts");
    assert_eq!(lab.nodes[b].claim(), Claim::Backup);
    for (i, name) in [(a, "a"), (b, "b"), (c, "c")] {
        let d = drops(&lab.nodes[i].router_status());
        assert!(
            d.get("auth").copied().unwrap_or(0) >= 5,
            "{name} must count the other key's adverts as auth drops, counted {d:?}"
        );
    }
    assert!(
        !lab.nodes[a]
            .lines(|l| l.contains("unauthenticated advert ignored") && l.contains("192.0.2.13"))
            .is_empty(),
        "a warns about c's adverts"
    );

    // c gets the right key by reload: both masters see each other; c (250) wins within an
    // interval or so, a (200) yields.
    std::fs::write(&kc, format!("{KEY}\n")).expect("rewrite c's key");
    let reloaded = Instant::now();
    let (ok, out) = lab.nodes[c].reload();
    assert!(ok, "reload with the right key: {out}");
    let yielded = lab.expect_claim(
        a,
        Claim::Backup,
        reloaded,
        Duration::from_secs(5),
        "a did not yield to c after the key fix",
    );
    let resolved = yielded - reloaded;
    println!(
        "dual master resolved {resolved:?} after c's reload (advert interval {INTERVAL_MS} ms)"
    );
    assert!(
        resolved <= Duration::from_millis(INTERVAL_MS) + Duration::from_millis(900),
        "both masters for {resolved:?} after the reload: the RFC rules settle it within one interval"
    );
    std::thread::sleep(Duration::from_millis(5 * INTERVAL_MS));
    assert_eq!(lab.nodes[c].claim(), Claim::Master);
    assert_eq!(lab.nodes[a].claim(), Claim::Backup);
    assert_eq!(lab.nodes[b].claim(), Claim::Backup);
    let (da, dc) = (
        lab.nodes[a].router_status()["dual_master"]
            .as_u64()
            .unwrap_or(0),
        lab.nodes[c].router_status()["dual_master"]
            .as_u64()
            .unwrap_or(0),
    );
    println!("dual master counted: a {da}, c {dc}");
    assert!(da + dc >= 1, "both masters at once must be counted");
    assert!(
        !lab.nodes[a].lines(|l| l.contains("dual master")).is_empty()
            || !lab.nodes[c].lines(|l| l.contains("dual master")).is_empty(),
        "both masters at once must be logged"
    );
    let ca = lab.nodes[c].router_status()["auth"].clone();
    assert_eq!(
        ca,
        lab.nodes[a].router_status()["auth"],
        "same key ID after the reload"
    );
    lab.wait_arp(c_mac, Duration::from_secs(3))
        .unwrap_or_else(|seen| {
            panic!(
                "expected only c ({}) to answer ARP, saw {:?}",
                fmt_mac(c_mac),
                seen.into_iter().map(fmt_mac).collect::<Vec<_>>()
            )
        });
}

#[test]
fn a_key_file_others_can_read_is_refused_at_check_and_reload() {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, None, None));
    let ka = write_key(lab.nodes[a].dir(), KEY);
    lab.nodes[a].set_kind(router(200, None, Some(&ka)));
    let started = Instant::now();
    lab.nodes[a].start();
    lab.expect_claim(
        a,
        Claim::Master,
        started,
        START_TIMEOUT,
        "a alone must become master",
    );
    std::fs::set_permissions(&ka, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let (ok, out) = lab.nodes[a].reload();
    assert!(
        !ok,
        "a reload with a world-readable key must be refused: {out}"
    );
    assert!(out.contains("chmod 600") && out.contains("0644"), "{out}");
    assert!(!out.contains(KEY), "the key leaked into: {out}");
    let check = std::process::Command::new(fo_tests::vrrp_lab::agent_binary())
        .args(["check", "--config"])
        .arg(lab.nodes[a].dir().join("fo.toml"))
        .output()
        .expect("run fo-agent check");
    let text = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "check must fail: {text}");
    assert!(
        text.contains("auth_key_file") && text.contains("chmod 600"),
        "{text}"
    );
    assert_eq!(
        lab.nodes[a].router_status()["state"],
        "master",
        "the running config stays"
    );

    // And `run` refuses to start with it, before touching anything.
    lab.nodes[a].kill9();
    let restarted = Instant::now();
    lab.nodes[a].start();
    let refused = wait_for(Duration::from_secs(30), || {
        lab.nodes[a]
            .lines(|l| l.contains("auth_key_file") && l.contains("chmod 600"))
            .into_iter()
            .find(|(t, _)| *t >= restarted)
    });
    assert!(
        refused.is_some(),
        "fo-agent run must refuse a world-readable key file.\n{}",
        lab.dump()
    );
    assert!(!lab.dump().contains(KEY), "the key leaked into the log");
}

/// 10,000 forged adverts per second for 3 s against a unicast pair at 100 ms: from a
/// non-peer, for an unknown VRID, with TTL 254 (priority 0, spoofed from the master), and
/// lower-priority adverts spoofed from the backup to the master. Nothing may move, the
/// backup must keep hearing the master, the master must not answer the flood with a flood,
/// and the VIP must keep being answered by the master's data plane.
#[test]
fn flood_of_adverts_disturbs_neither_timers_nor_the_data_plane() {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, None, None));
    let b = lab.add("b", router(100, None, None));
    let (a_addr, b_addr) = (lab.nodes[a].addr, lab.nodes[b].addr);
    lab.nodes[a].set_kind(router(200, Some(b_addr), None));
    lab.nodes[b].set_kind(router(100, Some(a_addr), None));
    start_pair(&mut lab, a, b);
    let (a_mac, b_mac) = (lab.nodes[a].mac, lab.nodes[b].mac);
    lab.wait_arp(a_mac, Duration::from_secs(5))
        .unwrap_or_else(|seen| panic!("expected a to answer ARP, saw {seen:?}"));

    let client_mac = lab.client.mac("eth0");
    let kinds: Vec<Vec<u8>> = vec![
        // From a non-peer, to the master.
        frame(
            a_mac,
            client_mac,
            CLIENT,
            a_addr,
            255,
            &v3_message(51, 250, 10, &[VIP], CLIENT, a_addr),
        ),
        // An unknown VRID, to the backup.
        frame(
            b_mac,
            client_mac,
            a_addr,
            b_addr,
            255,
            &v3_message(99, 0, 10, &[VIP], a_addr, b_addr),
        ),
        // Priority 0 "from the master" with TTL 254, to the backup.
        frame(
            b_mac,
            client_mac,
            a_addr,
            b_addr,
            254,
            &v3_message(51, 0, 10, &[VIP], a_addr, b_addr),
        ),
        // A lower priority "from the backup", to the master: valid, so the master hears a
        // second master 2,500 times a second.
        frame(
            a_mac,
            client_mac,
            b_addr,
            a_addr,
            255,
            &v3_message(51, 50, 10, &[VIP], b_addr, a_addr),
        ),
    ];
    const RATE: u64 = 10_000;
    const FLOOD: Duration = Duration::from_secs(3);

    let before_a = lab.nodes[a].status();
    let before_b = lab.nodes[b].status();
    let inj = Injector::open(&lab.client, "eth0");
    let flood_start = Instant::now();
    let flood = std::thread::spawn(move || {
        let mut sent = [0u64; 4];
        let mut failed = 0u64;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < FLOOD {
            // Keep to RATE: send what is due, then sleep a little.
            let due =
                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX) * RATE / 1_000_000;
            while n < due {
                let k = usize::try_from(n % 4).expect("small");
                match inj.send(&kinds[k]) {
                    Ok(()) => sent[k] += 1,
                    Err(_) => failed += 1,
                }
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        (sent, failed, start.elapsed())
    });
    // The data plane keeps answering for the VIP, from the master only.
    let mut arp_rounds = Vec::new();
    while flood_start.elapsed() < FLOOD {
        arp_rounds.push(lab.arp_answers());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (sent, failed, took) = flood.join().expect("flood thread");
    std::thread::sleep(Duration::from_millis(5 * INTERVAL_MS));
    let after_a = lab.nodes[a].status();
    let after_b = lab.nodes[b].status();
    let window = flood_start.elapsed();
    let total: u64 = sent.iter().sum();
    println!(
        "flood: {total} frames in {took:?} ({:.0}/s; {failed} refused by the sender's kernel), by kind {sent:?}",
        total as f64 / took.as_secs_f64()
    );

    let ra = |s: &serde_json::Value, k: &str| s["routers"][0][k].as_u64().unwrap_or(0);
    let da = delta(
        &drops(&after_a["routers"][0]),
        &drops(&before_a["routers"][0]),
    );
    let db = delta(
        &drops(&after_b["routers"][0]),
        &drops(&before_b["routers"][0]),
    );
    let ub = delta(&unrouted(&after_b), &unrouted(&before_b));
    let a_out = ra(&after_a, "adverts_sent") - ra(&before_a, "adverts_sent");
    let b_in = ra(&after_b, "adverts_received") - ra(&before_b, "adverts_received");
    let a_in = ra(&after_a, "adverts_received") - ra(&before_a, "adverts_received");
    let dual = ra(&after_a, "dual_master") - ra(&before_a, "dual_master");
    let expected_adverts = u64::try_from(window.as_millis()).unwrap_or(0) / INTERVAL_MS;
    println!(
        "over {window:?}: a sent {a_out} adverts (~{expected_adverts} due), b heard {b_in}; a accepted {a_in} forged lower adverts and counted {dual} as dual master; drops a {da:?}, b {db:?}, b unrouted {ub:?}, a unrouted {:?}",
        delta(&unrouted(&after_a), &unrouted(&before_a))
    );
    println!(
        "ARP for the VIP during the flood: {} rounds, answers {:?}",
        arp_rounds.len(),
        arp_rounds
            .iter()
            .map(|r| r.iter().map(|m| fmt_mac(*m)).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    assert_eq!(
        transitions_since(&lab, flood_start),
        Vec::<String>::new(),
        "the flood moved a node (a spurious transition; b's Master_Down_Timer must never fire).\n{}",
        lab.dump()
    );
    assert_eq!(after_a["routers"][0]["state"], "master");
    assert_eq!(after_b["routers"][0]["state"], "backup");
    assert!(
        b_in * 2 >= expected_adverts,
        "b heard {b_in} of ~{expected_adverts} adverts of a during the flood: the receive path starved"
    );
    assert!(
        a_out <= 2 * expected_adverts + 10,
        "a sent {a_out} adverts for ~{expected_adverts} due: it answered the flood with a flood"
    );
    assert!(
        dual > 0,
        "the forged second master must be counted as dual master"
    );
    // Every forged frame that reached a node is counted: under its reason, as "queue"
    // (router queue full) or as "overflow" (the kernel's socket buffer was full). Frames
    // lost on the way (a loaded machine's veth backlog) are not, so allow 10 %.
    let ua = delta(&unrouted(&after_a), &unrouted(&before_a));
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let counted_a = get(&da, "not_peer") + get(&da, "queue") + get(&ua, "overflow");
    let forged_a = sent[0] + sent[3];
    assert!(
        (counted_a + a_in) * 10 >= forged_a * 9,
        "a accounted for {} of the {forged_a} forged adverts sent to it ({da:?}, {ua:?}, {a_in} accepted)",
        counted_a + a_in
    );
    let counted_b = get(&db, "ttl") + get(&db, "queue") + get(&ub, "vrid") + get(&ub, "overflow");
    let forged_b = sent[1] + sent[2];
    assert!(
        counted_b * 10 >= forged_b * 9,
        "b accounted for {counted_b} of the {forged_b} forged adverts sent to it ({db:?}, {ub:?})"
    );
    // arping waits up to its 1 s deadline: a round or so per second.
    assert!(
        arp_rounds.len() >= 2 && arp_rounds.iter().all(|r| r == &vec![a_mac]),
        "only a must answer ARP for the VIP all through the flood, saw {arp_rounds:?}"
    );
    // The answers came from a's XDP program, and none from b's.
    let arp = |s: &serde_json::Value| s["xdp"]["arp_reply"].as_u64().unwrap_or(0);
    let (arp_a, arp_b) = (
        arp(&after_a) - arp(&before_a),
        arp(&after_b) - arp(&before_b),
    );
    println!("XDP ARP replies during the flood: a {arp_a}, b {arp_b}");
    assert!(
        arp_a >= u64::try_from(arp_rounds.len()).unwrap_or(0) && arp_b == 0,
        "a's data plane must answer every ARP round ({} rounds), b's none: a {arp_a}, b {arp_b}",
        arp_rounds.len()
    );
}
