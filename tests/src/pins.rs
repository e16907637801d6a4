//! A pinned data plane read and rewritten from outside the agent, as a test needs to
//! check what survived a restart or to leave the pins as another build of fo would.

use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData};
use fo_common::{Addr, DataplaneInfo, FAMILY_V4, FlowKey, FlowValue, NAT_TCP_ESTABLISHED, NatFlow};

fn open(pin_dir: &Path, name: &str) -> Map {
    let data = MapData::from_pin(pin_dir.join(name))
        .unwrap_or_else(|e| panic!("open pinned map {name} in {}: {e}", pin_dir.display()));
    Map::from_map_data(data).unwrap_or_else(|e| panic!("pinned map {name}: {e}"))
}

/// The kernel's id of the pinned map `name` (the same id means the same map).
pub fn map_id(pin_dir: &Path, name: &str) -> u32 {
    MapData::from_pin(pin_dir.join(name))
        .and_then(|m| m.info())
        .map(|i| i.id())
        .unwrap_or_else(|e| panic!("pinned map {name} in {}: {e}", pin_dir.display()))
}

/// What the pinned `INFO` map says the data plane was built with.
pub fn info(pin_dir: &Path) -> DataplaneInfo {
    let info: Array<MapData, DataplaneInfo> = open(pin_dir, "INFO").try_into().expect("INFO");
    info.get(&0, 0).expect("INFO[0]")
}

/// Mark the pinned data plane as built by another build of the XDP object.
pub fn set_build(pin_dir: &Path, build: [u8; 16]) {
    let mut info: Array<MapData, DataplaneInfo> = open(pin_dir, "INFO").try_into().expect("INFO");
    let mut v = info.get(&0, 0).expect("INFO[0]");
    v.build = build;
    info.set(0, &v, 0).expect("write INFO[0]");
}

/// Entries in the pinned flow table.
pub fn flows(pin_dir: &Path) -> usize {
    let flows: HashMap<MapData, FlowKey, FlowValue> =
        open(pin_dir, "FLOWS").try_into().expect("FLOWS");
    flows.keys().filter(Result::is_ok).count()
}

/// Entries in the pinned `NAT_FWD` table (connections).
pub fn nat_entries(pin_dir: &Path) -> usize {
    let fwd: HashMap<MapData, FlowKey, NatFlow> =
        open(pin_dir, "NAT_FWD").try_into().expect("NAT_FWD");
    fwd.keys().filter(Result::is_ok).count()
}

/// Made-up TCP connection `i` to `vip`:1514: client 10.200.0.0/16 by `i`'s low 16
/// bits, source port 1024 + the rest.
fn made_up_key(vip: [u8; 4], i: u32) -> FlowKey {
    FlowKey {
        src: Addr::v4([10, 200, (i >> 8 & 0xff) as u8, (i & 0xff) as u8]),
        dst: Addr::v4(vip),
        sport_be: (1024 + (i >> 16) as u16).to_be(),
        dport_be: 1514u16.to_be(),
        proto: 6,
        family: FAMILY_V4,
        _pad: [0; 2],
    }
}

/// Put `n` established NAT connections to `vip`:1514 into the pinned `NAT_FWD` table,
/// seen now (so nothing ages them out), from made-up clients 10.200.0.0/16 (only the
/// agent's walks read them; no packet ever matches).
pub fn fill_nat(pin_dir: &Path, vip: [u8; 4], n: u32) {
    let mut fwd: HashMap<MapData, FlowKey, NatFlow> =
        open(pin_dir, "NAT_FWD").try_into().expect("NAT_FWD");
    let now_ns = crate::natfill::mono_now_ns();
    for i in 0..n {
        let key = made_up_key(vip, i);
        let flow = NatFlow {
            backend: Addr::v4([10, 1, 0, 11]),
            snat: Addr::v4(vip),
            state: NAT_TCP_ESTABLISHED,
            backend_slot: u32::MAX,
            last_seen_ns: now_ns,
            ..Default::default()
        };
        fwd.insert(&key, &flow, 0)
            .unwrap_or_else(|e| panic!("NAT_FWD entry {i} of {n}: {e}"));
    }
}

/// Put `n` DSR flows to `vip`:1514 into the pinned `FLOWS` table (backend slot 0),
/// from made-up clients 10.200.0.0/16 (only the agent's counts read them).
pub fn fill_flows(pin_dir: &Path, vip: [u8; 4], n: u32) {
    let mut flows: HashMap<MapData, FlowKey, FlowValue> =
        open(pin_dir, "FLOWS").try_into().expect("FLOWS");
    for i in 0..n {
        let key = made_up_key(vip, i);
        let value = FlowValue {
            backend: 0,
            service_id: 0,
        };
        flows
            .insert(&key, &value, 0)
            .unwrap_or_else(|e| panic!("FLOWS entry {i} of {n}: {e}"));
    }
}

