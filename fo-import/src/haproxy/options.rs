//! Server options (`default-server`, `server`) and what a proxy section says, with
//! `defaults` applied.

use std::time::Duration;

use super::parse::{Line, Section, time};
use crate::report::Report;
use crate::source::Loc;

/// Server options that apply (`default-server` or the `server` line).
#[derive(Debug, Clone, Default)]
pub(super) struct ServerOpts {
    pub(super) check: bool,
    pub(super) inter: Option<Duration>,
    pub(super) rise: Option<u32>,
    pub(super) fall: Option<u32>,
    pub(super) weight: Option<u32>,
    pub(super) disabled: bool,
    pub(super) backup: bool,
    pub(super) check_port: Option<u16>,
    pub(super) check_ssl: bool,
    /// The server's TLS settings, which `check-ssl` checks use too: `verify
    /// none|required`, `ca-file`, `check-sni`, `verifyhost`; each with where it was
    /// written (reported there when no https check uses it).
    pub(super) verify: Option<(bool, Loc)>,
    pub(super) ca_file: Option<(String, Loc)>,
    pub(super) check_sni: Option<(String, Loc)>,
    pub(super) verifyhost: Option<(String, Loc)>,
}

impl ServerOpts {
    /// Each TLS setting written, with where.
    pub(super) fn tls_locs(&self) -> Vec<(&'static str, Loc)> {
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
    pub(super) fn tls_key(&self) -> (Option<bool>, Option<&str>, Option<&str>, Option<&str>) {
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
pub(super) struct Proxy {
    pub(super) mode: Option<(String, Loc)>,
    pub(super) balance: Option<(String, Loc)>,
    pub(super) default_server: ServerOpts,
    pub(super) timeout_check: Option<Duration>,
    pub(super) httpchk: Option<(String, Loc)>,
    pub(super) expect_status: Option<u16>,
    pub(super) other_check: Option<(String, Loc)>,
}

pub(super) fn opts(cx: &mut Report, words: &[String], at: Loc, what: &str, o: &mut ServerOpts) {
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
pub(super) fn proxy_lines<'s>(
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
