//! Network namespaces and bpffs pin directories, registered for teardown the moment they
//! are made. [`teardown`] removes everything registered: from [`Teardown`]'s drop (a
//! normal end, an error, a panic) and from the Ctrl-C/SIGTERM handler, whichever comes
//! first; the second call finds nothing left.
//!
//! Processes are started with `nsenter --net=…`, which enters only the network
//! namespace: `ip netns exec` remounts /sys and would hide the bpffs at /sys/fs/bpf that
//! the agents pin their data plane on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, Once};

use anyhow::{Context as _, bail};

enum Resource {
    Netns(String),
    PinDir(PathBuf),
    /// A host sysctl the lab changed: its old value, written back at teardown.
    Sysctl {
        key: String,
        old: String,
    },
}

static RESOURCES: Mutex<Vec<Resource>> = Mutex::new(Vec::new());

fn resources() -> MutexGuard<'static, Vec<Resource>> {
    RESOURCES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run `sh -c CMD` on the host; fail with its output.
pub fn sh(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .context("spawn sh")?;
    checked(cmd, &out)
}

fn checked(what: &str, out: &std::process::Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "command failed ({}): {what}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace (removed by [`teardown`], not on drop: handles are cheap to pass
/// around, and removal must also happen from the signal handler).
#[derive(Debug, Clone)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create `name` and register it for teardown.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        sh(&format!("ip netns add {name}"))?;
        resources().push(Resource::Netns(name.to_owned()));
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.sh("ip link set lo up")?;
        Ok(ns)
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A `Command` running `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// `sh -c CMD` inside the namespace; fails with its output.
    pub fn sh(&self, cmd: &str) -> anyhow::Result<String> {
        let out = self
            .command("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .context("spawn nsenter")?;
        checked(&format!("[{}] {cmd}", self.name), &out)
    }

    /// The MAC of `ifname` (not from /sys: under nsenter --net it shows the host's).
    pub fn mac(&self, ifname: &str) -> anyhow::Result<String> {
        let s = self.sh(&format!("ip -br link show {ifname}"))?;
        s.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .with_context(|| format!("no MAC in `ip -br link show {ifname}`: {s}"))
    }
}

/// Register a bpffs directory (an agent's `bpf_dir`) for removal: removing the pins
/// detaches and unloads the data plane a killed agent left behind.
pub fn register_pin_dir(dir: &Path) {
    resources().push(Resource::PinDir(dir.to_owned()));
}

/// Register a host sysctl's old value, written back at teardown (also on Ctrl-C, which
/// skips destructors).
pub fn register_sysctl_restore(key: &str, old: &str) {
    resources().push(Resource::Sysctl {
        key: key.to_owned(),
        old: old.to_owned(),
    });
}

/// Remove everything registered: first kill every process in every namespace, then
/// remove the pin directories, then delete the namespaces. Errors are reported, not
/// returned: teardown goes on with the rest.
pub fn teardown() {
    let mut list = resources();
    if list.is_empty() {
        return;
    }
    let namespaces: Vec<&str> = list
        .iter()
        .filter_map(|r| match r {
            Resource::Netns(n) => Some(n.as_str()),
            Resource::PinDir(_) | Resource::Sysctl { .. } => None,
        })
        .collect();
    for n in &namespaces {
        kill_all_in(n);
    }
    for r in list.iter() {
        if let Resource::PinDir(d) = r {
            remove_pin_dir(d);
        }
    }
    for n in &namespaces {
        if let Err(e) = sh(&format!("ip netns del {n}")) {
            eprintln!("lab teardown: {e:#}");
        }
    }
    for r in list.iter() {
        if let Resource::Sysctl { key, old } = r
            && let Err(e) = sh(&format!("sysctl -q -w {key}={old}"))
        {
            eprintln!("lab teardown: {e:#}");
        }
    }
    list.clear();
}

fn kill_all_in(ns: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for p in $(ip netns pids {ns} 2>/dev/null); do kill -9 $p 2>/dev/null; done"
        ))
        .status();
}

fn remove_pin_dir(d: &Path) {
    if d.exists()
        && let Err(e) = std::fs::remove_dir_all(d)
    {
        eprintln!("lab teardown: removing {}: {e}", d.display());
    }
}

/// Tears the lab down when dropped.
#[must_use = "the lab is torn down when this guard is dropped"]
pub struct Teardown(());

impl Teardown {
    /// Install the Ctrl-C/SIGTERM handler (once per process) and return the guard.
    pub fn arm() -> anyhow::Result<Teardown> {
        static HANDLER: Once = Once::new();
        let mut result = Ok(());
        HANDLER.call_once(|| {
            result = ctrlc::set_handler(|| {
                eprintln!("\ninterrupted: tearing the lab down");
                teardown();
                std::process::exit(130);
            });
        });
        result.context("install the Ctrl-C handler")?;
        Ok(Teardown(()))
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        teardown();
    }
}

/// Remove what an earlier run of `prefix` left behind when it was killed outright
/// (SIGKILL leaves no chance to clean up): namespaces named `<prefix>-<pid>-…` and pin
/// directories `/sys/fs/bpf/<prefix>-<pid>-…` whose pid no longer runs.
pub fn remove_stale(prefix: &str) {
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            return false;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            return false;
        };
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    };
    let list = sh("ip netns list").unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if dead(name) {
            eprintln!("lab: removing namespace {name} left by an earlier run");
            kill_all_in(name);
            let _ = sh(&format!("ip netns del {name}"));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                eprintln!("lab: removing pin directory /sys/fs/bpf/{name} left by an earlier run");
                remove_pin_dir(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_says_what_ran_and_what_it_printed() {
        assert_eq!(sh("echo hello").expect("runs"), "hello\n");
        let err = sh("echo out; echo err >&2; exit 3")
            .unwrap_err()
            .to_string();
        for part in [
            "echo out; echo err >&2; exit 3",
            "exit status: 3",
            "out\n",
            "err\n",
        ] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
    }
}
