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

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::throughput::{all_ns, parse_wrk, vm_busy_ns, wait_listen, xdp_prog_id};
use super::{Opts, fmt_mmm, keep_config, mmm_json, save};
use crate::lab::{Bins, Lab, Netns, Proc, Spec, netns};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const FO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
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
const WRK_SECS: u32 = 4;
/// Runs per size and system at most (`--runs` can only lower it).
const MAX_RUNS: usize = 2;
/// HAProxy's threads on the LB node (as in the throughput scenario).
const HAPROXY_THREADS: u32 = 2;
const WRK_CONNS: u32 = 50;
const XDP_MODE: &str = "generic";
/// Longest wait for every backend to be resolved and in the table.
const RESOLVE_MAX: Duration = Duration::from_secs(240);
const GC_THRESH: [(&str, u32); 3] = [
    ("net.ipv4.neigh.default.gc_thresh1", 4096),
    ("net.ipv4.neigh.default.gc_thresh2", 8192),
    ("net.ipv4.neigh.default.gc_thresh3", 16384),
];

fn backend_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_BACKEND) + k as u32)
}

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

/// Restores the host's neighbour gc thresholds when dropped.
struct GcThresh(Vec<(String, String)>);

impl GcThresh {
    fn raise() -> anyhow::Result<GcThresh> {
        let mut old = Vec::new();
        for (k, v) in GC_THRESH {
            let cur = netns::sh(&format!("sysctl -n {k}"))?.trim().to_owned();
            // Registered before the write: an interrupted run restores it too.
            netns::register_sysctl_restore(k, &cur);
            old.push((k.to_owned(), cur));
            netns::sh(&format!("sysctl -q -w {k}={v}"))?;
        }
        Ok(GcThresh(old))
    }
}

impl Drop for GcThresh {
    fn drop(&mut self) {
        // Lower first: thresh1 <= thresh2 <= thresh3 must hold at every step.
        for (k, v) in self.0.iter() {
            let _ = netns::sh(&format!("sysctl -q -w {k}={v}"));
        }
    }
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    // Two systems × six sizes: the runs per size are capped to keep the scenario short.
    let runs = opts.runs.clamp(1, MAX_RUNS);
    let spec = Spec {
        prefix: "fo-bench".into(),
        vip: VIP,
        port: BASE_PORT,
        client: CLIENT,
        client_sources: Vec::new(),
        nodes: vec![("fo".into(), FO)],
        backends: BACKEND_NS.to_vec(),
    };
    let dir = out.join("logs").join("scale");
    let _ = std::fs::remove_dir_all(&dir);
    let _gc = GcThresh::raise().context("raise the neighbour table's gc thresholds")?;
    let mut lab = Lab::build(&spec, bins.clone(), &dir)?;
    for ns in all_ns(&lab) {
        ns.sh("sysctl -q -w net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1")?;
    }
    // The benchmarking range: one address on the LB node and the client, 1,000 spread
    // over the backends.
    lab.nodes[0]
        .ns
        .sh(&format!("ip addr add {FO_BENCH}/{BENCH_NET_LEN} dev eth0"))?;
    lab.client.ns.sh(&format!(
        "ip addr add {CLIENT_BENCH}/{BENCH_NET_LEN} dev eth0"
    ))?;
    let max_backends = *BACKEND_COUNTS.iter().max().expect("sizes");
    for (i, b) in lab.backends.iter().enumerate() {
        let batch: String = (0..max_backends)
            .filter(|k| k % lab.backends.len() == i)
            .map(|k| format!("address add {}/{BENCH_NET_LEN} dev eth0\n", backend_addr(k)))
            .collect();
        let file = dir.join(format!("backend-b{}-addresses.batch", i + 1));
        std::fs::write(&file, batch).context("write the address batch")?;
        b.ns.sh(&format!("ip -batch {}", file.display()))?;
    }

