//! What an operator's Prometheus and Grafana get, checked with Prometheus' own tool
//! (Debian's `prometheus` package: `promtool`): `/metrics` of a live agent and of a
//! status with every metric family pass `promtool check metrics` with nothing to say;
//! the alert rules in deploy/monitoring pass `promtool check rules` and their unit
//! tests (each alert fires in its test and is silent on healthy series); the
//! dashboard's queries are valid PromQL over metrics the agent exports; concurrent
//! scrapes share one walk of the flow table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fo_agent::api::status::*;
use fo_tests::lone::Lone;
use fo_tests::netns::{ChildGuard, wait_for};

fn monitoring_dir() -> PathBuf {
    fo_tests::workspace_root().join("deploy/monitoring")
}

/// `promtool ARGS` (stdin from `input`, if any): (success, stdout + stderr).
fn promtool(args: &[&str], input: Option<&str>, dir: &Path) -> (bool, String) {
    let mut c = Command::new("promtool");
    c.args(args)
        .current_dir(dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| {
        panic!("promtool: {e} (Debian's prometheus package has it: cargo xtask setup installs it)")
    });
    if let Some(text) = input {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    fo_tests::outcome(&out)
}

/// A status with every metric family in it: VRRP and BGP routers, a fence, hooks,
/// takeovers, a refused reload, DSR and NAT services, checks, the data plane's
/// counters, sync and every table.
fn full_status() -> Status {
    let mut s = Status::default();
    s.node.config_loaded_at = 1_700_000_000.0;
    s.node.version = env!("CARGO_PKG_VERSION").into();
    s.node.reloads = ReloadStatus {
        succeeded: 2,
        failed: 1,
        last_succeeded: false,
        last_failure_at: Some(1_700_000_100.0),
        last_error: Some("1:1: bad".into()),
    };
    s.node.control_refused.insert("not_root_or_group".into(), 1);
    s.routers.push(RouterStatus {
        name: "wazuh".into(),
        ownership: "vrrp".into(),
        vrid: Some(51),
        state: "master".into(),
        configured_priority: Some(150),
        effective_priority: Some(150),
        owned: true,
        adverts_received: 3,
        adverts_sent: 9,
        dropped: [("auth".to_string(), 2)].into(),
        dual_master: 1,
        transitions_total: [("master".to_string(), 1), ("backup".to_string(), 1)].into(),
        transitions: vec![TransitionRecord {
            from: "backup".into(),
            to: "master".into(),
            reason: "master_down".into(),
            at: 1_700_000_050.0,
            takeover_seconds: Some(0.004),
        }],
        fence: serde_json::from_value(serde_json::json!({
            "fenced": false,
            "witness": {"address": "192.0.2.254", "reachable": true, "last_reply_seconds_ago": 0.2},
            "peers": [{"address": "192.0.2.3", "reachable": true, "last_reply_seconds_ago": 0.1}],
            "fences_total": 0
        }))
        .expect("fence"),
        advert_interval_seconds: Some(0.1),
        takeovers: Some(Histogram {
            bounds: vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            counts: vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            count: 1,
            sum: 0.004,
        }),
        hooks: [(
            "master".to_string(),
            fo_agent::hooks::HookStats {
                runs: 1,
                failures: 1,
                timeouts: 0,
            },
        )]
        .into(),
        ..Default::default()
    });
    s.routers.push(RouterStatus {
        name: "ingest".into(),
        ownership: "bgp".into(),
        state: "master".into(),
        vips: vec!["192.0.2.200".parse().expect("ip")],
        bgp: serde_json::from_value(serde_json::json!({
            "daemon": "bird", "protocol": "fo_ingest", "wanted": true, "daemon_up": true,
            "route_up": true, "announced": true, "routes": [],
            "sessions": [{"name": "up1", "info": "Established", "up": true}],
            "bfd": [{"peer": "10.0.0.1", "state": "Up", "up": true}], "error": null
        }))
        .expect("bgp"),
        ..Default::default()
    });
    let backend = |name: &str, healthy, drained| BackendStatus {
        name: name.into(),
        address: "192.0.2.21".parse().expect("ip"),
        port: 1514,
        weight: 1,
        effective_weight: 1,
        healthy,
        detail: None,
        drained,
        resolved: true,
        next_hop: None,
        packets: 10,
        bytes: 1000,
    };
    s.services.push(ServiceStatus {
        name: "events".into(),
        vip: "192.0.2.100".parse().expect("ip"),
        port: 1514,
        protocol: "tcp".into(),
        mode: "dsr".into(),
        fail_open: false,
        backends: vec![
            backend("b1", Some(true), false),
            backend("b2", Some(false), true),
            backend("b3", None, false),
        ],
    });
    s.checks.push(CheckStatus {
        name: "docker".into(),
        up: true,
        detail: None,
    });
    for c in fo_common::Counter::ALL {
        s.xdp.insert(c.name().to_string(), 1);
    }
    s.vrrp_unrouted_drops.insert("vrid".into(), 1);
    s.nat_connections.insert("established".into(), 7);
    s.sync = Some(
        serde_json::from_value(serde_json::json!({
            "current": true,
            "peers": [{"address": "192.0.2.3", "state": "in_sync", "last_heard_seconds": 0.05,
                       "received_messages": 10, "installed": 7, "removed": 0, "gaps": 0,
                       "lag_ms": 2.0, "max_lag_ms": 3.0}],
            "sent_messages": 9, "sent_records": 7, "snapshots_sent": 0, "refused": 1, "refused_by": {"replay": 1},
            "events_read": 7, "events_lost": 0
        }))
        .expect("sync"),
    );
    for (name, entries, capacity) in [
        ("flow", 1200, 1_000_000),
        ("nat", 7, 262_144),
        ("nat_udp", 2, 65_536),
        ("nat_embryonic", 3, 65_536),
    ] {
        s.tables.insert(
            name.into(),
            TableFill {
                entries,
                capacity,
                counted_at: 1_700_000_200.0,
                walk_seconds: 0.001,
                walks: 1,
            },
        );
    }
    s
}

/// Every metric name a Prometheus text exposition defines or samples.
fn names_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("# TYPE ").unwrap_or(l);
            if l.starts_with('#') || l.is_empty() {
                return None;
            }
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            Some(l[..end].to_string())
        })
        .collect()
}

