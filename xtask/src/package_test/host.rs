//! What the package test needs from the machine it runs on, checked up front so that a
//! missing piece is a clear error instead of a hang or a puzzle halfway through:
//!
//! - one run at a time per target directory ([`RunLock`]): leftovers of an interrupted
//!   run are removed at the next start, and only with the lock held, so a concurrent
//!   run's root (booted, maybe) is never taken for a leftover;
//! - a Debian 12 mirror for debootstrap ([`mirror`]): `FO_PKGTEST_MIRROR`, else the
//!   first `deb` source of this machine's apt that names `bookworm`;
//! - apt's proxy ([`proxy`]): `http_proxy` from the environment, else apt's own
//!   `Acquire::http::Proxy`, handed to debootstrap and to apt inside the root;
//! - for the booted root ([`check_boot`]): `systemd-nspawn` (systemd-container) and a
//!   cgroup hierarchy it can create a cgroup in (cgroup v2 at /sys/fs/cgroup, or a
//!   hybrid host's name=systemd hierarchy), as root.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::SUITE;

/// Held for the whole run: the lock file's exclusive lock (released when the process
/// ends, however it ends).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Take `dir/lock`, or fail naming the run that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<RunLock> {
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if let Err(e) = file.try_lock() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another package test runs in {} (pid {}): {e}; wait for it, or stop it",
                dir.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(RunLock { _file: file })
    }
}

/// The Debian mirror for debootstrap: `FO_PKGTEST_MIRROR`, or this machine's apt's.
pub fn mirror() -> anyhow::Result<String> {
    if let Ok(m) = std::env::var("FO_PKGTEST_MIRROR")
        && !m.trim().is_empty()
    {
        return Ok(m.trim().to_owned());
    }
    apt_mirror().with_context(|| {
        format!(
            "the package test makes a Debian {SUITE} root with debootstrap and needs a mirror: \
             set FO_PKGTEST_MIRROR=URL (e.g. http://deb.debian.org/debian)"
        )
    })
}

/// The Debian mirror this machine's apt uses for `SUITE` (deb822 .sources files and the
/// one-line format).
fn apt_mirror() -> anyhow::Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if f.extension().is_some_and(|e| e == "sources") {
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza.lines().find_map(|l| {
                        l.strip_prefix(name)
                            .and_then(|r| r.strip_prefix(':'))
                            .map(|v| v.trim().to_owned())
                    })
                };
                let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
                    continue;
                };
                let types = field("Types").unwrap_or_default();
                if types.split_whitespace().any(|t| t == "deb")
                    && suites.split_whitespace().any(|s| s == SUITE)
                    && let Some(uri) = uris.split_whitespace().next()
                {
                    return Ok(uri.to_owned());
                }
            }
        } else {
            for l in text.lines() {
                // deb [options] URI SUITE COMPONENTS…
                let mut words: Vec<&str> = l.split_whitespace().collect();
                if words.first() != Some(&"deb") {
                    continue;
                }
                words.remove(0);
                if words.first().is_some_and(|w| w.starts_with('[')) {
                    let end = words.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                    words.drain(..=end);
                }
                if words.get(1) == Some(&SUITE) {
                    return Ok(words[0].to_owned());
                }
            }
        }
    }
    bail!("no Debian {SUITE} mirror in /etc/apt/sources.list or /etc/apt/sources.list.d")
}

/// The proxy for plain HTTP: `http_proxy` if set, else apt's `Acquire::http::Proxy`.
pub fn proxy() -> Option<String> {
    if let Ok(p) = std::env::var("http_proxy")
        && !p.trim().is_empty()
    {
        return Some(p.trim().to_owned());
    }
    let out = Command::new("apt-config")
        .args(["shell", "P", "Acquire::http::Proxy"])
        .output()
        .ok()?;
    // P='http://proxy:3128/'
    let text = String::from_utf8_lossy(&out.stdout);
    let value = text.trim().strip_prefix("P=")?.trim_matches('\'');
    (!value.is_empty() && value != "DIRECT").then(|| value.to_owned())
}

/// Can this machine boot the root with systemd-nspawn? An error says what is missing.
pub fn check_boot() -> anyhow::Result<()> {
    let nspawn = Command::new("systemd-nspawn").arg("--version").output();
    if !nspawn.is_ok_and(|o| o.status.success()) {
        bail!(
            "the booted-root test needs systemd-nspawn (Debian's systemd-container; \
             cargo xtask setup installs it)"
        );
    }
    let probe = cgroup_probe_dir()?;
    std::fs::create_dir(&probe).with_context(|| {
        format!(
            "the booted-root test needs a cgroup hierarchy systemd-nspawn can create a \
             cgroup in (cgroup v2 on /sys/fs/cgroup, or a hybrid host's name=systemd \
             hierarchy, writable by root): mkdir {} failed",
            probe.display()
        )
    })?;
    std::fs::remove_dir(&probe).with_context(|| format!("removing {}", probe.display()))?;
    Ok(())
}

/// A cgroup directory beside this process's own, where nspawn will make the
/// container's: in the unified hierarchy, or in name=systemd on a hybrid host.
fn cgroup_probe_dir() -> anyhow::Result<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").context("/proc/self/cgroup")?;
    let path_in = |controller: &str| {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            (c == controller).then(|| p.trim_start_matches('/').to_owned())
        })
    };
    let name = format!("fo-pkgtest-probe-{}", std::process::id());
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists()
        && let Some(p) = path_in("")
    {
        return Ok(root.join(p).join(name));
    }
    if root.join("systemd/cgroup.procs").exists()
        && let Some(p) = path_in("name=systemd")
    {
        return Ok(root.join("systemd").join(p).join(name));
    }
    bail!(
        "the booted-root test needs cgroup v2 on /sys/fs/cgroup or systemd's name=systemd \
         hierarchy on /sys/fs/cgroup/systemd; this machine has neither"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_lock() {
        let dir = std::env::temp_dir().join(format!("fo-pkgtest-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let first = RunLock::acquire(&dir).expect("the first run takes the lock");
        let e = RunLock::acquire(&dir)
            .err()
            .expect("a second run must be refused");
        assert!(
            format!("{e:#}").contains(&format!("pid {}", std::process::id())),
            "the error names the holder: {e:#}"
        );
        drop(first);
        RunLock::acquire(&dir).expect("free again once the first run ends");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
