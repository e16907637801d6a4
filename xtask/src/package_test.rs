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

mod examples;
mod host;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};

use crate::package::{self, Arch};
use crate::util::{exec, root, show};

/// Bumped when the way the root is made changes.
const ROOT_RECIPE: u32 = 1;
/// In the pristine root: man-db for `man -w`, iproute2 for the booted root's veth, and
/// the .debs of the package's dependencies (systemd), downloaded but not installed, so
/// that `apt-get -f install` resolves them for real without the network.
const ROOT_INCLUDE: &[&str] = &["man-db", "iproute2"];
const ROOT_DOWNLOAD: &[&str] = &["systemd"];
const SUITE: &str = "bookworm";

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

/// Wall time and the CPU time of the commands run (children waited for), per step:
/// on a shared machine the CPU seconds tell what a step costs better than the wall time.
struct Clock {
    laps: Vec<(&'static str, f64, f64)>,
    wall: Instant,
    cpu: f64,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            laps: Vec::new(),
            wall: Instant::now(),
            cpu: children_cpu(),
        }
    }

    /// End the step `what` (and say so at once: a failed run still shows its steps).
    fn lap(&mut self, what: &'static str) {
        let (wall, cpu) = (self.wall.elapsed().as_secs_f64(), children_cpu() - self.cpu);
        eprintln!("package test: {what}: {wall:.1} s, CPU {cpu:.1} s");
        self.laps.push((what, wall, cpu));
        self.wall = Instant::now();
        self.cpu = children_cpu();
    }

    fn table(&self) -> String {
        let mut t = format!("\n{:<20} {:>8} {:>8}\n", "seconds", "wall", "CPU");
        let (mut wall, mut cpu) = (0.0, 0.0);
        for (what, w, c) in &self.laps {
            t.push_str(&format!("  {what:<18} {w:8.1} {c:8.1}\n"));
            wall += w;
            cpu += c;
        }
        t.push_str(&format!("  {:<18} {wall:8.1} {cpu:8.1}\n", "total"));
        t
    }
}

/// User and system CPU seconds of this process's waited-for children so far
/// (/proc/self/stat cutime and cstime, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // cutime and cstime are fields 16 and 17, i.e. 14 and 15 after field 2.
    (f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)) / 100.0
}

/// Run a command, capturing its output; fail with both streams if it fails.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    let text = text(&out);
    if timed_out(cmd, &out) {
        bail!("{} did not finish in time:\n{text}", show(cmd));
    }
    if !out.status.success() {
        bail!("{} failed ({}):\n{text}", show(cmd), out.status);
    }
    Ok(text)
}

/// Longest a debootstrap may take (it takes about 100 s here).
const DEBOOTSTRAP_SECONDS: u64 = 1200;
/// Longest a command in the (unbooted) root may take (dpkg, apt-get from the cache).
const ROOT_COMMAND_SECONDS: u64 = 600;
/// Longest a command in the booted root may take (a stop waits up to 20 s for a hook).
const BOOTED_COMMAND_SECONDS: u64 = 180;
/// How long the booted root may take to finish booting (a few seconds here).
const BOOT_SECONDS: u64 = 60;

/// `program` under coreutils' `timeout` (TERM after `seconds`, KILL 10 s later).
fn bounded(seconds: u64, program: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["--kill-after=10", &seconds.to_string(), program]);
    c
}

/// Run a command [`bounded`] by `seconds`: (success, its output); an error, naming it
/// `what`, when it does not start or runs out of time.
fn try_output(cmd: &mut Command, what: &str, seconds: u64) -> anyhow::Result<(bool, String)> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    ensure!(
        !timed_out(cmd, &out),
        "{what}: did not finish in {seconds} s:\n{}",
        text(&out)
    );
    Ok((out.status.success(), text(&out)))
}

