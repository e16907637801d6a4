//! Random and mutated frames through the real program (BPF_PROG_TEST_RUN), seeded so
//! a failure reproduces: the program never aborts, a frame it passes leaves untouched,
//! and a frame it transmits changed only where its verdict allows (MACs for DSR; an
//! ARP reply or a Neighbor Advertisement for the VIP); and the same through the NAT
//! fixture, whose translations must change only MACs, addresses, ports and checksums
//! and keep the checksums valid; and the tunnel fixture, whose encapsulations must be
//! valid outer headers around the unchanged packet, and its ICMP errors well formed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use fo_common::xdp_action::XDP_PASS;
use fo_tests::fixture::OUR_MAC;
use fo_tests::frames;
use fo_tests::rng::Rng;
use fo_tests::xdp_oracle::{self, CLIENT_MAC, Verdict, nat, tunnel};

const ROUNDS: u32 = 20_000;

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut f = seed.to_vec();
    match rng.below(4) {
        // Flip a few bytes anywhere.
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(f.len());
                f[i] = rng.next_u64() as u8;
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
                f.push(rng.next_u64() as u8);
            }
        }
    }
    f
}

fn random_frame(rng: &mut Rng) -> Vec<u8> {
    let len = 14 + rng.below(200);
    let mut f: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
    // Bias the EtherType towards the ones the program parses.
    let types = [0x0800u16, 0x0806, 0x86dd, 0x8100, 0x88a8];
    if rng.below(4) != 0 {
        f[12..14].copy_from_slice(&types[rng.below(types.len())].to_be_bytes());
    }
    f
}

#[test]
fn random_and_mutated_frames() {
    let mut fx = xdp_oracle::fixture();
    let seeds: Vec<Vec<u8>> = xdp_oracle::seeds().into_iter().map(|(_, f)| f).collect();
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
        match xdp_oracle::check(&input, &run) {
            Ok(Verdict::Passed) => passed += 1,
            Ok(Verdict::Sent) => sent += 1,
            Err(e) => panic!(
                "{e}: round {round}, input {input:02x?}, action {}, output {:02x?}",
                run.action, run.frame
            ),
        }
    }
    println!("{ROUNDS} frames: {passed} passed untouched, {sent} transmitted");
    assert!(
        sent > 100 && passed > 100,
        "the corpus should exercise both verdicts: {passed} passed, {sent} sent"
    );
    assert_eq!(fx.counter("aborted"), 0);
}

/// The libFuzzer target's seed corpus (`tests/fuzz/corpus/xdp/`) is the oracle's seeds,
/// each one transmitted: a seed that stopped being ours would leave the fuzzer
/// exploring only the pass path. `FO_WRITE_XDP_SEEDS=1` rewrites the files.
#[test]
fn xdp_fuzz_corpus_is_the_seeds() {
    let dir = fo_tests::workspace_root().join("tests/fuzz/corpus/xdp");
    let write = std::env::var_os("FO_WRITE_XDP_SEEDS").is_some_and(|v| v == "1");
    let mut fx = xdp_oracle::fixture();
    for (name, frame) in xdp_oracle::seeds() {
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).expect("create the corpus directory");
            std::fs::write(&path, &frame).expect("write a seed");
        }
        let stored = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (FO_WRITE_XDP_SEEDS=1 writes it)", path.display()));
        assert_eq!(
            stored,
            frame,
            "{} differs from the oracle's seed",
            path.display()
        );
        let run = fx.run(&frame);
        assert_eq!(
            xdp_oracle::check(&frame, &run),
            Ok(Verdict::Sent),
            "seed {name} must be transmitted"
        );
    }
}

/// A frame that carries no VIP passes untouched, whatever its shape (the oracle's
/// "not ours" rule holds on frames built to look like ours except for the address).
#[test]
fn frames_for_other_addresses_pass_untouched() {
    let mut fx = xdp_oracle::fixture();
    let other = Ipv4Addr::new(192, 0, 2, 101);
    let other6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
    let client = Ipv4Addr::new(198, 51, 100, 7);
    let client6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    let frames = [
        frames::arp(1, CLIENT_MAC, client, [0; 6], other),
        frames::neighbor_solicit(CLIENT_MAC, client6, other6, true),
        frames::tcp4(
            OUR_MAC,
            CLIENT_MAC,
            client,
            other,
            40000,
            1514,
            frames::TCP_SYN,
            b"",
        ),
        frames::udp4(OUR_MAC, CLIENT_MAC, client, other, 5140, 514, b"<13>line"),
        frames::tcp6(
            OUR_MAC,
            CLIENT_MAC,
            client6,
            other6,
            40000,
            1514,
            frames::TCP_SYN,
            b"",
        ),
    ];
    for f in frames {
        assert!(!xdp_oracle::carries_a_vip(&f));
        let run = fx.run(&f);
        assert_eq!(run.action, XDP_PASS, "{f:02x?}");
        assert_eq!(run.frame, f);
        assert_eq!(run.guard_overwritten, 0);
    }
}

