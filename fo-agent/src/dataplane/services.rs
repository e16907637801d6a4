//! Services and backends in the maps: slot allocation, Maglev tables, and the
//! order of writes that keeps every packet's lookup valid during a change.
//!
//! Order for a change: (0) a tunnel service's parameters, (1) new backend slots are written active, (2) the Maglev
//! table is rewritten entry by entry (only entries that change), (3) removed
//! backends' slots are deactivated — flows pinned to them are re-hashed by the
//! program — and (4) the service entry is published last for a new service, or
//! removed first for a removed one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fo_common::{
    Addr, BACKEND_ACTIVE, BACKEND_TUNNEL, Backend, MAGLEV_EMPTY, NAT_MAX_SNAT, NAT_PORT_MAX,
    NAT_PORT_MIN, NatService, SVC_HASH_5TUPLE, SVC_NAT, SVC_TUNNEL, ServiceKey, ServiceValue,
};

use super::maglev::{self, Member};
use super::tunnel::TunnelSpec;
use super::{Dataplane, DataplaneError, Result};

/// A service as the agent wants it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub vip: IpAddr,
    pub port: u16,
    /// IANA protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Hash the 5-tuple; otherwise the source address alone.
    pub hash_5tuple: bool,
    pub backends: Vec<BackendSpec>,
    /// Full NAT through this node (`None`: DSR).
    pub nat: Option<NatSpec>,
    /// Tunnelled DSR (`None`: DSR on the link). Backends' MACs and interface are then
    /// their next hop's (`dataplane::tunnel`). Not together with `nat`.
    pub tunnel: Option<TunnelSpec>,
}

/// How a NAT service translates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSpec {
    /// Source addresses towards the backends (1..=4, of the VIP's family): the
    /// router's `snat`.
    pub snat: Vec<IpAddr>,
}

/// A backend of a service, resolved to link-layer terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: IpAddr,
    pub port: u16,
    /// Maglev weight; 0 = drained (existing flows stay, no new ones).
    pub weight: u32,
    pub mac: [u8; 6],
    /// MAC of our interface towards the backend.
    pub src_mac: [u8; 6],
    /// Our interface towards the backend (XDP_TX when it is the ingress one).
    pub ifindex: u32,
}

type SvcId = (IpAddr, u16, u8);
/// A backend's identity: address and port.
pub type BackendId = (IpAddr, u16);

#[derive(Debug)]
struct Installed {
    id: u32,
    flags: u32,
    /// backend -> (slot, weight as last applied)
    backends: BTreeMap<BackendId, (u32, u32)>,
    /// The service's Maglev table as written to the map (backend slot + 1, or
    /// `MAGLEV_EMPTY`).
    ring: Vec<u32>,
    /// The spec last applied (`None` after adoption): an unchanged spec is skipped.
    applied: Option<ServiceSpec>,
}

/// What `apply` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplySummary {
    pub services_added: usize,
    pub services_removed: usize,
    pub backends_added: usize,
    pub backends_removed: usize,
    pub maglev_entries_written: usize,
}

/// One row of [`ServiceTable::slots`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub backend: IpAddr,
    pub backend_port: u16,
    pub slot: u32,
    pub weight: u32,
}

/// The agent's view of what the service maps hold.
#[derive(Debug)]
pub struct ServiceTable {
    m: u32,
    max_services: u32,
    max_backends: u32,
    services: BTreeMap<SvcId, Installed>,
    used_slots: BTreeSet<u32>,
    /// Where the search for a free slot starts: slots are handed out round-robin, so
    /// allocation is amortised O(log n) and a freed slot is not reused at once (a
    /// stale flow entry is less likely to meet a new backend in it).
    next_slot: u32,
}