/// Did a [`bounded`] command run out of time? (`timeout` exits 124, or 137 after KILL.)
fn timed_out(cmd: &Command, out: &Output) -> bool {
    cmd.get_program() == "timeout" && matches!(out.status.code(), Some(124 | 137))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// lintian: no error and no warning; every tag printed.
fn lintian(deb: &Path, report: &mut String) -> anyhow::Result<()> {
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

/// The arm64 package: its control file says arm64, its binary is an AArch64 ELF, and it
/// answers `--version` and `check` under qemu-user.
fn arm64_under_qemu(deb: &Path, dir: &Path, report: &mut String) -> anyhow::Result<()> {
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

/// The cached pristine root (a tar of it): made once per recipe.
fn pristine_root(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = format!(
        "root-{SUITE}-r{ROOT_RECIPE}-{}-{}.tar",
        ROOT_INCLUDE.join("+"),
        ROOT_DOWNLOAD.join("+")
    );
    let tar = dir.join(&name);
    if tar.exists() {
        eprintln!("package test: cached root {}", tar.display());
        return Ok(tar);
    }
    let mirror = host::mirror()?;
    let proxy = host::proxy();
    let build = dir.join(format!("building-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(build.clone());
    // In a mount namespace of its own: whatever debootstrap mounts in the root ends
    // with it. Bounded: a mirror that stops answering is an error, not a hang.
    let mut debootstrap = bounded(DEBOOTSTRAP_SECONDS, "unshare");
    if let Some(p) = &proxy {
        debootstrap.env("http_proxy", p);
    }
    exec(
        debootstrap
            .args(["--mount", "--propagation", "private", "--", "debootstrap"])
            .args([
                "--variant=minbase",
                &format!("--include={}", ROOT_INCLUDE.join(",")),
            ])
            .arg(SUITE)
            .arg(&build)
            .arg(&mirror),
    )?;
    // apt's lists, and the dependencies' packages in apt's cache (not installed).
    let c = Chroot {
        dir: build.clone(),
        remove: false,
    };
    std::fs::copy("/etc/resolv.conf", build.join("etc/resolv.conf")).ok();
    let with_proxy = proxy
        .map(|p| format!("export http_proxy='{p}'; "))
        .unwrap_or_default();
    c.run(&format!("{with_proxy}apt-get update -qq"))?;
    c.run(&format!(
        "{with_proxy}DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only --no-install-recommends {}",
        ROOT_DOWNLOAD.join(" ")
    ))?;
    let partial = dir.join(format!("{name}.partial"));
    exec(
        Command::new("tar")
            .arg("-C")
            .arg(&build)
            .args(["-cf"])
            .arg(&partial)
            .arg("."),
    )?;
    std::fs::rename(&partial, &tar)?;
    Ok(tar)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = remove_root(&self.0);
    }
}

/// Remove a root directory, unless something is mounted inside it (every mount of
/// this test lives in a mount namespace that ended with its command, so that would be
/// someone else's): removing through a mounted /dev or /proc would reach the host's.
fn remove_root(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("/proc/self/mounts")?;
    let prefix = format!("{}/", dir.display());
    if let Some(m) = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .find(|m| m.starts_with(&prefix) || *m == prefix.trim_end_matches('/'))
    {
        bail!("{m} is mounted: not removing {}", dir.display());
    }
    // A booted root's processes are killed with systemd-nspawn but die (and stop
    // writing, journald last) a moment later: try again while the directory fills up.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            r => return r.with_context(|| format!("removing {}", dir.display())),
        }
    }
}

/// A root directory; commands run inside it with /proc, /sys and /dev mounted in a
/// mount namespace that ends with the command.
struct Chroot {
    dir: PathBuf,
    /// Remove the directory on drop.
    remove: bool,
}

impl Chroot {
    /// A fresh copy of the pristine root at `dir` (after removing the leftovers of
    /// interrupted runs beside it: the caller holds the run lock, so no other run's).
    fn unpack(tar: &Path, dir: &Path) -> anyhow::Result<Chroot> {
        if let Some(parent) = dir.parent()
            && let Ok(entries) = std::fs::read_dir(parent)
        {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("run-") || n.starts_with("building-") {
                    remove_root(&e.path())?;
                }
            }
        }
        std::fs::create_dir_all(dir)?;
        let c = Chroot {
            dir: dir.to_owned(),
            remove: true,
        };
        exec(Command::new("tar").arg("-C").arg(dir).arg("-xf").arg(tar))?;
        Ok(c)
    }

    fn command(&self, script: &str) -> Command {
        let d = self.dir.display();
        let mut c = bounded(ROOT_COMMAND_SECONDS, "unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(format!(
                "set -e; mount -t proc proc {d}/proc; mount -t sysfs sysfs {d}/sys; \
                 mount --bind /dev {d}/dev; exec chroot {d} /bin/sh -c \"$0\""
            ))
            .arg(script)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8");
        c
    }

    /// Run `script` (sh) inside; its output, or an error with it.
    fn run(&self, script: &str) -> anyhow::Result<String> {
        eprintln!("+ [root] {script}");
        output(&mut self.command(script))
    }

    /// Run `script` inside; (success, output).
    fn try_run(&self, script: &str) -> anyhow::Result<(bool, String)> {
        eprintln!("+ [root] {script}");
        let what = format!("[root] {script}");
        try_output(&mut self.command(script), &what, ROOT_COMMAND_SECONDS)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        if self.remove
            && let Err(e) = remove_root(&self.dir)
        {
            eprintln!("package test: {e:#}");
        }
    }
}

