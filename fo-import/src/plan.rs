//! The fo config being built, and its TOML text.
//!
//! A plain description of what the translators decided, written out by hand so that
//! the output reads like a config an operator wrote: the keys fo documents, inline
//! tables for hooks and checks, and a comment naming the input line each table
//! came from. Strings are quoted by the `toml` crate.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use fo_config::format_duration;

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub node: Node,
    pub routers: Vec<Router>,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Default)]
pub struct Node {
    pub interface: String,
    pub garp_count: Option<u32>,
    pub garp_interval: Option<Duration>,
    pub garp_refresh: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    /// `FILE:LINE` of the input, for the comment above the table.
    pub from: String,
    pub name: String,
    pub vrid: u8,
    pub priority: u8,
    pub version: u8,
    pub advert_interval: Duration,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub vips: Vec<IpAddr>,
    pub peers: Vec<IpAddr>,
    pub auth_pass: Option<String>,
    pub track: Vec<(String, i16)>,
    pub hooks: Hooks,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    pub run_as: Option<RunAs>,
}

impl Hooks {
    fn is_empty(&self) -> bool {
        self.master.is_none()
            && self.backup.is_none()
            && self.fault.is_none()
            && self.stop.is_none()
            && self.notify.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub from: String,
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    Exec {
        command: Vec<String>,
        run_as: Option<RunAs>,
    },
    File {
        path: String,
        contains: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dsr,
    Nat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    SourceIp,
    FiveTuple,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub from: String,
    /// Written commented out, after this explanation (an fo service that needs
    /// something the input does not say, e.g. a NAT service's SNAT address).
    pub commented: Option<String>,
    pub name: Option<String>,
    pub vip: IpAddr,
    pub port: u16,
    pub udp: bool,
    pub mode: Mode,
    pub hash: Hash,
    pub check: Option<ServiceCheck>,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone)]
pub struct ServiceCheck {
    pub kind: ServiceCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone)]
pub enum ServiceCheckKind {
    Tcp,
    Http {
        path: String,
        /// Empty: fo's default (200).
        expect_status: Vec<u16>,
    },
    Https {
        path: String,
        /// Empty: fo's default (200).
        expect_status: Vec<u16>,
        tls: HttpsCheck,
    },
    Exec {
        command: Vec<String>,
        run_as: Option<RunAs>,
    },
}

/// The TLS keys of an https check.
#[derive(Debug, Clone, Default)]
pub struct HttpsCheck {
    pub sni: Option<String>,
    /// A CA file (absolute path); `None`: the system store.
    pub ca: Option<String>,
    /// Verify nothing about the server's certificate (keepalived's SSL_GET, HAProxy's
    /// `verify none`).
    pub insecure: bool,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    pub weight: u16,
    pub name: Option<String>,
}

/// Whether fo takes `name` as an https check's `sni` (a DNS name or an IP address):
/// asked of fo's own config validation.
pub fn sni_accepted(name: &str) -> bool {
    let config = format!(
        "[node]\ninterface = \"eth0\"\n[[router]]\nname = \"r\"\nvrid = 1\nvips = [\"192.0.2.1\"]\n\
         [[service]]\nvip = \"192.0.2.1\"\nport = 443\n\
         check = {{ kind = \"https\", sni = {}, insecure = true }}\n\
         backends = [{{ address = \"192.0.2.2\" }}]\n",
        q(name)
    );
    fo_config::Config::parse(&config).is_ok()
}

/// Text safe in a TOML comment (no control characters but tab).
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect()
}

/// A TOML string.
pub fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(", "))
}

fn argv(a: &[String]) -> String {
    match a {
        [one] => q(one),
        _ => list(a, |s| q(s)),
    }
}

fn d(v: Duration) -> String {
    q(&format_duration(v))
}

