//! `cargo xtask test`, `build` and `bench`.
//!
//! `test` runs every test, the package test (`test-package`), then `fuzz` (each
//! target for its CI time, 30 or 60 s) and `chaos` (120 s).

use crate::util::{cargo, exec};

pub fn build(release: bool) -> anyhow::Result<()> {
    let mut c = cargo();
    // fo-ebpf is built for the BPF target by fo-agent's build script; built for the
    // host as part of the workspace it would link std and clash.
    c.args(["build", "--workspace", "--exclude", "fo-ebpf", "--bins"]);
    if release {
        c.arg("--release");
    }
    exec(&mut c)
}

/// Every test. Unit and golden tests run in parallel; the privileged integration
/// tests (crate fo-tests) run one at a time, since several of them assert protocol
/// timers that two concurrent network labs on two cores could stretch. Among them,
/// `monitoring` runs promtool on /metrics, the alert rules and their unit tests, and
/// the dashboard's queries; `journald` reads the agent's native journal entries.
pub fn run(filter: Option<&str>) -> anyhow::Result<()> {
    build(false)?;
    let mut unit = cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "fo-tests",
        "--exclude",
        "fo-ebpf",
    ]);
    if let Some(f) = filter {
        unit.args(["--", f]);
    }
    exec(&mut unit)?;
    let mut privileged = cargo();
    privileged.args(["test", "-p", "fo-tests", "--", "--test-threads=1"]);
    if let Some(f) = filter {
        privileged.arg(f);
    }
    exec(&mut privileged)?;
    if filter.is_some() {
        return Ok(());
    }
    // The Debian packages, installed into a clean Debian 12 root (issue #15's tests of
    // record): skipped by a filtered run like fuzzing and chaos.
    crate::package_test::run()?;
    // Bounded fuzzing of every target, then a 2-minute chaos run (issue #8's tests of
    // record); a filtered run is for iterating on some tests and skips both.
    crate::fuzz::run(&crate::fuzz::Opts {
        targets: Vec::new(),
        seconds: None,
        libfuzzer: Vec::new(),
    })?;
    crate::chaos::run(&crate::chaos::Opts {
        duration: CHAOS_DURATION,
        seed: None,
    })
}

/// How long `cargo xtask test` injects faults.
const CHAOS_DURATION: std::time::Duration = std::time::Duration::from_secs(120);

/// The data-plane bench (BPF_PROG_TEST_RUN on the real object); it writes
/// `target/bench/dataplane.{md,json}`. With a baseline (object path, revision as
/// given, commit), every row is measured on that object too, in the same run. The lab
/// benches live in [`crate::bench`].
pub fn bench_dataplane(baseline: Option<(&std::path::Path, &str, &str)>) -> anyhow::Result<()> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "fo-tests", "--bench", "dataplane"]);
    if let Some((object, rev, commit)) = baseline {
        cmd.env("FO_BENCH_BASELINE_OBJECT", object)
            .env("FO_BENCH_BASELINE_REV", format!("{rev} ({commit:.12})"));
    }
    exec(&mut cmd)
}
