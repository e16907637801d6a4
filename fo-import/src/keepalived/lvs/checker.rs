//! One checker block (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, ...) into an fo
//! service check, with the timing it inherits from its real and virtual server.

use std::net::IpAddr;
use std::time::Duration;

use crate::ParseError;
use crate::keepalived::lex::words_escaped;
use crate::keepalived::tree::Stmt;
use crate::keepalived::{Cx, fit_timeout, int, need, seconds};
use crate::plan::{HttpsCheck, RunAs, ServiceCheckKind};

pub(super) const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const MAX_TIMER: Duration = Duration::from_secs(1_000_000);

/// Checker settings that can sit on the virtual server, the real server or the checker.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timing {
    pub(super) delay_loop: Option<Duration>,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) retry: Option<u32>,
}

impl Timing {
    pub(super) fn or(self, parent: Timing) -> Timing {
        Timing {
            delay_loop: self.delay_loop.or(parent.delay_loop),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            retry: self.retry.or(parent.retry),
        }
    }
}

/// What a checker inherits from its real and virtual server.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parent<'a> {
    pub(super) timing: Timing,
    /// The real server's `virtualhost`, else the virtual server's.
    pub(super) vhost: Option<&'a str>,
}

/// A checker as fo would run it, for comparing real servers.
#[derive(Debug, Clone)]
pub(super) struct Checker {
    pub(super) kind: ServiceCheckKind,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    pub(super) fall: u32,
    /// Reported once when the check becomes the service's.
    pub(super) notes: Vec<(crate::source::Loc, String, String)>,
    /// Reported as warnings, likewise once.
    pub(super) warnings: Vec<(crate::source::Loc, String, String)>,
}

impl Checker {
    pub(super) fn same(&self, o: &Checker) -> bool {
        format!("{:?}", self.kind) == format!("{:?}", o.kind)
            && self.interval == o.interval
            && self.timeout == o.timeout
            && self.fall == o.fall
    }
}

