//! haproxy.cfg (`mode tcp`) into `[[service]]`s on the imported routers' VIPs.
//!
//! A frontend's `bind VIP:PORT` and its `default_backend`'s `server` lines (or a
//! `listen` section's own) become a service: address, port and weight per server,
//! `check` with `inter`/`rise`/`fall` as the service check (`option httpchk` makes it
//! an http check), `disabled` a drained backend (weight 0), `backup` servers left
//! out. `balance source` is `hash = "source-ip"`; other algorithms become `5-tuple`
//! (reported). HTTP-mode proxies are reported, not translated.
//!
//! The grammar (HAProxy 2.6's, from its configuration manual): a section starts with
//! `global`, `defaults`, `frontend`, `backend`, `listen`, ... at any indentation;
//! `#` outside quotes starts a comment; words are split on blanks, `"..."` quotes
//! with backslash escapes, `'...'` quotes without, `\` escapes outside quotes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::ParseError;
use crate::keepalived::fit_timeout;
use crate::plan::{Backend, Hash, HttpsCheck, Mode, Plan, Service, ServiceCheck, ServiceCheckKind};
use crate::report::Report;
use crate::source::{Files, Loc};

/// A line: words with the position of the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: Loc,
    pub words: Vec<String>,
}

impl Line {
    fn kw(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i + 1).map(String::as_str)
    }
}

/// A section: its header line and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub head: Line,
    pub lines: Vec<Line>,
}

impl Section {
    fn kind(&self) -> &str {
        self.head.kw()
    }

    fn name(&self) -> &str {
        self.head.arg(0).unwrap_or("")
    }

    fn label(&self) -> String {
        format!("{} {}", self.kind(), self.name())
            .trim_end()
            .to_owned()
    }
}

const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "crt-store",
    "traces",
];

/// Parse haproxy.cfg text (file index `file`).
pub fn parse(text: &str, file: usize) -> Result<Vec<Section>, ParseError> {
    let mut out: Vec<Section> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line_no = n + 1;
        let Some((words, col)) = split(raw).map_err(|(col, m)| {
            ParseError::at(
                Loc {
                    file,
                    line: line_no,
                    col,
                },
                m,
            )
        })?
        else {
            continue;
        };
        let line = Line {
            at: Loc {
                file,
                line: line_no,
                col,
            },
            words,
        };
        if SECTIONS.contains(&line.kw()) {
            out.push(Section {
                head: line,
                lines: Vec::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.lines.push(line);
        } else {
            return Err(ParseError::at(
                line.at,
                format!(
                    "{:?} outside a section (global, defaults, frontend, backend, listen, ...)",
                    line.kw()
                ),
            ));
        }
    }
    Ok(out)
}

/// Words of a line and the column of the first; `None` for blank/comment lines.
#[expect(
    clippy::type_complexity,
    reason = "(words, column) or (column, message)"
)]
fn split(raw: &str) -> Result<Option<(Vec<String>, usize)>, (usize, String)> {
    let c: Vec<char> = raw.chars().collect();
    let mut words = Vec::new();
    let mut first_col = 0;
    let mut i = 0;
    while i < c.len() {
        if c[i] == ' ' || c[i] == '\t' {
            i += 1;
            continue;
        }
        if c[i] == '#' {
            break;
        }
        if words.is_empty() {
            first_col = i + 1;
        }
        let mut w = String::new();
        while i < c.len() && c[i] != ' ' && c[i] != '\t' {
            match c[i] {
                '#' => break,
                '\\' => {
                    i += 1;
                    if let Some(&e) = c.get(i) {
                        w.push(e);
                        i += 1;
                    }
                }
                '"' | '\'' => i = quoted(&c, i, &mut w)?,
                ch => {
                    w.push(ch);
                    i += 1;
                }
            }
        }
        words.push(w);
        if c.get(i) == Some(&'#') {
            break;
        }
    }
    Ok((!words.is_empty()).then_some((words, first_col)))
}

