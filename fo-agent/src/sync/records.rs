//! A connection as a sync record, and back: the data plane's map entries and the wire's
//! [`Record`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use fo_common::{Addr, FlowKey, NatFlow};

use super::codec::{Op, Record};
use crate::dataplane::MonoNanos;

/// The record of a connection (`op`), its age measured now.
pub fn record(op: Op, key: &FlowKey, flow: &NatFlow, now: MonoNanos) -> Record {
    let ip = |a: Addr| a.to_ip(key.family);
    Record {
        op,
        proto: key.proto,
        client: ip(key.src),
        vip: ip(key.dst),
        client_port: u16::from_be(key.sport_be),
        vip_port: u16::from_be(key.dport_be),
        backend: ip(flow.backend),
        backend_port: u16::from_be(flow.backend_port_be),
        snat: ip(flow.snat),
        snat_port: u16::from_be(flow.snat_port_be),
        client_mac: flow.client_mac,
        state: flow.state,
        age: Duration::from_nanos(now.0.saturating_sub(flow.last_seen_ns)),
    }
}

/// A SnapshotEnd's statement that the sender owns `vip`.
pub(super) fn owns(vip: IpAddr) -> Record {
    let none = if vip.is_ipv6() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    Record {
        op: Op::Owns,
        proto: 0,
        client: none,
        vip,
        client_port: 0,
        vip_port: 0,
        backend: none,
        backend_port: 0,
        snat: none,
        snat_port: 0,
        client_mac: [0; 6],
        state: 0,
        age: Duration::ZERO,
    }
}

/// The map entries of a record, last seen `age` before `now`. The family is the
/// VIP's (the codec keeps a record's addresses of one family).
pub fn entries(r: &Record, now: MonoNanos, slot: u32) -> (FlowKey, NatFlow) {
    let (dst, family) = Addr::from_ip(r.vip);
    let key = FlowKey {
        src: Addr::from_ip(r.client).0,
        dst,
        sport_be: r.client_port.to_be(),
        dport_be: r.vip_port.to_be(),
        proto: r.proto,
        family,
        _pad: [0; 2],
    };
    let flow = NatFlow {
        backend: Addr::from_ip(r.backend).0,
        snat: Addr::from_ip(r.snat).0,
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
    use fo_common::{FAMILY_V4, FAMILY_V6};

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

        let v6 = |s: &str| Addr::from_ip(s.parse().expect("address")).0;
        let key6 = FlowKey {
            src: v6("2001:db8:c::7"),
            dst: v6("2001:db8::100"),
            family: FAMILY_V6,
            ..key
        };
        let flow6 = NatFlow {
            backend: v6("fd00:1::21"),
            snat: v6("2001:db8::101"),
            ..flow
        };
        let r6 = record(Op::Upsert, &key6, &flow6, now);
        assert_eq!(r6.client.to_string(), "2001:db8:c::7");
        assert_eq!(r6.backend.to_string(), "fd00:1::21");
        assert_eq!(entries(&r6, now, 3), (key6, flow6));
        assert!(
            owns("2001:db8::100".parse().expect("address"))
                .snat
                .is_ipv6()
        );
    }
}
