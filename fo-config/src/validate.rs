//! From text to a resolved [`Config`]: parse, deserialize each table on its own,
//! then check every rule, collecting every problem with its position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::Config;
use crate::error::{ConfigError, ConfigErrors, LineIndex};
use crate::model::*;
use crate::raw::*;

type Span = Range<usize>;

const NAME_MAX: usize = 63;
const MAGLEV_MIN: i64 = 251;
const MAGLEV_MAX: i64 = 1_000_003;
/// Most SNAT addresses per router (the data plane's `NAT_MAX_SNAT`).
const SNAT_MAX: usize = fo_common::NAT_MAX_SNAT;
/// Most VIP and SNAT addresses in all routers: the data plane's `VIPS` map holds one
/// entry each, and its size is fixed when the program is built.
const ADDRESSES_MAX: usize = fo_common::VIPS_CAPACITY as usize;

pub(crate) fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let mut cx = Cx {
        idx: LineIndex::new(text),
        errors: Vec::new(),
        removed: HashSet::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // The tree after a syntax error is a guess: report the syntax only.
        for e in syntax {
            cx.errors.push(cx.idx.error(e.span(), e.message()));
        }
        return Err(ConfigErrors::new(cx.errors));
    }
    let doc = doc.into_inner();

    let mut node = None;
    let mut sections: BTreeMap<&'static str, Vec<Spanned<DeValue<'_>>>> = BTreeMap::new();
    for (key, value) in doc {
        let k: &str = key.get_ref().as_ref();
        match k {
            "node" => {
                if let DeValue::Table(_) = value.get_ref() {
                    node = Some(value);
                } else {
                    cx.err(value.span(), "`node` must be a table: write [node]");
                }
            }
            "router" | "service" | "check" => {
                let name = match k {
                    "router" => "router",
                    "service" => "service",
                    _ => "check",
                };
                let span = value.span();
                match value.into_inner() {
                    DeValue::Array(items) => {
                        sections.insert(name, items.into_iter().collect());
                    }
                    _ => cx.err(
                        span,
                        format!("`{name}` must be an array of tables: write [[{name}]]"),
                    ),
                }
            }
            other => cx.err(
                key.span(),
                format!(
                    "unknown key `{other}`: expected [node], [[router]], [[service]] or [[check]]"
                ),
            ),
        }
    }

    let node = match node {
        Some(v) => cx.node(v),
        None => {
            cx.err(0..0, "missing [node] table (it needs at least `interface`)");
            None
        }
    };
    let checks = cx.checks(sections.remove("check").unwrap_or_default());
    let routers = cx.routers(sections.remove("router").unwrap_or_default(), &checks);
    let services = cx.services(
        sections.remove("service").unwrap_or_default(),
        node.as_ref(),
        &routers,
    );

    match node {
        Some(node) if cx.errors.is_empty() => Ok(Config {
            node,
            routers: routers.resolved,
            services,
            checks: checks.resolved,
        }),
        _ => Err(ConfigErrors::new(cx.errors)),
    }
}

struct Cx<'a> {
    idx: LineIndex<'a>,
    errors: Vec<ConfigError>,
    /// Keys removed from the table being validated because of a type error.
    removed: HashSet<String>,
}

/// Resolved checks plus the names of every check written, even broken ones, so
/// that a broken check does not also make every reference to it an error.
struct Checks {
    resolved: Vec<Check>,
    names: HashSet<String>,
}

/// Resolved routers plus every VIP written (even in broken routers).
struct Routers {
    resolved: Vec<Router>,
    vip_owner: HashMap<IpAddr, String>,
    /// VIPs of `ownership = "bgp"` routers (announced by every node at once).
    bgp_vips: HashSet<IpAddr>,
    /// Routers that have `snat` addresses written (even if broken).
    with_snat: HashSet<String>,
    any_broken: bool,
}

