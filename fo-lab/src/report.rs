//! JSON reports of `fo-sink` and `fo-fleet`, and [`merge`], which turns one fleet report
//! and the reports of every sink it talked to into the figures a demo or benchmark
//! prints. Times are nanoseconds since the Unix epoch (`*_unix_ns`) or milliseconds as
//! floats (`*_ms`).

use serde::{Deserialize, Serialize};

/// Version of the report format; bumped on an incompatible change.
pub const REPORT_VERSION: u32 = 1;

/// Counts per fixed-width time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineReport {
    /// Start of bucket 0, aligned to `bucket_ms`.
    pub start_unix_ns: u64,
    pub bucket_ms: u64,
    /// One count per bucket; trailing empty buckets are trimmed.
    pub counts: Vec<u64>,
    /// Counts later than the last bucket the process allocated.
    pub overflow: u64,
}

/// How a connection ended, as seen by the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseKind {
    /// Still open when the report was taken.
    Open,
    /// The agent closed it (FIN: read returned end of file).
    Fin,
    /// The agent's side reset it (RST: ECONNRESET).
    Rst,
    /// Another socket error.
    Error,
    /// The agent broke the protocol (or sent no HELLO in time); the sink closed it.
    Protocol,
    /// The sink closed it (FIN) on a graceful shutdown.
    Closed,
    /// The sink reset it on purpose (`Sink::abort`: SO_LINGER 0, then close).
    Aborted,
}

/// One accepted connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkConnection {
    pub peer: String,
    pub local: String,
    /// From the HELLO; absent if none arrived.
    pub agent: Option<u32>,
    pub epoch: Option<u32>,
    pub resume_from: Option<u64>,
    pub opened_unix_ns: u64,
    pub closed_unix_ns: Option<u64>,
    pub close: CloseKind,
    /// The error, for `error` and `protocol`.
    pub detail: Option<String>,
    pub events: u64,
    pub acks_sent: u64,
}

/// One agent as seen by one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkAgent {
    pub agent: u32,
    /// Event frames received, duplicates included.
    pub received: u64,
    /// Distinct sequences received.
    pub unique: u64,
    pub highest: u64,
    /// The acknowledgement level: every sequence up to it was received (here or, up to
    /// `floor`, by an earlier sink).
    pub contiguous: u64,
    /// Highest `resume_from` the agent announced.
    pub floor: u64,
    pub duplicates: u64,
    pub reorders: u64,
    /// Holes opened (an arrival jumped past the next expected sequence).
    pub gaps: u64,
    /// Sequences in `floor+1..=highest` that never arrived here.
    pub missing: u64,
    /// Received sequences as sorted inclusive `[first, last]` ranges.
    pub ranges: Vec<[u64; 2]>,
    /// Connections that carried a HELLO from this agent.
    pub connections: u64,
    /// Longest time between two arrivals of this agent's events at this sink: the
    /// stall a failover caused even when no connection broke (meaningful when the
    /// agent's interval is well below it).
    pub max_silence_ms: f64,
}

/// Totals over every agent and connection of one sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkTotals {
    pub agents: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    pub closed_error: u64,
    pub closed_protocol: u64,
    pub closed_aborted: u64,
    pub closed_by_sink: u64,
    /// Failed `accept(2)` calls (e.g. out of file descriptors).
    pub accept_errors: u64,
    pub events_received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub reorders: u64,
    pub gaps: u64,
    pub missing: u64,
    pub acks_sent: u64,
    /// Largest `max_silence_ms` of any agent.
    pub max_silence_ms: f64,
}

/// What `fo-sink` writes (`--report`, `--control`, SIGUSR1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkReport {
    pub version: u32,
    pub listen: String,
    pub started_unix_ns: u64,
    pub report_unix_ns: u64,
    pub totals: SinkTotals,
    pub agents: Vec<SinkAgent>,
    pub connections: Vec<SinkConnection>,
    /// Events received per 10 ms.
    pub timeline: TimelineReport,
}

/// The fleet's settings, echoed in its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSettings {
    pub target: String,
    pub agents: u32,
    pub first_agent: u32,
    pub interval_ns: u64,
    pub payload: u16,
    pub sources: Vec<String>,
    pub reconnect_backoff_ms: u64,
    pub reconnect_backoff_max_ms: u64,
    pub connect_timeout_ms: u64,
    pub ramp_ms: u64,
    pub drain_ms: u64,
}

/// One agent of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetAgent {
    pub agent: u32,
    /// Connections established (the epoch of the last one).
    pub connections: u32,
    /// Highest sequence written (events `1..=last_seq` were each written at least once).
    pub last_seq: u64,
    /// Highest sequence acknowledged by a sink.
    pub acked: u64,
    /// Event frames written, resends included.
    pub writes: u64,
    /// Event frames written again after a reconnect.
    pub resent: u64,
    /// Events written into a connection that died before they were acknowledged
    /// (at risk: a client without resend would have lost them), summed over deaths.
    pub unacked_at_disconnect: u64,
    pub resets: u64,
    pub connect_failures: u64,
    /// Longest time without a usable connection, from noticing the loss to the first
    /// write on the next connection.
    pub max_gap_ms: f64,
    pub total_gap_ms: f64,
    /// Whether the agent held a connection when the fleet stopped.
    pub connected_at_exit: bool,
}