    // The responder on every backend: HAProxy, a static 200 on every service port.
    let web_cfg = dir.join("haproxy-backend-web.cfg");
    std::fs::write(
        &web_cfg,
        format!(
            "global\n  maxconn 6000\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
             frontend web\n  bind :{BASE_PORT}-{}\n  http-request return status 200 content-type text/plain string ok\n",
            BASE_PORT + MAX_SERVICES - 1
        ),
    )?;
    keep_config(out, &web_cfg, "scale-haproxy-backend-web.cfg")?;
    let mut webs = Vec::new();
    for (i, b) in lab.backends.iter().enumerate() {
        let mut cmd = b.ns.command("/usr/sbin/haproxy");
        cmd.arg("-db").arg("-f").arg(&web_cfg);
        webs.push(Proc::spawn(
            &format!("haproxy web b{}", i + 1),
            cmd,
            &dir.join(format!("haproxy-web-b{}.log", i + 1)),
        )?);
    }
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
            let size = match one_size(&mut lab, out, &dir, backends, services, runs) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("scale: {backends} backends × {services} services failed: {e:#}");
                    clear_agent(&mut lab, backends, services)?;
                    Size {
                        system: "fo",
                        backends,
                        services,
                        entries: backends * usize::from(services),
                        running_s: f64::NAN,
                        resolve_s: f64::NAN,
                        samples: Vec::new(),
                        failed: Some(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
                    }
                }
            };
            sizes.push(size);
            let hp = match haproxy_size(&lab, out, &dir, backends, services, runs) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "scale: HAProxy, {backends} backends × {services} services failed: {e:#}"
                    );
                    Size {
                        system: "haproxy",
                        backends,
                        services,
                        entries: backends * usize::from(services),
                        running_s: f64::NAN,
                        resolve_s: f64::NAN,
                        samples: Vec::new(),
                        failed: Some(format!("{e:#}").lines().next().unwrap_or("").to_owned()),
                    }
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

fn label(system: &str) -> &'static str {
    match system {
        "fo" => "fo (XDP DSR)",
        _ => "HAProxy 2.6 TCP",
    }
}

/// HAProxy rows have no XDP figures.
fn nan_na(s: String) -> String {
    if s.contains("NaN") { "n/a".into() } else { s }
}

