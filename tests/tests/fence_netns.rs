//! Split-brain protection with a witness, in network namespaces: two fo nodes (a:
//! priority 150, b: priority 100, unicast peers, VRRPv3 at 100 ms), a witness host
//! (192.0.2.1, answering ICMP echo like any gateway) and a client, on one bridge.
//!
//! A partition takes a node's port out of the bridge (`ip link set pN nomaster`): the
//! node keeps its carrier (no "link" fault hides the rule under test), and the detached
//! port is a vantage point on the node's side of the partition, from which ARP for the
//! VIP is probed.
//!
//! * master cut off from peer and witness: it fences (fault, "fenced: peer and witness
//!   unreachable") and stops answering ARP for the VIP within Master_Down_Interval plus
//!   a margin; the backup, which still reaches the witness, takes over; after healing
//!   the pair converges to one master.
//! * backup cut off: it never claims the VIP (fault instead of master), and the master,
//!   which lost only its peer, keeps serving.
//! * multicast (no `peers`): the backup learns its peer from the adverts it hears and
//!   fences when cut off the same way.
//!
//! Run: `cargo test -p fo-tests --test fence_netns -- --test-threads=1` (root).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fo_tests::netns::{Netns, wait_for};
use fo_tests::temp::TempDir;
use fo_tests::vrrp_lab::{Claim, Kind, Lab, arp_answers, fmt_mac, serial};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const WITNESS: &str = "192.0.2.1";
/// An address for the detached port, so that arping has a source there.
const PROBE: &str = "192.0.2.99/24";
const ADVERT: Duration = Duration::from_millis(100);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: a loaded 2-core machine delays log lines and probes.
const MARGIN: Duration = Duration::from_millis(500);
const FENCED: &str = "fenced: peer and witness unreachable";
const METRICS_PORT: u16 = 9469;

/// GET /metrics of node `i`, from inside its namespace.
fn metrics(lab: &Lab, i: usize) -> String {
    lab.nodes[i].ns.run(|| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT)).expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    })
}

/// RFC 5798 Master_Down_Interval of a v3 router (exact, keepalived's).
fn master_down(priority: u32) -> Duration {
    let interval = fo_vrrp::AdverInterval::from_duration(fo_vrrp::Version::V3, ADVERT)
        .expect("ADVERT is whole centiseconds");
    let priority = fo_vrrp::Priority(u8::try_from(priority).expect("a VRRP priority"));
    fo_vrrp::master_down_interval_exact(priority, interval)
}

/// `peer`: the unicast peer, or `None` for multicast.
fn router(priority: u32, peer: Option<Ipv4Addr>, fault_hook: &Path) -> Kind {
    let peers = peer.map_or(String::new(), |p| format!("peers = [\"{p}\"]\n"));
    Kind::Fo {
        router: format!(
            "name = \"web\"\nvrid = 51\npriority = {priority}\nadvert_interval = \"100ms\"\n{peers}witness = {{ address = \"{WITNESS}\" }}\nhooks = {{ fault = \"{}\" }}",
            fault_hook.display()
        ),
    }
}

/// A directory removed on drop: the fault hooks and what they write.
struct HookDir(TempDir);

impl HookDir {
    fn new() -> HookDir {
        HookDir(TempDir::new("fence"))
    }

