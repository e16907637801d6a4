//! The Debian 12 root the package is installed into: the pristine one made once by
//! debootstrap and cached as a tar, the copy each run unpacks ([`Chroot`]), commands run
//! inside it in a mount namespace of their own, and its removal (never through a mount).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::command::{bounded, output, try_output};
use super::{SUITE, host};
use crate::util::exec;

/// Bumped when the way the root is made changes.
const ROOT_RECIPE: u32 = 1;
/// In the pristine root: man-db for `man -w`, iproute2 for the booted root's veth, and
/// the .debs of the package's dependencies (systemd), downloaded but not installed, so
/// that `apt-get -f install` resolves them for real without the network.
const ROOT_INCLUDE: &[&str] = &["man-db", "iproute2"];
const ROOT_DOWNLOAD: &[&str] = &["systemd"];
/// Longest a debootstrap may take (it takes about 100 s here).
const DEBOOTSTRAP_SECONDS: u64 = 1200;
/// Longest a command in the (unbooted) root may take (dpkg, apt-get from the cache).
const ROOT_COMMAND_SECONDS: u64 = 600;

/// The cached pristine root (a tar of it): made once per recipe.
pub(super) fn pristine_root(dir: &Path) -> anyhow::Result<PathBuf> {
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
pub(super) struct Chroot {
    pub(super) dir: PathBuf,
    /// Remove the directory on drop.
    remove: bool,
}

impl Chroot {
    /// A fresh copy of the pristine root at `dir` (after removing the leftovers of
    /// interrupted runs beside it: the caller holds the run lock, so no other run's).
    pub(super) fn unpack(tar: &Path, dir: &Path) -> anyhow::Result<Chroot> {
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
    pub(super) fn run(&self, script: &str) -> anyhow::Result<String> {
        eprintln!("+ [root] {script}");
        output(&mut self.command(script))
    }

    /// Run `script` inside; (success, output).
    pub(super) fn try_run(&self, script: &str) -> anyhow::Result<(bool, String)> {
        eprintln!("+ [root] {script}");
        let what = format!("[root] {script}");
        try_output(&mut self.command(script), &what, ROOT_COMMAND_SECONDS)
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
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
