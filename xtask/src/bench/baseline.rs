//! The XDP object of another git revision, for the A/B data-plane bench: checked out
//! in a temporary worktree under `target/`, built the way `fo-agent`'s build script
//! builds this one (aya-build's command: `--release`, `bpfel-unknown-none`,
//! `-Z build-std=core`, BTF), and the worktree removed again, whatever happens.
//!
//! The object lands in `target/bench/baseline/fo-xdp-<commit>`; the build directory
//! `target/bench/baseline/target` is kept, so a second run only rebuilds what changed.
//! Its maps must have this build's layout: a revision of another
//! `fo_common::ABI_VERSION` is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{exec, root};

/// Build the XDP object of `rev`; its path and the commit it resolved to.
pub fn object(rev: &str) -> anyhow::Result<(PathBuf, String)> {
    let commit =
        git_out(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")]).with_context(|| {
            format!(
                "baseline revision {rev:?} does not resolve in this repository \
                 (name another with --baseline REV, or measure this build alone with --no-baseline)"
            )
        })?;
    let ours = abi_version(
        &std::fs::read_to_string(root().join("fo-common/src/lib.rs"))
            .context("read fo-common/src/lib.rs")?,
    )?;
    let theirs = abi_version(&git_out(&[
        "show",
        &format!("{commit}:fo-common/src/lib.rs"),
    ])?)?;
    if ours != theirs {
        bail!(
            "baseline {rev} ({commit:.12}) has map ABI {theirs}, this build {ours}: \
             the bench fills both objects' maps with this build's layout, so it cannot \
             compare them"
        );
    }
    let dir = root().join("target/bench/baseline");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let out = dir.join(format!("fo-xdp-{commit}"));
    if out.exists() {
        eprintln!(
            "baseline {rev}: {commit:.12}, object cached at {}",
            out.display()
        );
        return Ok((out, commit));
    }
    let src = Worktree::add(&dir.join(format!("src-{}", std::process::id())), &commit)?;
    let toolchain = toolchain(&src.0)?;
    let target_dir = dir.join("target");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        &toolchain,
        "cargo",
        "build",
        "--package",
        "fo-ebpf",
        "--bins",
    ])
    .args([
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(&src.0)
    .env("RUSTC_BOOTSTRAP", "1")
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!(
            "--cfg=bpf_target_arch=\"{}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
            std::env::consts::ARCH
        ),
    )
    .env_remove("RUSTC")
    .env_remove("RUSTC_WORKSPACE_WRAPPER")
    .env_remove("CARGO_TARGET_DIR");
    exec(&mut cmd).with_context(|| format!("build the XDP object of {rev} ({commit:.12})"))?;
    let built = target_dir.join("bpfel-unknown-none/release/fo-xdp");
    std::fs::copy(&built, &out)
        .with_context(|| format!("copy {} to {}", built.display(), out.display()))?;
    eprintln!("baseline {rev}: {commit:.12}, object {}", out.display());
    Ok((out, commit))
}

/// A detached git worktree, removed on drop.
struct Worktree(PathBuf);

impl Worktree {
    fn add(path: &Path, commit: &str) -> anyhow::Result<Self> {
        // A worktree a killed run left behind.
        if path.exists() {
            Worktree(path.to_owned()).remove();
        }
        exec(
            Command::new("git")
                .current_dir(root())
                .args(["worktree", "add", "--detach", "--quiet"])
                .arg(path)
                .arg(commit),
        )?;
        Ok(Worktree(path.to_owned()))
    }

    fn remove(&self) {
        let _ = Command::new("git")
            .current_dir(root())
            .args(["worktree", "remove", "--force"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = Command::new("git")
            .current_dir(root())
            .args(["worktree", "prune"])
            .status();
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `pub const ABI_VERSION: u32 = N;` of a `fo-common/src/lib.rs`.
fn abi_version(lib_rs: &str) -> anyhow::Result<u32> {
    lib_rs
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .context("no `pub const ABI_VERSION: u32 = N;` in fo-common/src/lib.rs")
}

/// The toolchain channel a checkout pins in its rust-toolchain.toml.
fn toolchain(checkout: &Path) -> anyhow::Result<String> {
    let path = checkout.join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("parse {}", path.display()))?;
    doc.get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
        .with_context(|| format!("no toolchain.channel in {}", path.display()))
}

fn git_out(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .current_dir(root())
        .args(args)
        .output()
        .with_context(|| format!("git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
