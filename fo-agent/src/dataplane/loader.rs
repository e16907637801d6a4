//! Loading, pinning and adopting the XDP program and its maps.
//!
//! Maps are pinned by name under the pin directory, the attachment (a bpf_link)
//! as `link_<interface>`. A starting agent that finds a link pin and maps built
//! with the same layout and sizes keeps the maps: no map is recreated, no flow is
//! dropped. If the running program is this build's, it is adopted as it is;
//! otherwise this build's program is loaded on the same maps and swapped into the
//! link atomically (bpf_link_update): an upgrade of the XDP code drops nothing.
//! Pins of another layout are replaced: a new program on new maps, swapped into the
//! existing link, or attached with a new link.
//!
//! One piece (about 600 lines) on purpose: keeping, adopting, upgrading and replacing are
//! one decision over the same pins, read top to bottom in the order the agent takes it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData};
use aya::programs::XdpMode;
use aya::programs::links::{FdLink, PinnedLink};
use fo_common::{ABI_VERSION, DataplaneInfo};
use sha2::Digest as _;
use tracing::{error, info, warn};

use super::{DataplaneError, Maps, OBJECT, Result, map_err, program_err};

/// Sizes the program is loaded with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// bpffs directory for the pins (one per data plane).
    pub pin_dir: PathBuf,
    /// Maglev table size M, prime.
    pub maglev_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    /// Entries of the LRU flow table.
    pub flow_table_size: u32,
    /// Connections of the NAT table.
    pub nat_table_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// Driver mode: the program runs before the kernel allocates an skb.
    Native,
    /// Generic (SKB) mode: works on any interface, slower.
    Generic,
}

impl XdpAttachMode {
    pub(super) fn aya(self) -> XdpMode {
        match self {
            XdpAttachMode::Native => XdpMode::Driver,
            XdpAttachMode::Generic => XdpMode::Skb,
        }
    }

    fn code(self) -> u32 {
        match self {
            XdpAttachMode::Generic => 1,
            XdpAttachMode::Native => 2,
        }
    }
}

/// Where the program goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attach {
    /// Nowhere: loaded for BPF_PROG_TEST_RUN (tests and benchmarks). Never adopts.
    Detached,
    /// On this interface, in this mode.
    Interface { name: String, mode: XdpAttachMode },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This process loaded the program.
    Loaded,
    /// This process adopted a program and maps pinned by an earlier run.
    Adopted,
    /// The maps pinned by an earlier run were kept and the program running on them,
    /// from another build, was replaced by this build's.
    Upgraded,
}

/// Which build of the XDP object this agent carries (see `DataplaneInfo::build`).
pub fn build_id() -> [u8; 16] {
    static ID: std::sync::LazyLock<[u8; 16]> = std::sync::LazyLock::new(|| {
        let digest = sha2::Sha256::digest(OBJECT);
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        id
    });
    *ID
}

/// The `INFO` entry a data plane loaded with `opts` carries.
fn wanted_info(opts: &LoadOptions, attach_mode: u32) -> DataplaneInfo {
    DataplaneInfo {
        abi: ABI_VERSION,
        maglev_size: opts.maglev_size,
        max_services: opts.max_services,
        max_backends: opts.max_backends,
        flow_table_size: opts.flow_table_size,
        nat_table_size: opts.nat_table_size,
        attach_mode,
        build: build_id(),
    }
}

const MAP_NAMES: [&str; 23] = [
    "VIPS",
    "VIP_FILTER",
    "SERVICES",
    "MAGLEV",
    "BACKENDS",
    "BACKEND_STATS",
    "FLOWS",
    "FLOWS_NEW",
    "IFACES",
    "COUNTERS",
    "INFO",
    "NAT_SERVICES",
    "NAT_FWD",
    "NAT_REV",
    "NAT_UDP_FWD",
    "NAT_UDP_REV",
    "NAT_EMBRYO_FWD",
    "NAT_EMBRYO_REV",
    "NAT_EVENTS",
    "DRILL",
    "DRILL_CLIENTS",
    "TUNNEL_SERVICES",
    "TUNNEL_SOURCES",
];