impl Cx<'_> {
    fn err(&mut self, span: Span, message: impl fmt::Display) {
        let e = self.idx.error(Some(span), message);
        self.errors.push(e);
    }

    fn line(&self, span: &Span) -> usize {
        self.idx.position(span.start).0
    }

    /// Deserialize one table, reporting every type error and unknown key in it.
    ///
    /// serde stops at the first error, so after each one the offending entry is
    /// removed and the table deserialized again. What remains is validated as
    /// usual, except that "needs `key`" is not reported for a removed key.
    fn de<T: DeserializeOwned>(&mut self, what: &str, value: Spanned<DeValue<'_>>) -> Option<T> {
        self.removed.clear();
        let span = value.span();
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.err(span, format!("each {what} must be a table"));
            return None;
        }
        let mut value = value;
        for _ in 0..256 {
            match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return Some(v),
                Err(e) => {
                    let at = e.span().unwrap_or(span.clone());
                    let e = self.idx.error(Some(at.clone()), friendly(e.message()));
                    self.errors.push(e);
                    if !remove_at(value.get_mut(), at.start, &mut self.removed) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Report a missing required key, unless it was removed for a type error.
    fn missing(&mut self, key: &str, span: Span, message: impl fmt::Display) {
        if !self.removed.contains(key) {
            self.err(span, message);
        }
    }

    fn int(&mut self, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<i64> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            Some(n)
        } else {
            self.err(
                v.span(),
                format!("{what} must be between {lo} and {hi}, got {n}"),
            );
            None
        }
    }

    fn opt_int(
        &mut self,
        v: &Option<Spanned<i64>>,
        what: &str,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Option<i64> {
        match v {
            Some(v) => self.int(v, what, lo, hi),
            None => Some(default),
        }
    }

    fn ip(&mut self, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match v.get_ref().trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    v.span(),
                    format!("{what} {:?} is not an IPv4 or IPv6 address", v.get_ref()),
                );
                None
            }
        }
    }

    /// An address that can be a VIP, a backend or a peer.
    fn unicast_ip(&mut self, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
        let ip = self.ip(v, what)?;
        let bad = ip.is_unspecified()
            || ip.is_multicast()
            || ip.is_loopback()
            || ip == IpAddr::V4(Ipv4Addr::BROADCAST);
        if bad {
            self.err(v.span(), format!("{what} {ip} is not a unicast address"));
            return None;
        }
        Some(ip)
    }

    fn abs_path(&mut self, v: &Spanned<PathBuf>, what: &str) -> Option<PathBuf> {
        if v.get_ref().is_absolute() {
            Some(v.get_ref().clone())
        } else {
            self.err(
                v.span(),
                format!("{what} must be an absolute path, got {:?}", v.get_ref()),
            );
            None
        }
    }

    /// Router and check names: `[a-z0-9_-]`, 1..=63 characters.
    fn ident(&mut self, v: &Spanned<String>, what: &str) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= NAME_MAX
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Some(s.clone())
        } else {
            self.err(
                v.span(),
                format!("{what} {s:?} must be 1 to {NAME_MAX} characters of a-z, 0-9, '_' and '-'"),
            );
            None
        }
    }

    /// Service and backend names (used on the command line and as metric labels).
    fn label(&mut self, v: &Spanned<String>, what: &str) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= NAME_MAX
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Some(s.clone())
        } else {
            self.err(
                v.span(),
                format!("{what} {s:?} must be 1 to {NAME_MAX} characters without spaces"),
            );
            None
        }
    }

    fn positive(&mut self, v: &Spanned<crate::HumanDuration>, what: &str) -> Option<Duration> {
        let d = v.get_ref().get();
        if d.is_zero() {
            self.err(v.span(), format!("{what} must be greater than zero"));
            None
        } else {
            Some(d)
        }
    }

    fn not_for(&mut self, span: Option<Span>, key: &str, context: &str) {
        if let Some(span) = span {
            self.err(span, format!("`{key}` does not apply to {context}"));
        }
    }

    /// Timing shared by service checks and node checks.
    fn timing(
        &mut self,
        interval: &Option<Spanned<crate::HumanDuration>>,
        timeout: &Option<Spanned<crate::HumanDuration>>,
        rise: &Option<Spanned<i64>>,
        fall: &Option<Spanned<i64>>,
    ) -> Option<(Duration, Duration, u32, u32)> {
        let iv = match interval {
            Some(v) => self.positive(v, "interval"),
            None => Some(DEFAULT_CHECK_INTERVAL),
        };
        let to = match timeout {
            Some(v) => self.positive(v, "timeout"),
            None => Some(DEFAULT_CHECK_TIMEOUT),
        };
        if let (Some(iv), Some(to)) = (iv, to)
            && to >= iv
        {
            let span = match (timeout, interval) {
                (Some(t), _) => t.span(),
                (None, Some(i)) => i.span(),
                (None, None) => unreachable!("the defaults satisfy timeout < interval"),
            };
            self.err(
                span,
                format!(
                    "timeout ({}) must be shorter than interval ({})",
                    crate::duration::format_duration(to),
                    crate::duration::format_duration(iv)
                ),
            );
        }
        let rise = self.opt_int(rise, "rise", 1, 100, 2);
        let fall = self.opt_int(fall, "fall", 1, 100, 3);
        Some((iv?, to?, rise? as u32, fall? as u32))
    }

    /// An exec check's `command`: `[program, args...]`, the program an absolute path or
    /// a bare name (looked up in the agent's PATH when it runs).
    fn command(&mut self, v: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
        let list = self.strings(v, "command")?;
        let program = &v.get_ref()[0];
        if program.get_ref().contains('/') && !program.get_ref().starts_with('/') {
            self.err(
                program.span(),
                format!(
                    "command: the program must be an absolute path or a bare name looked up in PATH, got {:?}",
                    program.get_ref()
                ),
            );
            return None;
        }
        Some(list)
    }

    fn strings(&mut self, v: &Spanned<Vec<Spanned<String>>>, what: &str) -> Option<Vec<String>> {
        let list = v.get_ref();
        if list.is_empty() {
            self.err(v.span(), format!("{what} must not be empty"));
            return None;
        }
        if list[0].get_ref().is_empty() {
            self.err(
                list[0].span(),
                format!("{what}: the program (first element) must not be empty"),
            );
            return None;
        }
        Some(list.iter().map(|s| s.get_ref().clone()).collect())
    }

    // ---------------------------------------------------------------- [node]

    fn node(&mut self, value: Spanned<DeValue<'_>>) -> Option<Node> {
        let span = value.span();
        let raw: RawNode = self.de("[node]", value)?;
        let interface = match &raw.interface {
            Some(v) => self.interface(v),
            None => {
                self.missing(
                    "interface",
                    span,
                    "[node] needs `interface` (the network interface XDP and VRRP use)",
                );
                None
            }
        };
        let bpf_dir = match &raw.bpf_dir {
            Some(v) => self.abs_path(v, "bpf_dir"),
            None => Some(Node::DEFAULT_BPF_DIR.into()),
        };
        let control_socket = match &raw.control_socket {
            Some(v) => self.abs_path(v, "control_socket"),
            None => Some(Node::DEFAULT_CONTROL_SOCKET.into()),
        };
        let state_file = match &raw.state_file {
            Some(v) => self.abs_path(v, "state_file"),
            None => Some(Node::DEFAULT_STATE_FILE.into()),
        };
        let maglev_table_size = match &raw.maglev_table_size {
            Some(v) => self.maglev_size(v),
            None => Some(Node::DEFAULT_MAGLEV_TABLE_SIZE),
        };
        let max_services = self.opt_int(
            &raw.max_services,
            "max_services",
            1,
            65_535,
            Node::DEFAULT_MAX_SERVICES.into(),
        );
        let max_backends = self.opt_int(
            &raw.max_backends,
            "max_backends",
            1,
            1 << 20,
            Node::DEFAULT_MAX_BACKENDS.into(),
        );
        let flow_table_size = self.opt_int(
            &raw.flow_table_size,
            "flow_table_size",
            1,
            u32::MAX.into(),
            Node::DEFAULT_FLOW_TABLE_SIZE.into(),
        );
        let garp_count = self.opt_int(
            &raw.garp_count,
            "garp_count",
            1,
            255,
            Node::DEFAULT_GARP_COUNT.into(),
        );
        let garp_interval = match &raw.garp_interval {
            Some(v) => self.positive(v, "garp_interval"),
            None => Some(Node::DEFAULT_GARP_INTERVAL),
        };
        let garp_refresh = match raw.garp_refresh {
            Some(d) if d.get().is_zero() => None,
            Some(d) => Some(d.get()),
            None => Some(Node::DEFAULT_GARP_REFRESH),
        };
        let metrics = match &raw.metrics {
            Some(m) => match m.get_ref().parse::<std::net::SocketAddr>() {
                Ok(a) => Some(Some(a)),
                Err(_) => {
                    self.err(
                        m.span(),
                        format!("metrics {:?} is not an IP:PORT like \"127.0.0.1:9469\" or \"[::1]:9469\"", m.get_ref()),
                    );
                    None
                }
            },
            None => Some(None),
        };
        let control_group = match &raw.control_group {
            Some(v) => Some(self.group(v)?),
            None => None,
        };
        let nat_table_size = self.opt_int(
            &raw.nat_table_size,
            "nat_table_size",
            16,
            1 << 26,
            Node::DEFAULT_NAT_TABLE_SIZE.into(),
        );
        let sync = match &raw.sync {
            Some(v) => Some(self.sync(v)?),
            None => None,
        };
        let nat_timeouts = match &raw.nat_timeouts {
            Some(v) => self.nat_timeouts(v.get_ref()),
            None => Some(NatTimeouts::default()),
        };
        Some(Node {
            interface: interface?,
            xdp_mode: raw.xdp_mode.unwrap_or_default(),
            bpf_dir: bpf_dir?,
            control_socket: control_socket?,
            state_file: state_file?,
            metrics: metrics?,
            maglev_table_size: maglev_table_size?,
            max_services: max_services? as u32,
            max_backends: max_backends? as u32,
            flow_table_size: flow_table_size? as u32,
            garp_count: garp_count? as u32,
            garp_interval: garp_interval?,
            garp_refresh,
            vip_on_interface: raw.vip_on_interface.unwrap_or(false),
            control_group,
            nat_table_size: nat_table_size? as u32,
            nat_timeouts: nat_timeouts?,
            sync,
        })
    }

    fn nat_timeouts(&mut self, raw: &RawNatTimeouts) -> Option<NatTimeouts> {
        let d = NatTimeouts::default();
        let mut one = |v: &Option<Spanned<crate::HumanDuration>>, what: &str, default| match v {
            Some(v) if v.get_ref().get() < NatTimeouts::MIN => {
                self.err(
                    v.span(),
                    format!(
                        "nat_timeouts {what} must be at least {:?}: aging runs every second, and a live connection's last-seen time is refreshed only every 250 ms",
                        NatTimeouts::MIN
                    ),
                );
                None
            }
            Some(v) if v.get_ref().get() > NatTimeouts::MAX => {
                self.err(
                    v.span(),
                    format!("nat_timeouts {what} must be at most a year (8760h)"),
                );
                None
            }
            Some(v) => Some(v.get_ref().get()),
            None => Some(default),
        };
        let syn = one(&raw.syn, "syn", d.syn);
        let established = one(&raw.established, "established", d.established);
        let fin = one(&raw.fin, "fin", d.fin);
        let closed = one(&raw.closed, "closed", d.closed);
        let udp = one(&raw.udp, "udp", d.udp);
        Some(NatTimeouts {
            syn: syn?,
            established: established?,
            fin: fin?,
            closed: closed?,
            udp: udp?,
        })
    }

    fn sync(&mut self, v: &Spanned<RawSync>) -> Option<Sync> {
        let raw = v.get_ref();
        let peers = match &raw.peers {
            Some(list) if list.get_ref().is_empty() => {
                self.err(list.span(), "sync peers must not be empty");
                None
            }
            Some(list) => {
                let mut out = Vec::new();
                let mut ok = true;
                for p in list.get_ref() {
                    match self.unicast_ip(p, "sync peer") {
                        Some(ip) => out.push(ip),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            None => {
                self.missing(
                    "peers",
                    v.span(),
                    "sync needs `peers` (the other nodes' addresses)",
                );
                None
            }
        };
        let port = self
            .opt_int(&raw.port, "sync port", 1, 65_535, Sync::DEFAULT_PORT.into())
            .map(|p| p as u16);
        let key_file = match &raw.key_file {
            Some(k) => self
                .abs_path(k, "sync key_file")
                .and_then(|path| self.key_file(k.span(), path)),
            None => {
                self.missing(
                    "key_file",
                    v.span(),
                    "sync needs `key_file` (a shared secret of at least 16 bytes, mode 0600): flows are authenticated with it",
                );
                None
            }
        };
        let max_clock_skew = match &raw.max_clock_skew {
            Some(v) => {
                let d = v.get_ref().get();
                if (Sync::MIN_CLOCK_SKEW..=Sync::MAX_CLOCK_SKEW).contains(&d) {
                    Some(d)
                } else {
                    self.err(
                        v.span(),
                        "sync max_clock_skew must be between 1s and 1h: a datagram further off our clock is refused",
                    );
                    None
                }
            }
            None => Some(Sync::DEFAULT_MAX_CLOCK_SKEW),
        };
        Some(Sync {
            peers: peers?,
            port: port?,
            key_file: key_file?,
            max_clock_skew: max_clock_skew?,
        })
    }

    /// The sync key must exist, be long enough and readable by its owner only.
    fn key_file(&mut self, span: Span, path: PathBuf) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.err(span, format!("sync key_file {}: {e}", path.display()));
                return None;
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.err(
                span,
                format!(
                    "sync key_file {} has mode {mode:04o}: the key must be readable by its owner only (chmod 600)",
                    path.display()
                ),
            );
            return None;
        }
        if (meta.len() as usize) < Sync::MIN_KEY_LEN {
            self.err(
                span,
                format!(
                    "sync key_file {} holds {} bytes: the key needs at least {}",
                    path.display(),
                    meta.len(),
                    Sync::MIN_KEY_LEN
                ),
            );
            return None;
        }
        Some(path)
    }

    fn interface(&mut self, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() < 16
            && s != "."
            && s != ".."
            && !s
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if ok {
            Some(s.clone())
        } else {
            self.err(v.span(), format!("interface {s:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)"));
            None
        }
    }

    fn maglev_size(&mut self, v: &Spanned<i64>) -> Option<u32> {
        let n = *v.get_ref();
        if !(MAGLEV_MIN..=MAGLEV_MAX).contains(&n) {
            self.err(
                v.span(),
                format!("maglev_table_size must be a prime between {MAGLEV_MIN} and {MAGLEV_MAX}, got {n}"),
            );
            None
        } else if !is_prime(n as u64) {
            self.err(
                v.span(),
                format!("maglev_table_size must be prime (e.g. 65537), got {n}"),
            );
            None
        } else {
            Some(n as u32)
        }
    }

    fn group(&mut self, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 32
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Some(s.clone())
        } else {
            self.err(
                v.span(),
                format!("control_group {s:?} is not a valid group name"),
            );
            None
        }
    }

    // ------------------------------------------------------------- [[check]]

    fn checks(&mut self, items: Vec<Spanned<DeValue<'_>>>) -> Checks {
        let mut out = Checks {
            resolved: Vec::new(),
            names: HashSet::new(),
        };
        let mut first: HashMap<String, Span> = HashMap::new();
        for item in items {
            let span = item.span();
            let written_name = str_field(item.get_ref(), "name");
            if let Some(n) = &written_name {
                out.names.insert(n.clone());
            }
            let Some(raw) = self.de::<RawCheck>("[[check]]", item) else {
                continue;
            };
            let name = match &raw.name {
                Some(n) => {
                    let ok = self.ident(n, "check name");
                    if let Some(prev) = first.get(n.get_ref()) {
                        let line = self.line(prev);
                        self.err(
                            n.span(),
                            format!(
                                "duplicate check name {:?} (first defined on line {line})",
                                n.get_ref()
                            ),
                        );
                    } else {
                        first.insert(n.get_ref().clone(), n.span());
                    }
                    ok
                }
                None => {
                    self.missing("name", span.clone(), "[[check]] needs a `name`");
                    None
                }
            };
            let kind = self.check_kind(&raw, span);
            let timing = self.timing(&raw.interval, &raw.timeout, &raw.rise, &raw.fall);
            if let (Some(name), Some(kind), Some((interval, timeout, rise, fall))) =
                (name, kind, timing)
            {
                out.resolved.push(Check {
                    name,
                    kind,
                    interval,
                    timeout,
                    rise,
                    fall,
                });
            }
        }
        out
    }

    fn check_kind(&mut self, raw: &RawCheck, span: Span) -> Option<CheckKind> {
        let Some(kind) = &raw.kind else {
            self.missing(
                "kind",
                span,
                "[[check]] needs a `kind`: tcp, http, https, exec, process or file",
            );
            return None;
        };
        let tag = *kind.get_ref();
        let ctx = format!("checks of kind {}", tag_name(tag));
        // Keys that belong to other kinds.
        let mut written = vec![
            ("address", raw.address.as_ref().map(Spanned::span)),
            ("port", raw.port.as_ref().map(Spanned::span)),
            ("url", raw.url.as_ref().map(Spanned::span)),
            ("path", raw.path.as_ref().map(Spanned::span)),
            (
                "expect_status",
                raw.expect_status.as_ref().map(Spanned::span),
            ),
            ("expect_body", raw.expect_body.as_ref().map(Spanned::span)),
            ("command", raw.command.as_ref().map(Spanned::span)),
            ("pidfile", raw.pidfile.as_ref().map(Spanned::span)),
            ("process", raw.process.as_ref().map(Spanned::span)),
            ("contains", raw.contains.as_ref().map(Spanned::span)),
            ("user", raw.user.as_ref().map(Spanned::span)),
            ("group", raw.group.as_ref().map(Spanned::span)),
        ];
        written.extend(raw.tls().written());
        const HTTP: &[&str] = &[
            "address",
            "port",
            "url",
            "path",
            "expect_status",
            "expect_body",
        ];
        const HTTPS: &[&str] = &[
            "address",
            "port",
            "url",
            "path",
            "expect_status",
            "expect_body",
            "sni",
            "ca",
            "cert",
            "key",
            "insecure",
            "min_cert_validity",
        ];
        let allowed: &[&str] = match tag {
            CheckTag::Tcp => &["address", "port"],
            CheckTag::Http => HTTP,
            CheckTag::Https => HTTPS,
            CheckTag::Exec => &["command", "user", "group"],
            CheckTag::Process => &["process", "pidfile"],
            CheckTag::File => &["path", "contains"],
        };
        for (key, at) in written {
            if !allowed.contains(&key) {
                self.not_for(at, key, &ctx);
            }
        }
        self.no_https_key(&raw.https);
        let kspan = kind.span();
        match tag {
            CheckTag::Tcp => {
                let address = self.need(
                    &raw.address,
                    "address",
                    &kspan,
                    "a tcp check needs `address`",
                );
                let port = self.need(&raw.port, "port", &kspan, "a tcp check needs `port`");
                let address = self.ip(address?, "address");
                let port = self.int(port?, "port", 1, 65_535);
                Some(CheckKind::Tcp {
                    address: address?,
                    port: port? as u16,
                })
            }
            CheckTag::Http => self.http_check(raw, kspan, false).map(CheckKind::Http),
            CheckTag::Https => {
                let target = self.http_check(raw, kspan, true);
                let tls = self.tls(&raw.tls());
                Some(CheckKind::Https {
                    target: target?,
                    tls: tls?,
                })
            }
            CheckTag::Exec => {
                let command = self.need(
                    &raw.command,
                    "command",
                    &kspan,
                    "an exec check needs `command` = [program, args...]",
                )?;
                let at = self.at(command);
                let command = self.command(command);
                let run_as = self.run_as(&raw.user, &raw.group);
                Some(CheckKind::Exec {
                    command: command?,
                    run_as: run_as?,
                    at,
                })
            }
            CheckTag::Process => match (&raw.process, &raw.pidfile) {
                (Some(name), None) => {
                    if name.get_ref().is_empty() {
                        self.err(name.span(), "process must not be empty");
                        return None;
                    }
                    Some(CheckKind::Process {
                        by: ProcessMatch::Name(name.get_ref().clone()),
                    })
                }
                (None, Some(pidfile)) => Some(CheckKind::Process {
                    by: ProcessMatch::Pidfile(self.abs_path(pidfile, "pidfile")?),
                }),
                (Some(_), Some(pidfile)) => {
                    self.err(
                        pidfile.span(),
                        "a process check takes `process` or `pidfile`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.missing(
                        "process",
                        kspan,
                        "a process check needs `process` (a process name) or `pidfile`",
                    );
                    None
                }
            },
            CheckTag::File => {
                let path = self.need(&raw.path, "path", &kspan, "a file check needs `path`")?;
                let p = Spanned::new(path.span(), PathBuf::from(path.get_ref()));
                let path = self.abs_path(&p, "path")?;
                Some(CheckKind::File {
                    path,
                    contains: raw.contains.as_ref().map(|c| c.get_ref().clone()),
                })
            }
        }
    }

    /// `https = true` was the way to ask for TLS before `kind = "https"`; it never ran
    /// (every such check was refused), so it is refused with the way to write it now.
    fn no_https_key(&mut self, https: &Option<Spanned<bool>>) {
        if let Some(h) = https {
            self.err(
                h.span(),
                "`https` is not a check key: write kind = \"https\" for a check over TLS (with `sni`, `ca`, `cert` and `key`, `insecure` as needed)",
            );
        }
    }

    /// The target of an http (`tls` false) or https node check.
    fn http_check(&mut self, raw: &RawCheck, kspan: Span, tls: bool) -> Option<HttpCheck> {
        let kind = if tls { "https" } else { "http" };
        let get = self.http_get(&raw.path, &raw.expect_status, &raw.expect_body);
        let target = if let Some(u) = &raw.url {
            for (key, at) in [("address", &raw.address), ("path", &raw.path)] {
                if let Some(at) = at {
                    self.err(at.span(), format!("`{key}` cannot be combined with `url`"));
                }
            }
            if let Some(at) = &raw.port {
                self.err(at.span(), "`port` cannot be combined with `url`");
            }
            match parse_url(u.get_ref()) {
                Ok((https, ..)) if https != tls => {
                    self.err(
                        u.span(),
                        if tls {
                            format!(
                                "url {:?}: an https check needs an https:// url",
                                u.get_ref()
                            )
                        } else {
                            format!("url {:?} is https: write kind = \"https\"", u.get_ref())
                        },
                    );
                    None
                }
                Ok((_, host, port, path)) => Some((host, port, Some(path))),
                Err(why) => {
                    self.err(u.span(), format!("url {:?}: {why}", u.get_ref()));
                    None
                }
            }
        } else {
            let address = self.need(
                &raw.address,
                "address",
                &kspan,
                &format!(
                    "an {kind} check needs `url`, or `address` (with optional `port`, `path`)"
                ),
            );
            let address = self.ip(address?, "address");
            let port = self.opt_int(&raw.port, "port", 1, 65_535, if tls { 443 } else { 80 });
            Some((address?.to_string(), port? as u16, None))
        };
        let (host, port, url_path) = target?;
        let mut get = get?;
        if let Some(path) = url_path {
            get.path = path;
        }
        Some(HttpCheck { host, port, get })
    }

    /// `path` (default `/`), `expect_status` (default 200) and `expect_body`.
    fn http_get(
        &mut self,
        path: &Option<Spanned<String>>,
        status: &Option<Spanned<Statuses>>,
        body: &Option<Spanned<String>>,
    ) -> Option<HttpGet> {
        let path = match path {
            Some(p) if !p.get_ref().starts_with('/') => {
                self.err(
                    p.span(),
                    format!("path must start with '/', got {:?}", p.get_ref()),
                );
                None
            }
            Some(p) => Some(p.get_ref().clone()),
            None => Some("/".to_owned()),
        };
        let expect_status = match status {
            None => Some(vec![200]),
            Some(s) => self.statuses(s),
        };
        Some(HttpGet {
            path: path?,
            expect_status: expect_status?,
            expect_body: body.as_ref().map(|b| b.get_ref().clone()),
        })
    }

    fn statuses(&mut self, s: &Spanned<Statuses>) -> Option<Vec<u16>> {
        let code = |cx: &mut Self, v: &Spanned<i64>| {
            cx.int(v, "expect_status", 100, 599).map(|n| n as u16)
        };
        match s.get_ref() {
            Statuses::One(n) => code(self, &Spanned::new(s.span(), *n)).map(|c| vec![c]),
            Statuses::Many(list) if list.is_empty() => {
                self.err(
                    s.span(),
                    "expect_status must list at least one status code, like [200, 204]",
                );
                None
            }
            Statuses::Many(list) => {
                let mut out: Vec<u16> = Vec::with_capacity(list.len());
                let mut ok = true;
                for v in list {
                    match code(self, v) {
                        Some(c) if out.contains(&c) => {
                            self.err(v.span(), format!("expect_status lists {c} twice"));
                            ok = false;
                        }
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
        }
    }

    /// The TLS keys of an https check.
    fn tls(&mut self, raw: &RawTls<'_>) -> Option<Tls> {
        let mut ok = true;
        let sni = match raw.sni {
            Some(n) if valid_server_name(n.get_ref()) => Some(n.get_ref().clone()),
            Some(n) => {
                self.err(
                    n.span(),
                    format!(
                        "sni {:?} is not a DNS name (like \"api.example.org\") or an IP address",
                        n.get_ref()
                    ),
                );
                ok = false;
                None
            }
            None => None,
        };
        let mut file = |cx: &mut Self, v: &Option<Spanned<PathBuf>>, what: &str| match v {
            Some(p) => match cx.abs_path(p, what) {
                Some(path) => {
                    let (line, col) = cx.idx.position(p.span().start);
                    Some(ConfigFile { path, line, col })
                }
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let ca = file(self, raw.ca, "ca");
        let cert = file(self, raw.cert, "cert");
        let key = file(self, raw.key, "key");
        let insecure = raw.insecure.as_ref().is_some_and(|i| *i.get_ref());
        if insecure && let Some(ca) = raw.ca {
            self.err(
                ca.span(),
                "`ca` has no effect with insecure = true (no certificate is verified): remove one of them",
            );
            ok = false;
        }
        let client = match (raw.cert, raw.key) {
            (Some(_), Some(_)) => cert.zip(key).map(|(cert, key)| ClientCert { cert, key }),
            (Some(c), None) => {
                self.err(
                    c.span(),
                    "`cert` needs `key`, the client certificate's private key",
                );
                ok = false;
                None
            }
            (None, Some(k)) => {
                self.err(k.span(), "`key` needs `cert`, the client certificate");
                ok = false;
                None
            }
            (None, None) => None,
        };
        let min_cert_validity = match raw.min_cert_validity {
            Some(v) if v.get_ref().get().is_zero() => {
                self.err(
                    v.span(),
                    "min_cert_validity must be more than 0s, like \"30d\" (leave it out to not check ahead of expiry)",
                );
                ok = false;
                None
            }
            Some(v) => Some(v.get_ref().get()),
            None => None,
        };
        ok.then_some(Tls {
            sni,
            ca,
            client,
            insecure,
            min_cert_validity,
        })
    }

    fn need<'v, T>(
        &mut self,
        v: &'v Option<Spanned<T>>,
        key: &str,
        at: &Span,
        message: &str,
    ) -> Option<&'v Spanned<T>> {
        if v.is_none() {
            self.missing(key, at.clone(), message);
        }
        v.as_ref()
    }

    // ------------------------------------------------------------ [[router]]

    fn routers(&mut self, items: Vec<Spanned<DeValue<'_>>>, checks: &Checks) -> Routers {
        let mut out = Routers {
            resolved: Vec::new(),
            vip_owner: HashMap::new(),
            bgp_vips: HashSet::new(),
            with_snat: HashSet::new(),
            any_broken: false,
        };
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut vrids: HashMap<u8, (String, Span)> = HashMap::new();
        let mut vip_first: HashMap<IpAddr, (String, Span)> = HashMap::new();
        for item in items {
            let span = item.span();
            let written_name = str_field(item.get_ref(), "name").unwrap_or_default();
            let written_vips = str_list_field(item.get_ref(), "vips");
            if !str_list_field(item.get_ref(), "snat").is_empty() {
                out.with_snat.insert(written_name.clone());
            }
            let raw = self.de::<RawRouter>("[[router]]", item);
            if raw.is_none() || !self.removed.is_empty() {
                // Services may still name this router's VIPs: take them as written.
                out.any_broken |= written_vips.is_empty();
                for v in written_vips {
                    if let Ok(ip) = v.trim().parse() {
                        out.vip_owner
                            .entry(ip)
                            .or_insert_with(|| written_name.clone());
                    }
                }
            }
            let Some(raw) = raw else { continue };
            let name = match &raw.name {
                Some(n) => {
                    let ok = self.ident(n, "router name");
                    if let Some(prev) = names.get(n.get_ref()) {
                        let line = self.line(prev);
                        self.err(
                            n.span(),
                            format!(
                                "duplicate router name {:?} (first defined on line {line})",
                                n.get_ref()
                            ),
                        );
                    } else {
                        names.insert(n.get_ref().clone(), n.span());
                    }
                    ok
                }
                None => {
                    self.missing("name", span.clone(), "[[router]] needs a `name`");
                    None
                }
            };
            let label = raw
                .name
                .as_ref()
                .map(|n| n.get_ref().clone())
                .unwrap_or_default();

            let vips = self.vips(&raw, &span, &label, &mut vip_first, &mut out.vip_owner);
            let ownership =
                self.ownership(&raw, &span, vips.as_deref(), &mut vrids, &label, checks);
            let snat = self.snat(&raw, &label, &mut vip_first);
            let gates = self.gates(&raw, checks);
            let hooks = self.hooks(&raw);
            if let (Some(name), Some(vips), Some(snat), Some(ownership), Some(gates), Some(hooks)) =
                (name, vips, snat, ownership, gates, hooks)
            {
                if matches!(ownership, Ownership::Bgp(_)) {
                    out.bgp_vips.extend(vips.iter().copied());
                }
                out.resolved.push(Router {
                    name,
                    ownership,
                    vips,
                    snat,
                    gates,
                    hooks,
                });
            }
        }
        out
    }

    fn vips(
        &mut self,
        raw: &RawRouter,
        span: &Span,
        router: &str,
        first: &mut HashMap<IpAddr, (String, Span)>,
        owner: &mut HashMap<IpAddr, String>,
    ) -> Option<Vec<IpAddr>> {
        let Some(list) = &raw.vips else {
            self.missing(
                "vips",
                span.clone(),
                "[[router]] needs `vips` (at least one address)",
            );
            return None;
        };
        if list.get_ref().is_empty() {
            self.err(list.span(), "vips must not be empty");
            return None;
        }
        let mut ok = true;
        let mut out = Vec::new();
        for v in list.get_ref() {
            let Some(ip) = self.unicast_ip(v, "VIP") else {
                ok = false;
                continue;
            };
            if let Some((other, at)) = first.get(&ip) {
                let line = self.line(at);
                let msg = if other == router {
                    format!("VIP {ip} is listed twice (first on line {line})")
                } else {
                    format!("VIP {ip} already belongs to router {other:?} (line {line})")
                };
                self.err(v.span(), msg);
                ok = false;
                continue;
            }
            first.insert(ip, (router.to_owned(), v.span()));
            self.address_capacity(first.len(), v.span());
            owner.insert(ip, router.to_owned());
            if let Some(&f) = out.first()
                && family(f) != family(ip)
            {
                self.err(
                    v.span(),
                    format!("VIP {ip} is {} but the router's first VIP {f} is {}: one router, one address family", family(ip), family(f)),
                );
                ok = false;
                continue;
            }
            out.push(ip);
        }
        ok.then_some(out)
    }

    /// `snat`: IPv4 unicast, at most `NAT_MAX_SNAT`, no address used twice (as a VIP
    /// or as another router's SNAT address).
    fn snat(
        &mut self,
        raw: &RawRouter,
        router: &str,
        first: &mut HashMap<IpAddr, (String, Span)>,
    ) -> Option<Vec<IpAddr>> {
        let Some(list) = &raw.snat else {
            return Some(Vec::new());
        };
        let mut ok = true;
        if list.get_ref().len() > SNAT_MAX {
            self.err(
                list.span(),
                format!(
                    "snat lists {} addresses: at most {SNAT_MAX}",
                    list.get_ref().len()
                ),
            );
            ok = false;
        }
        let mut out = Vec::new();
        for v in list.get_ref() {
            let Some(ip) = self.unicast_ip(v, "snat address") else {
                ok = false;
                continue;
            };
            if ip.is_ipv6() {
                self.err(
                    v.span(),
                    format!(
                        "snat address {ip} is IPv6: NAT is IPv4 only (NAT66 is not implemented)"
                    ),
                );
                ok = false;
                continue;
            }
            if let Some((other, at)) = first.get(&ip) {
                let line = self.line(at);
                self.err(
                    v.span(),
                    format!("snat address {ip} is already used by router {other:?} (line {line}): a SNAT address must be an address of its own"),
                );
                ok = false;
                continue;
            }
            first.insert(ip, (router.to_owned(), v.span()));
            self.address_capacity(first.len(), v.span());
            out.push(ip);
        }
        ok.then_some(out)
    }

    /// The `n`th VIP or SNAT address of the config, written at `at`: the first one
    /// past what the data plane's `VIPS` map holds is an error (once).
    fn address_capacity(&mut self, n: usize, at: Span) {
        if n == ADDRESSES_MAX + 1 {
            self.err(
                at,
                format!("too many addresses: the data plane holds {ADDRESSES_MAX} VIP and SNAT addresses in all routers, and this is address {n}"),
            );
        }
    }

    fn ownership(
        &mut self,
        raw: &RawRouter,
        span: &Span,
        vips: Option<&[IpAddr]>,
        vrids: &mut HashMap<u8, (String, Span)>,
        router: &str,
        checks: &Checks,
    ) -> Option<Ownership> {
        if self.removed.contains("ownership") {
            return None;
        }
        let kind = raw
            .ownership
            .as_ref()
            .map(|o| *o.get_ref())
            .unwrap_or_default();
        let kind_name = match kind {
            OwnershipKind::Vrrp => "vrrp",
            OwnershipKind::Bgp => "bgp",
            OwnershipKind::Static => "static",
        };
        if kind != OwnershipKind::Vrrp {
            let ctx = format!("ownership = \"{kind_name}\" (only to \"vrrp\")");
            for (key, at) in [
                ("vrid", raw.vrid.as_ref().map(Spanned::span)),
                ("priority", raw.priority.as_ref().map(Spanned::span)),
                ("version", raw.version.as_ref().map(Spanned::span)),
                (
                    "advert_interval",
                    raw.advert_interval.as_ref().map(Spanned::span),
                ),
                ("preempt", raw.preempt.as_ref().map(Spanned::span)),
                (
                    "preempt_delay",
                    raw.preempt_delay.as_ref().map(Spanned::span),
                ),
                ("peers", raw.peers.as_ref().map(Spanned::span)),
                ("auth_pass", raw.auth_pass.as_ref().map(Spanned::span)),
                (
                    "auth_key_file",
                    raw.auth_key_file.as_ref().map(Spanned::span),
                ),
                ("track", raw.track.as_ref().map(Spanned::span)),
                ("witness", raw.witness.as_ref().map(Spanned::span)),
            ] {
                self.not_for(at, key, &ctx);
            }
        }
        if kind != OwnershipKind::Bgp
            && let Some(b) = &raw.bgp
        {
            self.err(
                b.span(),
                format!(
                    "`bgp` only applies to ownership = \"bgp\" (this router is \"{kind_name}\")"
                ),
            );
        }
        match kind {
            OwnershipKind::Static => Some(Ownership::Static),
            OwnershipKind::Bgp => {
                let Some(b) = &raw.bgp else {
                    let at = raw.ownership.as_ref().map_or(span.clone(), Spanned::span);
                    self.missing("bgp", at, "ownership = \"bgp\" needs `bgp = { daemon = \"bird\" | \"frr\", control = \"/path/to/socket\" }`");
                    return None;
                };
                let daemon = b.get_ref().daemon;
                if daemon.is_none() {
                    self.missing(
                        "daemon",
                        b.span(),
                        "bgp needs `daemon` (\"bird\" or \"frr\")",
                    );
                }
                let control = match &b.get_ref().control {
                    Some(c) => self.abs_path(c, "bgp control"),
                    None => {
                        self.missing(
                            "control",
                            b.span(),
                            "bgp needs `control` (the routing daemon's control socket)",
                        );
                        None
                    }
                };
                Some(Ownership::Bgp(Bgp {
                    daemon: daemon?,
                    control: control?,
                    bfd: b.get_ref().bfd.unwrap_or(false),
                }))
            }
            OwnershipKind::Vrrp => self
                .vrrp(raw, span, vips, vrids, router, checks)
                .map(Ownership::Vrrp),
        }
    }

    fn vrrp(
        &mut self,
        raw: &RawRouter,
        span: &Span,
        vips: Option<&[IpAddr]>,
        vrids: &mut HashMap<u8, (String, Span)>,
        router: &str,
        checks: &Checks,
    ) -> Option<Vrrp> {
        let vrid = match &raw.vrid {
            Some(v) => {
                let n = self.int(v, "vrid", 1, 255).map(|n| n as u8);
                if let Some(n) = n {
                    if let Some((other, at)) = vrids.get(&n) {
                        let line = self.line(at);
                        self.err(v.span(), format!("vrid {n} is already used by router {other:?} (line {line}) on this interface"));
                    } else {
                        vrids.insert(n, (router.to_owned(), v.span()));
                    }
                }
                n
            }
            None => {
                self.missing(
                    "vrid",
                    span.clone(),
                    "a VRRP router needs a `vrid` (1..=255, unique on the interface)",
                );
                None
            }
        };
        let priority = self.opt_int(&raw.priority, "priority", 1, 255, 100);
        let version = match &raw.version {
            None => Some(VrrpVersion::V3),
            Some(v) => match v.get_ref() {
                3 => Some(VrrpVersion::V3),
                2 => Some(VrrpVersion::V2),
                n => {
                    self.err(v.span(), format!("version must be 3 or 2, got {n}"));
                    None
                }
            },
        };
        let advert_interval = match (&raw.advert_interval, version) {
            (None, _) => Some(Duration::from_secs(1)),
            (Some(v), Some(VrrpVersion::V3)) => {
                let d = v.get_ref().get();
                let ms = d.as_millis();
                if d.as_nanos() % 10_000_000 != 0 || !(10..=40_950).contains(&ms) {
                    self.err(v.span(), format!("advert_interval {} must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)", v.get_ref()));
                    None
                } else {
                    Some(d)
                }
            }
            (Some(v), Some(VrrpVersion::V2)) => {
                let d = v.get_ref().get();
                if d.subsec_nanos() != 0 || !(1..=255).contains(&d.as_secs()) {
                    self.err(v.span(), format!("advert_interval {} must be whole seconds between 1s and 255s in VRRP version 2", v.get_ref()));
                    None
                } else {
                    Some(d)
                }
            }
            (Some(_), None) => None,
        };
        let preempt = raw.preempt.as_ref().is_none_or(|p| *p.get_ref());
        let preempt_delay = raw
            .preempt_delay
            .as_ref()
            .map_or(Duration::ZERO, |d| d.get_ref().get());
        if let Some(d) = &raw.preempt_delay
            && !preempt
        {
            self.err(d.span(), "preempt_delay has no effect with preempt = false");
        }

        let mut ok = true;
        if version == Some(VrrpVersion::V2)
            && let (Some(list), Some(vips)) = (&raw.vips, vips)
            && vips.first().is_some_and(IpAddr::is_ipv6)
        {
            self.err(
                list.span(),
                "VRRP version 2 carries IPv4 VIPs only: use version = 3 for IPv6",
            );
            ok = false;
        }
        let auth_pass = match &raw.auth_pass {
            None => None,
            Some(p) => {
                if version == Some(VrrpVersion::V3) {
                    self.err(
                        p.span(),
                        "auth_pass only exists in VRRP version 2 (set version = 2, or remove it)",
                    );
                    ok = false;
                } else if !(1..=8).contains(&p.get_ref().len()) {
                    self.err(
                        p.span(),
                        format!("auth_pass must be 1 to 8 bytes, got {}", p.get_ref().len()),
                    );
                    ok = false;
                }
                Some(p.get_ref().clone())
            }
        };
        let auth_key_file = match &raw.auth_key_file {
            None => None,
            Some(f) => {
                if version == Some(VrrpVersion::V2) {
                    self.err(
                        f.span(),
                        "auth_key_file (HMAC between fo nodes) needs version = 3; version 2 has only auth_pass, for keepalived peers",
                    );
                    ok = false;
                }
                match self.abs_path(f, "auth_key_file") {
                    Some(p) => Some(p),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let peers = self.peers(raw, vips);
        let track = self.track(raw, checks);
        let witness = match (&raw.witness, advert_interval) {
            (None, _) => Some(None),
            (Some(w), Some(adv)) => self.witness(w, adv, vips, peers.as_deref()).map(Some),
            (Some(_), None) => None,
        };
        if !ok {
            return None;
        }
        Some(Vrrp {
            vrid: vrid?,
            priority: priority? as u8,
            version: version?,
            advert_interval: advert_interval?,
            preempt,
            preempt_delay,
            peers: peers?,
            auth_pass,
            auth_key_file,
            track: track?,
            witness: witness?,
        })
    }

    /// `witness = { address, interval, timeout }` of a router advertising every `adv`.
    fn witness(
        &mut self,
        w: &Spanned<RawWitness>,
        adv: Duration,
        vips: Option<&[IpAddr]>,
        peers: Option<&[IpAddr]>,
    ) -> Option<Witness> {
        let raw = w.get_ref();
        let address = match &raw.address {
            Some(a) => self.unicast_ip(a, "witness address").and_then(|ip| {
                if vips.is_some_and(|v| v.contains(&ip)) {
                    self.err(a.span(), format!("witness address {ip} is one of this router's VIPs: pick an address another host answers for (e.g. the gateway)"));
                    None
                } else if peers.is_some_and(|p| p.contains(&ip)) {
                    self.err(a.span(), format!("witness address {ip} is this router's peer: the witness must be a third host (e.g. the gateway)"));
                    None
                } else {
                    Some(ip)
                }
            }),
            None => {
                self.missing(
                    "address",
                    w.span(),
                    "witness needs `address` (e.g. the gateway of the segment, which answers ICMP echo)",
                );
                None
            }
        };
        let fmt = crate::duration::format_duration;
        let interval = match &raw.interval {
            Some(i) => {
                let d = i.get_ref().get();
                if d < Witness::MIN_INTERVAL {
                    self.err(
                        i.span(),
                        format!(
                            "witness interval must be at least {}, got {}",
                            fmt(Witness::MIN_INTERVAL),
                            fmt(d)
                        ),
                    );
                    None
                } else {
                    Some(d)
                }
            }
            None => Some(Witness::default_interval(adv)),
        };
        let timeout = raw
            .timeout
            .as_ref()
            .map_or(Witness::default_timeout(adv), |t| t.get_ref().get());
        let at = raw
            .timeout
            .as_ref()
            .or(raw.interval.as_ref())
            .map_or(w.span(), Spanned::span);
        let mut ok = true;
        if timeout > adv * 3 {
            self.err(at.clone(), format!("witness timeout ({}) must not exceed 3 × advert_interval ({}), the shortest Master_Down_Interval: a cut-off master would still serve when its peer takes over", fmt(timeout), fmt(adv * 3)));
            ok = false;
        }
        if let Some(iv) = interval
            && timeout < iv * 2
        {
            self.err(at, format!("witness timeout ({}) must be at least twice the probe interval ({}): one lost probe must not count as unreachable", fmt(timeout), fmt(iv)));
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Witness {
            address: address?,
            interval: interval?,
            timeout,
        })
    }

    fn peers(&mut self, raw: &RawRouter, vips: Option<&[IpAddr]>) -> Option<Vec<IpAddr>> {
        let Some(list) = &raw.peers else {
            return Some(Vec::new());
        };
        let mut ok = true;
        let mut out: Vec<IpAddr> = Vec::new();
        let fam = vips.and_then(|v| v.first().copied());
        for p in list.get_ref() {
            let Some(ip) = self.unicast_ip(p, "peer") else {
                ok = false;
                continue;
            };
            if let Some(f) = fam
                && family(f) != family(ip)
            {
                self.err(
                    p.span(),
                    format!("peer {ip} is {} but the VIPs are {}", family(ip), family(f)),
                );
                ok = false;
            } else if out.contains(&ip) {
                self.err(p.span(), format!("peer {ip} is listed twice"));
                ok = false;
            } else if vips.is_some_and(|v| v.contains(&ip)) {
                self.err(p.span(), format!("peer {ip} is one of this router's VIPs"));
                ok = false;
            }
            out.push(ip);
        }
        ok.then_some(out)
    }

    fn track(&mut self, raw: &RawRouter, checks: &Checks) -> Option<Vec<Track>> {
        let Some(list) = &raw.track else {
            return Some(Vec::new());
        };
        let mut ok = true;
        let mut out: Vec<Track> = Vec::new();
        for t in list.get_ref() {
            let check = match &t.get_ref().check {
                Some(c) => self.check_ref(c, checks, "track"),
                None => {
                    self.missing(
                        "check",
                        t.span(),
                        "a track entry needs `check` (the name of a [[check]])",
                    );
                    None
                }
            };
            let weight = match &t.get_ref().weight {
                Some(w) => self.int(w, "track weight", -254, 254),
                None => {
                    self.missing("weight", t.span(), "a track entry needs `weight`: positive = added while the check passes, negative = added while it fails, 0 = fault while it fails");
                    None
                }
            };
            match (check, weight) {
                (Some(check), Some(weight)) => {
                    if out.iter().any(|x| x.check == check) {
                        let at = t.get_ref().check.as_ref().map_or(t.span(), Spanned::span);
                        self.err(at, format!("check {check:?} is tracked twice"));
                        ok = false;
                    }
                    out.push(Track {
                        check,
                        weight: weight as i16,
                    });
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn check_ref(&mut self, c: &Spanned<String>, checks: &Checks, what: &str) -> Option<String> {
        if checks.names.contains(c.get_ref()) {
            Some(c.get_ref().clone())
        } else {
            self.err(
                c.span(),
                format!(
                    "{what} names check {:?}, but there is no [[check]] with that name",
                    c.get_ref()
                ),
            );
            None
        }
    }

    fn gates(&mut self, raw: &RawRouter, checks: &Checks) -> Option<Vec<String>> {
        let Some(list) = &raw.gates else {
            return Some(Vec::new());
        };
        let mut ok = true;
        let mut out: Vec<String> = Vec::new();
        for g in list.get_ref() {
            match self.check_ref(g, checks, "gate") {
                Some(name) if out.contains(&name) => {
                    self.err(g.span(), format!("gate {name:?} is listed twice"));
                    ok = false;
                }
                Some(name) => out.push(name),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn hooks(&mut self, raw: &RawRouter) -> Option<Hooks> {
        let Some(h) = &raw.hooks else {
            return Some(Hooks::default());
        };
        let command = |cx: &mut Self, v: &Option<Spanned<RawCommand>>, what: &str| match v {
            Some(c) => cx.hook_command(c, what).map(Some),
            None => Some(None),
        };
        let master = command(self, &h.master, "hooks.master");
        let backup = command(self, &h.backup, "hooks.backup");
        let fault = command(self, &h.fault, "hooks.fault");
        let stop = command(self, &h.stop, "hooks.stop");
        let notify = command(self, &h.notify, "hooks.notify");
        let timeout = match &h.timeout {
            Some(t) => self.positive(t, "hooks.timeout"),
            None => Some(Hooks::DEFAULT_TIMEOUT),
        };
        let run_as = self.run_as(&h.user, &h.group);
        Some(Hooks {
            master: master?,
            backup: backup?,
            fault: fault?,
            stop: stop?,
            notify: notify?,
            timeout: timeout?,
            run_as: run_as?,
        })
    }

    /// A hook: an absolute path, or `[absolute path, args...]`.
    fn hook_command(&mut self, c: &Spanned<RawCommand>, what: &str) -> Option<HookCommand> {
        let (program, args) = match c.get_ref() {
            RawCommand::Path(p) => (p.clone(), Vec::new()),
            RawCommand::Argv(v) => match v.split_first() {
                Some((p, rest)) => (p.clone(), rest.to_vec()),
                None => {
                    self.err(c.span(), format!("{what} must not be an empty array"));
                    return None;
                }
            },
        };
        let program = self.abs_path(&Spanned::new(c.span(), PathBuf::from(program)), what)?;
        let (line, col) = self.idx.position(c.span().start);
        Some(HookCommand {
            program,
            args,
            at: Position { line, col },
        })
    }

    /// Where `command`'s program (its first element, else the array) is written.
    fn at(&self, command: &Spanned<Vec<Spanned<String>>>) -> Position {
        let span = command
            .get_ref()
            .first()
            .map_or_else(|| command.span(), Spanned::span);
        let (line, col) = self.idx.position(span.start);
        Position { line, col }
    }

    /// `user` and `group` of an exec check or of hooks: names as in the user and group
    /// databases (that they exist is checked where they are used, by the agent).
    fn run_as(
        &mut self,
        user: &Option<Spanned<String>>,
        group: &Option<Spanned<String>>,
    ) -> Option<Option<RunAs>> {
        let name = |cx: &mut Self, v: &Spanned<String>, what: &str| {
            let s = v.get_ref();
            let ok = !s.is_empty()
                && s.len() <= 256
                && !s.starts_with('-')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == '/');
            if ok {
                Some(s.clone())
            } else {
                cx.err(v.span(), format!("{what} {s:?} is not a valid {what} name"));
                None
            }
        };
        match (user, group) {
            (None, None) => Some(None),
            (None, Some(g)) => {
                self.err(g.span(), "`group` needs `user` (the user to run as)");
                None
            }
            (Some(u), g) => {
                let user = name(self, u, "user");
                let group = match g {
                    Some(g) => name(self, g, "group").map(Some),
                    None => Some(None),
                };
                Some(Some(RunAs {
                    user: user?,
                    group: group?,
                }))
            }
        }
    }

    // ----------------------------------------------------------- [[service]]

    fn services(
        &mut self,
        items: Vec<Spanned<DeValue<'_>>>,
        node: Option<&Node>,
        routers: &Routers,
    ) -> Vec<Service> {
        let max_services = node.map_or(Node::DEFAULT_MAX_SERVICES, |n| n.max_services) as usize;
        let max_backends = node.map_or(Node::DEFAULT_MAX_BACKENDS, |n| n.max_backends) as usize;
        let mut out = Vec::new();
        let mut keys: HashMap<(IpAddr, u16, Protocol), Span> = HashMap::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        let mut total_backends = 0usize;
        for (i, item) in items.into_iter().enumerate() {
            let span = item.span();
            if i == max_services {
                self.err(
                    span.clone(),
                    format!(
                        "too many services: max_services = {max_services} (raise it in [node])"
                    ),
                );
            }
            let Some(raw) = self.de::<RawService>("[[service]]", item) else {
                continue;
            };
            let vip = match &raw.vip {
                Some(v) => self.ip(v, "vip").and_then(|ip| {
                    match routers.vip_owner.get(&ip) {
                        Some(r) => Some((ip, r.clone())),
                        None if routers.any_broken => None,
                        None => {
                            self.err(v.span(), format!("vip {ip} is not a VIP of any [[router]]: add it to a router's `vips`"));
                            None
                        }
                    }
                }),
                None => {
                    self.missing("vip", span.clone(), "[[service]] needs a `vip`");
                    None
                }
            };
            let port = match &raw.port {
                Some(p) => self.int(p, "port", 1, 65_535).map(|p| p as u16),
                None => {
                    self.missing("port", span.clone(), "[[service]] needs a `port`");
                    None
                }
            };
            let protocol = raw.protocol.unwrap_or_default();
            let mode = raw.mode.as_ref().map(|m| *m.get_ref()).unwrap_or_default();
            if let (Some(m), Some((ip, router))) = (&raw.mode, &vip)
                && mode == ForwardMode::Nat
            {
                if routers.bgp_vips.contains(ip) {
                    self.err(
                        m.span(),
                        format!("mode = \"nat\" is not supported on VIP {ip}: router {router:?} announces it over BGP from every node, and NAT flow state is not shared between nodes (use mode = \"dsr\")"),
                    );
                } else if ip.is_ipv6() {
                    self.err(
                        m.span(),
                        format!("mode = \"nat\" on the IPv6 VIP {ip}: NAT is IPv4 only (NAT66 is not implemented); use mode = \"dsr\""),
                    );
                } else if !routers.with_snat.contains(router) {
                    self.err(
                        m.span(),
                        format!("mode = \"nat\" needs SNAT addresses: add `snat = [\"ADDRESS\"]` to router {router:?} (an IPv4 address of its own that moves with the router)"),
                    );
                }
            }
            let mut duplicate = false;
            if let (Some((ip, _)), Some(port)) = (&vip, port) {
                let at = raw.port.as_ref().map_or(span.clone(), Spanned::span);
                if let Some(prev) = keys.get(&(*ip, port, protocol)) {
                    duplicate = true;
                    let line = self.line(prev);
                    self.err(
                        at,
                        format!(
                            "service {} is defined twice (first on line {line})",
                            default_service_name(*ip, port, protocol)
                        ),
                    );
                } else {
                    keys.insert((*ip, port, protocol), span.clone());
                }
            }
            let name = match (&raw.name, &vip, port) {
                (Some(n), _, _) => self.label(n, "service name").map(|s| (s, n.span())),
                // A defaulted name repeats only if the service does (reported above).
                (None, Some(_), Some(_)) if duplicate => None,
                (None, Some((ip, _)), Some(port)) => {
                    Some((default_service_name(*ip, port, protocol), span.clone()))
                }
                _ => None,
            };
            let name = name.and_then(|(name, at)| {
                if let Some(prev) = names.get(&name) {
                    let line = self.line(prev);
                    self.err(
                        at,
                        format!("duplicate service name {name:?} (first on line {line})"),
                    );
                    None
                } else {
                    names.insert(name.clone(), at);
                    Some(name)
                }
            });
            let check = match &raw.check {
                Some(c) => self.service_check(c).map(Some),
                None => Some(None),
            };
            let backends = self.backends(
                &raw,
                &span,
                vip.as_ref().map(|v| v.0),
                port,
                mode,
                &mut total_backends,
                max_backends,
            );
            if let (Some(name), Some((vip, router)), Some(port), Some(check), Some(backends)) =
                (name, vip, port, check, backends)
            {
                out.push(Service {
                    name,
                    vip,
                    port,
                    protocol,
                    mode,
                    hash: raw.hash.unwrap_or_default(),
                    router,
                    check,
                    backends,
                });
            }
        }
        out
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "service context shared with every backend"
    )]
    fn backends(
        &mut self,
        raw: &RawService,
        span: &Span,
        vip: Option<IpAddr>,
        service_port: Option<u16>,
        mode: ForwardMode,
        total: &mut usize,
        max_backends: usize,
    ) -> Option<Vec<Backend>> {
        let Some(list) = &raw.backends else {
            self.missing(
                "backends",
                span.clone(),
                "[[service]] needs `backends` (at least one)",
            );
            return None;
        };
        if list.get_ref().is_empty() {
            self.err(list.span(), "backends must not be empty");
            return None;
        }
        let mut ok = true;
        let mut out: Vec<Backend> = Vec::new();
        let mut seen: HashMap<(IpAddr, u16), Span> = HashMap::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        for b in list.get_ref() {
            *total += 1;
            if *total == max_backends + 1 {
                self.err(b.span(), format!("too many backends in all services: max_backends = {max_backends} (raise it in [node])"));
                ok = false;
            }
            let rb = b.get_ref();
            let address = match &rb.address {
                Some(a) => self
                    .unicast_ip(a, "backend address")
                    .and_then(|ip| match vip {
                        Some(v) if family(v) != family(ip) => {
                            self.err(
                                a.span(),
                                format!(
                                    "backend {ip} is {} but the service VIP {v} is {}",
                                    family(ip),
                                    family(v)
                                ),
                            );
                            None
                        }
                        Some(v) if v == ip => {
                            self.err(a.span(), format!("backend {ip} is the service VIP itself"));
                            None
                        }
                        _ => Some(ip),
                    }),
                None => {
                    self.missing("address", b.span(), "a backend needs an `address`");
                    None
                }
            };
            let port = match (&rb.port, service_port) {
                (Some(p), _) => self.int(p, "backend port", 1, 65_535).map(|p| p as u16),
                (None, sp) => sp,
            };
            if let (ForwardMode::Dsr, Some(p), Some(port), Some(sp)) =
                (mode, &rb.port, port, service_port)
                && port != sp
                && !self.removed.contains("mode")
            {
                self.err(
                    p.span(),
                    format!("backend port {port} differs from the service port {sp}: direct server return cannot change ports (use mode = \"nat\")"),
                );
                ok = false;
            }
            let weight = self.opt_int(&rb.weight, "backend weight", 0, 1000, 1);
            let (Some(address), Some(port), Some(weight)) = (address, port, weight) else {
                ok = false;
                continue;
            };
            let at = rb.address.as_ref().map_or(b.span(), Spanned::span);
            if let Some(prev) = seen.get(&(address, port)) {
                let line = self.line(prev);
                self.err(
                    at,
                    format!(
                        "backend {} is listed twice in this service (first on line {line})",
                        default_backend_name(address, port)
                    ),
                );
                ok = false;
                continue;
            }
            seen.insert((address, port), at.clone());
            let name = match &rb.name {
                Some(n) => match self.label(n, "backend name") {
                    Some(s) => (s, n.span()),
                    None => {
                        ok = false;
                        continue;
                    }
                },
                None => (default_backend_name(address, port), at),
            };
            if let Some(prev) = names.get(&name.0) {
                let line = self.line(prev);
                self.err(
                    name.1,
                    format!(
                        "backend name {:?} is used twice in this service (first on line {line})",
                        name.0
                    ),
                );
                ok = false;
                continue;
            }
            names.insert(name.0.clone(), name.1);
            out.push(Backend {
                name: name.0,
                address,
                port,
                weight: weight as u16,
            });
        }
        ok.then_some(out)
    }

    fn service_check(&mut self, c: &Spanned<RawServiceCheck>) -> Option<ServiceCheck> {
        let raw = c.get_ref();
        let timing = self.timing(&raw.interval, &raw.timeout, &raw.rise, &raw.fall);
        self.no_https_key(&raw.https);
        let Some(tag) = raw.kind else {
            self.missing(
                "kind",
                c.span(),
                "a service check needs `kind`: tcp, http, https or exec",
            );
            return None;
        };
        let name = match tag {
            ServiceCheckTag::Tcp => "tcp",
            ServiceCheckTag::Http => "http",
            ServiceCheckTag::Https => "https",
            ServiceCheckTag::Exec => "exec",
        };
        let ctx = format!("service checks of kind {name}");
        let http = matches!(tag, ServiceCheckTag::Http | ServiceCheckTag::Https);
        if !http {
            self.not_for(raw.path.as_ref().map(Spanned::span), "path", &ctx);
            self.not_for(
                raw.expect_status.as_ref().map(Spanned::span),
                "expect_status",
                &ctx,
            );
            self.not_for(
                raw.expect_body.as_ref().map(Spanned::span),
                "expect_body",
                &ctx,
            );
        }
        if tag != ServiceCheckTag::Https {
            for (key, at) in raw.tls().written() {
                self.not_for(at, key, &ctx);
            }
        }
        if tag != ServiceCheckTag::Exec {
            self.not_for(raw.command.as_ref().map(Spanned::span), "command", &ctx);
            self.not_for(raw.user.as_ref().map(Spanned::span), "user", &ctx);
            self.not_for(raw.group.as_ref().map(Spanned::span), "group", &ctx);
        }
        let kind = match tag {
            ServiceCheckTag::Tcp => Some(ServiceCheckKind::Tcp),
            ServiceCheckTag::Http => self
                .http_get(&raw.path, &raw.expect_status, &raw.expect_body)
                .map(ServiceCheckKind::Http),
            ServiceCheckTag::Https => {
                let get = self.http_get(&raw.path, &raw.expect_status, &raw.expect_body);
                let tls = self.tls(&raw.tls());
                get.zip(tls)
                    .map(|(get, tls)| ServiceCheckKind::Https { get, tls })
            }
            ServiceCheckTag::Exec => match &raw.command {
                Some(cmd) => {
                    let at = self.at(cmd);
                    let command = self.command(cmd);
                    let run_as = self.run_as(&raw.user, &raw.group);
                    Some(ServiceCheckKind::Exec {
                        command: command?,
                        run_as: run_as?,
                        at,
                    })
                }
                None => {
                    self.missing(
                        "command",
                        c.span(),
                        "an exec check needs `command` = [program, args...]",
                    );
                    None
                }
            },
        };
        let (interval, timeout, rise, fall) = timing?;
        Some(ServiceCheck {
            kind: kind?,
            interval,
            timeout,
            rise,
            fall,
        })
    }
}

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

fn tag_name(t: CheckTag) -> &'static str {
    match t {
        CheckTag::Tcp => "tcp",
        CheckTag::Http => "http",
        CheckTag::Https => "https",
        CheckTag::Exec => "exec",
        CheckTag::Process => "process",
        CheckTag::File => "file",
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

pub(crate) fn default_service_name(vip: IpAddr, port: u16, protocol: Protocol) -> String {
    format!(
        "{}/{}",
        std::net::SocketAddr::new(vip, port),
        protocol.as_str()
    )
}

pub(crate) fn default_backend_name(address: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

/// Trial division is plenty for numbers up to about a million.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// A server name for SNI: an IP address, or a DNS name (RFC 1123 labels of letters,
/// digits and `-`, at most 63 characters each and 253 in all; a final dot allowed).
fn valid_server_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parse `http[s]://host[:port][/path]`.
fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if authority.contains('@') {
        return Err("user names and passwords are not supported".into());
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in host")?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "bad IPv6 address in host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("garbage after ']'")?),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("missing or invalid host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or("invalid port")?,
    };
    Ok((https, host, port, path))
}

/// Make serde's wording readable for people who write TOML, not Rust.
fn friendly(message: &str) -> String {
    message
        .replace("expected i64", "expected an integer")
        .replace("expected a boolean", "expected true or false")
        .replace("expected a string", "expected a string in quotes")
        .replace("expected struct ", "expected a table ")
        .replace("expected a sequence", "expected an array [...]")
}

fn contains(span: &Span, pos: usize) -> bool {
    span.contains(&pos) || span.start == pos
}

/// Remove the innermost table entry (or array element) that `pos` points into.
/// Records the names of removed keys; an array emptied by the removal is
/// removed with its key. Returns whether anything was removed.
fn remove_at(v: &mut DeValue<'_>, pos: usize, removed: &mut HashSet<String>) -> bool {
    match v {
        DeValue::Table(t) => {
            // (key, remove the whole entry?)
            let mut found: Option<(String, bool)> = None;
            for (k, val) in t.iter_mut() {
                let scalar = !matches!(val.get_ref(), DeValue::Table(_) | DeValue::Array(_));
                if contains(&k.span(), pos) || (scalar && contains(&val.span(), pos)) {
                    found = Some((k.get_ref().to_string(), true));
                    break;
                }
                if !scalar && remove_at(val.get_mut(), pos, removed) {
                    let emptied = matches!(val.get_ref(), DeValue::Array(a) if a.is_empty());
                    found = Some((k.get_ref().to_string(), emptied));
                    break;
                }
            }
            match found {
                Some((key, whole)) => {
                    if whole {
                        t.remove(key.as_str());
                    }
                    removed.insert(key);
                    true
                }
                None => false,
            }
        }
        DeValue::Array(a) => {
            let mut hit = None;
            for (i, el) in a.iter_mut().enumerate() {
                let nested = matches!(el.get_ref(), DeValue::Table(_) | DeValue::Array(_));
                if nested && remove_at(el.get_mut(), pos, removed) {
                    return true;
                }
                if contains(&el.span(), pos) {
                    hit = Some(i);
                    break;
                }
            }
            let Some(i) = hit else { return false };
            let old = std::mem::replace(a, toml::de::DeArray::new());
            for (j, el) in old.into_iter().enumerate() {
                if j != i {
                    a.push(el);
                }
            }
            true
        }
        _ => false,
    }
}

/// A string value `key` in a table, if written.
fn str_field(v: &DeValue<'_>, key: &str) -> Option<String> {
    let DeValue::Table(t) = v else { return None };
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
}

/// The strings of an array value `key` in a table, if written.
fn str_list_field(v: &DeValue<'_>, key: &str) -> Vec<String> {
    let DeValue::Table(t) = v else {
        return Vec::new();
    };
    let Some((_, DeValue::Array(a))) = t
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, v)| (k, v.get_ref()))
    else {
        return Vec::new();
    };
    a.iter()
        .filter_map(|v| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let primes: Vec<u64> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(1_000_003));
        assert!(!is_prime(65_536));
        assert!(is_prime(251));
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://10.0.0.1/health"),
            Ok((false, "10.0.0.1".into(), 80, "/health".into()))
        );
        assert_eq!(
            parse_url("https://example.org"),
            Ok((true, "example.org".into(), 443, "/".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:8080/x?y=1"),
            Ok((false, "::1".into(), 8080, "/x?y=1".into()))
        );
        assert_eq!(
            parse_url("http://h:81?q"),
            Ok((false, "h".into(), 81, "/?q".into()))
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:0/").is_err());
        assert!(parse_url("http://u:p@h/").is_err());
        assert!(parse_url("http://[zz]/").is_err());
    }
}
