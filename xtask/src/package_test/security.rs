//! `systemd-analyze security` on fo's installed unit beside Debian's keepalived and
//! haproxy units.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, ensure};

use super::UNIT;
use super::chroot::Chroot;
use super::command::text;

/// `systemd-analyze security --offline=true` on fo's installed unit beside Debian's
/// keepalived and haproxy units, in one run of this machine's systemd-analyze.
pub(super) fn security(c: &Chroot, dir: &Path, report: &mut String) -> anyhow::Result<()> {
    let units = [
        c.path(UNIT),
        PathBuf::from("/lib/systemd/system/keepalived.service"),
        PathBuf::from("/lib/systemd/system/haproxy.service"),
    ];
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["security", "--offline=true", "--no-pager"])
        .args(&units);
    let out = cmd.output().context("spawning systemd-analyze")?;
    let said = text(&out);
    std::fs::write(dir.join("security-full.txt"), &said)?;
    let scores: Vec<(String, String)> = said
        .lines()
        .filter_map(|l| {
            let rest = l.split("Overall exposure level for ").nth(1)?;
            let (unit, level) = rest.split_once(": ")?;
            Some((unit.to_owned(), level.trim().to_owned()))
        })
        .collect();
    ensure!(
        scores.len() == units.len(),
        "systemd-analyze security gave {} scores for {} units:\n{said}",
        scores.len(),
        units.len()
    );
    let mut table = String::from("systemd-analyze security --offline=true (one run):\n");
    for (unit, level) in &scores {
        writeln!(table, "  {unit:<20} {level}")?;
    }
    std::fs::write(dir.join("security.txt"), &table)?;
    report.push_str(&table);
    Ok(())
}
