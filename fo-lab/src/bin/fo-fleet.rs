//! fo-fleet: N long-lived agent connections. See the crate docs and `fo-fleet --help`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use fo_lab::report::{FleetReport, SinkReport, merge};
use fo_lab::units::{parse_duration, parse_rate, parse_sources};
use fo_lab::{Fleet, FleetConfig};
use tokio::signal::unix::{SignalKind, signal};

/// Drives N agents, each one long-lived TCP connection sending numbered events
/// (protocol FOL1) to a fo-sink; reconnects with backoff and resends from the last ack.
///
/// Stops after --duration, or on SIGINT/SIGTERM; then waits up to --drain for acks,
/// closes with FIN and writes the JSON report (to --report, else stdout). Prints one
/// progress line per second on stderr.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Merge a fleet report with the reports of every sink it reached; prints JSON.
    Merge {
        /// The fleet's report.
        fleet: PathBuf,
        /// One report per sink (every backend, every restart).
        #[arg(required = true)]
        sinks: Vec<PathBuf>,
    },
}

/// A parsed `--source` list (one value, so clap does not take it for many).
#[derive(Debug, Clone)]
struct Sources(Vec<IpAddr>);

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address to connect to (the VIP, e.g. 10.0.0.100:1514).
    #[arg(long, required = true)]
    target: Option<SocketAddr>,
    /// Number of agents (connections).
    #[arg(long, default_value_t = 1000)]
    agents: u32,
    /// Id of the first agent; agent i is first-agent + i.
    #[arg(long, default_value_t = 0)]
    first_agent: u32,
    /// Events per second per agent, e.g. 100/s. Default 10/s.
    #[arg(long, value_parser = parse_rate, conflicts_with = "interval")]
    rate: Option<Duration>,
    /// Time between two events of one agent, e.g. 10ms (the inverse of --rate).
    #[arg(long, value_parser = parse_duration)]
    interval: Option<Duration>,
    /// Filler bytes per event (0..=8192).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=8192))]
    payload: u16,
    /// Source addresses, comma-separated, ranges allowed (10.0.1.1-10.0.1.200); agent i
    /// binds source i mod count. The addresses must be configured locally.
    #[arg(long, value_parser = |s: &str| parse_sources(s).map(Sources), value_name = "LIST")]
    source: Option<Sources>,
    /// Wait before reconnecting after a connection died or a connect failed.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reconnect_backoff: Duration,
    /// Failed connects double the wait up to this (default: --reconnect-backoff, fixed).
    #[arg(long, value_parser = parse_duration)]
    reconnect_backoff_max: Option<Duration>,
    /// Give up a connect attempt after this (then back off and retry).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Spread the agents' first connects over this time.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    ramp: Duration,
    /// Run this long, then stop (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// On stop, wait up to this long for the acks of events already written.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain: Duration,
    /// Where to write the JSON report (default stdout).
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Span of the 10 ms send timeline (default: --duration + 1 min, else 1 h).
    #[arg(long, value_parser = parse_duration)]
    timeline_span: Option<Duration>,
}

/// Writes to stdout; a closed pipe is an error, not a panic.
fn print_json(json: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(json)
        .and_then(|()| out.write_all(b"\n"))
        .context("write the report to stdout")
}

