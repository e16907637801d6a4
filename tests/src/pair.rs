//! A two-node fo lab in network namespaces: a client running `fo-fleet`, two LB nodes
//! running `fo-agent` (VRRP), and DSR backends running `fo-sink`, on one bridge, all in
//! 192.0.2.0/24. Everything is torn down on drop, also when the test fails.
//!
//! With `PairOptions::nat`, the backends do not hold the VIP and sit on their own
//! subnet 10.1.0.0/24 behind a router namespace (192.0.2.1 / 10.1.0.1); the service
//! is `mode = "nat"` from VIP:1514 to backend:11514 with SNAT address 192.0.2.101.
//!
//! With `PairOptions::tunnel`, the backends sit behind the same router but hold the VIP
//! on lo, decapsulate with `fo-agent decap` and answer the client directly; the service
//! is `mode = "tunnel"` (IPIP).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{ChildGuard, Netns, Segment, unique_tag, wait_for};

pub const VIP: &str = "192.0.2.100";
pub const CLIENT: &str = "192.0.2.10";
/// The NAT lab's SNAT address (floating, like the VIP).
pub const SNAT: &str = "192.0.2.101";
/// The NAT lab's backend port (port translation from 1514).
pub const NAT_BACKEND_PORT: u16 = 11514;

/// A sync key of 32 bytes, mode 0600, removed on drop.
pub struct SyncKey(pub PathBuf);

impl SyncKey {
    pub fn new() -> SyncKey {
        use std::os::unix::fs::PermissionsExt as _;
        let p = std::env::temp_dir().join(format!("fo-nat-sync-{}.key", unique_tag()));
        std::fs::write(&p, b"0123456789abcdef0123456789abcdef").expect("key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        SyncKey(p)
    }
}

impl Default for SyncKey {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SyncKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One LB node: its namespace, config file, log file and running agent.
pub struct Node {
    pub name: &'static str,
    pub addr: &'static str,
    pub ns: Netns,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub metrics_port: u16,
    agent: Option<ChildGuard>,
    runs: usize,
    dir: PathBuf,
}

impl Node {
    /// A node in `ns` (already plugged in at `addr`), its files in `dir`, its data
    /// plane pinned under a name made of `pin_tag`. Not started.
    pub fn new(
        name: &'static str,
        addr: &'static str,
        ns: Netns,
        dir: &Path,
        pin_tag: &str,
        metrics_port: u16,
    ) -> Node {
        Node {
            name,
            addr,
            ns,
            config: dir.join(format!("{name}.toml")),
            socket: dir.join(format!("{name}.sock")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/fo-{pin_tag}")),
            metrics_port,
            agent: None,
            runs: 0,
            dir: dir.to_owned(),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-{}.log", self.name, self.runs))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Wait up to `timeout` for `needle` in this run's log (the router tasks log on
    /// their own, after "running" may already be there).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        crate::netns::wait_for(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Start the agent and wait for "running" in its log.
    pub fn start(&mut self) {
        self.start_with(|_| {});
    }

    /// As [`Node::start`], with `prepare` applied to the command first (limits, …).
    pub fn start_with(&mut self, prepare: impl FnOnce(&mut std::process::Command)) {
        self.runs += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut cmd = self.ns.command(crate::agent_bin().to_str().expect("utf-8"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env("FO_LOG", "info");
        prepare(&mut cmd);
        let mut guard = ChildGuard::spawn(&format!("fo-agent {}", self.name), cmd);
        if let Some(child) = guard.child.as_mut() {
            let mut err = child.stderr.take().expect("stderr");
            let mut log = log;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut err, &mut log);
            });
        }
        let path = self.log_path();
        let ready = wait_for(Duration::from_secs(30), || {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.contains(" running") {
                return Some(Ok(()));
            }
            guard
                .exited()
                .map(|s| Err(format!("agent {} exited ({s}):\n{log}", self.name)))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}"),
            None => panic!(
                "agent {} not running after 30 s:\n{}",
                self.name,
                self.log()
            ),
        }
        self.agent = Some(guard);
    }

    /// SIGKILL, then start again: a crash and the restart that follows it.
    pub fn restart(&mut self) {
        self.kill9();
        self.start();
    }

    /// SIGTERM, as systemd stops it: waits (10 s at most) for the agent to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut a = self.agent.take()?;
        a.signal(libc::SIGTERM);
        let st = wait_for(Duration::from_secs(10), || a.exited());
        let _ = a.kill_and_collect();
        st
    }

    /// SIGKILL: no clean-up runs, the data plane stays pinned.
    pub fn kill9(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.signal(libc::SIGKILL);
            let _ = a.kill_and_collect();
        }
    }