/// The quoted part of a word that opens at `c[open]` (`"` or `'`): its text is added to
/// `w` and the index after the closing quote returned. Inside `"..."` a backslash
/// escapes the next character; inside `'...'` nothing is special.
fn quoted(c: &[char], open: usize, w: &mut String) -> Result<usize, (usize, String)> {
    let quote = c[open];
    let mut i = open + 1;
    loop {
        match c.get(i) {
            None if quote == '"' => return Err((open + 1, "unterminated double quote".into())),
            None => return Err((open + 1, "unterminated single quote".into())),
            Some(&ch) if ch == quote => return Ok(i + 1),
            Some('\\') if quote == '"' => {
                if let Some(&e) = c.get(i + 1) {
                    w.push(e);
                }
                i += 2;
            }
            Some(&ch) => {
                w.push(ch);
                i += 1;
            }
        }
    }
}

/// HAProxy's time format: a number with an optional unit (`us`, `ms`, `s`, `m`, `h`,
/// `d`); no unit means milliseconds.
pub fn time(v: &str) -> Option<Duration> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    })
}

/// Server options that apply (`default-server` or the `server` line).
#[derive(Debug, Clone, Default)]
struct ServerOpts {
    check: bool,
    inter: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    weight: Option<u32>,
    disabled: bool,
    backup: bool,
    check_port: Option<u16>,
    check_ssl: bool,
    /// The server's TLS settings, which `check-ssl` checks use too: `verify
    /// none|required`, `ca-file`, `check-sni`, `verifyhost`; each with where it was
    /// written (reported there when no https check uses it).
    verify: Option<(bool, Loc)>,
    ca_file: Option<(String, Loc)>,
    check_sni: Option<(String, Loc)>,
    verifyhost: Option<(String, Loc)>,
}

impl ServerOpts {
    /// Each TLS setting written, with where.
    fn tls_locs(&self) -> Vec<(&'static str, Loc)> {
        [
            ("verify", self.verify.as_ref().map(|v| v.1)),
            ("ca-file", self.ca_file.as_ref().map(|v| v.1)),
            ("check-sni", self.check_sni.as_ref().map(|v| v.1)),
            ("verifyhost", self.verifyhost.as_ref().map(|v| v.1)),
        ]
        .into_iter()
        .filter_map(|(k, at)| at.map(|at| (k, at)))
        .collect()
    }

    /// The TLS settings, comparable between servers.
    fn tls_key(&self) -> (Option<bool>, Option<&str>, Option<&str>, Option<&str>) {
        (
            self.verify.as_ref().map(|v| v.0),
            self.ca_file.as_ref().map(|v| v.0.as_str()),
            self.check_sni.as_ref().map(|v| v.0.as_str()),
            self.verifyhost.as_ref().map(|v| v.0.as_str()),
        )
    }
}

/// What a proxy section says, with `defaults` applied.
#[derive(Debug, Clone, Default)]
struct Proxy {
    mode: Option<(String, Loc)>,
    balance: Option<(String, Loc)>,
    default_server: ServerOpts,
    timeout_check: Option<Duration>,
    httpchk: Option<(String, Loc)>,
    expect_status: Option<u16>,
    other_check: Option<(String, Loc)>,
}

