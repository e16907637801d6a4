//! The collector and what every section shares: the typed readers that report a bad
//! value at its position, the per-table deserializer that keeps going after a type error,
//! and the small helpers around them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::model::*;
use crate::names::valid_account_name;

use super::{Cx, Span};

const NAME_MAX: usize = 63;

impl Cx<'_> {
    pub(super) fn err(&mut self, span: Span, message: impl fmt::Display) {
        let e = self.idx.error(Some(span), message);
        self.errors.push(e);
    }

    pub(super) fn line(&self, span: &Span) -> usize {
        self.idx.position(span.start).0
    }

    /// Deserialize one table, reporting every type error and unknown key in it.
    ///
    /// serde stops at the first error, so after each one the offending entry is
    /// removed and the table deserialized again. What remains is validated as
    /// usual, except that "needs `key`" is not reported for a removed key.
    pub(super) fn de<T: DeserializeOwned>(
        &mut self,
        what: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
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
    pub(super) fn missing(&mut self, key: &str, span: Span, message: impl fmt::Display) {
        if !self.removed.contains(key) {
            self.err(span, message);
        }
    }

    /// A list key that must be written (else `missing` is reported at the `table`) and
    /// hold at least one item.
    pub(super) fn required_list<'v, T>(
        &mut self,
        list: &'v Option<Spanned<Vec<T>>>,
        key: &str,
        table: &Span,
        missing: &str,
    ) -> Option<&'v [T]> {
        let Some(list) = list else {
            self.missing(key, table.clone(), missing);
            return None;
        };
        if list.get_ref().is_empty() {
            self.err(list.span(), format!("{key} must not be empty"));
            return None;
        }
        Some(list.get_ref())
    }

    /// Each item of `list` as `read` reads it; an item read before is reported at its
    /// place by `twice`. `None` when any item is bad or repeated.
    pub(super) fn unique_list<V, T: PartialEq>(
        &mut self,
        list: &[Spanned<V>],
        mut read: impl FnMut(&mut Self, &Spanned<V>) -> Option<T>,
        twice: impl Fn(&T) -> String,
    ) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(list.len());
        let mut ok = true;
        for v in list {
            match read(self, v) {
                Some(x) if out.contains(&x) => {
                    self.err(v.span(), twice(&x));
                    ok = false;
                }
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn int(&mut self, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Option<i64> {
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

    pub(super) fn opt_int(
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

    pub(super) fn ip(&mut self, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
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
    pub(super) fn unicast_ip(&mut self, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
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

    pub(super) fn abs_path(&mut self, v: &Spanned<PathBuf>, what: &str) -> Option<PathBuf> {
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

    /// `v`'s text when `valid` holds for it; otherwise the error `problem(text)` at `v`.
    pub(super) fn text_where(
        &mut self,
        v: &Spanned<String>,
        valid: impl FnOnce(&str) -> bool,
        problem: impl FnOnce(&str) -> String,
    ) -> Option<String> {
        let s = v.get_ref();
        if valid(s) {
            Some(s.clone())
        } else {
            self.err(v.span(), problem(s));
            None
        }
    }

    /// Router and check names: `[a-z0-9_-]`, 1..=63 characters.
    pub(super) fn ident(&mut self, v: &Spanned<String>, what: &str) -> Option<String> {
        self.text_where(
            v,
            |s| {
                !s.is_empty()
                    && s.len() <= NAME_MAX
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
            },
            |s| format!("{what} {s:?} must be 1 to {NAME_MAX} characters of a-z, 0-9, '_' and '-'"),
        )
    }

    /// The `name` of a `[[router]]` or `[[check]]` table: required, an identifier, and
    /// not written before (`first` holds each name with where it was first written).
    pub(super) fn name(
        &mut self,
        name: &Option<Spanned<String>>,
        table: &str,
        span: &Span,
        first: &mut HashMap<String, Span>,
    ) -> Option<String> {
        let Some(n) = name else {
            self.missing("name", span.clone(), format!("[[{table}]] needs a `name`"));
            return None;
        };
        let ok = self.ident(n, &format!("{table} name"));
        if let Some(prev) = first.get(n.get_ref()) {
            let line = self.line(prev);
            self.err(
                n.span(),
                format!(
                    "duplicate {table} name {:?} (first defined on line {line})",
                    n.get_ref()
                ),
            );
        } else {
            first.insert(n.get_ref().clone(), n.span());
        }
        ok
    }

    /// Service and backend names (used on the command line and as metric labels).
    pub(super) fn label(&mut self, v: &Spanned<String>, what: &str) -> Option<String> {
        self.text_where(
            v,
            |s| {
                !s.is_empty()
                    && s.len() <= NAME_MAX
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            },
            |s| format!("{what} {s:?} must be 1 to {NAME_MAX} characters without spaces"),
        )
    }

    pub(super) fn positive(
        &mut self,
        v: &Spanned<crate::HumanDuration>,
        what: &str,
    ) -> Option<Duration> {
        let d = v.get_ref().get();
        if d.is_zero() {
            self.err(v.span(), format!("{what} must be greater than zero"));
            None
        } else {
            Some(d)
        }
    }

    pub(super) fn not_for(&mut self, span: Option<Span>, key: &str, context: &str) {
        if let Some(span) = span {
            self.err(span, format!("`{key}` does not apply to {context}"));
        }
    }

    /// Timing shared by service checks and node checks.
    pub(super) fn timing(
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
    pub(super) fn command(&mut self, v: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<String>> {
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

    /// An exec check's `command`, `user` and `group`: (program line, who runs it, where
    /// the program is written).
    pub(super) fn exec(
        &mut self,
        command: &Spanned<Vec<Spanned<String>>>,
        user: &Option<Spanned<String>>,
        group: &Option<Spanned<String>>,
    ) -> Option<(Vec<String>, Option<RunAs>, Position)> {
        let at = self.at(command);
        let argv = self.command(command);
        let run_as = self.run_as(user, group);
        Some((argv?, run_as?, at))
    }

    /// Where `command`'s program (its first element, else the array) is written.
    pub(super) fn at(&self, command: &Spanned<Vec<Spanned<String>>>) -> Position {
        let span = command
            .get_ref()
            .first()
            .map_or_else(|| command.span(), Spanned::span);
        let (line, col) = self.idx.position(span.start);
        Position { line, col }
    }

    /// `user` and `group` of an exec check or of hooks: names as in the user and group
    /// databases (that they exist is checked where they are used, by the agent).
    pub(super) fn run_as(
        &mut self,
        user: &Option<Spanned<String>>,
        group: &Option<Spanned<String>>,
    ) -> Option<Option<RunAs>> {
        let name = |cx: &mut Self, v: &Spanned<String>, what: &str| {
            cx.text_where(v, valid_account_name, |s| {
                format!("{what} {s:?} is not a valid {what} name")
            })
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
}

const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
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
pub(super) fn str_field(v: &DeValue<'_>, key: &str) -> Option<String> {
    let DeValue::Table(t) = v else { return None };
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .and_then(|(_, v)| match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
}

/// The strings of an array value `key` in a table, if written.
pub(super) fn str_list_field(v: &DeValue<'_>, key: &str) -> Vec<String> {
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
