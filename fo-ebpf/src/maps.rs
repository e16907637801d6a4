//! Every map of the data plane. All are pinned by name under the agent's bpffs
//! directory, so the data plane outlives the agent and a restarted agent adopts
//! them. Sizes marked "set by the loader" are placeholders overridden at load.
//!
//! The program only reads the configuration maps; it writes the flow tables (`FLOWS`,
//! `FLOWS_NEW`), the NAT tables (`NAT_FWD`, `NAT_REV`, `NAT_UDP_FWD`, `NAT_UDP_REV`,
//! `NAT_EMBRYO_FWD`, `NAT_EMBRYO_REV`, `NAT_EVENTS`) and the per-CPU counters.

use aya_ebpf::{
    Global,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use fo_common::{
    Addr, Backend, ClientSeen, Counter, DataplaneInfo, FlowKey, FlowValue, Iface, NatFlow,
    NatService, ServiceKey, ServiceValue, TrafficStats, TunnelService, TunnelSourceKey, VipKey,
    VipState,
};

/// Maglev table size M (prime), fixed at load time by the agent.
#[unsafe(no_mangle)]
static MAGLEV_SIZE: Global<u32> = Global::new(65537);

#[inline(always)]
pub fn maglev_size() -> u32 {
    MAGLEV_SIZE.load()
}

/// VIP -> ownership and dead-man lease. Written by the agent. `VIPS_CAPACITY` entries
/// (the config's validation bounds the addresses by it).
#[map]
pub static VIPS: HashMap<VipKey, VipState> = HashMap::pinned(fo_common::VIPS_CAPACITY, 0);

/// Bitmap of the addresses that are keys of `VIPS` (`fo_common::vip_filter_bit`):
/// a frame whose destination's bit is clear passes without a `VIPS` lookup. An array,
/// so the verifier inlines the lookup. Written by the agent (a bit before the `VIPS`
/// entry that needs it, cleared after the last such entry went).
#[map]
pub static VIP_FILTER: Array<u64> = Array::pinned(fo_common::VIP_FILTER_WORDS, 0);

/// (VIP, port, protocol) -> service slot and hash mode. Written by the agent.
/// Max entries set by the loader (`max_services`).
#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(64, 0);

/// Maglev tables of all services, back to back: entry `service * M + h % M` is a
/// backend slot + 1, or `MAGLEV_EMPTY` (0). Written by the agent (whole table per rebuild).
/// Max entries set by the loader (`max_services * M`).
#[map]
pub static MAGLEV: Array<u32> = Array::pinned(1, 0);

/// Backend slot -> address, MACs, egress interface, flags. Written by the agent.
/// Max entries set by the loader (`max_backends`).
#[map]
pub static BACKENDS: Array<Backend> = Array::pinned(4096, 0);

/// Backend slot -> per-CPU packets and bytes forwarded. Written by the program.
#[map]
pub static BACKEND_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(4096, 0);

/// Connection 5-tuple -> backend slot (LRU) of flows that sent more than a SYN.
/// Written by the program (a connection's first non-SYN packet, or a packet of a
/// flow it did not know). Max entries set by the loader (`flow_table_size`).
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(65536, 0);

/// Connection 5-tuple -> backend slot (LRU) of TCP connections seen only as a SYN so
/// far; the first other packet moves the entry to `FLOWS`. A SYN flood churns this
/// map only, never evicting an established flow. Written by the program. Max entries
/// set by the loader (a quarter of `flow_table_size`).
#[map]
pub static FLOWS_NEW: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(16384, 0);

/// Service slot -> its SNAT pool (NAT services only). Written by the agent before
/// the service is published. Max entries set by the loader (`max_services`).
#[map]
pub static NAT_SERVICES: Array<NatService> = Array::pinned(64, 0);

/// Service slot -> its tunnel (outer source, encapsulation, MTU; tunnel services
/// only). Written by the agent before the service is published. Max entries set by
/// the loader (`max_services`).
#[map]
pub static TUNNEL_SERVICES: Array<TunnelService> = Array::pinned(64, 0);

/// Outer source prefixes of the tunnel services (LPM; key `family` byte then the
/// address, prefix length 8 + prefix). Looked up only for an ICMP error, to tell one
/// about an encapsulated packet. Written by the agent.
#[map]
pub static TUNNEL_SOURCES: LpmTrie<TunnelSourceKey, u32> = LpmTrie::pinned(256, 0);

/// Index 0: per-CPU scratch of the tunnel's ICMP errors (the FIB query of a relay, the
/// quote and headers being built), which would not fit the BPF stack. Program only;
/// not pinned.
#[map]
pub static TUNNEL_SCRATCH: PerCpuArray<TunnelScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct TunnelScratch {
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
    /// The client's IP header and 8 bytes (IPv6: 48).
    pub quote: [u8; 48],
    /// The error's IP and ICMP headers (IPv6: 48).
    pub hdr: [u8; 48],
}

/// NAT connections by the client's 5-tuple (client -> VIP:port) -> translation,
/// TCP state and tracking, last-seen time; only connections that proved their client
/// (`fo_common::nat`). A plain hash, not LRU: a full table refuses to take more
/// (counted) instead of evicting live ones. Written by the program (promotion from
/// the embryonic table, state, last seen) and by the agent (aging; flows synced
/// from the master). Max entries set by the loader (`nat_table_size`).
#[map]
pub static NAT_FWD: HashMap<FlowKey, NatFlow> = HashMap::pinned(65536, 0);

/// NAT replies by their 5-tuple as they arrive (backend:port -> SNAT:port) -> the
/// client's 5-tuple (the `NAT_FWD` key). Inserting here with `BPF_NOEXIST` is how
/// the program reserves a SNAT port. Written by the program (new connections) and
/// the agent (aging, sync). Max entries set by the loader (`nat_table_size`).
#[map]
pub static NAT_REV: HashMap<FlowKey, FlowKey> = HashMap::pinned(65536, 0);

/// NAT UDP flows that saw traffic both ways, keyed and valued as `NAT_FWD`: a table
/// of their own, because a spoofer who sends each forged datagram twice passes UDP's
/// only proof (the client sent again after a reply). A UDP flood fills this table at
/// most, never the TCP connections' place. Written as `NAT_FWD`. Max entries set by
/// the loader (a quarter of `nat_table_size`).
#[map]
pub static NAT_UDP_FWD: HashMap<FlowKey, NatFlow> = HashMap::pinned(16384, 0);

/// The reply tuples of `NAT_UDP_FWD`, as `NAT_REV`. Max entries set by the loader (as
/// `NAT_UDP_FWD`).
#[map]
pub static NAT_UDP_REV: HashMap<FlowKey, FlowKey> = HashMap::pinned(16384, 0);

/// New NAT connections that have not proved their client yet (LRU: under a flood the
/// least recently used goes), keyed as `NAT_FWD`. Written by the program (new
/// connections, state) and the agent (aging). Max entries set by the loader (a
/// quarter of `nat_table_size`).
#[map]
pub static NAT_EMBRYO_FWD: LruHashMap<FlowKey, NatFlow> = LruHashMap::pinned(16384, 0);

/// The reply tuples of the embryonic connections, keyed as `NAT_REV`: their SNAT
/// port reservations (a port is free where neither this map nor `NAT_REV` /
/// `NAT_UDP_REV` holds it). Evicted independently of `NAT_EMBRYO_FWD`: a connection
/// checks that it still holds its port before each use (`nat::holds_port`).
/// Written by the program and the agent (aging). Max entries set by the loader (as
/// `NAT_EMBRYO_FWD`).
#[map]
pub static NAT_EMBRYO_REV: LruHashMap<FlowKey, FlowKey> = LruHashMap::pinned(16384, 0);

/// `NatEvent` records for the agent's connection-state sync: connections established
/// (promoted from the embryonic table) and RSTs. Written by the program, read by the agent.
#[map]
pub static NAT_EVENTS: RingBuf = RingBuf::pinned(1 << 22, 0);

/// Index 0: per-CPU scratch space of the NAT paths (FIB query, entries being built),
/// which would not fit the 512-byte BPF stack. Program only; not pinned.
#[map]
pub static NAT_SCRATCH: PerCpuArray<NatScratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct NatScratch {
    pub fib: aya_ebpf::bindings::bpf_fib_lookup,
    pub flow: NatFlow,
    pub rev: FlowKey,
    /// The next hop `nat::route` found.
    pub hop_ifindex: u32,
    pub hop_src_mac: [u8; 6],
    pub hop_dst_mac: [u8; 6],
    /// TCP options of a SYN, copied out of the frame to read its window scale
    /// (8-byte aligned: zeroed as words).
    pub opts: [u8; 64],
}

/// ifindex -> the MAC this node answers ARP/ND with there. Written by the agent.
#[map]
pub static IFACES: HashMap<u32, Iface> = HashMap::pinned(64, 0);

/// `Counter` -> per-CPU count. Written by the program.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// Index 0: non-zero while a drill (`fo-agent drill`) records: TCP RSTs on owned VIPs
/// and SNAT addresses are counted then (`RstToVip`, `RstFromBackend`). Written by the
/// agent.
#[map]
pub static DRILL: Array<u32> = Array::pinned(1, 0);

/// Client address -> its first packet to an owned VIP while a drill records, and its
/// packets since. Written by the program while `DRILL` is set; read and emptied by the
/// agent.
#[map]
pub static DRILL_CLIENTS: LruHashMap<VipKey, ClientSeen> =
    LruHashMap::pinned(fo_common::DRILL_CLIENTS_CAPACITY, 0);

/// Index 0: the parameters the data plane was loaded with, for an adopting agent.
/// Written by the agent that loads the program; never read here.
#[map]
pub static INFO: Array<DataplaneInfo> = Array::pinned(1, 0);

/// A map key built on the stack, 8-byte aligned. fo-common's keys are byte arrays
/// (alignment 1 or 2), so LLVM zeroes and fills an unaligned one byte by byte (an
/// IPv4 `FlowKey` took ~70 single-byte stores); aligned, it uses whole words.
#[repr(C, align(8))]
pub struct Aligned<T>(pub T);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
    }
}

