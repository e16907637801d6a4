//! An active-active lab: a router namespace running BIRD 2 with ECMP over BGP (L4
//! hash), N fo nodes each with its own BIRD announcing the VIP, DSR backends running
//! `fo-sink`, and a client behind the router running `fo-fleet`.
//!
//! ```text
//!  client 10.1.0.2 ── 10.1.0.1 router (BIRD, AS 65000, ECMP) 192.0.2.1 ──┐ bridge
//!                       nodes 192.0.2.2.. (fo-agent + BIRD, AS 65001) ───┤
//!                       backends 192.0.2.21.. (VIP on lo, fo-sink) ───────┘
//! ```
//! The backends answer the client directly through the router (DSR). BFD runs at
//! 100 ms x 3 between each node and the router. Everything is torn down on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::{ChildGuard, Netns, Segment, wait_for};
use crate::pair::{Backend, Fleet, Node};

pub const VIP: &str = "203.0.113.10";
pub const CLIENT: &str = "10.1.0.2";
pub const ROUTER: &str = "192.0.2.1";

/// A BIRD daemon run in the foreground inside a namespace, with its own config,
/// control socket, pid file and log file.
pub struct Bird {
    pub name: String,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    pid: PathBuf,
    proc: Option<ChildGuard>,
}

impl Bird {
    pub fn new(dir: &Path, name: &str, config: &str) -> Bird {
        let log = dir.join(format!("bird-{name}.log"));
        let path = dir.join(format!("bird-{name}.conf"));
        std::fs::write(&path, format!("log \"{}\" all;\n{config}", log.display()))
            .expect("bird config");
        Bird {
            name: name.to_string(),
            config: path,
            socket: dir.join(format!("bird-{name}.ctl")),
            log,
            pid: dir.join(format!("bird-{name}.pid")),
            proc: None,
        }
    }

