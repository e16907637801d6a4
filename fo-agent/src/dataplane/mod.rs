//! The data plane: the XDP program and its pinned maps. This module is the only code
//! in the agent that touches BPF maps; the rest of the agent calls the methods here.

mod batch;
pub mod decap;
pub mod flows;
mod forwarded;
pub mod hc;
mod loader;
pub mod maglev;
pub mod nat;
mod nat_events;
mod services;
mod shared;
pub mod tunnel;
mod vip_filter;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, RingBuf};
use fo_common::{
    Backend, Counter, DataplaneInfo, FlowKey, FlowValue, Iface, NatService, ServiceKey,
    ServiceValue, TrafficStats, TunnelService, TunnelSourceKey, VIP_DRAINING, VIP_NAT, VIP_OWNED,
    VIP_ROUTED, VIP_SNAT, VipKey, VipState,
};

pub use forwarded::{Forwarded, ForwardedCount};
pub use loader::{
    Attach, LoadOptions, Origin, XdpAttachMode, build_id, ifindex, new_connection_entries,
    remove_all_pins,
};
pub use nat_events::NatEvents;
pub use services::{ApplySummary, BackendSpec, NatSpec, ServiceSpec, ServiceTable, SlotInfo};
pub use shared::{Plane, SharedPlane, lease_task};

/// The compiled XDP object, built from `fo-ebpf` by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fo-xdp"));

