//! Made-up NAT connections written straight into an agent's pinned tables, as its XDP
//! program would have written them (a million real connections would need a million
//! sockets): each connection in `NAT_FWD` and its reply tuple in `NAT_REV`, seen now,
//! established. No packet ever matches them; the agent's walks (status, aging, the
//! sync's snapshots) read them like any other.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, Map, MapData};
use fo_common::{Addr, FAMILY_V4, FlowKey, NAT_TCP_ESTABLISHED, NatFlow};

/// Which connections: clients from 10.200.0.0 on, numbered `first..first + count` (two
/// fills with separate ranges never collide), to `vip`:1514, translated from `snat` to
/// backend 10.1.0.11 (a reply tuple of their own each).
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    pub vip: [u8; 4],
    pub snat: [u8; 4],
    pub first: u32,
    pub count: u32,
}

impl Fill {
    /// Connection `i`: its key and translation, seen at `now_ns`.
    pub fn connection(&self, i: u32, now_ns: u64) -> (FlowKey, NatFlow) {
        let client = [10, 200 + (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8];
        let key = FlowKey {
            src: Addr::v4(client),
            dst: Addr::v4(self.vip),
            sport_be: (1024 + (i & 0xff) as u16).to_be(),
            dport_be: 1514u16.to_be(),
            proto: 6,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let flow = NatFlow {
            backend: Addr::v4([10, 1, 0, 11]),
            snat: Addr::v4(self.snat),
            backend_port_be: (10_000 + (i / 50_000) as u16).to_be(),
            snat_port_be: (1024 + (i % 50_000) as u16).to_be(),
            state: NAT_TCP_ESTABLISHED,
            backend_slot: u32::MAX,
            last_seen_ns: now_ns,
            ..Default::default()
        };
        (key, flow)
    }

    /// Write the connections into the tables pinned in `pin_dir`.
    pub fn write(&self, pin_dir: &Path) -> Result<()> {
        let open = |name: &str| -> Result<Map> {
            let data = MapData::from_pin(pin_dir.join(name))
                .with_context(|| format!("open pinned map {name} in {}", pin_dir.display()))?;
            Map::from_map_data(data).with_context(|| format!("pinned map {name}"))
        };
        let mut fwd: HashMap<MapData, FlowKey, NatFlow> = open("NAT_FWD")?.try_into()?;
        let mut rev: HashMap<MapData, FlowKey, FlowKey> = open("NAT_REV")?.try_into()?;
        let now_ns = mono_now_ns();
        for i in self.first..self.first + self.count {
            let (key, flow) = self.connection(i, now_ns);
            rev.insert(&flow.reverse_key(&key), &key, 0)
                .with_context(|| format!("NAT_REV entry {i}"))?;
            fwd.insert(&key, &flow, 0)
                .with_context(|| format!("NAT_FWD entry {i}"))?;
        }
        Ok(())
    }
}

/// `bpf_ktime_get_ns`'s clock (CLOCK_MONOTONIC), now.
pub(crate) fn mono_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_and_reply_tuple_is_distinct() {
        let f = Fill {
            vip: [192, 0, 2, 100],
            snat: [192, 0, 2, 101],
            first: 0,
            count: 0,
        };
        let mut keys = std::collections::HashSet::new();
        let mut replies = std::collections::HashSet::new();
        for i in (0..1_100_000).step_by(7).chain([255, 256, 49_999, 50_000]) {
            let (k, flow) = f.connection(i, 0);
            assert!(keys.insert(k), "key {i} repeats");
            assert!(
                replies.insert(flow.reverse_key(&k)),
                "reply tuple {i} repeats"
            );
        }
    }
}
