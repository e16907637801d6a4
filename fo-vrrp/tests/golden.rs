//! Golden scenarios: `tests/golden/NAME.input.jsonl` (a router config, then events with their
//! times) is run through the state machine and the transcript is compared with
//! `tests/golden/NAME.expected.jsonl`. `UPDATE_GOLDEN=1 cargo test -p fo-vrrp --test golden`
//! rewrites the expected files — do that only on purpose, and review the diff against the
//! RFC before committing it.
//!
//! Input format, one JSON object per line:
//!
//! * first line: `{"config": {"priority": 100, "advert_interval": {"centisecs": 100},
//!   "preempt": true, "preempt_delay_ms": 0, "primary_address": "10.0.0.1"}}`
//!   (`preempt` defaults to true, `preempt_delay_ms` to 0; `fence_timeout_ms` turns fencing
//!   on, `sync_then_claim` sync-then-claim, `drain_grace_ms` the drain grace, 2000 if absent);
//! * then `{"at_ms": 0, "event": "startup"}`, `{"at_ms": 1000, "event": {"advert_received":
//!   {"from": "10.0.0.2", "priority": 200, "interval": {"centisecs": 100}}}}`, …;
//! * `{"at_ms": 5000}` with no event just lets time run to 5000 ms;
//! * `{"note": "..."}` is copied to the transcript, for the reader, just before what the next
//!   line causes.
//!
//! The harness is a tiny driver like the agent's: it keeps the deadlines asked for by
//! `arm_timer` / `cancel_timer` and, before each input line, fires every timer due at or
//! before that line's time (earliest first) at exactly its deadline. So timer durations are
//! exercised, not just printed: a wrong Master_Down_Interval moves the transition in the
//! transcript. The transcript has one line per event (`at_us`, microseconds, exact for every
//! duration the router computes) followed by one line per action.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fo_vrrp::fsm::{Action, Config, Event, Router, Time, Timer};
use fo_vrrp::{AdverInterval, Priority};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigLine {
    config: ScenarioConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioConfig {
    priority: Priority,
    advert_interval: AdverInterval,
    #[serde(default = "yes")]
    preempt: bool,
    #[serde(default)]
    preempt_delay_ms: u64,
    primary_address: IpAddr,
    /// Fencing: the witness timeout (absent: no fencing).
    #[serde(default)]
    fence_timeout_ms: Option<u64>,
    /// Sync-then-claim (default false).
    #[serde(default)]
    sync_then_claim: bool,
    /// Make-before-break: the drain grace of a Master that yields (default 2000).
    #[serde(default = "two_seconds")]
    drain_grace_ms: u64,
}

fn two_seconds() -> u64 {
    2000
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    at_ms: Option<u64>,
    event: Option<Event>,
    note: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutLine<'a> {
    Note { note: &'a str },
    Event { at_us: u64, event: &'a Event },
    Action { action: &'a Action },
}

struct Driver {
    router: Router,
    timers: BTreeMap<Timer, Time>,
    out: String,
}

impl Driver {
    fn emit(&mut self, line: &OutLine<'_>) {
        let json = serde_json::to_string(line).expect("transcript lines serialize");
        writeln!(self.out, "{json}").expect("writing to a String");
    }

    fn feed(&mut self, now: Time, event: Event) -> Result<(), String> {
        self.emit(&OutLine::Event {
            at_us: micros(now.since_epoch()),
            event: &event,
        });
        for action in self.router.handle(now, event) {
            match action {
                Action::ArmTimer { which, after } => {
                    self.timers.insert(which, now + after);
                }
                Action::CancelTimer { which } => {
                    let Some(_) = self.timers.remove(&which) else {
                        return Err(format!("cancel_timer {which:?} for a timer not armed"));
                    };
                }
                _ => {}
            }
            self.emit(&OutLine::Action { action: &action });
        }
        // The router's own deadlines must agree with what its actions told the driver.
        for which in Timer::ALL {
            let driver = self.timers.get(&which).copied();
            let router = self.router.deadline(which);
            if driver != router {
                return Err(format!(
                    "at {now:?}: timer {which:?} is {driver:?} from the actions \
                     but {router:?} inside the router"
                ));
            }
        }
        Ok(())
    }

    fn flush_notes(&mut self, pending: &mut Vec<String>) {
        for note in pending.drain(..) {
            self.emit(&OutLine::Note { note: &note });
        }
    }

    /// Fires every timer due at or before `until`, earliest first, at its deadline.
    fn run_until(&mut self, until: Time) -> Result<(), String> {
        while let Some((which, deadline)) = self
            .timers
            .iter()
            .map(|(&w, &d)| (w, d))
            .filter(|&(_, d)| d <= until)
            .min_by_key(|&(w, d)| (d, w))
        {
            // Delivered: no longer armed, for the driver as for the router.
            self.timers.remove(&which);
            self.feed(deadline, Event::TimerFired { which })?;
        }
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).expect("test times fit in u64")
}

fn run_scenario(input: &str) -> Result<String, String> {
    let mut lines = input
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or("empty input")?;
    let ConfigLine { config } =
        serde_json::from_str(first).map_err(|e| format!("line 1 (config): {e}"))?;
    let router = Router::new(Config {
        priority: config.priority,
        advert_interval: config.advert_interval,
        preempt: config.preempt,
        preempt_delay: Duration::from_millis(config.preempt_delay_ms),
        primary_address: config.primary_address,
        fence_timeout: config.fence_timeout_ms.map(Duration::from_millis),
        sync_then_claim: config.sync_then_claim,
        drain_grace: Duration::from_millis(config.drain_grace_ms),
    })
    .map_err(|e| format!("config: {e}"))?;
    let mut driver = Driver {
        router,
        timers: BTreeMap::new(),
        out: String::new(),
    };
    let mut last = Time::ZERO;
    let mut pending: Vec<String> = Vec::new();
    for (index, line) in lines {
        let n = index + 1;
        let InputLine { at_ms, event, note } =
            serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        pending.extend(note);
        let Some(at_ms) = at_ms else {
            if event.is_some() {
                return Err(format!("line {n}: an event needs at_ms"));
            }
            continue;
        };
        let now = Time::from_epoch(Duration::from_millis(at_ms));
        if now < last {
            return Err(format!("line {n}: time goes backwards"));
        }
        last = now;
        // A note comments the line after it: the timers that fire on the way to a bare time,
        // or the event of an event line (after the timers due before it).
        if event.is_none() {
            driver.flush_notes(&mut pending);
        }
        driver
            .run_until(now)
            .map_err(|e| format!("line {n}: {e}"))?;
        driver.flush_notes(&mut pending);
        if let Some(event) = event {
            driver
                .feed(now, event)
                .map_err(|e| format!("line {n}: {e}"))?;
        }
    }
    driver.flush_notes(&mut pending);
    Ok(driver.out)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The first differing line, with its neighbours, so a failure says what was expected.
fn first_difference(expected: &str, got: &str) -> String {
    let (e, g): (Vec<_>, Vec<_>) = (expected.lines().collect(), got.lines().collect());
    let i = e
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(e.len().min(g.len()));
    let from = i.saturating_sub(3);
    let mut msg = format!("first difference at transcript line {}:\n", i + 1);
    for (j, line) in e.iter().enumerate().skip(from).take(i - from) {
        let _ = writeln!(msg, "  {:>4}   {line}", j + 1);
    }
    let _ = writeln!(msg, "  expected: {}", e.get(i).unwrap_or(&"<end>"));
    let _ = writeln!(msg, "  got:      {}", g.get(i).unwrap_or(&"<end>"));
    msg
}

#[test]
fn golden_scenarios() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".input.jsonl"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no scenarios in {:?}", golden_dir());

    let mut failures = Vec::new();
    for input_path in &inputs {
        let name = input_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".input.jsonl"))
            .expect("named NAME.input.jsonl")
            .to_owned();
        let expected_path = golden_dir().join(format!("{name}.expected.jsonl"));
        let input = std::fs::read_to_string(input_path).expect("readable input");
        let got = match run_scenario(&input) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if update {
            std::fs::write(&expected_path, &got).expect("writable expected file");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == got => {}
            Ok(expected) => failures.push(format!(
                "{name}: transcript differs from {}\n{}",
                expected_path.display(),
                first_difference(&expected, &got)
            )),
            Err(e) => failures.push(format!(
                "{name}: cannot read {} ({e}); run with UPDATE_GOLDEN=1 and review it",
                expected_path.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden scenarios failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// The scenarios the brief requires are present (a renamed file cannot silently drop one).
#[test]
fn required_scenarios_exist() {
    for name in [
        "startup_backup_then_master",
        "higher_priority_peer_appears",
        "preempt_off",
        "preempt_on_lower_master",
        "preempt_delay",
        "priority_zero_from_master",
        "v3_interval_adoption",
        "v2_keepalived_timers",
        "equal_priority_by_address",
        "address_owner",
        "shutdown_master",
        "shutdown_backup",
        "demote_resume",
        "promote_resume",
        "fault_set_cleared",
        "fault_before_startup_owner",
        "priority_tracking",
        "stale_timer_events",
        "gated",
        "fenced",
        "sync_pending",
        "dual_master",
    ] {
        for suffix in ["input", "expected"] {
            let path = golden_dir().join(format!("{name}.{suffix}.jsonl"));
            assert!(path.exists(), "missing golden file {}", path.display());
        }
    }
}
