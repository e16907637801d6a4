//! The `[[check]]` tables: node checks by kind (tcp, http, https, exec, process, file).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use crate::model::*;
use crate::raw::*;

use super::cx::str_field;
use super::{Checks, Cx, Span};

impl Cx<'_> {
    pub(super) fn checks(&mut self, items: Vec<Spanned<DeValue<'_>>>) -> Checks {
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
            let name = self.name(&raw.name, "check", &span, &mut first);
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
        let mut written = raw.kind_keys();
        const HTTP: &[&str] = &[
            "address",
            "port",
            "url",
            "path",
            "expect_status",
            "expect_body",
        ];
        let allowed: &[&str] = match tag {
            CheckTag::Tcp => &["address", "port"],
            CheckTag::Http | CheckTag::Https => HTTP,
            CheckTag::Exec => &["command", "user", "group"],
            CheckTag::Process => &["process", "pidfile"],
            CheckTag::File => &["path", "contains"],
        };
        // The TLS keys belong to https checks alone.
        if tag != CheckTag::Https {
            written.extend(raw.tls().written());
        }
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
                let (command, run_as, at) = self.exec(command, &raw.user, &raw.group)?;
                Some(CheckKind::Exec {
                    command,
                    run_as,
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
    pub(super) fn no_https_key(&mut self, https: &Option<Spanned<bool>>) {
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
    pub(super) fn http_get(
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
                self.unique_list(list, code, |c| format!("expect_status lists {c} twice"))
            }
        }
    }

    /// The TLS keys of an https check.
    pub(super) fn tls(&mut self, raw: &RawTls<'_>) -> Option<Tls> {
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
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for (url, https, host, port, path) in [
            ("http://10.0.0.1/health", false, "10.0.0.1", 80, "/health"),
            ("https://example.org", true, "example.org", 443, "/"),
            ("http://[::1]:8080/x?y=1", false, "::1", 8080, "/x?y=1"),
            ("http://h:81?q", false, "h", 81, "/?q"),
        ] {
            assert_eq!(
                parse_url(url),
                Ok((https, host.into(), port, path.into())),
                "{url}"
            );
        }
        for bad in [
            "ftp://x",
            "http://:80/",
            "http://h:0/",
            "http://u:p@h/",
            "http://[zz]/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
