//! The nodes' configs: the good one (with or without the service a valid reload
//! toggles) and the broken one a reload must refuse.

use std::net::Ipv4Addr;
use std::path::Path;

use super::{ADVERT, BACKENDS, EXTRA_PORT, GATE_INTERVAL, NAT_PORT, PORT, SNAT, VIP};
use crate::lab::config::{tcp_service, vrrp_router};
use crate::lab::test_net;

/// The node's config. Its router is gated on check `ready`: the file `gate` exists.
/// Connections of the NAT service are synced to `peer` under the key in `key`.
pub(super) fn config(
    priority: u8,
    peer: Ipv4Addr,
    extra_service: bool,
    gate: &Path,
    key: &Path,
) -> String {
    let backends = test_net(BACKENDS);
    let dsr = tcp_service(VIP, PORT, "dsr", "source-ip", &backends, None);
    let nat = tcp_service(VIP, NAT_PORT, "nat", "source-ip", &backends, Some(PORT));
    // `write_config` puts this after [node]: the sync line belongs there.
    let router = vrrp_router("chaos", 52, 3, priority, ADVERT.as_millis(), VIP, peer);
    let mut s = format!(
        r#"sync = {{ peers = ["{peer}"], key_file = "{}" }}

{router}snat = ["{SNAT}"]
gates = ["ready"]

[[check]]
name = "ready"
kind = "file"
path = "{}"
interval = "{}ms"
timeout = "150ms"
rise = 2
fall = 2

{dsr}
{nat}"#,
        key.display(),
        gate.display(),
        GATE_INTERVAL.as_millis()
    );
    if extra_service {
        // What a valid reload toggles: a second service on the VIP (no fleet traffic).
        s.push('\n');
        s.push_str(&tcp_service(
            VIP, EXTRA_PORT, "dsr", "5-tuple", &backends, None,
        ));
    }
    s
}

/// A config that must be refused: the priority out of range.
pub(super) fn broken_config(priority: u8, peer: Ipv4Addr, gate: &Path, key: &Path) -> String {
    config(priority, peer, false, gate, key)
        .replace(&format!("priority = {priority}"), "priority = 300")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broken_config_differs_only_in_priority() {
        let peer = Ipv4Addr::new(192, 0, 2, 3);
        let gate = Path::new("/run/fo-chaos/ready-a");
        let key = Path::new("/run/fo-chaos/sync.key");
        let b = broken_config(150, peer, gate, key);
        assert!(b.contains("priority = 300"));
        assert_eq!(
            b.replace("priority = 300", "priority = 150"),
            config(150, peer, false, gate, key)
        );
    }
}
