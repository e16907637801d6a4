//! `fo-agent decap --interface IF [--detach]`: on a backend of a `mode = "tunnel"`
//! service, attach fo's decapsulation program to IF (pinned: it stays after this
//! command and across reboots of the agent, not of the machine), or remove it.
//!
//! The program turns IPIP / IP6IP6 packets (and, with a GUE port, GUE ones) addressed
//! to this backend back into the client's packet, which the kernel then delivers to
//! the VIP on `lo`. Everything else passes untouched. This replaces the kernel's
//! `ipip` / `ip6_tunnel` / `fou` modules where they are missing.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use fo_agent::dataplane::XdpAttachMode;
use fo_agent::dataplane::decap::{self, Attached, DecapOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The interface tunnel packets arrive on.
    #[arg(long, short)]
    interface: String,
    /// Remove the program from the interface (and its pins).
    #[arg(long)]
    detach: bool,
    /// An outer destination address to decapsulate for (repeat for several); by
    /// default every address of the interface.
    #[arg(long = "address")]
    addresses: Vec<IpAddr>,
    /// Also decapsulate GUE on this UDP port (the service's `gue_port`, 6080 by
    /// default there); 0 = IPIP / IP6IP6 only.
    #[arg(long, default_value_t = fo_config::Tunnel::DEFAULT_GUE_PORT)]
    gue_port: u16,
    /// XDP attach mode: native (driver) or generic (SKB; any interface).
    #[arg(long, value_enum, default_value_t = Mode::Native)]
    xdp_mode: Mode,
    /// Pin directory (on bpffs).
    #[arg(long, default_value = decap::DEFAULT_DIR)]
    bpf_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Mode {
    Native,
    Generic,
}

pub fn main(args: Args) -> ExitCode {
    if args.detach {
        return match decap::detach(&args.bpf_dir, &args.interface) {
            Ok(true) => {
                println!("fo-agent decap: detached from {}", args.interface);
                ExitCode::SUCCESS
            }
            Ok(false) => {
                println!(
                    "fo-agent decap: nothing attached to {} (no pins under {})",
                    args.interface,
                    decap::pin_dir(&args.bpf_dir, &args.interface).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    let addrs = if args.addresses.is_empty() {
        match interface_addresses(&args.interface) {
            Ok(a) if a.is_empty() => {
                eprintln!(
                    "fo-agent decap: {} has no address to decapsulate for: add one, or name it with --address",
                    args.interface
                );
                return ExitCode::FAILURE;
            }
            Ok(a) => a,
            Err(e) => {
                eprintln!("fo-agent decap: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        args.addresses.clone()
    };
    let opts = DecapOptions {
        interface: args.interface.clone(),
        dir: args.bpf_dir.clone(),
        addrs: addrs.clone(),
        gue_port: (args.gue_port != 0).then_some(args.gue_port),
        mode: match args.xdp_mode {
            Mode::Native => XdpAttachMode::Native,
            Mode::Generic => XdpAttachMode::Generic,
        },
    };
    match decap::attach(&opts) {
        Ok(how) => {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            println!(
                "fo-agent decap: {} {} for {}{} (pinned under {})",
                match how {
                    Attached::New => "attached to",
                    Attached::Replaced => "updated on",
                },
                args.interface,
                list.join(", "),
                match opts.gue_port {
                    Some(p) => format!(", GUE on port {p}"),
                    None => String::new(),
                },
                decap::pin_dir(&args.bpf_dir, &args.interface).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &fo_agent::dataplane::DataplaneError) -> ExitCode {
    eprintln!("fo-agent decap: {}", fo_agent::dataplane::error_chain(e));
    ExitCode::FAILURE
}

/// Every address of `interface` but IPv6 link-local ones.
fn interface_addresses(interface: &str) -> anyhow::Result<Vec<IpAddr>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let handle = fo_agent::net::handle()?;
        let link = fo_agent::net::link::by_name(&handle, interface).await?;
        Ok(fo_agent::net::addr::all_addresses(&handle, link.index).await?)
    })
}
