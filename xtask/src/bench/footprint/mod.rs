//! Footprint: what the LB itself costs the node in memory and CPU, idle and while it
//! carries 10,000 long-lived connections, for fo and for keepalived + HAProxy configured
//! alike (64 services × 100 backends), in the same run.
//!
//! The lab is the scale bench's (one client, one LB node, three backend namespaces holding
//! 100 addresses from 198.18.0.0/15 and the VIP on lo). Every backend namespace runs one
//! `fo-sink` per service port (1514..1577, on 0.0.0.0, so every backend address and the
//! VIP reach it). Per run and system:
//!
//! - fo: a fresh `fo-agent run` with 64 DSR services × the 100 backends (static ownership
//!   of the VIP, generic XDP), ready once `fo-agent status --json` shows all 6,400
//!   entries resolved.
//! - the pair: keepalived (one VRRP instance, master, the VIP on eth0) and HAProxy 2.6 in
//!   TCP mode (64 frontends on VIP:1514.. × 100 servers each, roundrobin; two processes
//!   of one thread, 32 frontends each, see [`HAPROXY_PROCS`]), ready once HAProxy
//!   listens on the first and last port and keepalived holds the VIP.
//!
//! Then an idle window of [`WINDOW`], then 64 `fo-fleet`s (one per service, 10,000 agents
//! in all, one event a second each) connect through the LB; once the client has all
//! 10,000 connections established, a loaded window. Per window: resident memory (VmRSS,
//! and the peak VmHWM) and CPU time (utime + stime from /proc/PID/stat) summed over every
//! process of the system (the agent; keepalived's parent and VRRP child and HAProxy);
//! for fo also its data plane, which is kernel memory and kernel CPU and so in neither
//! figure: the BPF maps' size (`bpftool`, the program's maps) and the XDP program's run
//! time (BPF stats). Runs alternate fo, pair, pair, fo, …

mod measure;
mod report;
mod topology;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::scale::{self, VIP};
use super::{Opts, keep_config, save};
use crate::lab::{Bins, Lab, Proc};

use measure::*;
use report::*;
use topology::*;

const SERVICES: u16 = 64;
const BACKENDS: usize = 100;
const CONNECTIONS: u32 = 10_000;
const BASE_PORT: u16 = 1514;
/// Each agent's events per second.
const EVENT_RATE: u32 = 1;
/// The fixed window over which CPU time is taken.
const WINDOW: Duration = Duration::from_secs(10);
/// Settling time before a window (the start's or the connects' work done).
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the 10,000 connections.
const CONNECT_MAX: Duration = Duration::from_secs(120);
/// Spread of the fleets' first connects.
const RAMP: &str = "5s";
/// Runs per system at most (`--runs` can only lower it).
const MAX_RUNS: usize = 5;
/// HAProxy's threads in all (as in the throughput and scale benches).
const HAPROXY_THREADS: u32 = 2;
/// HAProxy processes, the services split between them: a proxied connection holds two
/// sockets, and this machine's hard limit of open files (20,000, which root cannot raise
/// here) is below the 20,000 sockets and the listeners of one process.
const HAPROXY_PROCS: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum System {
    Fo,
    Pair,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Fo => "fo-agent (XDP DSR)",
            System::Pair => "keepalived 2.2.7 + HAProxy 2.6",
        }
    }
}

/// One measurement window over a system's processes.
#[derive(Debug, Clone, serde::Serialize)]
struct Window {
    processes: usize,
    threads: u64,
    rss_kib: u64,
    hwm_kib: u64,
    /// utime + stime over the window, % of one core.
    cpu_pct: f64,
    /// The threads' time on a CPU over the window (schedstat, ns resolution), % of one
    /// core.
    sched_pct: f64,
    /// The XDP program's run time over the window, % of one core (fo only).
    xdp_pct: Option<f64>,
    /// The whole VM's busy time (client, sinks and LB), % of its 2 cores.
    vm_pct: f64,
    /// Client connections to the VIP established at the window's end.
    established: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
struct Run {
    system: System,
    run: usize,
    /// From the start to ready (fo: every entry resolved; the pair: listening, VIP held).
    ready_s: f64,
    /// From the fleets' start to 10,000 established.
    connect_s: f64,
    idle: Window,
    load: Window,
    /// fo: the BPF maps of its XDP program (kernel memory, not in RSS), KiB.
    bpf_maps_kib: Option<u64>,
    /// fo: each of those maps, name and KiB, the largest first.
    bpf_maps: Vec<(String, u64)>,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let runs = opts.runs.clamp(1, MAX_RUNS);
    let dir = out.join("logs").join("footprint");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).context("create the log directory")?;
    let mut lab = scale::bench_range_lab(&scale::lab_spec(BASE_PORT), bins, &dir, BACKENDS)?;
    let _sinks = start_sinks(&lab, &dir)?;
    scale::warm_neighbours(&lab.nodes[0].ns, BACKENDS, &dir)?;
    lab.nodes[0]
        .ns
        .sh("sysctl -q -w net.ipv4.ip_nonlocal_bind=1")?;
    let _ = std::process::Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=1"])
        .status();
    let pair = pair_configs(&dir)?;
    keep_config(out, &pair.keepalived, "footprint-keepalived.conf")?;
    for (i, f) in pair.haproxy.iter().enumerate() {
        keep_config(out, f, &format!("footprint-haproxy-{}.cfg", i + 1))?;
    }