fn run_as_keys(r: &Option<RunAs>, out: &mut Vec<String>) {
    if let Some(r) = r {
        out.push(format!("user = {}", q(&r.user)));
        if let Some(g) = &r.group {
            out.push(format!("group = {}", q(g)));
        }
    }
}

impl Plan {
    /// The config as TOML, preceded by `header` (comment lines).
    pub fn to_toml(&self, header: &str) -> String {
        let mut s = String::new();
        for line in header.lines() {
            let _ = writeln!(s, "# {}", comment(line));
        }
        if !header.is_empty() {
            s.push('\n');
        }
        let n = &self.node;
        s.push_str("[node]\n");
        let _ = writeln!(s, "interface = {}", q(&n.interface));
        if let Some(c) = n.garp_count {
            let _ = writeln!(s, "garp_count = {c}");
        }
        if let Some(i) = n.garp_interval {
            let _ = writeln!(s, "garp_interval = {}", d(i));
        }
        if let Some(r) = n.garp_refresh {
            let _ = writeln!(s, "garp_refresh = {}", d(r));
        }
        for r in &self.routers {
            s.push('\n');
            let _ = writeln!(s, "# {}", comment(&r.from));
            s.push_str("[[router]]\n");
            let _ = writeln!(s, "name = {}", q(&r.name));
            let _ = writeln!(s, "vrid = {}", r.vrid);
            let _ = writeln!(s, "priority = {}", r.priority);
            let _ = writeln!(s, "version = {}", r.version);
            let _ = writeln!(s, "advert_interval = {}", d(r.advert_interval));
            let _ = writeln!(s, "preempt = {}", r.preempt);
            if !r.preempt_delay.is_zero() {
                let _ = writeln!(s, "preempt_delay = {}", d(r.preempt_delay));
            }
            let _ = writeln!(s, "vips = {}", list(&r.vips, |v| q(&v.to_string())));
            if !r.peers.is_empty() {
                let _ = writeln!(s, "peers = {}", list(&r.peers, |v| q(&v.to_string())));
            }
            if let Some(p) = &r.auth_pass {
                let _ = writeln!(s, "auth_pass = {}", q(p));
            }
            if !r.track.is_empty() {
                let _ = writeln!(
                    s,
                    "track = {}",
                    list(&r.track, |(c, w)| format!(
                        "{{ check = {}, weight = {w} }}",
                        q(c)
                    ))
                );
            }
            if !r.hooks.is_empty() {
                let h = &r.hooks;
                let mut keys = Vec::new();
                for (k, v) in [
                    ("master", &h.master),
                    ("backup", &h.backup),
                    ("fault", &h.fault),
                    ("stop", &h.stop),
                    ("notify", &h.notify),
                ] {
                    if let Some(v) = v {
                        keys.push(format!("{k} = {}", argv(v)));
                    }
                }
                run_as_keys(&h.run_as, &mut keys);
                let _ = writeln!(s, "hooks = {{ {} }}", keys.join(", "));
            }
        }
        for c in &self.checks {
            s.push('\n');
            let _ = writeln!(s, "# {}", comment(&c.from));
            s.push_str("[[check]]\n");
            let _ = writeln!(s, "name = {}", q(&c.name));
            match &c.kind {
                CheckKind::Exec { command, run_as } => {
                    s.push_str("kind = \"exec\"\n");
                    let _ = writeln!(s, "command = {}", list(command, |a| q(a)));
                    let mut keys = Vec::new();
                    run_as_keys(run_as, &mut keys);
                    for k in keys {
                        let _ = writeln!(s, "{k}");
                    }
                }
                CheckKind::File { path, contains } => {
                    s.push_str("kind = \"file\"\n");
                    let _ = writeln!(s, "path = {}", q(path));
                    if let Some(c) = contains {
                        let _ = writeln!(s, "contains = {}", q(c));
                    }
                }
            }
            let _ = writeln!(s, "interval = {}", d(c.interval));
            let _ = writeln!(s, "timeout = {}", d(c.timeout));
            let _ = writeln!(s, "rise = {}", c.rise);
            let _ = writeln!(s, "fall = {}", c.fall);
        }
        for v in &self.services {
            s.push('\n');
            let _ = writeln!(s, "# {}", comment(&v.from));
            let mut s_ = String::new();
            service(v, &mut s_);
            match &v.commented {
                None => s.push_str(&s_),
                Some(why) => {
                    for l in why.lines() {
                        let _ = writeln!(s, "# {}", comment(l));
                    }
                    for l in s_.lines() {
                        let _ = writeln!(s, "# {}", comment(l));
                    }
                }
            }
        }
        s
    }
}

