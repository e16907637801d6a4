//! Scale-out (issue 9): one, two and three fo nodes active at once behind a router
//! that spreads the VIP over them by ECMP, each node announcing the VIP over BGP through
//! its own BIRD 2 (`ownership = "bgp"`, BFD 100 ms × 3), and what a node's loss costs.
//!
//! Lab: the bench lab's bridge with a router namespace (192.0.2.1, BIRD with `merge
//! paths`, `fib_multipath_hash_policy=1`, no ICMP redirects) added; the client routes
//! the VIP through the router, which forwards back onto the bridge to one node per flow;
//! the node's XDP program (generic mode) sends it on to a DSR backend, which answers the
//! client directly.
//!
//! - Connection rate: active nodes are chosen with `fo-agent demote/resume ingest` (a
//!   demoted node withdraws its announcement); `wrk -t2 -c50 -d4s -H 'Connection: close'`
//!   against VIP:8080 (HAProxy answering a static 200 on every backend); the share of
//!   each node is its switch port's packet count.
//! - Node loss: 200 `fo-fleet` connections (VIP:1514, `fo-sink` on the backends, one
//!   event per 10 ms); node n2 is killed (agent and BIRD, kill -9) or its link cut at the
//!   switch. Convergence is from the failure to the router's kernel route without the
//!   node; resets, lost events and the longest silence come from the fleet and sinks.

mod measure;
mod report;
mod topology;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::throughput::wait_listen;
use super::{Opts, WRK_CONNS, WRK_SECS, fmt_mmm, keep_config, mmm_json, save};
use crate::lab::config::XDP_MODE;
use crate::lab::{Bins, Lab, Netns, Proc, Spec};

use measure::*;
use report::*;
use topology::*;

const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NODES: [(&str, Ipv4Addr); 3] = [
    ("n0", Ipv4Addr::new(192, 0, 2, 2)),
    ("n1", Ipv4Addr::new(192, 0, 2, 3)),
    ("n2", Ipv4Addr::new(192, 0, 2, 4)),
];
const BACKENDS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 21),
    Ipv4Addr::new(192, 0, 2, 22),
    Ipv4Addr::new(192, 0, 2, 23),
];
const FLEET_PORT: u16 = 1514;
const HTTP_PORT: u16 = 8080;
const AGENTS: u32 = 200;
/// Runs per size and per failure at most (`--runs` can only lower it).
const MAX_RUNS: usize = 2;
const CONVERGE: Duration = Duration::from_secs(15);

const TIMERS: &str =
    "hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 2; bfd on;";
const BFD: &str = "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }";

struct Rate {
    conn_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    shares: Vec<f64>,
}

struct Loss {
    converge_ms: f64,
    resets: u64,
    lost: u64,
    max_silence_ms: f64,
    events: u64,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let runs = opts.runs.clamp(1, MAX_RUNS);
    // The client at 192.0.2.10, as in a pair; three LB nodes.
    let spec = Spec {
        nodes: NODES.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
        backends: BACKENDS.to_vec(),
        ..Spec::pair("fo-bench-so", VIP, FLEET_PORT)
    };
    let dir = out.join("logs").join("scaleout");
    let _ = std::fs::remove_dir_all(&dir);
    let lab = Lab::build(&spec, bins.clone(), &dir)?;
    for ns in super::throughput::all_ns(&lab) {
        ns.sh("sysctl -q -w net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1")?;
    }
    // The router: on the bridge, forwarding back onto it (no redirects, so the client
    // keeps sending through it), ECMP with an L4 hash.
    let router = Netns::create(&format!("{}-rt", lab.tag))?;
    crate::lab::plug_port(&lab.switch, "prt", &router, ROUTER)?;
    router.sh(
        "sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
         net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0 \
         net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0",
    )?;
    lab.client.ns.sh(&format!(
        "sysctl -q -w net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.eth0.accept_redirects=0 \
         && ip route add {VIP}/32 via {ROUTER}"
    ))?;

