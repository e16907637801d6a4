//! Helpers shared by fo's integration tests: frame builders, a data plane loaded
//! for BPF_PROG_TEST_RUN, and network-namespace guards. Every test needs root.

pub mod bgp_lab;
pub mod build;
pub mod capture;
pub mod fixture;
pub mod frames;
pub mod id_server;
pub mod journal;
pub mod layering;
pub mod lone;
pub mod natfill;
pub mod netns;
pub mod pair;
pub mod pins;
pub mod pki;
pub mod rng;
pub mod table;
pub mod temp;
pub mod tunnel_lab;
pub mod vlan_tag;
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

/// A finished command as the tests judge it: whether it succeeded, and its stdout then
/// its stderr.
pub fn outcome(out: &std::process::Output) -> (bool, String) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The `[node]` lines every lab agent's config starts with (no final newline): `eth0` in
/// generic XDP mode, its pin directory, its control socket with the state file beside it,
/// and metrics on loopback at `metrics_port`. The caller writes the rest of the table.
pub fn node_table(
    pin_dir: &std::path::Path,
    socket: &std::path::Path,
    metrics_port: u16,
) -> String {
    format!(
        "[node]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\nbpf_dir = \"{}\"\n\
         control_socket = \"{}\"\nstate_file = \"{}.state.json\"\n\
         metrics = \"127.0.0.1:{metrics_port}\"",
        pin_dir.display(),
        socket.display(),
        socket.display(),
    )
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
    let bin = fo_lab::kit::bins::beside(name);
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build --workspace --exclude fo-ebpf --bins, done by cargo xtask test)",
        bin.display()
    );
    bin
}
