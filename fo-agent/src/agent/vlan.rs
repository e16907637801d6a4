//! The agent's side of `vlan = N` on a router: each of its VIPs carries the VLAN in its
//! `VIPS` entry, so the data plane serves it for frames with that 802.1Q tag only.

use fo_config::Config;

use crate::dataplane::{Dataplane, DataplaneError};

/// Write every VIP's VLAN (0 for a router without one) into the data plane.
pub fn apply_vlans(dp: &mut Dataplane, config: &Config) -> Result<(), DataplaneError> {
    for r in &config.routers {
        for &vip in &r.vips {
            dp.set_vip_vlan(vip, r.vlan.unwrap_or(0))?;
        }
    }
    Ok(())
}
