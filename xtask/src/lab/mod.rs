//! A failover lab in network namespaces, for `cargo xtask demo` (and later `bench`):
//! one bridge, a client namespace for `fo-fleet` (with many source addresses), LB nodes
//! running the real `fo-agent`, and DSR backends prepared by `deploy/backend-dsr.sh`,
//! each running `fo-sink`. Addresses come from 192.0.2.0/24 (TEST-NET-1) and exist only
//! inside the namespaces.
//!
//! Everything is driven as processes (xtask depends on no product crate). Names carry
//! the prefix and xtask's pid (`fo-demo-<pid>-a`), so two runs cannot collide; every
//! namespace and pin directory is registered for teardown as it is made (see [`netns`]).

mod agent;
pub mod config;
pub use fo_lab::kit::netns;
pub mod plot;
pub use fo_lab::kit::proc;
pub mod run;
pub mod series;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::Value;

use agent::field_str;
pub use agent::{agent_command, log_fields, log_time, wait_running};
pub use netns::{Netns, Teardown};
pub use proc::Proc;

use crate::util::{cargo, exec, output_ok, root};

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the current directory,
/// as cargo reads it) or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => std::path::absolute(&d).unwrap_or_else(|_| PathBuf::from(d)),
        _ => root().join("target"),
    }
}

/// The product binaries the lab runs.
#[derive(Debug, Clone)]
pub struct Bins {
    pub agent: PathBuf,
    pub sink: PathBuf,
    pub fleet: PathBuf,
    /// `fo-natfill`: made-up NAT connections into an agent's pinned tables.
    pub natfill: PathBuf,
}

