//! `fo-agent decap` on a backend: attach fo's decapsulation program to an interface
//! for the interface's addresses (or the ones named), or detach it. The program and
//! its pins are `dataplane::decap`'s; this finds the addresses and says what happened.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use crate::dataplane::decap::{Attached, DEFAULT_DIR};
use crate::dataplane::{XdpAttachMode, decap, error_chain};

/// What to attach.
pub struct Request {
    pub interface: String,
    /// Pin directory (one subdirectory per interface).
    pub dir: PathBuf,
    /// Outer destinations to decapsulate for; empty = every address of the interface
    /// but IPv6 link-local ones.
    pub addrs: Vec<IpAddr>,
    /// GUE port; `None` = IPIP / IP6IP6 only.
    pub gue_port: Option<u16>,
    /// Generic (SKB) XDP instead of native.
    pub generic: bool,
}

/// Attach (or update) the program; returns what was done and for which addresses.
pub fn attach(req: &Request) -> Result<(Attached, Vec<IpAddr>), String> {
    let addrs = if req.addrs.is_empty() {
        let found = interface_addresses(&req.interface).map_err(|e| format!("{e:#}"))?;
        if found.is_empty() {
            return Err(format!(
                "{} has no address to decapsulate for: add one, or name it with --address",
                req.interface
            ));
        }
        found
    } else {
        req.addrs.clone()
    };
    let opts = decap::DecapOptions {
        interface: req.interface.clone(),
        dir: req.dir.clone(),
        addrs: addrs.clone(),
        gue_port: req.gue_port,
        mode: if req.generic {
            XdpAttachMode::Generic
        } else {
            XdpAttachMode::Native
        },
    };
    decap::attach(&opts)
        .map(|how| (how, addrs))
        .map_err(|e| error_chain(&e))
}

/// Remove the program from `interface`; whether anything was attached.
pub fn detach(dir: &Path, interface: &str) -> Result<bool, String> {
    decap::detach(dir, interface).map_err(|e| error_chain(&e))
}

/// Where the program of `interface` is pinned.
pub fn pin_dir(dir: &Path, interface: &str) -> PathBuf {
    decap::pin_dir(dir, interface)
}

/// Every address of `interface` but IPv6 link-local ones.
fn interface_addresses(interface: &str) -> anyhow::Result<Vec<IpAddr>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let handle = crate::net::handle()?;
        let link = crate::net::link::by_name(&handle, interface).await?;
        Ok(crate::net::addr::all_addresses(&handle, link.index).await?)
    })
}
