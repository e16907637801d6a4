//! Helpers shared by fo's integration tests: frame builders, a data plane loaded
//! for BPF_PROG_TEST_RUN, and network-namespace guards. Every test needs root.

pub mod bgp_lab;
pub mod build;
pub mod capture;
pub mod fixture;
pub mod frames;
pub mod journal;
pub mod layering;
pub mod lone;
pub mod natfill;
pub mod netns;
pub mod pair;
pub mod pins;
pub mod pki;
pub mod table;
pub mod vrrp_craft;
pub mod vrrp_lab;
pub mod xdp_oracle;

/// Panic with a clear message unless running as root: these tests load BPF
/// programs and create network namespaces.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "fo's integration tests need root (BPF, network namespaces); run `cargo xtask test` as root"
    );
}

/// The workspace root (where `deploy/` lives).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The `fo-agent` binary of the same build as this test (target/<profile>/fo-agent).
/// `cargo xtask test` builds it before the tests run.
pub fn agent_bin() -> std::path::PathBuf {
    bin("fo-agent")
}

/// A binary of the workspace from the same build as this test (target/<profile>/NAME).
pub fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build --workspace --exclude fo-ebpf --bins, done by cargo xtask test)",
        bin.display()
    );
    bin
}