impl Bins {
    /// `cargo build --release -p fo-agent -p fo-lab` and fo-tests' `fo-natfill` (a lab
    /// tool that writes product map layouts, so it lives with the tests, not in fo-lab),
    /// then the binaries they made.
    pub fn build_release() -> anyhow::Result<Bins> {
        exec(cargo().args(["build", "--release", "-p", "fo-agent", "-p", "fo-lab"]))?;
        exec(cargo().args([
            "build",
            "--release",
            "-p",
            "fo-tests",
            "--bin",
            "fo-natfill",
        ]))?;
        let dir = target_dir().join("release");
        let bins = Bins {
            agent: dir.join("fo-agent"),
            sink: dir.join("fo-sink"),
            fleet: dir.join("fo-fleet"),
            natfill: dir.join("fo-natfill"),
        };
        for b in [&bins.agent, &bins.sink, &bins.fleet, &bins.natfill] {
            if !b.exists() {
                bail!("{} is missing after the build", b.display());
            }
        }
        Ok(bins)
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Name prefix; the lab's tag is `<prefix>-<pid>`.
    pub prefix: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub client: Ipv4Addr,
    /// Extra addresses on the client (for `fo-fleet --source`).
    pub client_sources: Vec<Ipv4Addr>,
    /// LB nodes: short name and address.
    pub nodes: Vec<(String, Ipv4Addr)>,
    pub backends: Vec<Ipv4Addr>,
}

impl Spec {
    /// Two nodes, `a` at 192.0.2.2 and `b` at 192.0.2.3, and the client at 192.0.2.10;
    /// no extra client sources, no backends.
    pub fn pair(prefix: &str, vip: Ipv4Addr, port: u16) -> Spec {
        Spec {
            prefix: prefix.into(),
            vip,
            port,
            client: Ipv4Addr::new(192, 0, 2, 10),
            client_sources: Vec::new(),
            nodes: vec![
                ("a".into(), Ipv4Addr::new(192, 0, 2, 2)),
                ("b".into(), Ipv4Addr::new(192, 0, 2, 3)),
            ],
            backends: Vec::new(),
        }
    }
}

/// 192.0.2.`i` for each `i` of `hosts` (the labs' one subnet).
pub fn test_net(hosts: impl IntoIterator<Item = u8>) -> Vec<Ipv4Addr> {
    hosts
        .into_iter()
        .map(|i| Ipv4Addr::new(192, 0, 2, i))
        .collect()
}

pub struct Node {
    pub name: String,
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub mac: String,
    /// Its port on the switch's bridge (in the switch namespace).
    pub port: String,
    /// The agent's `bpf_dir`.
    pub bpf_dir: PathBuf,
    pub config: PathBuf,
    /// Every run of the agent, the current one last (killed runs keep their log).
    pub runs: Vec<Proc>,
    /// Added to `fo-agent run` from the next start on (e.g. `--no-realtime`).
    pub agent_args: Vec<String>,
    dir: PathBuf,
}

pub struct Backend {
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub sink: Option<Proc>,
    /// Reports of every sink run on this backend.
    pub reports: Vec<PathBuf>,
}

pub struct Client {
    pub ns: Netns,
    pub addr: Ipv4Addr,
    pub sources: Vec<Ipv4Addr>,
}

pub struct Lab {
    // Field order is drop order: processes (in nodes, backends, fleet) die first, then
    // the teardown guard removes namespaces and pins.
    pub fleet: Option<Proc>,
    pub nodes: Vec<Node>,
    pub backends: Vec<Backend>,
    pub client: Client,
    pub switch: Netns,
    pub tag: String,
    /// Configs, logs and reports of this run.
    pub dir: PathBuf,
    pub bins: Bins,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// Namespaces added by [`Lab::add_station`].
    stations: usize,
    _teardown: Teardown,
}

/// Add a veth from the switch's bridge into `ns` as eth0 with `addr/24`.
fn plug(switch: &Netns, port: usize, ns: &Netns, addr: Ipv4Addr) -> anyhow::Result<()> {
    plug_port(switch, &format!("p{port}"), ns, addr)
}

/// As [`plug`], with the switch-side port named `port` (for namespaces a scenario adds
/// to a built lab).
pub fn plug_port(switch: &Netns, port: &str, ns: &Netns, addr: Ipv4Addr) -> anyhow::Result<()> {
    fo_lab::kit::segment::plug(switch, port, ns, "eth0", &format!("{addr}/24"))
}

impl Lab {
    /// Build the topology. `dir` receives configs, logs and reports.
    pub fn build(spec: &Spec, bins: Bins, dir: &Path) -> anyhow::Result<Lab> {
        netns::remove_stale(&spec.prefix);
        let teardown = Teardown::arm()?;
        let tag = format!("{}-{}", spec.prefix, std::process::id());
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let switch = Netns::create(&format!("{tag}-sw"))?;
        // A switch that forwards frames and nothing else (fo_lab::kit::segment).
        fo_lab::kit::segment::bridge_up(&switch)?;
        let mut port = 0;
        let mut next_port = || {
            port += 1;
            port - 1
        };

        let client_ns = Netns::create(&format!("{tag}-cl"))?;
        plug(&switch, next_port(), &client_ns, spec.client)?;
        if !spec.client_sources.is_empty() {
            let batch: String = spec
                .client_sources
                .iter()
                .map(|a| format!("address add {a}/32 dev eth0\n"))
                .collect();
            let file = dir.join("client-addresses.batch");
            std::fs::write(&file, batch).context("write the address batch")?;
            client_ns.sh(&format!("ip -batch {}", file.display()))?;
        }
        let client = Client {
            ns: client_ns,
            addr: spec.client,
            sources: spec.client_sources.clone(),
        };

        let mut nodes = Vec::new();
        for (name, addr) in &spec.nodes {
            let ns = Netns::create(&format!("{tag}-{name}"))?;
            let port = next_port();
            plug(&switch, port, &ns, *addr)?;
            let bpf_dir = PathBuf::from(format!("/sys/fs/bpf/{tag}-{name}"));
            netns::register_pin_dir(&bpf_dir);
            let mac = ns.mac("eth0")?;
            nodes.push(Node {
                name: name.clone(),
                ns,
                addr: *addr,
                mac,
                port: format!("p{port}"),
                bpf_dir,
                config: dir.join(format!("fo-{name}.toml")),
                runs: Vec::new(),
                agent_args: Vec::new(),
                dir: dir.to_owned(),
            });
        }

        let script = root().join("deploy/backend-dsr.sh");
        let mut backends = Vec::new();
        for (i, addr) in spec.backends.iter().enumerate() {
            let ns = Netns::create(&format!("{tag}-b{}", i + 1))?;
            plug(&switch, next_port(), &ns, *addr)?;
            ns.sh(&format!("sh {} {}", script.display(), spec.vip))?;
            backends.push(Backend {
                ns,
                addr: *addr,
                sink: None,
                reports: Vec::new(),
            });
        }

        Ok(Lab {
            fleet: None,
            nodes,
            backends,
            client,
            switch,
            tag,
            dir: dir.to_owned(),
            bins,
            vip: spec.vip,
            port: spec.port,
            stations: 0,
            _teardown: teardown,
        })
    }