/// Totals over the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetTotals {
    pub connections_established: u64,
    pub connect_failures: u64,
    /// `econnreset + epipe + unexpected_eof`.
    pub resets: u64,
    pub econnreset: u64,
    pub epipe: u64,
    /// The sink closed (FIN) while the agent was not stopping.
    pub unexpected_eof: u64,
    /// Other errors on an established connection (timeouts, protocol errors...).
    pub other_errors: u64,
    /// Connections established after the first one of an agent.
    pub reconnects: u64,
    /// Distinct events written (sum of `last_seq`).
    pub events_sent: u64,
    /// Event frames written, resends included.
    pub writes: u64,
    pub events_resent: u64,
    /// Sum of `acked`.
    pub events_acked: u64,
    pub unacked_at_disconnect: u64,
    /// Events written but not acknowledged when the fleet stopped.
    pub unacked_at_exit: u64,
    pub agents_connected_at_exit: u64,
}

/// A time during which at least one agent that had been connected was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// First connection loss noticed.
    pub start_unix_ns: u64,
    /// Every agent writing again; absent if the fleet stopped first.
    pub end_unix_ns: Option<u64>,
    pub duration_ms: Option<f64>,
    /// Connection losses during the outage.
    pub connections_lost: u64,
    /// Most agents without a connection at one time during the outage.
    pub peak_agents_down: u64,
}

/// What `fo-fleet` writes on exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetReport {
    pub version: u32,
    pub settings: FleetSettings,
    pub started_unix_ns: u64,
    pub ended_unix_ns: u64,
    pub totals: FleetTotals,
    pub max_gap_ms: f64,
    /// Duration of the last outage: from the first connection lost to every agent
    /// writing again. Absent when no connection was ever lost.
    pub recovery_ms: Option<f64>,
    pub outages: Vec<Outage>,
    pub agents: Vec<FleetAgent>,
    /// Event frames written per 10 ms.
    pub timeline: TimelineReport,
}

/// The figures of one run: one fleet and every sink it reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    /// Distinct events the fleet wrote.
    pub events_sent: u64,
    /// Events acknowledged to the fleet.
    pub events_acked: u64,
    /// Event frames the sinks received, duplicates included.
    pub events_received: u64,
    /// Distinct events received by at least one sink.
    pub events_unique: u64,
    /// Acknowledged but received by no sink. Must be 0.
    pub lost_acked: u64,
    /// Written, never acknowledged and received by no sink (in flight at the end, or lost).
    pub lost_unacked: u64,
    /// Frames received beyond the first copy (over all sinks).
    pub duplicated: u64,
    pub reordered: u64,
    /// Connections the fleet saw reset (ECONNRESET, EPIPE, unexpected EOF).
    pub connections_reset: u64,
    /// Connections the sinks saw reset by the agent side.
    pub sink_connections_rst: u64,
    pub reconnects: u64,
    pub unacked_at_disconnect: u64,
    pub max_gap_ms: f64,
    pub recovery_ms: Option<f64>,
    /// Largest per-agent silence at any sink (see [`SinkAgent::max_silence_ms`]).
    pub max_silence_ms: f64,
    /// Agents the sinks saw that the fleet did not send (a mixed-up run if non-zero).
    pub unknown_agents: u64,
}

/// Merges one fleet report with the reports of all sinks (a sink restarted, or each
/// backend's sink, is simply another entry). Loss is computed exactly from the
/// received ranges: an event counts as received if any sink has it.
pub fn merge(fleet: &FleetReport, sinks: &[SinkReport]) -> Merged {
    use std::collections::HashMap;
    let mut per_agent: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    let mut received = 0;
    let mut reordered = 0;
    let mut sink_rst = 0;
    let mut max_silence_ms: f64 = 0.0;
    for s in sinks {
        max_silence_ms = max_silence_ms.max(s.totals.max_silence_ms);
        received += s.totals.events_received;
        reordered += s.totals.reorders;
        sink_rst += s.totals.closed_rst;
        for a in &s.agents {
            per_agent
                .entry(a.agent)
                .or_default()
                .extend(a.ranges.iter().map(|r| (r[0], r[1])));
        }
    }
    let mut unions: HashMap<u32, Vec<(u64, u64)>> = per_agent
        .into_iter()
        .map(|(agent, mut r)| (agent, union(&mut r)))
        .collect();
    let unique: u64 = unions
        .values()
        .flat_map(|r| r.iter().map(|r| r.1 - r.0 + 1))
        .sum();
    let mut lost_acked = 0;
    let mut lost_unacked = 0;
    for a in &fleet.agents {
        let ranges = unions.remove(&a.agent).unwrap_or_default();
        let covered = |upto: u64| -> u64 {
            ranges
                .iter()
                .filter(|r| r.0 <= upto)
                .map(|r| r.1.min(upto) - r.0 + 1)
                .sum()
        };
        let acked = a.acked.min(a.last_seq);
        let lost_a = acked - covered(acked);
        lost_acked += lost_a;
        lost_unacked += (a.last_seq - covered(a.last_seq)) - lost_a;
    }
    Merged {
        events_sent: fleet.totals.events_sent,
        events_acked: fleet.totals.events_acked,
        events_received: received,
        events_unique: unique,
        lost_acked,
        lost_unacked,
        duplicated: received.saturating_sub(unique),
        reordered,
        connections_reset: fleet.totals.resets,
        sink_connections_rst: sink_rst,
        reconnects: fleet.totals.reconnects,
        unacked_at_disconnect: fleet.totals.unacked_at_disconnect,
        max_gap_ms: fleet.max_gap_ms,
        recovery_ms: fleet.recovery_ms,
        max_silence_ms,
        unknown_agents: unions.len() as u64,
    }
}

