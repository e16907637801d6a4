//! keepalived.conf: its grammar ([`lex`], [`tree`]) and its translation into a
//! [`Plan`] ([`vrrp`] for `global_defs`, `vrrp_script`, `track_file`,
//! `vrrp_instance` and `vrrp_sync_group`; [`lvs`] for `virtual_server`).
//!
//! keepalived's own rules that change what a directive means are applied as
//! keepalived 2.2 applies them, so the result behaves like the original:
//! - a `vrrp_instance` with `state MASTER` and no `priority` gets priority 255;
//! - `state MASTER` clears `nopreempt` and `preempt_delay`; priority 255 clears
//!   `nopreempt`;
//! - authentication is ignored with VRRP version 3; `auth_pass` keeps 8 characters;
//! - IPv6 instances run version 3; the default version is `global_defs vrrp_version`
//!   (2 when unset);
//! - a weighted `track_script` is dropped on an address owner (255) and on a member of
//!   a `vrrp_sync_group` without `sync_group_tracking_weight`; a weighted
//!   `track_interface` of a sync-group member counts as weight 0;
//! - `track_script` weights: the instance's `weight` if given, else the script's,
//!   else 0 (fault); ±254 become ±253.

pub mod lex;
pub mod lvs;
pub mod tree;
pub mod vrrp;

use std::path::Path;
use std::time::Duration;

use crate::plan::Plan;
use crate::report::Report;
use crate::source::{Files, Loc};
use crate::{Input, ParseError};
use tree::Stmt;

/// Why a translation stopped.
#[derive(Debug)]
pub enum Error {
    /// A value keepalived itself would reject, with its position.
    Parse(ParseError),
    /// Nothing the importer can work with (e.g. no interface anywhere).
    Input(String),
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

/// Translate a parsed keepalived.conf.
pub fn translate(
    tree: &[Stmt],
    input: &Input,
    files: &Files,
    report: &mut Report,
) -> Result<Plan, Error> {
    let mut cx = Cx {
        files,
        report,
        input,
        script_security: false,
        first_script: None,
    };
    let mut plan = Plan::default();
    let vrrp = vrrp::translate(&mut cx, tree, &mut plan)?;
    lvs::translate(&mut cx, tree, &vrrp, &mut plan)?;
    if let Some((at, directive)) = cx.first_script.take()
        && !cx.script_security
    {
        cx.report.warning(
            at,
            directive,
            "keepalived ran this config's scripts without enable_script_security; fo always refuses a hook or check program that a user other than root could change (the program, a directory above it, a link on the way or its #! interpreter): `fo-agent check` names any such program with its line and column",
        );
    }
    Ok(plan)
}

/// What the translators share.
pub struct Cx<'a> {
    pub files: &'a Files,
    pub report: &'a mut Report,
    pub input: &'a Input,
    /// `global_defs enable_script_security` was seen.
    pub script_security: bool,
    /// The first script or notify program, with where it is (for the warning that fo
    /// applies keepalived's script security whether or not the config asked for it).
    pub first_script: Option<(Loc, String)>,
}

impl Cx<'_> {
    /// `FILE:LINE` of a statement, for the comments of the output.
    pub fn from(&self, s: &Stmt) -> String {
        format!("from {} {}", self.files.at(s.at()), describe(s))
    }

    /// A check's program named by a relative path with a slash (`bin/check`): keepalived
    /// runs it from its working directory, `/` under systemd and once daemonized, while
    /// fo takes only an absolute path or a bare name. It is written from `/`
    /// (`/bin/check`, `.` and `..` resolved) and reported as approximated.
    pub fn absolute_program(&mut self, at: Loc, directive: &str, argv: &mut [String]) {
        let Some(program) = argv.first_mut() else {
            return;
        };
        if !program.contains('/') || program.starts_with('/') {
            return;
        }
        let mut abs = std::path::PathBuf::from("/");
        for c in Path::new(program.as_str()).components() {
            match c {
                std::path::Component::Normal(n) => abs.push(n),
                std::path::Component::ParentDir => {
                    abs.pop();
                }
                _ => {}
            }
        }
        let abs = abs.to_string_lossy().into_owned();
        self.report.approximated(
            at,
            directive,
            format!(
                "{program} is a relative path: keepalived runs it from its working directory (/ under systemd); written as {abs}"
            ),
        );
        *program = abs;
    }

    /// Warn when `program` (absolute, or looked up in PATH) is not on this machine;
    /// remember the first program for the script-security warning.
    pub fn check_program(&mut self, at: Loc, directive: &str, program: &str) {
        if self
            .first_script
            .as_ref()
            .is_none_or(|(first, _)| at < *first)
        {
            self.first_script = Some((at, directive.to_owned()));
        }
        if !self.input.check_files {
            return;
        }
        let found = if program.contains('/') {
            Path::new(program).exists()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
        };
        if !found {
            self.report.warning(
                at,
                directive,
                format!(
                    "{program} does not exist on this machine: install it on the fo node before `fo-agent check`"
                ),
            );
        }
    }
}

