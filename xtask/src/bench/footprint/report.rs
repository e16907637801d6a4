//! The footprint bench's report: the table (fo and the pair, idle and loaded) and its
//! JSON summary.

use serde_json::Value;

use super::*;
use crate::bench::{fmt_mmm, mmm, mmm_json};

/// A run's window in one state.
type Pick = fn(&Run) -> &Window;

/// The two states a window is taken in.
const STATES: [(&str, Pick); 2] = [("idle", |r| &r.idle), ("10,000 connections", |r| &r.load)];

fn of(runs: &[Run], system: System) -> Vec<&Run> {
    runs.iter().filter(|r| r.system == system).collect()
}

fn col(runs: &[&Run], f: impl Fn(&Run) -> f64) -> Vec<f64> {
    runs.iter().map(|r| f(r)).collect()
}

fn median(v: &[f64]) -> f64 {
    mmm(v).map(|(_, m, _)| m).unwrap_or(f64::NAN)
}

const MIB: f64 = 1024.0;

/// `n` with a comma every three digits, as the prose writes numbers.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Per state: the medians of RSS and CPU of both systems, fo's share of the pair's, and
/// whether fo is below the pair on both.
pub(super) fn summary(runs: &[Run]) -> Value {
    let (fo, pair) = (of(runs, System::Fo), of(runs, System::Pair));
    let mut out = serde_json::Map::new();
    for (state, w) in STATES {
        let rss = |v: &[&Run]| median(&col(v, |r| w(r).rss_kib as f64 / MIB));
        let cpu = |v: &[&Run]| median(&col(v, |r| w(r).cpu_pct));
        let sched = |v: &[&Run]| median(&col(v, |r| w(r).sched_pct));
        let (fr, pr, fc, pc) = (rss(&fo), rss(&pair), cpu(&fo), cpu(&pair));
        let (fs, ps) = (sched(&fo), sched(&pair));
        out.insert(
            state.into(),
            json!({
                "fo_rss_mib": fr, "pair_rss_mib": pr, "fo_cpu_pct": fc, "pair_cpu_pct": pc,
                "fo_sched_pct": fs, "pair_sched_pct": ps,
                "fo_below_pair_rss": fr < pr, "fo_below_pair_cpu": fs < ps,
                "fo_xdp_pct": mmm_json(&col(&fo, |r| w(r).xdp_pct.unwrap_or(f64::NAN))),
                "fo_bpf_maps_mib": mmm_json(&col(&fo, |r| r.bpf_maps_kib.unwrap_or(0) as f64 / MIB)),
            }),
        );
    }
    Value::Object(out)
}

