//! The NAT connection-state sync at scale (issue 17): how long a restarted backup takes
//! to hold the master's whole NAT table again, at 100,000 and 1,000,000 connections.
//!
//! Two fo agents in NAT mode with `sync` (a: priority 150, master; b: 100), generic
//! XDP, release build. The master's table is filled with `fo-natfill` (made-up
//! established connections written into its pinned maps, as its program would have:
//! no Update ever announced them), then b is killed (kill -9) and started again,
//! `--runs` times per size (3 at most). It asks a for a snapshot; a walks its table
//! on a blocking thread and sends it paced by b's acknowledgements. Figures, from the
//! agents' own log lines:
//! - b: from wanting the snapshot (its start) to its complete end (`seconds` of
//!   `sync: snapshot complete`), with the datagrams and requests it took;
//! - a: from the request to the end sent (`seconds` of `sync: snapshot sent`: the walk
//!   and the paced sending);
//! - wall: from b's `running` to the complete line, as xtask read them.
//!
//! Every run checks completeness: the snapshot's end counts what was sent and b
//! compares; the bench fails unless b states exactly the size, and after the last run
//! of each size `fo-agent status` on b must count exactly that many connections.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Opts, fmt_mmm, keep_config, mmm_json, ms_between, save};
use crate::lab::config::{XDP_MODE, vrrp_router};
use crate::lab::{Bins, Lab, Spec, log_fields};
use crate::util::output_ok;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const SIZES: [u32; 2] = [100_000, 1_000_000];
const MAX_RUNS: usize = 3;
/// Longest wait for one snapshot.
const SNAPSHOT_MAX: Duration = Duration::from_secs(300);

fn body(priority: u8, peer: Ipv4Addr, key: &Path) -> String {
    let router = vrrp_router("bench", 53, 3, priority, 100, VIP, peer);
    // `write_config` puts the body after [node]: the first lines belong to [node].
    format!(
        r#"sync = {{ peers = ["{peer}"], key_file = "{key}" }}
nat_table_size = 1048576

{router}snat = ["{SNAT}"]

[[service]]
vip = "{VIP}"
port = 1514
mode = "nat"
backends = [{{ address = "192.0.2.21", port = 11514 }}]
"#,
        key = key.display()
    )
}

struct Run {
    b_seconds: f64,
    a_seconds: Option<f64>,
    wall_seconds: f64,
    datagrams: u64,
    asks: u64,
    incomplete: usize,
}

/// A numeric field of a JSON log line (tracing writes some as strings).
fn num(f: &serde_json::Map<String, Value>, k: &str) -> Option<f64> {
    match f.get(k)? {
        Value::String(s) => s.parse().ok(),
        v => v.as_f64(),
    }
}

