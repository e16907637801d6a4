//! A two-node VRRP lab for the interop and failover tests: one L2 segment, a client, and
//! nodes running either the real `fo-agent` binary or keepalived, each in its own network
//! namespace, with 192.0.2.0/24 (TEST-NET-1) addresses that exist only inside them.
//!
//! Who is master is observed two ways:
//! * each process's log, read line by line by a thread that timestamps every line on
//!   arrival ([`Proc`]); a node's state at any instant is its last logged transition
//!   (fo: `VRRP transition … to=master`; keepalived: `Entering MASTER STATE`). A killed
//!   node claims nothing from the kill on. Sampling these timelines every 10 ms gives the
//!   split-brain check without loading the machine with probes.
//! * the data path: which MAC answers `arping` for the VIP from the client namespace.
//!
//! The `fo-agent` binary: `FO_AGENT_BIN` if set; otherwise `cargo build -p fo-agent` is run
//! once per test process into the target directory this test binary lives in (derived
//! from `current_exe()`, so `CARGO_TARGET_DIR` is respected) and
//! `<target>/<profile>/fo-agent` is used. A lib dependency does not build the binary, and
//! `CARGO_BIN_EXE_*` is only set for the binary's own crate.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fo_lab::locks::lock;

use crate::netns::{Netns, Segment, parse_mac, unique_tag};

mod binary;
mod proc;

pub use binary::agent_binary;
pub use proc::{Log, Proc};

/// One test at a time per process: the takeover bounds are about the protocol, not about
/// two labs competing for two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    lock(&LOCK)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not running, or no state logged yet.
    Nothing,
    Backup,
    Master,
    Fault,
}

/// What kind of VRRP speaker a node runs.
#[derive(Clone, Debug)]
pub enum Kind {
    /// fo-agent with this `[[router]]` body (name, vrid, priority, … without vips).
    Fo { router: String },
    /// keepalived with this `vrrp_instance VI { … }` body (without virtual_ipaddress).
    Keepalived { instance: String },
    /// fo-agent with a whole config (e.g. one `fo-agent import` printed); the lab puts
    /// its own `xdp_mode`, `bpf_dir`, `control_socket` and `state_file` into `[node]`.
    FoFile { toml: String },
    /// keepalived with a whole keepalived.conf.
    KeepalivedFile { conf: String },
}

pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
    pub vip: Ipv4Addr,
    /// The node's port on the segment's bridge (in `Segment::switch`).
    pub port: String,
    /// Extra lines for an fo node's `[node]` section (e.g. `control_group = "…"`).
    pub node_extra: String,
    kind: Kind,
    dir: PathBuf,
    bpf_dir: PathBuf,
    proc: Option<Proc>,
    /// Logs of earlier runs with the instant each run was killed.
    history: Vec<(Log, Option<Instant>)>,
}

impl Node {
    pub fn is_fo(&self) -> bool {
        matches!(self.kind, Kind::Fo { .. } | Kind::FoFile { .. })
    }

    /// The node's private directory (config, control socket; key files may go here).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Change what the node runs; takes effect at the next `start` or `reload`.
    pub fn set_kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// fo only: write the config again and `fo-agent reload`: (success, output).
    pub fn reload(&self) -> (bool, String) {
        self.write_config();
        self.ctl(&["reload"])
    }

