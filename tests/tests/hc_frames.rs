//! The health-check encapsulation program (`fo-hc`) on exact frames, with
//! BPF_PROG_TEST_RUN: a probe carrying a mark of the range leaves IPIP, GUE or
//! IP6IP6 encapsulated from its own source to its own destination; everything else
//! leaves as it came. The expected frames are built here, field by field.

use std::net::{Ipv4Addr, Ipv6Addr};

use fo_agent::dataplane::hc;
use fo_common::{HC_MARK_BASE, hc_mark};
use fo_tests::frames::{Tcp4, eth, fold, ipv6_header, sum16};

const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 21);
const TC_ACT_OK: u32 = 0;

fn probe_v4() -> Vec<u8> {
    Tcp4::new((HOP_MAC, LB_MAC), (NODE, 40_001), (BACKEND, 1514))
        .flags(0x02)
        .frame()
}

fn run(frame: &[u8], mark: u32) -> Vec<u8> {
    fo_tests::require_root();
    let (action, out) = hc::test_run(frame, mark, HC_MARK_BASE).expect("BPF_PROG_TEST_RUN");
    assert_eq!(action, TC_ACT_OK, "the program never drops");
    out
}

/// The outer IPv4 header the program must write: DF copied from the inner header,
/// id 0, TTL 64, checksum.
fn outer_v4(proto: u8, inner_df: bool, payload: usize) -> Vec<u8> {
    let total = (20 + payload) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, if inner_df { 0x40 } else { 0 }, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&NODE.octets());
    h.extend_from_slice(&BACKEND.octets());
    let c = fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

#[test]
fn a_marked_ipv4_probe_leaves_in_ipip() {
    let probe = probe_v4();
    let inner = &probe[14..];
    let mut want = eth(HOP_MAC, LB_MAC, 0x0800);
    want.extend(outer_v4(4, inner[6] & 0x40 != 0, inner.len()));
    want.extend_from_slice(inner);
    assert_eq!(run(&probe, hc_mark(HC_MARK_BASE, 0)), want);
}

#[test]
fn a_marked_ipv4_probe_leaves_in_gue_to_the_port_of_its_mark() {
    let probe = probe_v4();
    let inner = &probe[14..];
    let mut want = eth(HOP_MAC, LB_MAC, 0x0800);
    want.extend(outer_v4(17, inner[6] & 0x40 != 0, 8 + 4 + inner.len()));
    // UDP: source 0x8000 | (40001 & 0x7fff), destination 6080, checksum 0.
    let sport: u16 = 0x8000 | (40_001 & 0x7fff);
    want.extend_from_slice(&sport.to_be_bytes());
    want.extend_from_slice(&6080u16.to_be_bytes());
    want.extend_from_slice(&((8 + 4 + inner.len()) as u16).to_be_bytes());
    want.extend_from_slice(&[0, 0]);
    // GUE version 0, no options, inner protocol 4.
    want.extend_from_slice(&[0, 4, 0, 0]);
    want.extend_from_slice(inner);
    assert_eq!(run(&probe, hc_mark(HC_MARK_BASE, 6080)), want);
}

#[test]
fn a_marked_ipv6_probe_leaves_in_ip6ip6() {
    let node: Ipv6Addr = "2001:db8:a::2".parse().expect("v6");
    let backend: Ipv6Addr = "2001:db8:c::21".parse().expect("v6");
    // An IPv6 packet with 24 bytes of TCP-like payload (the program reads no L4).
    let payload = [0x9cu8; 24];
    let mut probe = eth(HOP_MAC, LB_MAC, 0x86dd);
    let mut inner = ipv6_header(node, backend, 6, payload.len(), 64);
    inner[1] = 0x0a; // traffic class low bits + flow label: not copied
    inner.extend_from_slice(&payload);
    probe.extend_from_slice(&inner);
    let mut want = eth(HOP_MAC, LB_MAC, 0x86dd);
    let mut outer = ipv6_header(node, backend, 41, inner.len(), 64);
    outer[1] = 0x00;
    want.append(&mut outer);
    want.extend_from_slice(&inner);
    assert_eq!(run(&probe, hc_mark(HC_MARK_BASE, 0)), want);
    // GUE over IPv6 is not served: the probe leaves bare.
    assert_eq!(run(&probe, hc_mark(HC_MARK_BASE, 6080)), probe);
}

#[test]
fn unmarked_and_foreign_marks_and_non_ip_pass_untouched() {
    let probe = probe_v4();
    for mark in [0, 1, 0x4f47_ffff, 0x4f49_0000, 0x1234_0000, u32::MAX] {
        assert_eq!(run(&probe, mark), probe, "mark {mark:#x}");
    }
    let arp = fo_tests::frames::arp(1, LB_MAC, NODE, [0; 6], BACKEND);
    assert_eq!(run(&arp, hc_mark(HC_MARK_BASE, 0)), arp, "ARP");
}