    /// Start it in `ns` and wait until it answers on its control socket.
    pub fn start(&mut self, ns: &Netns) {
        let mut cmd = ns.command("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&self.config)
            .arg("-s")
            .arg(&self.socket)
            .arg("-P")
            .arg(&self.pid);
        let mut g = ChildGuard::spawn(&format!("bird {}", self.name), cmd);
        let up = wait_for(Duration::from_secs(10), || {
            if let Some(st) = g.exited() {
                return Some(Err(format!("bird {} exited ({st})", self.name)));
            }
            self.birdc("show status")
                .contains("Daemon is up and running")
                .then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => {}
            Some(Err(e)) => panic!("{e}: {}\n{}", g.kill_and_collect(), self.log()),
            None => panic!("bird {} not up after 10 s:\n{}", self.name, self.log()),
        }
        self.proc = Some(g);
    }

    /// SIGKILL, as a crash: nothing is withdrawn gracefully (the kernel closes its
    /// TCP sessions).
    pub fn kill9(&mut self) {
        if let Some(mut g) = self.proc.take() {
            g.signal(libc::SIGKILL);
            let _ = g.kill_and_collect();
        }
    }

    /// `birdc -s SOCKET COMMAND`: its output, whatever the exit status.
    pub fn birdc(&self, command: &str) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace())
            .output()
            .expect("run birdc");
        crate::outcome(&out).1
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One fo node: the agent (a [`Node`] of the pair lab) and its BIRD.
pub struct BgpNode {
    pub node: Node,
    pub bird: Bird,
    /// The gate's file: the node may announce while it exists.
    pub ready: PathBuf,
    /// The bridge port of the node's link (set it down to cut the link).
    pub port: String,
}

impl BgpNode {
    /// The router's entry of this node's status JSON.
    pub fn router_status(&self) -> serde_json::Value {
        self.node.status()["routers"][0].clone()
    }

    /// kill -9 of both the agent and its BIRD.
    pub fn crash(&mut self) {
        self.node.kill9();
        self.bird.kill9();
    }
}

pub struct BgpLab {
    // Drop order: processes first, namespaces after, the bridge last.
    pub fleet: Fleet,
    pub nodes: Vec<BgpNode>,
    pub router_bird: Bird,
    pub backends: Vec<Backend>,
    pub client: Netns,
    pub router: Netns,
    pub segment: Segment,
    pub dir: PathBuf,
}

impl Drop for BgpLab {
    fn drop(&mut self) {
        self.fleet.kill();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const TIMERS: &str =
    "hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on;";
const BFD: &str = "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }";

const NODE_ADDRS: [&str; 5] = [
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.4",
    "192.0.2.5",
    "192.0.2.6",
];
const NODE_NAMES: [&str; 5] = ["n0", "n1", "n2", "n3", "n4"];

fn node_addr(i: usize) -> String {
    NODE_ADDRS[i].to_string()
}

/// The daemon-side config a node needs (what the README documents), for node `i`.
pub fn node_bird_config(i: usize) -> String {
    let me = node_addr(i);
    format!(
        r#"router id {me};
protocol device {{}}
{BFD}
# fo enables this protocol while the node should serve the VIP, disables it otherwise.
protocol static fo_ingest {{
  disabled;
  ipv4;
  route {VIP}/32 blackhole;
}}
protocol bgp upstream {{
  local {me} as 65001;
  neighbor {ROUTER} as 65000;
  {TIMERS}
  ipv4 {{ import none; export where proto = "fo_ingest"; }};
}}
"#
    )
}

fn router_bird_config(nodes: usize) -> String {
    let mut s = format!(
        r#"router id {ROUTER};
protocol device {{}}
protocol kernel {{
  ipv4 {{ export all; }};
  merge paths on;
}}
{BFD}
template bgp lbnode {{
  local {ROUTER} as 65000;
  {TIMERS}
  ipv4 {{ import all; export none; }};
}}
"#
    );
    for i in 0..nodes {
        s.push_str(&format!(
            "protocol bgp n{i} from lbnode {{ neighbor {} as 65001; }}\n",
            node_addr(i)
        ));
    }
    s
}

fn agent_config(node: &Node, bird_socket: &Path, ready: &Path, backends: &[String]) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    format!(
        r#"{node}
flow_table_size = 65536

[[router]]
name = "ingest"
ownership = "bgp"
vips = ["{VIP}"]
bgp = {{ daemon = "bird", control = "{bird}", bfd = true }}
gates = ["ready"]

[[service]]
name = "events"
vip = "{VIP}"
port = 1514
hash = "5-tuple"
backends = [{list}]

[[check]]
name = "ready"
kind = "file"
path = "{ready}"
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 1
"#,
        node = crate::node_table(&node.pin_dir, &node.socket, node.metrics_port),
        bird = bird_socket.display(),
        ready = ready.display(),
        list = list.join(", "),
    )
}

impl BgpLab {
    /// Build the lab with `nodes` fo nodes and `backends` backends, start every
    /// BIRD and agent, and wait until the router has a route to the VIP through every
    /// node.
    pub fn new(nodes: usize, backends: u8) -> BgpLab {
        let (tag, dir) = crate::temp::new_dir("bgp");
        let segment = Segment::new();
        let router = Netns::new("rt");
        segment.plug(&router, "eth0", &format!("{ROUTER}/24"));
        let client = Netns::new("cl");
        router.sh(&format!(
            "ip link add eth1 type veth peer name eth0 netns {cl} && ip addr add 10.1.0.1/24 dev eth1 && ip link set eth1 up",
            cl = client.name
        ));
        client.sh(&format!(
            "ip addr add {CLIENT}/24 dev eth0 && ip link set eth0 up && ip route add default via 10.1.0.1"
        ));
        router.sh(
            "sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
             net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
        );
        let mut bs = Vec::new();
        for i in 1..=backends {
            let b = crate::pair::Pair::backend_for(&segment, &dir, i, VIP);
            b.ns.sh(&format!("ip route add default via {ROUTER}"));
            bs.push(b);
        }
        let addrs: Vec<String> = bs.iter().map(|b| b.addr.clone()).collect();
        let mut router_bird = Bird::new(&dir, "router", &router_bird_config(nodes));
        router_bird.start(&router);

        let mut ns_nodes = Vec::new();
        for i in 0..nodes {
            let name = NODE_NAMES[i];
            let ns = Netns::new(name);
            let port = segment.plug(&ns, "eth0", &format!("{}/24", NODE_ADDRS[i]));
            let node = Node::new(
                name,
                NODE_ADDRS[i],
                ns,
                &dir,
                &format!("bgp-{tag}-{name}"),
                9469,
            );
            let mut bird = Bird::new(&dir, name, &node_bird_config(i));
            bird.start(&node.ns);
            let ready = dir.join(format!("{name}.ready"));
            std::fs::write(&ready, "").expect("ready file");
            std::fs::write(
                &node.config,
                agent_config(&node, &bird.socket, &ready, &addrs),
            )
            .expect("agent config");
            ns_nodes.push(BgpNode {
                node,
                bird,
                ready,
                port,
            });
        }
        let mut lab = BgpLab {
            fleet: Fleet::new(&dir),
            nodes: ns_nodes,
            router_bird,
            backends: bs,
            client,
            router,
            segment,
            dir,
        };
        for n in &mut lab.nodes {
            n.node.start();
        }
        let all: Vec<String> = (0..nodes).map(node_addr).collect();
        if lab.wait_nexthops(&all, Duration::from_secs(30)).is_none() {
            panic!(
                "the router never routed the VIP through every node: {:?}\nrouter BIRD:\n{}\n{}",
                lab.nexthops(),
                lab.router_bird.birdc("show protocols"),
                lab.nodes
                    .iter()
                    .map(|n| format!(
                        "{}:\n{}\n{}",
                        n.node.name,
                        n.node.log(),
                        n.bird.birdc("show protocols all fo_ingest")
                    ))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        lab
    }

    /// The router's next hops for the VIP in its kernel table (sorted).
    pub fn nexthops(&self) -> Vec<String> {
        let out = self.router.try_sh(&format!("ip -4 route show {VIP}/32"));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut hops: Vec<String> = Vec::new();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "via"
                && let Some(h) = words.next()
            {
                hops.push(h.to_string());
            }
        }
        hops.sort();
        hops
    }

    /// Wait until the router's next hops for the VIP are exactly `want`; returns how
    /// long it took.
    pub fn wait_nexthops(&self, want: &[String], timeout: Duration) -> Option<Duration> {
        let mut want = want.to_vec();
        want.sort();
        let start = Instant::now();
        wait_for(timeout, || {
            (self.nexthops() == want).then(|| start.elapsed())
        })
    }

    pub fn node_addr(i: usize) -> String {
        node_addr(i)
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

    /// Packets the switch delivered to node `i` so far (its port's TX counter: what
    /// reaches the node, whether or not its agent still runs).
    pub fn delivered(&self, i: usize) -> u64 {
        let out = self
            .segment
            .switch
            .sh(&format!("ip -s -j link show {}", self.nodes[i].port));
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j JSON");
        v[0]["stats64"]["tx"]["packets"].as_u64().unwrap_or(0)
    }

    /// Packets the switch delivered to each node during `window`.
    pub fn delivered_during(&self, window: Duration) -> Vec<u64> {
        let n = self.nodes.len();
        let before: Vec<u64> = (0..n).map(|i| self.delivered(i)).collect();
        std::thread::sleep(window);
        (0..n)
            .map(|i| self.delivered(i).saturating_sub(before[i]))
            .collect()
    }

    /// Everything useful when an assertion fails.
    pub fn dump(&self) -> String {
        let mut s = format!(
            "router next hops: {:?}\nrouter BIRD:\n{}",
            self.nexthops(),
            self.router_bird.birdc("show protocols")
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "\n--- {} agent log:\n{}\n--- {} BIRD:\n{}",
                n.node.name,
                n.node.log(),
                n.node.name,
                n.bird.birdc("show protocols")
            ));
        }
        s
    }
}
