//! `fo-agent detach`: remove the pinned data plane of a stopped agent.
//!
//! The XDP program, its maps and its link stay pinned in bpffs when the agent stops, so
//! that a restart or an upgrade drops no packet. This removes them: the program leaves
//! its interfaces and every flow, NAT connection and VIP it served is gone. The Debian
//! package runs it when it is removed (never on an upgrade).

use std::path::PathBuf;
use std::process::ExitCode;

/// The packaged defaults, used without a config (or with one that cannot be read).
const DEFAULT_BPF_DIR: &str = "/sys/fs/bpf/fo";
const DEFAULT_SOCKET: &str = "/run/fo/control.sock";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Take `bpf_dir` and `control_socket` from this config (when it cannot be read,
    /// the defaults: /sys/fs/bpf/fo and /run/fo/control.sock).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The pin directory to remove (overrides the config's `bpf_dir`).
    #[arg(long)]
    bpf_dir: Option<PathBuf>,
}

pub fn main(args: Args) -> ExitCode {
    let (mut bpf_dir, socket) = match args.config.as_deref().map(fo_config::Config::load) {
        Some(Ok(c)) => (c.node.bpf_dir, c.node.control_socket),
        Some(Err(e)) => {
            eprintln!("fo-agent detach: the config cannot be read ({e}); using the default paths");
            (
                PathBuf::from(DEFAULT_BPF_DIR),
                PathBuf::from(DEFAULT_SOCKET),
            )
        }
        None => (
            PathBuf::from(DEFAULT_BPF_DIR),
            PathBuf::from(DEFAULT_SOCKET),
        ),
    };
    if let Some(d) = args.bpf_dir {
        bpf_dir = d;
    }
    // A running agent holds the maps and would attach its program again. Only a socket
    // nobody listens on (absent, or refusing connections) shows it has stopped: an
    // agent that is flooded or hung still holds the pins.
    match std::os::unix::net::UnixStream::connect(&socket) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Ok(_) => {
            eprintln!(
                "fo-agent detach: an agent is running (it accepts connections on {}): stop it first (systemctl stop fo-agent)",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "fo-agent detach: cannot tell whether an agent is running ({}: {e}): refused",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    }
    match fo_agent::agent::detach(&bpf_dir) {
        Ok(None) => {
            println!("{}: no pinned data plane, nothing to do", bpf_dir.display());
            ExitCode::SUCCESS
        }
        Ok(Some(interfaces)) if interfaces.is_empty() => {
            println!(
                "{}: pins removed (no interface link was pinned)",
                bpf_dir.display()
            );
            ExitCode::SUCCESS
        }
        Ok(Some(interfaces)) => {
            println!(
                "{}: pins removed; the XDP program left {}",
                bpf_dir.display(),
                interfaces.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fo-agent detach: {e}");
            ExitCode::FAILURE
        }
    }
}