    /// An executable fault hook for node `name` that appends a line to `fault-NAME.log`.
    fn fault_hook(&self, name: &str) -> PathBuf {
        let path = self.0.path().join(format!("fault-{name}.sh"));
        let log = self.0.path().join(format!("fault-{name}.log"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$FO_ROUTER $FO_OLD_STATE $FO_STATE\" >> {}\n",
                log.display()
            ),
        )
        .expect("write hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn fault_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.path().join(format!("fault-{name}.log"))).unwrap_or_default()
    }
}

/// One test's world, dropped in this order: the lab, its witness host, the fault hooks'
/// directory, then the lock that runs these tests one at a time.
struct Fenced {
    lab: Lab,
    _witness: Netns,
    hooks: HookDir,
    a: usize,
    b: usize,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// The lab, a master and b backup, with their witness host and fault hooks; with
/// `unicast`, each names the other as its peer.
fn lab(unicast: bool) -> Fenced {
    let serial = serial();
    let hooks = HookDir::new();
    let mut lab = Lab::new(VIP);
    let witness = Netns::new("wit");
    lab.segment.plug(&witness, "eth0", &format!("{WITNESS}/24"));
    // Nodes are .11 and .12 in order of adding.
    let [a, b] = [("a", 150, 12), ("b", 100, 11)].map(|(name, priority, peer)| {
        let peer = unicast.then(|| Ipv4Addr::new(192, 0, 2, peer));
        lab.add(name, router(priority, peer, &hooks.fault_hook(name)))
    });
    for n in &mut lab.nodes {
        n.node_extra = format!("metrics = \"127.0.0.1:{METRICS_PORT}\"");
    }
    lab.start_master_backup(a, b, START_TIMEOUT);
    lab.expect_arp(
        lab.nodes[a].mac,
        Duration::from_secs(5),
        &format!("expected only a to answer ARP for {VIP}"),
    );
    // Every probe has answered at least once.
    std::thread::sleep(Duration::from_secs(1));
    Fenced {
        lab,
        _witness: witness,
        hooks,
        a,
        b,
        _serial: serial,
    }
}

/// Take node `i`'s port out of the bridge and give it the probe address.
fn cut(lab: &Lab, i: usize) -> Instant {
    let port = &lab.nodes[i].port;
    let at = Instant::now();
    lab.segment.switch.sh(&format!(
        "ip link set {port} nomaster && ip addr add {PROBE} dev {port}"
    ));
    at
}

/// Undo [`cut`] of node `i`, then assert that it claims `claim` within 10 s: `what` is
/// the failure's message.
fn heal(lab: &Lab, i: usize, claim: Claim, what: &str) {
    let port = &lab.nodes[i].port;
    let at = Instant::now();
    lab.segment.switch.sh(&format!(
        "ip addr del {PROBE} dev {port} && ip link set {port} master br0"
    ));
    lab.expect_claim(i, claim, at, Duration::from_secs(10), what);
}

/// The router's entry of a node's `status --json`.
fn router_status(lab: &Lab, i: usize) -> serde_json::Value {
    let s = lab.nodes[i].try_status().unwrap_or_else(|| {
        panic!(
            "{} does not answer status.\n{}",
            lab.nodes[i].name,
            lab.dump()
        )
    });
    s["routers"][0].clone()
}

#[test]
fn master_cut_off_from_peer_and_witness_fences_itself() {
    let w = lab(true);
    let (lab, hooks, a, b) = (&w.lab, &w.hooks, w.a, w.b);
    let bound = master_down(100) + MARGIN;

    let t0 = cut(lab, a);
    let Some(fenced) = lab.nodes[a].wait_claim(Claim::Fault, t0, bound + Duration::from_secs(5))
    else {
        panic!(
            "expected a to fence itself (fault) after the cut.\n{}",
            lab.dump()
        );
    };
    // Answering ARP stops with the transition (the data plane's ownership flag is
    // cleared before it is logged); probe from a's side of the partition.
    let port = lab.nodes[a].port.clone();
    let mut quiet = None;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let at = Instant::now();
        seen = arp_answers(&lab.segment.switch, &port, VIP);
        if seen.is_empty() {
            quiet = Some(at);
            break;
        }
    }
    let quiet = quiet.unwrap_or_else(|| {
        panic!(
            "expected a to stop answering ARP for {VIP} once fenced; it still does: {:?}\n{}",
            seen.into_iter().map(fmt_mac).collect::<Vec<_>>(),
            lab.dump()
        )
    });
    println!(
        "master cut off: fault logged {:.0} ms after the cut, ARP silent by {:.0} ms (bound {:.0} ms = Master_Down_Interval {:.0} ms + margin)",
        (fenced - t0).as_secs_f64() * 1e3,
        (quiet - t0).as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
        master_down(100).as_secs_f64() * 1e3
    );
    assert!(
        fenced - t0 <= bound,
        "expected a to fence within {bound:?} of the cut, it took {:?}.\n{}",
        fenced - t0,
        lab.dump()
    );
    // The ARP probe that saw no answer started at `quiet`; an earlier one (if any) still
    // got an answer, so silence came between the two: at most one arping (1 s) late.
    assert!(
        quiet - t0 <= bound + Duration::from_secs(1),
        "expected a's ARP answers to stop within {bound:?} (+ one probe) of the cut, silent only after {:?}.\n{}",
        quiet - t0,
        lab.dump()
    );
    let fault_line = lab.nodes[a]
        .lines(|l| l.contains("VRRP transition") && l.contains("to=fault"))
        .pop()
        .map(|(_, l)| l)
        .unwrap_or_default();
    assert!(
        fault_line.contains(FENCED),
        "expected the fault transition to name the fence, got: {fault_line}"
    );
    let st = router_status(lab, a);
    assert_eq!(st["state"], "fault", "a's status: {st:#}");
    assert_eq!(st["owned"], false, "a's status: {st:#}");
    assert_eq!(st["fence"]["fenced"], true, "a's status: {st:#}");
    assert_eq!(
        st["fence"]["witness"]["reachable"], false,
        "a's status: {st:#}"
    );
    assert!(
        st["faults"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == FENCED)),
        "a's status: {st:#}"
    );

