//! Maglev and the flow table, measured through the real program: 10,000 simulated
//! client flows sent through BPF_PROG_TEST_RUN, their backend read off the output
//! frame's destination MAC.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use fo_common::{PROTO_TCP, xdp_action::XDP_TX};
use fo_tests::fixture::{Fixture, OUR_MAC, backend, service};
use fo_tests::frames::{self, Mac};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
const FLOWS: u32 = 10_000;
/// The default Maglev table size of the config.
const M: u32 = 65_537;

fn mac_of(i: u8) -> Mac {
    [0x02, 0xbe, 0, 0, 0, i]
}

fn backend_addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20 + i))
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0xc612_0000u32 + i) // 198.18.0.0/15, one address per flow
}

/// Send one segment of each flow; returns the backend index (MAC's last byte) each went to.
fn send_all(fx: &mut Fixture, flags: u8) -> Vec<u8> {
    (0..FLOWS)
        .map(|i| {
            let f = frames::tcp4(OUR_MAC, CLIENT_MAC, client(i), VIP, 40000, 1514, flags, b"");
            let run = fx.run(&f);
            assert_eq!(
                run.action, XDP_TX,
                "flow {i}: expected XDP_TX, got {}",
                run.action
            );
            run.frame[5]
        })
        .collect()
}

fn shares(choices: &[u8]) -> HashMap<u8, f64> {
    let mut counts: HashMap<u8, u32> = HashMap::new();
    for &c in choices {
        *counts.entry(c).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(b, n)| (b, f64::from(n) / choices.len() as f64))
        .collect()
}

fn setup(weights: &[(u8, u32)]) -> Fixture {
    let mut fx = Fixture::new(M);
    fx.own(IpAddr::V4(VIP));
    set_weights(&mut fx, weights);
    fx
}

/// The service's backends (number, weight), as a reload would write them.
fn set_weights(fx: &mut Fixture, weights: &[(u8, u32)]) {
    let backends = weights
        .iter()
        .map(|&(i, w)| backend(backend_addr(i), 1514, w, mac_of(i)))
        .collect();
    fx.services(&[service(IpAddr::V4(VIP), 1514, PROTO_TCP, backends)]);
}

#[test]
fn three_equal_backends_get_a_third_each() {
    let mut fx = setup(&[(1, 1), (2, 1), (3, 1)]);
    let s = shares(&send_all(&mut fx, frames::TCP_SYN));
    for b in 1..=3u8 {
        let share = s.get(&b).copied().unwrap_or(0.0);
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.03,
            "backend {b} got {share:.4} of {FLOWS} flows, expected 0.333 ± 0.03"
        );
    }
}

#[test]
fn weights_one_to_two() {
    let mut fx = setup(&[(1, 1), (2, 2)]);
    let s = shares(&send_all(&mut fx, frames::TCP_SYN));
    let (a, b) = (
        s.get(&1).copied().unwrap_or(0.0),
        s.get(&2).copied().unwrap_or(0.0),
    );
    assert!(
        (a - 1.0 / 3.0).abs() <= 0.03,
        "weight 1 got {a:.4}, expected 0.333 ± 0.03"
    );
    assert!(
        (b - 2.0 / 3.0).abs() <= 0.03,
        "weight 2 got {b:.4}, expected 0.667 ± 0.03"
    );
}

#[test]
fn removing_a_backend_moves_only_its_flows() {
    let mut fx = setup(&[(1, 1), (2, 1), (3, 1)]);
    let before = send_all(&mut fx, frames::TCP_SYN);
    // Backend 3 leaves the service.
    set_weights(&mut fx, &[(1, 1), (2, 1)]);
    let after = send_all(&mut fx, frames::TCP_ACK);
    let mut moved_survivors = 0;
    let mut stranded = 0;
    for (b, a) in before.iter().zip(&after) {
        if *b == 3 {
            if *a == 3 {
                stranded += 1;
            }
        } else if a != b {
            moved_survivors += 1;
        }
    }
    assert_eq!(
        stranded, 0,
        "{stranded} flows still went to the removed backend"
    );
    assert_eq!(
        moved_survivors, 0,
        "{moved_survivors} flows of surviving backends changed backend"
    );
    // And the removed backend's flows spread over the survivors.
    let s = shares(&after);
    assert!(
        s.get(&1).copied().unwrap_or(0.0) > 0.4 && s.get(&2).copied().unwrap_or(0.0) > 0.4,
        "shares after removal: {s:?}"
    );
}

