//! fo against the real keepalived 2.2.7 on one segment: (a) VRRPv3 multicast, advert
//! 100 ms; (b) VRRPv2 unicast (keepalived `unicast_peer`) with `auth_pass`, advert 1 s.
//! Each with fo at the higher priority and at the lower one.
//!
//! Per case, with both nodes preempting (the default of both):
//! 1. exactly one master is elected, the higher priority one: over a settled window
//!    (sampled every 10 ms) only it claims master, and only its MAC answers ARP for the
//!    VIP (keepalived's view is also checked with `ip addr`);
//! 2. kill -9 of the master: the other node takes over within Master_Down_Interval +
//!    margin (printed); only it answers ARP; the killed node, restarted, preempts back;
//! 3. `ip link set eth0 down` on the master: the same takeover bound; link up, and the
//!    master preempts back;
//! 4. after every settling, both never claim master for longer than one interval.
//!
//! keepalived's kill -9 leaves the VIP on its dead node's interface (its kernel would keep
//! answering ARP): the test removes it, as a keepalived restart would find it.
//!
//! Run: `cargo test -p fo-tests --test vrrp_interop -- --nocapture` (root).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use fo_tests::netns::wait_for;
use fo_tests::vrrp_lab::{Claim, Kind, Lab, fmt_mac, serial};

fn until(timeout: Duration, f: impl Fn() -> bool) -> Option<()> {
    wait_for(timeout, || f().then_some(()))
}

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The first start of an agent loads the XDP program: slow on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
struct Case {
    version: u8,
    interval: Duration,
    unicast: bool,
    auth: bool,
    fo_high: bool,
}

impl Case {
    /// The measured bound on top of Master_Down_Interval: what a loaded 2-core machine
    /// cannot break (the RFC's figure is the interval arithmetic alone).
    fn margin(&self) -> Duration {
        if self.interval >= Duration::from_secs(1) {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(250)
        }
    }

    /// Master_Down_Interval of a backup at `priority` (the exact value; keepalived's).
    fn master_down(&self, priority: u32) -> Duration {
        let version = if self.version == 2 {
            fo_vrrp::Version::V2
        } else {
            fo_vrrp::Version::V3
        };
        let interval = fo_vrrp::AdverInterval::from_duration(version, self.interval)
            .expect("the case's interval fits its version");
        let priority = fo_vrrp::Priority(u8::try_from(priority).expect("a VRRP priority"));
        fo_vrrp::master_down_interval_exact(priority, interval)
    }

    fn label(&self) -> String {
        format!(
            "v{} {} {} ms{}, fo {} priority",
            self.version,
            if self.unicast { "unicast" } else { "multicast" },
            self.interval.as_millis(),
            if self.auth { " auth_pass" } else { "" },
            if self.fo_high { "higher" } else { "lower" }
        )
    }
}

const FO_ADDR: &str = "192.0.2.11";
const KA_ADDR: &str = "192.0.2.12";
const PASS: &str = "s3cret";

fn fo_router(c: &Case, priority: u32) -> Kind {
    let mut r = format!(
        "name = \"web\"\nvrid = 51\npriority = {priority}\nversion = {}\nadvert_interval = \"{}ms\"",
        c.version,
        c.interval.as_millis()
    );
    if c.unicast {
        r.push_str(&format!("\npeers = [\"{KA_ADDR}\"]"));
    }
    if c.auth {
        r.push_str(&format!("\nauth_pass = \"{PASS}\""));
    }
    Kind::Fo { router: r }
}

fn keepalived_instance(c: &Case, priority: u32) -> Kind {
    let advert = if c.interval >= Duration::from_secs(1) {
        format!("{}", c.interval.as_secs())
    } else {
        format!("{}", c.interval.as_secs_f64())
    };
    let mut i = format!(
        "  state BACKUP\n  virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  version {}\n",
        c.version
    );
    if c.unicast {
        i.push_str(&format!(
            "  unicast_src_ip {KA_ADDR}\n  unicast_peer {{\n    {FO_ADDR}\n  }}\n"
        ));
    }
    if c.auth {
        i.push_str(&format!(
            "  authentication {{\n    auth_type PASS\n    auth_pass {PASS}\n  }}\n"
        ));
    }
    Kind::Keepalived { instance: i }
}