    let ran = wait_for(Duration::from_secs(5), || {
        let log = hooks.fault_log("a");
        log.contains("web master fault").then_some(log)
    });
    assert!(
        ran.is_some(),
        "expected a's fault hook to run on fencing (master -> fault), its log: {:?}\n{}",
        hooks.fault_log("a"),
        lab.dump()
    );
    let m = metrics(lab, a);
    for needle in [
        "fo_fenced{router=\"web\"} 1",
        "fo_witness_up{router=\"web\"} 0",
        "fo_peer_up{router=\"web\",peer=\"192.0.2.12\"} 0",
        "fo_fences_total{router=\"web\"} 1",
        "fo_vip_owned{router=\"web\"} 0",
    ] {
        assert!(m.contains(needle), "a's metrics lack `{needle}`:\n{m}");
    }

    // b lost its peer but reaches the witness: it takes over as usual.
    lab.expect_claim(
        b,
        Claim::Master,
        t0,
        bound + Duration::from_secs(5),
        "expected b to take over (it still reaches the witness)",
    );
    lab.expect_arp(
        lab.nodes[b].mac,
        Duration::from_secs(3),
        &format!("expected only b to answer ARP for {VIP} on the segment"),
    );
    let st = router_status(lab, b);
    assert_eq!(st["fence"]["fenced"], false, "b's status: {st:#}");
    assert_eq!(
        st["fence"]["witness"]["reachable"], true,
        "b's status: {st:#}"
    );

    let m = metrics(lab, b);
    for needle in [
        "fo_fenced{router=\"web\"} 0",
        "fo_witness_up{router=\"web\"} 1",
        "fo_peer_up{router=\"web\",peer=\"192.0.2.11\"} 0",
    ] {
        assert!(m.contains(needle), "b's metrics lack `{needle}`:\n{m}");
    }

    // Heal: a's fence lifts, it preempts back (priority 150), one master.
    heal(
        lab,
        a,
        Claim::Master,
        "expected a to rejoin and preempt back after healing",
    );
    assert!(
        wait_for(Duration::from_secs(10), || (lab.nodes[b].claim()
            == Claim::Backup)
            .then_some(()))
        .is_some(),
        "expected b to step back to backup after healing, it claims {:?}.\n{}",
        lab.nodes[b].claim(),
        lab.dump()
    );
    lab.expect_arp(
        lab.nodes[a].mac,
        Duration::from_secs(5),
        "expected the pair to converge on a answering ARP",
    );
    let st = router_status(lab, a);
    assert_eq!(
        st["fence"]["fenced"], false,
        "a's status after healing: {st:#}"
    );
    assert_eq!(
        st["fence"]["fences_total"], 1,
        "a's status after healing: {st:#}"
    );
}

