//! `cargo xtask demo`: two fo agents (VRRPv3, 100 ms adverts) in front of three DSR
//! backends, a fleet of 300 long-lived agent connections, the master killed with SIGKILL
//! and brought back. Prints a timeline and a summary; writes `target/demo/demo.json` and
//! `target/demo/timeline.png`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::lab::config::{XDP_MODE, tcp_service, vrrp_router};
use crate::lab::plot::{self, Marker, Panel};
use crate::lab::series::{longest_empty_ms, sum_timelines};
use crate::lab::{self, Bins, Lab, Spec, Transition, test_net, unix_ns};
use crate::util::read_json;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const PORT: u16 = 1514;
const BACKENDS: [u8; 3] = [21, 22, 23];
const AGENTS: u32 = 300;
const RATE_PER_S: u32 = 100;
/// Fleet source addresses 192.0.2.129-192.0.2.228: `hash = "source-ip"` then spreads
/// 100 sources over the backends.
const SOURCES: (u8, u8) = (129, 228);
/// Each phase (before the kill, while a is dead, after a is back).
const PHASE: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_secs(2);

fn router(priority: u8, peer: Ipv4Addr) -> String {
    let router = vrrp_router("demo", 51, 3, priority, 100, VIP, peer);
    let service = tcp_service(VIP, PORT, "dsr", "source-ip", &test_net(BACKENDS), None);
    format!("{router}\n{service}")
}

/// What happened, when (wall clock), for the timeline and the plot.
struct Event {
    at: SystemTime,
    what: String,
    color: plotters::style::RGBColor,
}

impl Event {
    fn new(at: SystemTime, what: impl Into<String>, color: plotters::style::RGBColor) -> Self {
        Self {
            at,
            what: what.into(),
            color,
        }
    }
}

pub fn run() -> anyhow::Result<()> {
    let bins = Bins::build_release()?;
    let started = Instant::now();
    let spec = Spec {
        client_sources: test_net(SOURCES.0..=SOURCES.1),
        backends: test_net(BACKENDS),
        ..Spec::pair("fo-demo", VIP, PORT)
    };
    let (mut lab, out) = lab::run::build("demo", &spec, bins)?;
    let outcome = scenario(&mut lab, &out, started);
    // The lab is torn down here (and on Ctrl-C, by the handler Lab::build installed).
    drop(lab);
    let failed = outcome?;
    println!(
        "run time after the build: {:.1} s (lab built and torn down)",
        started.elapsed().as_secs_f64()
    );
    if let Some(why) = failed {
        bail!("{why}");
    }
    Ok(())
}

