//! lintian on a built package: no error and no warning; every tag in the report.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};

use super::command::text;

/// lintian: no error and no warning; every tag printed.
pub(super) fn lintian(deb: &Path, report: &mut String) -> anyhow::Result<()> {
    let out = Command::new("lintian")
        .args([
            "--allow-root",
            "--display-info",
            "--pedantic",
            "--fail-on",
            "error,warning",
        ])
        .arg(deb)
        .output()
        .context("spawning lintian")?;
    let tags = text(&out);
    let name = deb.file_name().unwrap_or_default().to_string_lossy();
    let count = |c: char| {
        tags.lines()
            .filter(|l| l.starts_with(&format!("{c}: ")))
            .count()
    };
    writeln!(
        report,
        "lintian {name}: {} errors, {} warnings, {} info, {} pedantic",
        count('E'),
        count('W'),
        count('I'),
        count('P')
    )?;
    for l in tags.lines().filter(|l| l.len() > 2 && &l[1..3] == ": ") {
        writeln!(report, "  {l}")?;
    }
    ensure!(out.status.success(), "lintian {name} failed:\n{tags}");
    ensure!(
        count('E') == 0 && count('W') == 0,
        "lintian {name}:\n{tags}"
    );
    Ok(())
}
