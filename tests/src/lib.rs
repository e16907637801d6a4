//! Helpers shared by fo's integration tests: frame builders, a data plane loaded
//! for BPF_PROG_TEST_RUN, and network-namespace guards. Every test needs root.

pub mod fixture;
pub mod frames;
pub mod netns;

/// Panic with a clear message unless running as root: these tests load BPF
/// programs and create network namespaces.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "fo's integration tests need root (BPF, network namespaces); run `cargo xtask test` as root");
}
