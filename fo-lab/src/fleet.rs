//! The agent fleet: N long-lived connections, each an agent writing numbered events on
//! a fixed schedule, the way a SIEM agent does.
//!
//! One tokio task per agent, a reused write buffer of at most [`BATCH_BYTES`] and a
//! 64-byte read buffer per agent, no allocation per event. Event `s` of an agent is due
//! at `start + (s - 1) * interval`; whatever is due is written in one batch, so the rate
//! holds even when the scheduler runs late, and events that fell due while the agent
//! had no connection are written (after the resends) as soon as it has one again, as an
//! agent's local buffer would.
//!
//! On ECONNRESET, EPIPE, an unexpected EOF or another error the agent counts the events
//! it had written but not seen acknowledged (`unacked_at_disconnect`), waits
//! `reconnect_backoff` (doubling up to `reconnect_backoff_max` while connects fail),
//! reconnects, says HELLO with the next epoch and its acknowledged level, and resends
//! everything after that level.
//!
//! One piece on purpose: an agent's schedule, its connection loop and the shared counters
//! they feed are one life cycle, and the resend rule above holds only read together.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::locks::lock;
use crate::proto::{ACK_LEN, EVENT_HEADER_LEN, Event, Hello, decode_ack};
use crate::report::{FleetAgent, FleetReport, FleetSettings, FleetTotals, Outage, REPORT_VERSION};
use crate::timeline::{Timeline, unix_ns};

/// Most bytes an agent writes in one call (at least one event).
pub const BATCH_BYTES: usize = 8 * 1024;

/// Settings of a [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub target: SocketAddr,
    pub agents: u32,
    /// Id of the first agent; agent `i` is `first_agent + i`.
    pub first_agent: u32,
    /// Time between two events of one agent.
    pub interval: Duration,
    /// Filler bytes per event.
    pub payload: u16,
    /// Source addresses; agent `i` binds `sources[i % len]`. Empty: the kernel chooses.
    pub sources: Vec<IpAddr>,
    pub reconnect_backoff: Duration,
    pub reconnect_backoff_max: Duration,
    pub connect_timeout: Duration,
    /// Agent `i` starts `ramp * i / agents` after the start.
    pub ramp: Duration,
    /// On stop, how long to wait for the acks of events already written.
    pub drain: Duration,
    pub timeline_span: Duration,
}

impl FleetConfig {
    /// Defaults: 1,000 agents from id 0, 10 events/s each, no payload, reconnect after
    /// 1 s (fixed), connect timeout 5 s, no ramp, 2 s drain, one-hour timeline.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            agents: 1000,
            first_agent: 0,
            interval: Duration::from_millis(100),
            payload: 0,
            sources: Vec::new(),
            reconnect_backoff: Duration::from_secs(1),
            reconnect_backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            ramp: Duration::ZERO,
            drain: Duration::from_secs(2),
            timeline_span: Duration::from_secs(3600),
        }
    }

    fn settings(&self) -> FleetSettings {
        let ms = |d: Duration| d.as_millis() as u64;
        FleetSettings {
            target: self.target.to_string(),
            agents: self.agents,
            first_agent: self.first_agent,
            interval_ns: self.interval.as_nanos() as u64,
            payload: self.payload,
            sources: self.sources.iter().map(ToString::to_string).collect(),
            reconnect_backoff_ms: ms(self.reconnect_backoff),
            reconnect_backoff_max_ms: ms(self.reconnect_backoff_max),
            connect_timeout_ms: ms(self.connect_timeout),
            ramp_ms: ms(self.ramp),
            drain_ms: ms(self.drain),
        }
    }
}

/// Live counters, for the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub connected: u64,
    pub established: u64,
    pub connect_failures: u64,
    pub resets: u64,
    pub other_errors: u64,
    pub reconnects: u64,
    pub events_sent: u64,
    pub events_resent: u64,
    pub events_acked: u64,
    pub unacked_at_disconnect: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    established: AtomicU64,
    connect_failures: AtomicU64,
    econnreset: AtomicU64,
    epipe: AtomicU64,
    unexpected_eof: AtomicU64,
    other_errors: AtomicU64,
    reconnects: AtomicU64,
    events_sent: AtomicU64,
    events_resent: AtomicU64,
    events_acked: AtomicU64,
    unacked_at_disconnect: AtomicU64,
}

impl Counters {
    /// The connection counters as a report's totals (the sums over agents left at 0).
    fn totals(&self) -> FleetTotals {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (econnreset, epipe, unexpected_eof) =
            (l(&self.econnreset), l(&self.epipe), l(&self.unexpected_eof));
        FleetTotals {
            connections_established: l(&self.established),
            connect_failures: l(&self.connect_failures),
            resets: econnreset + epipe + unexpected_eof,
            econnreset,
            epipe,
            unexpected_eof,
            other_errors: l(&self.other_errors),
            reconnects: l(&self.reconnects),
            ..FleetTotals::default()
        }
    }
}