/// `fo_…` identifiers in a PromQL expression.
fn fo_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("fo_") {
        let start = i + at;
        let word_start =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if word_start {
            out.insert(expr[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn every_metric_family_passes_promtool_check_metrics() {
    let om = fo_agent::api::metrics::render(&full_status());
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let text = fo_agent::api::exposition::to_prometheus_text(&om);
    let (ok, said) = promtool(&["check", "metrics"], Some(&text), &monitoring_dir());
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics must have nothing to say; it said:\n{said}\non:\n{text}"
    );
    let names = names_in(&text);
    for family in [
        "fo_build_info",
        "fo_config_reloads_total",
        "fo_config_last_reload_successful",
        "fo_config_last_reload_success_timestamp_seconds",
        "fo_config_last_reload_failure_timestamp_seconds",
        "fo_hook_runs_total",
        "fo_hook_failures_total",
        "fo_hook_timeouts_total",
        "fo_takeover_seconds_bucket",
        "fo_backend_healthy",
        "fo_backend_drained",
        "fo_table_entries",
        "fo_table_capacity",
        "fo_sync_current",
        "fo_bgp_announced",
        "fo_witness_up",
    ] {
        assert!(names.contains(family), "{family} missing from:\n{text}");
    }
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_has_a_test() {
    let dir = monitoring_dir();
    let (ok, said) = promtool(&["check", "rules", "fo-alerts.yml"], None, &dir);
    assert!(ok, "promtool check rules:\n{said}");
    let (ok, said) = promtool(&["test", "rules", "fo-alerts.test.yml"], None, &dir);
    assert!(ok, "promtool test rules:\n{said}");

    let rules = std::fs::read_to_string(dir.join("fo-alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("fo-alerts.test.yml")).expect("rule tests");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    for wanted in [
        "FoSplitBrain",
        "FoNoMaster",
        "FoTakeoverSlow",
        "FoSyncNotCurrent",
        "FoBackendDown",
        "FoTableNearFull",
        "FoReloadRefused",
    ] {
        assert!(alerts.contains(&wanted), "no {wanted} among {alerts:?}");
    }
    // Per alert: at least one evaluation expecting it, one expecting silence.
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for alert in &alerts {
        let (mut fires, mut silent) = (false, false);
        for (i, l) in lines.iter().enumerate() {
            if *l == format!("alertname: {alert}") {
                match lines.get(i + 1) {
                    Some(&"exp_alerts: []") => silent = true,
                    Some(&"exp_alerts:") => fires = true,
                    other => panic!("alertname: {alert} followed by {other:?}"),
                }
            }
        }
        assert!(
            fires && silent,
            "{alert}: the rule tests must see it fire ({fires}) and stay silent ({silent})"
        );
    }
    // Every metric the rules use is one the agent exports (or Prometheus' `up`).
    let exported = names_in(&fo_agent::api::exposition::to_prometheus_text(
        &fo_agent::api::metrics::render(&full_status()),
    ));
    for l in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
    {
        for name in fo_names(l) {
            assert!(
                exported.contains(&name),
                "rule uses {name}, which fo does not export: {l}"
            );
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql_over_exported_metrics() {
    let dir = monitoring_dir();
    let text = std::fs::read_to_string(dir.join("fo-grafana.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let panels = dash["panels"].as_array().expect("panels");
    let exported = names_in(&fo_agent::api::exposition::to_prometheus_text(
        &fo_agent::api::metrics::render(&full_status()),
    ));
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {}",
            p["title"]
        );
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            for name in fo_names(expr) {
                assert!(
                    exported.contains(&name),
                    "panel {} queries {name}, which fo does not export",
                    p["title"]
                );
            }
            // Grafana's variables as Prometheus would see them.
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "6h")
                .replace("$instance", ".*")
                .replace("$router", ".*");
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:panel_{n}\n        expr: {}\n",
                serde_json::Value::String(expr)
            ));
        }
    }
    let tmp = std::env::temp_dir().join(format!(
        "fo-dashboard-rules-{}.yml",
        fo_tests::netns::unique_tag()
    ));
    std::fs::write(&tmp, &rules).expect("write");
    let (ok, said) = promtool(
        &["check", "rules", tmp.to_str().expect("utf-8")],
        None,
        &dir,
    );
    let _ = std::fs::remove_file(&tmp);
    assert!(ok, "the dashboard's queries must parse:\n{said}\n{rules}");
    println!("{n} dashboard queries parse");
}

/// Start the lone lab's agent (plain log to a file) and wait until it took over and
/// ran its hook.
fn start(lab: &Lone) -> (ChildGuard, PathBuf) {
    let log = lab.dir.join("agent.log");
    let mut cmd = lab.agent_command(None);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut agent = ChildGuard {
        child: Some(cmd.spawn().expect("spawn the agent")),
        what: "fo-agent".into(),
    };
    let ready = wait_for(Duration::from_secs(30), || {
        if let Some(st) = agent.exited() {
            panic!(
                "agent exited ({st}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let st = lab.status()?;
        let r = &st["routers"][0];
        (r["state"] == "master" && r["hooks"]["master"]["runs"] == 1).then_some(())
    });
    assert!(
        ready.is_some(),
        "the agent did not take over and run its hook in 30 s:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (agent, log)
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn live_metrics_pass_promtool_check_metrics() {
    fo_tests::require_root();
    let lab = Lone::new("exit 1", "");
    let (_agent, log) = start(&lab);
    std::fs::write(&lab.config, "[node]\ninterface = \n").expect("bad config");
    let (ok, said) = lab.ctl(&["reload"]);
    assert!(!ok, "the bad config must be refused: {said}");
    std::fs::write(&lab.config, lab.config_text("")).expect("config back");
    let backend_name = format!("{}:1514", lab.backend.addr);
    let (ok, said) = lab.ctl(&["backend", "drain", "events", &backend_name]);
    assert!(ok, "drain: {said}");

    let (head, text) = lab.metrics(None);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "without Accept, Prometheus text: {head}"
    );
    let (ok, said) = promtool(&["check", "metrics"], Some(&text), &monitoring_dir());
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics on a live /metrics must have nothing to say; it said:\n{said}\non:\n{text}"
    );
    let backend = format!("service=\"events\",backend=\"{backend_name}\"");
    let version = format!(
        "fo_build_info{{version=\"{}\",abi=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        fo_common::ABI_VERSION
    );
    for (series, want) in [
        (version.as_str(), 1.0),
        ("fo_config_reloads_total{result=\"failure\"}", 1.0),
        ("fo_config_reloads_total{result=\"success\"}", 0.0),
        ("fo_config_last_reload_successful", 0.0),
        ("fo_hook_runs_total{router=\"wazuh\",hook=\"master\"}", 1.0),
        (
            "fo_hook_failures_total{router=\"wazuh\",hook=\"master\"}",
            1.0,
        ),
        (
            "fo_hook_timeouts_total{router=\"wazuh\",hook=\"master\"}",
            0.0,
        ),
        ("fo_takeover_seconds_count{router=\"wazuh\"}", 1.0),
        (
            "fo_takeover_seconds_bucket{le=\"+Inf\",router=\"wazuh\"}",
            1.0,
        ),
        ("fo_vrrp_advert_interval_seconds{router=\"wazuh\"}", 0.1),
        (&format!("fo_backend_healthy{{{backend}}}"), 0.0),
        (&format!("fo_backend_drained{{{backend}}}"), 1.0),
        (&format!("fo_backend_up{{{backend}}}"), 0.0),
        ("fo_table_capacity{table=\"flow\"}", 1_000_000.0),
    ] {
        assert_eq!(
            sample(&text, series),
            Some(want),
            "{series} on a live /metrics:\n{text}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(
        sample(&text, "fo_config_last_reload_failure_timestamp_seconds").is_some_and(|t| t > 1e9),
        "the refused reload's time:\n{text}"
    );
    assert!(sample(&text, "fo_table_entries{table=\"flow\"}").is_some());

    // What Prometheus asks for: OpenMetrics.
    let (head, om) = lab.metrics(Some(
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ));
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        om.ends_with("# EOF\n") && om.contains("# TYPE fo_build info"),
        "{om}"
    );
}

/// Counting the flow table walks it (a BPF hash map keeps no count user space can
/// read). Many scrapes at once must share one walk, not make one each.
#[test]
fn concurrent_scrapes_share_one_walk_of_the_flow_table() {
    const FLOWS: u32 = 1_000_000;
    const SCRAPES: usize = 50;
    fo_tests::require_root();
    let lab = Lone::new("exit 0", "flow_table_size = 1048576");
    let (_agent, _log) = start(&lab);
    let std::net::IpAddr::V4(vip) = fo_tests::lone::VIP.parse().expect("vip") else {
        panic!("IPv4 VIP")
    };
    fo_tests::pins::fill_flows(&lab.pin_dir, vip.octets(), FLOWS);
    let flow = |st: &serde_json::Value| st["tables"]["flow"].clone();
    let before = flow(&lab.status().expect("status"));
    // The next count is a new walk (the last one is over a second old then).
    std::thread::sleep(Duration::from_millis(1100));
    let bodies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..SCRAPES)
            .map(|_| s.spawn(|| lab.metrics(None).1))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scrape"))
            .collect()
    });
    std::thread::sleep(Duration::from_millis(1100));
    // (Were each scrape to walk on its own, the status would queue behind them all.)
    let after = flow(&wait_for(Duration::from_secs(120), || lab.status()).expect("status"));
    let walks = |v: &serde_json::Value| v["walks"].as_u64().expect("walks");
    // The status after the scrapes made one walk of its own.
    let by_scrapes = walks(&after) - walks(&before) - 1;
    let entries = after["entries"].as_u64().expect("entries");
    let took = after["walk_seconds"].as_f64().expect("walk_seconds");
    println!(
        "{SCRAPES} concurrent scrapes of {entries} flows: {by_scrapes} walk(s); one walk took {:.0} ms",
        took * 1e3
    );
    assert!(
        by_scrapes <= 2,
        "{SCRAPES} scrapes at once must share a walk, they made {by_scrapes}"
    );
    assert!(
        bodies
            .iter()
            .all(|b| sample(b, "fo_table_entries{table=\"flow\"}").is_some()),
        "every scrape reports the flow table"
    );
    assert!(
        entries >= u64::from(FLOWS) * 9 / 10 && entries <= 1_048_576,
        "the count must see the {FLOWS} flows put in (an LRU map may evict a few): {entries}"
    );
}
