//! Health checks through the tunnel: the mark range that names a probe to
//! encapsulate, and the counters of the TC egress program (`fo-hc`) that does it.
//!
//! A probe socket of a tunnel service's backend check carries `SO_MARK` =
//! [`hc_mark`]: the range's base (its low 16 bits zero) with, in the low 16 bits,
//! 0 for IPIP / IP6IP6 or the GUE destination port. The program encapsulates a
//! marked packet whose destination is the backend's own address in an outer header
//! from the packet's own source to its own destination, so the probe takes the
//! tunnel to the backend and only a backend that decapsulates answers it.

/// Default base of the mark range: marks `0x4f480000..=0x4f48ffff` (the config's
/// `[node] tunnel_check_mark` moves it).
pub const HC_MARK_BASE: u32 = 0x4f48_0000;
/// The bits of a mark that must equal the base.
pub const HC_MARK_MASK: u32 = 0xffff_0000;

/// The mark of a probe: `gue_port` 0 = IPIP / IP6IP6, else GUE to that UDP port.
#[inline(always)]
pub const fn hc_mark(base: u32, gue_port: u16) -> u32 {
    (base & HC_MARK_MASK) | gue_port as u32
}

/// `HC_STATS` slots of `fo-hc` (per-CPU counters).
pub const HC_IPIP: u32 = 0;
pub const HC_GUE: u32 = 1;
/// A marked packet left untouched: not IP, a family the encapsulation does not
/// serve (GUE over IPv6), or a helper that failed.
pub const HC_PASS_OTHER: u32 = 2;
pub const HC_STATS_COUNT: u32 = 3;

/// GUE source port of a probe: from its own TCP source port, in 32768..=65535.
#[inline(always)]
pub const fn hc_gue_source_port(inner_sport: u16) -> u16 {
    0x8000 | (inner_sport & 0x7fff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keep_the_base_and_carry_the_port() {
        assert_eq!(hc_mark(HC_MARK_BASE, 0), 0x4f48_0000);
        assert_eq!(hc_mark(HC_MARK_BASE, 6080), 0x4f48_17c0);
        assert_eq!(hc_mark(0x1234_5678, 1) & HC_MARK_MASK, 0x1234_0000);
        assert_eq!(hc_gue_source_port(1), 0x8001);
        assert_eq!(hc_gue_source_port(0xffff), 0xffff);
    }
}
