//! Every input is one Ethernet frame, run through the real compiled XDP program with
//! BPF_PROG_TEST_RUN on a data plane that owns a VIP and a VIP6 with DSR services; the
//! run must keep the contract of `fo_tests::xdp_oracle` (never XDP_ABORTED, nothing
//! written outside the frame, a passed frame untouched, a transmitted frame one of the
//! known shapes, a frame that is not ours passed unchanged). A broken contract panics,
//! which libFuzzer reports as a crash with the input saved as an artifact.
//!
//! The harness, not the BPF program, is what libFuzzer's coverage sees; mutation of the
//! seed corpus (valid ARP, NS, TCP and UDP frames for the VIPs) does the exploring.
//! Needs root (it loads BPF). Run: `cargo xtask fuzz xdp` (see README.md).
#![no_main]

use std::cell::RefCell;

use fo_tests::fixture::{Fixture, remove_stale_pins};
use fo_tests::xdp_oracle::{self, MAX_FRAME, MIN_FRAME};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fuzz_target!(|frame: &[u8]| {
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
    if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
        return;
    }
    FIXTURE.with_borrow_mut(|fx| {
        let fx = fx.get_or_insert_with(|| {
            // Pins of earlier runs that crashed (a crash never drops the fixture).
            remove_stale_pins();
            xdp_oracle::fixture()
        });
        let run = fx.run(frame);
        if let Err(e) = xdp_oracle::check(frame, &run) {
            panic!(
                "{e}: action {}, input {frame:02x?}, output {:02x?}",
                run.action, run.frame
            );
        }
    });
});
