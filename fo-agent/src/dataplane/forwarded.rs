//! The packets this node's program forwarded, read from the pinned `COUNTERS` map
//! through a handle of its own (a drill samples it every millisecond without taking
//! the shared plane's lock, which VRRP's ownership writes need), the `DRILL` flag
//! that has the program count TCP resets and record the clients while a drill records,
//! and those clients (`DRILL_CLIENTS`).

use std::net::IpAddr;
use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use fo_common::{ClientSeen, Counter, VipKey};

use super::{Result, map_err};

/// Counters a client's packet to a backend bumps (DSR and tunnel: the flow table or
/// Maglev; NAT: a new or known connection).
const FORWARD: [Counter; 4] = [
    Counter::FlowHit,
    Counter::FlowMiss,
    Counter::NatNew,
    Counter::NatHit,
];

/// A view of the forwarding counters, and the drill flag.
pub struct Forwarded {
    counters: PerCpuArray<MapData, u64>,
    drill: Array<MapData, u32>,
    clients: HashMap<MapData, VipKey, ClientSeen>,
}

/// Packets forwarded so far, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardedCount {
    /// Client to backend.
    pub forward: u64,
    /// Backend to client through NAT (`nat_reply`).
    pub reply: u64,
    /// TCP RSTs from clients to a VIP (counted only while the drill flag is set).
    pub rst_to_vip: u64,
    /// TCP RSTs from backends to a SNAT address (likewise).
    pub rst_from_backend: u64,
}

impl Forwarded {
    /// Open the `COUNTERS` and `DRILL` maps pinned in `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Forwarded> {
        fn pinned(pin_dir: &Path, name: &'static str) -> Result<Map> {
            let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        }
        let counters = pinned(pin_dir, "COUNTERS")?
            .try_into()
            .map_err(map_err("COUNTERS"))?;
        let drill = pinned(pin_dir, "DRILL")?
            .try_into()
            .map_err(map_err("DRILL"))?;
        let clients = pinned(pin_dir, "DRILL_CLIENTS")?
            .try_into()
            .map_err(map_err("DRILL_CLIENTS"))?;
        Ok(Forwarded {
            counters,
            drill,
            clients,
        })
    }

    /// The clients recorded since the last [`Forwarded::clear_clients`].
    pub fn clients(&self) -> Result<Vec<(IpAddr, ClientSeen)>> {
        self.clients
            .iter()
            .map(|e| {
                let (k, v) = e.map_err(map_err("DRILL_CLIENTS"))?;
                Ok((k.addr.to_ip(k.family), v))
            })
            .collect()
    }

    /// Forget the clients recorded (before a drill records anew).
    pub fn clear_clients(&mut self) -> Result<()> {
        let keys: Vec<VipKey> = self.clients.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            // Gone meanwhile (the LRU evicted it): nothing to do.
            let _ = self.clients.remove(&k);
        }
        Ok(())
    }

    /// Have the program count TCP resets on the VIPs (`on`), or stop.
    pub fn set_drill(&mut self, on: bool) -> Result<()> {
        self.drill
            .set(0, &u32::from(on), 0)
            .map_err(map_err("DRILL"))
    }

    pub fn read(&self) -> Result<ForwardedCount> {
        let sum = |c: Counter| -> Result<u64> {
            let per_cpu = self
                .counters
                .get(&(c as u32), 0)
                .map_err(map_err("COUNTERS"))?;
            Ok(per_cpu.iter().sum())
        };
        let mut forward = 0u64;
        for c in FORWARD {
            forward = forward.wrapping_add(sum(c)?);
        }
        Ok(ForwardedCount {
            forward,
            reply: sum(Counter::NatReply)?,
            rst_to_vip: sum(Counter::RstToVip)?,
            rst_from_backend: sum(Counter::RstFromBackend)?,
        })
    }
}
