//! The arm64 package as built: its architecture, its binary's ELF machine, and the
//! binary run under qemu-user.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};

use super::command::output;
use crate::package::{self, Arch};
use crate::util::exec;

/// The arm64 package: its control file says arm64, its binary is an AArch64 ELF, and it
/// answers `--version` and `check` under qemu-user.
pub(super) fn arm64_under_qemu(deb: &Path, dir: &Path, report: &mut String) -> anyhow::Result<()> {
    let arch = output(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(deb)
            .arg("Architecture"),
    )?;
    ensure!(
        arch.trim() == "arm64",
        "{}: Architecture {arch}",
        deb.display()
    );
    let x = dir.join("arm64");
    let _ = std::fs::remove_dir_all(&x);
    exec(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&x))?;
    let bin = x.join("usr/sbin/fo-agent");
    let elf = std::fs::read(&bin).with_context(|| format!("{}", bin.display()))?;
    // e_machine at offset 18 (little-endian): 183 is EM_AARCH64.
    ensure!(
        elf.starts_with(b"\x7fELF") && elf.get(18..20) == Some(&183u16.to_le_bytes()[..]),
        "{} is not an AArch64 ELF binary",
        bin.display()
    );
    let version = output(Arch::Arm64.runner(&bin).arg("--version"))?;
    ensure!(
        version.trim() == format!("fo-agent {}", package::version()?),
        "arm64 fo-agent --version said {version:?}"
    );
    let mut checked = Vec::new();
    for config in [
        x.join("etc/fo/fo.toml"),
        x.join("usr/share/doc/fo/examples/single-node.toml"),
    ] {
        let said = output(
            Arch::Arm64
                .runner(&bin)
                .args(["check", "--config"])
                .arg(&config),
        )?;
        ensure!(
            said.trim().ends_with(": OK"),
            "arm64 check {}: {said}",
            config.display()
        );
        checked.push(
            config
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
    }
    writeln!(
        report,
        "arm64 under qemu-user: {} ; check OK: {}",
        version.trim(),
        checked.join(", ")
    )?;
    let _ = std::fs::remove_dir_all(&x);
    Ok(())
}
