//! `fo-agent import --keepalived FILE [--haproxy FILE] [--interface IF] [--strict]`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// keepalived.conf to translate (its `include`s are read too).
    #[arg(long, value_name = "FILE")]
    keepalived: PathBuf,
    /// haproxy.cfg whose `mode tcp` frontends become services on the VIPs.
    #[arg(long, value_name = "FILE")]
    haproxy: Option<PathBuf>,
    /// The keepalived interface to import (it becomes `[node] interface`); default:
    /// the first vrrp_instance's.
    #[arg(long, value_name = "IF")]
    interface: Option<String>,
    /// Fail (exit 1, nothing on stdout) when anything was not translated.
    #[arg(long)]
    strict: bool,
}

/// Exit status when something was left out (the config is still printed).
const LEFT_OUT: u8 = 2;

pub fn main(args: &Args) -> ExitCode {
    let input = fo_import::Input {
        interface: args.interface.clone(),
        check_files: true,
    };
    let out = match fo_import::import(&input, &args.keepalived, args.haproxy.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprint!("{}", out.report_text());
    let left_out = out.report.left_out();
    if left_out && args.strict {
        eprintln!("--strict: some directives were not translated (above); no config written");
        return ExitCode::FAILURE;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.toml.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("writing the config: {e}");
        return ExitCode::FAILURE;
    }
    if left_out {
        ExitCode::from(LEFT_OUT)
    } else {
        ExitCode::SUCCESS
    }
}