fn opts(cx: &mut Report, words: &[String], at: Loc, what: &str, o: &mut ServerOpts) {
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let next = words.get(i + 1).map(String::as_str);
        let num = |v: Option<&str>| v.and_then(|v| v.parse::<u32>().ok());
        match w {
            "check" => o.check = true,
            "no-check" => o.check = false,
            "inter" => {
                o.inter = next.and_then(time);
                i += 1;
            }
            "rise" => {
                o.rise = num(next);
                i += 1;
            }
            "fall" => {
                o.fall = num(next);
                i += 1;
            }
            "weight" => {
                o.weight = num(next);
                i += 1;
            }
            "port" => {
                o.check_port = next.and_then(|v| v.parse().ok());
                i += 1;
            }
            "disabled" => o.disabled = true,
            "enabled" => o.disabled = false,
            "backup" => o.backup = true,
            "check-ssl" => o.check_ssl = true,
            "verify" => {
                match next {
                    Some("none") => o.verify = Some((false, at)),
                    Some("required") => o.verify = Some((true, at)),
                    _ => cx.not_translated(
                        at,
                        format!("{what} verify"),
                        "verify takes none or required",
                    ),
                }
                i += 1;
            }
            "ca-file" => {
                o.ca_file = next.map(|v| (v.to_owned(), at));
                i += 1;
            }
            "check-sni" => {
                o.check_sni = next.map(|v| (v.to_owned(), at));
                i += 1;
            }
            "verifyhost" => {
                o.verifyhost = next.map(|v| (v.to_owned(), at));
                i += 1;
            }
            "crt" => {
                cx.not_translated(at, format!("{what} crt"), "a client certificate: fo's https checks take it as `cert` and `key`, two PEM files (key mode 0600); add them by hand");
                i += 1;
            }
            "fastinter"
            | "downinter"
            | "maxconn"
            | "maxqueue"
            | "minconn"
            | "slowstart"
            | "cookie"
            | "addr"
            | "agent-port"
            | "agent-inter"
            | "on-error"
            | "on-marked-down"
            | "on-marked-up"
            | "error-limit"
            | "observe"
            | "init-addr"
            | "resolvers"
            | "source"
            | "sni"
            | "alpn"
            | "proto"
            | "pool-max-conn"
            | "pool-purge-delay"
            | "max-reuse"
            | "id"
            | "track"
            | "redir"
            | "send-proxy-v2-options"
            | "ws"
            | "log-proto"
            | "namespace"
            | "check-proto"
            | "check-alpn"
            | "agent-send" => {
                cx.not_translated(at, format!("{what} {w}"), "no such backend setting in fo");
                i += 1;
            }
            "no-verifyhost" => o.verifyhost = None,
            "ssl" | "send-proxy" | "send-proxy-v2" | "no-ssl" | "tfo" | "non-stick"
            | "check-send-proxy" | "agent-check" | "no-agent-check" | "allow-0rtt"
            | "no-tls-tickets" => {
                cx.not_translated(at, format!("{what} {w}"), "no such backend setting in fo")
            }
            _ => cx.not_translated(
                at,
                format!("{what} {w}"),
                "not a server option the importer knows",
            ),
        }
        i += 1;
    }
}

/// Apply the lines of a `defaults`/`backend`/`listen` section to `p`; returns the
/// server lines and the frontend-ish lines (bind, default_backend) untouched.
fn proxy_lines<'s>(
    r: &mut Report,
    sec: &'s Section,
    p: &mut Proxy,
) -> (Vec<&'s Line>, Vec<&'s Line>) {
    let mut servers = Vec::new();
    let mut front = Vec::new();
    let label = sec.label();
    for l in &sec.lines {
        let d = format!("{label} > {}", l.kw());
        match l.kw() {
            "mode" => p.mode = l.arg(0).map(|m| (m.to_owned(), l.at)),
            "balance" => p.balance = l.arg(0).map(|b| (b.to_owned(), l.at)),
            "default-server" => {
                let mut o = p.default_server.clone();
                opts(r, &l.words[1..], l.at, &d, &mut o);
                p.default_server = o;
            }
            "server" => servers.push(l),
            "bind" | "default_backend" | "use_backend" => front.push(l),
            "timeout" => match l.arg(0) {
                Some("check") => p.timeout_check = l.arg(1).and_then(time),
                _ => r.ignored(
                    l.at,
                    format!("{d} {}", l.arg(0).unwrap_or("")),
                    "fo forwards packets without a proxy: no proxy timeouts",
                ),
            },
            "option" => match l.arg(0) {
                Some("httpchk") => {
                    // `option httpchk [METHOD] [URI] [VERSION]` or just a URI.
                    let path = match (l.arg(1), l.arg(2)) {
                        (Some(_), Some(uri)) => uri.to_owned(),
                        (Some(uri), None) if uri.starts_with('/') => uri.to_owned(),
                        _ => "/".to_owned(),
                    };
                    p.httpchk = Some((path, l.at));
                }
                Some(
                    o @ ("ssl-hello-chk" | "smtpchk" | "mysql-check" | "pgsql-check"
                    | "redis-check" | "ldap-check" | "tcp-check" | "external-check"
                    | "spop-check"),
                ) => {
                    p.other_check = Some((o.to_owned(), l.at));
                }
                Some(
                    "tcplog"
                    | "httplog"
                    | "dontlognull"
                    | "log-health-checks"
                    | "logasap"
                    | "log-separate-errors"
                    | "dontlog-normal",
                ) => r.ignored(
                    l.at,
                    format!("{d} {}", l.arg(0).unwrap_or("")),
                    "fo does not log connections",
                ),
                Some(
                    "redispatch" | "tcpka" | "clitcpka" | "srvtcpka" | "abortonclose"
                    | "splice-auto" | "splice-request" | "splice-response" | "nolinger"
                    | "tcp-smart-accept" | "tcp-smart-connect",
                ) => r.ignored(
                    l.at,
                    format!("{d} {}", l.arg(0).unwrap_or("")),
                    "proxy connection behaviour; fo forwards the client's own connection",
                ),
                Some(o) => r.not_translated(l.at, format!("{d} {o}"), "no equivalent in fo"),
                None => r.not_translated(l.at, d, "option without a name"),
            },
            "http-check" => match (l.arg(0), l.arg(1), l.arg(2)) {
                (Some("expect"), Some("status"), Some(code)) => match code.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => p.expect_status = Some(c),
                    _ => r.not_translated(l.at, d, "fo expects one status code"),
                },
                (Some("send"), ..) => {
                    let uri = l
                        .words
                        .iter()
                        .position(|w| w == "uri")
                        .and_then(|i| l.words.get(i + 1));
                    if let Some(uri) = uri {
                        let at = p.httpchk.as_ref().map_or(l.at, |h| h.1);
                        p.httpchk = Some((uri.clone(), at));
                    }
                }
                _ => r.not_translated(
                    l.at,
                    d,
                    "fo's http checks match one status code (and optionally a body substring)",
                ),
            },
            "hash-type" => r.ignored(l.at, d, "fo always hashes consistently (Maglev)"),
            "log" | "log-format" | "log-tag" | "error-log-format" => {
                r.ignored(l.at, d, "fo does not log connections")
            }
            "retries" => r.ignored(
                l.at,
                d,
                "no proxy retries: fo forwards the client's own connection",
            ),
            "maxconn" | "fullconn" | "rate-limit" => {
                r.not_translated(l.at, d, "fo does not limit connections")
            }
            "stats" => {
                r.not_translated(l.at, d, "fo reports through `fo-agent status` and /metrics")
            }
            "description" => r.ignored(l.at, d, "no effect"),
            _ => r.not_translated(l.at, d, "no equivalent in fo (a proxy feature)"),
        }
    }
    (servers, front)
}

