//! The DSR/tunnel flow table (`FLOWS`, an LRU hash the program writes) read from the
//! agent's side: how many entries it holds.

use std::path::Path;

use aya::maps::{HashMap, MapData};
use fo_common::{FlowKey, FlowValue};

use super::{Result, map_err};

/// Entries in the pinned flow table under `pin_dir`, through a handle of its own (so
/// never under the data plane's lock), counted as they are read: BPF_MAP_LOOKUP_BATCH
/// in chunks of 8192, or one lookup per key where the kernel has no batch operations.
/// A BPF hash map keeps no count that user space can read; this walk is the only way.
pub fn count_flows(pin_dir: &Path) -> Result<u64> {
    use aya::maps::IterableMap as _;
    use std::os::fd::AsFd as _;
    let data = MapData::from_pin(pin_dir.join("FLOWS")).map_err(map_err("FLOWS"))?;
    let map = aya::maps::Map::from_map_data(data).map_err(map_err("FLOWS"))?;
    let flows: HashMap<MapData, FlowKey, FlowValue> = map.try_into().map_err(map_err("FLOWS"))?;
    let mut n = 0u64;
    if let Err(e) =
        super::batch::walk_hash::<FlowKey, FlowValue>(flows.map().fd().as_fd(), |_, _| n += 1)
    {
        super::BATCH_FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(error = %e, "FLOWS batch lookup failed: counting it key by key");
        n = 0;
        for k in flows.keys() {
            k.map_err(map_err("FLOWS"))?;
            n += 1;
        }
    }
    Ok(n)
}