/// Entries of the maps of new connections (`FLOWS_NEW`, `NAT_EMBRYO_*`) and of the NAT
/// UDP flows (`NAT_UDP_*`) for a table of `size`: a quarter of it. A flood of spoofed
/// SYNs at `r` per second leaves a new connection `size / 4 / r` seconds to complete
/// its handshake (0.1 s at 10,000/s for a table of 4,096), far more than one round
/// trip to a backend takes.
pub fn new_connection_entries(size: u32) -> u32 {
    (size / 4).max(64)
}

/// statfs(2) magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub(super) fn open(opts: &LoadOptions, attach: &Attach) -> Result<super::Dataplane> {
    prepare_pin_dir(opts)?;
    let (name, mode) = match attach {
        Attach::Detached => {
            remove_map_pins(&opts.pin_dir)?;
            return load(opts, None, OBJECT);
        }
        Attach::Interface { name, mode } => (name, *mode),
    };
    let link_pin = opts.pin_dir.join(format!("link_{name}"));
    if link_pin.exists() {
        match adopt(opts, &link_pin, mode) {
            Ok(Some(dp)) => {
                info!(pin_dir = %opts.pin_dir.display(), "adopted the pinned data plane");
                return Ok(dp);
            }
            Ok(None) => info!(
                "pinned data plane differs (layout, sizes or mode): replacing it and its maps"
            ),
            Err(e) => {
                warn!(error = %super::error_chain(&e), "pinned data plane unusable: replacing it")
            }
        }
    }
    // Read how the old program was attached before its pins are replaced.
    let old_mode = pinned_abi_and_mode(&opts.pin_dir).map(|(_, mode)| mode);
    remove_map_pins(&opts.pin_dir)?;
    load(opts, Some((name, mode, &link_pin, old_mode)), OBJECT)
}

/// The pin directory exists, on bpffs.
fn prepare_pin_dir(opts: &LoadOptions) -> Result<()> {
    ensure_bpffs(&opts.pin_dir)?;
    std::fs::create_dir_all(&opts.pin_dir).map_err(|source| DataplaneError::Io {
        what: "creating",
        path: opts.pin_dir.clone(),
        source,
    })?;
    Ok(())
}

/// Load another build of the XDP object, detached, on fresh maps under the pin
/// directory (see `Dataplane::open_detached_object`).
pub(super) fn open_detached_object(opts: &LoadOptions, object: &[u8]) -> Result<super::Dataplane> {
    prepare_pin_dir(opts)?;
    remove_map_pins(&opts.pin_dir)?;
    load(opts, None, object)
}

/// Load the object and its program with `opts`' sizes. Maps pinned under the pin
/// directory are reused (aya refuses one whose definition differs); missing ones are
/// created and pinned.
fn load_object(opts: &LoadOptions, object: &[u8]) -> Result<aya::Ebpf> {
    let maglev_entries =
        opts.max_services
            .checked_mul(opts.maglev_size)
            .ok_or(DataplaneError::Full {
                what: "maglev table",
                limit: u32::MAX,
            })?;
    let mut ebpf = aya::EbpfLoader::new()
        .default_map_pin_directory(&opts.pin_dir)
        .override_global("MAGLEV_SIZE", &opts.maglev_size, true)
        .map_max_entries("MAGLEV", maglev_entries)
        .map_max_entries("SERVICES", opts.max_services)
        .map_max_entries("BACKENDS", opts.max_backends)
        .map_max_entries("BACKEND_STATS", opts.max_backends)
        .map_max_entries("FLOWS", opts.flow_table_size)
        .map_max_entries("FLOWS_NEW", new_connection_entries(opts.flow_table_size))
        .map_max_entries("NAT_SERVICES", opts.max_services)
        .map_max_entries("TUNNEL_SERVICES", opts.max_services)
        .map_max_entries("NAT_FWD", opts.nat_table_size)
        .map_max_entries("NAT_REV", opts.nat_table_size)
        .map_max_entries("NAT_UDP_FWD", new_connection_entries(opts.nat_table_size))
        .map_max_entries("NAT_UDP_REV", new_connection_entries(opts.nat_table_size))
        .map_max_entries(
            "NAT_EMBRYO_FWD",
            new_connection_entries(opts.nat_table_size),
        )
        .map_max_entries(
            "NAT_EMBRYO_REV",
            new_connection_entries(opts.nat_table_size),
        )
        .load(object)
        .map_err(DataplaneError::Load)?;
    let prog = super::xdp_program(&mut ebpf)?;
    prog.load().map_err(super::load_err("load"))?;
    Ok(ebpf)
}