/// Sorts and merges inclusive ranges (overlapping or adjacent).
fn union(r: &mut [(u64, u64)]) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for &(a, b) in r.iter() {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> TimelineReport {
        TimelineReport {
            start_unix_ns: 0,
            bucket_ms: 10,
            counts: vec![],
            overflow: 0,
        }
    }

    fn sink(agents: Vec<SinkAgent>) -> SinkReport {
        let received = agents.iter().map(|a| a.received).sum();
        SinkReport {
            version: REPORT_VERSION,
            listen: "x".into(),
            started_unix_ns: 0,
            report_unix_ns: 0,
            totals: SinkTotals {
                events_received: received,
                ..Default::default()
            },
            agents,
            connections: vec![],
            timeline: timeline(),
        }
    }

    fn sink_agent(agent: u32, received: u64, ranges: &[[u64; 2]]) -> SinkAgent {
        SinkAgent {
            agent,
            received,
            unique: 0,
            highest: 0,
            contiguous: 0,
            floor: 0,
            duplicates: 0,
            reorders: 0,
            gaps: 0,
            missing: 0,
            ranges: ranges.to_vec(),
            connections: 1,
            max_silence_ms: 0.0,
        }
    }

    #[test]
    fn merge_over_a_restarted_sink() {
        // Agent 1 wrote 1..=100, 90 acked. Sink A got 1..=60, sink B (after restart)
        // got 51..=95 (51..=60 resent: duplicates). 96..=100 were in flight.
        // Agent 2 wrote 1..=10, all acked, but the sinks only have 1..=8: 2 acked lost.
        let fleet = FleetReport {
            version: REPORT_VERSION,
            settings: FleetSettings {
                target: "x".into(),
                agents: 2,
                first_agent: 1,
                interval_ns: 1,
                payload: 0,
                sources: vec![],
                reconnect_backoff_ms: 0,
                reconnect_backoff_max_ms: 0,
                connect_timeout_ms: 0,
                ramp_ms: 0,
                drain_ms: 0,
            },
            started_unix_ns: 0,
            ended_unix_ns: 0,
            totals: FleetTotals {
                events_sent: 110,
                events_acked: 100,
                resets: 1,
                ..Default::default()
            },
            max_gap_ms: 12.5,
            recovery_ms: Some(20.0),
            outages: vec![],
            agents: vec![
                FleetAgent {
                    agent: 1,
                    last_seq: 100,
                    acked: 90,
                    ..Default::default()
                },
                FleetAgent {
                    agent: 2,
                    last_seq: 10,
                    acked: 10,
                    ..Default::default()
                },
            ],
            timeline: timeline(),
        };
        let a = sink(vec![
            sink_agent(1, 60, &[[1, 60]]),
            sink_agent(2, 8, &[[1, 8]]),
        ]);
        let b = sink(vec![
            sink_agent(1, 45, &[[51, 95]]),
            sink_agent(7, 1, &[[1, 1]]),
        ]);
        let m = merge(&fleet, &[a, b]);
        assert_eq!(m.events_received, 60 + 8 + 45 + 1);
        assert_eq!(m.events_unique, 95 + 8 + 1);
        assert_eq!(m.lost_acked, 2, "agent 2's 9 and 10");
        assert_eq!(m.lost_unacked, 5, "agent 1's 96..=100");
        assert_eq!(m.unknown_agents, 1);
        assert_eq!(m.connections_reset, 1);
        assert_eq!(m.duplicated, 10, "agent 1's 51..=60 twice");
    }

    #[test]
    fn union_merges_overlapping_and_adjacent() {
        let mut r = vec![(5, 9), (1, 2), (3, 4), (8, 12), (20, 20)];
        assert_eq!(union(&mut r), [(1, 12), (20, 20)]);
    }
}