    // Backends: HAProxy's static 200 on :8080 for wrk, fo-sink on VIP:1514 for the fleet.
    let (_, webs) = fo_lab::kit::static_http::start(
        &dir,
        lab.backends.iter().map(|b| &b.ns),
        &(HTTP_PORT..=HTTP_PORT),
        6000,
    )?;
    for b in &lab.backends {
        wait_listen(&b.ns, HTTP_PORT)?;
    }

    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|b| format!("{{ address = \"{b}\" }}"))
        .collect();
    let mut router_bird = Bird::new(&dir, "router", &router_bird(&dir.join("bird-router.log")))?;
    router_bird.start(&router, &dir)?;
    keep_config(out, &router_bird.config, "scaleout-bird-router.conf")?;
    let mut birds = Vec::new();
    for (i, (name, addr)) in NODES.iter().enumerate() {
        let bird = Bird::new(
            &dir,
            name,
            &node_bird(*addr, &dir.join(format!("bird-{name}.log"))),
        )?;
        let body = format!(
            "[[router]]\nname = \"ingest\"\nownership = \"bgp\"\nvips = [\"{VIP}\"]\n\
             bgp = {{ daemon = \"bird\", control = \"{}\", bfd = true }}\n\n\
             [[service]]\nvip = \"{VIP}\"\nport = {FLEET_PORT}\nhash = \"5-tuple\"\nbackends = [{b}]\n\n\
             [[service]]\nvip = \"{VIP}\"\nport = {HTTP_PORT}\nhash = \"5-tuple\"\nbackends = [{b}]\n",
            bird.socket.display(),
            b = backends.join(", ")
        );
        lab.nodes[i].write_config(XDP_MODE, &body)?;
        if i == 0 {
            keep_config(out, &bird.config, "scaleout-bird-node.conf")?;
            keep_config(out, &lab.nodes[0].config, "scaleout-fo-node.toml")?;
        }
        birds.push(bird);
    }
    let mut so = ScaleoutLab {
        lab,
        router,
        router_bird,
        birds,
    };
    for i in 0..NODES.len() {
        so.start_node(i)?;
    }
    so.wait_nexthops(&[0, 1, 2], Duration::from_secs(30))?;

    // Connection rate with 1, 2 and 3 active nodes.
    let mut sizes: Vec<(usize, Vec<Rate>)> = Vec::new();
    for active in 1..=NODES.len() {
        for i in 0..NODES.len() {
            so.ctl(i, &[if i < active { "resume" } else { "demote" }, "ingest"])?;
        }
        let set: Vec<usize> = (0..active).collect();
        so.wait_nexthops(&set, CONVERGE)?;
        std::thread::sleep(Duration::from_millis(500));
        let mut samples = Vec::new();
        for _ in 0..runs {
            let before = so.delivered();
            let r = wrk(&so.lab.client.ns)?;
            let after = so.delivered();
            let d: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
            let total = d.iter().sum::<u64>().max(1) as f64;
            eprintln!(
                "scaleout: {active} active: {:.0} conn/s, per-node packets {d:?}",
                r.0
            );
            samples.push(Rate {
                conn_s: r.0,
                p50_ms: r.1,
                p99_ms: r.2,
                errors: r.3,
                shares: d.iter().map(|&x| x as f64 / total).collect(),
            });
        }
        sizes.push((active, samples));
    }

    // Node loss under the fleet, three nodes active.
    so.lab.start_sinks()?;
    let mut losses: Vec<(&str, Vec<Loss>)> = Vec::new();
    for kind in ["kill -9 (agent + BIRD)", "link down"] {
        let mut v = Vec::new();
        for _ in 0..runs {
            so.wait_nexthops(&[0, 1, 2], Duration::from_secs(30))?;
            let fleet = so.lab.start_fleet(&[
                "--agents".into(),
                AGENTS.to_string(),
                "--interval".into(),
                "10ms".into(),
                "--drain".into(),
                "3000ms".into(),
                "--quiet".into(),
            ])?;
            std::thread::sleep(Duration::from_secs(3));
            let at = Instant::now();
            if kind == "link down" {
                so.lab.switch.sh("ip link set p3 down")?;
            } else {
                so.lab.nodes[2].kill9()?;
                so.birds[2].kill9();
            }
            so.wait_nexthops(&[0, 1], CONVERGE)?;
            let converge_ms = at.elapsed().as_secs_f64() * 1e3;
            std::thread::sleep(Duration::from_secs(3));
            let fleet_report = so.lab.stop_fleet(Duration::from_secs(3))?;
            let _ = fleet;
            so.lab.stop_sinks()?;
            // This run's reports only (each backend's newest).
            let sinks = so.lab.last_sink_reports();
            let m = so.lab.merge(&fleet_report, &sinks)?;
            let loss = Loss {
                converge_ms,
                resets: m["connections_reset"].as_u64().unwrap_or(0),
                lost: m["lost_acked"].as_u64().unwrap_or(0)
                    + m["lost_unacked"].as_u64().unwrap_or(0),
                max_silence_ms: m["max_silence_ms"].as_f64().unwrap_or(f64::NAN),
                events: m["events_sent"].as_u64().unwrap_or(0),
            };
            eprintln!(
                "scaleout: {kind}: converged in {converge_ms:.0} ms, {} resets, {} lost of {} events, longest silence {:.0} ms",
                loss.resets, loss.lost, loss.events, loss.max_silence_ms
            );
            v.push(loss);
            // Bring node 2 back for the next run.
            if kind == "link down" {
                so.lab.switch.sh("ip link set p3 up")?;
            } else {
                so.start_node(2)?;
            }
            so.lab.start_sinks()?;
        }
        losses.push((kind, v));
    }
    let _ = so.lab.stop_sinks();
    drop(webs);

    let md = markdown(&sizes, &losses, runs);
    let doc = json!({
        "settings": {"xdp_mode": XDP_MODE, "wrk_s": WRK_SECS, "wrk_connections": WRK_CONNS,
                     "fleet_agents": AGENTS, "runs": runs, "bfd": "100 ms x 3", "hold_s": 3},
        "rate": sizes.iter().map(|(n, s)| json!({
            "active_nodes": n,
            "conn_s": mmm_json(&s.iter().map(|x| x.conn_s).collect::<Vec<_>>()),
            "p99_ms": mmm_json(&s.iter().map(|x| x.p99_ms).collect::<Vec<_>>()),
            "errors": s.iter().map(|x| x.errors).sum::<u64>(),
            "shares": s.iter().map(|x| x.shares.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "node_loss": losses.iter().map(|(k, v)| json!({
            "failure": k,
            "converge_ms": mmm_json(&v.iter().map(|x| x.converge_ms).collect::<Vec<_>>()),
            "resets": v.iter().map(|x| x.resets).collect::<Vec<_>>(),
            "lost": v.iter().map(|x| x.lost).collect::<Vec<_>>(),
            "max_silence_ms": mmm_json(&v.iter().map(|x| x.max_silence_ms).collect::<Vec<_>>()),
        })).collect::<Vec<_>>(),
        "markdown": md,
    });
    save(out, "scaleout", doc)
}