fn load(
    opts: &LoadOptions,
    attach: Option<(&String, XdpAttachMode, &PathBuf, Option<u32>)>,
    object: &[u8],
) -> Result<super::Dataplane> {
    let mut ebpf = load_object(opts, object)?;
    let prog = super::xdp_program(&mut ebpf)?;

    let mut link = None;
    let mut attach_mode = 0;
    if let Some((name, mode, link_pin, old_mode)) = attach {
        attach_mode = mode.code();
        match replaceable_link(link_pin, mode, old_mode)? {
            Some(old) => link = Some(swap_into(prog, old, link_pin)?),
            None => {
                let id = prog
                    .attach(ifindex(name)?, mode.aya())
                    .map_err(program_err("attach (is another XDP program attached?)"))?;
                let owned = prog.take_link(id).map_err(program_err("take link"))?;
                let fd_link: FdLink = owned.try_into().map_err(|source| DataplaneError::Link {
                    path: link_pin.clone(),
                    source,
                })?;
                link = Some(
                    fd_link
                        .pin(link_pin)
                        .map_err(|source| DataplaneError::Pin {
                            path: link_pin.clone(),
                            source,
                        })?,
                );
            }
        }
    }

    let mut maps = take_maps(&mut ebpf)?;
    let info = wanted_info(opts, attach_mode);
    maps.info.set(0, &info, 0).map_err(map_err("INFO"))?;
    // MAGLEV needs no initialisation: a zeroed entry is MAGLEV_EMPTY.
    Ok(super::Dataplane {
        maps,
        info,
        origin: super::Origin::Loaded,
        pin_dir: opts.pin_dir.clone(),
        ebpf: Some(ebpf),
        _link: link,
        roles: Default::default(),
        vlans: Default::default(),
    })
}

/// The existing pinned link, ready for an atomic program swap, if one exists in the
/// same mode. A link in another mode is removed (detached) instead.
fn replaceable_link(
    link_pin: &Path,
    mode: XdpAttachMode,
    old_mode: Option<u32>,
) -> Result<Option<aya::programs::xdp::XdpLink>> {
    if !link_pin.exists() {
        return Ok(None);
    }
    let pinned = PinnedLink::from_pin(link_pin).map_err(|source| DataplaneError::Link {
        path: link_pin.to_owned(),
        source,
    })?;
    let detach = |pinned: PinnedLink| -> Result<Option<aya::programs::xdp::XdpLink>> {
        let fd_link = pinned.unpin().map_err(|source| DataplaneError::Io {
            what: "removing",
            path: link_pin.to_owned(),
            source,
        })?;
        drop(fd_link); // last reference: the old program detaches here
        Ok(None)
    };
    if old_mode != Some(mode.code()) {
        return detach(pinned);
    }
    // A handle on the link whose pin stays: the new program is swapped in through it.
    let check = PinnedLink::from_pin(link_pin).map_err(|source| DataplaneError::Link {
        path: link_pin.to_owned(),
        source,
    })?;
    match aya::programs::xdp::XdpLink::try_from(FdLink::from(check)) {
        Ok(link) => Ok(Some(link)),
        // Not an XDP link: take it away and attach anew.
        Err(_) => detach(pinned),
    }
}

