//! `cargo xtask setup`: install what a fresh Debian 12 machine lacks. Every step
//! checks first, so a second run does nothing (and needs no network).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{exec, succeeds};

/// Debian packages: LLVM 22 for bpf-linker; tools the tests and benchmarks drive;
/// keepalived and HAProxy as the real peers and baselines; BIRD 2 as the routing
/// daemon of BGP ownership (the nodes' and the lab router's); OpenSSL's command line
/// as the TLS peer of https checks.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "tcpdump",
    "keepalived",
    "haproxy",
    "bird2",
    "iperf3",
    "wrk",
    "arping",
    "socat",
    "iputils-ping",
    "util-linux",
    "procps",
    // The independent parser of the tunnel tests: scapy checks the encapsulated frames
    // (outer headers, checksums, inner packet) as the kernel's ipip / fou would see them.
    "python3-scapy",
    // The TLS servers and certificates of the https check tests (openssl s_server and
    // openssl req/x509/ca); the system trust store, the default `ca` of https checks.
    "openssl",
    "ca-certificates",
    // The label font of the demo's timeline PNG.
    "fonts-dejavu-core",
    // promtool: the tests check /metrics, the alert rules and their unit tests with
    // Prometheus' own linter (the packaged server is not run).
    "prometheus",
    // The Debian package (`cargo xtask package`) and its tests: cargo-deb's $auto
    // dependencies (dpkg-shlibdeps), the arm64 cross linker and libraries, qemu-user to
    // run the arm64 binary, a clean Debian root for the install test, lintian.
    "dpkg-dev",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "qemu-user-static",
    "debootstrap",
    "lintian",
    // Boots the install test's root to run the packaged unit under systemd.
    "systemd-container",
    // The stress bench: both cores saturated by CPU and memory stressors under a fo pair.
    "stress-ng",
];

/// Must match rust-toolchain.toml and the LLVM of `llvm-22-dev`.
pub const TOOLCHAIN: &str = "1.98.0";

pub fn run() -> anyhow::Result<()> {
    if !crate::util::is_root() {
        bail!("cargo xtask setup installs packages and loads BPF programs: run it as root");
    }
    apt_packages()?;
    stop_packaged_services();
    toolchain()?;
    bpf_linker()?;
    cargo_fuzz()?;
    cargo_deb()?;
    bpffs()?;
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {}", missing.join(" "));
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The packaged keepalived, HAProxy and BIRD must not run: tests start their own,
/// inside network namespaces, with their own configs and control sockets. Nor must
/// Prometheus: only its promtool is used.
fn stop_packaged_services() {
    if Path::new("/run/systemd/system").exists() {
        for unit in ["keepalived", "haproxy", "bird", "prometheus"] {
            let _ = succeeds(Command::new("systemctl").args(["disable", "--now", unit]));
        }
    }
}

fn toolchain() -> anyhow::Result<()> {
    let listed = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup")?;
    let list = String::from_utf8_lossy(&listed.stdout);
    if !list.lines().any(|l| l.starts_with(TOOLCHAIN)) {
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            TOOLCHAIN,
            "--profile",
            "minimal",
            "-c",
            "rust-src,clippy,rustfmt",
        ]))?;
    }
    // The arm64 package is cross-built (`cargo xtask package --arch arm64`).
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed", "--toolchain", TOOLCHAIN])
        .output()
        .context("rustup target list")?;
    let arm64 = crate::package::ARM64_TRIPLE;
    if !String::from_utf8_lossy(&targets.stdout)
        .lines()
        .any(|l| l.trim() == arm64)
    {
        exec(Command::new("rustup").args(["target", "add", arm64, "--toolchain", TOOLCHAIN]))?;
    }
    let comps = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", TOOLCHAIN])
        .output()
        .context("rustup component list")?;
    let comps = String::from_utf8_lossy(&comps.stdout);
    for c in ["rust-src", "clippy", "rustfmt"] {
        if !comps.lines().any(|l| l.starts_with(c)) {
            exec(Command::new("rustup").args(["component", "add", c, "--toolchain", TOOLCHAIN]))?;
        }
    }
    Ok(())
}

/// bpf-linker, built against Debian's LLVM 22 (the LLVM of Rust 1.98).
fn bpf_linker() -> anyhow::Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    exec(
        cargo_install(&[
            "bpf-linker",
            "--locked",
            "--no-default-features",
            "--features",
            "llvm-22",
        ])
        .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
        .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}

/// cargo-fuzz, for `cargo xtask fuzz` (libFuzzer targets; run with the pinned toolchain
/// and RUSTC_BOOTSTRAP=1, see xtask/src/fuzz.rs).
fn cargo_fuzz() -> anyhow::Result<()> {
    if succeeds(Command::new("cargo-fuzz").arg("--version")) {
        return Ok(());
    }
    exec(&mut cargo_install(&["cargo-fuzz", "--locked"]))
}

/// cargo-deb, pinned: `cargo xtask package` relies on its asset and systemd-unit handling.
const CARGO_DEB_VERSION: &str = "3.8.0";

fn cargo_deb() -> anyhow::Result<()> {
    let have = Command::new("cargo-deb")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    exec(&mut cargo_install(&[
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]))
}

/// `cargo install ARGS` with the pinned toolchain.
fn cargo_install(args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "install"]).args(args);
    cmd
}

fn bpffs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("/proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    exec(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}
