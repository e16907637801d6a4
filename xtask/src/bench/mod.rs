//! `cargo xtask bench`: fo against the baseline it replaces (keepalived + HAProxy), on
//! the same namespace lab (see [`crate::lab`]), each scenario repeated and reported as
//! min / median / max.
//!
//! Every scenario writes `target/bench/<scenario>.json` (its figures, settings and its
//! markdown section); `report.md` and `report.json` are then rebuilt from every scenario
//! file present, so `cargo xtask bench failover` refreshes one section and keeps the
//! others (each section says when it was run). The generated keepalived, HAProxy and fo
//! configs are kept in `target/bench/configs/`, logs of the last run in
//! `target/bench/logs/`. The directory is the workspace's `target/bench` (where the
//! `dataplane` bench writes too), whatever `CARGO_TARGET_DIR` says about binaries.

mod baseline;
mod failover;
mod floor;
mod footprint;
mod scale;
mod scaleout;
mod stress;
mod sync;
mod takeover;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::lab::Bins;

use crate::util::root;

/// The connection load of every HTTP row (throughput, scale, scaleout), so that their
/// figures compare: `wrk` with this many connections in flight, for this many seconds.
pub const WRK_CONNS: u32 = 50;
pub const WRK_SECS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchKind {
    /// fo vs keepalived + HAProxy: master failed (kill -9, link down) or handed over
    /// (planned switchover) under a fleet.
    Failover,
    /// NAT connection-state sync: a restarted backup's snapshot of 100k and 1M
    /// connections (issue 17).
    Sync,
    /// fo/fo takeover time after kill -9 of the master, 10, 20 and 100 ms adverts (issue 3).
    Takeover,
    /// iperf3, connections/s and latency: fo DSR vs HAProxy vs no LB.
    Throughput,
    /// Connection rate, latency and XDP ns/packet with 1/100/1,000 backends × 1/64 services.
    Scale,
    /// Per-packet cost of the XDP program (BPF_PROG_TEST_RUN), 3 and 1,000 backends;
    /// A/B against the object of `--baseline REV` (default main).
    Dataplane,
    /// Active-active over BGP: 1/2/3 nodes behind an ECMP router, and a node's loss.
    Scaleout,
    /// RSS and CPU of fo-agent vs keepalived + HAProxy, idle and with 10,000 connections
    /// over 64 services × 100 backends (and fo's BPF maps and XDP time beside them).
    Footprint,
    /// A fo pair while stress-ng saturates both cores (`--stress`, 5 min) at 20 and
    /// 10 ms adverts: spurious transitions (issue 20).
    Stress,
}

impl BenchKind {
    fn name(self) -> &'static str {
        match self {
            BenchKind::Failover => "failover",
            BenchKind::Sync => "sync",
            BenchKind::Takeover => "takeover",
            BenchKind::Throughput => "throughput",
            BenchKind::Scale => "scale",
            BenchKind::Dataplane => "dataplane",
            BenchKind::Scaleout => "scaleout",
            BenchKind::Footprint => "footprint",
            BenchKind::Stress => "stress",
        }
    }
}

/// Order of the sections in the report.
const ALL: [BenchKind; 9] = [
    BenchKind::Failover,
    BenchKind::Stress,
    BenchKind::Sync,
    BenchKind::Takeover,
    BenchKind::Throughput,
    BenchKind::Scale,
    BenchKind::Footprint,
    BenchKind::Scaleout,
    BenchKind::Dataplane,
];

#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Runs per failover variant and failure.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Kills per advert interval in the fo/fo takeover bench.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Data-plane bench: the git revision whose XDP object is measured beside this
    /// build's (A/B, in the same run).
    #[arg(long, value_name = "REV", default_value = "main")]
    pub baseline: String,
    /// Data-plane bench: measure this build's object alone.
    #[arg(long)]
    pub no_baseline: bool,
    /// Failover bench: only these variants (keys as in failover.json, e.g.
    /// `fo-v3-10ms,ka-v3-100ms`); default every one. The report then holds only these.
    #[arg(long, value_delimiter = ',', value_name = "KEY")]
    pub variants: Vec<String>,
    /// Failover bench: only these failures (`kill9`, `link-down`, `planned`); default all.
    #[arg(long, value_delimiter = ',', value_name = "KEY")]
    pub failures: Vec<String>,
    /// Stress bench: how long both cores are saturated per advert interval (a dev run:
    /// `--stress 60s`).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::chaos::parse_duration)]
    pub stress: std::time::Duration,
}

/// Where the benches write.
pub fn out_dir() -> PathBuf {
    root().join("target/bench")
}