#[derive(Debug, Default)]
struct Outages {
    down: u64,
    current: Option<Outage>,
    done: Vec<Outage>,
}

#[derive(Debug)]
struct Shared {
    cfg: FleetConfig,
    started: Instant,
    started_unix_ns: u64,
    c: Counters,
    outages: Mutex<Outages>,
    timeline: Timeline,
}

impl Shared {
    fn unix_at(&self, t: Instant) -> u64 {
        self.started_unix_ns + t.saturating_duration_since(self.started).as_nanos() as u64
    }

    fn lost(&self, now: Instant) {
        let mut o = lock(&self.outages);
        if o.down == 0 {
            o.current = Some(Outage {
                start_unix_ns: self.unix_at(now),
                end_unix_ns: None,
                duration_ms: None,
                connections_lost: 0,
                peak_agents_down: 0,
            });
        }
        o.down += 1;
        let down = o.down;
        if let Some(cur) = o.current.as_mut() {
            cur.connections_lost += 1;
            cur.peak_agents_down = cur.peak_agents_down.max(down);
        }
    }

    fn back(&self, now: Instant) {
        let end = self.unix_at(now);
        let mut o = lock(&self.outages);
        o.down = o.down.saturating_sub(1);
        if o.down == 0
            && let Some(mut cur) = o.current.take()
        {
            cur.end_unix_ns = Some(end);
            cur.duration_ms = Some(end.saturating_sub(cur.start_unix_ns) as f64 / 1e6);
            o.done.push(cur);
        }
    }
}

/// A running fleet.
#[derive(Debug)]
pub struct Fleet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<FleetAgent>>,
}