/// Put `n` established NAT connections to `vip`:1514 into the pinned tables, as the
/// program would have (`crate::natfill`): each with a reply tuple of its own on
/// `snat`, seen now; numbered from `first`, so two ranges never collide.
pub fn fill_nat_pairs(pin_dir: &Path, vip: [u8; 4], snat: [u8; 4], first: u32, n: u32) {
    crate::natfill::Fill {
        vip,
        snat,
        first,
        count: n,
    }
    .write(pin_dir)
    .unwrap_or_else(|e| panic!("filling the NAT tables in {}: {e:#}", pin_dir.display()));
}

/// The pinned NAT table as the sync carries it: every connection with its translation
/// and state (not its last-seen time or backend slot, which are each node's own).
pub fn nat_connections(pin_dir: &Path) -> std::collections::HashMap<FlowKey, NatFlow> {
    let table = fo_agent::dataplane::nat::NatTable::open(pin_dir)
        .unwrap_or_else(|e| panic!("NAT tables in {}: {e}", pin_dir.display()));
    table
        .flows()
        .unwrap_or_else(|e| panic!("walking NAT_FWD in {}: {e}", pin_dir.display()))
        .into_iter()
        .map(|(k, f)| {
            (
                k,
                NatFlow {
                    last_seen_ns: 0,
                    backend_slot: 0,
                    ..f
                },
            )
        })
        .collect()
}

/// Connections of `NAT_FWD` whose reply tuple `NAT_REV` does not map back to them,
/// and the number of `NAT_REV` entries: a consistent table has none and as many.
pub fn nat_inconsistencies(pin_dir: &Path) -> (usize, usize) {
    let table = fo_agent::dataplane::nat::NatTable::open(pin_dir)
        .unwrap_or_else(|e| panic!("NAT tables in {}: {e}", pin_dir.display()));
    let flows = table.flows().expect("walk NAT_FWD");
    let broken = flows
        .iter()
        .filter(|(k, f)| table.reverse(&f.reverse_key(k)).ok().flatten() != Some(*k))
        .count();
    let rev: HashMap<MapData, FlowKey, FlowKey> =
        open(pin_dir, "NAT_REV").try_into().expect("NAT_REV");
    (broken, rev.keys().filter(Result::is_ok).count())
}

/// What the agent wrote into the pinned service maps, in comparable terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceMaps {
    /// VIP -> `VipState::flags` (ownership, roles; the lease moves and is left out).
    pub vips: std::collections::BTreeMap<std::net::IpAddr, u32>,
    /// (VIP, port, protocol) -> (service id, flags).
    pub services: std::collections::BTreeMap<(std::net::IpAddr, u16, u8), (u32, u32)>,
    /// Active backend slots: slot -> (address, port, service id).
    pub backends: std::collections::BTreeMap<u32, (std::net::IpAddr, u16, u32)>,
    /// Each service's Maglev table (by service id): backend slot + 1 per entry, 0 empty.
    pub maglev: std::collections::BTreeMap<u32, Vec<u32>>,
}

/// Read the pinned `VIPS`, `SERVICES`, `BACKENDS` and `MAGLEV` maps (Maglev tables of
/// `maglev_size` entries, the config's `maglev_table_size`).
pub fn service_maps(pin_dir: &Path, maglev_size: u32) -> ServiceMaps {
    use fo_common::{Backend, ServiceKey, ServiceValue, VipKey, VipState};
    let vips: HashMap<MapData, VipKey, VipState> = open(pin_dir, "VIPS").try_into().expect("VIPS");
    let vips = vips
        .iter()
        .map(|r| r.expect("VIPS entry"))
        .map(|(k, v)| (k.addr.to_ip(k.family), v.flags))
        .collect();
    let services: HashMap<MapData, ServiceKey, ServiceValue> =
        open(pin_dir, "SERVICES").try_into().expect("SERVICES");
    let services: std::collections::BTreeMap<_, _> = services
        .iter()
        .map(|r| r.expect("SERVICES entry"))
        .map(|(k, v)| {
            (
                (k.vip.to_ip(k.family), u16::from_be(k.port_be), k.proto),
                (v.id, v.flags),
            )
        })
        .collect();
    let backends: Array<MapData, Backend> = open(pin_dir, "BACKENDS").try_into().expect("BACKENDS");
    let backends = (0..backends.len())
        .filter_map(|slot| {
            let b = backends.get(&slot, 0).expect("BACKENDS entry");
            (b.flags & fo_common::BACKEND_ACTIVE != 0).then(|| {
                (
                    slot,
                    (
                        b.addr.to_ip(b.family),
                        u16::from_be(b.port_be),
                        b.service_id,
                    ),
                )
            })
        })
        .collect();
    let table: Array<MapData, u32> = open(pin_dir, "MAGLEV").try_into().expect("MAGLEV");
    let maglev = services
        .values()
        .map(|&(id, _)| {
            let ring = (0..maglev_size)
                .map(|i| table.get(&(id * maglev_size + i), 0).expect("MAGLEV entry"))
                .collect();
            (id, ring)
        })
        .collect();
    ServiceMaps {
        vips,
        services,
        backends,
        maglev,
    }
}
