//! `fo-agent detach`: remove the pinned data plane of a stopped agent.
//!
//! The XDP program, its maps and its link stay pinned in bpffs when the agent stops, so
//! that a restart or an upgrade drops no packet. This removes them: the program leaves
//! its interfaces and every flow, NAT connection and VIP it served is gone. The Debian
//! package runs it when it is removed (never on an upgrade).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fo_agent::api::control::{self, Request};

/// The packaged defaults, used without a config (or with one that cannot be read).
const DEFAULT_BPF_DIR: &str = "/sys/fs/bpf/fo";
const DEFAULT_SOCKET: &str = "/run/fo/control.sock";
/// How long the program may take to leave an interface once its link is unpinned.
const DETACH_WAIT: Duration = Duration::from_secs(3);

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
    // A running agent holds the maps and would attach its program again.
    if control::call(&socket, &Request::Status).is_ok() {
        eprintln!(
            "fo-agent detach: an agent is running (it answers on {}): stop it first (systemctl stop fo-agent)",
            socket.display()
        );
        return ExitCode::FAILURE;
    }
    match detach(&bpf_dir) {
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

/// Remove the pins in `dir` and wait until the program has left the interfaces its
/// links were pinned for: those interfaces, or `None` if `dir` does not exist.
fn detach(dir: &Path) -> Result<Option<Vec<String>>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut interfaces: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("link_")
                .map(str::to_owned)
        })
        .collect();
    interfaces.sort();
    let before: Vec<(String, Option<u32>)> = interfaces
        .iter()
        .map(|i| (i.clone(), fo_agent::dataplane::ifindex(i).ok()))
        .collect();
    fo_agent::dataplane::remove_all_pins(dir).map_err(|e| {
        format!(
            "{}: {}",
            dir.display(),
            fo_agent::dataplane::error_chain(&e)
        )
    })?;
    if dir.exists() {
        let left: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "{}: the data plane's pins are removed, but not these (not fo's, or of another version): {}",
            dir.display(),
            left.join(", ")
        ));
    }
    wait_detached(&before)?;
    Ok(Some(interfaces))
}

/// Wait until no interface of `links` has an XDP program any more (an interface that
/// no longer exists took its program with it).
fn wait_detached(links: &[(String, Option<u32>)]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let handle = fo_agent::net::handle().map_err(|e| format!("netlink: {e}"))?;
        let started = Instant::now();
        loop {
            let mut attached = Vec::new();
            for (name, index) in links {
                let Some(index) = index else { continue };
                if let Ok(Some(id)) = fo_agent::net::link::xdp_prog_id(&handle, *index).await {
                    attached.push(format!("{name} (program {id})"));
                }
            }
            if attached.is_empty() {
                return Ok(());
            }
            if started.elapsed() > DETACH_WAIT {
                return Err(format!(
                    "pins removed, but an XDP program is still attached to {} after {DETACH_WAIT:?}: \
                     something else holds it (`bpftool net show`)",
                    attached.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
