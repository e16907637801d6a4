//! Failover under a fleet: fo (VRRPv3, adverts 100, 20 and 10 ms, XDP DSR) against
//! keepalived + HAProxy (VRRPv2 1 s as deployed today, and VRRPv3 100 ms; HAProxy in TCP
//! mode, `balance source`), on the same topology: a client namespace running `fo-fleet`
//! (`AGENTS` long-lived connections from 100 source addresses), LB nodes a (priority 150,
//! preempts) and b (100), three backends running `fo-sink`.
//!
//! - fo: as in the demo; the backends hold the VIP on lo and answer the clients
//!   directly (DSR); each sink listens on VIP:1514.
//! - fo NAT: `mode = "nat"` with SNAT address `SNAT` and connection-state sync between
//!   a and b; the backends do not hold the VIP (sinks on 0.0.0.0:1514); the client's and
//!   backends' TX checksum offload is off (NAT needs complete checksums; see README).
//! - baseline: keepalived adds the VIP to the master's eth0; HAProxy listens on VIP:1514
//!   on both nodes (`ip_nonlocal_bind=1`) and proxies to the sinks, which listen on
//!   0.0.0.0:1514 on backends that do not hold the VIP.
//!
//! Per run: sinks and fleet start fresh, every agent connects, `PRE` later node a fails
//! — (a) kill -9 of every process in its namespace (fo-agent; keepalived and HAProxy),
//! or (b) `ip link set eth0 down` in it, a dead node as the network sees it, or (c) a
//! planned switchover (fo: `fo-agent demote`; keepalived: a's priority lowered below
//! b's in its config, then SIGHUP, as operators move a VIP by hand) — and the
//! run ends once every agent is connected and the reset count has been stable for a
//! second (or `SETTLE_MAX` after the takeover). Then, with the fleet still running, a
//! is restored (its processes restarted, its link set up, `resume`, or its priority
//! raised again) and preempts back (the old
//! master's return); the run ends once the fleet is whole again after that, and the
//! resets and the service gap of the return are counted apart from the failure's. One
//! lab per variant.

mod measure;
mod report;
mod topology;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Opts, fmt_mmm, keep_config, mmm_json, ms_between, save};
use crate::lab::config::{XDP_MODE, tcp_service, vrrp_router};
use crate::lab::plot::{self, Marker, Panel};
use crate::lab::series::{longest_empty_ms, sum_timelines};
use crate::lab::{Bins, Lab, Proc, Spec, log_time, netns, test_net};
use crate::util::read_json;
use crate::util::root;

use report::*;
use topology::*;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// SNAT address of the NAT variant (floats with the router like the VIP).
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
const PORT: u16 = 1514;
const AGENTS: u32 = 200;
const RATE_PER_S: u32 = 100;
const SOURCES: (u8, u8) = (129, 228);
const BACKENDS: [u8; 3] = [21, 22, 23];
const PRE: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(2);
/// Longest wait for the fleet to be whole again after the takeover.
const SETTLE_MAX: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Fo,
    Baseline,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    key: &'static str,
    label: &'static str,
    system: System,
    version: u8,
    advert_ms: u64,
    /// fo with `mode = "nat"` and sync instead of DSR.
    nat: bool,
    /// fo with its timing measures (real-time VRRP thread, timer slack, locked memory);
    /// false: `fo-agent run --no-realtime`, for comparison.
    realtime: bool,
}