impl ServiceTable {
    /// Read back what the maps hold (after adoption, or empty after a fresh load).
    pub fn from_dataplane(dp: &Dataplane) -> Result<Self> {
        let info = dp.info();
        let mut table = ServiceTable {
            m: info.maglev_size,
            max_services: info.max_services,
            max_backends: info.max_backends,
            services: BTreeMap::new(),
            used_slots: BTreeSet::new(),
            next_slot: 0,
        };
        let mut by_id: BTreeMap<u32, SvcId> = BTreeMap::new();
        for (key, value) in dp.service_entries()? {
            let id: SvcId = (
                key.vip.to_ip(key.family),
                u16::from_be(key.port_be),
                key.proto,
            );
            let ring = dp.maglev_range(value.id * table.m, table.m)?;
            by_id.insert(value.id, id);
            table.services.insert(
                id,
                Installed {
                    id: value.id,
                    flags: value.flags,
                    backends: BTreeMap::new(),
                    ring,
                    applied: None,
                },
            );
        }
        for (slot, b) in dp.backend_entries()?.into_iter().enumerate() {
            if b.flags & BACKEND_ACTIVE == 0 {
                continue;
            }
            let slot = slot as u32;
            table.used_slots.insert(slot);
            if let Some(inst) = by_id
                .get(&b.service_id)
                .and_then(|id| table.services.get_mut(id))
            {
                let weight = inst.ring.iter().filter(|&&s| s == slot + 1).count().min(1) as u32;
                inst.backends.insert(
                    (b.addr.to_ip(b.family), u16::from_be(b.port_be)),
                    (slot, weight),
                );
            }
        }
        Ok(table)
    }

    /// Make the maps hold exactly `desired`. Whether it fits is checked first
    /// ([`Self::check`]): if not, nothing is written.
    pub fn apply(&mut self, dp: &mut Dataplane, desired: &[ServiceSpec]) -> Result<ApplySummary> {
        self.check(desired)?;
        let mut summary = ApplySummary::default();
        let wanted: BTreeSet<SvcId> = desired.iter().map(|s| (s.vip, s.port, s.proto)).collect();
        let gone: Vec<SvcId> = self
            .services
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for id in gone {
            self.remove_service(dp, id, &mut summary)?;
        }
        for spec in self.apply_order(desired) {
            self.apply_service(dp, spec, &mut summary)?;
        }
        Ok(summary)
    }

    /// Backends `spec` adds to and removes from what is installed for its service.
    fn delta(&self, spec: &ServiceSpec) -> (usize, usize) {
        let ids: BTreeSet<BackendId> = spec.backends.iter().map(|b| (b.addr, b.port)).collect();
        match self.services.get(&(spec.vip, spec.port, spec.proto)) {
            None => (ids.len(), 0),
            Some(inst) if inst.applied.as_ref() == Some(spec) => (0, 0),
            Some(inst) => (
                ids.iter()
                    .filter(|id| !inst.backends.contains_key(id))
                    .count(),
                inst.backends.keys().filter(|id| !ids.contains(id)).count(),
            ),
        }
    }