fn col(v: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

fn markdown(sizes: &[Size], direct: &[Sample], runs: usize) -> String {
    let mut md = format!(
        "## Scale: 1 / 100 / 1,000 backends × 1 / 64 services\n\n\
         One client, fo (static ownership of the VIP, XDP DSR in {XDP_MODE} mode, 5-tuple \
         hash, default Maglev table of 65,537 entries per service) and three backend \
         namespaces. Every backend is real: the backends hold 1,000 addresses from \
         198.18.0.0/{BENCH_NET_LEN} (RFC 2544's benchmarking range, added on the same \
         bridge inside the namespaces; backend k is 198.18.1.1 + k, on namespace k mod 3), \
         the VIP on lo, and an HAProxy answering a static 200 on 0.0.0.0 ports \
         {BASE_PORT}–{}. Per size a fresh agent gets S services (VIP:{BASE_PORT}…, one per \
         port) each with the first N backends (the LB node's neighbour table warmed first \
         by one real ping to each backend — see the note below the table), and the \
         measurement starts only once \
         `fo-agent status --json` shows all S × N backend entries `resolved: true` (MAC \
         known, in the data plane). Then `wrk -t2 -c{WRK_CONNS} -d{WRK_SECS}s --latency -H \
         'Connection: close'` against VIP:port, one request per connection, {runs} runs per \
         size, min / median / max; with 64 services the runs rotate over ports {}. \
         **XDP ns/packet** is the program's own run time per packet from the kernel's BPF \
         stats (`kernel.bpf_stats_enabled`, Δrun_time_ns / Δrun_cnt over each wrk run: \
         every client packet to the VIP, SYN to FIN): the flatness figure. With 1 backend \
         all connections land on one backend namespace's HAProxy, with 100 and 1,000 on \
         all three: conn/s also reflects where the backend work falls on the 2 cores. The \
         sizes run one after the other (not interleaved); the no-LB ceiling was measured \
         before and after them: {}.\n\n\
         **HAProxy rows**: the same measurement through HAProxy 2.6 in TCP mode on the LB \
         node ({HAPROXY_THREADS} threads, started fresh per size right after fo's rows of \
         that size): S frontends on the node's own address, ports {BASE_PORT}…, each with a \
         backend of the same first N backend addresses (`balance roundrobin`, no health \
         checks); *ready after* is from its start to listening on every port. **LB CPU \
         µs/conn**: fo, the XDP program's run time per connection (BPF stats); HAProxy, its \
         process user+system time delta per connection (neither includes the kernel's \
         softirq work around them). Runs per size and system are capped at {MAX_RUNS} to \
         keep the scenario short: treat differences of a few percent as noise.\n\n\
         | system | backends | services | backend entries | running / ready after s | all resolved s later | conn/s | p50 ms | p99 ms | wrk errors | LB CPU µs/conn | XDP ns/packet | XDP packets/conn |\n\
         |---|---:|---:|---:|---:|---:|---|---|---|---|---|---|---|\n",
        BASE_PORT + MAX_SERVICES - 1,
        run_ports(MAX_SERVICES)
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        direct
            .iter()
            .map(|d| format!(
                "{:.0} conn/s (p50 {:.2} ms, p99 {:.2} ms)",
                d.conn_s, d.p50_ms, d.p99_ms
            ))
            .collect::<Vec<_>>()
            .join(" and "),
    );
    for s in sizes {
        if let Some(why) = &s.failed {
            md.push_str(&format!(
                "| {} | {} | {} | {} | not ready after {} s | | no figures: {} | | | | | | |\n",
                label(s.system),
                s.backends,
                s.services,
                s.entries,
                RESOLVE_MAX.as_secs(),
                why.replace('|', "/")
            ));
            continue;
        }
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            label(s.system),
            s.backends,
            s.services,
            s.entries,
            s.running_s,
            if s.resolve_s.is_nan() {
                "n/a".to_owned()
            } else {
                format!("{:.1}", s.resolve_s)
            },
            fmt_mmm(&col(&s.samples, |x| x.conn_s), 0),
            fmt_mmm(&col(&s.samples, |x| x.p50_ms), 2),
            fmt_mmm(&col(&s.samples, |x| x.p99_ms), 2),
            fmt_mmm(&col(&s.samples, |x| x.wrk_errors as f64), 0),
            fmt_mmm(&col(&s.samples, |x| x.lb_cpu_us_per_conn), 2),
            nan_na(fmt_mmm(&col(&s.samples, |x| x.xdp_ns_per_packet), 0)),
            nan_na(fmt_mmm(&col(&s.samples, |x| x.xdp_packets_per_conn), 1)),
        ));
    }
    md.push_str(
        "\nThe neighbour table is warmed before each size so that the runs measure \
         forwarding, not ARP resolution. Started cold, an earlier agent fired one neighbour \
         lookup per backend at once (1,000 netlink requests, many failing) and allocated \
         backend slots in O(n²), which took minutes at 64 × 1,000 entries; it now resolves \
         with one table dump per round and allocates slots in one pass: the *running* and \
         *all resolved* columns above are today's figures.\n",
    );
    md
}

