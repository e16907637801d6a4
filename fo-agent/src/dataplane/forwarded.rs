//! The packets this node's program forwarded, read from the pinned `COUNTERS` map
//! through a handle of its own (a drill samples it every millisecond without taking
//! the shared plane's lock, which VRRP's ownership writes need).

use std::path::Path;

use aya::maps::{Map, MapData, PerCpuArray};
use fo_common::Counter;

use super::{Result, map_err};

/// Counters a client's packet to a backend bumps (DSR and tunnel: the flow table or
/// Maglev; NAT: a new or known connection).
const FORWARD: [Counter; 4] = [
    Counter::FlowHit,
    Counter::FlowMiss,
    Counter::NatNew,
    Counter::NatHit,
];

/// A read-only view of the forwarding counters.
pub struct Forwarded {
    counters: PerCpuArray<MapData, u64>,
}

/// Packets forwarded so far, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardedCount {
    /// Client to backend.
    pub forward: u64,
    /// Backend to client through NAT (`nat_reply`).
    pub reply: u64,
}

impl Forwarded {
    /// Open the `COUNTERS` map pinned in `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Forwarded> {
        let data = MapData::from_pin(pin_dir.join("COUNTERS")).map_err(map_err("COUNTERS"))?;
        let map = Map::from_map_data(data).map_err(map_err("COUNTERS"))?;
        let counters = map.try_into().map_err(map_err("COUNTERS"))?;
        Ok(Forwarded { counters })
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
        })
    }
}
