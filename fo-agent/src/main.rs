//! `fo-agent`: the daemon and its command line.

mod cli;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // `fo-agent generate …` writes the man pages and completions for packaging. It is
    // parsed on its own, outside the command line it documents, so that neither the
    // pages nor the completions offer it.
    if std::env::args_os().nth(1).is_some_and(|a| a == "generate") {
        return cli::generate::Generate::parse_from(std::env::args_os().skip(1)).run();
    }
    cli::Cli::parse().run()
}
