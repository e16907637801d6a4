//! Scale: connection rate, latency and the XDP program's run time per packet through fo
//! with 1, 100 and 1,000 backends and with 1 and 64 services, to show that the cost per
//! packet and per connection stays flat as the configuration grows.
//!
//! Every configured backend is real: the three backend namespaces get many addresses
//! from 198.18.0.0/15 (the benchmarking range, RFC 2544) on their eth0, besides their
//! 192.0.2.0/24 one; the LB node and the client get one address in that range too, on the
//! same bridge. Backend k (0-based) is 198.18.1.1 + k, held by namespace k mod 3. The
//! backends hold the VIP on lo (DSR) and run HAProxy answering a static 200 on
//! 0.0.0.0, ports 8080..8143, so any of their addresses and any service port reaches it.
//!
//! Per size: a fresh `fo-agent run` (static ownership of the VIP, generic XDP, its own
//! bpf_dir) with S services (VIP:8080.. VIP:8080+S-1, DSR, 5-tuple hash), each with the
//! first N backends; xtask waits until `fo-agent status --json` shows every one of the
//! S × N backends `resolved: true` (its MAC known and in the data plane), then runs `wrk
//! -t2 -c50 -d4s --latency -H 'Connection: close'` against VIP:port `runs` times. With 64
//! services each run drives one port, rotating over 8080, 8111 and 8143 (first, middle,
//! last service). The XDP figure is Δrun_time_ns / Δrun_cnt from the kernel's BPF stats
//! over each wrk run (every packet the client sends to the VIP, SYN to FIN).
//!
//! The kernel's neighbour table is global (its gc thresholds are not per namespace), and
//! 1,000 backends exceed its default `gc_thresh3` of 1024 entries together with the
//! rest: the scenario raises the host's thresholds while it runs and restores them.

mod measure;
mod report;
mod topology;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::throughput::{all_ns, bpf_stats, proc_cpu_ns, vm_busy_ns, wait_listen, xdp_prog_id};
use super::{Opts, WRK_CONNS, WRK_SECS, fmt_mmm, keep_config, mmm_json, save};
use crate::lab::config::{XDP_MODE, static_router};
use crate::lab::{Bins, Lab, Netns, Proc, Spec, netns};

use measure::*;
use report::*;
use topology::*;

pub(super) use topology::{
    bench_range_lab, clear_agent, fo_config, haproxy_lb_config, size_bpf_dir, start_agent,
    wait_resolved, warm_neighbours,
};

/// The scale lab: the client at 192.0.2.10, as in a pair; one LB node; the three backend
/// namespaces. `port` is the lab's service port.
pub(super) fn lab_spec(port: u16) -> Spec {
    Spec {
        nodes: vec![("fo".into(), FO)],
        backends: BACKEND_NS.to_vec(),
        ..Spec::pair("fo-bench", VIP, port)
    }
}

pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const FO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const BACKEND_NS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 21),
    Ipv4Addr::new(192, 0, 2, 22),
    Ipv4Addr::new(192, 0, 2, 23),
];
/// The second, larger range on the bridge (RFC 2544), inside the namespaces only.
const BENCH_NET_LEN: u8 = 15;
const FO_BENCH: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_BENCH: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const FIRST_BACKEND: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const BASE_PORT: u16 = 8080;
const MAX_SERVICES: u16 = 64;
const BACKEND_COUNTS: [usize; 3] = [1, 100, 1000];
const SERVICE_COUNTS: [u16; 2] = [1, 64];
/// Runs per size and system at most (`--runs` can only lower it).
const MAX_RUNS: usize = 2;
/// HAProxy's threads on the LB node (as in the throughput scenario).
const HAPROXY_THREADS: u32 = 2;
/// Longest wait for every backend to be resolved and in the table.
const RESOLVE_MAX: Duration = Duration::from_secs(240);
const GC_THRESH: [(&str, u32); 3] = [
    ("net.ipv4.neigh.default.gc_thresh1", 4096),
    ("net.ipv4.neigh.default.gc_thresh2", 8192),
    ("net.ipv4.neigh.default.gc_thresh3", 16384),
];

/// The ports the runs of a size drive, one per run in turn.
fn run_ports(services: u16) -> Vec<u16> {
    if services == 1 {
        vec![BASE_PORT]
    } else {
        vec![
            BASE_PORT,
            BASE_PORT + services / 2 - 1,
            BASE_PORT + services - 1,
        ]
    }
}

/// What a wrk run meters on the LB besides the VM: fo's XDP program (BPF stats) or
/// HAProxy's process CPU time.
#[derive(Debug, Clone, Copy)]
enum Meter {
    Xdp(u64),
    Pid(u32),
}

#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    port: u16,
    conn_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    wrk_errors: u64,
    vm_cpu_us_per_conn: f64,
    xdp_packets: u64,
    xdp_ns_per_packet: f64,
    xdp_packets_per_conn: f64,
    /// The LB's own CPU per connection: fo, the XDP program's run time; HAProxy, its
    /// process user+system time. µs.
    lb_cpu_us_per_conn: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Size {
    /// `fo` or `haproxy`.
    system: &'static str,
    backends: usize,
    services: u16,
    /// Backend entries in the data plane (services × backends), all resolved.
    entries: usize,
    /// From the agent's start to its `running` (initial resolution, table fill), s;
    /// HAProxy: from its start to listening on every service port.
    running_s: f64,
    /// From the agent's `running` to every backend resolved in its status, s.
    resolve_s: f64,
    samples: Vec<Sample>,
    /// Why this size has no figures (the agent did not get ready in time).
    failed: Option<String>,
}

