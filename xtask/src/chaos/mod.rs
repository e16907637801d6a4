//! `cargo xtask chaos --duration D [--seed N]`: the lab of the demo (two fo agents,
//! VRRPv3 at 100 ms, three backends with fo-sink, a 1514/tcp DSR fleet) plus a NAT
//! service on the same VIP (1515/tcp to the backends' 1514, SNAT address `SNAT`,
//! connection-state sync between the nodes) with a fleet of its own, under random
//! faults, one at a time, while an observer on the client segment asks who has the VIP
//! every 20 ms. Faults: kill -9 of an agent (then restart), a link flap, a backend's sink
//! stopped (then started), a node partitioned at the switch, a reload with a changed but
//! valid config, a reload with a broken config (must be refused; the agent keeps running),
//! a node's gate failing (the file its `ready` check looks for removed, then put back).
//! The schedule ([`faults::Schedule`]) injects every kind once, in a shuffled order,
//! before it picks at random, and the run goes on past its duration until that first
//! round is done: every run sees every kind.
//!
//! Invariants, checked over the whole run (definitions in [`verdict`]):
//! (a) never two nodes answering for the VIP for longer than one advertisement interval;
//! (b) never nobody answering for longer than Master_Down_Interval + 50 ms while a node
//!     is healthy and eligible: its agent running (it logged `running`, was not killed
//!     since), its link up, not partitioned, its gate open (from the agent logging the
//!     check `up` again; no tracked checks are configured, so nothing else holds it back);
//! (c) no event lost by a fleet agent whose backend stayed up (agents seen by a sink
//!     that was stopped are left out; b1 is never stopped, so its agents always count),
//!     and no acknowledged event lost at all;
//! (d) the same for the NAT fleet, and more: no NAT connection of an agent whose backend
//!     stayed up reset or lost, whatever the fault (the sync gives the other node every
//!     connection, and a restarted agent's pinned tables keep them);
//! and every agent is still running at the end, every broken reload was refused, every
//! valid one applied, every kind of fault was injected, and the observer saw the run:
//! a run in which observer stalls (the machine too loaded to probe) hide more than
//! [`MAX_STALLED_SHARE`] of the time fails, since it proves too little.
//!
//! Report: `target/chaos/report.{md,json}`; logs in `target/chaos/run-<pid>/`. The
//! seed is printed; `--seed` replays the same schedule of faults.

mod faults;
pub mod verdict;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::lab::config::{XDP_MODE, tcp_service, vrrp_router};
use crate::lab::{self, Bins, Lab, Proc, Spec, test_net, unix_ns};
use crate::util::read_json;
use faults::{Fault, Kind, Rng, Schedule};
use verdict::Span;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The DSR service's port, and the port every backend's sink listens on.
const PORT: u16 = 1514;
/// The NAT service's port on the VIP (to the backends' [`PORT`]).
const NAT_PORT: u16 = 1515;
/// The port of the service a valid reload adds and removes.
const EXTRA_PORT: u16 = 1516;
/// The backends' hosts in 192.0.2.0/24, for every service.
const BACKENDS: [u8; 3] = [21, 22, 23];
/// The NAT service's SNAT address (floats with the VIP).
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// Agent ids of the NAT fleet start here (the DSR fleet's at 0).
const NAT_FIRST_AGENT: u32 = 1000;
/// A run whose observer stalls hide more of it than this fails.
pub const MAX_STALLED_SHARE: f64 = 0.10;
/// The observer: a station on the client segment that only asks who has the VIP.
const OBSERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const ADVERT: Duration = Duration::from_millis(100);
/// How often the gate's file check runs (it closes on two failures, opens on two passes).
const GATE_INTERVAL: Duration = Duration::from_millis(200);
const PRIORITIES: [(&str, u8); 2] = [("a", 150), ("b", 100)];
const AGENTS: u32 = 100;
const RATE_PER_S: u32 = 20;
const SOURCES: (u8, u8) = (129, 228);
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// How long to inject faults (e.g. 120s, 2m, 30m, 1h).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the fault schedule (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The config's duration grammar (`120s`, `2m`, `1m30s`, `1h`; a unit is required).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    fo_units::parse_duration(s).map_err(|e| e.to_string())
}

/// Master_Down_Interval of a VRRPv3 router (RFC 5798 §6.1): 3 x interval + skew, exact
/// (the bound a takeover is measured against; fo arms it truncated to centiseconds).
fn master_down(priority: u8) -> Duration {
    let interval = fo_vrrp::AdverInterval::from_duration(fo_vrrp::Version::V3, ADVERT)
        .expect("ADVERT is whole centiseconds");
    fo_vrrp::master_down_interval_exact(fo_vrrp::Priority(priority), interval)
}

