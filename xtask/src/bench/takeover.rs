//! fo/fo takeover distribution (issue 3): two fo agents, VRRPv3 with unicast peers, the
//! master (priority 200) killed with kill -9 `--reps` times per advert interval (10 ms,
//! 20 ms, 100 ms); the backup (priority 100) takes over. Takeover = from the kill to the
//! backup's `VRRP transition … to=master` log line, timed by the line's own timestamp
//! (the agent's clock when it logged the transition, the same wall clock as the kill).
//! Between kills the master is restarted and preempts back. No fleet: this is the
//! protocol's and the agent's time alone.
//!
//! RFC 5798: Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time, Skew_Time =
//! (256 − priority) × Advertisement_Interval / 256. The backup's timer restarts at each
//! advert it receives, and the kill lands at a uniformly random point of the advert
//! period, so the kill-to-takeover time lies in (MDI − interval, MDI], median
//! MDI − interval / 2, plus the agent's own reaction.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::{Opts, fmt_mmm, keep_config, mmm_json, ms_between, save};
use crate::lab::config::{XDP_MODE, vrrp_router};
use crate::lab::{Bins, Lab, Spec, log_fields, log_time};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const MASTER_PRIO: u32 = 200;
pub const BACKUP_PRIO: u32 = 100;
const INTERVALS_MS: [u64; 3] = [10, 20, 100];

fn router(priority: u32, interval_ms: u64, peer: Ipv4Addr) -> String {
    vrrp_router("bench", 52, 3, priority, interval_ms, VIP, peer)
}

/// Master_Down_Interval of a backup at `prio` hearing `interval_ms` adverts of
/// `version`, ms (exact: the RFC formula without the centisecond truncation fo arms
/// with).
pub fn master_down_ms(version: fo_vrrp::Version, interval_ms: f64, prio: u32) -> f64 {
    let interval = Duration::from_millis(interval_ms.round() as u64);
    let interval = fo_vrrp::AdverInterval::from_duration(version, interval)
        .expect("bench intervals fit their VRRP version");
    let prio = fo_vrrp::Priority(u8::try_from(prio).expect("a VRRP priority"));
    fo_vrrp::master_down_interval_exact(prio, interval).as_secs_f64() * 1e3
}

struct Kill {
    /// Kill to the backup's transition, by the agent's log timestamp.
    logged_ms: f64,
    /// Kill to the line's arrival at xtask (pipe and reader included).
    arrived_ms: f64,
    /// The agent's own figure: Master_Down timer expiry to VIPs served.
    agent_ms: Option<f64>,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let mut per_interval = Vec::new();
    for interval in INTERVALS_MS {
        let kills = one_interval(bins, opts.reps, interval, out)
            .with_context(|| format!("fo/fo takeover at {interval} ms"))?;
        per_interval.push((interval, kills));
    }

