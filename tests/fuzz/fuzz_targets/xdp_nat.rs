//! Every input is `[mode, Ethernet frame]`, run through the real compiled XDP program
//! with BPF_PROG_TEST_RUN on the NAT fixture of `fo_tests::xdp_oracle::nat` (NAT
//! services on a VIP through a SNAT address, in a network namespace of this process's
//! own); the run must keep that contract: never XDP_ABORTED, nothing written outside the
//! frame, a passed frame untouched (or translated with its MACs kept), a transmitted or
//! redirected frame an ARP reply or a translation that changed only MACs, addresses,
//! ports and checksums (for an ICMP error: the quoted ones too), with valid checksums
//! kept valid. A broken contract panics.
//!
//! `mode` lets mutations reach the connection table: a client's packet to the service,
//! a backend's answer on the last connection translated, or an ICMP error about that
//! connection (either way); checksums are filled in
//! unless the mode says not to (see `Harness::frame`). The fixture's state persists
//! from one input to the next, as a data plane's does. Needs root. Run:
//! `cargo xtask fuzz xdp-nat` (see README.md).
#![no_main]

use std::cell::RefCell;

use fo_tests::fixture::remove_stale_pins;
use fo_tests::xdp_oracle::nat::{self, Harness};
use fo_tests::xdp_oracle::{MAX_FRAME, MIN_FRAME};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fuzz_target!(|input: &[u8]| {
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    if !(MIN_FRAME + 1..=MAX_FRAME + 1).contains(&input.len()) {
        return;
    }
    HARNESS.with_borrow_mut(|h| {
        let h = h.get_or_insert_with(|| {
            // Pins of earlier runs that crashed (a crash never drops the fixture).
            remove_stale_pins();
            nat::private_namespace();
            Harness::new()
        });
        let Some(frame) = h.frame(input) else {
            return;
        };
        let (run, verdict) = h.run(&frame);
        if let Err(e) = verdict {
            panic!(
                "{e}: action {}, input {input:02x?}, frame {frame:02x?}, output {:02x?}",
                run.action, run.frame
            );
        }
    });
});
