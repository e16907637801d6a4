//! `VIP_FILTER`, the program's bitmap of the addresses that may be VIPs
//! (`fo_common::vip_filter_bit`), kept a superset of the keys of `VIPS`: a bit is set
//! before the `VIPS` entry that needs it is written, and cleared only once no key left
//! in `VIPS` stands for it. The program passes a frame whose bit is clear without
//! looking `VIPS` up, so a VIP must never be without its bit.

use aya::maps::{Array, HashMap, MapData};
use fo_common::{VipKey, VipState, vip_filter_bit};

use super::{Result, map_err};

/// Set the bit of `key` (one read when it is set already, as for a lease renewal).
pub(super) fn admit(filter: &mut Array<MapData, u64>, key: &VipKey) -> Result<()> {
    let (word, mask) = vip_filter_bit(&key.addr);
    let bits = filter.get(&word, 0).map_err(map_err("VIP_FILTER"))?;
    if bits & mask == 0 {
        filter
            .set(word, &(bits | mask), 0)
            .map_err(map_err("VIP_FILTER"))?;
    }
    Ok(())
}

/// Rewrite the word that holds the bit of `gone`, a key just removed from `vips`,
/// from the keys that are left.
pub(super) fn forget(
    filter: &mut Array<MapData, u64>,
    vips: &HashMap<MapData, VipKey, VipState>,
    gone: &VipKey,
) -> Result<()> {
    let (word, _) = vip_filter_bit(&gone.addr);
    let mut bits = 0;
    for key in vips.keys() {
        let (w, mask) = vip_filter_bit(&key.map_err(map_err("VIPS"))?.addr);
        if w == word {
            bits |= mask;
        }
    }
    filter.set(word, &bits, 0).map_err(map_err("VIP_FILTER"))
}