fn message_is(line: &str, msg: &str) -> Option<serde_json::Map<String, Value>> {
    let f = log_fields(line)?;
    (f.get("message").and_then(Value::as_str) == Some(msg)).then_some(f)
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let runs = opts.runs.clamp(1, MAX_RUNS);
    let spec = Spec::pair("fo-bsync", VIP, 1514);
    let dir = out.join("logs").join("sync");
    let _ = std::fs::remove_dir_all(&dir);
    let mut lab = Lab::build(&spec, bins.clone(), &dir)?;
    let key = dir.join("sync.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&key, b"fo-bench-sync-key-0123456789abcdef")?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    let (a_addr, b_addr) = (lab.nodes[0].addr, lab.nodes[1].addr);
    lab.node("a")
        .write_config(XDP_MODE, &body(150, b_addr, &key))?;
    lab.node("b")
        .write_config(XDP_MODE, &body(100, a_addr, &key))?;
    keep_config(out, &lab.nodes[0].config, "sync-a.toml")?;
    keep_config(out, &lab.nodes[1].config, "sync-b.toml")?;
    lab.start_pair(Duration::from_secs(15))?;

    let mut filled = 0u32;
    let mut per_size = Vec::new();
    for size in SIZES {
        let pin_dir = lab.nodes[0].bpf_dir.clone();
        let mut cmd = Command::new(&bins.natfill);
        cmd.arg("--pin-dir")
            .arg(&pin_dir)
            .args(["--vip", &VIP.to_string(), "--snat", &SNAT.to_string()])
            .args(["--first", &filled.to_string()])
            .args(["--count", &(size - filled).to_string()]);
        let fill = output_ok(&mut cmd, "fo-natfill")?;
        eprintln!("sync: {}", String::from_utf8_lossy(&fill.stdout).trim());
        filled = size;
        let mut rows = Vec::new();
        for i in 0..runs {
            let r = restart_backup(&mut lab, bins, size)
                .with_context(|| format!("snapshot of {size} connections, run {}", i + 1))?;
            eprintln!(
                "sync {size}: b current after {:.2} s (a sent in {:?} s), {} datagrams, {} request(s), {} incomplete",
                r.b_seconds, r.a_seconds, r.datagrams, r.asks, r.incomplete
            );
            rows.push(r);
        }
        let held = b_connections(&lab, bins)?;
        if held != u64::from(size) {
            bail!("b holds {held} connections after the snapshot of {size}");
        }
        per_size.push((size, rows, held));
    }

    let mut md = String::from(
        "## NAT connection-state sync: a restarted backup's snapshot (issue 17)\n\n\
         Two fo agents, NAT mode with `sync`, generic XDP, release build; the master's \
         table is filled with `fo-natfill` (established connections written into its \
         pinned maps), then the backup is killed (kill -9) and started again. It asks for \
         a snapshot; the master walks its table on a blocking thread and sends it at most \
         64 datagrams (32 connections each) ahead of the backup's acknowledgements; the \
         end counts what was sent and the backup compares. Times from the agents' own \
         log lines.\n\n\
         | connections | runs | backup: start → table current, s | master: request → end sent, s | wall: `running` → current line, s | datagrams | requests | incomplete | backup holds after |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut doc_rows = Vec::new();
    for (size, rows, held) in &per_size {
        let b: Vec<f64> = rows.iter().map(|r| r.b_seconds).collect();
        let a: Vec<f64> = rows.iter().filter_map(|r| r.a_seconds).collect();
        let wall: Vec<f64> = rows.iter().map(|r| r.wall_seconds).collect();
        let asks: Vec<f64> = rows.iter().map(|r| r.asks as f64).collect();
        let incomplete: usize = rows.iter().map(|r| r.incomplete).sum();
        let datagrams = rows.first().map_or(0, |r| r.datagrams);
        md.push_str(&format!(
            "| {size} | {} | **{}** | {} | {} | {datagrams} | {} | {incomplete} | {held} |\n",
            rows.len(),
            fmt_mmm(&b, 2),
            fmt_mmm(&a, 2),
            fmt_mmm(&wall, 2),
            fmt_mmm(&asks, 0),
        ));
        doc_rows.push(json!({
            "connections": size,
            "runs": rows.len(),
            "backup_seconds": mmm_json(&b),
            "backup_seconds_each": b,
            "master_seconds": mmm_json(&a),
            "wall_seconds": mmm_json(&wall),
            "datagrams": datagrams,
            "requests": mmm_json(&asks),
            "incomplete": incomplete,
            "backup_holds_after": held,
        }));
    }
    md.push_str(
        "\nThe backup's time includes the handshake (it learns the master's epoch from a \
         heartbeat, at most 100 ms) and installing every connection into its maps. \
         Raw figures: `sync.json`; configs `sync-a.toml`, `sync-b.toml`.\n",
    );
    print!("\n{md}");
    save(
        out,
        "sync",
        json!({
            "settings": {"xdp_mode": XDP_MODE, "runs": runs, "sizes": SIZES, "build": "release"},
            "rows": doc_rows,
            "markdown": md,
        }),
    )
}

/// Kill and start b; wait for its complete snapshot of `size` connections.
fn restart_backup(lab: &mut Lab, bins: &Bins, size: u32) -> anyhow::Result<Run> {
    lab.node("b").kill9()?;
    let asked = SystemTime::now();
    let started = lab.node("b").start(bins)?;
    let node = lab.node("b");
    let p = node.runs.last_mut().context("b runs")?;
    let (_, line) = p.wait_for_line_since(asked, SNAPSHOT_MAX, |l| {
        message_is(
            l,
            "sync: snapshot complete, the connection table is current",
        )
        .is_some()
    })?;
    let f = message_is(
        &line,
        "sync: snapshot complete, the connection table is current",
    )
    .context("the complete line")?;
    let connections = num(&f, "connections").unwrap_or(0.0) as u64;
    if connections != u64::from(size) {
        bail!("b's snapshot had {connections} connections, the master holds {size}");
    }
    let done_at = crate::lab::log_time(&line).unwrap_or_else(SystemTime::now);
    let incomplete = p
        .lock()
        .iter()
        .filter(|(_, l)| {
            message_is(l, "sync: the snapshot arrived incomplete; asking again").is_some()
        })
        .count();
    let a = lab.nodes[0].runs.last().context("a runs")?;
    let a_seconds = a
        .lock()
        .iter()
        .filter(|(at, _)| *at >= asked)
        .filter_map(|(_, l)| message_is(l, "sync: snapshot sent"))
        .find(|f| num(f, "connections") == Some(f64::from(size)))
        .and_then(|f| num(&f, "seconds"));
    Ok(Run {
        b_seconds: num(&f, "seconds").unwrap_or(f64::NAN),
        a_seconds,
        wall_seconds: ms_between(started, done_at) / 1e3,
        datagrams: num(&f, "datagrams").unwrap_or(0.0) as u64,
        asks: num(&f, "asks").unwrap_or(0.0) as u64,
        incomplete,
    })
}

/// The NAT connections `fo-agent status` counts on b.
fn b_connections(lab: &Lab, bins: &Bins) -> anyhow::Result<u64> {
    let sock = lab.dir.join("control-b.sock");
    let mut cmd = Command::new(&bins.agent);
    cmd.args(["status", "--json", "--socket"]).arg(&sock);
    let out = output_ok(&mut cmd, "fo-agent status on b")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("status JSON")?;
    Ok(v["nat_connections"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0))
}
