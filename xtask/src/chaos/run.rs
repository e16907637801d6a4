//! The run: the lab brought up (the NAT service's key and checksums, the observer, both
//! fleets), the loop of faults until the duration is over and every kind came once, and
//! the teardown that hands the records to the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};

use super::faults::Schedule;
use super::state::Chaos;
use super::{
    AGENTS, DRAIN, NAT_FIRST_AGENT, NAT_PORT, OBSERVER, PORT, PROBE_INTERVAL, RATE_PER_S, SOURCES,
    VIP,
};
use crate::lab::Proc;

impl Chaos<'_> {
    pub(super) fn run(mut self, out: &Path) -> anyhow::Result<Vec<String>> {
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
}