/// Translate haproxy.cfg sections into services on the plan's VIPs.
pub fn translate(secs: &[Section], plan: &mut Plan, files: &Files, r: &mut Report) {
    let _ = files;
    let vips: Vec<(IpAddr, String)> = plan
        .routers
        .iter()
        .flat_map(|ro| ro.vips.iter().map(|v| (*v, ro.name.clone())))
        .collect();
    let mut defaults = Proxy::default();
    // Backends by name, with the defaults in force where they were written.
    let mut backends: HashMap<&str, (&Section, Proxy)> = HashMap::new();
    let mut current = Proxy::default();
    let mut fronts: Vec<(&Section, Proxy)> = Vec::new();
    let mut server_verify = true;
    for sec in secs {
        match sec.kind() {
            "defaults" => {
                let mut d = Proxy::default();
                let (servers, front) = proxy_lines(r, sec, &mut d);
                for l in servers.into_iter().chain(front) {
                    r.not_translated(
                        l.at,
                        format!("{} > {}", sec.label(), l.kw()),
                        "not allowed in defaults",
                    );
                }
                defaults = d;
                current = defaults.clone();
            }
            "backend" => {
                backends.insert(sec.name(), (sec, current.clone()));
            }
            "frontend" | "listen" => fronts.push((sec, current.clone())),
            "global" => {
                for l in &sec.lines {
                    if l.kw() == "ssl-server-verify" {
                        // The default of `verify` on server lines (check-ssl checks).
                        server_verify = l.arg(0) != Some("none");
                        continue;
                    }
                    r.ignored(
                        l.at,
                        format!("global > {}", l.kw()),
                        "HAProxy process setting",
                    );
                }
            }
            _ => {
                r.not_translated(sec.head.at, sec.label(), "no equivalent in fo");
            }
        }
    }
    let _ = defaults;
    let mut used: Vec<&str> = Vec::new();
    for (sec, base) in fronts {
        let mut fp = base.clone();
        let (own_servers, front) = proxy_lines(r, sec, &mut fp);
        let label = sec.label();
        let mode = fp.mode.clone().map_or("tcp".to_owned(), |m| m.0);
        if mode != "tcp" {
            r.not_translated(
                sec.head.at,
                label,
                format!("mode {mode}: fo balances at layer 4 (TCP/UDP) and does not proxy HTTP"),
            );
            continue;
        }
        // The servers: a listen section's own, or the default backend's.
        let mut servers_from: Option<(&Section, Proxy, Vec<&Line>)> = None;
        if sec.kind() == "listen" {
            servers_from = Some((sec, fp.clone(), own_servers));
        }
        let mut binds: Vec<&Line> = Vec::new();
        for l in front {
            match l.kw() {
                "bind" => binds.push(l),
                "default_backend" => {
                    let Some(name) = l.arg(0) else { continue };
                    match backends.get(name) {
                        Some((b, bp)) => {
                            let mut bp = bp.clone();
                            let (servers, stray) = proxy_lines(r, b, &mut bp);
                            for s in stray {
                                r.not_translated(s.at, format!("{} > {}", b.label(), s.kw()), "not allowed in a backend");
                            }
                            let bmode = bp.mode.clone().map_or("tcp".to_owned(), |m| m.0);
                            if bmode != "tcp" {
                                r.not_translated(b.head.at, b.label(), format!("mode {bmode}: fo does not proxy HTTP"));
                                continue;
                            }
                            used.push(b.name());
                            servers_from = Some((b, bp, servers));
                        }
                        None => r.not_translated(l.at, format!("{label} > default_backend"), format!("no backend {name}")),
                    }
                }
                _ => r.not_translated(l.at, format!("{label} > {}", l.kw()), "rules choosing backends per connection have no fo equivalent: a service has one backend set"),
            }
        }
        let Some((bsec, bp, servers)) = servers_from else {
            r.not_translated(sec.head.at, label, "no backend servers: nothing to balance");
            continue;
        };
        let Some(svc) = service_of(r, bsec, &bp, &servers, server_verify) else {
            continue;
        };
        for b in binds {
            for (vip, port) in bind_addresses(r, b, &label, &vips) {
                if port == 0 {
                    r.not_translated(b.at, format!("{label} > bind"), "port 0");
                    continue;
                }
                let active = plan
                    .services
                    .iter()
                    .filter(|o| o.commented.is_none())
                    .count();
                if active >= crate::keepalived::MAX_SERVICES {
                    r.not_translated(
                        b.at,
                        format!("{label} > bind"),
                        "more than 64 services: raise [node] max_services and translate it by hand",
                    );
                    continue;
                }
                if plan
                    .services
                    .iter()
                    .any(|s| s.vip == vip && s.port == port && !s.udp)
                {
                    r.not_translated(b.at, format!("{label} > bind"), format!("{vip}:{port}/tcp is already a service (from keepalived's virtual_server)"));
                    continue;
                }
                let mut s = svc.clone();
                s.vip = vip;
                s.port = port;
                s.from = format!("from {} {label}", files.at(sec.head.at));
                s.name = Some(if sec.kind() == "listen" {
                    sec.name().to_owned()
                } else {
                    format!("{}-{port}", sec.name())
                });
                if plan.services.iter().any(|o| o.name == s.name) {
                    s.name = Some(format!("{}-{vip}-{port}", sec.name()));
                }
                for be in &mut s.backends {
                    if be.port == 0 {
                        be.port = port;
                    }
                }
                plan.services.push(s);
            }
        }
    }
    for (name, (b, _)) in &backends {
        if !used.contains(name) {
            r.ignored(b.head.at, b.label(), "used by no translated frontend");
        }
    }
}