    /// fo only: `fo-agent ARGS --socket …` against the node's agent: (success, output).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        fo_lab::kit::agent::ctl(&agent_binary(), &self.dir.join("control.sock"), args)
            .expect("run fo-agent")
    }

    /// fo only: `fo-agent status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        fo_lab::kit::agent::status(&agent_binary(), &self.dir.join("control.sock"))
            .unwrap_or_else(|e| panic!("node {}: {e:#}", self.name))
    }

    /// fo only: the status of the node's (only) router.
    pub fn router_status(&self) -> serde_json::Value {
        self.status()["routers"][0].clone()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join(if self.is_fo() {
            "fo.toml"
        } else {
            "keepalived.conf"
        })
    }

    fn write_config(&self) {
        let text = match &self.kind {
            Kind::Fo { router } => format!(
                "[node]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\nbpf_dir = \"{}\"\ncontrol_socket = \"{}\"\nstate_file = \"{}.state.json\"\n{}\n\n[[router]]\n{router}\nvips = [\"{}\"]\n",
                self.bpf_dir.display(),
                self.socket().display(),
                self.socket().display(),
                self.node_extra,
                self.vip
            ),
            Kind::FoFile { toml } => {
                let lab = format!(
                    "[node]\nxdp_mode = \"generic\"\nbpf_dir = \"{}\"\ncontrol_socket = \"{}\"\nstate_file = \"{}.state.json\"\n{}\n",
                    self.bpf_dir.display(),
                    self.socket().display(),
                    self.socket().display(),
                    self.node_extra
                );
                assert!(
                    toml.contains("[node]\n"),
                    "an fo config without [node]:\n{toml}"
                );
                toml.replacen("[node]\n", &lab, 1)
            }
            Kind::KeepalivedFile { conf } => conf.clone(),
            Kind::Keepalived { instance } => format!(
                "global_defs {{\n  router_id {name}\n  vrrp_garp_master_delay 0\n}}\nvrrp_instance VI {{\n  interface eth0\n{instance}\n  virtual_ipaddress {{\n    {vip}/32 dev eth0\n  }}\n}}\n",
                name = self.name,
                vip = self.vip
            ),
        };
        std::fs::write(self.config_path(), text).expect("write node config");
    }

    /// An fo node's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// `fo-agent status --json` of this fo node, parsed; `None` if it does not answer.
    pub fn try_status(&self) -> Option<serde_json::Value> {
        let (ok, text) = self.ctl(&["status", "--json"]);
        if !ok {
            return None;
        }
        serde_json::from_str(&text).ok()
    }

    /// Start (or restart) the node's VRRP speaker.
    pub fn start(&mut self) {
        self.write_config();
        let cmd = match &self.kind {
            Kind::Fo { .. } | Kind::FoFile { .. } => {
                let mut c = self.ns.command(&agent_binary().to_string_lossy());
                c.arg("run")
                    .arg("--config")
                    .arg(self.config_path())
                    .env("NO_COLOR", "1");
                c
            }
            Kind::Keepalived { .. } | Kind::KeepalivedFile { .. } => {
                // After a kill -9 the pid files are stale; keepalived refuses to start
                // ("daemon is already running") while the killed pid is not yet reaped.
                let _ = std::fs::remove_file(self.dir.join("keepalived.pid"));
                let _ = std::fs::remove_file(self.dir.join("vrrp.pid"));
                // stdbuf: keepalived's console log goes through stdio; line buffering makes
                // each line arrive when it is written.
                let mut c = self.ns.command("stdbuf");
                c.args(["-oL", "-eL", "/usr/sbin/keepalived", "-n", "-l", "-D", "-f"])
                    .arg(self.config_path())
                    .arg("-p")
                    .arg(self.dir.join("keepalived.pid"))
                    .arg("-r")
                    .arg(self.dir.join("vrrp.pid"));
                c
            }
        };
        self.proc = Some(Proc::spawn(&self.name, cmd));
    }

    /// SIGKILL every process of the node (keepalived has a parent and a VRRP child), at
    /// once. Returns the instant of the kill.
    pub fn kill9(&mut self) -> Instant {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.ns.name])
            .output()
            .expect("spawn ip netns pids");
        let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        // Child first: keepalived's VRRP child would otherwise get its parent-death signal
        // (SIGTERM) and shut down cleanly instead of dying.
        let mut args = pids.clone();
        args.reverse();
        let at = Instant::now();
        let status = Command::new("kill")
            .arg("-9")
            .args(&args)
            .status()
            .expect("spawn kill");
        assert!(status.success(), "kill -9 {args:?} failed");
        if let Some(mut p) = self.proc.take() {
            let _ = p.guard.kill_and_collect();
            self.history.push((p.log.clone(), Some(at)));
        }
        at
    }

    /// `ip link set eth0 down|up` in the node; returns the instant of the change.
    pub fn link(&self, up: bool) -> Instant {
        let at = Instant::now();
        self.ns.sh(&format!(
            "ip link set eth0 {}",
            if up { "up" } else { "down" }
        ));
        at
    }

    /// The node's logged state at `t` (its current run only, if it is running).
    pub fn claim_at(&self, t: Instant) -> Claim {
        let Some(p) = &self.proc else {
            return Claim::Nothing;
        };
        let log = lock(&p.log);
        let mut claim = Claim::Nothing;
        for (at, line) in log.iter() {
            if *at > t {
                break;
            }
            if let Some(c) = parse_claim(line) {
                claim = c;
            }
        }
        claim
    }

    pub fn claim(&self) -> Claim {
        self.claim_at(Instant::now())
    }

    /// The first instant after `since` at which the node logged `claim`.
    pub fn claimed_since(&self, claim: Claim, since: Instant) -> Option<Instant> {
        let p = self.proc.as_ref()?;
        let log = lock(&p.log);
        log.iter()
            .filter(|(at, _)| *at >= since)
            .find(|(_, l)| parse_claim(l) == Some(claim))
            .map(|(at, _)| *at)
    }

    /// Wait until the node logs `claim` (after `since`); returns when it did.
    pub fn wait_claim(&self, claim: Claim, since: Instant, timeout: Duration) -> Option<Instant> {
        crate::netns::wait_for(timeout, || self.claimed_since(claim, since))
    }

    /// Lines of the current run matching `pred`, with arrival instants.
    pub fn lines(&self, pred: impl Fn(&str) -> bool) -> Vec<(Instant, String)> {
        let Some(p) = &self.proc else {
            return Vec::new();
        };
        let log = lock(&p.log);
        log.iter().filter(|(_, l)| pred(l)).cloned().collect()
    }

    /// The whole log of every run, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (log, killed) in &self.history {
            let log = lock(log);
            for (_, l) in log.iter() {
                s.push_str(l);
                s.push('\n');
            }
            if killed.is_some() {
                s.push_str("---- killed ----\n");
            }
        }
        if let Some(p) = &self.proc {
            s.push_str(&p.text());
        }
        s
    }

    /// Does the node have the VIP on its interface (keepalived's view of mastership)?
    pub fn has_vip(&self) -> bool {
        let out = self.ns.try_sh("ip -4 -o addr show dev eth0");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip))
    }

    /// Remove the VIP from the interface: what a restarted keepalived would find left over
    /// after a kill -9 (the dead node's kernel would keep answering ARP for it).
    pub fn remove_stale_vip(&self) {
        let _ = self
            .ns
            .try_sh(&format!("ip addr del {}/32 dev eth0", self.vip));
    }
}

