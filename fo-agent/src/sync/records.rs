//! A connection as a sync record, and back: the data plane's map entries and the wire's
//! [`Record`].

use std::net::Ipv4Addr;
use std::time::Duration;

use fo_common::{Addr, FAMILY_V4, FlowKey, NatFlow};

use super::codec::{Op, Record};
use crate::dataplane::MonoNanos;

fn v4(a: &Addr) -> Ipv4Addr {
    Ipv4Addr::new(a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3])
}

/// The record of a connection (`op`), its age measured now.
pub fn record(op: Op, key: &FlowKey, flow: &NatFlow, now: MonoNanos) -> Record {
    Record {
        op,
        proto: key.proto,
        client: v4(&key.src),
        vip: v4(&key.dst),
        client_port: u16::from_be(key.sport_be),
        vip_port: u16::from_be(key.dport_be),
        backend: v4(&flow.backend),
        backend_port: u16::from_be(flow.backend_port_be),
        snat: v4(&flow.snat),
        snat_port: u16::from_be(flow.snat_port_be),
        client_mac: flow.client_mac,
        state: flow.state,
        age: Duration::from_nanos(now.0.saturating_sub(flow.last_seen_ns)),
    }
}

/// A SnapshotEnd's statement that the sender owns `vip`.
pub(super) fn owns(vip: Ipv4Addr) -> Record {
    Record {
        op: Op::Owns,
        proto: 0,
        client: Ipv4Addr::UNSPECIFIED,
        vip,
        client_port: 0,
        vip_port: 0,
        backend: Ipv4Addr::UNSPECIFIED,
        backend_port: 0,
        snat: Ipv4Addr::UNSPECIFIED,
        snat_port: 0,
        client_mac: [0; 6],
        state: 0,
        age: Duration::ZERO,
    }
}

/// The map entries of a record, last seen `age` before `now`.
pub fn entries(r: &Record, now: MonoNanos, slot: u32) -> (FlowKey, NatFlow) {
    let key = FlowKey {
        src: Addr::v4(r.client.octets()),
        dst: Addr::v4(r.vip.octets()),
        sport_be: r.client_port.to_be(),
        dport_be: r.vip_port.to_be(),
        proto: r.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let flow = NatFlow {
        backend: Addr::v4(r.backend.octets()),
        snat: Addr::v4(r.snat.octets()),
        client_mac: r.client_mac,
        backend_port_be: r.backend_port.to_be(),
        snat_port_be: r.snat_port.to_be(),
        state: r.state,
        _pad: 0,
        backend_slot: slot,
        last_seen_ns: now.0.saturating_sub(r.age.as_nanos() as u64),
        // Not synced: the program picks the sequence tracking up from the next segments.
        seq: Default::default(),
    };
    (key, flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_record_are_inverse() {
        let key = FlowKey {
            src: Addr::v4([198, 51, 100, 7]),
            dst: Addr::v4([192, 0, 2, 100]),
            sport_be: 40000u16.to_be(),
            dport_be: 1514u16.to_be(),
            proto: 6,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let now = MonoNanos(50_000_000_000);
        let flow = NatFlow {
            backend: Addr::v4([10, 1, 0, 21]),
            snat: Addr::v4([192, 0, 2, 101]),
            client_mac: [2, 0xc1, 0, 0, 0, 1],
            backend_port_be: 11514u16.to_be(),
            snat_port_be: 30001u16.to_be(),
            state: 2,
            _pad: 0,
            backend_slot: 3,
            last_seen_ns: now.0 - 2_000_000_000,
            seq: Default::default(),
        };
        let r = record(Op::Upsert, &key, &flow, now);
        assert_eq!(r.age, Duration::from_secs(2));
        assert_eq!(r.snat_port, 30001);
        assert_eq!(entries(&r, now, 3), (key, flow));
    }
}