/// The backend part of a service (VIP and port filled in per bind).
fn service_of(
    r: &mut Report,
    sec: &Section,
    p: &Proxy,
    servers: &[&Line],
    server_verify: bool,
) -> Option<Service> {
    let label = sec.label();
    let hash = match &p.balance {
        Some((b, _)) if b == "source" => Hash::SourceIp,
        Some((b, at)) => {
            r.approximated(*at, format!("{label} > balance {b}"), "hash = \"5-tuple\": fo spreads connections by a weighted consistent hash (Maglev), not by this algorithm");
            Hash::FiveTuple
        }
        None => {
            r.approximated(
                sec.head.at,
                label.clone(),
                "no balance (HAProxy's default is roundrobin): hash = \"5-tuple\"",
            );
            Hash::FiveTuple
        }
    };
    let mut backends = Vec::new();
    let mut checked: Option<(ServerOpts, String)> = None;
    let mut any_unchecked = None;
    let mut tls_reported: Vec<(&str, Loc)> = Vec::new();
    for l in servers {
        let name = l.arg(0).unwrap_or("");
        let d = format!("{label} > server {name}");
        let Some(addr) = l.arg(1) else {
            r.not_translated(l.at, d, "no address");
            continue;
        };
        let mut o = p.default_server.clone();
        o.check = false;
        let default_check = p.default_server.check;
        opts(r, &l.words[3.min(l.words.len())..], l.at, &d, &mut o);
        o.check = o.check || (default_check && !l.words.iter().any(|w| w == "no-check"));
        if !(o.check && o.check_ssl && p.httpchk.is_some()) {
            // No https check uses them: they are HAProxy's own TLS to the server, or
            // a handshake-only check's, which fo runs as a TCP connect.
            let why = if o.check && o.check_ssl {
                "a setting of HAProxy's TLS handshake check, which fo runs as a TCP connect"
            } else {
                "HAProxy's own TLS to the server (fo forwards the client's connection untouched)"
            };
            for (key, at) in o.tls_locs() {
                if !tls_reported.contains(&(key, at)) {
                    tls_reported.push((key, at));
                    r.not_translated(at, format!("{d} {key}"), why);
                }
            }
        }
        let Some((ip, port)) = server_address(addr) else {
            r.not_translated(
                l.at,
                d,
                format!("{addr}: fo needs an IP address (and optional port), not a name"),
            );
            continue;
        };
        if !crate::keepalived::unicast(ip) || port == Some(0) {
            r.not_translated(l.at, d, format!("{addr}: not a unicast address and port"));
            continue;
        }
        if backends
            .iter()
            .any(|b: &Backend| b.address == ip && b.port == port.unwrap_or(0))
        {
            r.ignored(l.at, d, "the same address and port as an earlier server");
            continue;
        }
        if o.backup {
            r.not_translated(l.at, d, "backup servers have no fo equivalent (with every backend down fo forwards to all of them)");
            continue;
        }
        let mut weight = o.weight.unwrap_or(1).min(1000) as u16;
        if o.disabled {
            weight = 0;
            r.approximated(
                l.at,
                d.clone(),
                "disabled: weight 0 (drained: no new connections; established ones stay)",
            );
        }
        if o.check {
            if let Some(port) = o.check_port
                && Some(port) != port_or_zero(addr)
            {
                r.not_translated(
                    l.at,
                    d.clone(),
                    format!("check port {port}: fo checks each backend on its own port"),
                );
            }
            match &checked {
                None => checked = Some((o.clone(), d.clone())),
                Some((first, _)) => {
                    if first.inter != o.inter
                        || first.rise != o.rise
                        || first.fall != o.fall
                        || (first.check_ssl, first.tls_key()) != (o.check_ssl, o.tls_key())
                    {
                        r.approximated(l.at, d.clone(), "fo checks every backend of a service the same way: the first server's inter/rise/fall and TLS settings are used");
                    }
                }
            }
        } else {
            any_unchecked = Some((l.at, d.clone()));
        }
        backends.push(Backend {
            address: ip,
            port: port.unwrap_or(0),
            weight,
            name: Some(name.to_owned()),
        });
    }
    if backends.is_empty() {
        r.not_translated(
            sec.head.at,
            label,
            "no server fo can use: nothing to balance",
        );
        return None;
    }
    let check = checked.map(|(o, first_server)| {
        let interval = o
            .inter
            .unwrap_or(Duration::from_secs(2))
            .max(Duration::from_millis(10));
        let (timeout, adjusted) = fit_timeout(p.timeout_check.unwrap_or(interval), interval);
        if adjusted && p.timeout_check.is_some() {
            r.approximated(
                sec.head.at,
                format!("{label} > timeout check"),
                format!(
                    "fo needs timeout < interval: {}",
                    fo_config::format_duration(timeout)
                ),
            );
        }
        let kind = if let Some((path, at)) = &p.httpchk {
            if p.expect_status.is_none() {
                r.approximated(
                    *at,
                    format!("{label} > option httpchk"),
                    "HAProxy accepts any 2xx or 3xx; fo expects 200",
                );
            }
            let path = if path.starts_with('/') {
                path.clone()
            } else {
                format!("/{path}")
            };
            let expect_status = p.expect_status.into_iter().collect();
            if o.check_ssl {
                ServiceCheckKind::Https {
                    path,
                    expect_status,
                    tls: https_check(r, &first_server, &o, server_verify),
                }
            } else {
                ServiceCheckKind::Http {
                    path,
                    expect_status,
                }
            }
        } else {
            if o.check_ssl && p.other_check.is_none() {
                r.approximated(
                    sec.head.at,
                    format!("{label} > check-ssl"),
                    "without option httpchk HAProxy checks a TLS handshake; fo checks a TCP connect (an https check would also need an HTTP answer)",
                );
            }
            if let Some((name, at)) = &p.other_check {
                r.approximated(
                    *at,
                    format!("{label} > option {name}"),
                    "fo checks with a TCP connect instead (an exec check can run the same test)",
                );
            }
            ServiceCheckKind::Tcp
        };
        ServiceCheck {
            kind,
            interval,
            timeout,
            rise: o.rise.unwrap_or(2).clamp(1, 100),
            fall: o.fall.unwrap_or(3).clamp(1, 100),
        }
    });
    if check.is_some()
        && let Some((at, d)) = any_unchecked
    {
        r.approximated(
            at,
            d,
            "has no `check` (HAProxy counts it always up); fo checks it like the others",
        );
    }
    Some(Service {
        from: String::new(),
        commented: None,
        name: None,
        vip: IpAddr::from([0, 0, 0, 0]),
        port: 0,
        udp: false,
        mode: Mode::Dsr,
        hash,
        check,
        backends,
    })
}