/// The run itself. `Ok(Some(why))`: the demo ran but a figure that must hold did not.
fn scenario(lab: &mut Lab, out: &Path, started: Instant) -> anyhow::Result<Option<String>> {
    let (a_addr, b_addr) = (lab.nodes[0].addr, lab.nodes[1].addr);
    lab.node("a").write_config(XDP_MODE, &router(150, b_addr))?;
    lab.node("b").write_config(XDP_MODE, &router(100, a_addr))?;
    let mut events: Vec<Event> = Vec::new();

    let bins = lab.bins.clone();
    let t_origin = SystemTime::now();
    start_a_master(
        lab,
        &mut events,
        "a running (XDP program loaded)",
        "a master",
    )?;
    let ready = lab.node("b").start(&bins)?;
    events.push(Event::new(ready, "b running, backup", plot::GREY));
    lab.node("b")
        .wait_state("backup", Duration::from_secs(10))?;
    eprintln!(
        "demo: a is master, b is backup; starting 3 sinks and {AGENTS} agents at {RATE_PER_S}/s"
    );

    lab.start_sinks()?;
    let fleet_args = crate::lab::fleet_args(AGENTS, RATE_PER_S, SOURCES, DRAIN, "5m");
    lab.start_fleet(&fleet_args)?;
    let fleet_start = SystemTime::now();
    events.push(Event::new(
        fleet_start,
        format!("fleet started ({AGENTS} agents)"),
        plot::GREY,
    ));
    let connected = format!("connected={AGENTS}/{AGENTS}");
    lab.fleet
        .as_mut()
        .context("fleet")?
        .wait_for_line(Duration::from_secs(10), |l| l.contains(&connected))
        .context("the fleet could not connect every agent through the VIP")?;
    if let Some(mac) = lab.client_vip_mac() {
        let who = lab
            .nodes
            .iter()
            .find(|n| n.mac == mac)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| "?".into());
        eprintln!("demo: all {AGENTS} agents connected; the client sends to {who} ({mac})");
    }

    sleep_until(fleet_start, PHASE);
    let killed = lab.node("a").kill9()?;
    events.push(Event::new(killed, "a killed (SIGKILL)", plot::RED));
    eprintln!("demo: killed a (SIGKILL); its data plane stays pinned, its lease runs out");
    let b_master = lab.node("b").wait_state("master", Duration::from_secs(5))?;
    events.push(Event::new(b_master, "b master", plot::ORANGE));

    sleep_until(killed, PHASE);
    let a_back = SystemTime::now();
    events.push(Event::new(a_back, "a started again", plot::GREY));
    let a_master = start_a_master(
        lab,
        &mut events,
        "a running (pinned data plane adopted)",
        "a master (preempted)",
    )?;
    let b_backup = lab
        .node("b")
        .wait_state_after("backup", a_back, Duration::from_secs(5))?;
    events.push(Event::new(b_backup, "b backup", plot::GREY));

    sleep_until(a_back, PHASE);
    let fleet_stop = SystemTime::now();
    events.push(Event::new(fleet_stop, "fleet stopped (drain)", plot::GREY));
    let fleet_report = lab.stop_fleet(DRAIN)?;
    let sink_reports = lab.stop_sinks()?;
    let merged = lab.merge(&fleet_report, &sink_reports)?;
    let a_alive = lab.node("a").running();
    let b_alive = lab.node("b").running();
    if !a_alive || !b_alive {
        bail!(
            "an agent died during the run (a running: {a_alive}, b running: {b_alive}); see {}",
            lab.dir.display()
        );
    }

    let mut transitions: Vec<Transition> = lab.nodes.iter().flat_map(|n| n.transitions()).collect();
    transitions.sort_by_key(|t| t.at);
    let fleet: Value = read_json(&fleet_report)?;
    let sinks: Vec<Value> = sink_reports
        .iter()
        .map(|p| read_json(p))
        .collect::<anyhow::Result<_>>()?;
    let buckets = sum_timelines(&sinks);

    let rel = |t: SystemTime| -> f64 {
        t.duration_since(t_origin)
            .map(|d| d.as_secs_f64())
            .unwrap_or_else(|e| -e.duration().as_secs_f64())
    };
    let masters = master_segments(&transitions, &[("a", killed)], fleet_stop);
    let kill_to_b_ms = b_master
        .duration_since(killed)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let back_to_a_ms = a_master
        .duration_since(a_back)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0);
    let b_takeover = transitions
        .iter()
        .find(|t| t.node == "b" && t.to == "master");
    let agent_takeover_ms = b_takeover.and_then(|t| t.takeover_ms);
    // What the client saw: the longest run of empty 10 ms buckets at the sinks around
    // each handover, and over the whole run.
    let secs = Duration::from_secs_f64;
    let gap_failover = longest_empty_ms(&buckets, killed - secs(0.1), b_master + secs(1.0));
    let gap_return = longest_empty_ms(&buckets, a_back - secs(0.1), a_master + secs(1.0));
    let gap_run = longest_empty_ms(&buckets, fleet_start + secs(0.5), fleet_stop);

    // ---- print -------------------------------------------------------------
    println!();
    println!(
        "fo demo: VRRPv3 pair (advert 100 ms; a priority 150 preempt, b priority 100, unicast peers),"
    );
    println!(
        "XDP DSR in {XDP_MODE} (SKB) mode on veth, service {VIP}:{PORT}/tcp hash source-ip, 3 backends,"
    );
    println!("{AGENTS} agents at {RATE_PER_S} events/s each from 100 source addresses.");
    println!();
    println!("timeline (t=0: agent a started)");
    events.sort_by_key(|e| e.at);
    for e in &events {
        let extra = match e.what.as_str() {
            "b master" => format!(
                "  takeover {kill_to_b_ms:.0} ms after the kill{}",
                agent_takeover_ms
                    .map(|m| format!(" (agent: VIPs served {m:.1} ms after master-down)"))
                    .unwrap_or_default()
            ),
            "a master (preempted)" => format!("  {back_to_a_ms:.0} ms after the restart"),
            _ => String::new(),
        };
        println!("  t={:>6.2}s  {}{extra}", rel(e.at), e.what);
    }
    println!();
    let m = &merged;
    let num = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
    let ms = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut rows: Vec<(String, String)> = Vec::new();
    let who = masters
        .iter()
        .map(|(who, from, to)| format!("{who} {:.2}-{:.2} s", rel(*from), rel(*to)))
        .collect::<Vec<_>>()
        .join(", ");
    rows.push(("master".into(), who));
    rows.push((
        "takeover (kill -> b master)".into(),
        format!(
            "{kill_to_b_ms:.0} ms{}",
            agent_takeover_ms
                .map(|t| format!(" (master-down -> VIPs served: {t:.1} ms)"))
                .unwrap_or_default()
        ),
    ));
    rows.push((
        "preemption (a restarted -> master)".into(),
        format!("{back_to_a_ms:.0} ms"),
    ));
    rows.push((
        "connections reset".into(),
        format!(
            "{} of {AGENTS} (fleet saw), {} RST at the sinks, {} reconnects",
            num("connections_reset"),
            num("sink_connections_rst"),
            num("reconnects")
        ),
    ));
    rows.push((
        "events sent / received".into(),
        format!(
            "{} / {} unique ({} frames)",
            num("events_sent"),
            num("events_unique"),
            num("events_received")
        ),
    ));
    rows.push((
        "events lost (acked / unacked)".into(),
        format!("{} / {}", num("lost_acked"), num("lost_unacked")),
    ));
    rows.push(("duplicates".into(), num("duplicated").to_string()));
    rows.push((
        "max gap (agent without connection)".into(),
        format!("{:.0} ms", ms("max_gap_ms")),
    ));
    rows.push((
        "max silence (per agent, at a sink)".into(),
        format!("{:.0} ms", ms("max_silence_ms")),
    ));
    rows.push((
        "no event at any sink (10 ms buckets)".into(),
        format!(
            "failover {gap_failover} ms, return {gap_return} ms, longest in the run {gap_run} ms"
        ),
    ));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    println!("summary");
    for (k, v) in &rows {
        println!("  {k:<width$}  {v}");
    }

    // ---- files -------------------------------------------------------------
    std::fs::create_dir_all(out)?;
    let png = out.join("timeline.png");
    let json_path = out.join("demo.json");
    let bucket_s = 0.01;
    let series: Vec<(f64, u64)> = buckets
        .iter()
        .map(|(&ns, &c)| (rel(from_unix_ns(ns)), c))
        .collect();
    let markers: Vec<Marker> = events
        .iter()
        .map(|e| Marker::new(rel(e.at), e.what.clone(), e.color))
        .collect();
    let around = |t: SystemTime| rel(t) - 0.5..rel(t) + 1.5;
    let panels = [
        Panel::new("whole run", rel(fleet_start) - 0.5..rel(fleet_stop) + 0.5),
        Panel::new("failover: a killed, b takes over", around(killed)),
        Panel::new("return: a restarted, preempts", around(a_back)),
    ];
    let title = format!(
        "fo demo: events received per 10 ms at the 3 sinks ({AGENTS} agents x {RATE_PER_S}/s), takeover {kill_to_b_ms:.0} ms, {} resets, {} lost",
        num("connections_reset"),
        num("lost_acked") + num("lost_unacked")
    );
    let png_written = match plot::timeline_png(
        &png,
        &plot::Timeline {
            title: &title,
            x_desc: "seconds since agent a started",
            y_desc: "events received per 10 ms",
            bucket_s,
            buckets: &series,
            markers: &markers,
            panels: &panels,
        },
    ) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("demo: the PNG was not written: {e:#}");
            false
        }
    };
    let doc = json!({
        "xdp_mode": XDP_MODE,
        "lab": {
            "tag": lab.tag, "vip": VIP.to_string(), "port": PORT, "client": lab.client.addr.to_string(),
            "client_sources": lab.client.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "switch": lab.switch.name,
            "nodes": lab.nodes.iter().map(|n| json!({"name": n.name, "address": n.addr.to_string(), "mac": n.mac})).collect::<Vec<_>>(),
            "backends": lab.backends.iter().map(|b| b.addr.to_string()).collect::<Vec<_>>(),
            "logs": lab.dir.display().to_string(),
        },
        "settings": {"agents": AGENTS, "rate_per_s": RATE_PER_S, "advert_interval_ms": 100, "phase_s": PHASE.as_secs(), "drain_ms": DRAIN.as_millis() as u64},
        "origin_unix_ns": unix_ns(t_origin),
        "events": events.iter().map(|e| json!({"t_s": rel(e.at), "at_unix_ns": unix_ns(e.at), "what": e.what})).collect::<Vec<_>>(),
        "transitions": transitions.iter().map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["t_s"] = json!(rel(t.at));
            v
        }).collect::<Vec<_>>(),
        "masters": masters.iter().map(|(w, f, t)| json!({"master": w, "from_s": rel(*f), "to_s": rel(*t)})).collect::<Vec<_>>(),
        "no_event_ms": {"failover": gap_failover, "return": gap_return, "run": gap_run},
        "takeover_ms": {"kill_to_backup_master": kill_to_b_ms, "agent_master_down_to_served": agent_takeover_ms, "restart_to_preempt": back_to_a_ms},
        "merged": merged,
        "fleet_totals": fleet.get("totals"),
        "fleet_outages": fleet.get("outages"),
        "sinks": sinks.iter().zip(&sink_reports).map(|(s, p)| json!({"report": p.display().to_string(), "totals": s.get("totals")})).collect::<Vec<_>>(),
        "arrivals": {
            "bucket_ms": 10,
            "start_unix_ns": buckets.keys().next().copied().unwrap_or(0),
            "counts": dense(&buckets),
        },
        "run_seconds_after_build": started.elapsed().as_secs_f64(),
    });
    std::fs::write(&json_path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    if gap_failover < kill_to_b_ms as u64 {
        println!(
            "  (kill -9 stops the agent, not the node: a's pinned XDP program went on forwarding what\n   \
             the client sent to a's MAC until b's gratuitous ARP moved it; a's dead-man lease stopped\n   \
             a answering ARP for the VIP. A dead node would leave a gap of about the takeover time.)"
        );
    }
    println!();
    println!("raw figures: {}", json_path.display());
    if png_written {
        println!(
            "timeline:    {} (events per 10 ms at the sinks, transitions marked)",
            png.display()
        );
    }
    println!("logs:        {}", lab.dir.display());

    let mut problems = Vec::new();
    if num("lost_acked") != 0 {
        problems.push(format!(
            "{} acknowledged events were lost (must be 0)",
            num("lost_acked")
        ));
    }
    if num("unknown_agents") != 0 {
        problems.push(format!(
            "the sinks saw {} agents the fleet did not run",
            num("unknown_agents")
        ));
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}

/// Starts agent a and waits until it is master; the timeline notes both (`running`:
/// what its start did). Returns when it became master.
fn start_a_master(
    lab: &mut Lab,
    events: &mut Vec<Event>,
    running: &str,
    master: &str,
) -> anyhow::Result<SystemTime> {
    let bins = lab.bins.clone();
    let ready = lab.node("a").start(&bins)?;
    events.push(Event::new(ready, running, plot::GREY));
    let at = lab
        .node("a")
        .wait_state("master", Duration::from_secs(10))?;
    events.push(Event::new(at, master, plot::GREEN));
    Ok(at)
}

fn sleep_until(from: SystemTime, after: Duration) {
    let elapsed = from.elapsed().unwrap_or_default();
    if let Some(left) = after.checked_sub(elapsed) {
        std::thread::sleep(left);
    }
}

fn from_unix_ns(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The summed buckets as one dense array from the first bucket.
fn dense(b: &BTreeMap<u64, u64>) -> Vec<u64> {
    let Some((&first, _)) = b.iter().next() else {
        return Vec::new();
    };
    let Some((&last, _)) = b.iter().next_back() else {
        return Vec::new();
    };
    let mut v = vec![0; ((last - first) / 10_000_000 + 1) as usize];
    for (&t, &c) in b {
        v[((t - first) / 10_000_000) as usize] += c;
    }
    v
}

/// Who was master from when to when: a node is master from its transition to master
/// until its next transition or until it was killed (`kills`: node, when).
fn master_segments(
    transitions: &[Transition],
    kills: &[(&str, SystemTime)],
    end: SystemTime,
) -> Vec<(String, SystemTime, SystemTime)> {
    let mut changes: Vec<(SystemTime, &str, bool)> = transitions
        .iter()
        .map(|t| (t.at, t.node.as_str(), t.to == "master"))
        .collect();
    changes.extend(kills.iter().map(|&(node, at)| (at, node, false)));
    changes.sort_by_key(|c| c.0);
    let mut since: BTreeMap<&str, SystemTime> = BTreeMap::new();
    let mut out = Vec::new();
    for (at, node, master) in changes {
        match (master, since.get(node)) {
            (true, None) => {
                since.insert(node, at);
            }
            (false, Some(&s)) => {
                out.push((node.to_owned(), s, at));
                since.remove(node);
            }
            _ => {}
        }
    }
    out.extend(since.into_iter().map(|(node, s)| (node.to_owned(), s, end)));
    out.sort_by_key(|s| s.1);
    out
}