    pub fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in the lab"))
    }

    /// Start a pair's agents in order: a, until it is master; then b, until it is backup
    /// (each wait up to `timeout`).
    pub fn start_pair(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let bins = self.bins.clone();
        for (name, state) in [("a", "master"), ("b", "backup")] {
            self.node(name).start(&bins)?;
            self.node(name).wait_state(state, timeout)?;
        }
        Ok(())
    }

    /// Start a fresh `fo-sink` on every backend (listening on VIP:port, which DSR
    /// backends hold on lo); returns once each one listens.
    pub fn start_sinks(&mut self) -> anyhow::Result<()> {
        let listen = format!("{}:{}", self.vip, self.port);
        self.start_sinks_on(|_| listen.clone())
    }

    /// As [`Lab::start_sinks`], each sink listening on `listen(backend)` (e.g.
    /// `0.0.0.0:1514` behind a proxy, where the backends do not hold the VIP).
    pub fn start_sinks_on(&mut self, listen: impl Fn(&Backend) -> String) -> anyhow::Result<()> {
        for i in 0..self.backends.len() {
            let l = listen(&self.backends[i]);
            self.start_sink(i, &l)?;
        }
        Ok(())
    }

    /// Start a fresh `fo-sink` on backend `i` listening on `listen`; returns once it
    /// listens.
    pub fn start_sink(&mut self, i: usize, listen: &str) -> anyhow::Result<()> {
        let b = &mut self.backends[i];
        let n = b.reports.len() + 1;
        let report = self.dir.join(format!("sink-b{}-{n}.json", i + 1));
        let mut cmd = b.ns.command(&self.bins.sink);
        cmd.arg("--listen").arg(listen).arg("--report").arg(&report);
        let mut p = Proc::spawn(
            &format!("fo-sink b{}", i + 1),
            cmd,
            &self.dir.join(format!("sink-b{}-{n}.log", i + 1)),
        )?;
        p.wait_for_line(Duration::from_secs(10), |l| l.contains("listening"))?;
        b.sink = Some(p);
        b.reports.push(report);
        Ok(())
    }

    /// SIGTERM the sink of backend `i` and wait until it wrote its report and exited.
    pub fn stop_sink(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(mut p) = self.backends[i].sink.take() else {
            bail!("backend {} has no sink running", i + 1)
        };
        p.signal("TERM")?;
        let status = p.wait(Duration::from_secs(15))?;
        if !status.success() {
            bail!("{} exited with {status}:\n{}", p.what, p.tail(20));
        }
        Ok(())
    }

    /// Plug one more namespace into the switch (an observer on the client segment).
    pub fn add_station(&mut self, name: &str, addr: Ipv4Addr) -> anyhow::Result<Netns> {
        let ns = Netns::create(&format!("{}-{name}", self.tag))?;
        let port = 100 + self.stations;
        self.stations += 1;
        plug(&self.switch, port, &ns, addr)?;
        Ok(ns)
    }

    /// SIGTERM every sink; each writes its report and exits. Returns every report path
    /// of every sink run so far.
    pub fn stop_sinks(&mut self) -> anyhow::Result<Vec<PathBuf>> {
        for b in &self.backends {
            if let Some(p) = &b.sink {
                p.signal("TERM")?;
            }
        }
        for b in &mut self.backends {
            if let Some(mut p) = b.sink.take() {
                let status = p.wait(Duration::from_secs(15))?;
                if !status.success() {
                    bail!("{} exited with {status}:\n{}", p.what, p.tail(20));
                }
            }
        }
        let reports: Vec<PathBuf> = self
            .backends
            .iter()
            .flat_map(|b| b.reports.iter().cloned())
            .collect();
        for r in &reports {
            if !r.exists() {
                bail!("sink report {} was not written", r.display());
            }
        }
        Ok(reports)
    }