#[test]
fn drained_backend_keeps_its_flows_and_gets_no_new_ones() {
    let mut fx = setup(&[(1, 1), (2, 1), (3, 1)]);
    let before = send_all(&mut fx, frames::TCP_SYN);
    set_weights(&mut fx, &[(1, 1), (2, 1), (3, 0)]);
    let after = send_all(&mut fx, frames::TCP_ACK);
    assert_eq!(
        before, after,
        "established flows must keep their backend when one is drained"
    );
    // New flows (other source addresses) avoid the drained backend.
    let fresh: Vec<u8> = (0..2000u32)
        .map(|i| {
            let f = frames::tcp4(
                OUR_MAC,
                CLIENT_MAC,
                Ipv4Addr::from(0x0a00_0000u32 + i),
                VIP,
                40000,
                1514,
                frames::TCP_SYN,
                b"",
            );
            fx.run(&f).frame[5]
        })
        .collect();
    assert!(
        !fresh.contains(&3),
        "a new flow went to the drained backend"
    );
}

/// A SYN on a 5-tuple an earlier connection used (a reused source port) is a new
/// connection: it goes by the current Maglev choice, never to a drained backend through
/// the old flow entry, and the segments after it follow the new choice.
#[test]
fn a_syn_on_a_reused_tuple_takes_the_current_choice() {
    let mut fx = setup(&[(1, 1), (2, 1), (3, 1)]);
    let first = send_all(&mut fx, frames::TCP_SYN);
    assert!(
        first.contains(&3),
        "no flow went to backend 3: {:?}",
        shares(&first)
    );
    // A retransmitted SYN, nothing changed: the same backend.
    assert_eq!(
        send_all(&mut fx, frames::TCP_SYN),
        first,
        "a repeated SYN changed backend while the backend set stayed the same"
    );
    set_weights(&mut fx, &[(1, 1), (2, 1), (3, 0)]);
    // The old connections' segments stay where they were ...
    assert_eq!(send_all(&mut fx, frames::TCP_ACK), first);
    // ... new connections on the same tuples avoid the drained backend ...
    let again = send_all(&mut fx, frames::TCP_SYN);
    let to_drained = again.iter().filter(|&&b| b == 3).count();
    assert_eq!(
        to_drained, 0,
        "{to_drained} SYNs on reused tuples went to the drained backend"
    );
    // ... and what follows them goes where they went.
    assert_eq!(
        send_all(&mut fx, frames::TCP_ACK),
        again,
        "segments after a SYN on a reused tuple did not follow the SYN's backend"
    );
}

/// DSR under a SYN flood: 2,000 connections complete their handshake (SYN, then ACK),
/// then 20,000 spoofed SYNs arrive (five times the flow table of 4,096), then a
/// backend joins the service. Every established connection must stay on its backend:
/// one that moved would be reset by the backend it lands on. (Before `FLOWS_NEW`, the
/// SYNs evicted the established flows from the LRU flow table, and the new backend
/// set re-hashed them: about a quarter moved.)
#[test]
fn a_syn_flood_does_not_evict_established_flows() {
    const ESTABLISHED: u32 = 2_000;
    let mut fx = Fixture::with_tables(M, 1024, 4096);
    fx.own(IpAddr::V4(VIP));
    set_weights(&mut fx, &[(1, 1), (2, 1), (3, 1)]);
    let segment = |i: u32, flags: u8| {
        frames::tcp4(OUR_MAC, CLIENT_MAC, client(i), VIP, 40000, 1514, flags, b"")
    };
    let mut before = Vec::new();
    for i in 0..ESTABLISHED {
        let syn = fx.run(&segment(i, frames::TCP_SYN));
        let ack = fx.run(&segment(i, frames::TCP_ACK));
        assert_eq!((syn.action, ack.action), (XDP_TX, XDP_TX), "flow {i}");
        assert_eq!(
            syn.frame[5], ack.frame[5],
            "flow {i}: the ACK follows the SYN"
        );
        before.push(ack.frame[5]);
    }
    let mut x = 0x9e37_79b9u32;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let spoofed = frames::tcp4(
            OUR_MAC,
            CLIENT_MAC,
            Ipv4Addr::from(0x2000_0000 | (x & 0x0fff_ffff)),
            VIP,
            (x >> 16) as u16 | 1024,
            1514,
            frames::TCP_SYN,
            b"",
        );
        assert_eq!(fx.run(&spoofed).action, XDP_TX);
    }
    set_weights(&mut fx, &[(1, 1), (2, 1), (3, 1), (4, 1)]);
    let moved = (0..ESTABLISHED)
        .filter(|&i| fx.run(&segment(i, frames::TCP_PSH_ACK)).frame[5] != before[i as usize])
        .count();
    println!("{moved} of {ESTABLISHED} established flows moved after the flood and the change");
    assert_eq!(
        moved, 0,
        "established flows changed backend after a SYN flood and a backend change"
    );
}