/// Is a drill recording? (Read only for the packets a drill counts, not for every one.)
#[inline(always)]
pub fn drilling() -> bool {
    DRILL.get(0).is_some_and(|on| *on != 0)
}

/// Record a client's packet to an owned VIP (a drill records).
#[inline(always)]
pub fn client_seen(addr: Addr, family: u8) {
    let key = Aligned(VipKey {
        addr,
        family,
        _pad: [0; 3],
    });
    if let Some(seen) = DRILL_CLIENTS.get_ptr_mut(&key.0) {
        // SAFETY: a live LRU value; a lost increment under parallel CPUs only makes the
        // count approximate.
        unsafe { (*seen).packets += 1 };
    } else {
        let seen = ClientSeen {
            // SAFETY: helper without arguments.
            first_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
            packets: 1,
        };
        // BPF_NOEXIST: another CPU's first packet may have come first; it stands.
        let _ = DRILL_CLIENTS.insert(&key.0, &seen, 1);
    }
}

/// Count the final verdict. The first counter slots are the action codes.
#[inline(always)]
pub fn count_action(action: u32) {
    if action <= Counter::ActionRedirect as u32
        && let Some(slot) = COUNTERS.get_ptr_mut(action)
    {
        // SAFETY: as in `count`.
        unsafe { *slot += 1 };
    }
}

