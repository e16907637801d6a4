//! The failover bench's report: the markdown table of every variant and failure.

use super::*;

pub(super) fn col(runs: &[RunResult], f: impl Fn(&RunResult) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

pub(super) fn markdown(results: &[(Variant, Failure, Vec<RunResult>)], runs: usize) -> String {
    let mut md = format!(
        "## Failover under a fleet: fo vs keepalived + HAProxy\n\n\
         {AGENTS} agents × {RATE_PER_S} events/s, each on one long-lived TCP connection to \
         VIP:{PORT} from 100 source addresses (`fo-fleet`, reconnect after a fixed 1 s, \
         resending everything unacknowledged), 3 backends running `fo-sink`. Node a \
         (priority 150, preempts) is master; b (100) takes over when a fails, either by \
         **kill -9** of every LB process on a (fo-agent; keepalived + HAProxy) or by \
         **link down** of a's eth0 (what a dead node looks like), or hands mastership to \
         b on purpose, a **planned switchover** (fo: `fo-agent demote` on a; the \
         baseline as operators do it: a's priority in keepalived.conf lowered below b's \
         and keepalived reloaded with SIGHUP; HAProxy needs no reload, it listens on the \
         VIP on both nodes already). fo: VRRPv3 unicast, XDP \
         DSR in {XDP_MODE} (SKB) mode, `hash = \"source-ip\"`; the backends hold the VIP on lo. \
         Baseline: keepalived 2.2.7 (unicast peers) moves the VIP, HAProxy 2.6 TCP mode \
         `balance source` on VIP:{PORT} on both nodes (`ip_nonlocal_bind`), sinks on the \
         backends' own addresses. {runs} runs per row, min / median / max.\n\n\
         - **MDI**: b's Master_Down_Interval, 3 × advert + (256 − 100) × advert / 256 \
         (v2: skew (256 − 100) / 256 s): the longest a backup waits for a silent master.\n\
         - **takeover**: from the failure (the demote or SIGHUP) to b's transition to master (fo: the timestamp \
         of the agent's log line; keepalived: arrival of its `Entering MASTER STATE` line).\n\
         - **service gap**: longest time with no event arriving at any sink (10 ms buckets) \
         from the failure to a's restore.\n\
         - **resets**: connections the fleet saw reset (of {AGENTS}) from the failure to a's \
         restore; **lost**: events the \
         fleet wrote that no sink holds, acknowledged (must be 0) / unacknowledged \
         (the fleet resent them; a client without resend loses them); **unacked at \
         disconnect**: written into a connection that then died before its ack (lost, \
         unacked and max silence cover the whole run, the return included).\n\
         - **recovery**: from the first connection lost to every agent writing again (0: \
         none lost), longest outage that began before a's restore. **max silence**: the \
         longest pause of one agent's events at a sink.\n\
         - **a back** (the old master's return, preemption): once the fleet is whole again \
         after the takeover, a is restored with the fleet still running (kill -9: its \
         processes restarted; link down: link up; planned: `fo-agent resume`, or the priority \
         raised again and SIGHUP) and preempts back. **preempt**: from the \
         restore to a's transition to master (timed as the takeover); **gap**, **resets**, \
         **recovery**: as above, from the restore to the end of the run (fleet whole again).\n\n\
         | system | failure | MDI ms | takeover ms | service gap ms | resets | lost acked / unacked | unacked at disconnect | recovery ms | max silence ms | a back: preempt ms | a back: gap ms | a back: resets | a back: recovery ms | timeline |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (v, f, rs) in results {
        let png = rs
            .iter()
            .find_map(|r| r.png.clone())
            .map(|p| format!("[png]({p})"))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {:.1} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {png} |\n",
            v.label,
            f.label(),
            v.master_down_ms(),
            fmt_mmm(&col(rs, |r| r.takeover_ms), 0),
            fmt_mmm(&col(rs, |r| r.service_gap_ms as f64), 0),
            fmt_mmm(&col(rs, |r| r.connections_reset as f64), 0),
            fmt_mmm(&col(rs, |r| r.lost_acked as f64), 0),
            fmt_mmm(&col(rs, |r| r.lost_unacked as f64), 0),
            fmt_mmm(&col(rs, |r| r.unacked_at_disconnect as f64), 0),
            fmt_mmm(&col(rs, |r| r.recovery_ms), 0),
            fmt_mmm(&col(rs, |r| r.max_silence_ms), 0),
            fmt_mmm(&col(rs, |r| r.preempt_ms), 0),
            fmt_mmm(&col(rs, |r| r.return_gap_ms as f64), 0),
            fmt_mmm(&col(rs, |r| r.return_resets as f64), 0),
            fmt_mmm(&col(rs, |r| r.return_recovery_ms), 0),
        ));
    }
    md.push_str(
        "\nWhy fo's kill -9 can show no gap at all: killing the agent does not stop its \
         pinned XDP program, which forwards what still reaches a's MAC until b's gratuitous \
         ARP moves the VIP; a's dead-man lease stops it answering ARP. keepalived's kill -9 \
         leaves the VIP on a's interface, but the HAProxy holding the connections is gone. \
         Link down is the case where neither can forward: the gap then is about the \
         takeover time for fo; for the baseline it is the takeover plus TCP's retransmission \
         timeout (the dead connections learn of their death by an RST only when a \
         retransmission reaches the new master) plus the fleet's 1 s reconnect backoff. \
         After kill -9, HAProxy's sockets die with it and the clients get the RST at once: \
         the baseline's gap is then the 1 s backoff, or the takeover where that is longer \
         (a real agent's backoff is longer still). **recovery** counts from the first \
         connection the fleet saw lost, not from the failure. On a's return, \
         keepalived moves the VIP back to a, whose HAProxy has never seen the connections \
         made through b: every client's next segment draws an RST, as in a failure; fo's \
         a computes the same Maglev table over the same backends, so its XDP program \
         forwards the established flows to the backends they already use, and the \
         backends answer the clients directly (DSR). The timelines (events per 10 ms at the sinks, first run of each \
         row) are `failover-<variant>-<failure>.png`.\n",
    );
    md
}
