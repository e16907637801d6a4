//! `cargo xtask chaos --duration D [--seed N]`: the lab of the demo (two fo agents,
//! VRRPv3 at 100 ms, three backends with fo-sink, a 1514/tcp DSR fleet) plus a NAT
//! service on the same VIP (1515/tcp to the backends' 1514, SNAT address `SNAT`,
//! connection-state sync between the nodes) with a fleet of its own, under random
//! faults, one at a time, while an observer on the client segment asks who has the VIP
//! every 20 ms. Faults: kill -9 of an agent (then restart), a link flap, a backend's sink
//! stopped (then started), a node partitioned at the switch, a reload with a changed but
//! valid config, a reload with a broken config (must be refused; the agent keeps running),
//! a node's gate failing (the file its `ready` check looks for removed, then put back).
//! The schedule ([`faults::Schedule`]) injects every kind once, in a shuffled order,
//! before it picks at random, and the run goes on past its duration until that first
//! round is done: every run sees every kind.
//!
//! Invariants, checked over the whole run (definitions in [`verdict`]):
//! (a) never two nodes answering for the VIP for longer than one advertisement interval;
//! (b) never nobody answering for longer than Master_Down_Interval + 50 ms while a node
//!     is healthy and eligible: its agent running (it logged `running`, was not killed
//!     since), its link up, not partitioned, its gate open (from the agent logging the
//!     check `up` again; no tracked checks are configured, so nothing else holds it back);
//! (c) no event lost by a fleet agent whose backend stayed up (agents seen by a sink
//!     that was stopped are left out; b1 is never stopped, so its agents always count),
//!     and no acknowledged event lost at all;
//! (d) the same for the NAT fleet, and more: no NAT connection of an agent whose backend
//!     stayed up reset or lost, whatever the fault (the sync gives the other node every
//!     connection, and a restarted agent's pinned tables keep them);
//! and every agent is still running at the end, every broken reload was refused, every
//! valid one applied, every kind of fault was injected, and the observer saw the run:
//! a run in which observer stalls (the machine too loaded to probe) hide more than
//! [`MAX_STALLED_SHARE`] of the time fails, since it proves too little.
//!
//! Report: `target/chaos/report.{md,json}`; logs in `target/chaos/run-<pid>/`. The
//! seed is printed; `--seed` replays the same schedule of faults.
//!
//! Parts: [`config`] (the nodes' configs, good and broken), [`state`] (the run's state:
//! the lab, who is eligible when, the faults so far), [`run`](mod@run) (bringing the lab
//! up, the loop of faults, tearing down), [`inject`] (one fault of each kind), [`report`]
//! (the verdict over the whole run, written as report.{md,json}), [`faults`] (the kinds
//! and their schedule), [`verdict`] (the invariants' arithmetic on the observer's
//! record).

mod config;
mod faults;
mod inject;
mod report;
mod run;
mod state;
pub mod verdict;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use anyhow::bail;

use crate::lab::{self, Bins, Spec, test_net, unix_ns};
use state::Chaos;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The DSR service's port, and the port every backend's sink listens on.
const PORT: u16 = 1514;
/// The NAT service's port on the VIP (to the backends' [`PORT`]).
const NAT_PORT: u16 = 1515;
/// The port of the service a valid reload adds and removes.
const EXTRA_PORT: u16 = 1516;
/// The backends' hosts in 192.0.2.0/24, for every service.
const BACKENDS: [u8; 3] = [21, 22, 23];
/// The NAT service's SNAT address (floats with the VIP).
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// Agent ids of the NAT fleet start here (the DSR fleet's at 0).
const NAT_FIRST_AGENT: u32 = 1000;
/// A run whose observer stalls hide more of it than this fails.
pub const MAX_STALLED_SHARE: f64 = 0.10;
/// The observer: a station on the client segment that only asks who has the VIP.
const OBSERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const ADVERT: Duration = Duration::from_millis(100);
/// How often the gate's file check runs (it closes on two failures, opens on two passes).
const GATE_INTERVAL: Duration = Duration::from_millis(200);
const PRIORITIES: [(&str, u8); 2] = [("a", 150), ("b", 100)];
const AGENTS: u32 = 100;
const RATE_PER_S: u32 = 20;
const SOURCES: (u8, u8) = (129, 228);
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// How long to inject faults (e.g. 120s, 2m, 30m, 1h).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the fault schedule (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// The config's duration grammar (`120s`, `2m`, `1m30s`, `1h`; a unit is required).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    fo_units::parse_duration(s).map_err(|e| e.to_string())
}

/// Master_Down_Interval of a VRRPv3 router (RFC 5798 §6.1): 3 x interval + skew, exact
/// (the bound a takeover is measured against; fo arms it truncated to centiseconds).
fn master_down(priority: u8) -> Duration {
    let interval = fo_vrrp::AdverInterval::from_duration(fo_vrrp::Version::V3, ADVERT)
        .expect("ADVERT is whole centiseconds");
    fo_vrrp::master_down_interval_exact(fo_vrrp::Priority(priority), interval)
}

pub fn run(opts: &Opts) -> anyhow::Result<()> {
    let seed = opts
        .seed
        .unwrap_or_else(|| unix_ns(SystemTime::now()) % 1_000_000_007);
    println!(
        "chaos: seed {seed} (replay with `cargo xtask chaos --duration {}s --seed {seed}`)",
        opts.duration.as_secs()
    );
    let bins = Bins::build_release()?;
    let spec = Spec {
        prefix: "fo-chaos".into(),
        vip: VIP,
        port: PORT,
        client: Ipv4Addr::new(192, 0, 2, 10),
        client_sources: test_net(SOURCES.0..=SOURCES.1),
        nodes: PRIORITIES
            .iter()
            .enumerate()
            .map(|(i, (n, _))| ((*n).to_owned(), Ipv4Addr::new(192, 0, 2, 2 + i as u8)))
            .collect(),
        backends: test_net(BACKENDS),
    };
    let (mut lab, out) = lab::run::build("chaos", &spec, bins)?;
    let outcome = Chaos::new(&mut lab, seed, opts.duration).and_then(|c| c.run(&out));
    drop(lab);
    let problems = outcome?;
    if !problems.is_empty() {
        bail!(
            "chaos: {} invariant(s) broken (seed {seed}):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_the_configs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            opts: Opts,
        }
        use clap::Parser as _;
        let parse =
            |d: &str| Cli::try_parse_from(["chaos", "--duration", d]).map(|c| c.opts.duration);
        assert_eq!(parse("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse("120s").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse("30m").ok(), Some(Duration::from_secs(1800)));
        let refused = parse("120").expect_err("a unit is required").to_string();
        assert!(refused.contains("has no unit"), "{refused}");
        assert!(parse("2 weeks").is_err());
    }

    #[test]
    fn master_down_interval_follows_rfc_5798() {
        // 3 x 100 ms + (256 - 150) / 256 x 100 ms.
        assert_eq!(master_down(150).as_micros(), 341_406);
        assert_eq!(master_down(100).as_micros(), 360_937);
    }
}
