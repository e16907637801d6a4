//! Random and mutated frames through the real program (BPF_PROG_TEST_RUN), seeded so
//! a failure reproduces: the program never aborts, a frame it passes leaves untouched,
//! and a frame it transmits changed only where its verdict allows (MACs for DSR; an
//! ARP reply or a Neighbor Advertisement for the VIP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fo_common::{
    PROTO_TCP, PROTO_UDP,
    xdp_action::{XDP_ABORTED, XDP_PASS, XDP_TX},
};
use fo_tests::fixture::{Fixture, OUR_MAC, backend, service};
use fo_tests::frames::{self, Mac};

const CLIENT_MAC: Mac = [0x02, 0xc1, 0, 0, 0, 0x01];
const BACKEND_MAC: Mac = [0x02, 0xbe, 0, 0, 0, 0x01];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const ROUNDS: u32 = 20_000;

/// xorshift64*: small, seeded, good enough to spread bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    vec![
        frames::arp(1, CLIENT_MAC, client, [0; 6], VIP),
        frames::neighbor_solicit(CLIENT_MAC, client6, VIP6, true),
        frames::neighbor_solicit(CLIENT_MAC, client6, VIP6, false),
        frames::tcp4(
            OUR_MAC,
            CLIENT_MAC,
            client,
            VIP,
            40000,
            1514,
            frames::TCP_SYN,
            b"",
        ),
        frames::tcp4(
            OUR_MAC,
            CLIENT_MAC,
            client,
            VIP,
            40000,
            1514,
            frames::TCP_PSH_ACK,
            b"event 42\n",
        ),
        frames::udp4(OUR_MAC, CLIENT_MAC, client, VIP, 5140, 514, b"<13>line"),
        frames::tcp6(
            OUR_MAC,
            CLIENT_MAC,
            client6,
            VIP6,
            40000,
            1514,
            frames::TCP_SYN,
            b"",
        ),
    ]
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    match rng.below(4) {
        // Flip a few bytes anywhere.
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
        }
        // Truncate (never below the 14 bytes the kernel requires).
        1 => f.truncate(14 + rng.below(f.len() - 13)),
        // Flip bytes in the headers only (EtherType, IP header, ports).
        2 => {
            let i = 12 + rng.below(f.len().min(60) - 12);
            f[i] ^= 1 << rng.below(8);
        }
        // Grow with junk.
        _ => {
            for _ in 0..rng.below(64) {
                f.push(rng.next() as u8);
            }
        }
    }
    f
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = 14 + rng.below(200);
    let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    // Bias the EtherType towards the ones the program parses.
    let types = [0x0800u16, 0x0806, 0x86dd, 0x8100, 0x88a8];
    if rng.below(4) != 0 {
        f[12..14].copy_from_slice(&types[rng.below(types.len())].to_be_bytes());
    }
    f
}

/// What a transmitted frame may differ in.
fn check_tx(input: &[u8], out: &[u8]) -> Result<(), String> {
    let ether_type = u16::from_be_bytes([input[12], input[13]]);
    if ether_type == 0x0806 {
        // An ARP reply for the VIP from our MAC, same length.
        let ok = out.len() == input.len()
            && out[6..12] == OUR_MAC
            && out[20..22] == [0, 2]
            && out[28..32] == VIP.octets();
        return if ok {
            Ok(())
        } else {
            Err("ARP reply malformed".into())
        };
    }
    if ether_type == 0x86dd && input.get(20) == Some(&58) {
        let ok = out.len() == 86
            && out[6..12] == OUR_MAC
            && out[54] == 136
            && frames::icmpv6_checksum_ok(out);
        return if ok {
            Ok(())
        } else {
            Err("NA malformed".into())
        };
    }
    // DSR: only the MACs change.
    if out.len() != input.len() || out[12..] != input[12..] {
        return Err("a forwarded frame changed beyond its MACs".into());
    }
    if out[0..6] != BACKEND_MAC || out[6..12] != OUR_MAC {
        return Err("a forwarded frame has the wrong MACs".into());
    }
    Ok(())
}

#[test]
fn random_and_mutated_frames() {
    let mut fx = Fixture::new(251);
    fx.own(IpAddr::V4(VIP));
    fx.own(IpAddr::V6(VIP6));
    fx.services(&[
        service(
            IpAddr::V4(VIP),
            1514,
            PROTO_TCP,
            vec![backend(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 21)),
                1514,
                1,
                BACKEND_MAC,
            )],
        ),
        service(
            IpAddr::V4(VIP),
            514,
            PROTO_UDP,
            vec![backend(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 21)),
                514,
                1,
                BACKEND_MAC,
            )],
        ),
        service(
            IpAddr::V6(VIP6),
            1514,
            PROTO_TCP,
            vec![backend(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21)),
                1514,
                1,
                BACKEND_MAC,
            )],
        ),
    ]);
    let seeds = seeds();
    let mut rng = Rng(0x666f_2d66_757a_7a31);
    let (mut passed, mut sent) = (0u32, 0u32);
    for round in 0..ROUNDS {
        let input = if round % 2 == 0 {
            let s = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, s)
        } else {
            random_frame(&mut rng)
        };
        let run = fx.run(&input);
        let what = format!(
            "round {round}, input {input:02x?}, output {:02x?}",
            run.frame
        );
        assert_ne!(run.action, XDP_ABORTED, "XDP_ABORTED: {what}");
        match run.action {
            XDP_PASS => {
                assert_eq!(run.frame, input, "a passed frame was modified: {what}");
                passed += 1;
            }
            XDP_TX => {
                if let Err(e) = check_tx(&input, &run.frame) {
                    panic!("{e}: {what}");
                }
                sent += 1;
            }
            other => panic!("unexpected action {other}: {what}"),
        }
    }
    println!("{ROUNDS} frames: {passed} passed untouched, {sent} transmitted");
    assert!(
        sent > 100 && passed > 100,
        "the corpus should exercise both verdicts: {passed} passed, {sent} sent"
    );
    assert_eq!(fx.counter("aborted"), 0);
}
