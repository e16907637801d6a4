//! What `fo-agent drill` reports: per leg (the handover to the peer, and with `--back`
//! the return), the blackout per direction from both nodes' forwarding timelines, and
//! both nodes' readiness before and after.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::sync::drill::{Clients, NodeReady, Resets};

/// The drills of one router since the agent started (status and metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrillTally {
    /// Drills by result: "passed", "failed" (a leg did not hand over or a timeline
    /// did not come) and "refused".
    pub results: BTreeMap<String, u64>,
    /// The last drill's longest blackout per direction over its legs, seconds.
    pub last_blackout_seconds: BTreeMap<String, f64>,
}

impl DrillTally {
    /// Count a refused drill.
    pub fn refused(&mut self) {
        *self.results.entry("refused".into()).or_default() += 1;
    }

    /// Count a drill that ran, and keep its blackouts.
    pub fn ran(&mut self, report: &DrillReport) {
        let result = if report.result == "passed" {
            "passed"
        } else {
            "failed"
        };
        *self.results.entry(result.into()).or_default() += 1;
        self.last_blackout_seconds.clear();
        for leg in &report.legs {
            for (dir, b) in &leg.blackout {
                let s = f64::from(b.ms) / 1000.0;
                let e = self.last_blackout_seconds.entry(dir.clone()).or_default();
                *e = e.max(s);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub router: String,
    /// The sync peer that took mastership.
    pub peer: IpAddr,
    /// This node's and the peer's readiness before the drill.
    pub before: Nodes,
    pub legs: Vec<Leg>,
    /// As before, once the last leg settled.
    pub after: Nodes,
    /// "passed" (every leg handed over), else what went wrong.
    pub result: String,
    /// What the operator should know (this node left demoted, ...).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nodes {
    pub local: NodeReady,
    pub peer: Option<NodeReady>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// "to_peer" or "back".
    pub name: String,
    /// The operator request the drill made ("demote" here, or "promote" here).
    pub request: String,
    /// When the request was made (unix ms).
    pub at_unix_ms: u64,
    /// From the request to the incoming node reporting master over the sync channel
    /// (its Ready messages come every 100 ms: an upper bound, ±100 ms).
    pub new_master_reported_ms: Option<u64>,
    /// The timelines' window: from `window_start_unix_ms`, `window_ms` long.
    pub window_start_unix_ms: u64,
    pub window_ms: u32,
    /// The samplers' coarsest step on either node (the blackout's resolution), ms.
    pub resolution_ms: f64,
    /// Per direction ("client_to_backend"; NAT: "backend_to_client"): the longest run
    /// of milliseconds in which neither node forwarded a packet.
    pub blackout: BTreeMap<String, Blackout>,
    /// The TCP resets each node's data plane counted on the VIPs over the window.
    pub resets: LegResets,
    /// How the clients followed the handover, seen by the incoming node's data plane.
    pub clients: Option<LegClients>,
    /// Why the leg has no blackout figure, if it has none (the peer's timeline did not
    /// come, ...).
    pub problem: Option<String>,
}

/// A leg's TCP resets per node (`None`: the node's timeline did not come, or its build
/// does not count them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LegResets {
    pub this_node: Option<Resets>,
    pub peer: Option<Resets>,
}

/// The clients whose packets reached the incoming node's data plane for the VIP after
/// the handover: `followed_ms` is from the request to a client's first packet there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegClients {
    /// The incoming node: "peer" or "this_node".
    pub node: String,
    pub seen: u32,
    pub median_followed_ms: i64,
    pub max_followed_ms: i64,
    /// The clients with the most packets there, most first.
    pub busiest: Vec<FollowedClient>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FollowedClient {
    pub client: IpAddr,
    pub packets: u32,
    pub followed_ms: i64,
}

impl LegClients {
    /// `clients` of the incoming `node`, with times from the request, `request_ms`
    /// after the window's start.
    pub fn new(node: &str, clients: &Clients, request_ms: i64) -> LegClients {
        let from_request = |first: i32| i64::from(first) - request_ms;
        LegClients {
            node: node.to_string(),
            seen: clients.seen,
            median_followed_ms: from_request(clients.median_first_ms),
            max_followed_ms: from_request(clients.max_first_ms),
            busiest: clients
                .busiest
                .iter()
                .map(|c| FollowedClient {
                    client: c.client,
                    packets: c.packets,
                    followed_ms: from_request(c.first_ms),
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Blackout {
    pub ms: u32,
    /// Where the silence began, ms after the request (negative: before it).
    pub from_request_ms: i64,
}

impl DrillReport {
    /// The report for a person.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "drill of router {} with peer {}: {}",
            self.router, self.peer, self.result
        );
        let ready = |s: &mut String, what: &str, n: &Nodes| {
            let _ = writeln!(s, "{what}:");
            let _ = writeln!(s, "  this node: {}", node_line(&n.local, &self.router));
            match &n.peer {
                Some(p) => {
                    let _ = writeln!(s, "  peer:      {}", node_line(p, &self.router));
                }
                None => {
                    let _ = writeln!(s, "  peer:      not heard on the sync channel");
                }
            }
        };
        ready(&mut s, "before", &self.before);
        for l in &self.legs {
            let _ = writeln!(s, "leg {} ({}):", l.name, l.request);
            match l.new_master_reported_ms {
                Some(ms) => {
                    let _ = writeln!(s, "  new master reported after {ms} ms");
                }
                None => {
                    let _ = writeln!(s, "  the new master was not reported");
                }
            }
            for (dir, b) in &l.blackout {
                let _ = writeln!(
                    s,
                    "  blackout {dir}: {} ms (from {} ms after the request), resolution {:.1} ms",
                    b.ms, b.from_request_ms, l.resolution_ms
                );
            }
            for (node, r) in [("this node", l.resets.this_node), ("peer", l.resets.peer)] {
                if let Some(r) = r {
                    let _ = writeln!(
                        s,
                        "  TCP resets seen by {node}: {} client to VIP, {} backend to SNAT",
                        r.to_vip, r.from_backend
                    );
                }
            }
            if let Some(c) = &l.clients {
                let _ = writeln!(
                    s,
                    "  clients seen by the new master ({}): {}, first packet after the request: median {} ms, last {} ms",
                    c.node, c.seen, c.median_followed_ms, c.max_followed_ms
                );
                for b in &c.busiest {
                    let _ = writeln!(
                        s,
                        "    {} followed after {} ms ({} packets there)",
                        b.client, b.followed_ms, b.packets
                    );
                }
            }
            if let Some(p) = &l.problem {
                let _ = writeln!(s, "  {p}");
            }
        }
        ready(&mut s, "after", &self.after);
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

fn node_line(n: &NodeReady, router: &str) -> String {
    let r = n.router(router).map_or_else(
        || "router unknown".to_string(),
        |r| {
            format!(
                "{} (gates {})",
                r.state,
                if r.gates_open { "open" } else { "closed" }
            )
        },
    );
    format!("{r}, sync {}", if n.in_sync { "in sync" } else { "behind" })
}