/// One checker block into an fo service check, or `None` (reported) when fo cannot
/// run it.
pub(super) fn checker(
    cx: &mut Cx<'_>,
    c: &Stmt,
    rname: &str,
    ip: IpAddr,
    rport: u16,
    parent: Parent<'_>,
    script_user: Option<&RunAs>,
) -> Result<Option<Checker>, ParseError> {
    let d = format!("{rname} > {}", c.keyword());
    let mut timing = Timing::default();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut kind = match c.keyword() {
        "TCP_CHECK" => Some(ServiceCheckKind::Tcp),
        _ => None,
    };
    let mut misc: Option<(Vec<String>, Option<RunAs>)> = None;
    let mut misc_timeout: Option<Duration> = None;
    let mut urls: Vec<&Stmt> = Vec::new();
    let mut sni = false;
    let mut vhost: Option<String> = None;
    for s in c.children() {
        let dd = format!("{d} > {}", s.keyword());
        match s.keyword() {
            "connect_timeout" => timing.connect_timeout = Some(seconds(s, 0, MAX_TIMER)?),
            "retry" | "nb_get_retry" => timing.retry = Some(int(s, 0, 0, 1_000_000)? as u32),
            "delay_loop" => timing.delay_loop = Some(seconds(s, 0, MAX_TIMER)?),
            "delay_before_retry" | "warmup" => notes.push((s.at(), dd, "fo retries a failed check at its interval (fall = retry + 1)".to_owned())),
            "connect_port" => {
                let p = int(s, 0, 1, 65_535)? as u16;
                if p != rport {
                    cx.report.not_translated(s.at(), dd, format!("fo checks each backend on its own port ({rport}), not {p}"));
                    return Ok(None);
                }
            }
            "connect_ip" => {
                if need(s, 0, "an address")?.parse::<IpAddr>().ok() != Some(ip) {
                    cx.report.not_translated(s.at(), dd, format!("fo checks each backend on its own address ({ip})"));
                    return Ok(None);
                }
            }
            "bindto" | "bind_port" | "bind_if" | "fwmark" => notes.push((s.at(), dd, "fo's checks use the node's default source".to_owned())),
            "log_all_failures" | "alpha" => notes.push((s.at(), dd, "no per-check setting in fo".to_owned())),
            "url" => urls.push(s),
            "virtualhost" => vhost = Some(need(s, 0, "a host name")?.to_owned()),
            "enable_sni" => sni = true,
            "http_protocol" | "fast_recovery" => notes.push((s.at(), dd, "no such setting in fo's http checks".to_owned())),
            "misc_path" => {
                let line = words_escaped(&s.text.string()).map_err(|e| ParseError::at(s.at(), format!("misc_path: {e}")))?;
                let mut argv = match line.get(1) {
                    Some(cmd) => words_escaped(cmd).map_err(|e| ParseError::at(s.at(), format!("misc_path: {e}")))?,
                    None => Vec::new(),
                };
                if argv.is_empty() {
                    return Err(ParseError::at(s.at(), "misc_path needs a command"));
                }
                cx.absolute_program(s.at(), &dd, &mut argv);
                cx.check_program(s.at(), &dd, &argv[0]);
                misc = Some((argv, script_user.cloned()));
            }
            "misc_timeout" => misc_timeout = Some(Duration::from_secs(int(s, 0, 0, 1_000_000)?.max(1) as u64)),
            "misc_dynamic" => notes.push((s.at(), dd, "fo reads the exit code as up (0) or down; misc_dynamic's weights (2..255) count as down".to_owned())),
            "user" => {
                let u = RunAs {
                    user: need(s, 0, "a user")?.to_owned(),
                    group: s.arg(1).map(str::to_owned),
                };
                crate::keepalived::vrrp::check_user(&u, s.at())?;
                if let Some(m) = &mut misc {
                    m.1 = Some(u);
                } else {
                    misc = Some((Vec::new(), Some(u)));
                }
            }
            _ => {
                cx.report.not_translated(s.at(), dd, format!("not a {} keyword the importer knows", c.keyword()));
            }
        }
    }
    let timing = timing.or(parent.timing);
    match c.keyword() {
        "HTTP_GET" | "SSL_GET" => {
            let Some(u) = urls.first() else {
                cx.report
                    .not_translated(c.at(), d, "no url: keepalived runs no check either");
                return Ok(None);
            };
            for extra in urls.iter().skip(1) {
                cx.report.not_translated(
                    extra.at(),
                    format!("{d} > url"),
                    "fo requests one path per check: the first url is used",
                );
            }
            let mut path: Option<String> = None;
            let mut status: Vec<u16> = Vec::new();
            for s in u.children() {
                let dd = format!("{d} > url > {}", s.keyword());
                match s.keyword() {
                    "path" => path = Some(need(s, 0, "a path")?.to_owned()),
                    "status_code" => {
                        for w in s.args() {
                            let (lo, hi) = match w.text.split_once('-') {
                                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                                None => (w.text.parse::<u16>(), w.text.parse::<u16>()),
                            };
                            match (lo, hi) {
                                (Ok(a), Ok(b))
                                    if (100..=599).contains(&a) && (a..=599).contains(&b) =>
                                {
                                    status.extend(a..=b);
                                }
                                _ => {
                                    return Err(ParseError::at(
                                        w.at,
                                        format!("bad status_code {:?}", w.text),
                                    ));
                                }
                            }
                        }
                    }
                    "digest" => cx.report.not_translated(
                        s.at(),
                        dd,
                        "fo's checks do not hash the body: use expect_body for a substring",
                    ),
                    "regex" | "regex_no_match" | "regex_options" | "regex_min_offset"
                    | "regex_max_offset" | "regex_stack" => cx.report.not_translated(
                        s.at(),
                        dd,
                        "fo's checks match a body substring (expect_body), not a regex",
                    ),
                    "virtualhost" => vhost = Some(need(s, 0, "a host name")?.to_owned()),
                    _ => {
                        cx.report
                            .not_translated(s.at(), dd, "not a url keyword the importer knows")
                    }
                }
            }
            let Some(path) = path else {
                cx.report.ignored(
                    u.at(),
                    format!("{d} > url"),
                    "no path: keepalived ignores the url",
                );
                return Ok(None);
            };
            let path = if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            };
            status.sort_unstable();
            status.dedup();
            if status.is_empty() {
                notes.push((
                    u.at(),
                    format!("{d} > url"),
                    "keepalived accepts any 2xx without status_code; fo expects 200 (list others in expect_status)".to_owned(),
                ));
            }
            if vhost.is_some() && c.keyword() == "HTTP_GET" {
                // Written on the checker or its url (the inherited one is reported
                // where it was written).
                notes.push((
                    c.at(),
                    d.clone(),
                    "fo's http checks send the backend's address as Host, not virtualhost"
                        .to_owned(),
                ));
            }
            kind = Some(if c.keyword() == "SSL_GET" {
                let sni_name = match vhost.or(parent.vhost.map(str::to_owned)) {
                    Some(h) if crate::plan::sni_accepted(&h) => {
                        if !sni {
                            notes.push((c.at(), d.clone(), format!("virtualhost {h} without enable_sni: fo sends it as SNI too (sni = {h:?} sets both the SNI and Host)")));
                        }
                        Some(h)
                    }
                    Some(h) => {
                        cx.report.not_translated(c.at(), format!("{d} > virtualhost"), format!("{h:?} is not a DNS name fo can send as SNI and Host: the backend's address is sent"));
                        None
                    }
                    None => None,
                };
                // keepalived's SSL_GET verifies no certificate: not who signed it, not
                // its name, not its dates (it never asks OpenSSL to verify the peer).
                // The translation keeps that, says so, and says how to verify.
                warnings.push((c.at(), d.clone(), "kind = \"https\" with insecure = true, as keepalived's SSL_GET checks no certificate (not its CA, name or dates); to verify, remove insecure (the system store, or give `ca`) and set `sni` to the certificates' name".to_owned()));
                ServiceCheckKind::Https {
                    path,
                    expect_status: status,
                    tls: HttpsCheck {
                        sni: sni_name,
                        ca: None,
                        insecure: true,
                    },
                }
            } else {
                ServiceCheckKind::Http {
                    path,
                    expect_status: status,
                }
            });
        }
        "MISC_CHECK" => {
            let Some((argv, run_as)) = misc.filter(|m| !m.0.is_empty()) else {
                cx.report
                    .ignored(c.at(), d, "no misc_path: keepalived runs nothing");
                return Ok(None);
            };
            kind = Some(ServiceCheckKind::Exec {
                command: argv,
                run_as,
            });
        }
        _ => {}
    }
    let Some(kind) = kind else {
        return Ok(None);
    };
    let mut interval = timing.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    if interval < crate::keepalived::MIN_INTERVAL {
        notes.push((
            c.at(),
            d.clone(),
            format!(
                "delay_loop below {}: {} used",
                fo_config::format_duration(crate::keepalived::MIN_INTERVAL),
                fo_config::format_duration(crate::keepalived::MIN_INTERVAL)
            ),
        ));
        interval = crate::keepalived::MIN_INTERVAL;
    }
    let timeout = match (c.keyword(), misc_timeout) {
        ("MISC_CHECK", Some(t)) => t,
        ("MISC_CHECK", None) => interval,
        _ => timing.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    };
    let (timeout, adjusted) = fit_timeout(timeout, interval);
    if adjusted && !(c.keyword() == "MISC_CHECK" && misc_timeout.is_none()) {
        notes.push((
            c.at(),
            d.clone(),
            format!(
                "fo needs timeout < interval: timeout {}",
                fo_config::format_duration(timeout)
            ),
        ));
    }
    let default_retry = if c.keyword() == "MISC_CHECK" { 0 } else { 1 };
    let fall = timing
        .retry
        .unwrap_or(default_retry)
        .saturating_add(1)
        .min(100);
    Ok(Some(Checker {
        kind,
        interval,
        timeout,
        fall,
        notes,
        warnings,
    }))
}
