//! The command line: one file per subcommand.

mod check;
mod control;
mod decap;
mod detach;
mod drill;
pub mod generate;
mod import;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Parser)]
#[command(
    name = "fo-agent",
    version,
    about = "fo: VRRP failover with an XDP data plane"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the running agent listens (the `control_socket` of its config).
#[derive(Debug, Clone, clap::Args)]
struct Socket {
    #[arg(long, default_value = "/run/fo/control.sock")]
    socket: PathBuf,
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
    /// Routers (state, priority, VIPs, last transition) and services (backends, health, traffic).
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// Take mastership of ROUTER now (manual failover onto this node), until `resume`.
    Promote {
        router: String,
        #[command(flatten)]
        socket: Socket,
    },
    /// Give mastership of ROUTER away and stay backup until `resume` (maintenance).
    ///
    /// Make before break: this node keeps serving until the peer has taken over, then
    /// drains. If no peer takes over within Master_Down_Interval it stays master and the
    /// demote is cancelled (`status` says so).
    Demote {
        router: String,
        /// Release the VIPs at once, even if no peer is there to take over (the service
        /// goes down with this node).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// Rehearse a planned switchover of ROUTER on live traffic (run it on the master):
    /// hand mastership to the peer as `demote` does, and with --back hand it back.
    ///
    /// Reports the blackout per direction from both nodes' forwarding counters (ms
    /// resolution), and the sync state and gates of both nodes before and after.
    /// Refuses, with the reason, when the peer is not ready: not heard on the sync
    /// channel (which the drill needs), its sync behind or its gates closed. Exit 0
    /// when every leg handed over.
    Drill {
        router: String,
        /// Hand mastership back once the traffic has settled on the peer (promote,
        /// then resume).
        #[arg(long)]
        back: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: Socket,
    },
    /// End a `promote` or `demote` of ROUTER.
    Resume {
        router: String,
        #[command(flatten)]
        socket: Socket,
    },
    /// Re-read the config (as SIGHUP); a bad config is refused and the running one stays.
    Reload {
        #[command(flatten)]
        socket: Socket,
    },
    /// Remove the pinned data plane of a stopped agent (`apt remove` runs it).
    ///
    /// The XDP program leaves its interface, and the flows, NAT connections and VIPs it
    /// served are dropped. Refuses while an agent answers on the control socket.
    /// Restarts and upgrades never remove the data plane: it keeps forwarding while the
    /// agent is away.
    Detach(detach::Args),
    /// Translate keepalived.conf (and haproxy.cfg) into a fo config: TOML on stdout, a
    /// report of every directive not translated (file:line: reason) on stderr. Exit 0:
    /// all translated; 2: something was left out (the config is still printed); 1: a
    /// file does not parse.
    Import(import::Args),
    /// On a backend of a `mode = "tunnel"` service: attach fo's decapsulation program
    /// to an interface (pinned, so it survives restarts; attaching again updates it),
    /// or remove it with --detach.
    ///
    /// For machines without the kernel's ipip / ip6_tunnel / fou modules. Tunnel
    /// packets addressed to this backend become the client's packet again, which the
    /// kernel delivers to the VIP on lo; the backend answers the client directly.
    Decap(decap::Args),
    /// Drain a backend (no new flows, existing ones stay) or enable it again.
    Backend {
        #[arg(value_enum)]
        action: control::BackendAction,
        service: String,
        backend: String,
        #[command(flatten)]
        socket: Socket,
    },
}

impl Cli {
    pub fn run(self) -> ExitCode {
        use crate::cli::control::call;
        use fo_agent::api::control::Request;
        match self.command {
            Command::Run(args) => run::main(args),
            Command::Check { config } => check::main(&config),
            Command::Detach(args) => detach::main(args),
            Command::Decap(args) => decap::main(args),
            Command::Import(args) => import::main(&args),
            Command::Status { json, socket } => status::main(&socket.socket, json),
            Command::Promote { router, socket } => {
                call(&socket.socket, Request::Promote { router })
            }
            Command::Demote {
                router,
                force,
                socket,
            } => call(&socket.socket, Request::Demote { router, force }),
            Command::Resume { router, socket } => call(&socket.socket, Request::Resume { router }),
            Command::Reload { socket } => call(&socket.socket, Request::Reload),
            Command::Drill {
                router,
                back,
                json,
                socket,
            } => drill::main(&socket.socket, router, back, json),
            Command::Backend {
                action,
                service,
                backend,
                socket,
            } => {
                let req = match action {
                    control::BackendAction::Drain => Request::Drain { service, backend },
                    control::BackendAction::Enable => Request::Enable { service, backend },
                };
                call(&socket.socket, req)
            }
        }
    }
}