pub(super) fn markdown(runs: &[Run], n: usize) -> String {
    let mut md = format!(
        "## Footprint: fo vs keepalived + HAProxy, idle and with 10,000 connections\n\n\
         The same configuration on the same LB node, one system at a time, in one run: \
         {SERVICES} services × {BACKENDS} backends (fo: {SERVICES} DSR services on the \
         VIP, ports {BASE_PORT}–{}, 5-tuple hash, each with the same {BACKENDS} backend \
         addresses, static ownership of the VIP, generic XDP; the pair: keepalived, one \
         VRRPv3 instance holding the VIP, and HAProxy 2.6 in TCP mode, {SERVICES} frontends \
         on the VIP × {BACKENDS} servers, roundrobin, in {HAPROXY_PROCS} processes of \
         {} thread(s) with {} frontends each: a proxied connection holds two sockets, and \
         this machine's hard limit of 20,000 open files per process, which root cannot \
         raise here, is below what one process needs for {conns} connections; the \
         second process's own base memory counts against the pair). The \
         backends are the scale bench's (three namespaces holding the {BACKENDS} addresses \
         from 198.18.0.0/15), each running an `fo-sink` per port. *Idle*: a \
         {win} s window {settle} s after the system is ready (fo: every one of the \
         {entries} backend entries resolved). *10,000 connections*: {SERVICES} `fo-fleet`s, \
         one per service, {conns} long-lived connections in all, each sending \
         {EVENT_RATE} event a second (acknowledged by the sinks), a {win} s window {settle} s \
         after the client holds all of them established. {n} runs per system, fo and the \
         pair alternating (fo, pair, pair, fo, …); min / median / max.\n\n\
         **RSS** is VmRSS at the window's end and **peak RSS** VmHWM, both from \
         /proc/PID/status, summed over the system's processes (fo: the agent, one process; \
         the pair: keepalived's parent and its VRRP child, and the HAProxy processes); for the pair the \
         peak is a sum of each process's own peak. **CPU** is utime + stime \
         (/proc/PID/stat) over the window, % of one core, summed likewise; it counts 10 ms \
         ticks (0.1 % of a core over the window), so **on-CPU** gives the same from the \
         scheduler's own accounting at ns resolution (/proc/PID/task/*/schedstat, every \
         thread), the figure the idle rows compare by. Neither figure \
         holds kernel work: fo's data plane is kernel memory and kernel CPU, so its **BPF \
         maps** (the `bytes_memlock` of every map its XDP program uses, from `bpftool`: \
         the flow and NAT tables are preallocated, so this is also their size under load) \
         and its **XDP run time** (the program's own time from the kernel's BPF stats, % \
         of one core) stand beside it; the pair's kernel side (20,000 TCP sockets' buffers \
         and the softirq work of proxying) is in no column. **VM** is the whole VM's busy \
         time (client, sinks, LB), % of its 2 cores.\n\n\
         | system | state | processes | threads | RSS MiB | peak RSS MiB | CPU % of a core | on-CPU % of a core | fo BPF maps MiB | fo XDP run time % of a core | VM busy % |\n\
         |---|---|---:|---:|---|---|---|---|---|---|---|\n",
        BASE_PORT + SERVICES - 1,
        HAPROXY_THREADS / u32::from(HAPROXY_PROCS),
        SERVICES / HAPROXY_PROCS,
        win = WINDOW.as_secs(),
        settle = SETTLE.as_secs(),
        entries = thousands(BACKENDS * usize::from(SERVICES)),
        conns = thousands(CONNECTIONS as usize),
    );
    for system in [System::Fo, System::Pair] {
        let v = of(runs, system);
        for (state, w) in STATES {
            let maps = match system {
                System::Fo => fmt_mmm(&col(&v, |r| r.bpf_maps_kib.unwrap_or(0) as f64 / MIB), 1),
                System::Pair => "–".into(),
            };
            let xdp = match system {
                System::Fo => fmt_mmm(&col(&v, |r| w(r).xdp_pct.unwrap_or(f64::NAN)), 3),
                System::Pair => "–".into(),
            };
            md.push_str(&format!(
                "| {} | {state} | {} | {} | {} | {} | {} | {} | {maps} | {xdp} | {} |\n",
                system.label(),
                fmt_mmm(&col(&v, |r| w(r).processes as f64), 0),
                fmt_mmm(&col(&v, |r| w(r).threads as f64), 0),
                fmt_mmm(&col(&v, |r| w(r).rss_kib as f64 / MIB), 1),
                fmt_mmm(&col(&v, |r| w(r).hwm_kib as f64 / MIB), 1),
                fmt_mmm(&col(&v, |r| w(r).cpu_pct), 2),
                fmt_mmm(&col(&v, |r| w(r).sched_pct), 3),
                fmt_mmm(&col(&v, |r| w(r).vm_pct), 1),
            ));
        }
    }
    let s = summary(runs);
    md.push_str("\nMedians, fo against the pair:");
    for (state, _) in STATES {
        let x = &s[state];
        let f = |k: &str| x[k].as_f64().unwrap_or(f64::NAN);
        md.push_str(&format!(
            " {state}: RSS {:.1} vs {:.1} MiB, CPU {:.2} vs {:.2} % of a core (on-CPU {:.3} vs {:.3} %);",
            f("fo_rss_mib"),
            f("pair_rss_mib"),
            f("fo_cpu_pct"),
            f("pair_cpu_pct"),
            f("fo_sched_pct"),
            f("pair_sched_pct"),
        ));
    }
    md.pop();
    if let Some(r) = runs.iter().find(|r| r.system == System::Fo) {
        let top: Vec<String> = r
            .bpf_maps
            .iter()
            .take(4)
            .map(|(name, kib)| format!("{name} {:.1} MiB", *kib as f64 / MIB))
            .collect();
        md.push_str(&format!(
            ". fo's largest BPF maps ({} in all): {}",
            r.bpf_maps.len(),
            top.join(", ")
        ));
    }
    md.push_str(&format!(
        ". Time to ready: fo {} s, the pair {} s; the {} connections established \
         in fo {} s, the pair {} s.\n",
        fmt_mmm(&col(&of(runs, System::Fo), |r| r.ready_s), 1),
        fmt_mmm(&col(&of(runs, System::Pair), |r| r.ready_s), 1),
        thousands(CONNECTIONS as usize),
        fmt_mmm(&col(&of(runs, System::Fo), |r| r.connect_s), 1),
        fmt_mmm(&col(&of(runs, System::Pair), |r| r.connect_s), 1),
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(6400), "6,400");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