    let mut all = Vec::new();
    for r in 1..=runs {
        // fo, pair, pair, fo, …: a drift over the scenario hits both alike.
        let order = if r % 2 == 1 {
            [System::Fo, System::Pair]
        } else {
            [System::Pair, System::Fo]
        };
        for system in order {
            let res = match system {
                System::Fo => fo_run(&mut lab, out, &dir, r),
                System::Pair => pair_run(&lab, &pair, &dir, r),
            };
            let one = res.with_context(|| format!("{} run {r}", system.label()))?;
            eprintln!(
                "footprint {} run {r}: idle {} KiB RSS, {:.2} % CPU; 10,000 connections {} KiB RSS, {:.2} % CPU",
                system.label(),
                one.idle.rss_kib,
                one.idle.cpu_pct,
                one.load.rss_kib,
                one.load.cpu_pct
            );
            all.push(one);
        }
    }
    let _ = std::process::Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=0"])
        .status();
    drop(lab);

    let md = markdown(&all, runs);
    print!("\n{md}");
    save(
        out,
        "footprint",
        json!({
            "settings": {
                "services": SERVICES, "backends": BACKENDS, "connections": CONNECTIONS,
                "events_per_s_per_connection": EVENT_RATE, "window_s": WINDOW.as_secs(),
                "runs": runs, "haproxy_threads": HAPROXY_THREADS,
            },
            "summary": summary(&all),
            "runs": all,
            "markdown": md,
        }),
    )
}

/// One fo run: a fresh agent, the idle window, the fleets, the loaded window.
fn fo_run(lab: &mut Lab, out: &Path, dir: &Path, run: usize) -> anyhow::Result<Run> {
    let t0 = Instant::now();
    let prog = start_fo(lab, out, dir)?;
    let ready_s = t0.elapsed().as_secs_f64();
    let pid = lab.nodes[0]
        .runs
        .last()
        .map(Proc::pid)
        .context("the agent's process")?;
    let res = (|| {
        let maps = bpf_maps_kib(prog)?;
        let (idle, connect_s, load) = windows(lab, dir, &[pid], Some(prog))?;
        Ok(Run {
            system: System::Fo,
            run,
            ready_s,
            connect_s,
            idle,
            load,
            bpf_maps_kib: Some(maps.iter().map(|(_, k)| k).sum()),
            bpf_maps: maps,
        })
    })();
    scale::clear_agent(lab, BACKENDS, SERVICES)?;
    res
}

/// One run of keepalived + HAProxy, as [`fo_run`].
fn pair_run(lab: &Lab, pair: &PairConfigs, dir: &Path, run: usize) -> anyhow::Result<Run> {
    let t0 = Instant::now();
    let procs = start_pair(lab, pair, dir, run)?;
    let ready_s = t0.elapsed().as_secs_f64();
    let roots: Vec<u32> = procs.iter().map(Proc::pid).collect();
    let res = windows(lab, dir, &roots, None);
    stop_pair(lab, procs)?;
    let (idle, connect_s, load) = res?;
    Ok(Run {
        system: System::Pair,
        run,
        ready_s,
        connect_s,
        idle,
        load,
        bpf_maps_kib: None,
        bpf_maps: Vec::new(),
    })
}

/// The idle window, the fleets' connects, the loaded window; the fleets are stopped and
/// their connections gone before it returns.
fn windows(
    lab: &Lab,
    dir: &Path,
    roots: &[u32],
    prog: Option<u64>,
) -> anyhow::Result<(Window, f64, Window)> {
    std::thread::sleep(SETTLE);
    let idle = window(lab, roots, prog)?;
    let t0 = Instant::now();
    let fleets = start_fleets(lab, dir)?;
    let res = wait_established(lab, CONNECTIONS as usize).and_then(|()| {
        let connect_s = t0.elapsed().as_secs_f64();
        std::thread::sleep(SETTLE);
        Ok((connect_s, window(lab, roots, prog)?))
    });
    drop(fleets);
    wait_established(lab, 0)?;
    let (connect_s, load) = res?;
    if load.established < CONNECTIONS as usize {
        bail!(
            "only {} of {CONNECTIONS} connections stayed established during the window",
            load.established
        );
    }
    Ok((idle, connect_s, load))
}
