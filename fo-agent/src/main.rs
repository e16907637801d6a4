//! `fo-agent`: the daemon and its command line.

mod cli;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    cli::Cli::parse().run()
}