pub fn run(which: Option<BenchKind>, opts: &Opts) -> anyhow::Result<()> {
    let kinds: Vec<BenchKind> = which.map(|w| vec![w]).unwrap_or_else(|| ALL.to_vec());
    let out = out_dir();
    std::fs::create_dir_all(out.join("configs")).context("create target/bench/configs")?;
    let started = Instant::now();
    let needs_lab = kinds.iter().any(|k| *k != BenchKind::Dataplane);
    let bins = if needs_lab {
        Some(Bins::build_release()?)
    } else {
        None
    };
    let mut failed = Vec::new();
    for k in kinds {
        let t = Instant::now();
        eprintln!("\n=== bench {} ===", k.name());
        let result = match (k, &bins) {
            (BenchKind::Failover, Some(b)) => failover::run(b, opts, &out),
            (BenchKind::Sync, Some(b)) => sync::run(b, opts, &out),
            (BenchKind::Takeover, Some(b)) => takeover::run(b, opts, &out),
            (BenchKind::Stress, Some(b)) => stress::run(b, opts, &out),
            (BenchKind::Throughput, Some(b)) => throughput::run(b, opts, &out),
            (BenchKind::Scale, Some(b)) => scale::run(b, opts, &out),
            (BenchKind::Scaleout, Some(b)) => scaleout::run(b, opts, &out),
            (BenchKind::Footprint, Some(b)) => footprint::run(b, opts, &out),
            (BenchKind::Dataplane, _) => dataplane(opts),
            _ => unreachable!("binaries are built for every lab bench"),
        };
        match result {
            Ok(()) => eprintln!(
                "bench {}: done in {:.0} s",
                k.name(),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("bench {} failed: {e:#}", k.name());
                failed.push(format!("{}: {e:#}", k.name()));
            }
        }
    }
    write_report(&out)?;
    eprintln!(
        "\nbench: {:.0} s in all; report {}",
        started.elapsed().as_secs_f64(),
        out.join("report.md").display()
    );
    if !failed.is_empty() {
        anyhow::bail!("benches failed:\n{}", failed.join("\n"));
    }
    Ok(())
}

/// The data-plane bench, A/B against the baseline's object unless `--no-baseline`.
fn dataplane(opts: &Opts) -> anyhow::Result<()> {
    if opts.no_baseline {
        return crate::test::bench_dataplane(None);
    }
    let (object, commit) = baseline::object(&opts.baseline)?;
    crate::test::bench_dataplane(Some((&object, &opts.baseline, &commit)))
}

/// Write a scenario's document (`figures` must carry a `markdown` section).
fn save(out: &Path, name: &str, mut doc: Value) -> anyhow::Result<()> {
    doc["scenario"] = json!(name);
    doc["finished_unix_s"] = json!(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("write {}", path.display()))
}

/// `report.md` and `report.json` from every scenario file present.
fn write_report(out: &Path) -> anyhow::Result<()> {
    let mut md = String::from(
        "# fo benchmarks\n\nfo against the system it replaces (keepalived 2.2.7 + HAProxy 2.6), \
         side by side in one run on the same namespace lab (one bridge; client, two LB nodes, \
         backends; everything on this VM's 2 cores). Each figure is min / median / max over \
         the runs stated. Regenerate: `cargo xtask bench [failover|stress|sync|takeover|throughput|scale|footprint|scaleout|dataplane]`; \
         configs in [configs/](configs/).\n",
    );
    let mut all = serde_json::Map::new();
    for k in ALL {
        let name = k.name();
        if k == BenchKind::Dataplane {
            if let Ok(text) = std::fs::read_to_string(out.join("dataplane.md")) {
                md.push_str("\n## Data plane: per-packet cost (BPF_PROG_TEST_RUN)\n\n");
                md.push_str(&demote_headings(&text));
                md.push('\n');
                if let Ok(v) = std::fs::read(out.join("dataplane.json"))
                    && let Ok(v) = serde_json::from_slice::<Value>(&v)
                {
                    all.insert(name.into(), v);
                }
            } else {
                md.push_str("\n## Data plane\n\nNot run yet (`cargo xtask bench dataplane`).\n");
            }
            continue;
        }
        let Ok(bytes) = std::fs::read(out.join(format!("{name}.json"))) else {
            md.push_str(&format!(
                "\n## {name}\n\nNot run yet (`cargo xtask bench {name}`).\n"
            ));
            continue;
        };
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("parse target/bench/{name}.json"))?;
        md.push('\n');
        md.push_str(v["markdown"].as_str().unwrap_or(""));
        all.insert(name.into(), v);
    }
    std::fs::write(out.join("report.md"), md).context("write report.md")?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&Value::Object(all))?,
    )
    .context("write report.json")
}

/// Push a markdown file's headings two levels down, under the report's `##`.
fn demote_headings(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("##{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// min, median, max (the median of an even count is the mean of the middle two).
pub fn mmm(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((s[0], med, s[n - 1]))
}

/// `min / median / max` with `prec` decimals, or `n/a`.
pub fn fmt_mmm(v: &[f64], prec: usize) -> String {
    match mmm(v) {
        Some((a, _, b)) if a == b => format!("{a:.prec$}"),
        Some((a, m, b)) => format!("{a:.prec$} / {m:.prec$} / {b:.prec$}"),
        None => "n/a".into(),
    }
}

pub fn mmm_json(v: &[f64]) -> Value {
    match mmm(v) {
        Some((a, m, b)) => json!({"min": a, "median": m, "max": b, "n": v.len()}),
        None => Value::Null,
    }
}

/// Milliseconds from `a` to `b` (negative if `b` is earlier).
pub fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// Copy a generated config into `target/bench/configs/` under `name`.
pub fn keep_config(out: &Path, from: &Path, name: &str) -> anyhow::Result<()> {
    let to = out.join("configs").join(name);
    std::fs::copy(from, &to)
        .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    Ok(())
}