fn service(v: &Service, s: &mut String) {
    s.push_str("[[service]]\n");
    if let Some(n) = &v.name {
        let _ = writeln!(s, "name = {}", q(n));
    }
    let _ = writeln!(s, "vip = {}", q(&v.vip.to_string()));
    let _ = writeln!(s, "port = {}", v.port);
    let _ = writeln!(s, "protocol = {}", q(if v.udp { "udp" } else { "tcp" }));
    let _ = writeln!(
        s,
        "mode = {}",
        q(match v.mode {
            Mode::Dsr => "dsr",
            Mode::Nat => "nat",
        })
    );
    let _ = writeln!(
        s,
        "hash = {}",
        q(match v.hash {
            Hash::SourceIp => "source-ip",
            Hash::FiveTuple => "5-tuple",
        })
    );
    if let Some(c) = &v.check {
        let _ = writeln!(s, "check = {}", service_check(c));
    }
    s.push_str("backends = [\n");
    for b in &v.backends {
        let mut keys = vec![
            format!("address = {}", q(&b.address.to_string())),
            format!("port = {}", b.port),
            format!("weight = {}", b.weight),
        ];
        if let Some(n) = &b.name {
            keys.push(format!("name = {}", q(n)));
        }
        let _ = writeln!(s, "  {{ {} }},", keys.join(", "));
    }
    s.push_str("]\n");
}

/// `expect_status`: left out for fo's default, one code, or a list.
fn statuses(codes: &[u16], keys: &mut Vec<String>) {
    match codes {
        [] => {}
        [one] => keys.push(format!("expect_status = {one}")),
        many => keys.push(format!("expect_status = {}", list(many, u16::to_string))),
    }
}

fn service_check(c: &ServiceCheck) -> String {
    let mut keys = Vec::new();
    match &c.kind {
        ServiceCheckKind::Tcp => keys.push("kind = \"tcp\"".to_owned()),
        ServiceCheckKind::Http {
            path,
            expect_status,
        } => {
            keys.push("kind = \"http\"".to_owned());
            keys.push(format!("path = {}", q(path)));
            statuses(expect_status, &mut keys);
        }
        ServiceCheckKind::Https {
            path,
            expect_status,
            tls,
        } => {
            keys.push("kind = \"https\"".to_owned());
            keys.push(format!("path = {}", q(path)));
            statuses(expect_status, &mut keys);
            if let Some(sni) = &tls.sni {
                keys.push(format!("sni = {}", q(sni)));
            }
            if let Some(ca) = &tls.ca {
                keys.push(format!("ca = {}", q(ca)));
            }
            if tls.insecure {
                keys.push("insecure = true".to_owned());
            }
        }
        ServiceCheckKind::Exec { command, run_as } => {
            keys.push("kind = \"exec\"".to_owned());
            keys.push(format!("command = {}", list(command, |a| q(a))));
            run_as_keys(run_as, &mut keys);
        }
    }
    keys.push(format!("interval = {}", d(c.interval)));
    keys.push(format!("timeout = {}", d(c.timeout)));
    keys.push(format!("rise = {}", c.rise));
    keys.push(format!("fall = {}", c.fall));
    format!("{{ {} }}", keys.join(", "))
}