/// One configuration size to measure, and where its files go.
#[derive(Debug, Clone, Copy)]
struct Case<'a> {
    out: &'a Path,
    dir: &'a Path,
    backends: usize,
    services: u16,
    runs: usize,
}

impl Case<'_> {
    /// `{backends}b-{services}s`: names the size's files and log lines.
    fn tag(&self) -> String {
        format!("{}b-{}s", self.backends, self.services)
    }
}

impl Size {
    /// A size that has no figures: `e`'s first line says why.
    fn failed(system: &'static str, backends: usize, services: u16, e: &anyhow::Error) -> Size {
        Size {
            system,
            backends,
            services,
            entries: backends * usize::from(services),
            running_s: f64::NAN,
            resolve_s: f64::NAN,
            samples: Vec::new(),
            failed: Some(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
        }
    }
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    // Two systems × six sizes: the runs per size are capped to keep the scenario short.
    let runs = opts.runs.clamp(1, MAX_RUNS);
    let spec = lab_spec(BASE_PORT);
    let dir = out.join("logs").join("scale");
    let _ = std::fs::remove_dir_all(&dir);
    let _gc = GcThresh::raise().context("raise the neighbour table's gc thresholds")?;
    let max_backends = *BACKEND_COUNTS.iter().max().expect("sizes");
    let mut lab = bench_range_lab(&spec, bins, &dir, max_backends)?;

    // The responder on every backend: HAProxy, a static 200 on every service port.
    let (web_cfg, webs) = fo_lab::kit::static_http::start(
        &dir,
        lab.backends.iter().map(|b| &b.ns),
        &(BASE_PORT..=BASE_PORT + MAX_SERVICES - 1),
        6000,
    )?;
    keep_config(out, &web_cfg, "scale-haproxy-backend-web.cfg")?;
    for b in &lab.backends {
        wait_listen(&b.ns, BASE_PORT)?;
        wait_listen(&b.ns, BASE_PORT + MAX_SERVICES - 1)?;
    }
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=1"])
        .status();

    // The ceiling, before and after the sizes: the client straight to backend 1.
    let mut direct = Vec::new();
    let d = wrk(&lab.client.ns, BACKEND_NS[0], BASE_PORT, None)?;
    eprintln!("scale: no LB, before: {:.0} conn/s", d.conn_s);
    direct.push(d);

    let mut sizes = Vec::new();
    for &services in &SERVICE_COUNTS {
        for &backends in &BACKEND_COUNTS {
            let case = Case {
                out,
                dir: &dir,
                backends,
                services,
                runs,
            };
            let size = match one_size(&mut lab, case) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("scale: {backends} backends × {services} services failed: {e:#}");
                    clear_agent(&mut lab, backends, services)?;
                    Size::failed("fo", backends, services, &e)
                }
            };
            sizes.push(size);
            let hp = match haproxy_size(&lab, case) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "scale: HAProxy, {backends} backends × {services} services failed: {e:#}"
                    );
                    Size::failed("haproxy", backends, services, &e)
                }
            };
            sizes.push(hp);
        }
    }
    let d = wrk(&lab.client.ns, BACKEND_NS[0], BASE_PORT, None)?;
    eprintln!("scale: no LB, after: {:.0} conn/s", d.conn_s);
    direct.push(d);
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=0"])
        .status();
    drop(webs);
    drop(lab);

    let md = markdown(&sizes, &direct, runs);
    print!("\n{md}");
    save(
        out,
        "scale",
        json!({
            "settings": {
                "xdp_mode": XDP_MODE, "wrk_s": WRK_SECS, "wrk_connections": WRK_CONNS,
                "runs": runs, "backend_range": format!("198.18.0.0/{BENCH_NET_LEN}"),
                "first_backend": FIRST_BACKEND.to_string(), "backend_namespaces": BACKEND_NS.len(),
            },
            "no_lb": direct,
            "sizes": sizes.iter().map(|s| json!({
                "system": s.system, "backends": s.backends, "services": s.services, "entries": s.entries,
                "running_s": s.running_s, "resolve_s": s.resolve_s, "failed": s.failed,
                "conn_s": mmm_json(&col(&s.samples, |x| x.conn_s)),
                "p50_ms": mmm_json(&col(&s.samples, |x| x.p50_ms)),
                "p99_ms": mmm_json(&col(&s.samples, |x| x.p99_ms)),
                "xdp_ns_per_packet": mmm_json(&col(&s.samples, |x| x.xdp_ns_per_packet)),
                "lb_cpu_us_per_conn": mmm_json(&col(&s.samples, |x| x.lb_cpu_us_per_conn)),
                "runs": s.samples,
            })).collect::<Vec<_>>(),
            "markdown": md,
        }),
    )
}