    /// Each backend's newest sink report: the last run's, where the sinks restart per run.
    pub fn last_sink_reports(&self) -> Vec<PathBuf> {
        self.backends
            .iter()
            .filter_map(|b| b.reports.last().cloned())
            .collect()
    }

    /// Start `fo-fleet` in the client namespace against VIP:port with `args` (see
    /// [`fleet_args`]; e.g.
    /// `--agents 300 --rate 100/s --source …`); its report goes to `fleet.json`.
    pub fn start_fleet(&mut self, args: &[String]) -> anyhow::Result<PathBuf> {
        let report = self.dir.join("fleet.json");
        let mut cmd = self.client.ns.command(&self.bins.fleet);
        cmd.arg("--target")
            .arg(format!("{}:{}", self.vip, self.port))
            .args(args)
            .arg("--report")
            .arg(&report);
        self.fleet = Some(Proc::spawn("fo-fleet", cmd, &self.dir.join("fleet.log"))?);
        Ok(report)
    }

    /// SIGINT the fleet: it stops writing, drains its acks (up to its `--drain`), writes
    /// its report and exits.
    pub fn stop_fleet(&mut self, drain: Duration) -> anyhow::Result<PathBuf> {
        let Some(mut p) = self.fleet.take() else {
            bail!("the fleet is not running")
        };
        p.signal("INT")?;
        let status = p.wait(drain + Duration::from_secs(15))?;
        if !status.success() {
            bail!("fo-fleet exited with {status}:\n{}", p.tail(20));
        }
        let report = self.dir.join("fleet.json");
        if !report.exists() {
            bail!("the fleet report {} was not written", report.display());
        }
        Ok(report)
    }

    /// `fo-fleet merge FLEET SINK…`: the run's figures.
    pub fn merge(&self, fleet: &Path, sinks: &[PathBuf]) -> anyhow::Result<Value> {
        let mut cmd = Command::new(&self.bins.fleet);
        cmd.arg("merge").arg(fleet).args(sinks);
        let out = output_ok(&mut cmd, "fo-fleet merge")?;
        serde_json::from_slice(&out.stdout).context("parse the merged report")
    }

    /// The MAC the client's neighbour table has for the VIP (who the client sends to).
    pub fn client_vip_mac(&self) -> Option<String> {
        let s = self
            .client
            .ns
            .sh(&format!("ip neigh show {}", self.vip))
            .ok()?;
        let mut w = s.split_whitespace();
        w.by_ref().find(|w| *w == "lladdr")?;
        w.next().map(str::to_owned)
    }
}

/// One VRRP transition an agent logged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transition {
    pub node: String,
    #[serde(serialize_with = "ser_unix_ns", rename = "at_unix_ns")]
    pub at: SystemTime,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// From master-down detection to the VIPs served, as the agent measured it.
    pub takeover_ms: Option<f64>,
}