const UNIT: &str = "/usr/lib/systemd/system/fo-agent.service";
const CONF: &str = "/etc/fo/fo.toml";

fn install_and_check(c: &Chroot, deb: &Path, report: &mut String) -> anyhow::Result<()> {
    let version = package::version()?;
    std::fs::copy(deb, c.path("/tmp/fo.deb")).context("copying the package into the root")?;
    // dpkg alone cannot configure it without its dependencies; apt then brings them.
    let (alone, _) = c.try_run("dpkg -i /tmp/fo.deb")?;
    c.run("DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq --no-install-recommends")?;
    let status = c.run("dpkg-query -W -f='${Status} ${Version}' fo")?;
    ensure!(
        status == format!("install ok installed {version}"),
        "dpkg says {status:?}"
    );
    writeln!(
        report,
        "install: dpkg -i {} its dependencies, apt-get -f install brought them: {status}",
        if alone { "found" } else { "lacked" }
    )?;

    let said = c.run("fo-agent --version")?;
    ensure!(
        said.trim() == format!("fo-agent {version}"),
        "fo-agent --version: {said:?}"
    );
    ensure!(
        c.run("getent group fo")?.starts_with("fo:"),
        "no group fo after install"
    );

    // Configs: the starting one, and every example, each file it names that `check`
    // reads provided first (the shipped hooks installed as the README says; PEMs, keys
    // and the hooks the package lacks made for the test).
    c.run(
        "install -d /etc/fo/hooks && install -m 0755 /usr/share/doc/fo/examples/hooks/*.sh /etc/fo/hooks/",
    )?;
    let said = c.run(&format!("fo-agent check --config {CONF}"))?;
    ensure!(said.trim().ends_with(": OK"), "check {CONF}: {said}");
    let mut checked = vec![CONF.to_owned()];
    let examples = c.path("/usr/share/doc/fo/examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    ensure!(
        !names.is_empty(),
        "no example configs in {}",
        examples.display()
    );
    let pki = examples::Pki::new(&c.path("/var/tmp/fo-pkgtest-pki"))?;
    // By path, as the first example that names it found it: a file made for an earlier
    // example is in the root for the later ones, and is not the package's.
    let mut provided = std::collections::BTreeMap::new();
    let mut not_read = std::collections::BTreeSet::new();
    for name in names {
        let text = std::fs::read_to_string(examples.join(&name))?;
        let needs = examples::prerequisites(&text).with_context(|| format!("example {name}"))?;
        not_read.extend(
            needs
                .iter()
                .filter(|(_, n)| **n == examples::Needs::NotRead)
                .map(|(p, _)| p.clone()),
        );
        for p in examples::provide(&c.dir, &needs, &pki)? {
            let made = format!("{} ({}: {})", p.path, p.needs.describe(), p.how);
            provided.entry(p.path).or_insert(made);
        }
        let said = c.run(&format!(
            "fo-agent check --config /usr/share/doc/fo/examples/{name}"
        ))?;
        ensure!(said.trim().ends_with(": OK"), "check {name}: {said}");
        checked.push(name);
    }
    writeln!(report, "fo-agent check OK: {}", checked.join(", "))?;
    writeln!(
        report,
        "  files the examples name: {}",
        provided.into_values().collect::<Vec<_>>().join(", ")
    )?;
    writeln!(
        report,
        "  named, not read by check: {}",
        not_read.into_iter().collect::<Vec<_>>().join(", ")
    )?;

    for (args, page) in [
        ("fo-agent", "man8/fo-agent.8.gz"),
        ("5 fo.toml", "man5/fo.toml.5.gz"),
    ] {
        let said = c.run(&format!("man -w {args}"))?;
        ensure!(
            said.trim() == format!("/usr/share/man/{page}"),
            "man -w {args}: {said:?}"
        );
    }
    writeln!(report, "man -w fo-agent, man -w 5 fo.toml: found")?;

    for f in [
        "/usr/share/bash-completion/completions/fo-agent",
        "/usr/share/zsh/vendor-completions/_fo-agent",
        "/usr/share/fish/vendor_completions.d/fo-agent.fish",
    ] {
        let len = std::fs::metadata(c.path(f)).map(|m| m.len()).unwrap_or(0);
        ensure!(len > 0, "completion {f} missing or empty");
    }
    let said = c.run(
        "bash -c '. /usr/share/bash-completion/completions/fo-agent && complete -p fo-agent'",
    )?;
    ensure!(
        said.contains("fo-agent"),
        "bash completion did not register: {said}"
    );
    writeln!(report, "completions: bash (loads), zsh, fish in place")?;

    let (ok, said) = c.try_run(&format!("systemd-analyze verify {UNIT}"))?;
    ensure!(
        ok && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}:\n{said}"
    );
    let (_, enabled) = c.try_run("systemctl is-enabled fo-agent.service")?;
    ensure!(
        enabled.trim() == "disabled",
        "after install the unit is {enabled:?}, not disabled"
    );
    writeln!(
        report,
        "unit: systemd-analyze verify clean; installed {}",
        enabled.trim()
    )?;

    // Remove keeps the conffile; purge removes it and the state directory.
    c.run("mkdir -p /var/lib/fo && echo '{}' > /var/lib/fo/state.json")?;
    c.run("dpkg -r fo")?;
    ensure!(c.path(CONF).exists(), "dpkg -r removed {CONF}");
    ensure!(
        !c.path("/usr/sbin/fo-agent").exists(),
        "dpkg -r left the binary"
    );
    let status = c.run("dpkg-query -W -f='${Status}' fo")?;
    ensure!(
        status == "deinstall ok config-files",
        "after remove: {status:?}"
    );
    c.run("dpkg -P fo")?;
    ensure!(!c.path(CONF).exists(), "dpkg -P left {CONF}");
    ensure!(!c.path("/var/lib/fo").exists(), "dpkg -P left /var/lib/fo");
    writeln!(
        report,
        "remove: {CONF} kept ({status}); purge: {CONF} and /var/lib/fo gone"
    )?;
    // The unit is needed once more, for the security figures.
    c.run("dpkg -i /tmp/fo.deb >/dev/null")?;
    Ok(())
}