impl Fleet {
    /// Spawns one task per agent. Must run inside a tokio runtime.
    pub fn start(cfg: FleetConfig) -> Self {
        let shared = Arc::new(Shared {
            timeline: Timeline::new(cfg.timeline_span),
            cfg,
            started: Instant::now(),
            started_unix_ns: unix_ns(),
            c: Counters::default(),
            outages: Mutex::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let tasks = (0..shared.cfg.agents)
            .map(|i| tokio::spawn(run_agent(shared.clone(), i, stop_rx.clone())))
            .collect();
        Self {
            shared,
            stop,
            tasks,
        }
    }

    pub fn progress(&self) -> Progress {
        let c = &self.shared.c;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let t = c.totals();
        Progress {
            connected: l(&c.connected),
            established: t.connections_established,
            connect_failures: t.connect_failures,
            resets: t.resets,
            other_errors: t.other_errors,
            reconnects: t.reconnects,
            events_sent: l(&c.events_sent),
            events_resent: l(&c.events_resent),
            events_acked: l(&c.events_acked),
            unacked_at_disconnect: l(&c.unacked_at_disconnect),
        }
    }

    /// Stops every agent (each waits up to `drain` for outstanding acks, then closes
    /// with FIN) and reports.
    pub async fn stop(self) -> FleetReport {
        self.stop.send_replace(true);
        let mut agents = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            // A panicked agent task is a bug; its numbers are gone, the others remain.
            if let Ok(a) = t.await {
                agents.push(a);
            }
        }
        let s = &self.shared;
        let mut totals = s.c.totals();
        let mut max_gap_ms: f64 = 0.0;
        for a in &agents {
            totals.events_sent += a.last_seq;
            totals.writes += a.writes;
            totals.events_resent += a.resent;
            totals.events_acked += a.acked;
            totals.unacked_at_disconnect += a.unacked_at_disconnect;
            totals.unacked_at_exit += a.last_seq - a.acked;
            totals.agents_connected_at_exit += u64::from(a.connected_at_exit);
            max_gap_ms = max_gap_ms.max(a.max_gap_ms);
        }
        let outages = {
            let mut o = lock(&s.outages);
            let mut v = std::mem::take(&mut o.done);
            v.extend(o.current.take());
            v
        };
        FleetReport {
            version: REPORT_VERSION,
            settings: s.cfg.settings(),
            started_unix_ns: s.started_unix_ns,
            ended_unix_ns: unix_ns(),
            totals,
            max_gap_ms,
            recovery_ms: outages.last().and_then(|o| o.duration_ms),
            outages,
            agents,
            timeline: s.timeline.report(),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Stopped,
    Reset,
    Pipe,
    Eof,
    Other,
}

fn classify(e: &io::Error) -> End {
    match e.kind() {
        io::ErrorKind::ConnectionReset => End::Reset,
        io::ErrorKind::BrokenPipe => End::Pipe,
        io::ErrorKind::UnexpectedEof => End::Eof,
        _ => End::Other,
    }
}

/// Per-agent state kept across connections.
struct Agent {
    id: u32,
    /// Event `s` is due at `origin + (s - 1) * interval`.
    origin: Instant,
    interval_ns: u64,
    payload: u16,
    /// Events per write.
    batch: u64,
    report: FleetAgent,
    ever_up: bool,
    /// Set when a connection was lost, cleared by the first write on the next one.
    down_since: Option<Instant>,
    wbuf: Vec<u8>,
}

impl Agent {
    fn due(&self, seq: u64) -> Instant {
        self.origin + Duration::from_nanos(self.interval_ns.saturating_mul(seq - 1))
    }

    fn on_ack(&mut self, shared: &Shared, level: u64) {
        // A sink that acks beyond what was written has state from another run; clamp.
        let level = level.min(self.report.last_seq);
        if level > self.report.acked {
            shared
                .c
                .events_acked
                .fetch_add(level - self.report.acked, Ordering::Relaxed);
            self.report.acked = level;
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(d) => *stop.borrow(),
    }
}

async fn connect(cfg: &FleetConfig, idx: u32) -> io::Result<TcpStream> {
    let socket = if cfg.target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    if !cfg.sources.is_empty() {
        let src = cfg.sources[idx as usize % cfg.sources.len()];
        socket.bind(SocketAddr::new(src, 0))?;
    }
    match tokio::time::timeout(cfg.connect_timeout, socket.connect(cfg.target)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

async fn run_agent(shared: Arc<Shared>, idx: u32, mut stop: watch::Receiver<bool>) -> FleetAgent {
    let cfg = &shared.cfg;
    let id = cfg.first_agent.wrapping_add(idx);
    let delay = cfg
        .ramp
        .mul_f64(f64::from(idx) / f64::from(cfg.agents.max(1)));
    let frame = EVENT_HEADER_LEN + usize::from(cfg.payload);
    let mut a = Agent {
        id,
        origin: Instant::now() + delay,
        interval_ns: (cfg.interval.as_nanos() as u64).max(1),
        payload: cfg.payload,
        batch: (BATCH_BYTES / frame).max(1) as u64,
        report: FleetAgent {
            agent: id,
            ..FleetAgent::default()
        },
        ever_up: false,
        down_since: None,
        wbuf: Vec::new(),
    };
    if sleep_or_stop(delay, &mut stop).await {
        return a.report;
    }
    let mut backoff = cfg.reconnect_backoff;
    loop {
        if *stop.borrow() {
            break;
        }
        let stream = tokio::select! {
            _ = stop.changed() => break,
            r = connect(cfg, idx) => r,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                a.report.connect_failures += 1;
                shared.c.connect_failures.fetch_add(1, Ordering::Relaxed);
                if sleep_or_stop(backoff, &mut stop).await {
                    break;
                }
                backoff = (backoff * 2).min(cfg.reconnect_backoff_max.max(cfg.reconnect_backoff));
                continue;
            }
        };
        backoff = cfg.reconnect_backoff;
        a.report.connections += 1;
        shared.c.established.fetch_add(1, Ordering::Relaxed);
        if a.report.connections > 1 {
            shared.c.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        shared.c.connected.fetch_add(1, Ordering::Relaxed);
        let end = run_conn(&shared, &mut a, stream, &mut stop).await;
        shared.c.connected.fetch_sub(1, Ordering::Relaxed);
        let counter = match end {
            End::Stopped => {
                a.report.connected_at_exit = true;
                break;
            }
            End::Reset => &shared.c.econnreset,
            End::Pipe => &shared.c.epipe,
            End::Eof => &shared.c.unexpected_eof,
            End::Other => &shared.c.other_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if end != End::Other {
            a.report.resets += 1;
        }
        let at_risk = a.report.last_seq - a.report.acked;
        a.report.unacked_at_disconnect += at_risk;
        shared
            .c
            .unacked_at_disconnect
            .fetch_add(at_risk, Ordering::Relaxed);
        if a.ever_up && a.down_since.is_none() {
            let now = Instant::now();
            a.down_since = Some(now);
            shared.lost(now);
        }
        if sleep_or_stop(backoff, &mut stop).await {
            break;
        }
    }
    if let Some(t) = a.down_since.take() {
        // Still without a connection at the end: the gap so far counts.
        record_gap(&mut a.report, Instant::now() - t);
    }
    a.report
}

fn record_gap(r: &mut FleetAgent, gap: Duration) {
    let ms = gap.as_secs_f64() * 1e3;
    r.max_gap_ms = r.max_gap_ms.max(ms);
    r.total_gap_ms += ms;
}

async fn run_conn(
    shared: &Shared,
    a: &mut Agent,
    mut stream: TcpStream,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.split();
    let mut rbuf = [0u8; 8 * ACK_LEN];
    let mut rfill = 0;
    let hello = Hello {
        agent: a.id,
        epoch: a.report.connections,
        resume_from: a.report.acked,
    };
    let mut wbuf = std::mem::take(&mut a.wbuf);
    wbuf.clear();
    wbuf.extend_from_slice(&hello.encode());
    let mut resend_next = a.report.acked + 1;
    let resend_end = a.report.last_seq;
    let mut first_write = true;
    let end = loop {
        // Write whatever is due: resends first, then new events.
        let now = Instant::now();
        let ts = unix_ns();
        let mut n = 0u64;
        let mut resent = 0u64;
        while n < a.batch {
            let seq = if resend_next <= resend_end {
                resend_next += 1;
                resent += 1;
                resend_next - 1
            } else if a.due(a.report.last_seq + 1) <= now {
                a.report.last_seq += 1;
                a.report.last_seq
            } else {
                break;
            };
            Event {
                seq,
                sent_unix_ns: ts,
                payload_len: a.payload,
            }
            .encode_into(&mut wbuf);
            n += 1;
        }
        if !wbuf.is_empty() {
            // A stop lets a write in progress finish (within the drain time): the
            // events of this batch already count as written.
            let r = tokio::select! {
                biased;
                r = wr.write_all(&wbuf) => r.map_err(Some),
                () = stop_then(stop, shared.cfg.drain) => Err(None),
            };
            wbuf.clear();
            match r {
                Ok(()) => {}
                Err(None) => break End::Stopped,
                Err(Some(e)) => break classify(&e),
            }
            a.report.writes += n;
            a.report.resent += resent;
            shared
                .c
                .events_sent
                .fetch_add(n - resent, Ordering::Relaxed);
            shared.c.events_resent.fetch_add(resent, Ordering::Relaxed);
            shared.timeline.add(now.into_std(), n);
            if first_write {
                first_write = false;
                a.ever_up = true;
                if let Some(t) = a.down_since.take() {
                    let now = Instant::now();
                    record_gap(&mut a.report, now - t);
                    shared.back(now);
                }
            }
        }
        if *stop.borrow() {
            break drain(shared, a, &mut rd, &mut wr, &mut rbuf, rfill).await;
        }
        let next = if resend_next <= resend_end {
            now
        } else {
            a.due(a.report.last_seq + 1)
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break drain(shared, a, &mut rd, &mut wr, &mut rbuf, rfill).await,
            r = rd.read(&mut rbuf[rfill..]) => match r {
                Ok(0) => break End::Eof,
                Ok(k) => {
                    rfill += k;
                    if let Err(e) = take_acks(shared, a, &mut rbuf, &mut rfill) {
                        break e;
                    }
                }
                Err(e) => break classify(&e),
            },
            () = tokio::time::sleep_until(next) => {}
        }
    };
    a.wbuf = wbuf;
    end
}

/// Resolves `grace` after a stop was requested.
async fn stop_then(stop: &mut watch::Receiver<bool>, grace: Duration) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The fleet is gone: nobody will ask for a stop; never resolve.
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

/// Applies every whole ACK in `rbuf[..rfill]` and keeps the remainder.
fn take_acks(
    shared: &Shared,
    a: &mut Agent,
    rbuf: &mut [u8],
    rfill: &mut usize,
) -> Result<(), End> {
    let mut off = 0;
    loop {
        match decode_ack(&rbuf[off..*rfill]) {
            Ok(Some(level)) => {
                a.on_ack(shared, level);
                off += ACK_LEN;
            }
            Ok(None) => break,
            Err(_) => return Err(End::Other),
        }
    }
    rbuf.copy_within(off..*rfill, 0);
    *rfill -= off;
    Ok(())
}

/// On stop: write nothing more, wait up to `drain` for the acks of what was written,
/// close with FIN, and wait briefly for the sink's FIN.
async fn drain(
    shared: &Shared,
    a: &mut Agent,
    rd: &mut ReadHalf<'_>,
    wr: &mut WriteHalf<'_>,
    rbuf: &mut [u8],
    mut rfill: usize,
) -> End {
    let deadline = Instant::now() + shared.cfg.drain;
    while a.report.acked < a.report.last_seq {
        let r = tokio::select! {
            r = rd.read(&mut rbuf[rfill..]) => r,
            () = tokio::time::sleep_until(deadline) => break,
        };
        match r {
            Ok(0) => return End::Eof,
            Ok(k) => {
                rfill += k;
                if let Err(e) = take_acks(shared, a, rbuf, &mut rfill) {
                    return e;
                }
            }
            Err(e) => return classify(&e),
        }
    }
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(k) = rd.read(&mut rbuf[..]).await {
            if k == 0 {
                break;
            }
        }
    })
    .await;
    End::Stopped
}
