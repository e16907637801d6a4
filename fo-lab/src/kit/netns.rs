//! Network namespaces and bpffs pin directories, registered for teardown the moment they
//! are made. [`teardown`] removes everything registered: from [`Teardown`]'s drop (a
//! normal end, an error, a panic) and from the Ctrl-C/SIGTERM handler, whichever comes
//! first; the second call finds nothing left.
//!
//! [`Netns`] is a cheap handle (xtask's labs pass it around; [`teardown`] removes it);
//! [`Owned`] is a namespace its creator owns, removed on drop (a test's, also when the
//! test panics). Names that must not collide between concurrent tests or runs carry
//! [`unique_tag`].
//!
//! Processes are started with `nsenter --net=…`, which enters only the network
//! namespace: `ip netns exec` remounts /sys and would hide the bpffs at /sys/fs/bpf that
//! the agents pin their data plane on.

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use crate::locks::lock;

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
    lock(&RESOURCES)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short tag unique to this process and call, for names that must not collide between
/// concurrent tests or runs (interface names have 15 bytes at most).
pub fn unique_tag() -> String {
    format!(
        "{:x}{}",
        std::process::id() % 0xffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
        let out = self.output(cmd).context("spawn nsenter")?;
        checked(&format!("[{}] {cmd}", self.name), &out)
    }

    /// `sh -c CMD` inside the namespace, whatever its exit status.
    pub fn output(&self, cmd: &str) -> std::io::Result<Output> {
        self.command("sh").arg("-c").arg(cmd).output()
    }

    /// Run `f` on a thread that has entered the namespace. Sockets made there stay in the
    /// namespace and can be used from any thread afterwards. A panic in `f` is resumed
    /// on the caller's thread.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns(2) on a namespace fd we own, for this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// The MAC this namespace's neighbour table has for `addr`, if any.
    pub fn neighbour(&self, addr: IpAddr) -> anyhow::Result<Option<String>> {
        let s = self.sh(&format!("ip neigh show {addr}"))?;
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return Ok(words.next().map(str::to_owned));
            }
        }
        Ok(None)
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

/// A namespace owned by its creator: on drop, the processes still running in it are
/// killed and it is deleted (also when a test panics). It is registered for [`teardown`]
/// meanwhile, like every namespace. Derefs to its [`Netns`].
#[derive(Debug)]
pub struct Owned(Netns);

impl Owned {
    /// Create `name` (see [`Netns::create`]).
    pub fn create(name: &str) -> anyhow::Result<Owned> {
        Netns::create(name).map(Owned)
    }
}

impl std::ops::Deref for Owned {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.0
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let name = &self.0.name;
        kill_all_in(name);
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        resources().retain(|r| !matches!(r, Resource::Netns(n) if n == name));
    }
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
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
    fn tags_are_unique_and_short() {
        let (a, b) = (unique_tag(), unique_tag());
        assert_ne!(a, b);
        // "fo-" + tag + "-role" must leave room in a 15-byte interface name.
        assert!(a.len() <= 8, "{a}");
    }

    #[test]
    fn macs_parse_or_are_refused() {
        assert_eq!(
            parse_mac("02:00:c0:00:02:0a"),
            Some([2, 0, 0xc0, 0, 2, 0x0a])
        );
        assert_eq!(parse_mac("02:00:c0:00:02"), None);
        assert_eq!(parse_mac("zz:00:c0:00:02:0a"), None);
    }

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
