//! Fleet against sink on 127.0.0.1: the whole path, socket to report.

use std::net::SocketAddr;
use std::time::Duration;

use fo_lab::report::{CloseKind, merge};
use fo_lab::{Fleet, FleetConfig, Sink, SinkConfig};

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn sink_config(addr: SocketAddr) -> SinkConfig {
    let mut c = SinkConfig::new(addr);
    c.ack_interval = Duration::from_millis(20);
    c.timeline_span = Duration::from_secs(60);
    c
}

fn fleet_config(target: SocketAddr, agents: u32) -> FleetConfig {
    let mut c = FleetConfig::new(target);
    c.agents = agents;
    c.first_agent = 100;
    c.interval = Duration::from_millis(10);
    c.reconnect_backoff = Duration::from_millis(100);
    c.reconnect_backoff_max = Duration::from_millis(400);
    c.timeline_span = Duration::from_secs(60);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_every_event_exactly_once() {
    let sink = Sink::bind(sink_config(any_port()))
        .await
        .expect("bind sink");
    let fleet = Fleet::start(fleet_config(sink.local_addr(), 50));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let f = fleet.stop().await;
    let s = sink.shutdown().await;
    let m = merge(&f, std::slice::from_ref(&s));

    assert_eq!(
        f.totals.connections_established, 50,
        "one connection per agent"
    );
    assert_eq!(
        f.totals.resets, 0,
        "no reset expected, fleet saw {:?}",
        f.totals
    );
    assert_eq!(f.totals.connect_failures, 0);
    assert_eq!(f.totals.reconnects, 0);
    assert_eq!(
        f.totals.unacked_at_exit, 0,
        "the drain must collect every ack"
    );
    assert!(
        f.totals.events_sent >= 50 * 150,
        "about 50 x 200 events expected in 2 s at 100/s, sent {}",
        f.totals.events_sent
    );
    assert_eq!(s.totals.agents, 50);
    assert_eq!(
        (s.totals.events_received, s.totals.unique),
        (f.totals.events_sent, f.totals.events_sent),
        "every event received exactly once"
    );
    assert_eq!(
        (
            s.totals.duplicates,
            s.totals.reorders,
            s.totals.gaps,
            s.totals.missing
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        s.totals.closed_fin, 50,
        "agents close with FIN: {:?}",
        s.totals
    );
    assert!(
        f.agents
            .iter()
            .all(|a| a.acked == a.last_seq && a.connected_at_exit)
    );
    assert_eq!((m.lost_acked, m.lost_unacked, m.duplicated), (0, 0, 0));
    assert_eq!(m.events_received, m.events_sent);
    assert!(f.outages.is_empty() && f.recovery_ms.is_none());
    assert!(
        s.totals.max_silence_ms > 0.0 && m.max_silence_ms == s.totals.max_silence_ms,
        "silence between arrivals is measured: {} / {}",
        s.totals.max_silence_ms,
        m.max_silence_ms
    );
    // Every event is in both timelines.
    let sum = |c: &[u64]| c.iter().sum::<u64>();
    assert_eq!(sum(&f.timeline.counts), f.totals.writes);
    assert_eq!(sum(&s.timeline.counts), s.totals.events_received);
    // The reports survive a JSON round trip.
    let json = serde_json::to_string(&f).expect("fleet report to JSON");
    let back: fo_lab::report::FleetReport = serde_json::from_str(&json).expect("fleet JSON back");
    assert_eq!(back.totals, f.totals);
    let json = serde_json::to_string(&s).expect("sink report to JSON");
    let back: fo_lab::report::SinkReport = serde_json::from_str(&json).expect("sink JSON back");
    // Floats may differ in the last digit after a JSON round trip; the rest may not.
    assert_eq!(back.connections, s.connections);
    assert_eq!(back.timeline, s.timeline);
    assert!(
        back.agents
            .iter()
            .zip(&s.agents)
            .all(|(b, a)| b.ranges == a.ranges)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_with_rst_and_restarted() {
    let sink = Sink::bind(sink_config(any_port()))
        .await
        .expect("bind sink");
    let addr = sink.local_addr();
    let fleet = Fleet::start(fleet_config(addr, 50));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = sink.abort().await;
    // Down for a while: agents hit refused connects and back off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sink = Sink::bind(sink_config(addr))
        .await
        .expect("rebind sink on the same port");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let f = fleet.stop().await;
    let after = sink.shutdown().await;
    let m = merge(&f, &[before.clone(), after.clone()]);

    assert_eq!(
        before.totals.closed_aborted, 50,
        "the kill resets every connection"
    );
    assert!(
        f.totals.resets >= 50,
        "every agent must see its reset, fleet saw {:?}",
        f.totals
    );
    assert!(
        f.totals.reconnects >= 50,
        "every agent reconnects: {:?}",
        f.totals
    );
    assert_eq!(f.totals.agents_connected_at_exit, 50);
    assert_eq!(after.totals.agents, 50);
    assert!(
        after.agents.iter().all(|a| a.floor > 0),
        "each agent resumes from what the first sink acked"
    );
    assert_eq!(m.lost_acked, 0, "no acknowledged event may be lost: {m:?}");
    assert_eq!(
        m.lost_unacked, 0,
        "resends fill everything after a drain: {m:?}"
    );
    assert_eq!(m.events_unique, f.totals.events_sent);
    assert!(m.connections_reset >= 50);
    assert_eq!(f.outages.len(), 1, "one outage: {:?}", f.outages);
    let recovery = f.recovery_ms.expect("the outage ended");
    assert!(
        recovery >= 500.0,
        "the sink was down 500 ms, recovery {recovery} ms"
    );
    assert!(f.max_gap_ms >= 500.0 && f.max_gap_ms <= recovery + 1.0);
    // What was written but not acked when the connections died was resent; the part
    // that had arrived shows up as duplicates, never as loss.
    assert!(f.totals.unacked_at_disconnect > 0);
    assert_eq!(f.totals.events_resent, f.totals.unacked_at_disconnect);
    assert_eq!(m.duplicated, m.events_received - m.events_unique);
    assert!(
        after
            .connections
            .iter()
            .all(|c| c.close == CloseKind::Fin && c.epoch >= Some(2)),
        "the restarted sink saw only reconnected agents, each closing with FIN: {:?}",
        after.connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections() {
    let limit = fo_lab::sys::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= 4200,
        "2,000 loopback connections take 4,000 descriptors in this process; limit {limit}"
    );
    let sink = Sink::bind(sink_config(any_port()))
        .await
        .expect("bind sink");
    let mut cfg = fleet_config(sink.local_addr(), 2000);
    cfg.interval = Duration::from_millis(200);
    let fleet = Fleet::start(cfg);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fleet.progress().connected < 2000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let f = fleet.stop().await;
    let s = sink.shutdown().await;
    let m = merge(&f, std::slice::from_ref(&s));
    assert_eq!(f.totals.connections_established, 2000, "{:?}", f.totals);
    assert_eq!((f.totals.resets, f.totals.connect_failures), (0, 0));
    assert_eq!(s.totals.connections_accepted, 2000);
    assert_eq!(s.totals.accept_errors, 0);
    assert_eq!((m.lost_acked, m.lost_unacked, m.duplicated), (0, 0, 0));
    assert_eq!(m.events_received, f.totals.events_sent);
}