    /// `fo-agent ARGS --socket …` against this node's agent: (success, stdout+stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        fo_lab::kit::agent::ctl(&crate::agent_bin(), &self.socket, args).expect("run fo-agent")
    }

    /// `fo-agent status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        fo_lab::kit::agent::status(&crate::agent_bin(), &self.socket)
            .unwrap_or_else(|e| panic!("node {}: {e:#}", self.name))
    }

    /// State of router `router` per the status command.
    pub fn state(&self, router: &str) -> String {
        let s = self.status();
        s["routers"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == router))
            .and_then(|r| r["state"].as_str())
            .unwrap_or("?")
            .to_string()
    }

    /// Wait until router `router` is in `state` per the status command.
    pub fn wait_state(&self, router: &str, state: &str, timeout: Duration) -> bool {
        wait_for(timeout, || (self.state(router) == state).then_some(())).is_some()
    }

    /// GET /metrics from inside the node's namespace.
    pub fn metrics(&self) -> String {
        let port = self.metrics_port;
        self.ns.run(move || {
            use std::io::{Read as _, Write as _};
            let mut s =
                std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            body
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = fo_agent::dataplane::remove_all_pins(&self.pin_dir);
    }
}

/// A backend namespace with a sink on VIP:1514.
pub struct Backend {
    pub addr: String,
    pub ns: Netns,
    pub report: PathBuf,
    sink: Option<ChildGuard>,
    /// Tunnel lab: where its `fo-agent decap` is pinned (removed on drop).
    decap_dir: Option<PathBuf>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(dir) = self.decap_dir.take() {
            let _ = fo_agent::dataplane::decap::detach(&dir, "eth0");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

impl Backend {
    /// Backend `i` at `addr` in `ns`, its sink started on `listen` (not waited for),
    /// the sink's report going to `dir/sink-{i}.json`.
    pub fn with_sink(addr: String, ns: Netns, dir: &Path, i: u8, listen: &str) -> Backend {
        let report = dir.join(format!("sink-{i}.json"));
        let mut cmd = ns.command(crate::bin("fo-sink").to_str().expect("utf-8"));
        cmd.args(["--listen", listen, "--report"]).arg(&report);
        let sink = ChildGuard::spawn(&format!("fo-sink {i}"), cmd);
        Backend {
            addr,
            ns,
            report,
            sink: Some(sink),
            decap_dir: None,
        }
    }

    /// Stop the sink (SIGTERM: it writes its report) and read the report.
    pub fn stop(&mut self) -> fo_lab::report::SinkReport {
        if let Some(mut s) = self.sink.take() {
            s.signal(libc::SIGTERM);
            let _ = wait_for(Duration::from_secs(10), || s.exited());
            let _ = s.kill_and_collect();
        }
        let text = std::fs::read_to_string(&self.report)
            .unwrap_or_else(|e| panic!("sink report {}: {e}", self.report.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("sink report {}: {e}", self.report.display()))
    }

    /// SIGKILL the sink, as a crashed service: no report is written, and connections
    /// to its port are refused from now on.
    pub fn kill_sink(&mut self) {
        if let Some(mut s) = self.sink.take() {
            s.signal(libc::SIGKILL);
            let _ = s.kill_and_collect();
        }
    }

    /// (Re)start the sink on `listen` (e.g. "0.0.0.0:1514", so that a health check
    /// to the backend's own address reaches it as well as DSR traffic to the VIP),
    /// killing a running one first. Returns once it listens.
    pub fn start_sink(&mut self, listen: &str) {
        self.kill_sink();
        let mut cmd = self
            .ns
            .command(crate::bin("fo-sink").to_str().expect("utf-8"));
        cmd.args(["--listen", listen, "--report"]).arg(&self.report);
        let mut sink = ChildGuard::spawn(&format!("fo-sink {}", self.addr), cmd);
        let port = listen.rsplit(':').next().unwrap_or(listen);
        let ns = &self.ns;
        let up = wait_for(Duration::from_secs(10), || {
            if let Some(st) = sink.exited() {
                return Some(Err(format!("fo-sink on {listen} exited ({st})")));
            }
            let out = ns.try_sh(&format!("ss -Hltn 'sport = :{port}'"));
            (!out.stdout.is_empty()).then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}: {}", sink.kill_and_collect()),
            None => panic!(
                "fo-sink on {listen} in {} not listening after 10 s",
                ns.name
            ),
        }
        self.sink = Some(sink);
    }
}

pub struct Pair {
    // Drop order: processes first, namespaces after, the bridge last.
    pub fleet: Fleet,
    pub a: Node,
    pub b: Node,
    pub backends: Vec<Backend>,
    pub client: Netns,
    /// NAT lab: the router between the LB segment and the backends' subnet.
    pub router: Option<Netns>,
    pub backend_segment: Option<Segment>,
    pub segment: Segment,
    pub dir: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.fleet.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct PairOptions {
    pub advert_interval: &'static str,
    pub backends: u8,
    /// Extra TOML appended to both nodes' configs.
    pub extra: String,
    /// Backends behind a router, `mode = "nat"` (see the module docs).
    pub nat: bool,
    /// Backends behind a router, `mode = "tunnel"` (see the module docs).
    pub tunnel: bool,
    /// Extra TOML appended to the `[node]` table of both configs; `{peer}` stands for
    /// the other node's address.
    pub node_extra: String,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            advert_interval: "1s",
            backends: 3,
            extra: String::new(),
            nat: false,
            tunnel: false,
            node_extra: String::new(),
        }
    }
}

/// The config of node `name` (priority `prio`), backends `.21 ..= .2N`.
pub fn config(
    node: &Node,
    prio: u8,
    peer: &str,
    opts: &PairOptions,
    backends: &[String],
) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| {
            if opts.nat {
                format!("{{ address = \"{b}\", port = {NAT_BACKEND_PORT} }}")
            } else {
                format!("{{ address = \"{b}\" }}")
            }
        })
        .collect();
    let (snat, mode) = if opts.nat {
        (format!("snat = [\"{SNAT}\"]\n"), "mode = \"nat\"\n")
    } else if opts.tunnel {
        (String::new(), "mode = \"tunnel\"\n")
    } else {
        (String::new(), "")
    };
    format!(
        r#"{node}
flow_table_size = 65536
{node_extra}
[[router]]
name = "lab"
vrid = 51
priority = {prio}
advert_interval = "{adv}"
preempt = true
vips = ["{VIP}"]
{snat}peers = ["{peer}"]

[[service]]
name = "events"
vip = "{VIP}"
port = 1514
hash = "5-tuple"
{mode}backends = [{list}]
{extra}"#,
        node = crate::node_table(&node.pin_dir, &node.socket, node.metrics_port),
        adv = opts.advert_interval,
        list = list.join(", "),
        extra = opts.extra,
        node_extra = opts.node_extra.replace("{peer}", peer),
    )
}

impl Pair {
    pub fn new(opts: &PairOptions) -> Pair {
        let (tag, dir) = crate::temp::new_dir("pair");
        let segment = Segment::new();
        let client = Netns::new("cl");
        segment.plug(&client, "eth0", &format!("{CLIENT}/24"));
        let node = |name: &'static str, addr: &'static str, mport: u16| {
            let ns = Netns::new(name);
            segment.plug(&ns, "eth0", &format!("{addr}/24"));
            Node::new(name, addr, ns, &dir, &format!("pair-{tag}-{name}"), mport)
        };
        let a = node("a", "192.0.2.2", 9469);
        let b = node("b", "192.0.2.3", 9469);
        let mut backends = Vec::new();
        let (mut router, mut backend_segment) = (None, None);
        if opts.tunnel {
            // Full checksums from the client, as a physical NIC's frames have.
            client.sh("ethtool -K eth0 tx off >/dev/null");
            let rt = Netns::new("tcp-rt");
            segment.plug(&rt, "eth0", "192.0.2.1/24");
            let inner = Segment::new();
            inner.plug(&rt, "eth1", "10.1.0.1/24");
            // The backends answer from the VIP, which is on the router's eth0 side:
            // no reverse-path filtering.
            rt.sh(
                "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
                   net.ipv4.conf.eth0.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0",
            );
            for n in [&a, &b] {
                n.ns.sh("ip route add 10.1.0.0/24 via 192.0.2.1");
            }
            for i in 1..=opts.backends {
                backends.push(Self::tunnel_backend(&inner, &dir, &tag, i));
            }
            router = Some(rt);
            backend_segment = Some(inner);
        } else if opts.nat {
            // Checksums computed in software everywhere: the LB rewrites addresses and
            // ports with incremental updates, which need a complete checksum to start
            // from (a physical NIC's frames have one).
            client.sh("ethtool -K eth0 tx off >/dev/null");
            let rt = Netns::new("rt");
            segment.plug(&rt, "eth0", "192.0.2.1/24");
            let inner = Segment::new();
            inner.plug(&rt, "eth1", "10.1.0.1/24");
            rt.sh("sysctl -qw net.ipv4.ip_forward=1 && ethtool -K eth0 tx off >/dev/null && ethtool -K eth1 tx off >/dev/null");
            for n in [&a, &b] {
                n.ns.sh("ip route add 10.1.0.0/24 via 192.0.2.1");
            }
            for i in 1..=opts.backends {
                backends.push(Self::nat_backend(&inner, &dir, i));
            }
            router = Some(rt);
            backend_segment = Some(inner);
        } else {
            for i in 1..=opts.backends {
                backends.push(Self::backend(&segment, &dir, i));
            }
        }
        let addrs: Vec<String> = backends.iter().map(|b: &Backend| b.addr.clone()).collect();
        std::fs::write(&a.config, config(&a, 150, b.addr, opts, &addrs)).expect("config a");
        std::fs::write(&b.config, config(&b, 100, a.addr, opts, &addrs)).expect("config b");
        Pair {
            fleet: Fleet::new(&dir),
            a,
            b,
            backends,
            client,
            router,
            backend_segment,
            segment,
            dir,
        }
    }

    /// NAT backend `i`: 10.1.0.(20+i) behind the router, no VIP, a sink on
    /// 0.0.0.0:11514.
    pub fn nat_backend(segment: &Segment, dir: &Path, i: u8) -> Backend {
        let addr = format!("10.1.0.{}", 20 + i);
        let ns = Netns::new(&format!("b{i}"));
        segment.plug(&ns, "eth0", &format!("{addr}/24"));
        ns.sh("ip route add default via 10.1.0.1 && ethtool -K eth0 tx off >/dev/null");
        Backend::with_sink(addr, ns, dir, i, &format!("0.0.0.0:{NAT_BACKEND_PORT}"))
    }

    /// Tunnel backend `i`: 10.1.0.(20+i) behind the router, the VIP on lo,
    /// `fo-agent decap` on eth0, a sink on VIP:1514.
    pub fn tunnel_backend(segment: &Segment, dir: &Path, tag: &str, i: u8) -> Backend {
        let addr = format!("10.1.0.{}", 20 + i);
        let ns = Netns::new(&format!("tcp-b{i}"));
        segment.plug(&ns, "eth0", &format!("{addr}/24"));
        ns.sh("ip route add default via 10.1.0.1");
        let script = crate::workspace_root().join("deploy/backend-dsr.sh");
        ns.sh(&format!("sh {} {VIP} >/dev/null", script.display()));
        let decap_dir = PathBuf::from(format!("/sys/fs/bpf/fo-tcp-decap-{tag}-{i}"));
        ns.sh(&format!(
            "'{}' decap --interface eth0 --xdp-mode generic --gue-port 0 --bpf-dir '{}'",
            crate::agent_bin().display(),
            decap_dir.display()
        ));
        let mut b = Backend::with_sink(addr, ns, dir, i, &format!("{VIP}:1514"));
        b.decap_dir = Some(decap_dir);
        b
    }

    /// Backend `i`: 192.0.2.(20+i), VIP on lo, a sink on VIP:1514.
    pub fn backend(segment: &Segment, dir: &Path, i: u8) -> Backend {
        Self::backend_for(segment, dir, i, VIP)
    }

    /// Backend `i` for `vip`: 192.0.2.(20+i), `vip` on lo, a sink on vip:1514.
    pub fn backend_for(segment: &Segment, dir: &Path, i: u8, vip: &str) -> Backend {
        let addr = format!("192.0.2.{}", 20 + i);
        let ns = Netns::new(&format!("b{i}"));
        segment.plug(&ns, "eth0", &format!("{addr}/24"));
        let script = crate::workspace_root().join("deploy/backend-dsr.sh");
        ns.sh(&format!("sh {} {vip} >/dev/null", script.display()));
        Backend::with_sink(addr, ns, dir, i, &format!("{vip}:1514"))
    }

    /// Start `agents` long-lived connections from the client, one event each 10 ms.
    pub fn start_fleet(&mut self, agents: u32) {
        self.fleet
            .start(&self.client, &format!("{VIP}:1514"), agents);
    }

    /// Stop the fleet and every sink, and merge their reports ([`Fleet::finish`]).
    pub fn finish(&mut self) -> (fo_lab::report::Merged, Vec<fo_lab::report::SinkReport>) {
        self.fleet.finish(&mut self.backends)
    }

    /// The MACs that answer ARP for the VIP from the client (arping, 3 requests).
    pub fn arp_answerers(&self) -> Vec<[u8; 6]> {
        let out = self
            .client
            .try_sh(&format!("arping -c 3 -w 3 -I eth0 {VIP}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut macs: Vec<[u8; 6]> = text
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '(' || c == ')')
            .filter(|w| w.len() == 17 && w.matches(':').count() == 5)
            .map(crate::netns::parse_mac)
            .collect();
        macs.sort();
        macs.dedup();
        macs
    }

    /// Wait until node `who` is master of router "lab" per its status.
    pub fn wait_master(&self, who: &Node, timeout: Duration) -> bool {
        who.wait_state("lab", "master", timeout)
    }

    pub fn vip() -> IpAddr {
        VIP.parse().expect("VIP")
    }

    /// Asserts that A is master of router "lab" within 10 s (with its log if not).
    #[track_caller]
    pub fn assert_a_master(&self) {
        assert!(
            self.wait_master(&self.a, Duration::from_secs(10)),
            "A (priority 150) never became master:\n{}",
            self.a.log()
        );
    }

    /// Start both agents, then assert that A becomes master ([`Pair::assert_a_master`]).
    #[track_caller]
    pub fn start_a_master(&mut self) {
        self.a.start();
        self.b.start();
        self.assert_a_master();
    }

    /// A NAT lab whose nodes sync their connections with `key`, both started, A master.
    pub fn synced_nat(key: &SyncKey) -> Pair {
        let mut lab = Pair::new(&PairOptions {
            nat: true,
            node_extra: format!(
                "sync = {{ peers = [\"{{peer}}\"], key_file = \"{}\" }}",
                key.0.display()
            ),
            ..Default::default()
        });
        lab.start_a_master();
        lab
    }

    /// Asserts that B's connection table is current and its sync with A in step within
    /// 10 s (with B's sync status and log if not).
    #[track_caller]
    pub fn assert_b_in_sync(&self) {
        let in_sync = wait_for(Duration::from_secs(10), || {
            let s = &self.b.status()["sync"];
            (s["current"] == true && s["peers"][0]["state"] == "in_sync").then_some(())
        });
        assert!(
            in_sync.is_some(),
            "B's sync with A never got in sync: {}\n{}",
            self.b.status()["sync"],
            self.b.log()
        );
    }

    /// Wait (10 s at most) for A to be master, then put `n` idle established
    /// connections to the VIP straight into A's pinned NAT table.
    pub fn fill_nat_of_master_a(&self, n: u32) {
        self.assert_a_master();
        let IpAddr::V4(vip) = Self::vip() else {
            panic!("the lab's VIP is IPv4")
        };
        crate::pins::fill_nat(&self.a.pin_dir, vip.octets(), n);
    }
}

/// A client's `fo-fleet` run: long-lived connections started on demand, its report
/// written to `report` when it is stopped.
pub struct Fleet {
    proc: Option<ChildGuard>,
    pub report: PathBuf,
}

impl Fleet {
    /// Not started; its report goes to `dir/fleet.json`.
    pub fn new(dir: &Path) -> Fleet {
        Fleet {
            proc: None,
            report: dir.join("fleet.json"),
        }
    }

    /// Start `agents` long-lived connections from `client` to `target` (`ADDR:PORT`),
    /// one event each 10 ms.
    pub fn start(&mut self, client: &Netns, target: &str, agents: u32) {
        let mut cmd = client.command(crate::bin("fo-fleet").to_str().expect("utf-8"));
        cmd.args([
            "--target",
            target,
            "--agents",
            &agents.to_string(),
            "--interval",
            "10ms",
            "--quiet",
            "--report",
        ])
        .arg(&self.report);
        self.proc = Some(ChildGuard::spawn("fo-fleet", cmd));
    }

    /// Kill the fleet, if it runs, without a report.
    pub fn kill(&mut self) {
        self.proc.take();
    }

    /// Stop the fleet (SIGINT: it drains its acks and writes its report) and every
    /// backend's sink, and merge their reports.
    pub fn finish(
        &mut self,
        backends: &mut [Backend],
    ) -> (fo_lab::report::Merged, Vec<fo_lab::report::SinkReport>) {
        if let Some(mut f) = self.proc.take() {
            f.signal(libc::SIGINT);
            let _ = wait_for(Duration::from_secs(20), || f.exited());
            let _ = f.kill_and_collect();
        }
        let fleet = self.read_report();
        let sinks: Vec<_> = backends.iter_mut().map(Backend::stop).collect();
        (fo_lab::report::merge(&fleet, &sinks), sinks)
    }

    /// The report the fleet wrote when it was stopped.
    pub fn read_report(&self) -> fo_lab::report::FleetReport {
        serde_json::from_str(&std::fs::read_to_string(&self.report).expect("fleet report"))
            .expect("fleet report JSON")
    }
}