/// How often a batch read (a Maglev table read back, a NAT table walk) fell back to
/// one lookup per entry (tests check that the batch path works).
static BATCH_FALLBACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn batch_fallbacks() -> u64 {
    BATCH_FALLBACKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Name of the XDP program in the object.
pub const PROGRAM: &str = "fo_xdp";

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{path} is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs { path: PathBuf },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the XDP object")]
    Load(#[source] aya::EbpfError),
    /// BPF_PROG_LOAD failed: the verifier's log says why, when it ran (without
    /// CAP_NET_ADMIN the kernel refuses an XDP program before the verifier runs).
    #[error(
        "the kernel refused the XDP program (BPF_PROG_LOAD: {errno}){}",
        if log.trim().is_empty() { " before the verifier ran".to_string() } else { format!("; verifier log:\n{log}") }
    )]
    Verifier { errno: std::io::Error, log: String },
    #[error("XDP program: {what}")]
    Program {
        what: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("pinning {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("opening the pinned link {path}")]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("interface {name} does not exist")]
    NoInterface { name: String },
    #[error("invalid {what}")]
    Invalid { what: &'static str },
    #[error("no free {what} slot (limit {limit}; raise it in [node])")]
    Full { what: &'static str, limit: u32 },
}

type Result<T, E = DataplaneError> = std::result::Result<T, E>;

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// A lookup's result in map `name`, a missing key as `None`.
fn found<V>(name: &'static str, got: std::result::Result<V, MapError>) -> Result<Option<V>> {
    match got {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(map_err(name)(e)),
    }
}

fn program_err(what: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DataplaneError {
    move |source| DataplaneError::Program { what, source }
}

/// `load()`'s error: the verifier's log for a program the kernel refused, else `what`
/// failed.
fn load_err(what: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> DataplaneError {
    move |source| match source {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => DataplaneError::Verifier {
            errno: io_error,
            log: verifier_log.to_string(),
        },
        source => DataplaneError::Program { what, source },
    }
}

/// The link pinned at `path` as an `L`, if one is. A pin of another kind (someone
/// pinned something else there) is removed, so the caller attaches anew.
fn pinned_link<L>(path: &Path) -> Result<Option<L>>
where
    L: TryFrom<aya::programs::links::FdLink>,
{
    if !path.exists() {
        return Ok(None);
    }
    let pinned = aya::programs::links::PinnedLink::from_pin(path).map_err(|source| {
        DataplaneError::Link {
            path: path.to_owned(),
            source,
        }
    })?;
    match L::try_from(aya::programs::links::FdLink::from(pinned)) {
        Ok(l) => Ok(Some(l)),
        Err(_) => {
            remove_pin(path)?;
            Ok(None)
        }
    }
}

/// Remove the pin at `path`; one that is not there is fine.
fn remove_pin(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Io {
            what: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Typed handles to every map of the program.
struct Maps {
    vips: HashMap<MapData, VipKey, VipState>,
    vip_filter: Array<MapData, u64>,
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    backend_stats: PerCpuArray<MapData, TrafficStats>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    flows_new: HashMap<MapData, FlowKey, FlowValue>,
    ifaces: HashMap<MapData, u32, Iface>,
    counters: PerCpuArray<MapData, u64>,
    info: Array<MapData, DataplaneInfo>,
    nat_services: Array<MapData, NatService>,
    tunnel_services: Array<MapData, TunnelService>,
    tunnel_sources: LpmTrie<MapData, TunnelSourceKey, u32>,
    /// Taken by the connection-state sync, which reads it on its own task.
    nat_events: Option<RingBuf<MapData>>,
}

/// Nanoseconds of CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonoNanos(pub u64);

impl MonoNanos {
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we own; CLOCK_MONOTONIC always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        MonoNanos(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    pub fn after(self, d: std::time::Duration) -> Self {
        MonoNanos(self.0.saturating_add(d.as_nanos() as u64))
    }
}

/// A loaded or adopted data plane.
pub struct Dataplane {
    maps: Maps,
    info: DataplaneInfo,
    origin: Origin,
    pin_dir: PathBuf,
    /// The loaded object, when this process loaded it (absent when adopted).
    ebpf: Option<aya::Ebpf>,
    /// Keeps the pinned attachment open while the agent runs (the pin keeps it after).
    _link: Option<aya::programs::links::PinnedLink>,
    /// `VIP_NAT` / `VIP_SNAT` per address, kept in every write of its `VIPS` entry.
    roles: BTreeMap<IpAddr, u32>,
    /// The 802.1Q VLAN of each VIP on one (`VipState::vlan`), kept in every write of its
    /// `VIPS` entry.
    vlans: BTreeMap<IpAddr, u16>,
}

impl Dataplane {
    /// Load the program, or adopt the one pinned under `opts.pin_dir`, and attach it
    /// as `attach` says.
    pub fn open(opts: &LoadOptions, attach: &Attach) -> Result<Self> {
        loader::open(opts, attach)
    }

    /// Load `object`, another build of the XDP program (the A/B data-plane bench's
    /// baseline), detached, for BPF_PROG_TEST_RUN only. Its maps must have this
    /// build's layout (same `fo_common::ABI_VERSION`); `info().build` names this build.
    pub fn open_detached_object(opts: &LoadOptions, object: &[u8]) -> Result<Self> {
        loader::open_detached_object(opts, object)
    }

    /// Whether this process loaded the program or adopted a pinned one.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The parameters the data plane was loaded with.
    pub fn info(&self) -> DataplaneInfo {
        self.info
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Run the program once on `frame` with BPF_PROG_TEST_RUN (`repeat` times),
    /// without any interface. Returns the action, the output frame and the kernel's
    /// mean run time. Only for a data plane this process loaded.
    pub fn test_run(&mut self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return Err(DataplaneError::MissingMap {
                name: "program (adopted data plane)",
            });
        };
        let prog = xdp_program(ebpf)?;
        // Room for a Neighbor Advertisement grown from a short solicitation, filled with
        // a guard pattern: bytes past the frame the kernel hands back must keep it.
        let mut out = vec![TEST_RUN_GUARD; frame.len() + 256];
        let opts = aya::programs::TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..Default::default()
        };
        use aya::programs::TestRun as _;
        let result = prog
            .test_run(opts)
            .map_err(program_err("BPF_PROG_TEST_RUN"))?;
        let len = (result.data_size_out as usize).min(out.len());
        let guard_overwritten = out[len..].iter().filter(|&&b| b != TEST_RUN_GUARD).count();
        out.truncate(len);
        Ok(TestRun {
            action: result.return_value,
            frame: out,
            guard_overwritten,
            duration: result.duration,
        })
    }

    // ---- ownership ---------------------------------------------------------------

    /// Publish `vip` as owned (answer ARP/ND, forward services) until `lease_until`,
    /// or as not owned.
    pub fn set_vip(&mut self, vip: IpAddr, owned: bool, lease_until: MonoNanos) -> Result<()> {
        let role = self.roles.get(&vip).copied().unwrap_or(0);
        let state = VipState {
            flags: if owned { VIP_OWNED | role } else { role },
            vlan: self.vlan_of(vip),
            _pad: 0,
            lease_until_ns: if owned { lease_until.0 } else { 0 },
        };
        self.write_vip(&VipKey::new(vip), &state)
    }

    /// Publish `vip` as draining (make before break): another node answers for it now;
    /// this one forwards what still reaches it, answers no ARP/ND and opens no NAT
    /// connection. No lease: the agent clears it when the grace ends.
    pub fn set_vip_draining(&mut self, vip: IpAddr) -> Result<()> {
        let state = VipState {
            flags: VIP_DRAINING | self.roles.get(&vip).copied().unwrap_or(0),
            vlan: self.vlan_of(vip),
            _pad: 0,
            lease_until_ns: 0,
        };
        self.write_vip(&VipKey::new(vip), &state)
    }

    /// Publish `vip` as routed to this node (announced over BGP): its services are
    /// forwarded, ARP/ND for it is never answered, so no lease is involved.
    pub fn set_vip_routed(&mut self, vip: IpAddr) -> Result<()> {
        let state = VipState {
            flags: VIP_OWNED | VIP_ROUTED | self.roles.get(&vip).copied().unwrap_or(0),
            vlan: self.vlan_of(vip),
            _pad: 0,
            lease_until_ns: 0,
        };
        self.write_vip(&VipKey::new(vip), &state)
    }

    /// Whether `addr` is a VIP with NAT services (as [`Dataplane::set_vip_role`] last
    /// said).
    pub fn has_nat(&self, addr: IpAddr) -> bool {
        self.roles.get(&addr).is_some_and(|r| r & VIP_NAT != 0)
    }

    /// Mark `addr` as a VIP with NAT services (`nat`) and/or a SNAT address (`snat`).
    /// Its `VIPS` entry is rewritten now, ownership and lease unchanged.
    pub fn set_vip_role(&mut self, addr: IpAddr, nat: bool, snat: bool) -> Result<()> {
        let role = if nat { VIP_NAT } else { 0 } | if snat { VIP_SNAT } else { 0 };
        self.roles.insert(addr, role);
        let key = VipKey::new(addr);
        let mut state = match self.maps.vips.get(&key, 0) {
            Ok(s) => s,
            Err(MapError::KeyNotFound) => VipState::default(),
            Err(e) => return Err(map_err("VIPS")(e)),
        };
        state.flags = (state.flags & (VIP_OWNED | VIP_ROUTED | VIP_DRAINING)) | role;
        self.write_vip(&key, &state)
    }

    /// Put `vip` on 802.1Q VLAN `vlan` (0: untagged): the program serves it only for
    /// frames with that tag, and keeps the tag on what it sends. Its `VIPS` entry is
    /// rewritten now, ownership and lease unchanged.
    pub fn set_vip_vlan(&mut self, vip: IpAddr, vlan: u16) -> Result<()> {
        if vlan == 0 {
            self.vlans.remove(&vip);
        } else {
            self.vlans.insert(vip, vlan);
        }
        let key = VipKey::new(vip);
        let mut state = match self.maps.vips.get(&key, 0) {
            Ok(s) => s,
            Err(MapError::KeyNotFound) => VipState::default(),
            Err(e) => return Err(map_err("VIPS")(e)),
        };
        state.vlan = vlan;
        self.write_vip(&key, &state)
    }

    fn vlan_of(&self, vip: IpAddr) -> u16 {
        self.vlans.get(&vip).copied().unwrap_or(0)
    }

    pub fn remove_vip(&mut self, vip: IpAddr) -> Result<()> {
        let key = VipKey::new(vip);
        match self.maps.vips.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => {
                vip_filter::forget(&mut self.maps.vip_filter, &self.maps.vips, &key)
            }
            Err(e) => Err(map_err("VIPS")(e)),
        }
    }

    /// Every write of a `VIPS` entry: its `VIP_FILTER` bit first, so the program never
    /// sees the entry without it.
    fn write_vip(&mut self, key: &VipKey, state: &VipState) -> Result<()> {
        vip_filter::admit(&mut self.maps.vip_filter, key)?;
        self.maps
            .vips
            .insert(key, state, 0)
            .map_err(map_err("VIPS"))
    }

    /// Every VIP in the map with its state.
    pub fn vips(&self) -> Result<Vec<(IpAddr, VipState)>> {
        self.maps
            .vips
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.addr.to_ip(k.family), v))
                    .map_err(map_err("VIPS"))
            })
            .collect()
    }

    /// The MAC to answer ARP/ND with on interface `ifindex`.
    pub fn set_iface(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        self.maps
            .ifaces
            .insert(&ifindex, &Iface { mac, _pad: [0; 2] }, 0)
            .map_err(map_err("IFACES"))
    }

    // ---- services (called by ServiceTable) -----------------------------------------

    fn put_service(&mut self, key: ServiceKey, value: ServiceValue) -> Result<()> {
        self.maps
            .services
            .insert(&key, &value, 0)
            .map_err(map_err("SERVICES"))
    }

    fn delete_service(&mut self, key: &ServiceKey) -> Result<()> {
        match self.maps.services.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("SERVICES")(e)),
        }
    }

    fn service_entries(&self) -> Result<Vec<(ServiceKey, ServiceValue)>> {
        self.maps
            .services
            .iter()
            .map(|r| r.map_err(map_err("SERVICES")))
            .collect()
    }

    fn put_nat_service(&mut self, id: u32, value: NatService) -> Result<()> {
        self.maps
            .nat_services
            .set(id, &value, 0)
            .map_err(map_err("NAT_SERVICES"))
    }

    fn put_maglev(&mut self, index: u32, slot: u32) -> Result<()> {
        self.maps
            .maglev
            .set(index, &slot, 0)
            .map_err(map_err("MAGLEV"))
    }

    fn maglev_entry(&self, index: u32) -> Result<u32> {
        self.maps.maglev.get(&index, 0).map_err(map_err("MAGLEV"))
    }

    /// `MAGLEV[start .. start + n]`, in a few BPF_MAP_LOOKUP_BATCH calls instead of one
    /// lookup per entry (a service's table is 65,537 entries; reading them one by one
    /// took about 150 ms per service when a restarted agent adopted the maps). Falls
    /// back to single lookups where the kernel has no batch operations.
    fn maglev_range(&self, start: u32, n: u32) -> Result<Vec<u32>> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        let fd = self.maps.maglev.map().fd().as_fd();
        match batch::lookup_u32_array(fd, start, n) {
            Ok(values) => Ok(values),
            Err(e) => {
                BATCH_FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(error = %e, "MAGLEV batch lookup failed: reading entries one by one");
                (start..start + n).map(|i| self.maglev_entry(i)).collect()
            }
        }
    }

    fn put_backend(&mut self, slot: u32, backend: Backend) -> Result<()> {
        self.maps
            .backends
            .set(slot, &backend, 0)
            .map_err(map_err("BACKENDS"))
    }

    /// The MAC of every active backend address in the maps (as an earlier run wrote it).
    pub fn backend_macs(&self) -> Result<BTreeMap<IpAddr, [u8; 6]>> {
        Ok(self
            .backend_entries()?
            .into_iter()
            .filter(|b| b.flags & fo_common::BACKEND_ACTIVE != 0 && b.dst_mac != [0; 6])
            .map(|b| (b.addr.to_ip(b.family), b.dst_mac))
            .collect())
    }

    fn backend_entries(&self) -> Result<Vec<Backend>> {
        self.maps
            .backends
            .iter()
            .map(|r| r.map_err(map_err("BACKENDS")))
            .collect()
    }

    // ---- statistics -----------------------------------------------------------------

    /// Every counter, summed over the CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|&c| Ok((c, self.counter(c)?)))
            .collect()
    }

    /// One counter, summed over the CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64> {
        let per_cpu = self
            .maps
            .counters
            .get(&(c as u32), 0)
            .map_err(map_err("COUNTERS"))?;
        Ok(per_cpu.iter().sum())
    }

    /// Packets and bytes forwarded to a backend slot, summed over the CPUs.
    pub fn backend_stats(&self, slot: u32) -> Result<TrafficStats> {
        let per_cpu = self
            .maps
            .backend_stats
            .get(&slot, 0)
            .map_err(map_err("BACKEND_STATS"))?;
        Ok(per_cpu
            .iter()
            .fold(TrafficStats::default(), |acc, s| TrafficStats {
                packets: acc.packets + s.packets,
                bytes: acc.bytes + s.bytes,
            }))
    }

    /// The backend slot an established flow is pinned to, if any.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowValue>> {
        found("FLOWS", self.maps.flows.get(key, 0))
    }

    /// The backend slot a connection seen only as a SYN so far is pinned to, if any.
    pub fn new_flow(&self, key: &FlowKey) -> Result<Option<FlowValue>> {
        found("FLOWS_NEW", self.maps.flows_new.get(key, 0))
    }
}

/// The XDP program of a loaded object.
fn xdp_program(ebpf: &mut aya::Ebpf) -> Result<&mut aya::programs::Xdp> {
    ebpf.program_mut(PROGRAM)
        .ok_or(DataplaneError::MissingMap { name: PROGRAM })?
        .try_into()
        .map_err(program_err("type"))
}

/// An error and its sources on one line ("a: b: c"), for logs and test messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The byte [`Dataplane::test_run`] fills its output buffer with before the run.
pub const TEST_RUN_GUARD: u8 = 0xa5;

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Debug)]
pub struct TestRun {
    pub action: u32,
    pub frame: Vec<u8>,
    /// Bytes of the output buffer past the returned frame that no longer hold
    /// [`TEST_RUN_GUARD`] (a write outside the frame; must be 0).
    pub guard_overwritten: usize,
    pub duration: std::time::Duration,
}
