//! Network namespaces for tests: unique names, removed on drop (also when the test
//! panics), with the processes still running inside them killed first. The namespaces,
//! segments and waiting are the lab kit's (`fo_lab::kit`), which xtask's labs use too;
//! this module gives them the tests' shape: a failing command panics with its output.

use std::io::Read as _;
use std::net::IpAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub use fo_lab::kit::netns::unique_tag;
pub use fo_lab::kit::wait::wait_for;
use fo_lab::kit::{netns as kit, segment};

/// Run a command on the host, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    kit::sh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
}

pub struct Netns {
    pub name: String,
    ns: kit::Owned,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        crate::require_root();
        let ns = kit::Owned::create(&format!("fo-{}-{role}", unique_tag()))
            .unwrap_or_else(|e| panic!("{e:#}"));
        Netns {
            name: ns.name.clone(),
            ns,
        }
    }

    pub fn path(&self) -> String {
        self.ns.path()
    }

    /// A shell command inside the namespace; panics with its output on failure.
    pub fn sh(&self, cmd: &str) -> String {
        self.ns.sh(cmd).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// As `sh`, but returns the output whatever the exit status.
    pub fn try_sh(&self, cmd: &str) -> Output {
        self.ns.output(cmd).expect("spawn nsenter")
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        self.ns.command(program)
    }

    /// Run `f` on a thread that has entered the namespace. Sockets made there stay
    /// in the namespace and can be used from any thread afterwards.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.ns.run(f)
    }

    /// The MAC of `ifname` in this namespace.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        parse_mac(&self.ns.mac(ifname).unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// The MAC this namespace's neighbour table has for `addr`, if any.
    pub fn neighbour(&self, addr: IpAddr) -> Option<[u8; 6]> {
        self.ns
            .neighbour(addr)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .map(|m| parse_mac(&m))
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    kit::parse_mac(s).unwrap_or_else(|| panic!("not a MAC: {s}"))
}

/// One L2 segment: a bridge in its own namespace, with a veth to each host.
pub struct Segment {
    pub switch: Netns,
    ports: AtomicU32,
}

impl Segment {
    pub fn new() -> Segment {
        let switch = Netns::new("sw");
        segment::bridge_up(&switch.ns).unwrap_or_else(|e| panic!("{e:#}"));
        Segment {
            switch,
            ports: AtomicU32::new(0),
        }
    }

    /// Plug `ns` into the segment as `ifname` with `cidr` (e.g. "192.0.2.10/24").
    /// Returns the name of the switch-side port.
    pub fn plug(&self, ns: &Netns, ifname: &str, cidr: &str) -> String {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        segment::plug(&self.switch.ns, &port, &ns.ns, ifname, cidr)
            .unwrap_or_else(|e| panic!("{e:#}"));
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
