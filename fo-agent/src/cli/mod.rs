//! The command line: one file per subcommand.

mod check;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Parser)]
#[command(name = "fo-agent", version, about = "fo: VRRP failover with an XDP data plane")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the agent in the foreground (systemd runs exactly this).
    Run(run::Args),
    /// Validate a config: exit 0 and say OK, or list every problem with line and column.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Run(args) => run::main(args),
            Command::Check { config } => check::main(&config),
        }
    }
}
