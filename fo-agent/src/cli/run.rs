use std::path::PathBuf;
use std::process::ExitCode;

use fo_agent::logging::{self, LogFormat, Sink};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short)]
    config: PathBuf,
    /// Where and how to log: `auto` logs natively to journald when systemd connected
    /// stderr to the journal (JOURNAL_STREAM), else plain text on stderr; `journald`,
    /// `plain` or `json` force one.
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Run the VRRP timing thread at the normal scheduling policy, keep the kernel's
    /// timer slack and leave memory unlocked. By default the agent asks for all three
    /// (SCHED_FIFO 10, 1 ns slack, mlockall) and logs what the system refused.
    #[arg(long)]
    no_realtime: bool,
}

/// `fo-agent run --config FILE`.
pub fn main(args: Args) -> ExitCode {
    let sink = logging::init(args.log_format);
    let config = match fo_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            fatal(sink, &format!("config refused: {e}"));
            return ExitCode::FAILURE;
        }
    };
    fo_agent::sched::set_realtime(!args.no_realtime);
    if !args.no_realtime {
        timing_setup();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fatal(sink, &format!("fo-agent: starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fo_agent::agent::run(config, &args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(sink, &format!("fo-agent: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Timer slack and locked memory, for the whole process: before the runtime's threads
/// start, which inherit the slack. Refusals are logged, never fatal.
fn timing_setup() {
    if let Err(e) = fo_agent::sched::tighten_timer_slack() {
        tracing::warn!(error = %e, "timer slack not reduced (PR_SET_TIMERSLACK): timers may fire up to 50 µs late");
    }
    match fo_agent::sched::lock_memory() {
        Ok(()) => tracing::info!("memory locked (mlockall): no page of the agent is swapped out"),
        Err(e) => {
            tracing::warn!(error = %e, "memory not locked: under memory pressure, a swapped-out page may delay a VRRP timer")
        }
    }
}

/// Why the agent stops: an `err` entry in the journal, a JSON line, or plain text on
/// stderr (a config's problems, one per line with line:column).
fn fatal(sink: Sink, message: &str) {
    match sink {
        Sink::Journald | Sink::Json => tracing::error!("{message}"),
        Sink::Plain => eprintln!("{message}"),
    }
}