/// The node's config. Its router is gated on check `ready`: the file `gate` exists.
/// Connections of the NAT service are synced to `peer` under the key in `key`.
fn config(priority: u8, peer: Ipv4Addr, extra_service: bool, gate: &Path, key: &Path) -> String {
    let backends = test_net(BACKENDS);
    let dsr = tcp_service(VIP, PORT, "dsr", "source-ip", &backends, None);
    let nat = tcp_service(VIP, NAT_PORT, "nat", "source-ip", &backends, Some(PORT));
    // `write_config` puts this after [node]: the sync line belongs there.
    let router = vrrp_router("chaos", 52, 3, priority, ADVERT.as_millis(), VIP, peer);
    let mut s = format!(
        r#"sync = {{ peers = ["{peer}"], key_file = "{}" }}

{router}snat = ["{SNAT}"]
gates = ["ready"]

[[check]]
name = "ready"
kind = "file"
path = "{}"
interval = "{}ms"
timeout = "150ms"
rise = 2
fall = 2

{dsr}
{nat}"#,
        key.display(),
        gate.display(),
        GATE_INTERVAL.as_millis()
    );
    if extra_service {
        // What a valid reload toggles: a second service on the VIP (no fleet traffic).
        s.push('\n');
        s.push_str(&tcp_service(
            VIP, EXTRA_PORT, "dsr", "5-tuple", &backends, None,
        ));
    }
    s
}