/// Account a forwarded frame to its backend slot.
#[inline(always)]
pub fn account(backend: u32, bytes: usize) {
    if let Some(stats) = BACKEND_STATS.get_ptr_mut(backend) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*stats).packets += 1;
            (*stats).bytes += bytes as u64;
        }
    }
}

/// Is `vip` owned now, and may this node still claim it (lease not run out)?
/// Returns the reason to pass otherwise. A draining VIP (`VIP_DRAINING`, without
/// `VIP_OWNED`: another node took it over) is forwarded but not answered for.
#[inline(always)]
pub fn may_answer_for(key: &VipKey, not_a_vip: Counter) -> Result<(), Counter> {
    // SAFETY: values of this map are only replaced whole by the agent.
    let state = unsafe { VIPS.get(key) }.ok_or(not_a_vip)?;
    if state.flags & fo_common::VIP_OWNED == 0 {
        return Err(Counter::PassNotOwned);
    }
    if state.flags & fo_common::VIP_ROUTED != 0 {
        return Err(Counter::PassRoutedVip);
    }
    // SAFETY: helper without arguments.
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    if now >= state.lease_until_ns {
        return Err(Counter::PassLeaseExpired);
    }
    Ok(())
}

/// The MAC to answer with on the interface the frame came in on.
#[inline(always)]
pub fn iface_mac(ifindex: u32) -> Result<[u8; 6], Counter> {
    // SAFETY: written whole by the agent.
    unsafe { IFACES.get(&ifindex) }
        .map(|i| i.mac)
        .ok_or(Counter::PassNoIface)
}
