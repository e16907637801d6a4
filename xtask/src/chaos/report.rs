//! The verdict over the whole run (the invariants of the parent's doc, from the
//! observer's record, the fleets' and sinks' reports and the fault log), written as
//! `report.json` and `report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::bail;
use serde_json::{Value, json};

use super::faults::Kind;
use super::state::Chaos;
use super::verdict::{self, Span};
use super::{
    ADVERT, AGENTS, MAX_STALLED_SHARE, OBSERVER, PRIORITIES, PROBE_INTERVAL, RATE_PER_S, VIP,
    master_down,
};
use crate::lab::config::XDP_MODE;
use crate::lab::{Proc, unix_ns};
use crate::util::read_json;

impl Chaos<'_> {
    pub(super) fn verdict(
        &mut self,
        out: &Path,
        [fleet_report, nat_fleet_report]: [&Path; 2],
        sink_reports: &[PathBuf],
        tcpdump: &Proc,
        started: SystemTime,
        ended: SystemTime,
    ) -> anyhow::Result<Vec<String>> {
        let events: Vec<verdict::Arp> = tcpdump
            .lock()
            .iter()
            .filter_map(|(_, l)| verdict::parse_tcpdump(l))
            .collect();
        let (from, to) = (unix_ns(started), unix_ns(ended));
        let probes: Vec<verdict::Probe> = verdict::probes(
            &events,
            &OBSERVER.to_string(),
            &self.observer_mac,
            &VIP.to_string(),
        )
        .into_iter()
        .filter(|p| p.at_ns >= from && p.at_ns <= to)
        .collect();
        if probes.len() < 10 {
            bail!("the observer recorded only {} probes", probes.len());
        }
        let stalls = verdict::stalls(&probes);
        let stalled_ms: f64 = stalls
            .iter()
            .map(|s| (s.to_ns - s.from_ns) as f64 / 1e6)
            .fold(0.0, |a, b| a + b);
        let max_probe_gap_ms = probes
            .windows(2)
            .map(|w| (w[1].at_ns - w[0].at_ns) as f64 / 1e6)
            .fold(0.0, f64::max);
        let macs: BTreeMap<String, String> = self
            .lab
            .nodes
            .iter()
            .map(|n| (n.mac.to_lowercase(), n.name.clone()))
            .collect();
        let name_of = |m: &String| {
            macs.get(m)
                .cloned()
                .unwrap_or_else(|| format!("unknown {m}"))
        };
        let strangers: Vec<String> = probes
            .iter()
            .flat_map(|p| p.macs.iter())
            .filter(|m| !macs.contains_key(*m))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();

        let mdi = PRIORITIES
            .iter()
            .map(|(_, p)| master_down(*p))
            .max()
            .unwrap_or_default();
        // (a), but for a killed agent's lease: its pinned program answers until the lease
        // (Master_Down_Interval) runs out, and a peer that preempts (a restarted node of
        // higher priority) may claim meanwhile. Such an overlap is held to the lease.
        let kills: Vec<(String, u64)> = self
            .faults
            .iter()
            .filter(|f| f.kind == Kind::KillAgent)
            .filter_map(|f| {
                let node = self.lab.nodes.iter().find(|n| n.name == f.target)?;
                Some((node.mac.to_lowercase(), unix_ns(f.started)))
            })
            .collect();
        let (lease_ns, slack_ns) = (mdi.as_nanos() as u64, PROBE_INTERVAL.as_nanos() as u64);
        let (leased, overlaps): (Vec<verdict::Episode>, Vec<verdict::Episode>) =
            verdict::overlaps(&probes)
                .into_iter()
                .partition(|o| verdict::within_lease(o, &kills, lease_ns, slack_ns));
        let overlap_limit = ADVERT + PROBE_INTERVAL;
        let max_overlap = overlaps
            .iter()
            .map(verdict::Episode::ms)
            .fold(0.0, f64::max);
        let max_leased = leased.iter().map(verdict::Episode::ms).fold(0.0, f64::max);
        // (b)
        let spans: Vec<Span> = self
            .eligible
            .iter()
            .flat_map(|e| e.spans.iter().copied())
            .collect();
        let ownerless_limit = mdi + Duration::from_millis(50) + PROBE_INTERVAL;
        let ownerless = verdict::ownerless(&probes);
        let ownerless_eligible: Vec<(f64, &verdict::Episode)> = ownerless
            .iter()
            .map(|e| (verdict::eligible_within(e, &spans) as f64 / 1e6, e))
            .collect();
        let max_ownerless_eligible = ownerless_eligible.iter().map(|x| x.0).fold(0.0, f64::max);
        let max_ownerless = ownerless
            .iter()
            .map(verdict::Episode::ms)
            .fold(0.0, f64::max);
        // (c)
        let fleet = read_json(fleet_report)?;
        let mut sinks = Vec::new();
        for (bi, b) in self.lab.backends.iter().enumerate() {
            for r in &b.reports {
                sinks.push((read_json(r)?, self.stopped_backends[bi]));
            }
        }
        debug_assert_eq!(sinks.len(), sink_reports.len());
        let loss = verdict::loss(&fleet, &sinks);
        let merged = self.lab.merge(fleet_report, sink_reports)?;
        // (d)
        let nat_loss = verdict::loss(&read_json(nat_fleet_report)?, &sinks);
        let nat_merged = self.lab.merge(nat_fleet_report, sink_reports)?;
        let nat_ok = nat_loss.agents_counted > 0
            && nat_loss.events_lost == 0
            && nat_loss.acked_lost_all == 0
            && nat_loss.agents_broken == 0;
        // The observer.
        let run_s = ended
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64();
        let stalled_share = stalled_ms / (run_s * 1e3).max(1.0);

        let mut problems = std::mem::take(&mut self.problems);
        for o in overlaps
            .iter()
            .filter(|o| o.ms() > overlap_limit.as_secs_f64() * 1e3)
        {
            problems.push(format!(
                "(a) two nodes answered for {VIP} for {:.0} ms (limit {} ms) from t={:.2}s: {}",
                o.ms(),
                overlap_limit.as_millis(),
                (o.from_ns - from) as f64 / 1e9,
                o.macs.iter().map(name_of).collect::<Vec<_>>().join(", ")
            ));
        }
        for (ms, e) in ownerless_eligible
            .iter()
            .filter(|x| x.0 > ownerless_limit.as_secs_f64() * 1e3)
        {
            problems.push(format!(
                "(b) nobody answered for {VIP} for {ms:.0} ms while a node was healthy and eligible (limit {} ms), episode t={:.2}s-{:.2}s",
                ownerless_limit.as_millis(),
                (e.from_ns - from) as f64 / 1e9,
                (e.to_ns - from) as f64 / 1e9,
            ));
        }
        if loss.agents_counted == 0 {
            problems.push("(c) no agent had a backend that stayed up: nothing to count".into());
        }
        if loss.events_lost != 0 {
            problems.push(format!(
                "(c) {} events lost by {} agents whose backend stayed up",
                loss.events_lost, loss.agents_counted
            ));
        }
        if loss.acked_lost_all != 0 {
            problems.push(format!(
                "(c) {} acknowledged events lost",
                loss.acked_lost_all
            ));
        }
        if nat_loss.agents_counted == 0 {
            problems.push("(d) no NAT agent had a backend that stayed up: nothing to count".into());
        }
        if nat_loss.agents_broken != 0 {
            problems.push(format!(
                "(d) {} of {} NAT connections whose backend stayed up were reset or lost ({} resets); see fleet-nat.json",
                nat_loss.agents_broken, nat_loss.agents_counted, nat_loss.resets_counted
            ));
        }
        if nat_loss.events_lost != 0 {
            problems.push(format!(
                "(d) {} events lost by {} NAT agents whose backend stayed up",
                nat_loss.events_lost, nat_loss.agents_counted
            ));
        }
        if nat_loss.acked_lost_all != 0 {
            problems.push(format!(
                "(d) {} acknowledged events lost on NAT connections",
                nat_loss.acked_lost_all
            ));
        }
        if stalled_share > MAX_STALLED_SHARE {
            problems.push(format!(
                "observer stalls hid {:.0} ms of {run_s:.0} s ({:.1} %, limit {:.0} %): the machine was too loaded for the run to show anything; rerun it",
                stalled_ms,
                stalled_share * 100.0,
                MAX_STALLED_SHARE * 100.0
            ));
        }
        if !strangers.is_empty() {
            problems.push(format!(
                "ARP replies for {VIP} from unknown MACs: {strangers:?}"
            ));
        }

        let counts: BTreeMap<&str, u64> = Kind::ALL
            .iter()
            .map(|k| {
                let n = self.faults.iter().filter(|f| f.kind == *k).count() as u64;
                (k.name(), n)
            })
            .collect();
        for (k, _) in counts.iter().filter(|(_, n)| **n == 0) {
            problems.push(format!("fault kind never injected: {k}"));
        }
        let doc = json!({
            "seed": self.rng.seed(),
            "duration_s": self.duration.as_secs(),
            "run_s": run_s,
            "settings": {
                "advert_interval_ms": ADVERT.as_millis() as u64,
                "master_down_interval_ms": PRIORITIES.iter().map(|(n, p)| (n.to_string(), master_down(*p).as_secs_f64() * 1e3)).collect::<BTreeMap<_, _>>(),
                "probe_interval_ms": PROBE_INTERVAL.as_millis() as u64,
                "agents": AGENTS, "nat_agents": AGENTS, "rate_per_s": RATE_PER_S, "xdp_mode": XDP_MODE,
            },
            "faults": counts,
            "fault_log": self.faults.iter().map(|f| f.to_json(started)).collect::<Vec<_>>(),
            "invariants": {
                "a_overlap": {"limit_ms": overlap_limit.as_millis() as u64, "max_ms": max_overlap, "episodes": overlaps.len(), "ok": max_overlap <= overlap_limit.as_secs_f64() * 1e3,
                    "within_lease": {"episodes": leased.len(), "max_ms": max_leased, "lease_ms": mdi.as_millis() as u64}},
                "b_ownerless": {"limit_ms": ownerless_limit.as_millis() as u64, "max_with_eligible_node_ms": max_ownerless_eligible, "max_any_ms": max_ownerless, "episodes": ownerless.len(), "ok": max_ownerless_eligible <= ownerless_limit.as_secs_f64() * 1e3},
                "c_loss": {"ok": loss.agents_counted > 0 && loss.events_lost == 0 && loss.acked_lost_all == 0, "figures": loss},
                "d_nat": {"ok": nat_ok, "figures": nat_loss},
            },
            "observer": {"probes": probes.len(), "max_probe_gap_ms": max_probe_gap_ms, "stalls": stalls.len(), "stalled_ms": stalled_ms, "stalled_share": stalled_share, "max_stalled_share": MAX_STALLED_SHARE, "stall_threshold_ms": verdict::OBSERVER_STALL_NS / 1_000_000},
            "merged": merged,
            "merged_nat": nat_merged,
            "problems": problems,
            "logs": self.lab.dir.display().to_string(),
        });
        let md = markdown(&doc);
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&doc)?)?;
        std::fs::write(out.join("report.md"), &md)?;
        println!("\n{md}");
        println!("report: {}", out.join("report.md").display());
        Ok(problems)
    }
}