/// `systemd-analyze security --offline=true` on fo's installed unit beside Debian's
/// keepalived and haproxy units, in one run of this machine's systemd-analyze.
fn security(c: &Chroot, dir: &Path, report: &mut String) -> anyhow::Result<()> {
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

/// A booted copy of the root (systemd-nspawn), killed on drop.
struct Booted {
    nspawn: std::process::Child,
    leader: u32,
}

impl Booted {
    /// Boot `c`; its console goes to `log`. Fails (never hangs) when nspawn exits or
    /// the boot does not finish in [`BOOT_SECONDS`], with what nspawn and systemd said.
    fn boot(c: &Chroot, log: &Path) -> anyhow::Result<Booted> {
        let console = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        // Its own network namespace (no interface on this machine's); the agent's bpf(2)
        // calls let through nspawn's system call filter; all capabilities it may keep.
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(&c.dir)
            .args([
                "--boot",
                "--private-network",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "--capability=all",
                "--system-call-filter=bpf perf_event_open",
                "--quiet",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .context("spawning systemd-nspawn")?;
        let mut booted = Booted { nspawn, leader: 0 };
        let pid = booted.nspawn.id();
        let started = Instant::now();
        let said = || std::fs::read_to_string(log).unwrap_or_default();
        let mut state = String::new();
        loop {
            if booted.leader == 0 {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                booted.leader = children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if booted.leader != 0 {
                let (_, s) = booted.try_sh_quiet(10, "systemctl is-system-running")?;
                state = s.trim().to_owned();
                if matches!(state.as_str(), "running" | "degraded") {
                    return Ok(booted);
                }
            }
            if let Some(st) = booted.nspawn.try_wait()? {
                bail!(
                    "systemd-nspawn exited ({st}) before the container booted (docs/lab.md: the \
                     package test's preconditions); it said:\n{}",
                    said()
                );
            }
            if started.elapsed() > std::time::Duration::from_secs(BOOT_SECONDS) {
                let jobs = if booted.leader != 0 {
                    booted
                        .try_sh_quiet(
                            10,
                            "systemctl list-jobs --no-pager; systemctl --failed --no-pager",
                        )?
                        .1
                } else {
                    "(no container process)".to_owned()
                };
                bail!(
                    "the container did not finish booting in {BOOT_SECONDS} s (state {state:?}):\n\
                     {jobs}\nsystemd-nspawn said:\n{}",
                    said()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `script` in the container (all its namespaces, or its mount namespace only),
    /// bounded by `seconds`.
    fn command(&self, seconds: u64, mount_only: bool, script: &str) -> Command {
        let mut c = bounded(seconds, "nsenter");
        c.arg("-t").arg(self.leader.to_string());
        c.arg(if mount_only { "-m" } else { "-a" });
        c.args(["sh", "-c", script])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    fn try_sh_quiet(&self, seconds: u64, script: &str) -> anyhow::Result<(bool, String)> {
        let what = format!("[booted] {script}");
        try_output(&mut self.command(seconds, false, script), &what, seconds)
    }

    /// Run `script` inside (all namespaces); (success, output).
    fn try_sh(&self, script: &str) -> anyhow::Result<(bool, String)> {
        eprintln!("+ [booted] {script}");
        self.try_sh_quiet(BOOTED_COMMAND_SECONDS, script)
    }

    fn sh(&self, script: &str) -> anyhow::Result<String> {
        eprintln!("+ [booted] {script}");
        output(&mut self.command(BOOTED_COMMAND_SECONDS, false, script))
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The config the booted root runs: a static router and a VRRP router (alone, so
/// master) on a veth of its own; the VRRP router's notify hook takes 11 s on STOP.
const BOOTED_CONFIG: &str = r#"[node]
interface = "fo0"
xdp_mode = "generic"
control_group = "fo"

[[router]]
name = "web"
ownership = "static"
vips = ["192.0.2.100"]

[[router]]
name = "vr"
vrid = 9
advert_interval = "100ms"
vips = ["192.0.2.101"]
hooks = { notify = "/etc/fo/hooks/slow-stop.sh", timeout = "20s" }

[[check]]
name = "alive"
kind = "exec"
command = ["/bin/true"]
"#;

/// The booted root's notify hook: on STOP it outlasts the unit's TimeoutStopSec (10 s)
/// but not its hooks.timeout (20 s), then says it finished.
const SLOW_STOP_HOOK: &str =
    "#!/bin/sh\n[ \"$3\" = STOP ] || exit 0\nsleep 11\necho finished > /var/lib/fo/stop-hook\n";

/// The id of the XDP program attached to fo0 in the booted root, if any.
fn xdp_prog(b: &Booted) -> anyhow::Result<Option<u32>> {
    let said = b.sh("ip -d link show fo0")?;
    Ok(said
        .split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|id| id.parse().ok()))
}

fn under_systemd(c: &Chroot, dir: &Path, report: &mut String) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(c.path(CONF), BOOTED_CONFIG)?;
    let hook = c.path("/etc/fo/hooks/slow-stop.sh");
    std::fs::create_dir_all(hook.parent().expect("hooks dir"))?;
    std::fs::write(&hook, SLOW_STOP_HOOK)?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    c.run("useradd --groups fo alice && systemctl enable fo-agent.service")?;
    // The booted root gets a tmpfs on /tmp: keep the package where it can be seen.
    std::fs::copy(c.path("/tmp/fo.deb"), c.path("/var/tmp/fo.deb"))?;
    let b = Booted::boot(c, &dir.join("nspawn.log"))?;
    // nspawn gives a container a /sys without /sys/fs/bpf (a host has it, and systemd
    // mounts bpffs there at boot): make the mount point; the unit mounts bpffs on it.
    output(&mut b.command(
        BOOTED_COMMAND_SECONDS,
        true,
        "mount -o remount,rw /sys && mkdir -p /sys/fs/bpf && mount -o remount,ro /sys",
    ))?;
    b.sh(
        "ip link add fo0 type veth peer name fo1 && ip link set fo0 up && ip link set fo1 up \
         && ip addr add 192.0.2.11/24 dev fo0",
    )?;
    let (started, said) =
        b.try_sh("systemctl reset-failed fo-agent; systemctl restart fo-agent")?;
    let (_, state) = b.try_sh("systemctl is-active fo-agent")?;
    if !started || state.trim() != "active" {
        let (_, log) = b.try_sh("journalctl -u fo-agent --no-pager -n 40")?;
        bail!(
            "under systemd the unit did not start ({}): {said}\n{log}",
            state.trim()
        );
    }
    let (ok, said) = b.try_sh("systemctl reload fo-agent")?;
    ensure!(ok, "systemctl reload of a good config failed: {said}");
    b.sh("cp /etc/fo/fo.toml /etc/fo/good && \
         sed -i 's/^control_group/max_services = 0\\ncontrol_group/' /etc/fo/fo.toml")?;
    let (ok, said) = b.try_sh("systemctl reload fo-agent")?;
    ensure!(
        !ok,
        "systemctl reload of a refused config succeeded: {said}"
    );
    let log = b.sh("journalctl -u fo-agent --no-pager -n 20")?;
    ensure!(
        log.contains("reload refused"),
        "no refusal in the journal:\n{log}"
    );
    b.sh("mv /etc/fo/good /etc/fo/fo.toml")?;
    let (ok, said) = b.try_sh("su alice -s /bin/sh -c 'fo-agent status'")?;
    ensure!(
        ok && said.contains("web"),
        "fo-agent status as a member of fo: {said}"
    );
    let restarts = b.sh("systemctl show fo-agent -p NRestarts --value")?;
    ensure!(
        restarts.trim() == "0",
        "the agent restarted {} times",
        restarts.trim()
    );
    // An upgrade (the package installed again over itself) leaves the running agent
    // alone (the operator restarts it, backup first) and its pinned data plane too.
    let pid = b.sh("systemctl show fo-agent -p MainPID --value")?;
    let prog = xdp_prog(&b)?;
    ensure!(
        prog.is_some(),
        "no XDP program on fo0 under the running agent"
    );
    b.sh("DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /var/tmp/fo.deb")?;
    let after = b.sh("systemctl show fo-agent -p MainPID --value")?;
    let (_, state) = b.try_sh("systemctl is-active fo-agent")?;
    ensure!(
        pid.trim() == after.trim() && state.trim() == "active",
        "the upgrade touched the running agent: MainPID {} -> {}, {}",
        pid.trim(),
        after.trim(),
        state.trim()
    );
    ensure!(
        xdp_prog(&b)? == prog,
        "the upgrade changed the XDP program on fo0: {prog:?} -> {:?}",
        xdp_prog(&b)?
    );
    writeln!(
        report,
        "under systemd (nspawn): active; systemctl reload OK; refused config: reload failed; \
         fo-agent status as a member of fo: OK; restarts 0; upgrade in place: same MainPID, \
         same XDP program"
    )?;

    // A stop lets the last hooks run for their hooks.timeout, past TimeoutStopSec: the
    // agent extends it. Without that systemd kills the hook (and the agent) at 10 s.
    let t = Instant::now();
    let (stopped, said) = b.try_sh("systemctl stop fo-agent")?;
    let took = t.elapsed().as_secs_f64();
    let result = b.sh("systemctl show fo-agent -p Result --value")?;
    let (_, hook) = b.try_sh("cat /var/lib/fo/stop-hook")?;
    if !stopped || result.trim() != "success" || hook.trim() != "finished" {
        let (_, log) = b.try_sh("journalctl -u fo-agent --no-pager -n 30")?;
        bail!(
            "systemctl stop with an 11 s STOP hook: stop ok {stopped} ({said}), result {}, \
             hook {:?} (not finished: killed before its hooks.timeout)\n{log}",
            result.trim(),
            hook.trim()
        );
    }
    ensure!(
        xdp_prog(&b)? == prog,
        "the stop took the XDP program off fo0: {prog:?} -> {:?}",
        xdp_prog(&b)?
    );
    writeln!(
        report,
        "stop with an 11 s STOP hook (TimeoutStopSec=10s): the hook finished, result \
         success, {took:.1} s; the XDP program stays attached"
    )?;

    // Removing the package removes the pinned data plane (an upgrade did not, above).
    b.sh("DEBIAN_FRONTEND=noninteractive dpkg -r fo")?;
    let (_, pins) = b.try_sh("ls -A /sys/fs/bpf/fo 2>&1")?;
    ensure!(
        xdp_prog(&b)?.is_none() && pins.contains("No such file"),
        "after dpkg -r: XDP program {:?} on fo0, /sys/fs/bpf/fo: {}",
        xdp_prog(&b)?,
        pins.trim()
    );
    writeln!(
        report,
        "dpkg -r: the pins are gone and fo0 has no XDP program"
    )?;
    Ok(())
}