fn read_json<T: serde::de::DeserializeOwned>(p: &PathBuf) -> Result<T> {
    let bytes = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", p.display()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Merge { fleet, sinks }) = cli.cmd {
        let f: FleetReport = read_json(&fleet)?;
        let s = sinks
            .iter()
            .map(read_json::<SinkReport>)
            .collect::<Result<Vec<_>>>()?;
        print_json(&serde_json::to_vec_pretty(&merge(&f, &s))?)?;
        return Ok(());
    }
    let a = cli.run;
    let Some(target) = a.target else {
        bail!("--target is required");
    };
    let nofile = fo_lab::sys::raise_nofile_limit().context("raise RLIMIT_NOFILE")?;
    if nofile < u64::from(a.agents) + 64 {
        eprintln!(
            "fo-fleet: warning: open-file limit {nofile} is below {} agents + 64",
            a.agents
        );
    }
    let mut cfg = FleetConfig::new(target);
    cfg.agents = a.agents;
    cfg.first_agent = a.first_agent;
    if let Some(i) = a.rate.or(a.interval) {
        if i.is_zero() {
            bail!("the interval between events must be above zero");
        }
        cfg.interval = i;
    }
    cfg.payload = a.payload;
    cfg.sources = a.source.map(|s| s.0).unwrap_or_default();
    cfg.reconnect_backoff = a.reconnect_backoff;
    cfg.reconnect_backoff_max = a.reconnect_backoff_max.unwrap_or(a.reconnect_backoff);
    cfg.connect_timeout = a.connect_timeout;
    cfg.ramp = a.ramp;
    cfg.drain = a.drain;
    cfg.timeline_span = a.timeline_span.unwrap_or(match a.duration {
        Some(d) => d + cfg.ramp + Duration::from_secs(60),
        None => Duration::from_secs(3600),
    });
    let fleet = Fleet::start(cfg);
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let start = tokio::time::Instant::now();
    let end = a.duration.map(|d| start + d);
    let until_end = async {
        match end {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_end);
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_sent = 0;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = &mut until_end => break,
            _ = tick.tick() => {
                if a.quiet {
                    continue;
                }
                let p = fleet.progress();
                eprintln!(
                    "fo-fleet: t={}s connected={}/{} sent={} (+{}/s) acked={} resent={} resets={} reconnects={} connect-failures={} at-risk={}",
                    start.elapsed().as_secs(), p.connected, a.agents, p.events_sent,
                    p.events_sent - last_sent, p.events_acked, p.events_resent, p.resets,
                    p.reconnects, p.connect_failures, p.unacked_at_disconnect,
                );
                last_sent = p.events_sent;
            }
        }
    }
    let report = fleet.stop().await;
    let t = &report.totals;
    eprintln!(
        "fo-fleet: sent {} acked {} resets {} reconnects {} at-risk {} max gap {:.1} ms",
        t.events_sent,
        t.events_acked,
        t.resets,
        t.reconnects,
        t.unacked_at_disconnect,
        report.max_gap_ms
    );
    let json = serde_json::to_vec_pretty(&report).context("encode the report")?;
    match &a.report {
        Some(p) => std::fs::write(p, json).with_context(|| format!("write {}", p.display()))?,
        None => print_json(&json)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_parses_every_flag() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "fo-fleet",
            "--target",
            "10.0.0.100:1514",
            "--agents",
            "10000",
            "--first-agent",
            "5",
            "--rate",
            "100/s",
            "--payload",
            "200",
            "--source",
            "10.0.1.1-10.0.1.3,10.0.2.1",
            "--reconnect-backoff",
            "500ms",
            "--reconnect-backoff-max",
            "8s",
            "--connect-timeout",
            "2s",
            "--ramp",
            "1s",
            "--duration",
            "30s",
            "--drain",
            "1s",
            "--report",
            "/tmp/f.json",
            "--quiet",
        ])
        .expect("a full command line parses");
        let a = cli.run;
        assert_eq!(a.rate, Some(Duration::from_millis(10)));
        assert_eq!(a.source.expect("sources").0.len(), 4);
        assert!(
            Cli::try_parse_from([
                "fo-fleet",
                "--target",
                "1.2.3.4:1",
                "--rate",
                "1",
                "--interval",
                "1s"
            ])
            .is_err(),
            "--rate and --interval conflict"
        );
        assert!(matches!(
            Cli::try_parse_from(["fo-fleet", "merge", "f.json", "s1.json", "s2.json"])
                .expect("merge parses")
                .cmd,
            Some(Cmd::Merge { sinks, .. }) if sinks.len() == 2
        ));
    }
}
