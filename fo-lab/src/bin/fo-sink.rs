//! fo-sink: the ingestion sink on a backend. See the crate docs and `fo-sink --help`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use fo_lab::control::{self, ControlAddr};
use fo_lab::report::SinkReport;
use fo_lab::units::parse_duration;
use fo_lab::{Sink, SinkConfig};
use tokio::signal::unix::{SignalKind, signal};

/// Accepts fo-fleet agents (protocol FOL1), counts and acknowledges every event.
///
/// SIGTERM or SIGINT: write the report (to --report, else stdout) and exit.
/// SIGUSR1: write the report so far to --report (else stdout) and keep running.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (on a DSR backend: the VIP, held on lo, or 0.0.0.0).
    #[arg(long, default_value = "0.0.0.0:1514")]
    listen: SocketAddr,
    /// Where to write the JSON report (written to PATH.tmp, then renamed).
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Control endpoint: every client that connects gets the JSON report so far.
    /// `IP:PORT` for TCP (e.g. 127.0.0.1:1515), anything else is a Unix socket path.
    #[arg(long, value_name = "ADDR|PATH")]
    control: Option<ControlAddr>,
    /// Longest delay of an ack after the first event it covers.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    ack_interval: Duration,
    /// Ack at once after this many events since the last ack.
    #[arg(long, default_value_t = 256)]
    ack_every: u64,
    /// Close a connection that sends no HELLO within this time.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    hello_timeout: Duration,
    /// listen(2) backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Span of the 10 ms arrival timeline from the start; later arrivals go to `overflow`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    timeline_span: Duration,
}

fn write_report(path: Option<&Path>, report: &SinkReport) -> Result<()> {
    let json = serde_json::to_vec_pretty(report).context("encode the report")?;
    match path {
        Some(p) => {
            let mut tmp = p.as_os_str().to_owned();
            tmp.push(".tmp");
            std::fs::write(&tmp, &json).with_context(|| format!("write {}", p.display()))?;
            std::fs::rename(&tmp, p).with_context(|| format!("rename onto {}", p.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.write_all(b"\n"))
                .context("write the report to stdout")?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let nofile = fo_lab::sys::raise_nofile_limit().context("raise RLIMIT_NOFILE")?;
    let mut cfg = SinkConfig::new(args.listen);
    cfg.ack_interval = args.ack_interval;
    cfg.ack_every = args.ack_every.max(1);
    cfg.hello_timeout = args.hello_timeout;
    cfg.backlog = args.backlog;
    cfg.timeline_span = args.timeline_span;
    let sink = Sink::bind(cfg).await.context("start the sink")?;
    eprintln!(
        "fo-sink: listening on {} (open-file limit {nofile})",
        sink.local_addr()
    );
    if let Some(addr) = args.control.clone() {
        let h = sink.handle();
        let render = move || serde_json::to_vec_pretty(&h.report()).unwrap_or_default();
        tokio::spawn(async move {
            if let Err(e) = control::serve(addr.clone(), render).await {
                eprintln!("fo-sink: control endpoint {addr:?}: {e}");
            }
        });
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => write_report(args.report.as_deref(), &sink.report())?,
        }
    }
    let report = sink.shutdown().await;
    if let Some(ControlAddr::Unix(p)) = &args.control {
        let _ = std::fs::remove_file(p);
    }
    let t = &report.totals;
    eprintln!(
        "fo-sink: {} events from {} agents, {} duplicates, {} missing, {} connections ({} rst)",
        t.events_received, t.agents, t.duplicates, t.missing, t.connections_accepted, t.closed_rst
    );
    write_report(args.report.as_deref(), &report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_parses_every_flag() {
        Args::command().debug_assert();
        let a = Args::try_parse_from([
            "fo-sink",
            "--listen",
            "10.0.0.100:1514",
            "--report",
            "/tmp/s.json",
            "--control",
            "/run/fo-sink.sock",
            "--ack-interval",
            "20ms",
            "--ack-every",
            "64",
            "--hello-timeout",
            "1s",
            "--backlog",
            "1024",
            "--timeline-span",
            "10m",
        ])
        .expect("a full command line parses");
        assert_eq!(
            a.control,
            Some(ControlAddr::Unix("/run/fo-sink.sock".into()))
        );
        assert_eq!(a.ack_interval, Duration::from_millis(20));
        let a = Args::try_parse_from(["fo-sink", "--control", "127.0.0.1:1515"]).expect("parses");
        assert_eq!(
            a.control,
            Some(ControlAddr::Tcp(([127, 0, 0, 1], 1515).into()))
        );
    }
}