struct Run {
    case: Case,
    lab: Lab,
    fo: usize,
    ka: usize,
    /// Takeovers measured: (what, duration, bound).
    takeovers: Vec<(String, Duration, Duration)>,
}

impl Run {
    fn name(&self, i: usize) -> &'static str {
        if i == self.fo { "fo" } else { "keepalived" }
    }

    fn priority(&self, i: usize) -> u32 {
        let fo_high = self.case.fo_high;
        if (i == self.fo) == fo_high { 200 } else { 100 }
    }

    fn fail(&self, what: String) -> ! {
        panic!("[{}] {what}\n{}", self.case.label(), self.lab.dump())
    }

    /// `master` holds the VIP alone for a settled window: sampled claims, ARP answers,
    /// keepalived's interface.
    fn check_settled(&self, master: usize, other: usize) {
        let window = (self.case.interval * 5).max(Duration::from_millis(1500));
        let from = Instant::now();
        std::thread::sleep(window);
        let to = Instant::now();
        let (overlap, masters) = self.lab.split_brain(from, to);
        let samples = usize::try_from((to - from).as_millis() / 10).unwrap_or(usize::MAX) + 1;
        if masters[other] > 0 || masters[master] < samples {
            self.fail(format!(
                "expected only {} to claim master over {window:?}; samples claiming master: {}={}, {}={}",
                self.name(master),
                self.name(master),
                masters[master],
                self.name(other),
                masters[other]
            ));
        }
        if overlap > self.case.interval {
            self.fail(format!(
                "expected both never to claim master for longer than one interval ({:?}), saw {overlap:?}",
                self.case.interval
            ));
        }
        self.expect_arp(master);
        let ka = &self.lab.nodes[self.ka];
        if ka.has_vip() != (master == self.ka) {
            self.fail(format!(
                "expected keepalived {} the VIP on its interface, `ip addr` says otherwise",
                if master == self.ka {
                    "to hold"
                } else {
                    "not to hold"
                }
            ));
        }
    }

    fn expect_arp(&self, owner: usize) {
        let mac = self.lab.nodes[owner].mac;
        if let Err(seen) = self.lab.wait_arp(mac, Duration::from_secs(3)) {
            self.fail(format!(
                "expected only {} ({}) to answer ARP for {VIP}, saw {:?}",
                self.name(owner),
                fmt_mac(mac),
                seen.into_iter().map(fmt_mac).collect::<Vec<_>>()
            ));
        }
    }

    /// `survivor` must claim master within its Master_Down_Interval + margin of `failed_at`.
    fn expect_takeover(&mut self, survivor: usize, failed_at: Instant, how: &str) {
        let bound = self.case.master_down(self.priority(survivor)) + self.case.margin();
        let Some(at) = self.lab.nodes[survivor].wait_claim(
            Claim::Master,
            failed_at,
            bound + Duration::from_secs(5),
        ) else {
            self.fail(format!(
                "expected {} to take over after {how}, it did not",
                self.name(survivor)
            ));
        };
        let took = at - failed_at;
        println!(
            "[{}] {how}: {} took over in {:.1} ms (bound {:.1} ms)",
            self.case.label(),
            self.name(survivor),
            took.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3
        );
        self.takeovers
            .push((format!("{how} -> {}", self.name(survivor)), took, bound));
        if took > bound {
            self.fail(format!(
                "expected {} to take over within Master_Down_Interval + {:?} = {bound:?} after {how}, took {took:?}",
                self.name(survivor),
                self.case.margin()
            ));
        }
    }

    /// Node `i` claims `claim` after `since` within `timeout`, or the run fails with
    /// `expected {i's name} {what}`.
    fn expect_claim(&self, i: usize, claim: Claim, since: Instant, timeout: Duration, what: &str) {
        if self.lab.nodes[i]
            .wait_claim(claim, since, timeout)
            .is_none()
        {
            self.fail(format!("expected {} {what}", self.name(i)));
        }
    }

    /// The returning higher-priority node preempts (both preempt by default).
    fn expect_preempt_back(&self, master: usize, other: usize, since: Instant) {
        let take_back = "(higher priority, preempt) to take the VIP back";
        self.expect_claim(master, Claim::Master, since, START_TIMEOUT, take_back);
        let step_down = "to step down to backup";
        self.expect_claim(
            other,
            Claim::Backup,
            since,
            Duration::from_secs(5),
            step_down,
        );
    }
}