/// The TLS keys of a `check-ssl` http check from the server's settings. HAProxy
/// verifies the server's certificate unless `verify none` (or `ssl-server-verify none`
/// in global): against `ca-file`, and its name against `verifyhost`, else the
/// `check-sni` name, else not at all. fo verifies the name it sends as `sni`, else
/// the backend's address.
fn https_check(r: &mut Report, server: &str, o: &ServerOpts, server_verify: bool) -> HttpsCheck {
    let d = |k: &str| format!("{server} {k}");
    let verify = o.verify.as_ref().map_or(server_verify, |v| v.0);
    let mut tls = HttpsCheck::default();
    let sni = |r: &mut Report, name: &str, at: Loc, key: &str| {
        if crate::plan::sni_accepted(name) {
            Some(name.to_owned())
        } else {
            r.not_translated(
                at,
                d(key),
                format!("{name:?} is not a DNS name or address fo can send as `sni`"),
            );
            None
        }
    };
    tls.sni = o
        .check_sni
        .as_ref()
        .and_then(|(n, at)| sni(r, n, *at, "check-sni"));
    if !verify {
        tls.insecure = true;
        if let Some((_, at)) = &o.ca_file {
            r.ignored(*at, d("ca-file"), "verify none: HAProxy verifies nothing with it, and fo's insecure = true takes no `ca`");
        }
        if let Some((_, at)) = &o.verifyhost {
            r.ignored(*at, d("verifyhost"), "verify none: no name is verified");
        }
        return tls;
    }
    match &o.ca_file {
        Some((f, _)) if f == "@system-ca" => {}
        Some((f, _)) if f.starts_with('/') => tls.ca = Some(f.clone()),
        Some((f, at)) => r.not_translated(*at, d("ca-file"), format!("{f}: fo needs an absolute path; the check uses the system store until `ca` is written")),
        None => {}
    }
    match (&o.verifyhost, &tls.sni) {
        (Some((h, _)), Some(s)) if h == s => {}
        (Some((h, at)), Some(s)) => r.approximated(
            *at,
            d("verifyhost"),
            format!("fo verifies the name it sends ({s}), not {h}"),
        ),
        (Some((h, at)), None) => {
            tls.sni = sni(r, h, *at, "verifyhost");
            if tls.sni.is_some() {
                r.approximated(
                    *at,
                    d("verifyhost"),
                    format!("sni = {h:?}: fo sends the name it verifies as SNI and Host"),
                );
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            let at = o
                .ca_file
                .as_ref()
                .map_or(o.verify.as_ref().map(|v| v.1), |c| Some(c.1));
            if let Some(at) = at {
                r.approximated(at, d("verify"), "HAProxy verifies the certificate's chain but no name here; fo verifies the name too, the backend's address: set `sni` to the name the certificates hold");
            }
        }
    }
    tls
}

fn port_or_zero(addr: &str) -> Option<u16> {
    server_address(addr).and_then(|(_, p)| p)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `2001:db8::1` (HAProxy also takes
/// `ipv6@`, `ipv4@`).
fn server_address(a: &str) -> Option<(IpAddr, Option<u16>)> {
    let a = a
        .strip_prefix("ipv4@")
        .or_else(|| a.strip_prefix("ipv6@"))
        .unwrap_or(a);
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Some(rest) = a.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        return Some((ip.parse().ok()?, Some(port.parse().ok()?)));
    }
    let (ip, port) = a.rsplit_once(':')?;
    Some((ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// The VIP:port pairs of a `bind` line.
fn bind_addresses(
    r: &mut Report,
    l: &Line,
    label: &str,
    vips: &[(IpAddr, String)],
) -> Vec<(IpAddr, u16)> {
    let d = format!("{label} > bind");
    let mut out = Vec::new();
    let Some(spec) = l.arg(0) else {
        r.not_translated(l.at, d, "bind without an address");
        return out;
    };
    if l.words.len() > 2 {
        r.ignored(
            l.at,
            d.clone(),
            format!(
                "bind options ({}) concern the proxy's socket",
                l.words[2..].join(" ")
            ),
        );
    }
    for part in spec.split(',') {
        let part = part
            .strip_prefix("ipv4@")
            .or_else(|| part.strip_prefix("ipv6@"))
            .unwrap_or(part);
        let Some((host, port)) = part.rsplit_once(':') else {
            r.not_translated(l.at, d.clone(), format!("{part}: no port"));
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            r.not_translated(
                l.at,
                d.clone(),
                format!("{part}: port ranges have no fo equivalent (one service per port)"),
            );
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host {
            "" | "*" | "0.0.0.0" | "::" => {
                let all: Vec<IpAddr> = vips
                    .iter()
                    .map(|(v, _)| *v)
                    .filter(|v| host != "0.0.0.0" || v.is_ipv4())
                    .collect();
                if all.is_empty() {
                    r.not_translated(l.at, d.clone(), format!("{part}: no imported VIP to serve it on"));
                } else {
                    r.approximated(l.at, d.clone(), format!("{part} listens on every address: one service per VIP ({})", all.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ")));
                    out.extend(all.into_iter().map(|v| (v, port)));
                }
            }
            h => match h.parse::<IpAddr>() {
                Ok(ip) if vips.iter().any(|(v, _)| *v == ip) => out.push((ip, port)),
                Ok(ip) => r.not_translated(l.at, d.clone(), format!("{ip} is no VIP of an imported vrrp_instance: fo serves services on a router's VIP")),
                Err(_) => r.not_translated(l.at, d.clone(), format!("{h}: not an IP address")),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            split("  server a 10.0.0.1:80 check # x").unwrap(),
            Some((
                vec![
                    "server".into(),
                    "a".into(),
                    "10.0.0.1:80".into(),
                    "check".into()
                ],
                3
            ))
        );
        assert_eq!(
            split(r#"acl x "a b\"c" 'd\e' f\ g"#).unwrap().unwrap().0,
            ["acl", "x", "a b\"c", "d\\e", "f g"]
        );
        assert_eq!(split("   # only").unwrap(), None);
        assert_eq!(split("bind \"x").unwrap_err().0, 6);
    }

    #[test]
    fn times_and_addresses() {
        assert_eq!(time("2s"), Some(Duration::from_secs(2)));
        assert_eq!(time("500"), Some(Duration::from_millis(500)));
        assert_eq!(time("1m"), Some(Duration::from_secs(60)));
        assert_eq!(time("x"), None);
        assert_eq!(
            server_address("10.0.0.1:80"),
            Some(("10.0.0.1".parse().unwrap(), Some(80)))
        );
        assert_eq!(
            server_address("[2001:db8::1]:80"),
            Some(("2001:db8::1".parse().unwrap(), Some(80)))
        );
        assert_eq!(server_address("web1.example:80"), None);
    }
}
