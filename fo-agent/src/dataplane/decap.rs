//! The backends' decapsulation program (`fo-agent decap`): load
//! [`tunnel::DECAP_OBJECT`], attach it to an interface and pin it, so that it keeps
//! decapsulating after the command exits and across agent restarts.
//!
//! Pins, under `DIR/IFNAME/` (`DIR` defaults to [`DEFAULT_DIR`]): `link` (the XDP
//! attachment), `DECAP_ADDRS` (the local outer addresses) and `DECAP_STATS` (the
//! object pins its maps by name, here). Attaching again loads the program on fresh
//! maps and swaps it into the pinned link (no gap); detaching removes the pins, which
//! unloads the program.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use aya::programs::Xdp;
use aya::programs::links::FdLink;
use fo_common::VipKey;

use super::loader::{XdpAttachMode, ensure_bpffs, ifindex};
use super::tunnel::{
    DECAP_ADDRS_MAP, DECAP_GUE_PORT_GLOBAL, DECAP_OBJECT, DECAP_PROGRAM, DECAP_STATS_MAP,
};
use super::{DataplaneError, Result, map_err, program_err};

/// Where `fo-agent decap` pins by default.
pub const DEFAULT_DIR: &str = "/sys/fs/bpf/fo-decap";

/// How many local outer addresses the program holds (its map's size).
pub const MAX_ADDRS: usize = 64;

/// What to attach.
#[derive(Clone, Debug)]
pub struct DecapOptions {
    pub interface: String,
    /// Pin directory (one subdirectory per interface).
    pub dir: PathBuf,
    /// The outer destination addresses to decapsulate for (this backend's addresses
    /// the load balancer sends to).
    pub addrs: Vec<IpAddr>,
    /// GUE receive port; `None` = IPIP / IP6IP6 only.
    pub gue_port: Option<u16>,
    pub mode: XdpAttachMode,
}

/// What [`attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// Attached anew.
    New,
    /// An earlier attachment's link now runs the new program (and addresses).
    Replaced,
}

/// The pin directory of `interface`.
pub fn pin_dir(dir: &Path, interface: &str) -> PathBuf {
    dir.join(interface)
}

/// Load, configure, attach and pin the decapsulation program.
pub fn attach(opts: &DecapOptions) -> Result<Attached> {
    if opts.addrs.is_empty() || opts.addrs.len() > MAX_ADDRS {
        return Err(DataplaneError::Invalid {
            what: "decap addresses (1..=64 are needed)",
        });
    }
    let index = ifindex(&opts.interface)?;
    ensure_bpffs(&opts.dir)?;
    let pins = pin_dir(&opts.dir, &opts.interface);
    std::fs::create_dir_all(&pins).map_err(|source| DataplaneError::Io {
        what: "creating",
        path: pins.clone(),
        source,
    })?;
    let port: u16 = opts.gue_port.unwrap_or(0);
    // The object's maps are pinned by name: fresh ones under `pins` (a program already
    // attached keeps its own until the new one replaces it in the link).
    for name in [DECAP_ADDRS_MAP, DECAP_STATS_MAP] {
        super::remove_pin(&pins.join(name))?;
    }
    let mut ebpf = aya::EbpfLoader::new()
        .default_map_pin_directory(&pins)
        .override_global(DECAP_GUE_PORT_GLOBAL, &port, true)
        .load(DECAP_OBJECT)
        .map_err(DataplaneError::Load)?;
    {
        let mut addrs: HashMap<&mut MapData, VipKey, u32> = ebpf
            .map_mut(DECAP_ADDRS_MAP)
            .ok_or(DataplaneError::MissingMap {
                name: DECAP_ADDRS_MAP,
            })?
            .try_into()
            .map_err(map_err(DECAP_ADDRS_MAP))?;
        for a in &opts.addrs {
            addrs
                .insert(&VipKey::new(*a), &1, 0)
                .map_err(map_err(DECAP_ADDRS_MAP))?;
        }
    }
    let prog: &mut Xdp = ebpf
        .program_mut(DECAP_PROGRAM)
        .ok_or(DataplaneError::Invalid {
            what: "decap object (no program fo_decap)",
        })?
        .try_into()
        .map_err(program_err("not an XDP program"))?;
    prog.load().map_err(super::load_err("load"))?;
    let link_pin = pins.join("link");
    let done = match super::pinned_link::<aya::programs::xdp::XdpLink>(&link_pin)? {
        Some(old) => {
            let id = prog
                .attach_to_link(old)
                .map_err(program_err("replace in the pinned link"))?;
            // The pin keeps the link; this process's handle may go.
            drop(prog.take_link(id));
            Attached::Replaced
        }
        None => {
            let id = prog
                .attach(index, opts.mode.aya())
                .map_err(program_err("attach (is another XDP program attached?)"))?;
            let owned = prog.take_link(id).map_err(program_err("take link"))?;
            let fd: FdLink = owned.try_into().map_err(|source| DataplaneError::Link {
                path: link_pin.clone(),
                source,
            })?;
            fd.pin(&link_pin).map_err(|source| DataplaneError::Pin {
                path: link_pin.clone(),
                source,
            })?;
            Attached::New
        }
    };
    Ok(done)
}

/// Remove the program from `interface`: its pins go, and with them the program.
/// Returns whether anything was attached.
pub fn detach(dir: &Path, interface: &str) -> Result<bool> {
    let pins = pin_dir(dir, interface);
    if !pins.exists() {
        return Ok(false);
    }
    let link = pins.join("link");
    let had = link.exists();
    for name in ["link", DECAP_ADDRS_MAP, DECAP_STATS_MAP] {
        super::remove_pin(&pins.join(name))?;
    }
    std::fs::remove_dir(&pins).map_err(|source| DataplaneError::Io {
        what: "removing",
        path: pins.clone(),
        source,
    })?;
    Ok(had)
}

/// Packets decapsulated (IPIP, GUE) and passed untouched, from the pinned counters of
/// `interface`; `None` when nothing is attached there.
pub fn stats(dir: &Path, interface: &str) -> Result<Option<[u64; 3]>> {
    let path = pin_dir(dir, interface).join(DECAP_STATS_MAP);
    if !path.exists() {
        return Ok(None);
    }
    let data = MapData::from_pin(&path).map_err(map_err(DECAP_STATS_MAP))?;
    let map: PerCpuArray<MapData, u64> = Map::PerCpuArray(data)
        .try_into()
        .map_err(map_err(DECAP_STATS_MAP))?;
    let mut out = [0u64; 3];
    for (i, slot) in out.iter_mut().enumerate() {
        let per_cpu = map.get(&(i as u32), 0).map_err(map_err(DECAP_STATS_MAP))?;
        *slot = per_cpu.iter().sum();
    }
    Ok(Some(out))
}
