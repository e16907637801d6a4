//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4), weighted.
//!
//! Each backend walks its own permutation of the M table slots, derived only from
//! its identity (address and port), and claims the first free slot on its turn.
//! A backend of weight w takes w turns for every `max_weight` turns of the round,
//! so its share of the table is w / Σw. M is prime, so every permutation visits
//! every slot. The same backends in any order give the same table on every node.

use std::net::IpAddr;

/// A backend as Maglev sees it: who it is, and its weight (0 = drained, no slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's hasher),
/// which the permutations need so that all nodes compute the same table.
fn fnv1a(seed: u8, addr: &IpAddr, port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    eat(seed);
    match addr {
        IpAddr::V4(a) => a.octets().into_iter().for_each(&mut eat),
        IpAddr::V6(a) => a.octets().into_iter().for_each(&mut eat),
    }
    port.to_be_bytes().into_iter().for_each(&mut eat);
    // Final avalanche so that neighbouring addresses spread over the table.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Build the lookup table of size `m` (prime). Entry `i` is an index into `members`,
/// or `None` when no member has weight (all drained or none).
pub fn build(members: &[Member], m: u32) -> Vec<Option<u32>> {
    let size = m as usize;
    let mut table: Vec<Option<u32>> = vec![None; size];
    // Sort by identity so the input order (config order) does not matter.
    let mut order: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight > 0)
        .collect();
    order.sort_by_key(|&i| (members[i].addr, members[i].port));
    order.dedup_by_key(|i| (members[*i].addr, members[*i].port));
    if order.is_empty() || m < 2 {
        return table;
    }
    let max_weight = order
        .iter()
        .map(|&i| u64::from(members[i].weight))
        .max()
        .unwrap_or(1);
    let m64 = u64::from(m);
    struct Walk {
        member: usize,
        offset: u64,
        skip: u64,
        next: u64,
        credit: u64,
        weight: u64,
    }
    let mut walks: Vec<Walk> = order
        .iter()
        .map(|&i| {
            let Member { addr, port, weight } = members[i];
            Walk {
                member: i,
                offset: fnv1a(0x4f, &addr, port) % m64,
                skip: fnv1a(0x53, &addr, port) % (m64 - 1) + 1,
                next: 0,
                credit: 0,
                weight: u64::from(weight),
            }
        })
        .collect();
    let mut filled = 0usize;
    while filled < size {
        for walk in walks.iter_mut() {
            walk.credit += walk.weight;
            while walk.credit >= max_weight && filled < size {
                walk.credit -= max_weight;
                loop {
                    let slot = ((walk.offset + walk.next * walk.skip) % m64) as usize;
                    walk.next += 1;
                    if table[slot].is_none() {
                        table[slot] = Some(walk.member as u32);
                        filled += 1;
                        break;
                    }
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

/// Is `n` prime? (Config validation and tests; table sizes are small enough for
/// trial division.)
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use fo_common::hash::hash_source;
    use std::net::Ipv4Addr;

    const M: u32 = 65537;

    fn member(last: u8, weight: u32) -> Member {
        Member {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 1, last)),
            port: 1514,
            weight,
        }
    }

    /// Shares of 10,000 simulated clients (distinct source addresses), hashed the
    /// way the XDP program hashes them.
    fn shares(table: &[Option<u32>], n: usize) -> Vec<f64> {
        let mut counts = vec![0u32; n];
        for i in 0..10_000u32 {
            let src = Ipv4Addr::from(0xc612_0000u32 + i).octets(); // 198.18.0.0/15
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&src);
            let h = hash_source(&bytes);
            let b = table[(h % M) as usize].expect("full table") as usize;
            counts[b] += 1;
        }
        counts.iter().map(|&c| f64::from(c) / 10_000.0).collect()
    }

    #[test]
    fn equal_weights_spread_evenly() {
        let members = [member(1, 1), member(2, 1), member(3, 1)];
        let table = build(&members, M);
        assert!(table.iter().all(Option::is_some), "table has holes");
        for (i, share) in shares(&table, 3).iter().enumerate() {
            assert!(
                (share - 1.0 / 3.0).abs() <= 0.03,
                "backend {i} got {share:.3}, expected 0.333 ± 0.03"
            );
        }
    }

    #[test]
    fn weights_one_to_two() {
        let members = [member(1, 1), member(2, 2)];
        let table = build(&members, M);
        let s = shares(&table, 2);
        assert!(
            (s[0] - 1.0 / 3.0).abs() <= 0.03,
            "weight 1 got {:.3}, expected 0.333 ± 0.03",
            s[0]
        );
        assert!(
            (s[1] - 2.0 / 3.0).abs() <= 0.03,
            "weight 2 got {:.3}, expected 0.667 ± 0.03",
            s[1]
        );
    }

    #[test]
    fn config_order_does_not_matter() {
        let a = build(&[member(1, 1), member(2, 3), member(3, 1)], 251);
        let b = build(&[member(3, 1), member(1, 1), member(2, 3)], 251);
        let ids = |t: &[Option<u32>], m: &[Member]| -> Vec<Option<Ipv4Addr>> {
            t.iter()
                .map(|e| {
                    e.map(|i| match m[i as usize].addr {
                        IpAddr::V4(a) => a,
                        IpAddr::V6(_) => unreachable!(),
                    })
                })
                .collect()
        };
        assert_eq!(
            ids(&a, &[member(1, 1), member(2, 3), member(3, 1)]),
            ids(&b, &[member(3, 1), member(1, 1), member(2, 3)])
        );
    }

    #[test]
    fn removing_a_backend_disturbs_few_other_entries() {
        // Without the flow table, Maglev alone moves a small share of the other
        // backends' entries (the paper measures a few percent); the flow table in
        // the data plane then keeps established flows where they are.
        let before = build(&[member(1, 1), member(2, 1), member(3, 1)], M);
        let after = build(&[member(1, 1), member(2, 1)], M);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.unwrap() != 2 && b != a)
            .count();
        let share = moved as f64 / f64::from(M);
        assert!(
            share < 0.05,
            "{share:.3} of the table moved between surviving backends"
        );
    }

    #[test]
    fn drained_and_empty() {
        assert!(build(&[], M).iter().all(Option::is_none));
        assert!(build(&[member(1, 0)], 251).iter().all(Option::is_none));
        let t = build(&[member(1, 0), member(2, 1)], 251);
        assert!(t.iter().all(|e| *e == Some(1)));
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(2) && is_prime(1_000_003));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(9));
    }
}