#[test]
fn backup_cut_off_does_not_claim_and_master_keeps_serving() {
    let w = lab(true);
    let (lab, hooks, a, b) = (&w.lab, &w.hooks, w.a, w.b);

    let t0 = cut(lab, b);
    // Several Master_Down_Intervals: b would have claimed long before without the fence.
    std::thread::sleep(master_down(100) * 6);
    let window_end = Instant::now();
    assert_eq!(
        lab.nodes[b].claimed_since(Claim::Master, t0),
        None,
        "b reaches neither peer nor witness: it must never claim the VIP.\n{}",
        lab.dump()
    );
    assert_eq!(
        lab.nodes[b].claim(),
        Claim::Fault,
        "expected b to be fenced (fault).\n{}",
        lab.dump()
    );
    let st = router_status(lab, b);
    assert_eq!(st["fence"]["fenced"], true, "b's status: {st:#}");
    assert!(
        hooks.fault_log("b").contains("web backup fault"),
        "expected b's fault hook to run (backup -> fault), its log: {:?}",
        hooks.fault_log("b")
    );
    assert!(
        arp_answers(&lab.segment.switch, &lab.nodes[b].port, VIP).is_empty(),
        "b must not answer ARP for {VIP} from its side of the partition.\n{}",
        lab.dump()
    );

    // a lost only its peer; the witness answers: it keeps serving.
    for claim in [Claim::Fault, Claim::Backup] {
        assert_eq!(
            lab.nodes[a].claimed_since(claim, t0),
            None,
            "a lost only its peer; it must stay master (saw {claim:?}).\n{}",
            lab.dump()
        );
    }
    let st = router_status(lab, a);
    assert_eq!(st["state"], "master", "a's status: {st:#}");
    assert_eq!(st["fence"]["fenced"], false, "a's status: {st:#}");
    assert_eq!(
        st["fence"]["witness"]["reachable"], true,
        "a's status: {st:#}"
    );
    assert_eq!(
        st["fence"]["peers"][0]["reachable"], false,
        "a's status: {st:#}"
    );
    lab.expect_arp(
        lab.nodes[a].mac,
        Duration::from_secs(3),
        &format!("expected a alone to answer ARP for {VIP}"),
    );
    println!(
        "backup cut off for {:.0} ms: never claimed, fenced; the master kept serving",
        (window_end - t0).as_secs_f64() * 1e3
    );

    heal(
        lab,
        b,
        Claim::Backup,
        "expected b back to backup after healing",
    );
    assert_eq!(lab.nodes[a].claim(), Claim::Master, "{}", lab.dump());
    let st = router_status(lab, b);
    assert_eq!(
        st["fence"]["fenced"], false,
        "b's status after healing: {st:#}"
    );
}

#[test]
fn multicast_backup_learns_its_peer_from_adverts_and_fences_when_cut_off() {
    let w = lab(false);
    let (lab, a, b) = (&w.lab, w.a, w.b);
    // b has heard a's adverts: a is its peer, probed and reachable. a, the master, has
    // heard nobody (backups are silent): it counts on the witness alone.
    let st = router_status(lab, b);
    assert_eq!(
        st["fence"]["peers"][0]["address"], "192.0.2.11",
        "b's status: {st:#}"
    );
    assert_eq!(
        st["fence"]["peers"][0]["reachable"], true,
        "b's status: {st:#}"
    );
    // a lists b only if it ever heard b: when b's agent started first, b was master
    // for a moment and advertised before a preempted it.
    let st = router_status(lab, a);
    let heard_b = st["adverts_received"].as_u64().unwrap_or(0) > 0;
    let expected = if heard_b {
        serde_json::json!(["192.0.2.12"])
    } else {
        serde_json::json!([])
    };
    let peers: Vec<serde_json::Value> = st["fence"]["peers"]
        .as_array()
        .map(|v| v.iter().map(|p| p["address"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        serde_json::Value::Array(peers),
        expected,
        "a's status: {st:#}"
    );
    assert_eq!(st["fence"]["fenced"], false, "a's status: {st:#}");

    let t0 = cut(lab, b);
    std::thread::sleep(master_down(100) * 6);
    assert_eq!(
        lab.nodes[b].claimed_since(Claim::Master, t0),
        None,
        "b reaches neither its learnt peer nor the witness: it must never claim.\n{}",
        lab.dump()
    );
    assert_eq!(lab.nodes[b].claim(), Claim::Fault, "{}", lab.dump());
    assert_eq!(lab.nodes[a].claim(), Claim::Master, "{}", lab.dump());
    assert_eq!(
        lab.nodes[a].claimed_since(Claim::Fault, t0),
        None,
        "{}",
        lab.dump()
    );

    heal(
        lab,
        b,
        Claim::Backup,
        "expected b back to backup after healing",
    );
}
