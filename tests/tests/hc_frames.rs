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
    let mut runner = hc::TestRunner::new(HC_MARK_BASE).expect("load fo-hc");
    let (action, out) = runner.run(frame, mark).expect("BPF_PROG_TEST_RUN");
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

/// What the program must leave for `frame` carrying `mark`, derived from the
/// contract alone: a marked IPv4 / IPv6 packet, whole enough to read, encapsulated;
/// everything else untouched.
fn model(frame: &[u8], mark: u32) -> Vec<u8> {
    if mark & 0xffff_0000 != HC_MARK_BASE {
        return frame.to_vec();
    }
    let port = (mark & 0xffff) as u16;
    let ether_type = u16::from_be_bytes([frame[12], frame[13]]);
    let inner = &frame[14..];
    let mut out = frame[..14].to_vec();
    match ether_type {
        0x0800 if inner.len() >= 20 && inner[0] >> 4 == 4 => {
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            let extra = if port == 0 { 0 } else { 12 };
            if port != 0 && inner.len() < ihl + 2 {
                return frame.to_vec();
            }
            let total = ((20 + extra + inner.len()) as u16).to_be_bytes();
            let mut h = vec![
                0x45,
                inner[1],
                total[0],
                total[1],
                0,
                0,
                inner[6] & 0x40,
                0,
                64,
            ];
            h.push(if port == 0 { 4 } else { 17 });
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(&inner[12..20]);
            let c = fold(sum16(&h));
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend(h);
            if port != 0 {
                let sport = u16::from_be_bytes([inner[ihl], inner[ihl + 1]]);
                out.extend_from_slice(&(0x8000 | (sport & 0x7fff)).to_be_bytes());
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&((12 + inner.len()) as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 4, 0, 0]);
            }
        }
        0x86dd if port == 0 && inner.len() >= 40 && inner[0] >> 4 == 6 => {
            let mut h = inner[..40].to_vec();
            h[1] &= 0xf0;
            h[2] = 0;
            h[3] = 0;
            h[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
            h[6] = 41;
            h[7] = 64;
            out.extend(h);
        }
        _ => return frame.to_vec(),
    }
    out.extend_from_slice(inner);
    out
}

/// Random frames around the shapes the program distinguishes (truncated headers,
/// wrong versions, any IHL, other EtherTypes, marks in and out of the range), each
/// checked against [`model`]: the program never drops and never leaves anything else.
#[test]
fn random_frames_keep_the_contract() {
    fo_tests::require_root();
    let mut runner = hc::TestRunner::new(HC_MARK_BASE).expect("load fo-hc");
    let mut rng = fo_tests::rng::Rng(0x7468_635f_6675_7a7a);
    let v6 = {
        let mut f = eth(HOP_MAC, LB_MAC, 0x86dd);
        f.extend(ipv6_header(
            "2001:db8:a::2".parse().expect("v6"),
            "2001:db8:c::21".parse().expect("v6"),
            6,
            20,
            64,
        ));
        f.extend_from_slice(&[0x5a; 20]);
        f
    };
    let templates = [probe_v4(), v6];
    let (mut encapsulated, mut untouched, mut refused) = (0, 0, 0);
    for i in 0..3000 {
        let mut f = templates[rng.below(2)].clone();
        match rng.below(6) {
            0 => f.truncate(14 + rng.below(f.len() - 13)),
            1 => f[14] = (f[14] & 0x0f) | ((rng.next_u32() as u8) << 4),
            2 => f[14] = (f[14] & 0xf0) | (rng.next_u32() as u8 & 0x0f),
            3 => f[12..14].copy_from_slice(&(rng.next_u32() as u16).to_be_bytes()),
            4 => {
                let at = 14 + rng.below(f.len() - 14);
                f[at] = rng.next_u32() as u8;
            }
            _ => {}
        }
        let mark = match rng.below(4) {
            0 => hc_mark(HC_MARK_BASE, 0),
            1 => hc_mark(HC_MARK_BASE, rng.next_u32() as u16),
            2 => 0,
            _ => rng.next_u32(),
        };
        let (action, out) = match runner.run(&f, mark) {
            Ok(r) => r,
            // BPF_PROG_TEST_RUN itself refuses an IP EtherType whose header is cut
            // short (such a packet never reaches TC egress from the stack).
            Err(e) => {
                let ether_type = u16::from_be_bytes([f[12], f[13]]);
                let cut = match ether_type {
                    0x0800 => f.len() < 14 + 20,
                    0x86dd => f.len() < 14 + 40,
                    _ => false,
                };
                assert!(
                    cut,
                    "frame {i} ({} bytes, mark {mark:#x}) {f:02x?}: {e:?}",
                    f.len()
                );
                refused += 1;
                continue;
            }
        };
        assert_eq!(action, TC_ACT_OK, "frame {i}: never a drop");
        let want = model(&f, mark);
        assert_eq!(
            out,
            want,
            "frame {i} ({} bytes, mark {mark:#x}): {f:02x?}",
            f.len()
        );
        if out == f {
            untouched += 1;
        } else {
            encapsulated += 1;
        }
    }
    println!(
        "{encapsulated} encapsulated, {untouched} untouched, {refused} refused by the test run"
    );
    assert!(
        encapsulated > 500 && untouched > 500,
        "both shapes exercised: {encapsulated} encapsulated, {untouched} untouched"
    );
}