fn one_size(
    lab: &mut Lab,
    out: &Path,
    dir: &Path,
    backends: usize,
    services: u16,
    runs: usize,
) -> anyhow::Result<Size> {
    let tag = format!("{backends}b-{services}s");
    // A fresh data plane per size: its own pin directory, removed after.
    let bpf_dir = PathBuf::from(format!("/sys/fs/bpf/{}-fo-{tag}", lab.tag));
    netns::register_pin_dir(&bpf_dir);
    let entries = backends * usize::from(services);
    let list: String = (0..backends)
        .map(|k| format!("{{ address = \"{}\" }}", backend_addr(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut body = format!(
        "[node]\ninterface = \"eth0\"\nxdp_mode = \"{XDP_MODE}\"\nbpf_dir = \"{}\"\n\
         control_socket = \"{}\"\nstate_file = \"{}\"\nmax_services = {MAX_SERVICES}\nmax_backends = {}\n\n\
         [[router]]\nname = \"bench\"\nownership = \"static\"\nvips = [\"{VIP}\"]\n",
        bpf_dir.display(),
        dir.join("control-fo.sock").display(),
        dir.join("state-fo.json").display(),
        entries.max(4096).next_power_of_two(),
    );
    for i in 0..services {
        body.push_str(&format!(
            "\n[[service]]\nname = \"web{i}\"\nvip = \"{VIP}\"\nport = {}\nprotocol = \"tcp\"\nmode = \"dsr\"\nhash = \"5-tuple\"\nbackends = [{list}]\n",
            BASE_PORT + i
        ));
    }
    let node = &mut lab.nodes[0];
    std::fs::write(&node.config, body).context("write the agent's config")?;
    keep_config(out, &node.config, &format!("scale-fo-{tag}.toml"))?;
    node.bpf_dir = bpf_dir.clone();
    let bins = lab.bins.clone();
    let t0 = Instant::now();
    warm_neighbours(&lab.nodes[0].ns, backends, dir)?;
    let node = &mut lab.nodes[0];
    start_agent(node, &bins, dir)?;
    let t_running = Instant::now();
    let running = t_running - t0;
    let socket = dir.join("control-fo.sock");
    let resolved_at = wait_resolved(&bins, &socket, entries, node)?;
    let resolve_s = (resolved_at - t_running).as_secs_f64();
    eprintln!(
        "scale {tag}: agent running after {:.1} s, {entries} backend entries resolved {resolve_s:.1} s later",
        running.as_secs_f64()
    );
    let prog = xdp_prog_id(&node.ns).context("fo's XDP program on eth0")?;

    let ports = run_ports(services);
    let mut samples = Vec::new();
    for r in 0..runs {
        let port = ports[r % ports.len()];
        let s = wrk(&lab.client.ns, VIP, port, Some(Meter::Xdp(prog)))
            .with_context(|| format!("{tag} run {}", r + 1))?;
        eprintln!(
            "scale {tag} run {} (:{port}): {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, XDP {:.0} ns/packet",
            r + 1,
            s.conn_s,
            s.p50_ms,
            s.p99_ms,
            s.wrk_errors,
            s.xdp_ns_per_packet
        );
        samples.push(s);
    }

    clear_agent(lab, backends, services)?;
    Ok(Size {
        system: "fo",
        backends,
        services,
        entries,
        running_s: running.as_secs_f64(),
        resolve_s,
        samples,
        failed: None,
    })
}

/// Stop the agent and unload its data plane before the next size.
fn clear_agent(lab: &mut Lab, backends: usize, services: u16) -> anyhow::Result<()> {
    let tag = format!("{backends}b-{services}s");
    let bpf_dir = PathBuf::from(format!("/sys/fs/bpf/{}-fo-{tag}", lab.tag));
    let node = &mut lab.nodes[0];
    if let Some(p) = node.runs.last_mut()
        && p.exited().is_none()
    {
        let _ = p.signal("TERM");
        let _ = p.wait(Duration::from_secs(20));
    }
    if bpf_dir.exists() {
        std::fs::remove_dir_all(&bpf_dir)
            .with_context(|| format!("remove {}", bpf_dir.display()))?;
    }
    let start = Instant::now();
    while xdp_prog_id(&node.ns).is_ok() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the XDP program of {tag} is still attached after its pins were removed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Resolve the first `n` backend addresses in the LB node's neighbour table by real ARP
/// (one ping each, 64 at a time) before the agent starts, so that the measurement is
/// about the data plane, not about how fast the kernel resolves 1,000 addresses.
fn warm_neighbours(ns: &Netns, n: usize, dir: &Path) -> anyhow::Result<()> {
    let list: String = (0..n).map(|k| format!("{}\n", backend_addr(k))).collect();
    let file = dir.join(format!("warm-{n}.txt"));
    std::fs::write(&file, list)?;
    ns.sh(&format!(
        "xargs -P 64 -I ADDR ping -c1 -W2 -q ADDR < {} >/dev/null 2>&1 || true",
        file.display()
    ))?;
    let known = ns
        .sh("ip -4 neigh show dev eth0 | grep -c lladdr || true")?
        .trim()
        .parse::<usize>()
        .unwrap_or(0);
    if known < n {
        bail!("only {known} of {n} backend addresses resolved by ping");
    }
    Ok(())
}

/// As [`crate::lab::Node::start`], with a longer wait for `running`: with 64 services ×
/// 1,000 backends the agent's first resolution and table fill take far longer than 30 s.
fn start_agent(node: &mut crate::lab::Node, bins: &Bins, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = node.ns.command(&bins.agent);
    cmd.arg("run")
        .arg("--config")
        .arg(&node.config)
        .args(["--log-format", "json"])
        .env("NO_COLOR", "1");
    let n = node.runs.len() + 1;
    let mut p = Proc::spawn(
        &format!("fo-agent {}", node.name),
        cmd,
        &dir.join(format!("agent-{}-{n}.log", node.name)),
    )?;
    let res = p.wait_for_line(RESOLVE_MAX, |l| {
        crate::lab::log_fields(l)
            .is_some_and(|f| f.get("message").and_then(Value::as_str) == Some("running"))
    });
    node.runs.push(p);
    res.map(|_| ())
}

/// Wait until the agent's status lists `entries` backend entries, all resolved;
/// returns when it did.
fn wait_resolved(
    bins: &Bins,
    socket: &Path,
    entries: usize,
    node: &crate::lab::Node,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + RESOLVE_MAX;
    loop {
        let out = Command::new(&bins.agent)
            .args(["status", "--json", "--socket"])
            .arg(socket)
            .output()
            .context("spawn fo-agent status")?;
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
        {
            let all: Vec<&Value> = v["services"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|s| s["backends"].as_array().into_iter().flatten())
                        .collect()
                })
                .unwrap_or_default();
            let resolved = all
                .iter()
                .filter(|b| b["resolved"].as_bool() == Some(true))
                .count();
            let last = format!("{resolved} of {} entries resolved", all.len());
            if all.len() == entries && resolved == entries {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "not every backend resolved after {RESOLVE_MAX:?}: {last}\n{}",
                    node.runs.last().map(|p| p.tail(20)).unwrap_or_default()
                );
            }
        } else if Instant::now() > deadline {
            let last = String::from_utf8_lossy(&out.stderr);
            bail!(
                "not every backend resolved after {RESOLVE_MAX:?}: {last}\n{}",
                node.runs.last().map(|p| p.tail(20)).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// (run_time_ns, run_cnt) of a BPF program.
fn bpf_stats(id: u64) -> Option<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    // bpftool leaves the fields out until the program has run with stats on.
    Some((
        v["run_time_ns"].as_u64().unwrap_or(0),
        v["run_cnt"].as_u64().unwrap_or(0),
    ))
}

fn wrk(
    client: &Netns,
    target: Ipv4Addr,
    port: u16,
    meter: Option<Meter>,
) -> anyhow::Result<Sample> {
    let prog = match meter {
        Some(Meter::Xdp(id)) => Some(id),
        _ => None,
    };
    let pid = match meter {
        Some(Meter::Pid(pid)) => Some(pid),
        _ => None,
    };
    let vm0 = vm_busy_ns();
    let p0 = pid.and_then(proc_cpu_ns);
    let b0 = prog.and_then(bpf_stats);
    let out = client
        .command("wrk")
        .args([
            "-t2",
            &format!("-c{WRK_CONNS}"),
            &format!("-d{WRK_SECS}s"),
            "--latency",
        ])
        .args(["-H", "Connection: close"])
        .arg(format!("http://{target}:{port}/"))
        .output()
        .context("spawn wrk")?;
    let b1 = prog.and_then(bpf_stats);
    let p1 = pid.and_then(proc_cpu_ns);
    let vm1 = vm_busy_ns();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let w = parse_wrk(&text).with_context(|| format!("parse wrk's output:\n{text}"))?;
    let conns = w.requests.max(1) as f64;
    let (pkts, ns) = match (b0, b1) {
        (Some((t0, c0)), Some((t1, c1))) => (c1 - c0, (t1 - t0) as f64),
        _ => (0, 0.0),
    };
    Ok(Sample {
        port,
        conn_s: w.rate,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        wrk_errors: w.errors,
        vm_cpu_us_per_conn: (vm1 - vm0) as f64 / 1e3 / conns,
        xdp_packets: pkts,
        xdp_ns_per_packet: if pkts > 0 { ns / pkts as f64 } else { f64::NAN },
        xdp_packets_per_conn: if pkts > 0 {
            pkts as f64 / conns
        } else {
            f64::NAN
        },
        lb_cpu_us_per_conn: match (p0, p1) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e3 / conns,
            _ if pkts > 0 => ns / 1e3 / conns,
            _ => f64::NAN,
        },
    })
}

/// A process's user+system CPU time so far (all its threads), ns.
fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: utime and stime are fields 14 and 15 (1-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000) // USER_HZ = 100
}

/// The same measurement through HAProxy 2.6 in TCP mode on the LB node: S frontends
/// (its own address, ports 8080..), each with a backend of the first N backend
/// addresses, `balance roundrobin` (a source hash would put the one client on one
/// backend), no health checks (fo's services have none either).
fn haproxy_size(
    lab: &Lab,
    out: &Path,
    dir: &Path,
    backends: usize,
    services: u16,
    runs: usize,
) -> anyhow::Result<Size> {
    let tag = format!("{backends}b-{services}s");
    let mut cfg = format!(
        "global\n  maxconn 9000\n  nbthread {HAPROXY_THREADS}\n\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n"
    );
    for i in 0..services {
        let port = BASE_PORT + i;
        cfg.push_str(&format!(
            "\nfrontend f{i}\n  bind {FO}:{port}\n  default_backend b{i}\n\nbackend b{i}\n  balance roundrobin\n"
        ));
        for k in 0..backends {
            cfg.push_str(&format!("  server s{k} {}:{port}\n", backend_addr(k)));
        }
    }
    let file = dir.join(format!("haproxy-lb-{tag}.cfg"));
    std::fs::write(&file, cfg).context("write HAProxy's config")?;
    if services == 1 || backends == 1 {
        keep_config(out, &file, &format!("scale-haproxy-lb-{tag}.cfg"))?;
    }
    let ns = &lab.nodes[0].ns;
    let t0 = Instant::now();
    let mut cmd = ns.command("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    let hp = Proc::spawn(
        &format!("haproxy lb {tag}"),
        cmd,
        &dir.join(format!("haproxy-lb-{tag}.log")),
    )?;
    wait_listen(ns, BASE_PORT)?;
    wait_listen(ns, BASE_PORT + services - 1)?;
    let ready = t0.elapsed().as_secs_f64();
    eprintln!("scale haproxy {tag}: listening after {ready:.1} s");
    let ports = run_ports(services);
    let mut samples = Vec::new();
    for r in 0..runs {
        let port = ports[r % ports.len()];
        let s = wrk(&lab.client.ns, FO, port, Some(Meter::Pid(hp.pid())))
            .with_context(|| format!("HAProxy {tag} run {}", r + 1))?;
        eprintln!(
            "scale haproxy {tag} run {} (:{port}): {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, HAProxy {:.1} µs CPU/conn",
            r + 1,
            s.conn_s,
            s.p50_ms,
            s.p99_ms,
            s.wrk_errors,
            s.lb_cpu_us_per_conn
        );
        samples.push(s);
    }
    drop(hp);
    Ok(Size {
        system: "haproxy",
        backends,
        services,
        entries: backends * usize::from(services),
        running_s: ready,
        resolve_s: f64::NAN,
        samples,
        failed: None,
    })
}
