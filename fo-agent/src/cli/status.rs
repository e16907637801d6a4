//! `fo-agent status [--json]`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use fo_agent::api::control::{Request, Response};
use fo_agent::api::status::Status;

use super::control::{ask, print_json};

pub fn main(socket: &Path, json: bool) -> ExitCode {
    let status = match ask(socket, &Request::Status, "", |r| match r {
        Response::Status { status } => Ok(status),
        other => Err(other),
    }) {
        Ok(status) => status,
        Err(code) => return code,
    };
    if json {
        if !print_json(&status) {
            return ExitCode::FAILURE;
        }
    } else {
        print!("{}", human(&status));
    }
    ExitCode::SUCCESS
}

fn ago(unix: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let s = (now - unix).max(0.0);
    if s < 120.0 {
        format!("{s:.1}s ago")
    } else if s < 7200.0 {
        format!("{:.0}m ago", s / 60.0)
    } else {
        format!("{:.1}h ago", s / 3600.0)
    }
}

fn human(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node: {} (xdp {}, data plane {}), config {}",
        s.node.interface, s.node.xdp_mode, s.node.dataplane, s.node.config
    );
    let r = &s.node.reloads;
    if r.succeeded + r.failed > 0 {
        let _ = write!(
            o,
            "reloads: {} ok, {} refused; config loaded {}",
            r.succeeded,
            r.failed,
            ago(s.node.config_loaded_at)
        );
        match (&r.last_error, r.last_succeeded, r.last_failure_at) {
            (Some(e), false, Some(at)) => {
                let _ = writeln!(o, "; LAST RELOAD REFUSED {}: {e}", ago(at));
            }
            _ => o.push('\n'),
        }
    }
    if !s.tables.is_empty() {
        let fill: Vec<String> = s
            .tables
            .iter()
            .map(|(name, t)| {
                let pct = if t.capacity > 0 {
                    t.entries as f64 * 100.0 / t.capacity as f64
                } else {
                    0.0
                };
                format!("{name} {}/{} ({pct:.1} %)", t.entries, t.capacity)
            })
            .collect();
        let _ = writeln!(o, "tables: {}", fill.join(", "));
    }
    let _ = writeln!(
        o,
        "\nROUTER          STATE    PRIO(cfg/eff)  VIPS                    SINCE          LAST TRANSITION"
    );
    for r in &s.routers {
        let prio = match (r.configured_priority, r.effective_priority) {
            (Some(c), Some(e)) => format!("{c}/{e}"),
            _ => "-".into(),
        };
        let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
        let since = r.master_since.map(ago).unwrap_or_else(|| "-".into());
        let last = r.transitions.last().map_or("-".to_string(), |t| {
            let took = t
                .takeover_seconds
                .map(|x| format!(", takeover {:.0} ms", x * 1000.0))
                .unwrap_or_default();
            format!("{} -> {} ({}) {}{took}", t.from, t.to, t.reason, ago(t.at))
        });
        let mut state = r.state.clone();
        if let Some(a) = &r.admin {
            state.push_str(&format!(" [{a}]"));
        }
        let _ = writeln!(
            o,
            "{:<15} {:<8} {:<14} {:<23} {:<14} {}",
            r.name,
            state,
            prio,
            vips.join(","),
            since,
            last
        );
        if r.draining {
            let _ = writeln!(
                o,
                "{:<15} draining: another node serves the VIPs, this one forwards what still arrives",
                ""
            );
        }
        if let Some(h) = &r.handover {
            let _ = writeln!(o, "{:<15} handover: {h}", "");
        }
        if !r.gates_closed.is_empty() {
            let _ = writeln!(o, "{:<15} gates closed: {}", "", r.gates_closed.join(", "));
        }
        if let Some(a) = &r.auth {
            let _ = writeln!(o, "{:<15} adverts authenticated: {a}", "");
        }
        if !r.dropped.is_empty() || r.dual_master > 0 {
            let drops: Vec<String> = r.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(
                o,
                "{:<15} adverts dropped: {}; dual master seen: {}",
                "",
                if drops.is_empty() {
                    "none".into()
                } else {
                    drops.join(", ")
                },
                r.dual_master
            );
        }
        if !r.faults.is_empty() {
            let _ = writeln!(o, "{:<15} faults: {}", "", r.faults.join(", "));
        }
        if let Some(f) = &r.fence {
            let reach = |x: &fo_agent::api::status::Reach| {
                format!("{} {}", x.address, if x.reachable { "up" } else { "DOWN" })
            };
            let peers: Vec<String> = f.peers.iter().map(reach).collect();
            let _ = writeln!(
                o,
                "{:<15} witness {}; peers {}{}",
                "",
                reach(&f.witness),
                if peers.is_empty() {
                    "none heard yet".to_string()
                } else {
                    peers.join(", ")
                },
                if f.fenced {
                    "  ** FENCED: neither peer nor witness answers **"
                } else {
                    ""
                }
            );
        }
        if let Some(b) = &r.bgp {
            let sessions: Vec<String> = b
                .sessions
                .iter()
                .map(|s| format!("{} {}", s.name, if s.up { "up" } else { &s.info }))
                .collect();
            let bfd: Vec<String> = b
                .bfd
                .iter()
                .map(|s| format!("{} {}", s.peer, s.state))
                .collect();
            let _ = writeln!(
                o,
                "{:<15} bgp ({} {}): {}, sessions: {}{}",
                "",
                b.daemon,
                b.protocol,
                if b.announced {
                    "announced"
                } else if b.route_up {
                    "route up, no session established"
                } else {
                    "withdrawn"
                },
                if sessions.is_empty() {
                    "none".to_string()
                } else {
                    sessions.join(", ")
                },
                if bfd.is_empty() {
                    String::new()
                } else {
                    format!(", bfd: {}", bfd.join(", "))
                }
            );
            if let Some(e) = &b.error {
                let _ = writeln!(o, "{:<15} bgp error: {e}", "");
            }
        }
    }
    for svc in &s.services {
        let _ = writeln!(
            o,
            "\nSERVICE {} {}:{}/{} {}{}",
            svc.name,
            svc.vip,
            svc.port,
            svc.protocol,
            svc.mode,
            if svc.fail_open {
                "  ** NO HEALTHY BACKEND: FAIL OPEN **"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "  BACKEND                   HEALTH  WEIGHT(cfg/eff)  PACKETS       BYTES"
        );
        for b in &svc.backends {
            let health = match (b.healthy, b.resolved) {
                // A tunnel backend without a route or a resolved next hop.
                (_, false) if svc.mode == "tunnel" => "no-hop",
                (_, false) => "no-mac",
                (Some(true), _) | (None, _) => "up",
                (Some(false), _) => "down",
            };
            let weight = format!(
                "{}/{}{}",
                b.weight,
                b.effective_weight,
                if b.drained { " drained" } else { "" }
            );
            let _ = writeln!(
                o,
                "  {:<25} {:<7} {:<16} {:<13} {}",
                b.name, health, weight, b.packets, b.bytes
            );
            if let Some(hop) = &b.next_hop {
                let _ = writeln!(o, "    next hop: {hop}");
            }
            if b.healthy == Some(false)
                && let Some(why) = &b.detail
            {
                let _ = writeln!(o, "    why: {why}");
            }
        }
    }
    if !s.nat_connections.is_empty() {
        let counts: Vec<String> = s
            .nat_connections
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        let _ = writeln!(o, "\nNAT connections: {}", counts.join(", "));
    }
    if let Some(sync) = &s.sync {
        let refused: Vec<String> = sync
            .refused_by
            .iter()
            .map(|(why, n)| format!("{why} {n}"))
            .collect();
        let _ = writeln!(
            o,
            "\nSYNC on {}: table {}; sent {} messages, {} snapshots; refused {}{}",
            sync.address.map_or_else(
                || "NO SOCKET (no address on the interface yet, or the port is taken: see the log)"
                    .to_string(),
                |a| a.to_string()
            ),
            if sync.current {
                "current"
            } else {
                "NOT current"
            },
            sync.sent_messages,
            sync.snapshots_sent,
            sync.refused,
            if refused.is_empty() {
                String::new()
            } else {
                format!(" ({})", refused.join(", "))
            }
        );
        let _ = writeln!(
            o,
            "  PEER            STATE        HEARD      INSTALLED  REMOVED  GAPS  LAG ms (last/max)"
        );
        for p in &sync.peers {
            let heard = p
                .last_heard_seconds
                .map_or("never".to_string(), |t| format!("{t:.1}s ago"));
            let lag = p
                .lag_ms
                .map_or("-".to_string(), |l| format!("{l:.0}/{:.0}", p.max_lag_ms));
            let _ = writeln!(
                o,
                "  {:<15} {:<12} {:<10} {:<10} {:<8} {:<5} {}",
                p.address.to_string(),
                p.state,
                heard,
                p.installed,
                p.removed,
                p.gaps,
                lag
            );
            if let Some(l) = &p.last_snapshot {
                let _ = writeln!(
                    o,
                    "    last snapshot: {} connections in {:.2}s ({} requests, {} stale removed, {} incomplete before)",
                    l.connections, l.seconds, l.asks, l.stale_removed, p.incomplete_snapshots
                );
            }
        }
    }
    if !s.checks.is_empty() {
        let _ = writeln!(o, "\nCHECK            UP   LAST RESULT");
        for c in &s.checks {
            let _ = writeln!(
                o,
                "{:<16} {:<4} {}",
                c.name,
                if c.up { "yes" } else { "no" },
                c.detail.as_deref().unwrap_or("-")
            );
        }
    }
    o
}