/// A statement's keyword and name, e.g. `vrrp_instance VI_1`, `virtual_server
/// 192.0.2.1 80`.
pub fn describe(s: &Stmt) -> String {
    if s.block.is_some() && !s.args().is_empty() {
        let args: Vec<&str> = s.args().iter().take(2).map(|w| w.text.as_str()).collect();
        format!("{} {}", s.keyword(), args.join(" "))
    } else {
        s.keyword().to_owned()
    }
}

/// `block > keyword` for report lines about a statement inside a named block.
pub fn within(block: &Stmt, s: &Stmt) -> String {
    format!("{} > {}", describe(block), s.keyword())
}

// ------------------------------------------------------------------- values

/// The `i`-th argument, or a parse error at the statement.
pub fn need<'s>(s: &'s Stmt, i: usize, what: &str) -> Result<&'s str, ParseError> {
    s.arg(i)
        .ok_or_else(|| ParseError::at(s.at(), format!("{} needs {what}", s.keyword())))
}

fn arg_at(s: &Stmt, i: usize) -> Loc {
    s.args().get(i).map_or(s.at(), |w| w.at)
}

/// An integer argument in `lo..=hi`.
pub fn int(s: &Stmt, i: usize, lo: i64, hi: i64) -> Result<i64, ParseError> {
    let v = need(s, i, "a number")?;
    match v.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(ParseError::at(
            arg_at(s, i),
            format!(
                "{} must be an integer in {lo}..={hi}, got {v:?}",
                s.keyword()
            ),
        )),
    }
}

/// keepalived's `<TIMER>`/decimal seconds (`2`, `0.5`, `1.25`), at most `max`.
pub fn seconds(s: &Stmt, i: usize, max: Duration) -> Result<Duration, ParseError> {
    let v = need(s, i, "a time in seconds")?;
    parse_seconds(v).filter(|d| *d <= max).ok_or_else(|| {
        ParseError::at(
            arg_at(s, i),
            format!(
                "{} must be a time in seconds (e.g. 1 or 0.5), at most {} s, got {v:?}",
                s.keyword(),
                max.as_secs()
            ),
        )
    })
}

/// Decimal seconds to microseconds precision.
pub fn parse_seconds(v: &str) -> Option<Duration> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 6 || whole.len() > 9 {
        return None;
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let micros: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// A check timeout that fits fo's rule (0 < timeout < interval): `timeout` when it
/// does, else nine tenths of the interval (reported by the caller). `interval` is at
/// least [`MIN_INTERVAL`].
pub fn fit_timeout(timeout: Duration, interval: Duration) -> (Duration, bool) {
    if !timeout.is_zero() && timeout < interval {
        (timeout, false)
    } else {
        // Whole milliseconds keep the output readable.
        let t = Duration::from_millis(((interval * 9 / 10).as_millis() as u64).max(1));
        (t, true)
    }
}

/// The shortest check interval the import writes.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// An address fo accepts as a VIP, peer or backend.
pub fn unicast(ip: std::net::IpAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST))
}

/// Most services fo takes without raising `[node] max_services`.
pub const MAX_SERVICES: usize = 64;

/// fo names (`[a-z0-9_-]`, 1..=63): lower case, anything else becomes `-`.
pub fn fo_name(s: &str) -> String {
    let mut n: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if n.is_empty() {
        n.push('x');
    }
    n
}

/// `name`, or `name-2`, `name-3`, ... : the first not in `taken`.
pub fn unique(name: String, taken: &[String]) -> String {
    if !taken.contains(&name) {
        return name;
    }
    (2..)
        .map(|i| {
            let suffix = format!("-{i}");
            let keep = 63 - suffix.len();
            format!("{}{suffix}", &name[..name.len().min(keep)])
        })
        .find(|n| !taken.contains(n))
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_like_keepalived_timers() {
        assert_eq!(parse_seconds("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds(".25"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_seconds("1.000001"),
            Some(Duration::from_micros(1_000_001))
        );
        assert_eq!(parse_seconds("1e3"), None);
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds("."), None);
    }

    #[test]
    fn names_and_timeouts() {
        assert_eq!(fo_name("VI_1"), "vi_1");
        assert_eq!(fo_name("chk haproxy.sh"), "chk-haproxy-sh");
        assert_eq!(unique("a".into(), &["a".into(), "a-2".into()]), "a-3");
        assert_eq!(
            fit_timeout(Duration::from_secs(2), Duration::from_secs(2)),
            (Duration::from_millis(1800), true)
        );
        assert_eq!(
            fit_timeout(Duration::from_secs(1), Duration::from_secs(2)),
            (Duration::from_secs(1), false)
        );
    }
}