    let mut md = String::from(
        "## fo/fo takeover after kill -9 of the master (issue 3)\n\n\
         Two fo agents, VRRPv3, unicast peers, priorities 200 (master, preempts) and 100 \
         (backup); generic XDP. The master is killed with SIGKILL, the backup's \
         `VRRP transition … to=master` log line is timed by its own timestamp; the master \
         is restarted and preempts back before the next kill. No fleet. Expected: the kill \
         lands at a random point of the advert period, so the takeover lies in \
         (MDI − interval, MDI], median MDI − interval/2, where MDI = Master_Down_Interval \
         = 3 × interval + (256 − 100) × interval / 256.\n\n\
         | advert | kills | takeover ms (kill → log line) min / median / max | expected range (median) | kill → line read by xtask | agent: master-down → VIPs served ms |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut doc_rows = Vec::new();
    for (interval, kills) in &per_interval {
        let logged: Vec<f64> = kills.iter().map(|k| k.logged_ms).collect();
        let arrived: Vec<f64> = kills.iter().map(|k| k.arrived_ms).collect();
        let agent: Vec<f64> = kills.iter().filter_map(|k| k.agent_ms).collect();
        let mdi = master_down_ms(fo_vrrp::Version::V3, *interval as f64, BACKUP_PRIO);
        md.push_str(&format!(
            "| {interval} ms | {} | **{}** | {:.1} – {:.1} ({:.1}) | {} | {} |\n",
            kills.len(),
            fmt_mmm(&logged, 1),
            mdi - *interval as f64,
            mdi,
            mdi - *interval as f64 / 2.0,
            fmt_mmm(&arrived, 1),
            fmt_mmm(&agent, 2),
        ));
        doc_rows.push(json!({
            "advert_interval_ms": interval,
            "kills": kills.len(),
            "takeover_ms": mmm_json(&logged),
            "takeover_ms_each": logged,
            "line_arrival_ms": mmm_json(&arrived),
            "agent_master_down_to_served_ms": mmm_json(&agent),
            "master_down_interval_ms": mdi,
            "expected_ms": {"min": mdi - *interval as f64, "median": mdi - *interval as f64 / 2.0, "max": mdi},
        }));
    }
    md.push_str(
        "\nRaw figures per kill: `takeover.json`. The restart of the killed agent between \
         kills adopts its pinned data plane and preempts back.\n",
    );
    print!("\n{md}");
    save(
        out,
        "takeover",
        json!({
            "settings": {"master_priority": MASTER_PRIO, "backup_priority": BACKUP_PRIO, "reps": opts.reps, "xdp_mode": "generic", "vrrp": "v3 unicast"},
            "rows": doc_rows,
            "markdown": md,
        }),
    )
}

fn one_interval(bins: &Bins, reps: usize, interval: u64, out: &Path) -> anyhow::Result<Vec<Kill>> {
    let mut lab = pair_lab(bins, "takeover", interval, &[], out)?;
    let mut kills = Vec::new();
    for rep in 0..reps {
        // Let a few adverts pass, and vary the phase of the kill a little.
        std::thread::sleep(Duration::from_millis(
            4 * interval + (rep as u64 * 7919) % interval,
        ));
        let killed = lab.node("a").kill9()?;
        lab.node("b")
            .wait_state_after("master", killed, Duration::from_secs(5))?;
        let (arrived, line) =
            master_line(&lab, "b", killed).context("b's transition to master is not in its log")?;
        let logged = log_time(&line).context("no timestamp on the transition line")?;
        let agent_ms = log_fields(&line).and_then(|f| match f.get("takeover_ms") {
            Some(Value::String(s)) => s.parse().ok(),
            Some(v) => v.as_f64(),
            None => None,
        });
        let k = Kill {
            logged_ms: ms_between(killed, logged),
            arrived_ms: ms_between(killed, arrived),
            agent_ms,
        };
        eprintln!(
            "takeover {interval} ms #{}: {:.1} ms (line read after {:.1} ms)",
            rep + 1,
            k.logged_ms,
            k.arrived_ms
        );
        kills.push(k);
        let back = SystemTime::now();
        lab.node("a").start(bins)?;
        lab.node("a")
            .wait_state_after("master", back, Duration::from_secs(10))?;
        lab.node("b")
            .wait_state_after("backup", back, Duration::from_secs(5))?;
    }
    Ok(kills)
}

/// A fo pair (a master at priority 200, b backup at 100, VRRPv3 unicast at `interval`
/// ms, the VIP and no service) started and settled; logs in `logs/<what>-<interval>ms`,
/// configs kept as `<what>-fo-<interval>ms-{a,b}.toml`; `agent_args` added to both
/// agents' command line.
pub fn pair_lab(
    bins: &Bins,
    what: &str,
    interval: u64,
    agent_args: &[&str],
    out: &Path,
) -> anyhow::Result<Lab> {
    let spec = Spec::pair("fo-bench", VIP, 1514);
    let dir = out.join("logs").join(format!("{what}-{interval}ms"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut lab = Lab::build(&spec, bins.clone(), &dir)?;
    let (a_addr, b_addr) = (lab.nodes[0].addr, lab.nodes[1].addr);
    lab.node("a")
        .write_config(XDP_MODE, &router(MASTER_PRIO, interval, b_addr))?;
    lab.node("b")
        .write_config(XDP_MODE, &router(BACKUP_PRIO, interval, a_addr))?;
    for n in &mut lab.nodes {
        n.agent_args = agent_args.iter().map(|a| a.to_string()).collect();
        keep_config(
            out,
            &n.config,
            &format!("{what}-fo-{interval}ms-{}.toml", n.name),
        )?;
    }
    lab.start_pair(Duration::from_secs(15))?;
    Ok(lab)
}

/// The first `to=master` transition line `node`'s current run logged at or after `since`.
pub fn master_line(lab: &Lab, node: &str, since: SystemTime) -> Option<(SystemTime, String)> {
    let n = lab.nodes.iter().find(|n| n.name == node)?;
    let p = n.runs.last()?;
    p.lock()
        .iter()
        .find(|(at, l)| {
            *at >= since
                && log_fields(l).is_some_and(|f| {
                    f.get("message")
                        .and_then(Value::as_str)
                        .is_some_and(|m| m.starts_with("VRRP transition"))
                        && f.get("to").and_then(Value::as_str) == Some("master")
                })
        })
        .cloned()
}
