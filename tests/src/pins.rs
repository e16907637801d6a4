//! A pinned data plane read and rewritten from outside the agent, as a test needs to
//! check what survived a restart or to leave the pins as another build of fo would.

use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData};
use fo_common::{DataplaneInfo, FlowKey, FlowValue};

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
