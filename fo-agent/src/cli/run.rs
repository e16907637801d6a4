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

/// Why the agent stops: an `err` entry in the journal, a JSON line, or plain text on
/// stderr (a config's problems, one per line with line:column).
fn fatal(sink: Sink, message: &str) {
    match sink {
        Sink::Journald | Sink::Json => tracing::error!("{message}"),
        Sink::Plain => eprintln!("{message}"),
    }
}