const VARIANTS: [Variant; 7] = [
    Variant {
        key: "fo-v3-100ms",
        label: "fo, VRRPv3 100 ms, XDP DSR",
        system: System::Fo,
        version: 3,
        advert_ms: 100,
        nat: false,
        realtime: true,
    },
    Variant {
        key: "fo-nat-v3-100ms",
        label: "fo, VRRPv3 100 ms, XDP NAT + sync",
        system: System::Fo,
        version: 3,
        advert_ms: 100,
        nat: true,
        realtime: true,
    },
    Variant {
        key: "fo-v3-20ms",
        label: "fo, VRRPv3 20 ms, XDP DSR",
        system: System::Fo,
        version: 3,
        advert_ms: 20,
        nat: false,
        realtime: true,
    },
    Variant {
        key: "fo-v3-10ms",
        label: "fo, VRRPv3 10 ms, XDP DSR",
        system: System::Fo,
        version: 3,
        advert_ms: 10,
        nat: false,
        realtime: true,
    },
    Variant {
        key: "fo-v3-10ms-normal",
        label: "fo, VRRPv3 10 ms, XDP DSR, `--no-realtime`",
        system: System::Fo,
        version: 3,
        advert_ms: 10,
        nat: false,
        realtime: false,
    },
    Variant {
        key: "ka-v2-1s",
        label: "keepalived VRRPv2 1 s + HAProxy",
        system: System::Baseline,
        version: 2,
        advert_ms: 1000,
        nat: false,
        realtime: true,
    },
    Variant {
        key: "ka-v3-100ms",
        label: "keepalived VRRPv3 100 ms + HAProxy",
        system: System::Baseline,
        version: 3,
        advert_ms: 100,
        nat: false,
        realtime: true,
    },
];

impl Variant {
    /// b's Master_Down_Interval (priority 100), exact (RFC formula, no truncation).
    fn master_down_ms(self) -> f64 {
        let version = if self.version == 2 {
            fo_vrrp::Version::V2
        } else {
            fo_vrrp::Version::V3
        };
        super::takeover::master_down_ms(version, self.advert_ms as f64, 100)
    }
}

/// The items of `all` whose key is in `keys` (all of them when `keys` is empty); an
/// unknown key is refused, naming the known ones.
fn selected<T: Copy>(
    all: &[T],
    keys: &[String],
    key: impl Fn(&T) -> &'static str,
) -> anyhow::Result<Vec<T>> {
    if let Some(bad) = keys
        .iter()
        .find(|k| !all.iter().any(|x| key(x) == k.as_str()))
    {
        let known: Vec<_> = all.iter().map(&key).collect();
        bail!(
            "no failover variant or failure {bad:?}; known: {}",
            known.join(", ")
        );
    }
    Ok(all
        .iter()
        .filter(|x| keys.is_empty() || keys.iter().any(|k| k == key(x)))
        .copied()
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Kill,
    LinkDown,
    /// A planned move: fo `demote`; keepalived: a's priority lowered and SIGHUP.
    Planned,
}

impl Failure {
    fn key(self) -> &'static str {
        match self {
            Failure::Kill => "kill9",
            Failure::LinkDown => "link-down",
            Failure::Planned => "planned",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Failure::Kill => "kill -9 of the LB processes",
            Failure::LinkDown => "link down (node failure)",
            Failure::Planned => "planned switchover",
        }
    }
}

const FAILURES: [Failure; 3] = [Failure::Kill, Failure::LinkDown, Failure::Planned];

/// One run's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    run: usize,
    takeover_ms: f64,
    /// Longest time with no event arriving at any sink (10 ms buckets), ms.
    service_gap_ms: u64,
    max_silence_ms: f64,
    connections_reset: u64,
    sink_connections_rst: u64,
    reconnects: u64,
    events_sent: u64,
    lost_acked: u64,
    lost_unacked: u64,
    unacked_at_disconnect: u64,
    /// From the first connection lost to every agent writing again (0: none lost), of
    /// the outages that began before a's restore.
    recovery_ms: f64,
    /// The old master's return: from a's restore (restart / link up) to its transition
    /// to master.
    preempt_ms: f64,
    /// Longest time with no event at any sink from a's restore to the end of the run.
    return_gap_ms: u64,
    /// Connections the fleet saw reset after a's restore.
    return_resets: u64,
    /// The longest outage that began after a's restore (0: none lost).
    return_recovery_ms: f64,
    png: Option<String>,
}

/// keepalived and HAProxy of one baseline node.
#[derive(Default)]
struct BaseProcs {
    keepalived: Option<Proc>,
    haproxy: Option<Proc>,
    runs: usize,
}

