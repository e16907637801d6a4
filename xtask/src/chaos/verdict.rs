//! The chaos run's invariants, computed from what was observed (pure: no lab here).
//!
//! "Serving" is defined from the client segment: a node serves the VIP when it answers
//! an ARP request for the VIP that an observer on the client segment broadcasts (every
//! ~20 ms). That is what a client acts on, and it is the data plane's own truth (a
//! killed agent's pinned XDP program answers until its lease runs out; a partitioned
//! node's answers never reach the segment, so it is not serving there).
//!
//! Each probe is a request and the set of MACs that answered it before the next one.
//! An episode (two or more MACs; no MAC) lasts from the first probe that saw it to the
//! first probe that no longer did, so it is measured to one probe interval, which the
//! limits allow for.

use std::collections::BTreeSet;

/// One ARP request of the observer and who answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub at_ns: u64,
    pub macs: BTreeSet<String>,
}

/// A run of consecutive probes with the same condition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Episode {
    pub from_ns: u64,
    pub to_ns: u64,
    /// Every MAC that answered during the episode (empty for an ownerless one).
    pub macs: BTreeSet<String>,
}

impl Episode {
    pub fn ms(&self) -> f64 {
        (self.to_ns - self.from_ns) as f64 / 1e6
    }
}

/// What the observer's capture shows, one line at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arp {
    Request {
        at_ns: u64,
        src_ip: String,
    },
    Reply {
        at_ns: u64,
        dst_mac: String,
        ip: String,
        mac: String,
    },
}

/// Parse one line of `tcpdump -n -e -tt -l arp`, e.g.
/// `1700000000.123456 02:00:00:00:00:09 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.100 tell 192.0.2.9, length 28`
/// or `… 02:aa:… > 02:00:00:00:00:09, ethertype ARP (0x0806), length 42: Reply 192.0.2.100 is-at 02:aa:…, length 28`.
pub fn parse_tcpdump(line: &str) -> Option<Arp> {
    let mut w = line.split_whitespace();
    let ts = w.next()?;
    let (secs, frac) = ts.split_once('.')?;
    let frac_ns = format!("{frac:0<9}");
    let at_ns =
        secs.parse::<u64>().ok()? * 1_000_000_000 + frac_ns.get(..9)?.parse::<u64>().ok()?;
    let _src = w.next()?;
    if w.next()? != ">" {
        return None;
    }
    let dst = w.next()?.trim_end_matches(',').to_owned();
    let words: Vec<&str> = w.collect();
    let i = words
        .iter()
        .position(|x| *x == "Request" || *x == "Reply")?;
    let clean = |s: &str| s.trim_end_matches(',').to_owned();
    match words[i] {
        "Request" => {
            // Request who-has IP tell SRC,
            let tell = words.iter().position(|x| *x == "tell")?;
            Some(Arp::Request {
                at_ns,
                src_ip: clean(words.get(tell + 1)?),
            })
        }
        _ => {
            // Reply IP is-at MAC,
            if *words.get(i + 2)? != "is-at" {
                return None;
            }
            Some(Arp::Reply {
                at_ns,
                dst_mac: dst,
                ip: clean(words.get(i + 1)?),
                mac: clean(words.get(i + 3)?).to_lowercase(),
            })
        }
    }
}