/// fo: `VRRP transition … to=master`; keepalived: `(VI) Entering MASTER STATE`.
pub fn parse_claim(line: &str) -> Option<Claim> {
    if line.contains("VRRP transition") {
        let to = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("to="))?;
        return Some(match to.trim_matches('"') {
            "master" => Claim::Master,
            "backup" => Claim::Backup,
            "fault" => Claim::Fault,
            _ => Claim::Nothing,
        });
    }
    if line.contains("Entering MASTER STATE") {
        Some(Claim::Master)
    } else if line.contains("Entering BACKUP STATE") {
        Some(Claim::Backup)
    } else if line.contains("Entering FAULT STATE") {
        Some(Claim::Fault)
    } else if line.contains("Stopping") || line.contains("Stopped") {
        Some(Claim::Nothing)
    } else {
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.guard.kill_and_collect();
        }
        if self.is_fo() {
            let _ = fo_agent::dataplane::remove_all_pins(&self.bpf_dir);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A segment with a client (192.0.2.50) and nodes at 192.0.2.11, .12, …
pub struct Lab {
    // Field order is drop order: nodes (processes, pins) before the namespaces' segment.
    pub nodes: Vec<Node>,
    pub client: Netns,
    pub segment: Segment,
    pub vip: Ipv4Addr,
}

impl Lab {
    pub fn new(vip: Ipv4Addr) -> Lab {
        crate::require_root();
        let segment = Segment::new();
        let client = Netns::new("cl");
        segment.plug(&client, "eth0", "192.0.2.50/24");
        Lab {
            nodes: Vec::new(),
            client,
            segment,
            vip,
        }
    }

    /// Add a node (not started). Returns its index.
    pub fn add(&mut self, role: &str, kind: Kind) -> usize {
        let i = self.nodes.len();
        let addr = Ipv4Addr::new(192, 0, 2, 11 + u8::try_from(i).expect("few nodes"));
        let ns = Netns::new(role);
        let port = self.segment.plug(&ns, "eth0", &format!("{addr}/24"));
        let mac = ns.mac("eth0");
        let tag = unique_tag();
        let dir = std::env::temp_dir().join(format!("fo-vrrp-{tag}-{role}"));
        std::fs::create_dir_all(&dir).expect("create the node's temp dir");
        self.nodes.push(Node {
            name: role.to_owned(),
            ns,
            addr,
            mac,
            vip: self.vip,
            port,
            node_extra: String::new(),
            kind,
            dir,
            bpf_dir: PathBuf::from(format!("/sys/fs/bpf/fo-test-{tag}-{role}")),
            proc: None,
            history: Vec::new(),
        });
        i
    }

    /// Start `b`, then `a`; panic (with every node's log) unless `a` claims master and
    /// `b` backup within `timeout`. `b` first, so that `a` joins a running router.
    pub fn start_master_backup(&mut self, a: usize, b: usize, timeout: Duration) {
        let start = Instant::now();
        self.nodes[b].start();
        self.nodes[a].start();
        assert!(
            self.nodes[a]
                .wait_claim(Claim::Master, start, timeout)
                .is_some(),
            "expected {} to become master.\n{}",
            self.nodes[a].name,
            self.dump()
        );
        assert!(
            crate::netns::wait_for(timeout, || (self.nodes[b].claim() == Claim::Backup)
                .then_some(()))
            .is_some(),
            "expected {} to run as backup, it claims {:?}.\n{}",
            self.nodes[b].name,
            self.nodes[b].claim(),
            self.dump()
        );
    }

    /// [`Node::wait_claim`] of node `i`, asserting it: `what` (a sentence without its
    /// final stop) and every node's log if the claim does not come.
    #[track_caller]
    pub fn expect_claim(
        &self,
        i: usize,
        claim: Claim,
        since: Instant,
        timeout: Duration,
        what: &str,
    ) -> Instant {
        let at = self.nodes[i].wait_claim(claim, since, timeout);
        assert!(at.is_some(), "{what}.\n{}", self.dump());
        at.expect("asserted")
    }

    /// Start node `a` again and assert that it takes the VIP back (preempt) within
    /// `take_back` and that `b` steps down to backup within `step_down`; `what` says,
    /// for each, what was expected. Returns when `a` was started.
    #[track_caller]
    pub fn expect_preempt_back(
        &mut self,
        (a, b): (usize, usize),
        (take_back, step_down): (Duration, Duration),
        what: [&str; 2],
    ) -> Instant {
        let restarted = Instant::now();
        self.nodes[a].start();
        self.expect_claim(a, Claim::Master, restarted, take_back, what[0]);
        self.expect_claim(b, Claim::Backup, restarted, step_down, what[1]);
        restarted
    }

    /// [`Lab::wait_arp`], asserting it: `what`, the MACs that did answer and every
    /// node's log unless `mac` alone answers within `timeout`.
    #[track_caller]
    pub fn expect_arp(&self, mac: [u8; 6], timeout: Duration, what: &str) {
        if let Err(seen) = self.wait_arp(mac, timeout) {
            panic!(
                "{what}, saw {:?}\n{}",
                seen.into_iter().map(fmt_mac).collect::<Vec<_>>(),
                self.dump()
            );
        }
    }

    /// The MACs that answer one ARP request for the VIP from the client.
    pub fn arp_answers(&self) -> Vec<[u8; 6]> {
        arp_answers(&self.client, "eth0", self.vip)
    }

    /// Wait until exactly `mac` answers ARP for the VIP.
    pub fn wait_arp(&self, mac: [u8; 6], timeout: Duration) -> Result<(), Vec<[u8; 6]>> {
        let mut last = Vec::new();
        match crate::netns::wait_for(timeout, || {
            last = self.arp_answers();
            (last == [mac]).then_some(())
        }) {
            Some(()) => Ok(()),
            None => Err(last),
        }
    }

    /// Sample every node's claim every 10 ms over `[from, to]`; returns the longest run of
    /// samples in which more than one node claimed master, and the number of samples in
    /// which each node claimed master.
    pub fn split_brain(&self, from: Instant, to: Instant) -> (Duration, Vec<usize>) {
        let step = Duration::from_millis(10);
        let mut t = from;
        let mut run = Duration::ZERO;
        let mut longest = Duration::ZERO;
        let mut masters = vec![0; self.nodes.len()];
        while t <= to {
            let claims: Vec<bool> = self
                .nodes
                .iter()
                .map(|n| n.claim_at(t) == Claim::Master)
                .collect();
            for (i, &m) in claims.iter().enumerate() {
                masters[i] += usize::from(m);
            }
            if claims.iter().filter(|&&m| m).count() > 1 {
                run += step;
                longest = longest.max(run);
            } else {
                run = Duration::ZERO;
            }
            t += step;
        }
        (longest, masters)
    }

    /// Logs of every node, for failure messages.
    pub fn dump(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("===== {} ({}) =====\n{}", n.name, n.addr, n.dump()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The MACs that answer one ARP request for `addr`, sent from `ns` out of `ifname`
/// (which needs an IPv4 address for arping's source).
pub fn arp_answers(ns: &Netns, ifname: &str, addr: Ipv4Addr) -> Vec<[u8; 6]> {
    let out = ns.try_sh(&format!("arping -c1 -w1 -I {ifname} {addr}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut macs = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == "from"
                && let Some(m) = words.next()
                && m.contains(':')
            {
                let m = parse_mac(m);
                if !macs.contains(&m) {
                    macs.push(m);
                }
            }
        }
    }
    macs
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// min / median / max of some durations, in ms, for the printed figures.
pub fn summary(ds: &[Duration]) -> String {
    let mut v: Vec<f64> = ds.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return "no samples".into();
    }
    format!(
        "min {:.1} ms / median {:.1} ms / max {:.1} ms (n={})",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1],
        v.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_parsed_from_both_logs() {
        let fo = "2026-11-22T00:54:24.205052Z  INFO vrrp{router=web}: fo_agent::vrrp::driver: VRRP transition: took over, VIPs served from=backup to=master reason=master_down takeover_ms=1.437";
        assert_eq!(parse_claim(fo), Some(Claim::Master));
        assert_eq!(
            parse_claim("… VRRP transition from=master to=backup reason=preempted"),
            Some(Claim::Backup)
        );
        assert_eq!(
            parse_claim("Sun Nov 22 00:55:44 2026: (VI) Entering BACKUP STATE"),
            Some(Claim::Backup)
        );
        assert_eq!(
            parse_claim("Sun Nov 22 00:55:42 2026: (VI) Entering MASTER STATE"),
            Some(Claim::Master)
        );
        assert_eq!(parse_claim("VRRP router starting vrid=51"), None);
    }
}