struct Bench<'a> {
    lab: Lab,
    variant: Variant,
    out: &'a Path,
    base: Vec<BaseProcs>,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let mut results: Vec<(Variant, Failure, Vec<RunResult>)> = Vec::new();
    let variants = selected(&VARIANTS, &opts.variants, |v| v.key)?;
    let failures = selected(&FAILURES, &opts.failures, |f| f.key())?;
    for v in variants {
        let started = Instant::now();
        let per = one_variant(bins, v, &failures, opts.runs, out)
            .with_context(|| format!("failover bench, {}", v.label))?;
        eprintln!(
            "failover {}: {:.0} s",
            v.key,
            started.elapsed().as_secs_f64()
        );
        for (f, runs) in per {
            results.push((v, f, runs));
        }
    }
    let md = markdown(&results, opts.runs);
    print!("\n{md}");
    save(
        out,
        "failover",
        json!({
            "settings": {
                "agents": AGENTS, "rate_per_s": RATE_PER_S, "sources": 100, "backends": BACKENDS.len(),
                "runs": opts.runs, "pre_failure_s": PRE.as_secs(), "drain_s": DRAIN.as_secs(),
                "xdp_mode": XDP_MODE, "fleet_reconnect_backoff": "1s fixed (fo-fleet default)",
            },
            "variants": results.iter().map(|(v, f, runs)| json!({
                "variant": v.key, "label": v.label, "failure": f.key(),
                "vrrp_version": v.version, "advert_ms": v.advert_ms,
                "master_down_interval_ms": v.master_down_ms(),
                "takeover_ms": mmm_json(&col(runs, |r| r.takeover_ms)),
                "service_gap_ms": mmm_json(&col(runs, |r| r.service_gap_ms as f64)),
                "connections_reset": mmm_json(&col(runs, |r| r.connections_reset as f64)),
                "lost_acked": mmm_json(&col(runs, |r| r.lost_acked as f64)),
                "lost_unacked": mmm_json(&col(runs, |r| r.lost_unacked as f64)),
                "unacked_at_disconnect": mmm_json(&col(runs, |r| r.unacked_at_disconnect as f64)),
                "recovery_ms": mmm_json(&col(runs, |r| r.recovery_ms)),
                "preempt_ms": mmm_json(&col(runs, |r| r.preempt_ms)),
                "return_gap_ms": mmm_json(&col(runs, |r| r.return_gap_ms as f64)),
                "return_resets": mmm_json(&col(runs, |r| r.return_resets as f64)),
                "return_recovery_ms": mmm_json(&col(runs, |r| r.return_recovery_ms)),
                "max_silence_ms": mmm_json(&col(runs, |r| r.max_silence_ms)),
                "runs": runs,
            })).collect::<Vec<_>>(),
            "markdown": md,
        }),
    )
}

fn one_variant(
    bins: &Bins,
    v: Variant,
    failures: &[Failure],
    runs: usize,
    out: &Path,
) -> anyhow::Result<Vec<(Failure, Vec<RunResult>)>> {
    let dir = out.join("logs").join(format!("failover-{}", v.key));
    let _ = std::fs::remove_dir_all(&dir);
    let lab = Lab::build(&spec(), bins.clone(), &dir)?;
    let mut b = Bench {
        lab,
        variant: v,
        out,
        base: Vec::new(),
    };
    b.configure()?;
    b.start_node(0)?;
    b.wait_state(0, "master", SystemTime::UNIX_EPOCH, Duration::from_secs(20))?;
    b.start_node(1)?;
    b.wait_state(1, "backup", SystemTime::UNIX_EPOCH, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut per = Vec::new();
    for &f in failures {
        let mut rs = Vec::new();
        for i in 1..=runs {
            eprintln!("failover {} {} run {i}/{runs}", v.key, f.key());
            let r = b.one_run(f, i)?;
            eprintln!(
                "  takeover {:.0} ms, gap {} ms, resets {}, lost {}/{}, unacked at disconnect {}, recovery {:.0} ms",
                r.takeover_ms,
                r.service_gap_ms,
                r.connections_reset,
                r.lost_acked,
                r.lost_unacked,
                r.unacked_at_disconnect,
                r.recovery_ms
            );
            eprintln!(
                "  a back: preempt {:.0} ms, gap {} ms, resets {}, recovery {:.0} ms",
                r.preempt_ms, r.return_gap_ms, r.return_resets, r.return_recovery_ms
            );
            rs.push(r);
        }
        per.push((f, rs));
    }
    Ok(per)
}
