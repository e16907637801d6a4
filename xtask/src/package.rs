//! `cargo xtask package [--arch amd64|arm64]`: the Debian package,
//! `target/debian/fo_<version>_<arch>.deb`.
//!
//! 1. `cargo build --release -p fo-agent` for the architecture (arm64 is cross-built
//!    with Debian's gcc-aarch64-linux-gnu as linker; the XDP object inside is the same
//!    BPF little-endian object either way).
//! 2. The built binary writes the man pages and completions (`fo-agent generate`), run
//!    under qemu-user for arm64: what is packaged is what that binary says it is.
//! 3. The documentation is staged: the examples and hooks, and `deploy/monitoring/` when
//!    the repository has it.
//! 4. cargo-deb assembles the package from `[package.metadata.deb]` in
//!    fo-agent/Cargo.toml (maintainer scripts from the systemd unit and sysusers file).
//!
//! Everything staged goes to `target/pkg/` (see fo-agent/Cargo.toml for why there).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::util::{cargo, exec, root};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The Debian architecture name.
    pub fn deb(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target, when it is not the host's.
    pub fn triple(self) -> Option<&'static str> {
        match self {
            Arch::Amd64 => None,
            Arch::Arm64 => Some(ARM64_TRIPLE),
        }
    }

    /// A command that runs a binary of this architecture here.
    pub fn runner(self, binary: &Path) -> Command {
        match self {
            Arch::Amd64 => Command::new(binary),
            Arch::Arm64 => {
                let mut c = Command::new(QEMU_ARM64);
                c.args(["-L", ARM64_SYSROOT]).arg(binary);
                c
            }
        }
    }

    /// Where cargo leaves the release build.
    pub fn release_dir(self) -> PathBuf {
        let target = root().join("target");
        match self.triple() {
            Some(t) => target.join(t).join("release"),
            None => target.join("release"),
        }
    }
}

pub const ARM64_TRIPLE: &str = "aarch64-unknown-linux-gnu";
/// qemu-user-static; with `-L`, the dynamic loader and libc of Debian's arm64 cross
/// libraries (libc6-arm64-cross).
pub const QEMU_ARM64: &str = "qemu-aarch64-static";
pub const ARM64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// The version of the package: fo-agent's (the workspace's) version.
pub fn version() -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).context("Cargo.toml")?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package && let Some(v) = line.strip_prefix("version") {
            let v = v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            return Ok(v.to_owned());
        }
    }
    bail!("no version in [workspace.package] of Cargo.toml")
}

/// The path `run` writes for `arch`.
pub fn deb_path(arch: Arch) -> anyhow::Result<PathBuf> {
    Ok(root()
        .join("target/debian")
        .join(format!("fo_{}_{}.deb", version()?, arch.deb())))
}

/// Build the package; returns its path.
pub fn run(arch: Arch) -> anyhow::Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "fo-agent", "--bin", "fo-agent"]);
    if let Some(t) = arch.triple() {
        build.args(["--target", t]);
    }
    exec(&mut build)?;
    let binary = arch.release_dir().join("fo-agent");

    let stage = root().join("target/pkg");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    for (what, dir) in [("man", "man"), ("completions", "completions")] {
        exec(
            arch.runner(&binary)
                .args(["generate", what])
                .arg(stage.join(dir)),
        )?;
    }
    stage_docs(&stage.join("doc"))?;

    let out = deb_path(arch)?;
    let mut deb = cargo();
    deb.args(["deb", "-p", "fo-agent", "--no-build", "--output"])
        .arg(&out);
    if let Some(t) = arch.triple() {
        // The host's strip cannot read an arm64 binary; the variant names the
        // dependencies (see fo-agent/Cargo.toml).
        deb.args(["--target", t, "--variant", "arm64"])
            .env("STRIP_aarch64-linux-gnu", "aarch64-linux-gnu-strip")
            .env("OBJCOPY_aarch64-linux-gnu", "aarch64-linux-gnu-objcopy");
    }
    exec(&mut deb)?;
    eprintln!("package: {}", out.display());
    Ok(out)
}

/// /usr/share/doc/fo/: examples/ (configs, hooks, the DSR and tunnel backend scripts and sysctl
/// settings) and monitoring/ (deploy/monitoring, when the repository has it).
fn stage_docs(doc: &Path) -> anyhow::Result<()> {
    let deploy = root().join("deploy");
    let examples = doc.join("examples");
    copy_tree(&deploy.join("examples"), &examples)?;
    copy_tree(&deploy.join("hooks"), &examples.join("hooks"))?;
    for f in ["backend-dsr.sh", "backend-tunnel.sh", "sysctl.conf"] {
        copy(&deploy.join(f), &examples.join(f))?;
    }
    let monitoring = deploy.join("monitoring");
    if monitoring.is_dir() {
        copy_tree(&monitoring, &doc.join("monitoring"))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()))?;
        } else {
            copy(&path, &to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
