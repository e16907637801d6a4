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

use fo_agent::agent::decap::{self, Attached, Request};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
    let req = Request {
        interface: args.interface.clone(),
        dir: args.bpf_dir.clone(),
        addrs: args.addresses.clone(),
        gue_port: (args.gue_port != 0).then_some(args.gue_port),
        generic: args.xdp_mode == Mode::Generic,
    };
    match decap::attach(&req) {
        Ok((how, addrs)) => {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            println!(
                "fo-agent decap: {} {} for {}{} (pinned under {})",
                match how {
                    Attached::New => "attached to",
                    Attached::Replaced => "updated on",
                },
                args.interface,
                list.join(", "),
                match req.gue_port {
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

fn fail(e: &str) -> ExitCode {
    eprintln!("fo-agent decap: {e}");
    ExitCode::FAILURE
}