/// Group the observer's requests (from `observer_ip`) and the answers for `vip` sent to
/// `observer_mac` into probes.
pub fn probes(events: &[Arp], observer_ip: &str, observer_mac: &str, vip: &str) -> Vec<Probe> {
    let mut out: Vec<Probe> = Vec::new();
    for e in events {
        match e {
            Arp::Request { at_ns, src_ip } if src_ip == observer_ip => out.push(Probe {
                at_ns: *at_ns,
                macs: BTreeSet::new(),
            }),
            Arp::Reply {
                dst_mac, ip, mac, ..
            } if dst_mac.eq_ignore_ascii_case(observer_mac) && ip == vip => {
                if let Some(p) = out.last_mut() {
                    p.macs.insert(mac.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// Two probes further apart than this mean the observer itself was not running (a stall
/// of the machine): the time between them is not observed, and no episode spans it.
pub const OBSERVER_STALL_NS: u64 = 200_000_000;

/// Times the observer was not observing: gaps between consecutive probes longer than
/// [`OBSERVER_STALL_NS`].
pub fn stalls(probes: &[Probe]) -> Vec<Span> {
    probes
        .windows(2)
        .filter(|w| w[1].at_ns - w[0].at_ns > OBSERVER_STALL_NS)
        .map(|w| Span {
            from_ns: w[0].at_ns,
            to_ns: w[1].at_ns,
        })
        .collect()
}

/// Runs of probes satisfying `pred`. The last run of the capture ends at its last probe;
/// a run that meets an observer stall ends at the last probe before it.
fn runs(probes: &[Probe], pred: impl Fn(&Probe) -> bool) -> Vec<Episode> {
    let mut out = Vec::new();
    let mut cur: Option<Episode> = None;
    let mut last_at: Option<u64> = None;
    for p in probes {
        if last_at.is_some_and(|l| p.at_ns - l > OBSERVER_STALL_NS) {
            out.extend(cur.take());
        }
        last_at = Some(p.at_ns);
        if pred(p) {
            let ep = cur.get_or_insert_with(|| Episode {
                from_ns: p.at_ns,
                to_ns: p.at_ns,
                macs: BTreeSet::new(),
            });
            ep.to_ns = p.at_ns;
            ep.macs.extend(p.macs.iter().cloned());
        } else if let Some(mut ep) = cur.take() {
            ep.to_ns = p.at_ns;
            out.push(ep);
        }
    }
    out.extend(cur);
    out
}

/// Episodes with two or more nodes answering.
pub fn overlaps(probes: &[Probe]) -> Vec<Episode> {
    runs(probes, |p| p.macs.len() >= 2)
}

/// Whether a killed agent's dead-man lease explains overlap `ep`: one of the nodes
/// answering is a node whose agent was killed (`kills`: its MAC and the kill's time)
/// before the episode began, and the episode ended within `lease` (plus one probe
/// interval, `slack`) of that kill. Its pinned program answers until the lease runs out,
/// by design; a preempting peer may claim meanwhile.
pub fn within_lease(ep: &Episode, kills: &[(String, u64)], lease_ns: u64, slack_ns: u64) -> bool {
    kills.iter().any(|(mac, at)| {
        ep.macs.contains(mac) && ep.from_ns >= *at && ep.to_ns <= at + lease_ns + slack_ns
    })
}

/// Episodes with no node answering.
pub fn ownerless(probes: &[Probe]) -> Vec<Episode> {
    runs(probes, |p| p.macs.is_empty())
}

/// A time span `[from, to)` in unix ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    pub from_ns: u64,
    pub to_ns: u64,
}

/// The longest stretch of `ep` during which at least one node was healthy and eligible
/// (`eligible`: every node's windows, in any order).
pub fn eligible_within(ep: &Episode, eligible: &[Span]) -> u64 {
    let mut spans: Vec<Span> = eligible
        .iter()
        .filter_map(|s| {
            let from = s.from_ns.max(ep.from_ns);
            let to = s.to_ns.min(ep.to_ns);
            (from < to).then_some(Span {
                from_ns: from,
                to_ns: to,
            })
        })
        .collect();
    spans.sort_by_key(|s| s.from_ns);
    let mut best = 0;
    let mut cur: Option<Span> = None;
    for s in spans {
        match &mut cur {
            Some(c) if s.from_ns <= c.to_ns => c.to_ns = c.to_ns.max(s.to_ns),
            _ => {
                if let Some(c) = cur {
                    best = best.max(c.to_ns - c.from_ns);
                }
                cur = Some(s);
            }
        }
    }
    if let Some(c) = cur {
        best = best.max(c.to_ns - c.from_ns);
    }
    best
}

/// Events lost by agents whose backend stayed up, from the fleet's and the sinks'
/// reports (`sinks`: each report with whether its backend was stopped during the run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// Agents counted (their backend stayed up the whole run).
    pub agents_counted: u64,
    /// Agents left out: seen by a sink that was stopped during the run.
    pub agents_excluded: u64,
    /// Written by a counted agent and received by no sink.
    pub events_lost: u64,
    /// Acknowledged and received by no sink, over every agent (must be 0 too).
    pub acked_lost_all: u64,
    /// Written and received by no sink, over every agent (informational).
    pub events_lost_all: u64,
    pub events_sent: u64,
    /// Counted agents whose connection did not last the run: reset, or established
    /// again (the DSR invariant does not ask this; the NAT one does).
    pub agents_broken: u64,
    /// Resets seen by counted agents.
    pub resets_counted: u64,
}

pub fn loss(fleet: &serde_json::Value, sinks: &[(serde_json::Value, bool)]) -> Loss {
    use std::collections::{BTreeMap, BTreeSet};
    let mut ranges: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut excluded: BTreeSet<u64> = BTreeSet::new();
    for (report, stopped) in sinks {
        for a in report["agents"].as_array().into_iter().flatten() {
            let Some(id) = a["agent"].as_u64() else {
                continue;
            };
            if *stopped {
                excluded.insert(id);
            }
            let r = ranges.entry(id).or_default();
            for pair in a["ranges"].as_array().into_iter().flatten() {
                if let (Some(lo), Some(hi)) = (pair[0].as_u64(), pair[1].as_u64()) {
                    r.push((lo, hi));
                }
            }
        }
    }
    let mut out = Loss {
        events_sent: fleet["totals"]["events_sent"].as_u64().unwrap_or(0),
        ..Loss::default()
    };
    for a in fleet["agents"].as_array().into_iter().flatten() {
        let Some(id) = a["agent"].as_u64() else {
            continue;
        };
        let last = a["last_seq"].as_u64().unwrap_or(0);
        let acked = a["acked"].as_u64().unwrap_or(0).min(last);
        let mut r = ranges.remove(&id).unwrap_or_default();
        r.sort_unstable();
        let covered = |upto: u64| -> u64 {
            // Union of the ranges, counted up to `upto`.
            let mut n = 0;
            let mut next = 1; // first sequence not yet counted
            for &(lo, hi) in &r {
                let lo = lo.max(next);
                let hi = hi.min(upto);
                if lo <= hi {
                    n += hi - lo + 1;
                    next = hi + 1;
                }
            }
            n
        };
        let lost = last - covered(last);
        out.events_lost_all += lost;
        out.acked_lost_all += acked - covered(acked);
        if excluded.contains(&id) {
            out.agents_excluded += 1;
        } else {
            out.agents_counted += 1;
            out.events_lost += lost;
            let resets = a["resets"].as_u64().unwrap_or(0);
            out.resets_counted += resets;
            if resets > 0 || a["connections"].as_u64().unwrap_or(0) > 1 {
                out.agents_broken += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(at_ms: u64, macs: &[&str]) -> Probe {
        Probe {
            at_ns: at_ms * 1_000_000,
            macs: macs.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn parses_tcpdump_requests_and_replies() {
        let req = "1700000000.123456 02:00:00:00:00:09 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.100 tell 192.0.2.9, length 28";
        assert_eq!(
            parse_tcpdump(req),
            Some(Arp::Request {
                at_ns: 1_700_000_000_123_456_000,
                src_ip: "192.0.2.9".into()
            })
        );
        let rep = "1700000000.2 02:AA:00:00:00:01 > 02:00:00:00:00:09, ethertype ARP (0x0806), length 42: Reply 192.0.2.100 is-at 02:AA:00:00:00:01, length 28";
        assert_eq!(
            parse_tcpdump(rep),
            Some(Arp::Reply {
                at_ns: 1_700_000_000_200_000_000,
                dst_mac: "02:00:00:00:00:09".into(),
                ip: "192.0.2.100".into(),
                mac: "02:aa:00:00:00:01".into()
            })
        );
        assert_eq!(parse_tcpdump("tcpdump: listening on eth0"), None);
    }

    #[test]
    fn groups_replies_by_request_and_ignores_others() {
        let obs = "02:00:00:00:00:09";
        let ev = vec![
            Arp::Reply {
                at_ns: 1,
                dst_mac: obs.into(),
                ip: "192.0.2.100".into(),
                mac: "a".into(),
            },
            Arp::Request {
                at_ns: 10,
                src_ip: "192.0.2.9".into(),
            },
            Arp::Reply {
                at_ns: 11,
                dst_mac: obs.into(),
                ip: "192.0.2.100".into(),
                mac: "a".into(),
            },
            Arp::Reply {
                at_ns: 12,
                dst_mac: "02:00:00:00:00:10".into(),
                ip: "192.0.2.100".into(),
                mac: "b".into(),
            },
            Arp::Request {
                at_ns: 15,
                src_ip: "192.0.2.10".into(),
            },
            Arp::Request {
                at_ns: 20,
                src_ip: "192.0.2.9".into(),
            },
        ];
        let p = probes(&ev, "192.0.2.9", obs, "192.0.2.100");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].macs.iter().collect::<Vec<_>>(), ["a"]);
        assert!(p[1].macs.is_empty());
    }

    #[test]
    fn a_killed_agents_lease_explains_only_its_own_overlap_within_the_lease() {
        let ep = |from_ms: u64, to_ms: u64, macs: &[&str]| Episode {
            from_ns: from_ms * 1_000_000,
            to_ns: to_ms * 1_000_000,
            macs: macs.iter().map(|m| (*m).to_owned()).collect(),
        };
        let kills = [("b".to_owned(), 1_000_000_000)];
        let (lease, slack) = (360_000_000, 20_000_000);
        // (what, from ms, to ms, answering, explained); b was killed at 1,000 ms.
        let cases: [(&str, u64, u64, &[&str], bool); 4] = [
            (
                "after b's kill, ended within its lease",
                1_100,
                1_300,
                &["a", "b"],
                true,
            ),
            ("lasting past the lease", 1_100, 1_400, &["a", "b"], false),
            ("begun before the kill", 990, 1_100, &["a", "b"], false),
            (
                "the killed node is not among those answering",
                1_100,
                1_200,
                &["a", "c"],
                false,
            ),
        ];
        for (what, from_ms, to_ms, macs, explained) in cases {
            assert_eq!(
                within_lease(&ep(from_ms, to_ms, macs), &kills, lease, slack),
                explained,
                "{what}"
            );
        }
    }

    #[test]
    fn episodes_last_until_the_first_probe_without_the_condition() {
        let p = vec![
            probe(0, &["a"]),
            probe(20, &["a", "b"]),
            probe(40, &["a", "b"]),
            probe(60, &["b"]),
            probe(80, &[]),
            probe(100, &[]),
            probe(120, &[]),
            probe(140, &["b"]),
            probe(160, &[]),
        ];
        let o = overlaps(&p);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].from_ns, o[0].to_ns), (20_000_000, 60_000_000));
        assert_eq!(o[0].ms(), 40.0);
        let n = ownerless(&p);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].ms(), 60.0);
        // The capture ended during the second one.
        assert_eq!(n[1].ms(), 0.0);
    }

    #[test]
    fn an_observer_stall_ends_an_episode_and_is_not_counted() {
        let p = vec![
            probe(0, &["a"]),
            probe(20, &[]),
            probe(40, &[]),
            // The observer stalled for 1 s.
            probe(1040, &[]),
            probe(1060, &["a"]),
        ];
        let n = ownerless(&p);
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].ms(), 20.0, "ends at the last probe before the stall");
        assert_eq!(n[1].ms(), 20.0);
        assert_eq!(
            stalls(&p),
            vec![Span {
                from_ns: 40_000_000,
                to_ns: 1_040_000_000
            }]
        );
    }

    #[test]
    fn eligible_stretch_is_the_longest_covered_piece() {
        let ep = Episode {
            from_ns: 100,
            to_ns: 1000,
            macs: BTreeSet::new(),
        };
        let s = |from_ns, to_ns| Span { from_ns, to_ns };
        assert_eq!(eligible_within(&ep, &[]), 0);
        assert_eq!(eligible_within(&ep, &[s(0, 5000)]), 900);
        // Two nodes' windows that touch make one stretch.
        assert_eq!(
            eligible_within(&ep, &[s(600, 2000), s(0, 300), s(300, 500)]),
            400
        );
        assert_eq!(eligible_within(&ep, &[s(0, 90), s(1000, 2000)]), 0);
    }

    #[test]
    fn loss_leaves_out_agents_of_stopped_backends() {
        let fleet = json!({
            "totals": {"events_sent": 30},
            "agents": [
                {"agent": 1, "last_seq": 10, "acked": 10, "connections": 1, "resets": 0},
                {"agent": 2, "last_seq": 10, "acked": 8, "connections": 2, "resets": 1},
                {"agent": 3, "last_seq": 10, "acked": 5, "connections": 3, "resets": 2},
            ]
        });
        let up = json!({"agents": [
            {"agent": 1, "ranges": [[1, 4], [3, 10]]},
            {"agent": 2, "ranges": [[1, 7]]},
        ]});
        let stopped = json!({"agents": [{"agent": 3, "ranges": [[1, 5]]}]});
        let l = loss(&fleet, &[(up, false), (stopped, true)]);
        assert_eq!(l.agents_counted, 2);
        assert_eq!(l.agents_excluded, 1);
        assert_eq!(l.events_lost, 3, "agent 2's 8, 9, 10");
        assert_eq!(l.acked_lost_all, 1, "agent 2's 8");
        assert_eq!(l.events_lost_all, 8);
        assert_eq!(l.agents_broken, 1, "agent 2 (agent 3 is left out)");
        assert_eq!(l.resets_counted, 1);
    }
}