#[test]
fn applying_the_same_services_again_writes_nothing() {
    let mut fx = setup(&[(1, 1), (2, 1), (3, 1)]);
    let specs = [service(
        IpAddr::V4(VIP),
        1514,
        PROTO_TCP,
        vec![
            backend(backend_addr(1), 1514, 1, mac_of(1)),
            backend(backend_addr(2), 1514, 1, mac_of(2)),
            backend(backend_addr(3), 1514, 1, mac_of(3)),
        ],
    )];
    let again = fx.table.apply(&mut fx.dp, &specs).expect("apply");
    assert_eq!(
        again,
        Default::default(),
        "an unchanged service must not be rewritten: {again:?}"
    );
    // A real change is still applied.
    let changed = fx.table.apply(&mut fx.dp, &specs[..0]).expect("apply");
    assert_eq!(changed.services_removed, 1, "{changed:?}");
}

/// BGP ownership spreads one client's flows over several nodes by ECMP, and a flow
/// moves to another node when the ECMP set changes. Each node must then pick the
/// same backend for it: identical configs must give identical tables, whatever
/// each node went through before (reloads, other backends, slot numbers).
#[test]
fn identical_configs_give_identical_tables_whatever_the_history() {
    let spec = |members: &[u8]| {
        vec![service(
            IpAddr::V4(VIP),
            1514,
            PROTO_TCP,
            members
                .iter()
                .map(|&i| backend(backend_addr(i), 1514, 1, mac_of(i)))
                .collect(),
        )]
    };
    // Node A: the final config straight away.
    let mut a = Fixture::new(M);
    a.own(IpAddr::V4(VIP));
    a.services(&spec(&[1, 2, 3]));
    // Node B: other backends first, reloads, then the same config in another order.
    let mut b = Fixture::new(M);
    b.own(IpAddr::V4(VIP));
    for step in [&[4, 5][..], &[5, 1, 4], &[2], &[6, 2, 5, 1], &[3, 1, 2]] {
        b.services(&spec(step));
    }
    let slot_of = |fx: &Fixture, i: u8| {
        fx.table
            .slots()
            .into_iter()
            .find(|s| s.backend == backend_addr(i))
            .map(|s| s.slot)
    };
    assert_ne!(
        (1..=3).map(|i| slot_of(&a, i)).collect::<Vec<_>>(),
        (1..=3).map(|i| slot_of(&b, i)).collect::<Vec<_>>(),
        "the histories should have left the backends in different slots (else this test proves nothing)"
    );
    let table = |fx: &Fixture| {
        fx.table
            .maglev_backends(IpAddr::V4(VIP), 1514, PROTO_TCP)
            .expect("service installed")
    };
    let (ta, tb) = (table(&a), table(&b));
    assert_eq!(ta.len(), M as usize);
    let differ = ta.iter().zip(&tb).filter(|(x, y)| x != y).count();
    assert_eq!(
        differ, 0,
        "{differ} of {M} Maglev entries name a different backend on the two nodes"
    );
    // And end to end through the real program: every new flow, same backend.
    let (ca, cb) = (
        send_all(&mut a, frames::TCP_SYN),
        send_all(&mut b, frames::TCP_SYN),
    );
    let moved = ca.iter().zip(&cb).filter(|(x, y)| x != y).count();
    assert_eq!(
        moved, 0,
        "{moved} of {FLOWS} flows would change backend when ECMP moves them between the nodes"
    );
}