    /// The services that free backend slots first, so that those that take slots
    /// find them (the order among services does not matter to a packet).
    fn apply_order<'a>(&self, desired: &'a [ServiceSpec]) -> Vec<&'a ServiceSpec> {
        let mut order: Vec<&ServiceSpec> = desired.iter().collect();
        order.sort_by_key(|s| {
            let (added, removed) = self.delta(s);
            added > removed
        });
        order
    }

    /// Whether `desired` fits the maps, counted the way [`Self::apply`] writes it:
    /// service ids, and backend slots at every step (removed services free theirs
    /// first; within a service a new backend takes a free slot, or at the limit the
    /// slot of a backend the same change removes). Nothing is written.
    pub fn check(&self, desired: &[ServiceSpec]) -> Result<()> {
        for spec in desired {
            if let Some(tunnel) = &spec.tunnel {
                if spec.nat.is_some() || tunnel.source.is_ipv4() != spec.vip.is_ipv4() {
                    return Err(DataplaneError::Invalid {
                        what: "tunnel service (with NAT, or outer source of another family)",
                    });
                }
                tunnel.value()?;
            }
        }
        let wanted: BTreeSet<SvcId> = desired.iter().map(|s| (s.vip, s.port, s.proto)).collect();
        if wanted.len() > self.max_services as usize {
            return Err(DataplaneError::Full {
                what: "service",
                limit: self.max_services,
            });
        }
        let freed: usize = self
            .services
            .iter()
            .filter(|(k, _)| !wanted.contains(k))
            .map(|(_, inst)| inst.backends.len())
            .sum();
        let mut used = self.used_slots.len().saturating_sub(freed);
        let max = self.max_backends as usize;
        for spec in self.apply_order(desired) {
            let (added, removed) = self.delta(spec);
            if used + added > max + removed {
                return Err(DataplaneError::Full {
                    what: "backend",
                    limit: self.max_backends,
                });
            }
            used = used + added - removed;
        }
        Ok(())
    }

    /// The Maglev table of a service as written to the map, each entry resolved from
    /// its slot to the backend's identity: what decides a new flow's backend. Nodes
    /// with the same config hold the same sequence whatever their slot numbers
    /// (BGP ownership relies on it: a flow ECMP moves keeps its backend).
    pub fn maglev_backends(
        &self,
        vip: IpAddr,
        port: u16,
        proto: u8,
    ) -> Option<Vec<Option<BackendId>>> {
        let inst = self.services.get(&(vip, port, proto))?;
        let by_slot: BTreeMap<u32, BackendId> = inst
            .backends
            .iter()
            .map(|(id, &(slot, _))| (slot + 1, *id))
            .collect();
        Some(inst.ring.iter().map(|s| by_slot.get(s).copied()).collect())
    }

    /// Every backend slot with its service, for statistics.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let mut out = Vec::new();
        for (&(vip, port, proto), inst) in &self.services {
            for (&(backend, backend_port), &(slot, weight)) in &inst.backends {
                out.push(SlotInfo {
                    vip,
                    port,
                    proto,
                    backend,
                    backend_port,
                    slot,
                    weight,
                });
            }
        }
        out
    }

    fn apply_service(
        &mut self,
        dp: &mut Dataplane,
        spec: &ServiceSpec,
        summary: &mut ApplySummary,
    ) -> Result<()> {
        let key = (spec.vip, spec.port, spec.proto);
        let flags = if spec.hash_5tuple { SVC_HASH_5TUPLE } else { 0 }
            | if spec.nat.is_some() { SVC_NAT } else { 0 }
            | if spec.tunnel.is_some() { SVC_TUNNEL } else { 0 };
        let is_new = !self.services.contains_key(&key);
        if is_new {
            let id = (0..self.max_services)
                .find(|i| !self.services.values().any(|s| s.id == *i))
                .ok_or(DataplaneError::Full {
                    what: "service",
                    limit: self.max_services,
                })?;
            let ring = vec![MAGLEV_EMPTY; self.m as usize];
            self.services.insert(
                key,
                Installed {
                    id,
                    flags,
                    backends: BTreeMap::new(),
                    ring,
                    applied: None,
                },
            );
            summary.services_added += 1;
        } else if self.services[&key].applied.as_ref() == Some(spec) {
            // Nothing changed: no table to rebuild, no entry to write.
            return Ok(());
        }
        let (service_id, old_backends) = {
            let inst = &self.services[&key];
            (inst.id, inst.backends.clone())
        };

        // (0) a tunnel service's parameters, before any backend slot says "tunnel".
        if let Some(tunnel) = &spec.tunnel {
            dp.put_tunnel_service(service_id, tunnel.value()?)?;
        }
        let backend_flags = if spec.tunnel.is_some() {
            BACKEND_ACTIVE | BACKEND_TUNNEL
        } else {
            BACKEND_ACTIVE
        };

        // (1) backend slots, new ones active before the table points at them. With no
        // slot free (at max_backends), a new backend takes over the slot of one this
        // change removes: the table's entries for that slot then send new flows to
        // the new backend until it is rewritten, and flows pinned to the slot (the
        // removed backend's, lost with it anyway) reach the new one instead of being
        // hashed again.
        let wanted: BTreeSet<BackendId> = spec.backends.iter().map(|b| (b.addr, b.port)).collect();
        let mut spare: Vec<u32> = old_backends
            .iter()
            .filter(|(id, _)| !wanted.contains(id))
            .map(|(_, &(slot, _))| slot)
            .collect();
        let mut reused: BTreeSet<u32> = BTreeSet::new();
        let mut slots: BTreeMap<BackendId, (u32, u32)> = BTreeMap::new();
        for b in &spec.backends {
            let id = (b.addr, b.port);
            let slot = match old_backends.get(&id) {
                Some(&(slot, _)) => slot,
                None => {
                    summary.backends_added += 1;
                    match self.alloc_slot() {
                        Ok(slot) => slot,
                        Err(full) => {
                            let slot = spare.pop().ok_or(full)?;
                            reused.insert(slot);
                            slot
                        }
                    }
                }
            };
            let (addr, family) = Addr::from_ip(b.addr);
            dp.put_backend(
                slot,
                Backend {
                    addr,
                    dst_mac: b.mac,
                    src_mac: b.src_mac,
                    ifindex: b.ifindex,
                    flags: backend_flags,
                    service_id,
                    family,
                    _pad: 0,
                    port_be: b.port.to_be(),
                },
            )?;
            slots.insert(id, (slot, b.weight));
        }

        // (2) the Maglev table, only the entries that change.
        let members: Vec<Member> = spec
            .backends
            .iter()
            .map(|b| Member {
                addr: b.addr,
                port: b.port,
                weight: b.weight,
            })
            .collect();
        let table = maglev::build(&members, self.m);
        let base = service_id * self.m;
        let inst = self.services.get_mut(&key).expect("inserted above");
        for (i, entry) in table.iter().enumerate() {
            // Stored as slot + 1 (0 is MAGLEV_EMPTY).
            let stored = entry
                .map(|m| {
                    let b = &spec.backends[m as usize];
                    slots[&(b.addr, b.port)].0 + 1
                })
                .unwrap_or(MAGLEV_EMPTY);
            if inst.ring[i] != stored {
                dp.put_maglev(base + i as u32, stored)?;
                inst.ring[i] = stored;
                summary.maglev_entries_written += 1;
            }
        }

        // (3) removed backends: deactivate, so their flows are re-hashed (unless a new
        // backend holds the slot now).
        for (id, &(slot, _)) in &old_backends {
            if !slots.contains_key(id) {
                if !reused.contains(&slot) {
                    dp.put_backend(slot, Backend::default())?;
                    self.used_slots.remove(&slot);
                }
                summary.backends_removed += 1;
            }
        }
        inst.backends = slots;

        // (4) the SNAT pool of a NAT service, then publish (or update the flags of)
        // the service.
        if let Some(nat) = &spec.nat {
            let mut value = NatService {
                port_min: NAT_PORT_MIN,
                port_max: NAT_PORT_MAX,
                ..Default::default()
            };
            for (i, a) in nat.snat.iter().take(NAT_MAX_SNAT).enumerate() {
                value.snat[i] = Addr::from_ip(*a).0;
                value.snat_count += 1;
            }
            dp.put_nat_service(service_id, value)?;
        }
        if is_new || inst.flags != flags {
            inst.flags = flags;
            dp.put_service(
                ServiceKey::new(spec.vip, spec.port, spec.proto),
                ServiceValue {
                    id: service_id,
                    flags,
                },
            )?;
        }
        inst.applied = Some(spec.clone());
        Ok(())
    }

    fn remove_service(
        &mut self,
        dp: &mut Dataplane,
        key: SvcId,
        summary: &mut ApplySummary,
    ) -> Result<()> {
        let Some(inst) = self.services.remove(&key) else {
            return Ok(());
        };
        dp.delete_service(&ServiceKey::new(key.0, key.1, key.2))?;
        for (i, &slot) in inst.ring.iter().enumerate() {
            if slot != MAGLEV_EMPTY {
                dp.put_maglev(inst.id * self.m + i as u32, MAGLEV_EMPTY)?;
                summary.maglev_entries_written += 1;
            }
        }
        for &(slot, _) in inst.backends.values() {
            dp.put_backend(slot, Backend::default())?;
            self.used_slots.remove(&slot);
            summary.backends_removed += 1;
        }
        summary.services_removed += 1;
        Ok(())
    }

    fn alloc_slot(&mut self) -> Result<u32> {
        let full = DataplaneError::Full {
            what: "backend",
            limit: self.max_backends,
        };
        if self.used_slots.len() >= self.max_backends as usize {
            return Err(full);
        }
        // The first free slot at or after the cursor, wrapping once.
        let mut slot = self.next_slot % self.max_backends;
        for used in self.used_slots.range(slot..) {
            if *used != slot {
                break;
            }
            slot += 1;
        }
        if slot >= self.max_backends {
            slot = 0;
            for used in &self.used_slots {
                if *used != slot {
                    break;
                }
                slot += 1;
            }
        }
        self.used_slots.insert(slot);
        self.next_slot = slot + 1;
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_backends: u32) -> ServiceTable {
        ServiceTable {
            m: 251,
            max_services: 4,
            max_backends,
            services: BTreeMap::new(),
            used_slots: BTreeSet::new(),
            next_slot: 0,
        }
    }

    #[test]
    fn slots_are_handed_out_round_robin_and_wrap() {
        let mut t = table(4);
        let got: Vec<u32> = (0..4).map(|_| t.alloc_slot().expect("free slot")).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(
            matches!(t.alloc_slot(), Err(DataplaneError::Full { .. })),
            "a full table must refuse"
        );
        t.used_slots.remove(&1);
        t.used_slots.remove(&2);
        assert_eq!(t.alloc_slot().expect("wraps to the first free"), 1);
        assert_eq!(t.alloc_slot().expect("next free"), 2);
    }

    fn spec(port: u16, backends: &[u8]) -> ServiceSpec {
        ServiceSpec {
            vip: "192.0.2.10".parse().unwrap(),
            port,
            proto: 6,
            hash_5tuple: false,
            backends: backends
                .iter()
                .map(|&b| BackendSpec {
                    addr: IpAddr::from([10, 0, 0, b]),
                    port,
                    weight: 1,
                    mac: [0; 6],
                    src_mac: [0; 6],
                    ifindex: 1,
                })
                .collect(),
            nat: None,
            tunnel: None,
        }
    }

    /// `t` as if `specs` were installed (slots in order, no map written).
    fn installed(t: &mut ServiceTable, specs: &[ServiceSpec]) {
        for (i, s) in specs.iter().enumerate() {
            let mut backends = BTreeMap::new();
            for b in &s.backends {
                backends.insert((b.addr, b.port), (t.alloc_slot().expect("slot"), 1));
            }
            t.services.insert(
                (s.vip, s.port, s.proto),
                Installed {
                    id: i as u32,
                    flags: 0,
                    backends,
                    ring: Vec::new(),
                    applied: Some(s.clone()),
                },
            );
        }
    }

    #[test]
    fn at_max_backends_a_swap_fits_and_growth_is_refused_before_any_write() {
        let mut t = table(4);
        installed(&mut t, &[spec(80, &[1, 2]), spec(443, &[3, 4])]);
        // One backend swapped for another: the new one takes the removed one's slot.
        assert!(t.check(&[spec(80, &[1, 5]), spec(443, &[3, 4])]).is_ok());
        // One service grows as the other shrinks: fits, the shrinking one goes first.
        assert!(t.check(&[spec(80, &[1, 2, 5]), spec(443, &[3])]).is_ok());
        // A service replaced by another of the same size.
        assert!(t.check(&[spec(80, &[1, 2]), spec(8080, &[6, 7])]).is_ok());
        // More than the limit: refused.
        assert!(matches!(
            t.check(&[spec(80, &[1, 2, 5]), spec(443, &[3, 4])]),
            Err(DataplaneError::Full {
                what: "backend",
                limit: 4
            })
        ));
        assert!(matches!(
            t.check(&[
                spec(80, &[1]),
                spec(443, &[3]),
                spec(22, &[1]),
                spec(25, &[1]),
                spec(53, &[1])
            ]),
            Err(DataplaneError::Full {
                what: "service",
                limit: 4
            })
        ));
    }

    #[test]
    fn sixty_four_thousand_slots_allocate_quickly() {
        let mut t = table(65_536);
        for i in 0..64_000 {
            assert_eq!(t.alloc_slot().expect("free slot"), i);
        }
    }
}
