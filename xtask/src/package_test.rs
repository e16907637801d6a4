//! `cargo xtask test-package` (also part of `cargo xtask test`): the Debian package as an
//! operator gets it.
//!
//! - lintian on the amd64 and arm64 packages: no error and no warning (info tags are
//!   printed).
//! - Installed with `dpkg -i` and `apt-get -f install` into a clean Debian 12 root made
//!   by debootstrap, and checked inside it: `fo-agent --version`; `fo-agent check` on the
//!   starting config and on every shipped example, each file it names that `check` reads
//!   provided first (the shipped hooks installed as the README says, PEMs made with
//!   openssl, keys at 0600; see `examples`); `man -w fo-agent`, `man -w 5 fo.toml`; the
//!   completions in place (bash loads its own); the group `fo`; the unit installed, not
//!   enabled, and clean under `systemd-analyze verify`; `dpkg -r` keeps the conffile and
//!   `dpkg -P` removes it and /var/lib/fo.
//! - The arm64 package's binary answers `--version` and `check` under qemu-user.
//! - `systemd-analyze security --offline=true` on fo's installed unit and Debian's
//!   keepalived.service and haproxy.service, in one run (target/pkgtest/security.txt).
//! - The root booted with systemd (systemd-nspawn, a network of its own): the packaged
//!   unit, sandbox and all, starts the agent on a veth (Type=notify: active once it
//!   runs), `systemctl reload` succeeds on a good config and fails on a refused one, a
//!   member of the group `fo` may run `fo-agent status`, an upgrade (the package
//!   installed over itself) leaves the running agent and its XDP program alone, a stop
//!   lets an 11 s STOP hook finish (past TimeoutStopSec=10s), and `dpkg -r` removes the
//!   pinned data plane.
//!
//! The pristine root is made once and cached (target/pkgtest/root-*.tar, named after
//! what it holds); each run unpacks a copy. Debian's mirror is read from this machine's
//! apt sources (or `FO_PKGTEST_MIRROR`), its proxy from `http_proxy` or apt's config
//! (`host`). One run at a time per target directory (a lock); every command is bounded
//! in time (coreutils' `timeout`), and a root that cannot boot is an error that says
//! what nspawn and systemd said, not a hang. Preconditions: docs/lab.md. Every command inside the root runs in a mount namespace of its own
//! (`unshare --mount`) that carries the root's /proc, /sys and /dev mounts, so nothing
//! stays mounted when a command ends, however it ends; the copy is removed on drop and
//! leftovers of an interrupted run are removed at the next start.
//!
//! Parts: [`lintian`](mod@lintian) and [`arm64`] (the .debs as built), [`chroot`] (the
//! pristine root and its copies, [`chroot::Chroot`]), [`install`] (install, check,
//! remove, purge in the root), [`security`](mod@security) (systemd-analyze security),
//! [`nspawn`] (the root booted, [`nspawn::Booted`]) and [`booted`] (the packaged unit
//! under systemd), with [`command`] (commands bounded in time, output captured),
//! [`clock`] (the step timings), [`host`] (the machine's preconditions) and [`examples`]
//! (what the examples need on disk).

mod arm64;
mod booted;
mod chroot;
mod clock;
mod command;
mod examples;
mod host;
mod install;
mod lintian;
mod nspawn;
mod security;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::ensure;

use crate::package::{self, Arch};
use crate::util::root;
use arm64::arm64_under_qemu;
use booted::under_systemd;
use chroot::{Chroot, pristine_root};
use clock::Clock;
use command::output;
use install::install_and_check;
use lintian::lintian;
use security::security;

const SUITE: &str = "bookworm";
const UNIT: &str = "/usr/lib/systemd/system/fo-agent.service";
const CONF: &str = "/etc/fo/fo.toml";

pub fn run() -> anyhow::Result<()> {
    let dir = root().join("target/pkgtest");
    std::fs::create_dir_all(&dir)?;
    // One run at a time here (leftovers are removed below only with the lock held),
    // and what the booted root needs, before anything is built.
    let _lock = host::RunLock::acquire(&dir)?;
    host::check_boot()?;
    let mut report = String::new();
    let mut clock = Clock::start();

    let amd64 = package::run(Arch::Amd64)?;
    clock.lap("package amd64");

    let arm64 = package::run(Arch::Arm64)?;
    clock.lap("package arm64");

    for deb in [&amd64, &arm64] {
        lintian(deb, &mut report)?;
    }
    // The arm64 dependencies are written by hand (fo-agent/Cargo.toml): they must be
    // what dpkg-shlibdeps finds for amd64.
    let depends = |deb: &Path| output(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Depends"));
    let (d64, darm) = (depends(&amd64)?, depends(&arm64)?);
    ensure!(
        d64.trim() == darm.trim(),
        "Depends differ: amd64 {:?}, arm64 {:?} (update [package.metadata.deb.variants.arm64])",
        d64.trim(),
        darm.trim()
    );
    writeln!(report, "Depends (amd64 = arm64): {}", d64.trim())?;
    clock.lap("lintian");

    arm64_under_qemu(&arm64, &dir, &mut report)?;
    clock.lap("arm64 under qemu");

    let pristine = pristine_root(&dir)?;
    clock.lap("pristine root");

    let chroot = Chroot::unpack(&pristine, &dir.join(format!("run-{}", std::process::id())))?;
    install_and_check(&chroot, &amd64, &mut report)?;
    clock.lap("install test");

    security(&chroot, &dir, &mut report)?;
    clock.lap("security");

    under_systemd(&chroot, &dir, &mut report)?;
    drop(chroot);
    clock.lap("under systemd");

    report.push_str(&clock.table());
    std::fs::write(dir.join("report.txt"), &report)?;
    println!("{report}");
    println!("package test: OK (target/pkgtest/report.txt)");
    Ok(())
}
