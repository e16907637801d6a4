//! Network namespaces for tests: unique names, removed on drop (also when the test
//! panics), with the processes still running inside them killed first.
//!
//! Processes are started with `nsenter --net=…`, which enters only the network
//! namespace: `ip netns exec` remounts /sys and would hide the bpffs at
//! /sys/fs/bpf that the agent pins its data plane on.

use std::io::Read as _;
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A short tag unique to this process and call, for names that must not collide
/// between concurrent tests or runs (interface names have 15 bytes at most).
pub fn unique_tag() -> String {
    format!(
        "{:x}{}",
        std::process::id() % 0xffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command on the host, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    check(cmd, out)
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {what}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        crate::require_root();
        let name = format!("fo-{}-{role}", unique_tag());
        sh(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A shell command inside the namespace; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self
            .command("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("spawn nsenter");
        check(&format!("[{}] {cmd}", self.name), out)
    }

    /// As `sh`, but returns the output whatever the exit status.
    pub fn try_sh(&self, cmd: &str) -> Output {
        self.command("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("spawn nsenter")
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        c
    }

    /// Run `f` on a thread that has entered the namespace. Sockets made there stay
    /// in the namespace and can be used from any thread afterwards.
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

    /// The MAC of `ifname` in this namespace.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        // Not /sys/class/net: under nsenter --net, /sys still shows the host's devices.
        let s = self.sh(&format!("ip -br link show {ifname} | awk '{{print $3}}'"));
        parse_mac(s.trim())
    }

    /// The MAC this namespace's neighbour table has for `addr`, if any.
    pub fn neighbour(&self, addr: IpAddr) -> Option<[u8; 6]> {
        let s = self.sh(&format!("ip neigh show {addr}"));
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            if w == "lladdr" {
                return words.next().map(parse_mac);
            }
        }
        None
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex MAC"))
        .collect();
    v.try_into()
        .unwrap_or_else(|v: Vec<u8>| panic!("not a MAC: {s} ({v:?})"))
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for p in $(ip netns pids {n} 2>/dev/null); do kill -9 $p 2>/dev/null; done; ip netns del {n} 2>/dev/null",
                n = self.name
            ))
            .status();
    }
}

/// One L2 segment: a bridge in its own namespace, with a veth to each host.
pub struct Segment {
    pub switch: Netns,
    ports: AtomicU32,
}

impl Segment {
    pub fn new() -> Segment {
        let switch = Netns::new("sw");
        // A plain L2 switch: bridged frames skip the switch namespace's netfilter hooks
        // (br_netfilter's per-namespace default is to run them), as on hardware.
        switch.sh(
            "ip link add br0 type bridge && ip link set br0 up && \
             for f in /proc/sys/net/bridge/bridge-nf-call-*; do if [ -e \"$f\" ]; then echo 0 > \"$f\"; fi; done",
        );
        Segment {
            switch,
            ports: AtomicU32::new(0),
        }
    }

    /// Plug `ns` into the segment as `ifname` with `cidr` (e.g. "192.0.2.10/24").
    /// Returns the name of the switch-side port.
    pub fn plug(&self, ns: &Netns, ifname: &str, cidr: &str) -> String {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        self.switch.sh(&format!(
            "ip link add {port} type veth peer name {ifname} netns {ns} && ip link set {port} master br0 up",
            ns = ns.name
        ));
        ns.sh(&format!(
            "ip link set {ifname} up && ip addr add {cidr} dev {ifname}"
        ));
        port
    }
}

impl Default for Segment {
    fn default() -> Self {
        Self::new()
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct ChildGuard {
    pub child: Option<Child>,
    pub what: String,
}

impl ChildGuard {
    pub fn spawn(what: &str, mut cmd: Command) -> ChildGuard {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        ChildGuard {
            child: Some(child),
            what: what.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Send a signal (e.g. libc::SIGKILL) without reaping.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Kill, reap, and return everything it wrote to stdout and stderr.
    pub fn kill_and_collect(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = child.kill();
        let _ = child.wait();
        let mut s = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Has the process exited? Returns its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