fn interop(case: Case) {
    let _serial = serial();
    let mut lab = Lab::new(VIP);
    let (fo_p, ka_p) = if case.fo_high { (200, 100) } else { (100, 200) };
    let fo = lab.add("fo", fo_router(&case, fo_p));
    let ka = lab.add("ka", keepalived_instance(&case, ka_p));
    assert_eq!(lab.nodes[fo].addr.to_string(), FO_ADDR);
    assert_eq!(lab.nodes[ka].addr.to_string(), KA_ADDR);
    let mut run = Run {
        case,
        lab,
        fo,
        ka,
        takeovers: Vec::new(),
    };
    let (master, other) = if case.fo_high { (fo, ka) } else { (ka, fo) };

    // 1. Election.
    let start = Instant::now();
    run.lab.nodes[ka].start();
    run.lab.nodes[fo].start();
    for i in [fo, ka] {
        // Running: it has logged a state (the first fo start loads the XDP program).
        let node = &run.lab.nodes[i];
        if until(START_TIMEOUT, || node.claim() != Claim::Nothing).is_none() {
            run.fail(format!("expected {} to start and log a state", run.name(i)));
        }
    }
    let elected = "(priority 200) to become master";
    run.expect_claim(master, Claim::Master, start, START_TIMEOUT, elected);
    // The lower one may have been master before the other started: wait for it to yield.
    let node = &run.lab.nodes[other];
    if until(Duration::from_secs(5), || node.claim() == Claim::Backup).is_none() {
        run.fail(format!(
            "expected {} to be backup under the higher priority master",
            run.name(other)
        ));
    }
    run.check_settled(master, other);

    // 2. kill -9 of the master, then its return.
    let killed = run.lab.nodes[master].kill9();
    if master == ka {
        run.lab.nodes[ka].remove_stale_vip();
    }
    run.expect_takeover(other, killed, "kill -9 of the master");
    run.expect_arp(other);
    let back = Instant::now();
    run.lab.nodes[master].start();
    run.expect_preempt_back(master, other, back);
    run.check_settled(master, other);

    // 3. Link down on the master, then up.
    let down = run.lab.nodes[master].link(false);
    run.expect_takeover(other, down, "link down on the master");
    run.expect_arp(other);
    let up = run.lab.nodes[master].link(true);
    run.expect_preempt_back(master, other, up);
    run.check_settled(master, other);

    for (what, took, bound) in &run.takeovers {
        println!(
            "[{}] takeover after {what}: {:.1} ms (bound {:.1} ms)",
            case.label(),
            took.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3
        );
    }
}

const V3_MULTICAST: Case = Case {
    version: 3,
    interval: Duration::from_millis(100),
    unicast: false,
    auth: false,
    fo_high: true,
};
const V2_UNICAST_AUTH: Case = Case {
    version: 2,
    interval: Duration::from_secs(1),
    unicast: true,
    auth: true,
    fo_high: true,
};

#[test]
fn v3_multicast_100ms_fo_higher() {
    interop(V3_MULTICAST);
}

#[test]
fn v3_multicast_100ms_fo_lower() {
    interop(Case {
        fo_high: false,
        ..V3_MULTICAST
    });
}

#[test]
fn v2_unicast_auth_1s_fo_higher() {
    interop(V2_UNICAST_AUTH);
}

#[test]
fn v2_unicast_auth_1s_fo_lower() {
    interop(Case {
        fo_high: false,
        ..V2_UNICAST_AUTH
    });
}
