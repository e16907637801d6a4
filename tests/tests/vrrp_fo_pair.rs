//! fo with fo: two agents on one segment, VRRPv3 multicast at 20 ms and at 100 ms. The
//! master (priority 200) is killed with kill -9 `REPS` times; each time the backup
//! (priority 100) must take over, the client must see only the backup's MAC for the VIP
//! (the dead agent's data plane stops answering when its lease runs out), and the
//! restarted master must preempt back. The takeover is printed as measured two ways:
//! from the kill to the survivor's transition log line, and the survivor's own figure
//! (Master_Down_Timer expiry to VIPs served).
//!
//! Run: `cargo test -p fo-tests --test vrrp_fo_pair -- --nocapture` (root).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fo_tests::vrrp_lab::{Claim, Kind, Lab, fmt_mac, serial, summary};

const REPS: usize = 5;
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// First start of an agent loads the XDP program: slow on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: this test measures, it does not benchmark.
const MARGIN: Duration = Duration::from_millis(500);

/// RFC 5798 Master_Down_Interval of a v3 router (exact, as keepalived computes it: the
/// larger of the two roundings).
fn master_down(interval: Duration, priority: u32) -> Duration {
    interval * 3 + interval * (256 - priority) / 256
}

fn router(priority: u32, interval: Duration) -> Kind {
    Kind::Fo {
        router: format!(
            "name = \"web\"\nvrid = 51\npriority = {priority}\nadvert_interval = \"{}ms\"",
            interval.as_millis()
        ),
    }
}

fn takeover_ms(line: &str) -> Option<Duration> {
    let v = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("takeover_ms="))?;
    v.parse::<f64>()
        .ok()
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
}

fn kill_master_repeatedly(interval: Duration) {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let a = lab.add("a", router(200, interval));
    let b = lab.add("b", router(100, interval));
    let (a_mac, b_mac) = (lab.nodes[a].mac, lab.nodes[b].mac);
    lab.start_master_backup(a, b, START_TIMEOUT);
    lab.expect_arp(
        a_mac,
        Duration::from_secs(5),
        &format!(
            "expected only a ({}) to answer ARP for {VIP}",
            fmt_mac(a_mac)
        ),
    );
    let bound = master_down(interval, 100) + MARGIN;
    let mut from_kill = Vec::new();
    let mut reported = Vec::new();
    let mut worst_overlap = Duration::ZERO;
    for rep in 0..REPS {
        let settled = Instant::now();
        std::thread::sleep(interval * 10);
        let killed = lab.nodes[a].kill9();
        let (overlap, _) = lab.split_brain(settled, killed);
        worst_overlap = worst_overlap.max(overlap);
        let took = lab.expect_claim(
            b,
            Claim::Master,
            killed,
            bound + Duration::from_secs(5),
            &format!("rep {rep}: expected b to take over after a was killed, it did not"),
        );
        from_kill.push(took - killed);
        if let Some(t) = lab.nodes[b]
            .lines(|l| l.contains("takeover_ms="))
            .last()
            .and_then(|(_, l)| takeover_ms(l))
        {
            reported.push(t);
        }
        lab.expect_arp(
            b_mac,
            Duration::from_secs(2),
            &format!(
                "rep {rep}: expected only b ({}) to answer ARP for {VIP} after the takeover",
                fmt_mac(b_mac)
            ),
        );
        lab.expect_preempt_back(
            (a, b),
            (START_TIMEOUT, Duration::from_secs(2)),
            [
                &format!(
                    "rep {rep}: expected the restarted a (priority 200, preempt) to take the VIP back"
                ),
                &format!("rep {rep}: expected b to step down to backup when a came back"),
            ],
        );
        lab.expect_arp(
            a_mac,
            Duration::from_secs(2),
            &format!(
                "rep {rep}: expected a ({}) to answer ARP again",
                fmt_mac(a_mac)
            ),
        );
    }
    println!(
        "fo/fo advert {} ms, kill -9 of the master, {REPS} reps: kill -> survivor master: {}; survivor's own detection -> VIP served: {}",
        interval.as_millis(),
        summary(&from_kill),
        summary(&reported)
    );
    let worst = from_kill.iter().max().copied().unwrap_or_default();
    assert!(
        worst <= bound,
        "expected every takeover within Master_Down_Interval + {MARGIN:?} = {bound:?}, the slowest took {worst:?} ({})",
        summary(&from_kill)
    );
    assert!(
        worst_overlap <= interval + Duration::from_millis(10),
        "expected both nodes never to claim master for longer than one interval ({interval:?}) while settled, saw {worst_overlap:?}\n{}",
        lab.dump()
    );
}

#[test]
fn fo_pair_failover_20ms() {
    kill_master_repeatedly(Duration::from_millis(20));
}

#[test]
fn fo_pair_failover_100ms() {
    kill_master_repeatedly(Duration::from_millis(100));
}