fn adopt(
    opts: &LoadOptions,
    link_pin: &Path,
    mode: XdpAttachMode,
) -> Result<Option<super::Dataplane>> {
    let link = PinnedLink::from_pin(link_pin).map_err(|source| DataplaneError::Link {
        path: link_pin.to_owned(),
        source,
    })?;
    if let Some((abi, _)) = pinned_abi_and_mode(&opts.pin_dir)
        && abi != ABI_VERSION
    {
        info!(
            pinned = abi,
            this = ABI_VERSION,
            "the pinned maps have another layout (ABI)"
        );
        return Ok(None);
    }
    let maps = open_pinned_maps(&opts.pin_dir)?;
    let info = maps.info.get(&0, 0).map_err(map_err("INFO"))?;
    let wanted = wanted_info(opts, mode.code());
    if !info.same_layout(&wanted) {
        info!(pinned = ?info, wanted = ?wanted, "pinned data plane was built with other parameters");
        return Ok(None);
    }
    let adopted = |maps, link| super::Dataplane {
        maps,
        info,
        origin: super::Origin::Adopted,
        pin_dir: opts.pin_dir.clone(),
        ebpf: None,
        _link: Some(link),
        roles: Default::default(),
        vlans: Default::default(),
    };
    if info.build == wanted.build {
        return Ok(Some(adopted(maps, link)));
    }
    info!(
        pinned = %hex(&info.build),
        this = %hex(&wanted.build),
        "the pinned XDP program is another build: swapping in this build's, keeping the maps"
    );
    let started = std::time::Instant::now();
    match upgrade(opts, link_pin, &wanted) {
        Ok(dp) => {
            info!(
                took_ms = started.elapsed().as_millis() as u64,
                "program swapped in the pinned link"
            );
            Ok(Some(dp))
        }
        Err(e) => {
            // The pinned program still runs on its maps: keep serving with it.
            error!(
                error = %super::error_chain(&e),
                "this build's XDP program could not replace the pinned one: adopting the pinned build as it is"
            );
            Ok(Some(adopted(maps, link)))
        }
    }
}

/// Load this build's program on the pinned maps and swap it into the pinned link.
fn upgrade(
    opts: &LoadOptions,
    link_pin: &Path,
    wanted: &DataplaneInfo,
) -> Result<super::Dataplane> {
    let mut ebpf = load_object(opts, OBJECT)?;
    let prog = super::xdp_program(&mut ebpf)?;
    // The pin stays: if anything below fails, the old program stays attached.
    let pinned = PinnedLink::from_pin(link_pin).map_err(|source| DataplaneError::Link {
        path: link_pin.to_owned(),
        source,
    })?;
    let old = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned)).map_err(|source| {
        DataplaneError::Program {
            what: "open the pinned link as an XDP link",
            source: source.into(),
        }
    })?;
    let link = swap_into(prog, old, link_pin)?;
    let mut maps = take_maps(&mut ebpf)?;
    maps.info.set(0, wanted, 0).map_err(map_err("INFO"))?;
    Ok(super::Dataplane {
        maps,
        info: *wanted,
        origin: super::Origin::Upgraded,
        pin_dir: opts.pin_dir.clone(),
        ebpf: Some(ebpf),
        _link: Some(link),
        roles: Default::default(),
        vlans: Default::default(),
    })
}

