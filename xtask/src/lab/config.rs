//! Tables of fo-agent configs that the lab's scenarios (demo, chaos, benches) share.

use std::fmt::Display;
use std::net::Ipv4Addr;

/// The lab's `xdp_mode`: its interfaces are veths in namespaces, so generic (SKB) mode.
pub const XDP_MODE: &str = "generic";

/// A preempting `[[router]]` table owning `vip` by VRRP with one unicast `peer`,
/// advertising every `advert_ms`. A caller's own keys (`snat`, `gates`) may follow it.
pub fn vrrp_router(
    name: &str,
    vrid: u8,
    version: u8,
    priority: impl Display,
    advert_ms: impl Display,
    vip: Ipv4Addr,
    peer: Ipv4Addr,
) -> String {
    format!(
        r#"[[router]]
name = "{name}"
ownership = "vrrp"
vrid = {vrid}
priority = {priority}
version = {version}
advert_interval = "{advert_ms}ms"
preempt = true
vips = ["{vip}"]
peers = ["{peer}"]
"#
    )
}
