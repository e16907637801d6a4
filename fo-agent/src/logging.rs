//! Where the agent's log goes: natively to journald under systemd, plain text or JSON
//! lines on stderr otherwise.
//!
//! Under systemd, stderr is a stream to journald, which stamps every line with one
//! priority (`info`), so `journalctl -p warning` would show nothing of fo's. The native
//! protocol (datagrams on `/run/systemd/journal/socket`) carries each entry's own
//! `PRIORITY` and structured fields instead: ERROR is `err` (3), WARN `warning` (4),
//! INFO `info` (6), DEBUG and TRACE `debug` (7). Every field of an event and of its
//! spans becomes a journal field named `FO_` + the field in capitals: a transition
//! carries `FO_ROUTER`, `FO_FROM`, `FO_TO`, `FO_REASON` (and `FO_TAKEOVER_MS` for a
//! takeover), so `journalctl FO_ROUTER=wazuh` shows one router's entries.
//!
//! `auto` (the default) detects systemd's journal stream the documented way: the
//! `JOURNAL_STREAM` variable names the device and inode of the stream, and it is used
//! only when they are those of our stderr (a child whose stderr was redirected
//! inherits the variable, but not the stream).

use std::io::IsTerminal as _;
use std::os::unix::fs::MetadataExt as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald when systemd connected stderr to the journal, else plain.
    Auto,
    /// Native journal protocol: priorities and `FO_*` fields.
    Journald,
    /// Human-readable lines on stderr.
    Plain,
    /// One JSON object per line on stderr.
    Json,
}

/// Where the log went in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journald,
    Plain,
    Json,
}

/// The prefix of fo's own journal fields (`FO_ROUTER`, `FO_FROM`, ...).
pub const FIELD_PREFIX: &str = "FO";

/// Does `JOURNAL_STREAM` (`DEVICE:INODE`, both decimal) name the file stderr is?
pub fn is_journal_stream(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(var), Some((dev, ino))) = (journal_stream, stderr) else {
        return false;
    };
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// Device and inode of our stderr, if it is open.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Is stderr systemd's journal stream?
pub fn stderr_is_journal() -> bool {
    is_journal_stream(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    )
}

/// journald's priorities for tracing's levels (see the module docs).
fn priorities() -> tracing_journald::PriorityMappings {
    use tracing_journald::Priority;
    tracing_journald::PriorityMappings {
        error: Priority::Error,
        warn: Priority::Warning,
        info: Priority::Informational,
        debug: Priority::Debug,
        trace: Priority::Debug,
    }
}

/// Install the global subscriber. The level filter is `FO_LOG` (e.g. `debug`,
/// `fo_agent::vrrp=debug`), `info` by default. If journald was asked for but its
/// socket does not answer, the log goes to stderr as plain text, saying why.
pub fn init(format: LogFormat) -> Sink {
    let filter = || EnvFilter::try_from_env("FO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let want = match format {
        LogFormat::Auto if stderr_is_journal() => Sink::Journald,
        LogFormat::Auto | LogFormat::Plain => Sink::Plain,
        LogFormat::Journald => Sink::Journald,
        LogFormat::Json => Sink::Json,
    };
    let mut fallback = None;
    if want == Sink::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some(FIELD_PREFIX.into()))
                    .with_syslog_identifier("fo-agent".into())
                    .with_priority_mappings(priorities());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
                return Sink::Journald;
            }
            Err(e) => fallback = Some(e),
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let sink = if want == Sink::Json {
        tracing_subscriber::registry()
            .with(filter())
            .with(fmt.json())
            .init();
        Sink::Json
    } else {
        tracing_subscriber::registry()
            .with(filter())
            .with(fmt)
            .init();
        Sink::Plain
    };
    if let Some(e) = fallback {
        tracing::warn!(error = %e, "journald's socket does not answer: logging to stderr");
    }
    sink
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_is_recognised_only_on_our_own_stderr() {
        let ours = Some((64769, 31457));
        assert!(is_journal_stream(Some("64769:31457"), ours));
        // Inherited by a process whose stderr is a pipe or a file: not journald.
        assert!(!is_journal_stream(Some("64769:31458"), ours));
        assert!(!is_journal_stream(Some("64770:31457"), ours));
        assert!(!is_journal_stream(None, ours));
        assert!(!is_journal_stream(Some("64769:31457"), None));
        for junk in ["", ":", "64769", "64769:", "x:31457", "64769:31457:1"] {
            assert!(!is_journal_stream(Some(junk), ours), "{junk:?}");
        }
    }

    #[test]
    fn levels_keep_their_syslog_priority() {
        use tracing_journald::Priority;
        let p = priorities();
        assert_eq!(
            [p.error, p.warn, p.info, p.debug, p.trace],
            [
                Priority::Error,
                Priority::Warning,
                Priority::Informational,
                Priority::Debug,
                Priority::Debug
            ]
        );
    }
}
