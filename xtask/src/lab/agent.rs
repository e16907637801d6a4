//! Running `fo-agent` in the lab and reading its JSON log lines.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Bins, Netns, Proc};

/// `fo-agent run` with `config` in `ns`, logging JSON.
pub fn agent_command(ns: &Netns, bins: &Bins, config: &Path) -> Command {
    let mut cmd = ns.command(&bins.agent);
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .args(["--log-format", "json"])
        .env("NO_COLOR", "1");
    cmd
}

/// Wait up to `timeout` for the agent to log `running`; returns when it did.
pub fn wait_running(p: &mut Proc, timeout: Duration) -> anyhow::Result<SystemTime> {
    let (at, _) = p.wait_for_line(timeout, |l| {
        log_fields(l).is_some_and(|f| f.get("message").and_then(Value::as_str) == Some("running"))
    })?;
    Ok(at)
}

/// The fields of an agent's JSON log line (`fo-agent run --log-format json`), with
/// `message` among them.
pub fn log_fields(line: &str) -> Option<serde_json::Map<String, Value>> {
    let v: Value = serde_json::from_str(line).ok()?;
    match v.get("fields")? {
        Value::Object(m) => Some(m.clone()),
        _ => None,
    }
}

/// The `timestamp` an agent's JSON log line carries (tracing's RFC 3339 UTC, e.g.
/// `2025-01-02T03:04:05.123456Z`): when the agent wrote it, free of pipe and reader delays.
pub fn log_time(line: &str) -> Option<SystemTime> {
    let v: Value = serde_json::from_str(line).ok()?;
    parse_rfc3339_utc(v.get("timestamp")?.as_str()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` to a `SystemTime` (UTC only, as tracing writes it).
fn parse_rfc3339_utc(s: &str) -> Option<SystemTime> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

pub(super) fn field_str(f: &serde_json::Map<String, Value>, k: &str) -> String {
    match f.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}