/// Swap `prog` into the pinned XDP link `old` (one `bpf_link_update`). The pin stays in
/// place throughout: if the swap fails, the old program stays attached. Returns this
/// process's handle on the link, which lives on through its pin.
fn swap_into(
    prog: &mut aya::programs::Xdp,
    old: aya::programs::xdp::XdpLink,
    link_pin: &Path,
) -> Result<PinnedLink> {
    let id = prog
        .attach_to_link(old)
        .map_err(program_err("replace in link"))?;
    drop(prog.take_link(id));
    PinnedLink::from_pin(link_pin).map_err(|source| DataplaneError::Link {
        path: link_pin.to_owned(),
        source,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ABI and the attach mode of the pinned data plane, also when its `INFO` entry has
/// an older layout: `DataplaneInfo` only ever grows at its end; `abi` is its first u32
/// and `attach_mode` the u32 at byte 24 since ABI 2 (28 bytes).
fn pinned_abi_and_mode(dir: &Path) -> Option<(u32, u32)> {
    fn entry<const N: usize>(dir: &Path) -> Option<[u8; N]> {
        let data = MapData::from_pin(dir.join("INFO")).ok()?;
        let info: aya::maps::Array<MapData, [u8; N]> =
            Map::from_map_data(data).ok()?.try_into().ok()?;
        info.get(&0, 0).ok()
    }
    const ABI2_SIZE: usize = 28;
    let prefix: [u8; ABI2_SIZE] = match entry::<{ size_of::<DataplaneInfo>() }>(dir) {
        Some(b) => b[..ABI2_SIZE].try_into().ok()?,
        None => entry::<ABI2_SIZE>(dir)?,
    };
    let word = |at: usize| prefix[at..at + 4].try_into().ok().map(u32::from_ne_bytes);
    Some((word(0)?, word(24)?))
}

fn take_maps(ebpf: &mut aya::Ebpf) -> Result<Maps> {
    let mut take = |name: &'static str| {
        ebpf.take_map(name)
            .ok_or(DataplaneError::MissingMap { name })
    };
    build_maps(&mut take)
}

fn open_pinned_maps(dir: &Path) -> Result<Maps> {
    build_maps(|name| {
        let data = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
        Map::from_map_data(data).map_err(map_err(name))
    })
}

fn build_maps(mut get: impl FnMut(&'static str) -> Result<Map>) -> Result<Maps> {
    macro_rules! typed {
        ($name:literal) => {
            get($name)?.try_into().map_err(map_err($name))?
        };
    }
    Ok(Maps {
        vips: typed!("VIPS"),
        vip_filter: typed!("VIP_FILTER"),
        services: typed!("SERVICES"),
        maglev: typed!("MAGLEV"),
        backends: typed!("BACKENDS"),
        backend_stats: typed!("BACKEND_STATS"),
        flows: typed!("FLOWS"),
        flows_new: typed!("FLOWS_NEW"),
        ifaces: typed!("IFACES"),
        counters: typed!("COUNTERS"),
        info: typed!("INFO"),
        nat_services: typed!("NAT_SERVICES"),
        tunnel_services: typed!("TUNNEL_SERVICES"),
        tunnel_sources: typed!("TUNNEL_SOURCES"),
        nat_events: Some(typed!("NAT_EVENTS")),
    })
}

fn remove_map_pins(dir: &Path) -> Result<()> {
    for name in MAP_NAMES {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataplaneError::Io {
                    what: "removing",
                    path,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Remove every pin of the data plane in `dir` (maps and links): the program is
/// detached and unloaded once nothing else holds it. `fo-agent run --clean` and tests.
pub fn remove_all_pins(dir: &Path) -> Result<()> {
    remove_map_pins(dir)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `hclink_IFNAME`: the health-check encapsulation's link (see `hc`).
            if name.starts_with("link_") || name.starts_with(super::hc::LINK_PREFIX) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|source| DataplaneError::Io {
                    what: "removing",
                    path,
                    source,
                })?;
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Make sure `pin_dir` lies on bpffs, mounting /sys/fs/bpf if it is the expected
/// mount point and nothing is mounted there yet.
pub(super) fn ensure_bpffs(pin_dir: &Path) -> Result<()> {
    if on_bpffs(pin_dir) {
        return Ok(());
    }
    let default = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(default) && !on_bpffs(default) {
        let (src, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
        // SAFETY: mount(2) with valid NUL-terminated strings and no data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(DataplaneError::Io {
                what: "mounting bpffs on",
                path: default.to_owned(),
                source: std::io::Error::last_os_error(),
            });
        }
        info!("mounted bpffs on /sys/fs/bpf");
    }
    if on_bpffs(pin_dir) {
        Ok(())
    } else {
        Err(DataplaneError::NotBpffs {
            path: pin_dir.to_owned(),
        })
    }
}

/// Is the nearest existing ancestor of `path` on bpffs?
fn on_bpffs(path: &Path) -> bool {
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir.exists() {
            let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
                return false;
            };
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: statfs(2) on a valid path into a zeroed struct we own.
            let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
            return rc == 0 && st.f_type == BPF_FS_MAGIC;
        }
        p = dir.parent();
    }
    false
}

/// The index of interface `name` in this network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| DataplaneError::NoInterface {
        name: name.to_owned(),
    })?;
    // SAFETY: if_nametoindex(3) reads a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(DataplaneError::NoInterface {
            name: name.to_owned(),
        }),
        i => Ok(i),
    }
}