/// A config that must be refused: the priority out of range.
fn broken_config(priority: u8, peer: Ipv4Addr, gate: &Path, key: &Path) -> String {
    config(priority, peer, false, gate, key)
        .replace(&format!("priority = {priority}"), "priority = 300")
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let seed = opts
        .seed
        .unwrap_or_else(|| unix_ns(SystemTime::now()) % 1_000_000_007);
    println!(
        "chaos: seed {seed} (replay with `cargo xtask chaos --duration {}s --seed {seed}`)",
        opts.duration.as_secs()
    );
    let bins = Bins::build_release()?;
    let spec = Spec {
        prefix: "fo-chaos".into(),
        vip: VIP,
        port: PORT,
        client: Ipv4Addr::new(192, 0, 2, 10),
        client_sources: test_net(SOURCES.0..=SOURCES.1),
        nodes: PRIORITIES
            .iter()
            .enumerate()
            .map(|(i, (n, _))| ((*n).to_owned(), Ipv4Addr::new(192, 0, 2, 2 + i as u8)))
            .collect(),
        backends: test_net(BACKENDS),
    };
    let (mut lab, out) = lab::run::build("chaos", &spec, bins)?;
    let outcome = Chaos::new(&mut lab, seed, opts.duration).and_then(|c| c.run(&out));
    drop(lab);
    let problems = outcome?;
    if !problems.is_empty() {
        bail!(
            "chaos: {} invariant(s) broken (seed {seed}):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Per node: whether it is healthy and eligible now, and its windows so far.
#[derive(Debug, Default)]
struct Eligibility {
    since: Option<u64>,
    spans: Vec<Span>,
}

impl Eligibility {
    fn up(&mut self, at: SystemTime) {
        self.since.get_or_insert(unix_ns(at));
    }
    fn down(&mut self, at: SystemTime) {
        if let Some(from_ns) = self.since.take() {
            self.spans.push(Span {
                from_ns,
                to_ns: unix_ns(at).max(from_ns),
            });
        }
    }
}

struct Chaos<'l> {
    lab: &'l mut Lab,
    rng: Rng,
    duration: Duration,
    eligible: Vec<Eligibility>,
    /// Backends whose sink was stopped at some point.
    stopped_backends: Vec<bool>,
    /// Per node: is the extra service in its config now.
    extra: Vec<bool>,
    /// Per node: the file its gate checks.
    gates: Vec<PathBuf>,
    /// The sync's key file.
    key: PathBuf,
    faults: Vec<Fault>,
    /// The fleet of the NAT service (the lab's own fleet is the DSR one).
    nat_fleet: Option<Proc>,
    observer: Option<(Proc, Proc)>,
    observer_mac: String,
    problems: Vec<String>,
}

impl<'l> Chaos<'l> {
    fn new(lab: &'l mut Lab, seed: u64, duration: Duration) -> anyhow::Result<Chaos<'l>> {
        let n = lab.nodes.len();
        let b = lab.backends.len();
        let gates = lab
            .nodes
            .iter()
            .map(|n| n.config.with_file_name(format!("ready-{}", n.name)))
            .collect();
        let key = lab.dir.join("sync.key");
        Ok(Chaos {
            lab,
            rng: Rng::new(seed),
            duration,
            eligible: (0..n).map(|_| Eligibility::default()).collect(),
            stopped_backends: vec![false; b],
            extra: vec![false; n],
            gates,
            key,
            faults: Vec::new(),
            nat_fleet: None,
            observer: None,
            observer_mac: String::new(),
            problems: Vec::new(),
        })
    }

    fn peer(&self, i: usize) -> Ipv4Addr {
        self.lab.nodes[(i + 1) % self.lab.nodes.len()].addr
    }

    fn write_config(&mut self, i: usize) -> anyhow::Result<()> {
        let text = config(
            PRIORITIES[i].1,
            self.peer(i),
            self.extra[i],
            &self.gates[i],
            &self.key,
        );
        self.lab.nodes[i].write_config(XDP_MODE, &text)
    }

    fn open_gate(&self, i: usize) -> anyhow::Result<()> {
        std::fs::write(&self.gates[i], "ready\n")
            .with_context(|| format!("write {}", self.gates[i].display()))
    }

    fn run(mut self, out: &Path) -> anyhow::Result<Vec<String>> {
        let bins = self.lab.bins.clone();
        self.prepare_nat()?;
        for i in 0..self.lab.nodes.len() {
            self.open_gate(i)?;
            self.write_config(i)?;
        }
        let ready = self.lab.nodes[0].start(&bins)?;
        self.eligible[0].up(ready);
        self.lab.nodes[0].wait_state("master", Duration::from_secs(10))?;
        let ready = self.lab.nodes[1].start(&bins)?;
        self.eligible[1].up(ready);
        self.lab.nodes[1].wait_state("backup", Duration::from_secs(10))?;

        self.start_observer()?;
        // Every sink serves both fleets: the DSR one (to the VIP, held on the
        // backends' lo) and the NAT one (to the backend's own address).
        self.lab.start_sinks_on(|_| format!("0.0.0.0:{PORT}"))?;
        let span = format!("{}s", self.duration.as_secs() + 300);
        let args = crate::lab::fleet_args(AGENTS, RATE_PER_S, SOURCES, DRAIN, &span);
        self.lab.start_fleet(&args)?;
        self.start_nat_fleet(&args)?;
        let connected = format!("connected={AGENTS}/{AGENTS}");
        for (what, fleet) in [
            ("DSR", self.lab.fleet.as_mut()),
            ("NAT", self.nat_fleet.as_mut()),
        ] {
            fleet
                .context("fleet")?
                .wait_for_line(Duration::from_secs(15), |l| l.contains(&connected))
                .with_context(|| {
                    format!("the {what} fleet could not connect every agent through the VIP")
                })?;
        }
        eprintln!(
            "chaos: a master, b backup, {AGENTS} DSR and {AGENTS} NAT agents connected; injecting faults for {} s (and until every kind came once)",
            self.duration.as_secs()
        );

        let started = SystemTime::now();
        let deadline = Instant::now() + self.duration;
        let mut schedule = Schedule::new(&mut self.rng);
        while Instant::now() < deadline || !schedule.covered() {
            let kind = schedule.next(&mut self.rng);
            let fault = self.inject(kind, &bins)?;
            eprintln!(
                "chaos: t={:>6.1}s {}",
                fault
                    .started
                    .duration_since(started)
                    .unwrap_or_default()
                    .as_secs_f64(),
                fault.describe()
            );
            self.faults.push(fault);
            // Settle between faults: the pair converges again.
            let settle = self.rng.between_ms(500, 2500);
            std::thread::sleep(settle);
            self.check_agents_alive()?;
        }
        eprintln!("chaos: faults done; settling 3 s, then stopping the fleet");
        std::thread::sleep(Duration::from_secs(3));
        let fleet_report = self.lab.stop_fleet(DRAIN)?;
        let nat_fleet_report = self.stop_nat_fleet()?;
        let sink_reports = self.lab.stop_sinks()?;
        let ended = SystemTime::now();
        self.check_agents_alive()?;
        let (tcpdump, arping) = self.observer.take().context("observer")?;
        arping.signal("INT").ok();
        tcpdump.signal("INT").ok();
        std::thread::sleep(Duration::from_millis(300));
        for e in &mut self.eligible {
            e.down(ended);
        }
        self.verdict(
            out,
            [&fleet_report, &nat_fleet_report],
            &sink_reports,
            &tcpdump,
            started,
            ended,
        )
    }

    /// The sync's key; full checksums from the client and the backends (NAT rewrites
    /// need them: see docs/lab.md).
    fn prepare_nat(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&self.key, b"fo-chaos-sync-key-0123456789abcdef\n")
            .with_context(|| format!("write {}", self.key.display()))?;
        std::fs::set_permissions(&self.key, std::fs::Permissions::from_mode(0o600))?;
        self.lab.client.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
        for b in &self.lab.backends {
            b.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
        }
        Ok(())
    }

    /// `fo-fleet` in the client's namespace against the NAT service, agents from
    /// [`NAT_FIRST_AGENT`], the same sources and rate as the DSR fleet.
    fn start_nat_fleet(&mut self, args: &[String]) -> anyhow::Result<()> {
        let report = self.lab.dir.join("fleet-nat.json");
        let mut cmd = self.lab.client.ns.command(&self.lab.bins.fleet);
        cmd.arg("--target")
            .arg(format!("{VIP}:{NAT_PORT}"))
            .args(args)
            .arg("--first-agent")
            .arg(NAT_FIRST_AGENT.to_string())
            .arg("--report")
            .arg(&report);
        self.nat_fleet = Some(Proc::spawn(
            "fo-fleet (NAT)",
            cmd,
            &self.lab.dir.join("fleet-nat.log"),
        )?);
        Ok(())
    }

    /// As `Lab::stop_fleet`, for the NAT fleet: its report.
    fn stop_nat_fleet(&mut self) -> anyhow::Result<PathBuf> {
        let mut p = self
            .nat_fleet
            .take()
            .context("the NAT fleet is not running")?;
        p.signal("INT")?;
        let status = p.wait(DRAIN + Duration::from_secs(15))?;
        if !status.success() {
            bail!("fo-fleet (NAT) exited with {status}:\n{}", p.tail(20));
        }
        let report = self.lab.dir.join("fleet-nat.json");
        if !report.exists() {
            bail!(
                "the NAT fleet's report {} was not written",
                report.display()
            );
        }
        Ok(report)
    }

    /// tcpdump (kernel timestamps) and arping in the observer's namespace.
    fn start_observer(&mut self) -> anyhow::Result<()> {
        let ns = self.lab.add_station("ob", OBSERVER)?;
        self.observer_mac = ns.mac("eth0")?.to_lowercase();
        let mut cmd = ns.command("tcpdump");
        cmd.args([
            "-i",
            "eth0",
            "-n",
            "-e",
            "-tt",
            "-l",
            "--immediate-mode",
            "arp",
        ]);
        let mut tcpdump = Proc::spawn(
            "tcpdump (observer)",
            cmd,
            &self.lab.dir.join("observer-tcpdump.log"),
        )?;
        tcpdump.wait_for_line(Duration::from_secs(10), |l| l.contains("listening on"))?;
        let mut cmd = ns.command("arping");
        cmd.args(["-i", "eth0", "-q", "-W"])
            .arg(format!("{}", PROBE_INTERVAL.as_secs_f64()))
            .arg(VIP.to_string());
        let arping = Proc::spawn(
            "arping (observer)",
            cmd,
            &self.lab.dir.join("observer-arping.log"),
        )?;
        std::thread::sleep(Duration::from_millis(500));
        if !tcpdump.lock().iter().any(|(_, l)| l.contains("is-at")) {
            bail!(
                "the observer sees no ARP reply for {VIP}: tcpdump:\n{}\narping:\n{}",
                tcpdump.tail(10),
                arping.tail(10)
            );
        }
        self.observer = Some((tcpdump, arping));
        Ok(())
    }

    fn check_agents_alive(&mut self) -> anyhow::Result<()> {
        for n in &mut self.lab.nodes {
            if !n.running() {
                let tail = n.runs.last().map(|p| p.tail(30)).unwrap_or_default();
                bail!(
                    "agent {} died without being killed; its log ends:\n{tail}",
                    n.name
                );
            }
        }
        Ok(())
    }

    fn inject(&mut self, kind: Kind, bins: &Bins) -> anyhow::Result<Fault> {
        let nodes = self.lab.nodes.len();
        let mut f = Fault::new(kind);
        match kind {
            Kind::KillAgent => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                let at = self.lab.nodes[i].kill9()?;
                f.started = at;
                self.eligible[i].down(at);
                std::thread::sleep(self.rng.between_ms(200, 2000));
                let ready = self.lab.nodes[i].start(bins)?;
                self.eligible[i].up(ready);
                f.ended = ready;
            }
            Kind::LinkFlap => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                self.lab.nodes[i].ns.sh("ip link set eth0 down")?;
                std::thread::sleep(self.rng.between_ms(100, 1500));
                self.lab.nodes[i].ns.sh("ip link set eth0 up")?;
                f.ended = SystemTime::now();
                self.eligible[i].up(f.ended);
            }
            Kind::Partition => {
                let i = self.rng.below(nodes);
                let port = self.lab.nodes[i].port.clone();
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                // Out of the bridge, the port stays up (so does the node's link) but
                // forwards nothing either way.
                self.lab
                    .switch
                    .sh(&format!("ip link set {port} nomaster"))?;
                std::thread::sleep(self.rng.between_ms(500, 3000));
                self.lab
                    .switch
                    .sh(&format!("ip link set {port} master br0"))?;
                f.ended = SystemTime::now();
                self.eligible[i].up(f.ended);
            }
            Kind::StopBackend => {
                // Never b1: the agents it serves are the ones invariant (c) counts.
                let i = 1 + self.rng.below(self.lab.backends.len() - 1);
                f.target = format!("b{}", i + 1);
                f.started = SystemTime::now();
                self.stopped_backends[i] = true;
                self.lab.stop_sink(i)?;
                std::thread::sleep(self.rng.between_ms(500, 2000));
                self.lab.start_sink(i, &format!("0.0.0.0:{PORT}"))?;
                f.ended = SystemTime::now();
            }
            Kind::ReloadValid => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                self.extra[i] = !self.extra[i];
                self.write_config(i)?;
                f.started = SystemTime::now();
                let line = self.hup_and_wait(i, f.started)?;
                f.ended = SystemTime::now();
                if !line.contains("reloaded") {
                    self.problems.push(format!(
                        "a valid reload of {} was not applied: {line}",
                        f.target
                    ));
                    f.note = "NOT applied".into();
                } else {
                    f.note = format!(
                        "service {EXTRA_PORT} {}",
                        if self.extra[i] { "added" } else { "removed" }
                    );
                }
            }
            Kind::ReloadBroken => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                let text = broken_config(PRIORITIES[i].1, self.peer(i), &self.gates[i], &self.key);
                self.lab.nodes[i].write_config(XDP_MODE, &text)?;
                f.started = SystemTime::now();
                let line = self.hup_and_wait(i, f.started);
                // The good config goes back at once: a later restart reads it.
                self.write_config(i)?;
                let line = line?;
                f.ended = SystemTime::now();
                if line.contains("reload refused") {
                    f.note = "refused".into();
                } else {
                    self.problems.push(format!(
                        "a broken config was not refused by {}: {line}",
                        f.target
                    ));
                    f.note = "NOT refused".into();
                }
                if !self.lab.nodes[i].running() {
                    bail!("agent {} died on a broken config", f.target);
                }
            }
            Kind::GateFail => {
                let i = self.rng.below(nodes);
                f.target = self.lab.nodes[i].name.clone();
                f.started = SystemTime::now();
                self.eligible[i].down(f.started);
                std::fs::remove_file(&self.gates[i])
                    .with_context(|| format!("remove {}", self.gates[i].display()))?;
                let check_is = |want: &'static str| {
                    move |l: &str| {
                        crate::lab::log_fields(l).is_some_and(|f| {
                            f.get("message").and_then(Value::as_str) == Some(want)
                                && f.get("target")
                                    .and_then(Value::as_str)
                                    .is_some_and(|t| t.contains("ready"))
                        })
                    }
                };
                // The gate must have closed (two failed probes) before the file returns.
                let p = self.lab.nodes[i].runs.last_mut().context("no agent run")?;
                p.wait_for_line_since(f.started, Duration::from_secs(5), check_is("down"))?;
                std::thread::sleep(self.rng.between_ms(0, 1500));
                let back = SystemTime::now();
                self.open_gate(i)?;
                // Eligible again once the agent has seen the check pass.
                let p = self.lab.nodes[i].runs.last_mut().context("no agent run")?;
                let (open, _) =
                    p.wait_for_line_since(back, Duration::from_secs(5), check_is("up"))?;
                f.ended = open;
                self.eligible[i].up(open);
                f.note = format!(
                    "gate open again {} ms after the file",
                    open.duration_since(back).unwrap_or_default().as_millis()
                );
            }
        }
        Ok(f)
    }

    /// SIGHUP node `i`'s agent; the log line that answered it (reloaded or refused).
    fn hup_and_wait(&mut self, i: usize, since: SystemTime) -> anyhow::Result<String> {
        let node = &mut self.lab.nodes[i];
        let p = node.runs.last_mut().context("no agent run")?;
        p.signal("HUP")?;
        let (_, line) = p.wait_for_line_since(since, Duration::from_secs(5), |l| {
            l.contains("reloaded ") || l.contains("reload refused")
        })?;
        Ok(line)
    }

    fn verdict(
        &mut self,
        out: &Path,
        [fleet_report, nat_fleet_report]: [&Path; 2],
        sink_reports: &[PathBuf],
        tcpdump: &Proc,
        started: SystemTime,
        ended: SystemTime,
    ) -> anyhow::Result<Vec<String>> {
        let events: Vec<verdict::Arp> = tcpdump
            .lock()
            .iter()
            .filter_map(|(_, l)| verdict::parse_tcpdump(l))
            .collect();
        let (from, to) = (unix_ns(started), unix_ns(ended));
        let probes: Vec<verdict::Probe> = verdict::probes(
            &events,
            &OBSERVER.to_string(),
            &self.observer_mac,
            &VIP.to_string(),
        )
        .into_iter()
        .filter(|p| p.at_ns >= from && p.at_ns <= to)
        .collect();
        if probes.len() < 10 {
            bail!("the observer recorded only {} probes", probes.len());
        }
        let stalls = verdict::stalls(&probes);
        let stalled_ms: f64 = stalls
            .iter()
            .map(|s| (s.to_ns - s.from_ns) as f64 / 1e6)
            .fold(0.0, |a, b| a + b);
        let max_probe_gap_ms = probes
            .windows(2)
            .map(|w| (w[1].at_ns - w[0].at_ns) as f64 / 1e6)
            .fold(0.0, f64::max);
        let macs: BTreeMap<String, String> = self
            .lab
            .nodes
            .iter()
            .map(|n| (n.mac.to_lowercase(), n.name.clone()))
            .collect();
        let name_of = |m: &String| {
            macs.get(m)
                .cloned()
                .unwrap_or_else(|| format!("unknown {m}"))
        };
        let strangers: Vec<String> = probes
            .iter()
            .flat_map(|p| p.macs.iter())
            .filter(|m| !macs.contains_key(*m))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();

        let mdi = PRIORITIES
            .iter()
            .map(|(_, p)| master_down(*p))
            .max()
            .unwrap_or_default();
        // (a), but for a killed agent's lease: its pinned program answers until the lease
        // (Master_Down_Interval) runs out, and a peer that preempts (a restarted node of
        // higher priority) may claim meanwhile. Such an overlap is held to the lease.
        let kills: Vec<(String, u64)> = self
            .faults
            .iter()
            .filter(|f| f.kind == Kind::KillAgent)
            .filter_map(|f| {
                let node = self.lab.nodes.iter().find(|n| n.name == f.target)?;
                Some((node.mac.to_lowercase(), unix_ns(f.started)))
            })
            .collect();
        let (lease_ns, slack_ns) = (mdi.as_nanos() as u64, PROBE_INTERVAL.as_nanos() as u64);
        let (leased, overlaps): (Vec<verdict::Episode>, Vec<verdict::Episode>) =
            verdict::overlaps(&probes)
                .into_iter()
                .partition(|o| verdict::within_lease(o, &kills, lease_ns, slack_ns));
        let overlap_limit = ADVERT + PROBE_INTERVAL;
        let max_overlap = overlaps
            .iter()
            .map(verdict::Episode::ms)
            .fold(0.0, f64::max);
        let max_leased = leased.iter().map(verdict::Episode::ms).fold(0.0, f64::max);
        // (b)
        let spans: Vec<Span> = self
            .eligible
            .iter()
            .flat_map(|e| e.spans.iter().copied())
            .collect();
        let ownerless_limit = mdi + Duration::from_millis(50) + PROBE_INTERVAL;
        let ownerless = verdict::ownerless(&probes);
        let ownerless_eligible: Vec<(f64, &verdict::Episode)> = ownerless
            .iter()
            .map(|e| (verdict::eligible_within(e, &spans) as f64 / 1e6, e))
            .collect();
        let max_ownerless_eligible = ownerless_eligible.iter().map(|x| x.0).fold(0.0, f64::max);
        let max_ownerless = ownerless
            .iter()
            .map(verdict::Episode::ms)
            .fold(0.0, f64::max);
        // (c)
        let fleet = read_json(fleet_report)?;
        let mut sinks = Vec::new();
        for (bi, b) in self.lab.backends.iter().enumerate() {
            for r in &b.reports {
                sinks.push((read_json(r)?, self.stopped_backends[bi]));
            }
        }
        debug_assert_eq!(sinks.len(), sink_reports.len());
        let loss = verdict::loss(&fleet, &sinks);
        let merged = self.lab.merge(fleet_report, sink_reports)?;
        // (d)
        let nat_loss = verdict::loss(&read_json(nat_fleet_report)?, &sinks);
        let nat_merged = self.lab.merge(nat_fleet_report, sink_reports)?;
        let nat_ok = nat_loss.agents_counted > 0
            && nat_loss.events_lost == 0
            && nat_loss.acked_lost_all == 0
            && nat_loss.agents_broken == 0;
        // The observer.
        let run_s = ended
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64();
        let stalled_share = stalled_ms / (run_s * 1e3).max(1.0);

        let mut problems = std::mem::take(&mut self.problems);
        for o in overlaps
            .iter()
            .filter(|o| o.ms() > overlap_limit.as_secs_f64() * 1e3)
        {
            problems.push(format!(
                "(a) two nodes answered for {VIP} for {:.0} ms (limit {} ms) from t={:.2}s: {}",
                o.ms(),
                overlap_limit.as_millis(),
                (o.from_ns - from) as f64 / 1e9,
                o.macs.iter().map(name_of).collect::<Vec<_>>().join(", ")
            ));
        }
        for (ms, e) in ownerless_eligible
            .iter()
            .filter(|x| x.0 > ownerless_limit.as_secs_f64() * 1e3)
        {
            problems.push(format!(
                "(b) nobody answered for {VIP} for {ms:.0} ms while a node was healthy and eligible (limit {} ms), episode t={:.2}s-{:.2}s",
                ownerless_limit.as_millis(),
                (e.from_ns - from) as f64 / 1e9,
                (e.to_ns - from) as f64 / 1e9,
            ));
        }
        if loss.agents_counted == 0 {
            problems.push("(c) no agent had a backend that stayed up: nothing to count".into());
        }
        if loss.events_lost != 0 {
            problems.push(format!(
                "(c) {} events lost by {} agents whose backend stayed up",
                loss.events_lost, loss.agents_counted
            ));
        }
        if loss.acked_lost_all != 0 {
            problems.push(format!(
                "(c) {} acknowledged events lost",
                loss.acked_lost_all
            ));
        }
        if nat_loss.agents_counted == 0 {
            problems.push("(d) no NAT agent had a backend that stayed up: nothing to count".into());
        }
        if nat_loss.agents_broken != 0 {
            problems.push(format!(
                "(d) {} of {} NAT connections whose backend stayed up were reset or lost ({} resets); see fleet-nat.json",
                nat_loss.agents_broken, nat_loss.agents_counted, nat_loss.resets_counted
            ));
        }
        if nat_loss.events_lost != 0 {
            problems.push(format!(
                "(d) {} events lost by {} NAT agents whose backend stayed up",
                nat_loss.events_lost, nat_loss.agents_counted
            ));
        }
        if nat_loss.acked_lost_all != 0 {
            problems.push(format!(
                "(d) {} acknowledged events lost on NAT connections",
                nat_loss.acked_lost_all
            ));
        }
        if stalled_share > MAX_STALLED_SHARE {
            problems.push(format!(
                "observer stalls hid {:.0} ms of {run_s:.0} s ({:.1} %, limit {:.0} %): the machine was too loaded for the run to show anything; rerun it",
                stalled_ms,
                stalled_share * 100.0,
                MAX_STALLED_SHARE * 100.0
            ));
        }
        if !strangers.is_empty() {
            problems.push(format!(
                "ARP replies for {VIP} from unknown MACs: {strangers:?}"
            ));
        }

        let counts: BTreeMap<&str, u64> = Kind::ALL
            .iter()
            .map(|k| {
                let n = self.faults.iter().filter(|f| f.kind == *k).count() as u64;
                (k.name(), n)
            })
            .collect();
        for (k, _) in counts.iter().filter(|(_, n)| **n == 0) {
            problems.push(format!("fault kind never injected: {k}"));
        }
        let doc = json!({
            "seed": self.rng.seed(),
            "duration_s": self.duration.as_secs(),
            "run_s": run_s,
            "settings": {
                "advert_interval_ms": ADVERT.as_millis() as u64,
                "master_down_interval_ms": PRIORITIES.iter().map(|(n, p)| (n.to_string(), master_down(*p).as_secs_f64() * 1e3)).collect::<BTreeMap<_, _>>(),
                "probe_interval_ms": PROBE_INTERVAL.as_millis() as u64,
                "agents": AGENTS, "nat_agents": AGENTS, "rate_per_s": RATE_PER_S, "xdp_mode": XDP_MODE,
            },
            "faults": counts,
            "fault_log": self.faults.iter().map(|f| f.to_json(started)).collect::<Vec<_>>(),
            "invariants": {
                "a_overlap": {"limit_ms": overlap_limit.as_millis() as u64, "max_ms": max_overlap, "episodes": overlaps.len(), "ok": max_overlap <= overlap_limit.as_secs_f64() * 1e3,
                    "within_lease": {"episodes": leased.len(), "max_ms": max_leased, "lease_ms": mdi.as_millis() as u64}},
                "b_ownerless": {"limit_ms": ownerless_limit.as_millis() as u64, "max_with_eligible_node_ms": max_ownerless_eligible, "max_any_ms": max_ownerless, "episodes": ownerless.len(), "ok": max_ownerless_eligible <= ownerless_limit.as_secs_f64() * 1e3},
                "c_loss": {"ok": loss.agents_counted > 0 && loss.events_lost == 0 && loss.acked_lost_all == 0, "figures": loss},
                "d_nat": {"ok": nat_ok, "figures": nat_loss},
            },
            "observer": {"probes": probes.len(), "max_probe_gap_ms": max_probe_gap_ms, "stalls": stalls.len(), "stalled_ms": stalled_ms, "stalled_share": stalled_share, "max_stalled_share": MAX_STALLED_SHARE, "stall_threshold_ms": verdict::OBSERVER_STALL_NS / 1_000_000},
            "merged": merged,
            "merged_nat": nat_merged,
            "problems": problems,
            "logs": self.lab.dir.display().to_string(),
        });
        let md = markdown(&doc);
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&doc)?)?;
        std::fs::write(out.join("report.md"), &md)?;
        println!("\n{md}");
        println!("report: {}", out.join("report.md").display());
        Ok(problems)
    }
}

