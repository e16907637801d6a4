//! Robustness under load (issue 20): a fo pair (VRRPv3 unicast, a master at priority 200,
//! b backup at 100, no fleet) while `stress-ng` saturates both cores with CPU and memory
//! stressors for `--stress` (default 5 min), at 20 ms and at 10 ms adverts. Nothing
//! fails, so every VRRP transition either node logs during the stress is spurious: a
//! backup that missed three adverts, or a master that could not send them in time.
//!
//! The stressors run on the host (the CPU is shared by every namespace): `--cpu 2`
//! (matrix and float loops) and `--vm 2` (each worker writing and checking its own
//! anonymous memory), four workers on two cores. The busy share of both cores during the
//! stress is read from /proc/stat, so the report shows the load was there. A third row
//! runs 10 ms adverts with `fo-agent run --no-realtime`: the same agents without their
//! timing measures, so the report shows what those buy.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::takeover::{BACKUP_PRIO, master_down_ms, pair_lab};
use super::{Opts, save};
use crate::lab::Bins;

/// Advert interval and whether the agents may use their timing measures (real-time VRRP
/// thread, timer slack, locked memory); the last row runs them with `--no-realtime`, the
/// agent as it was before, for comparison.
const ROWS: [(u64, bool); 3] = [(20, true), (10, true), (10, false)];
/// Memory each `--vm` worker keeps writing.
const VM_BYTES: &str = "256M";

struct Row {
    interval_ms: u64,
    realtime: bool,
    busy_pct: f64,
    /// Transitions logged during the stress, per node.
    transitions: Vec<(String, usize)>,
    /// How the agents' VRRP thread was scheduled (their own log line).
    scheduling: String,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (interval, realtime) in ROWS {
        let row = one_interval(bins, interval, realtime, opts.stress, out)
            .with_context(|| format!("stress at {interval} ms adverts"))?;
        rows.push(row);
    }
    let secs = opts.stress.as_secs();
    let mut md = format!(
        "## Robustness: {secs} s of both cores saturated, no failure (issue 20)\n\n\
         A fo pair (VRRPv3 unicast, priorities 200 and 100, no fleet) while `stress-ng --cpu 2 \
         --vm 2 --vm-bytes {VM_BYTES}` saturates this VM's 2 cores for {secs} s per row. \
         Nothing fails, so any transition is spurious. **agent**: `--no-realtime` runs the \
         agents without their timing measures (real-time VRRP thread, 1 ns timer slack, \
         locked memory), for comparison. **busy**: the cores' busy share \
         during the stress (/proc/stat). **VRRP thread**: how the agents scheduled their \
         VRRP timing thread (their start-up log line).\n\n\
         | advert | agent | MDI ms | stress s | busy % | VRRP thread | spurious transitions (a / b) |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for r in &rows {
        let per: Vec<String> = r.transitions.iter().map(|(_, n)| n.to_string()).collect();
        let total: usize = r.transitions.iter().map(|(_, n)| n).sum();
        md.push_str(&format!(
            "| {} ms | {} | {:.1} | {secs} | {:.0} | {} | **{total}** ({}) |\n",
            r.interval_ms,
            if r.realtime {
                "default"
            } else {
                "`--no-realtime`"
            },
            master_down_ms(fo_vrrp::Version::V3, r.interval_ms as f64, BACKUP_PRIO),
            r.busy_pct,
            r.scheduling,
            per.join(" / "),
        ));
    }
    md.push_str("\nLogs: `logs/stress-<advert>ms/`, `logs/stress-normal-<advert>ms/`.\n");
    print!("\n{md}");
    save(
        out,
        "stress",
        json!({
            "settings": {"stress_s": secs, "stressors": format!("--cpu 2 --vm 2 --vm-bytes {VM_BYTES}"), "vrrp": "v3 unicast", "priorities": [200, 100]},
            "rows": rows.iter().map(|r| json!({
                "advert_interval_ms": r.interval_ms,
                "realtime": r.realtime,
                "busy_pct": r.busy_pct,
                "vrrp_thread": r.scheduling,
                "transitions": r.transitions.iter().map(|(n, c)| json!({"node": n, "count": c})).collect::<Vec<_>>(),
                "spurious_transitions": r.transitions.iter().map(|(_, n)| n).sum::<usize>(),
            })).collect::<Vec<_>>(),
            "markdown": md,
        }),
    )
}

fn one_interval(
    bins: &Bins,
    interval: u64,
    realtime: bool,
    stress: Duration,
    out: &Path,
) -> anyhow::Result<Row> {
    let (what, args): (&str, &[&str]) = if realtime {
        ("stress", &[])
    } else {
        ("stress-normal", &["--no-realtime"])
    };
    let lab = pair_lab(bins, what, interval, args, out)?;
    std::thread::sleep(Duration::from_secs(1));
    let started = SystemTime::now();
    let before = cpu_times()?;
    eprintln!("stress {interval} ms: stress-ng for {} s", stress.as_secs());
    let status = Command::new("stress-ng")
        .args(["--cpu", "2", "--vm", "2", "--vm-bytes", VM_BYTES, "--quiet"])
        .arg("--timeout")
        .arg(format!("{}s", stress.as_secs().max(1)))
        .status()
        .context("run stress-ng (cargo xtask setup installs it)")?;
    let after = cpu_times()?;
    if !status.success() {
        bail!("stress-ng failed: {status}");
    }
    // Adverts in flight when the stress ended are still heard within one interval.
    std::thread::sleep(Duration::from_millis(4 * interval));
    let busy_pct = 100.0 * (1.0 - (after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64);
    let transitions: Vec<(String, usize)> = lab
        .nodes
        .iter()
        .map(|n| {
            let t = n
                .transitions()
                .into_iter()
                .filter(|t| t.at >= started)
                .count();
            (n.name.clone(), t)
        })
        .collect();
    let scheduling = vrrp_thread(&lab.nodes[0]);
    eprintln!(
        "stress {interval} ms: busy {busy_pct:.0} %, transitions {transitions:?}, VRRP thread {scheduling}"
    );
    Ok(Row {
        interval_ms: interval,
        realtime,
        busy_pct,
        transitions,
        scheduling,
    })
}

/// (all, idle + iowait) jiffies of every CPU, from /proc/stat's `cpu` line.
fn cpu_times() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        bail!("unexpected /proc/stat line {line:?}");
    }
    Ok((v.iter().sum(), v[3] + v[4]))
}

/// The agent's own account of its VRRP thread's scheduling (`realtime` log lines).
fn vrrp_thread(node: &crate::lab::Node) -> String {
    let Some(run) = node.runs.last() else {
        return "n/a".into();
    };
    run.lock()
        .iter()
        .filter_map(|(_, l)| crate::lab::log_fields(l))
        .find_map(|f| {
            f.get("scheduling")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "normal (not logged)".into())
}
