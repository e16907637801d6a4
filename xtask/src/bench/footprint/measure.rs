//! The footprint bench's measurements: a system's processes (resident memory, CPU time)
//! over a window, and the size of fo's BPF maps.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use super::*;
use crate::bench::throughput::{bpf_stats, proc_cpu_ns, vm_busy_ns};

/// `root` and every process descending from it (keepalived's VRRP child, a wrapper's
/// exec'd program), from each process's parent in /proc/PID/stat.
pub(super) fn tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // After the comm: state, then the parent's pid.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = BTreeSet::from([root]);
    loop {
        let more: Vec<u32> = parents
            .iter()
            .filter(|(pid, ppid)| found.contains(ppid) && !found.contains(pid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            return found.into_iter().collect();
        }
        found.extend(more);
    }
}

/// A `Key:   1234 kB` (or plain count) line of /proc/PID/status.
fn status_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What the processes hold and have used so far.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    processes: usize,
    threads: u64,
    rss_kib: u64,
    hwm_kib: u64,
    cpu_ns: u64,
    /// Time on a CPU from the scheduler's own accounting, every thread (ns resolution,
    /// where utime + stime count 10 ms ticks).
    sched_ns: u64,
}

/// The time on a CPU of every thread of `pid` so far (/proc/PID/task/*/schedstat), ns.
fn sched_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| {
            let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

fn usage(pids: &[u32]) -> Usage {
    let mut u = Usage::default();
    for &pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        u.processes += 1;
        u.threads += status_field(&status, "Threads");
        u.rss_kib += status_field(&status, "VmRSS");
        u.hwm_kib += status_field(&status, "VmHWM");
        u.cpu_ns += proc_cpu_ns(pid).unwrap_or(0);
        u.sched_ns += sched_ns(pid);
    }
    u
}

/// [`WINDOW`] over the process trees of `roots` (and fo's XDP program `prog`): CPU over
/// the window, memory at its end.
pub(super) fn window(lab: &Lab, roots: &[u32], prog: Option<u64>) -> anyhow::Result<Window> {
    let pids: Vec<u32> = roots.iter().flat_map(|&r| tree(r)).collect();
    let (u0, vm0, x0) = (usage(&pids), vm_busy_ns(), prog.and_then(bpf_stats));
    std::thread::sleep(WINDOW);
    let (u1, vm1, x1) = (usage(&pids), vm_busy_ns(), prog.and_then(bpf_stats));
    if u1.processes < pids.len() {
        bail!(
            "{} of the system's {} processes exited during the window",
            pids.len() - u1.processes,
            pids.len()
        );
    }
    let win_ns = WINDOW.as_nanos() as f64;
    Ok(Window {
        processes: u1.processes,
        threads: u1.threads,
        rss_kib: u1.rss_kib,
        hwm_kib: u1.hwm_kib,
        cpu_pct: u1.cpu_ns.saturating_sub(u0.cpu_ns) as f64 / win_ns * 100.0,
        sched_pct: u1.sched_ns.saturating_sub(u0.sched_ns) as f64 / win_ns * 100.0,
        xdp_pct: match (x0, x1) {
            (Some((a, _)), Some((b, _))) => Some(b.saturating_sub(a) as f64 / win_ns * 100.0),
            _ => None,
        },
        vm_pct: vm1.saturating_sub(vm0) as f64 / (2.0 * win_ns) * 100.0,
        established: established(lab)?,
    })
}

/// The memory of each BPF map XDP program `prog` uses (`bytes_memlock`, which the
/// kernel reports as the map's memory use): name and KiB, the largest first.
pub(super) fn bpf_maps_kib(prog: u64) -> anyhow::Result<Vec<(String, u64)>> {
    let show = |what: &str, id: u64| -> anyhow::Result<Value> {
        let out = Command::new("bpftool")
            .args([what, "show", "id", &id.to_string(), "--json"])
            .output()
            .context("spawn bpftool")?;
        if !out.status.success() {
            bail!(
                "bpftool {what} show id {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parse bpftool's JSON")
    };
    let ids: Vec<u64> = show("prog", prog)?["map_ids"]
        .as_array()
        .context("bpftool prog show: no map_ids")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let mut maps = Vec::new();
    for id in ids {
        let m = show("map", id)?;
        let bytes = m["bytes_memlock"]
            .as_u64()
            .with_context(|| format!("map {id}: no bytes_memlock"))?;
        let name = m["name"].as_str().unwrap_or("?").to_owned();
        maps.push((name, bytes / 1024));
    }
    maps.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    Ok(maps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_in_kib_and_counts() {
        let s = "Name:\tfo-agent\nVmHWM:\t   48120 kB\nVmRSS:\t   47044 kB\nThreads:\t4\n";
        assert_eq!(status_field(s, "VmRSS"), 47044);
        assert_eq!(status_field(s, "VmHWM"), 48120);
        assert_eq!(status_field(s, "Threads"), 4);
        assert_eq!(status_field(s, "VmSwap"), 0);
    }

    #[test]
    fn a_tree_holds_its_root_and_its_children() {
        let mut child = Command::new("sleep").arg("5").spawn().expect("spawn sleep");
        let me = std::process::id();
        let t = tree(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(t.contains(&me), "{t:?}");
        assert!(t.contains(&child.id()), "{t:?}");
        assert!(usage(&[me]).rss_kib > 0);
    }
}