fn markdown(doc: &Value) -> String {
    let mut s = String::new();
    let inv = &doc["invariants"];
    let ok = |v: &Value| {
        if v["ok"].as_bool() == Some(true) {
            "ok"
        } else {
            "BROKEN"
        }
    };
    let _ = writeln!(
        s,
        "# fo chaos run\n\nseed {}, {:.0} s of faults, VRRPv3 advert {} ms, {} DSR and {} NAT (synced) agents x {}/s through the VIP, observer probe every {} ms\n",
        doc["seed"],
        doc["run_s"].as_f64().unwrap_or(0.0),
        doc["settings"]["advert_interval_ms"],
        doc["settings"]["agents"],
        doc["settings"]["nat_agents"],
        doc["settings"]["rate_per_s"],
        doc["settings"]["probe_interval_ms"]
    );
    let _ = writeln!(s, "## Faults injected\n\n| fault | count |\n|---|---|");
    for (k, v) in doc["faults"].as_object().into_iter().flatten() {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "\n## Invariants\n\n| invariant | limit | measured | result |\n|---|---|---|---|"
    );
    let a = &inv["a_overlap"];
    let _ = writeln!(
        s,
        "| (a) two nodes answering ARP for the VIP | {} ms | max {:.0} ms ({} episodes); within a killed agent's lease ({} ms): {} more, max {:.0} ms | {} |",
        a["limit_ms"],
        a["max_ms"].as_f64().unwrap_or(0.0),
        a["episodes"],
        a["within_lease"]["lease_ms"],
        a["within_lease"]["episodes"],
        a["within_lease"]["max_ms"].as_f64().unwrap_or(0.0),
        ok(a)
    );
    let b = &inv["b_ownerless"];
    let _ = writeln!(
        s,
        "| (b) nobody answering while a node is healthy and eligible | {} ms | max {:.0} ms (longest silence overall {:.0} ms, {} episodes) | {} |",
        b["limit_ms"],
        b["max_with_eligible_node_ms"].as_f64().unwrap_or(0.0),
        b["max_any_ms"].as_f64().unwrap_or(0.0),
        b["episodes"],
        ok(b)
    );
    let c = &inv["c_loss"];
    let f = &c["figures"];
    let _ = writeln!(
        s,
        "| (c) events lost on flows whose backend stayed up | 0 | {} lost ({} agents counted, {} left out; acked lost overall {}, lost overall {}, of {} sent) | {} |",
        f["events_lost"],
        f["agents_counted"],
        f["agents_excluded"],
        f["acked_lost_all"],
        f["events_lost_all"],
        f["events_sent"],
        ok(c)
    );
    let d = &inv["d_nat"];
    let f = &d["figures"];
    let _ = writeln!(
        s,
        "| (d) NAT connections (synced) whose backend stayed up: reset, re-established or lost events | 0 | {} broken ({} resets), {} events lost ({} agents counted, {} left out; acked lost overall {}, of {} sent) | {} |",
        f["agents_broken"],
        f["resets_counted"],
        f["events_lost"],
        f["agents_counted"],
        f["agents_excluded"],
        f["acked_lost_all"],
        f["events_sent"],
        ok(d)
    );
    let o = &doc["observer"];
    let _ = writeln!(
        s,
        "| observer stalls (time not observed) | {:.0} % | {:.1} % ({} stalls, {:.0} ms) | {} |",
        o["max_stalled_share"].as_f64().unwrap_or(0.0) * 100.0,
        o["stalled_share"].as_f64().unwrap_or(0.0) * 100.0,
        o["stalls"],
        o["stalled_ms"].as_f64().unwrap_or(0.0),
        if o["stalled_share"].as_f64().unwrap_or(1.0)
            <= o["max_stalled_share"].as_f64().unwrap_or(0.0)
        {
            "ok"
        } else {
            "BROKEN"
        }
    );
    let m = &doc["merged"];
    let _ = writeln!(
        s,
        "\nDSR fleet: {} resets, {} reconnects, max gap {:.0} ms; NAT fleet: {} resets, {} reconnects, max gap {:.0} ms; observer: {} probes, longest between two {:.0} ms, {} stalls (over {} ms between probes: not observed, {:.0} ms in all)",
        m["connections_reset"],
        m["reconnects"],
        m["max_gap_ms"].as_f64().unwrap_or(0.0),
        doc["merged_nat"]["connections_reset"],
        doc["merged_nat"]["reconnects"],
        doc["merged_nat"]["max_gap_ms"].as_f64().unwrap_or(0.0),
        doc["observer"]["probes"],
        doc["observer"]["max_probe_gap_ms"].as_f64().unwrap_or(0.0),
        doc["observer"]["stalls"],
        doc["observer"]["stall_threshold_ms"],
        doc["observer"]["stalled_ms"].as_f64().unwrap_or(0.0)
    );
    let problems = doc["problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        let _ = writeln!(s, "\nresult: every invariant held");
    } else {
        let _ = writeln!(s, "\nresult: BROKEN");
        for p in problems {
            let _ = writeln!(s, "- {}", p.as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(s, "\nlogs: {}", doc["logs"].as_str().unwrap_or_default());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_the_configs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            opts: Opts,
        }
        use clap::Parser as _;
        let parse =
            |d: &str| Cli::try_parse_from(["chaos", "--duration", d]).map(|c| c.opts.duration);
        assert_eq!(parse("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse("120s").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse("30m").ok(), Some(Duration::from_secs(1800)));
        let refused = parse("120").expect_err("a unit is required").to_string();
        assert!(refused.contains("has no unit"), "{refused}");
        assert!(parse("2 weeks").is_err());
    }

    #[test]
    fn master_down_interval_follows_rfc_5798() {
        // 3 x 100 ms + (256 - 150) / 256 x 100 ms.
        assert_eq!(master_down(150).as_micros(), 341_406);
        assert_eq!(master_down(100).as_micros(), 360_937);
    }

    #[test]
    fn the_broken_config_differs_only_in_priority() {
        let peer = Ipv4Addr::new(192, 0, 2, 3);
        let gate = Path::new("/run/fo-chaos/ready-a");
        let key = Path::new("/run/fo-chaos/sync.key");
        let b = broken_config(150, peer, gate, key);
        assert!(b.contains("priority = 300"));
        assert_eq!(
            b.replace("priority = 300", "priority = 150"),
            config(150, peer, false, gate, key)
        );
    }
}