fn markdown(doc: &Value) -> String {
    let mut s = String::new();
    let inv = &doc["invariants"];
    let ok = |v: &Value| {
        if v["ok"].as_bool() == Some(true) {
            "ok"
        } else {
            "BROKEN"
        }
    };
    let _ = writeln!(
        s,
        "# fo chaos run\n\nseed {}, {:.0} s of faults, VRRPv3 advert {} ms, {} DSR and {} NAT (synced) agents x {}/s through the VIP, observer probe every {} ms\n",
        doc["seed"],
        doc["run_s"].as_f64().unwrap_or(0.0),
        doc["settings"]["advert_interval_ms"],
        doc["settings"]["agents"],
        doc["settings"]["nat_agents"],
        doc["settings"]["rate_per_s"],
        doc["settings"]["probe_interval_ms"]
    );
    let _ = writeln!(s, "## Faults injected\n\n| fault | count |\n|---|---|");
    for (k, v) in doc["faults"].as_object().into_iter().flatten() {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "\n## Invariants\n\n| invariant | limit | measured | result |\n|---|---|---|---|"
    );
    let a = &inv["a_overlap"];
    let _ = writeln!(
        s,
        "| (a) two nodes answering ARP for the VIP | {} ms | max {:.0} ms ({} episodes); within a killed agent's lease ({} ms): {} more, max {:.0} ms | {} |",
        a["limit_ms"],
        a["max_ms"].as_f64().unwrap_or(0.0),
        a["episodes"],
        a["within_lease"]["lease_ms"],
        a["within_lease"]["episodes"],
        a["within_lease"]["max_ms"].as_f64().unwrap_or(0.0),
        ok(a)
    );
    let b = &inv["b_ownerless"];
    let _ = writeln!(
        s,
        "| (b) nobody answering while a node is healthy and eligible | {} ms | max {:.0} ms (longest silence overall {:.0} ms, {} episodes) | {} |",
        b["limit_ms"],
        b["max_with_eligible_node_ms"].as_f64().unwrap_or(0.0),
        b["max_any_ms"].as_f64().unwrap_or(0.0),
        b["episodes"],
        ok(b)
    );
    let c = &inv["c_loss"];
    let f = &c["figures"];
    let _ = writeln!(
        s,
        "| (c) events lost on flows whose backend stayed up | 0 | {} lost ({} agents counted, {} left out; acked lost overall {}, lost overall {}, of {} sent) | {} |",
        f["events_lost"],
        f["agents_counted"],
        f["agents_excluded"],
        f["acked_lost_all"],
        f["events_lost_all"],
        f["events_sent"],
        ok(c)
    );
    let d = &inv["d_nat"];
    let f = &d["figures"];
    let _ = writeln!(
        s,
        "| (d) NAT connections (synced) whose backend stayed up: reset, re-established or lost events | 0 | {} broken ({} resets), {} events lost ({} agents counted, {} left out; acked lost overall {}, of {} sent) | {} |",
        f["agents_broken"],
        f["resets_counted"],
        f["events_lost"],
        f["agents_counted"],
        f["agents_excluded"],
        f["acked_lost_all"],
        f["events_sent"],
        ok(d)
    );
    let o = &doc["observer"];
    let _ = writeln!(
        s,
        "| observer stalls (time not observed) | {:.0} % | {:.1} % ({} stalls, {:.0} ms) | {} |",
        o["max_stalled_share"].as_f64().unwrap_or(0.0) * 100.0,
        o["stalled_share"].as_f64().unwrap_or(0.0) * 100.0,
        o["stalls"],
        o["stalled_ms"].as_f64().unwrap_or(0.0),
        if o["stalled_share"].as_f64().unwrap_or(1.0)
            <= o["max_stalled_share"].as_f64().unwrap_or(0.0)
        {
            "ok"
        } else {
            "BROKEN"
        }
    );
    let m = &doc["merged"];
    let _ = writeln!(
        s,
        "\nDSR fleet: {} resets, {} reconnects, max gap {:.0} ms; NAT fleet: {} resets, {} reconnects, max gap {:.0} ms; observer: {} probes, longest between two {:.0} ms, {} stalls (over {} ms between probes: not observed, {:.0} ms in all)",
        m["connections_reset"],
        m["reconnects"],
        m["max_gap_ms"].as_f64().unwrap_or(0.0),
        doc["merged_nat"]["connections_reset"],
        doc["merged_nat"]["reconnects"],
        doc["merged_nat"]["max_gap_ms"].as_f64().unwrap_or(0.0),
        doc["observer"]["probes"],
        doc["observer"]["max_probe_gap_ms"].as_f64().unwrap_or(0.0),
        doc["observer"]["stalls"],
        doc["observer"]["stall_threshold_ms"],
        doc["observer"]["stalled_ms"].as_f64().unwrap_or(0.0)
    );
    let problems = doc["problems"].as_array().cloned().unwrap_or_default();
    if problems.is_empty() {
        let _ = writeln!(s, "\nresult: every invariant held");
    } else {
        let _ = writeln!(s, "\nresult: BROKEN");
        for p in problems {
            let _ = writeln!(s, "- {}", p.as_str().unwrap_or_default());
        }
    }
    let _ = writeln!(s, "\nlogs: {}", doc["logs"].as_str().unwrap_or_default());
    s
}