fn ser_unix_ns<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(unix_ns(*t))
}

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Node {
    /// Write the agent's config: the `[node]` table, then `body` (routers and services).
    pub fn write_config(&self, xdp_mode: &str, body: &str) -> anyhow::Result<()> {
        let text = format!(
            "[node]\ninterface = \"eth0\"\nxdp_mode = \"{xdp_mode}\"\nbpf_dir = \"{}\"\ncontrol_socket = \"{}\"\nstate_file = \"{}\"\n\n{body}",
            self.bpf_dir.display(),
            self.dir
                .join(format!("control-{}.sock", self.name))
                .display(),
            self.dir.join(format!("state-{}.json", self.name)).display(),
        );
        std::fs::write(&self.config, text)
            .with_context(|| format!("write {}", self.config.display()))
    }

    /// Start `fo-agent run` (JSON logs) and wait until it logs `running`; returns when
    /// it did.
    pub fn start(&mut self, bins: &Bins) -> anyhow::Result<SystemTime> {
        let mut p = self.spawn_agent(bins, &self.dir)?;
        let at = wait_running(&mut p, Duration::from_secs(30))?;
        self.runs.push(p);
        Ok(at)
    }

    /// Spawn its next run of the agent, logging to `agent-<name>-<run>.log` in `dir`.
    pub fn spawn_agent(&self, bins: &Bins, dir: &Path) -> anyhow::Result<Proc> {
        let n = self.runs.len() + 1;
        let mut cmd = agent_command(&self.ns, bins, &self.config);
        cmd.args(&self.agent_args);
        Proc::spawn(
            &format!("fo-agent {}", self.name),
            cmd,
            &dir.join(format!("agent-{}-{n}.log", self.name)),
        )
    }

    /// `fo-agent ARGS --socket <its control socket>` (demote, resume, ...); fails with
    /// the command's output when it is refused.
    pub fn ctl(&self, bins: &Bins, args: &[&str]) -> anyhow::Result<()> {
        let sock = self.dir.join(format!("control-{}.sock", self.name));
        let mut cmd = Command::new(&bins.agent);
        cmd.args(args).arg("--socket").arg(sock);
        output_ok(&mut cmd, &format!("fo-agent {args:?} on {}", self.name))?;
        Ok(())
    }

    /// SIGKILL the running agent (its pinned data plane stays). Returns when.
    pub fn kill9(&mut self) -> anyhow::Result<SystemTime> {
        if !self.running() {
            bail!("agent {} is not running", self.name);
        }
        let p = self.runs.last_mut().expect("running() saw a run");
        Ok(p.kill9())
    }

    /// Is the current run alive?
    pub fn running(&mut self) -> bool {
        self.runs.last_mut().is_some_and(|p| p.exited().is_none())
    }

    /// Every VRRP transition of every run, in order.
    pub fn transitions(&self) -> Vec<Transition> {
        let mut out = Vec::new();
        for p in &self.runs {
            for (at, line) in p.lock().iter() {
                let Some(f) = log_fields(line) else { continue };
                let msg = f.get("message").and_then(Value::as_str).unwrap_or("");
                if !msg.starts_with("VRRP transition") {
                    continue;
                }
                let takeover_ms = match f.get("takeover_ms") {
                    Some(Value::String(s)) => s.parse().ok(),
                    Some(v) => v.as_f64(),
                    None => None,
                };
                out.push(Transition {
                    node: self.name.clone(),
                    at: *at,
                    from: field_str(&f, "from"),
                    to: field_str(&f, "to"),
                    reason: field_str(&f, "reason"),
                    takeover_ms,
                });
            }
        }
        out
    }

    /// Wait until the current run logs a transition to `state`; fail with its log.
    pub fn wait_state(&mut self, state: &str, timeout: Duration) -> anyhow::Result<SystemTime> {
        self.wait_state_after(state, SystemTime::UNIX_EPOCH, timeout)
    }

    /// As [`Node::wait_state`], for a transition logged at or after `since`.
    pub fn wait_state_after(
        &mut self,
        state: &str,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        let Some(p) = self.runs.last_mut() else {
            bail!("agent {} was never started", self.name)
        };
        let (at, _) = p
            .wait_for_line_since(since, timeout, |l| {
                log_fields(l).is_some_and(|f| {
                    f.get("message")
                        .and_then(Value::as_str)
                        .is_some_and(|m| m.starts_with("VRRP transition"))
                        && f.get("to").and_then(Value::as_str) == Some(state)
                })
            })
            .with_context(|| format!("agent {} did not become {state}", self.name))?;
        Ok(at)
    }
}

/// `fo-fleet` arguments for `agents` agents at `rate_per_s` events/s each, spread over the
/// client's source addresses 192.0.2.`sources.0`-192.0.2.`sources.1`, draining acks for
/// `drain` on stop and keeping a timeline of `timeline_span`.
pub fn fleet_args(
    agents: u32,
    rate_per_s: u32,
    sources: (u8, u8),
    drain: std::time::Duration,
    timeline_span: &str,
) -> Vec<String> {
    vec![
        "--agents".into(),
        agents.to_string(),
        "--rate".into(),
        format!("{rate_per_s}/s"),
        "--source".into(),
        format!("192.0.2.{}-192.0.2.{}", sources.0, sources.1),
        "--drain".into(),
        format!("{}ms", drain.as_millis()),
        "--timeline-span".into(),
        timeline_span.into(),
    ]
}