/// The NAT fixture (`xdp_oracle::nat`), on a thread in a network namespace of its own:
/// mutated seeds and random frames through the harness the libFuzzer target `xdp-nat`
/// uses; every run keeps the NAT contract (translations change only MACs, addresses,
/// ports and checksums, and keep valid checksums valid), and both directions of
/// translation happen.
#[test]
fn nat_random_and_mutated_frames() {
    std::thread::spawn(|| {
        nat::private_namespace();
        let mut h = nat::Harness::new();
        let seeds: Vec<Vec<u8>> = nat::seeds().into_iter().map(|(_, f)| f).collect();
        let mut rng = Rng(0x666f_2d6e_6174_7a31);
        let mut verdicts: BTreeMap<nat::NatVerdict, u32> = BTreeMap::new();
        for round in 0..ROUNDS {
            let input = if round % 4 == 3 {
                let mut f = random_frame(&mut rng);
                f.insert(0, rng.next_u64() as u8);
                f
            } else {
                // Mostly the seeds as they are (a handshake needs its steps in order),
                // else mutated.
                let s = &seeds[rng.below(seeds.len())];
                if round % 4 == 0 {
                    s.clone()
                } else {
                    mutate(&mut rng, s)
                }
            };
            let Some(frame) = h.frame(&input) else {
                continue;
            };
            let (run, verdict) = h.run(&frame);
            match verdict {
                Ok(v) => *verdicts.entry(v).or_default() += 1,
                Err(e) => panic!(
                    "{e}: round {round}, input {input:02x?}, frame {frame:02x?}, action {}, output {:02x?}",
                    run.action, run.frame
                ),
            }
        }
        println!("{ROUNDS} inputs through the NAT fixture: {verdicts:?}");
        for v in [
            nat::NatVerdict::Forward,
            nat::NatVerdict::Reply,
            nat::NatVerdict::Passed,
            nat::NatVerdict::ArpReply,
        ] {
            assert!(
                verdicts.get(&v).copied().unwrap_or(0) > 100,
                "the seeds should exercise {v:?}: {verdicts:?}"
            );
        }
        assert_eq!(h.fx.counter("aborted"), 0);
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

/// The libFuzzer target's seed corpus (`tests/fuzz/corpus/xdp-nat/`) is the NAT
/// oracle's seeds, and each one, run in order on a fresh fixture, is translated (or
/// answered, for ARP). `FO_WRITE_XDP_SEEDS=1` rewrites the files.
#[test]
fn xdp_nat_fuzz_corpus_is_the_seeds() {
    let dir = fo_tests::workspace_root().join("tests/fuzz/corpus/xdp-nat");
    let write = std::env::var_os("FO_WRITE_XDP_SEEDS").is_some_and(|v| v == "1");
    std::thread::spawn(move || {
        nat::private_namespace();
        let mut h = nat::Harness::new();
        for (name, input) in nat::seeds() {
            let path = dir.join(name);
            if write {
                std::fs::create_dir_all(&dir).expect("create the corpus directory");
                std::fs::write(&path, &input).expect("write a seed");
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (FO_WRITE_XDP_SEEDS=1 writes it)", path.display())
            });
            assert_eq!(
                stored,
                input,
                "{} differs from the oracle's seed",
                path.display()
            );
            let frame = h.frame(&input).expect("a seed is long enough");
            let (run, verdict) = h.run(&frame);
            let verdict = verdict.unwrap_or_else(|e| panic!("seed {name}: {e}"));
            assert_ne!(
                verdict,
                nat::NatVerdict::Passed,
                "seed {name} must be translated or answered (action {}, output {:02x?})",
                run.action,
                run.frame
            );
        }
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}

/// The tunnel fixture (`xdp_oracle::tunnel`), in a network namespace of its own:
/// mutated seeds and random frames; every run keeps the tunnel contract, and the seeds
/// exercise encapsulation (IPIP and GUE, both families), the too-big answer and the
/// relay of a path router's error.
#[test]
fn tunnel_random_and_mutated_frames() {
    let ns = fo_tests::netns::Netns::new("tdpfuzz");
    ns.sh(&tunnel::fib_setup());
    ns.run(|| {
        let mut fx = tunnel::fixture();
        let seeds: Vec<Vec<u8>> = tunnel::seeds().into_iter().map(|(_, f)| f).collect();
        for (name, seed) in tunnel::seeds() {
            let run = fx.run(&seed);
            assert_eq!(
                tunnel::check(&seed, &run),
                Ok(Verdict::Sent),
                "seed {name}: action {}, output {:02x?}",
                run.action,
                run.frame
            );
        }
        let mut rng = Rng(0x666f_2d74_756e_6e31);
        let mut shapes: BTreeMap<&str, u32> = BTreeMap::new();
        for round in 0..ROUNDS {
            let seed = &seeds[rng.below(seeds.len())];
            let input = match round % 4 {
                0 => seed.clone(),
                3 => random_frame(&mut rng),
                _ => mutate(&mut rng, seed),
            };
            let run = fx.run(&input);
            let shape = match tunnel::check(&input, &run) {
                Ok(Verdict::Passed) => "passed",
                Ok(Verdict::Sent) if run.action == fo_common::xdp_action::XDP_REDIRECT => "relay",
                Ok(Verdict::Sent) if run.frame[0..6] == tunnel::HOP_MAC => {
                    if run.frame[23] == 17 || run.frame[20] == 17 {
                        "gue"
                    } else {
                        "ipip"
                    }
                }
                Ok(Verdict::Sent) if run.frame.len() == 70 || run.frame.len() == 110 => "too_big",
                Ok(Verdict::Sent) => "answer",
                Err(e) => panic!(
                    "{e}: round {round}, input {input:02x?}, action {}, output {:02x?}",
                    run.action, run.frame
                ),
            };
            *shapes.entry(shape).or_default() += 1;
        }
        println!("{ROUNDS} frames through the tunnel fixture: {shapes:?}");
        for shape in ["passed", "ipip", "gue", "too_big", "answer", "relay"] {
            assert!(
                shapes.get(shape).copied().unwrap_or(0) > 100,
                "the seeds should exercise {shape}: {shapes:?}"
            );
        }
        assert_eq!(fx.counter("aborted"), 0);
    });
}
