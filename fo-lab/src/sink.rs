//! The ingestion sink: accepts agent connections, records every event per agent
//! ([`SeqTracker`]), per connection (how it ended) and per 10 ms, and acknowledges.
//!
//! One tokio task per connection; one 16 KiB read buffer per connection; no allocation
//! per event. Acks carry the agent's contiguous level ([`SeqTracker::contiguous`]) and
//! go out when `ack_every` events arrived since the last ack, or `ack_interval` after
//! the first unacknowledged one, whichever comes first (no timer runs on an idle
//! connection).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::locks::lock;
use crate::proto::{EVENT_HEADER_LEN, Event, HELLO_LEN, Hello, MAX_PAYLOAD, encode_ack};
use crate::report::{CloseKind, REPORT_VERSION, SinkAgent, SinkConnection, SinkReport, SinkTotals};
use crate::timeline::{Timeline, unix_ns};
use crate::track::SeqTracker;

/// Settings of a [`Sink`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub listen: SocketAddr,
    /// Longest delay of an ack after the first event it covers.
    pub ack_interval: Duration,
    /// Ack at once when this many events arrived since the last ack.
    pub ack_every: u64,
    /// A connection that sends no HELLO within this time is closed.
    pub hello_timeout: Duration,
    /// `listen(2)` backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: u32,
    /// How long the arrival timeline covers from the start.
    pub timeline_span: Duration,
}

impl SinkConfig {
    /// Defaults: ack every 100 ms or 256 events, 5 s HELLO timeout, backlog 4096,
    /// timeline of one hour.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            ack_interval: Duration::from_millis(100),
            ack_every: 256,
            hello_timeout: Duration::from_secs(5),
            backlog: 4096,
            timeline_span: Duration::from_secs(3600),
        }
    }
}

/// Failure to start a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Stop accepting; send final acks and close each connection with FIN.
    Close,
    /// Reset every connection (SO_LINGER 0), as a crashed or killed backend would.
    Abort,
}

#[derive(Debug, Default)]
struct AgentEntry {
    track: SeqTracker,
    connections: u64,
    last_arrival: Option<Instant>,
    /// Longest time between two reads that brought this agent's events.
    max_silence: Duration,
}

#[derive(Debug)]
struct ConnSlot {
    peer: SocketAddr,
    local: SocketAddr,
    opened_unix_ns: u64,
    events: AtomicU64,
    acks: AtomicU64,
    state: Mutex<ConnState>,
}

#[derive(Debug)]
struct ConnState {
    hello: Option<Hello>,
    closed_unix_ns: Option<u64>,
    close: CloseKind,
    detail: Option<String>,
}

#[derive(Debug)]
struct Shared {
    cfg: SinkConfig,
    local_addr: SocketAddr,
    started_unix_ns: u64,
    agents: Mutex<HashMap<u32, Arc<Mutex<AgentEntry>>>>,
    conns: Mutex<Vec<Arc<ConnSlot>>>,
    accept_errors: AtomicU64,
    timeline: Timeline,
}

/// A cheap handle that can take reports while the sink runs (for a control socket or a
/// signal handler).
#[derive(Debug, Clone)]
pub struct SinkHandle(Arc<Shared>);

/// A running sink. Dropping it without [`Sink::shutdown`] or [`Sink::abort`] leaves its
/// tasks running until the runtime ends.
#[derive(Debug)]
pub struct Sink {
    shared: Arc<Shared>,
    stop: watch::Sender<Stop>,
    accept: JoinHandle<()>,
    done: mpsc::Receiver<()>,
}

impl Sink {
    /// Binds (with SO_REUSEADDR) and starts accepting. Must run inside a tokio runtime.
    pub async fn bind(cfg: SinkConfig) -> Result<Self, SinkError> {
        let addr = cfg.listen;
        let err = |source| SinkError::Listen { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.bind(addr).map_err(err)?;
        let listener = socket.listen(cfg.backlog).map_err(err)?;
        let local_addr = listener.local_addr().map_err(err)?;
        let shared = Arc::new(Shared {
            timeline: Timeline::new(cfg.timeline_span),
            cfg,
            local_addr,
            started_unix_ns: unix_ns(),
            agents: Mutex::default(),
            conns: Mutex::default(),
            accept_errors: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(Stop::Running);
        let (done_tx, done) = mpsc::channel(1);
        let accept = tokio::spawn(accept_loop(shared.clone(), listener, stop_rx, done_tx));
        Ok(Self {
            shared,
            stop,
            accept,
            done,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn handle(&self) -> SinkHandle {
        SinkHandle(self.shared.clone())
    }

    /// A report of everything so far.
    pub fn report(&self) -> SinkReport {
        self.handle().report()
    }

    /// Stops accepting, takes the report (connections still open are `open`), then acks
    /// and closes every connection with FIN.
    pub async fn shutdown(self) -> SinkReport {
        self.end(Stop::Close).await
    }

    /// Closes the listener and resets every connection (SO_LINGER 0, then close: the
    /// kernel sends RST), then reports (those connections are `aborted`). Models a
    /// backend whose service was killed.
    pub async fn abort(self) -> SinkReport {
        self.end(Stop::Abort).await
    }

    async fn end(mut self, how: Stop) -> SinkReport {
        self.stop.send_replace(how);
        // The accept loop drops the listener when it sees the stop.
        let _ = (&mut self.accept).await;
        let early = (how == Stop::Close).then(|| self.report());
        // Every connection task holds a sender; recv() returns None once all are gone.
        while self.done.recv().await.is_some() {}
        early.unwrap_or_else(|| self.report())
    }
}

impl SinkHandle {
    pub fn report(&self) -> SinkReport {
        let s = &self.0;
        let mut totals = SinkTotals::default();
        let mut agents: Vec<SinkAgent> = {
            let map = lock(&s.agents);
            map.iter()
                .map(|(&agent, e)| {
                    let e = lock(e);
                    let t = &e.track;
                    SinkAgent {
                        agent,
                        received: t.received(),
                        unique: t.unique(),
                        highest: t.highest(),
                        contiguous: t.contiguous(),
                        floor: t.floor(),
                        duplicates: t.duplicates(),
                        reorders: t.reorders(),
                        gaps: t.gaps(),
                        missing: t.missing(),
                        ranges: t.ranges().iter().map(|&(a, b)| [a, b]).collect(),
                        connections: e.connections,
                        max_silence_ms: e.max_silence.as_secs_f64() * 1e3,
                    }
                })
                .collect()
        };
        agents.sort_by_key(|a| a.agent);
        for a in &agents {
            totals.events_received += a.received;
            totals.unique += a.unique;
            totals.duplicates += a.duplicates;
            totals.reorders += a.reorders;
            totals.gaps += a.gaps;
            totals.missing += a.missing;
            totals.max_silence_ms = totals.max_silence_ms.max(a.max_silence_ms);
        }
        totals.agents = agents.len() as u64;
        let connections: Vec<SinkConnection> = lock(&s.conns)
            .iter()
            .map(|c| {
                let st = lock(&c.state);
                SinkConnection {
                    peer: c.peer.to_string(),
                    local: c.local.to_string(),
                    agent: st.hello.map(|h| h.agent),
                    epoch: st.hello.map(|h| h.epoch),
                    resume_from: st.hello.map(|h| h.resume_from),
                    opened_unix_ns: c.opened_unix_ns,
                    closed_unix_ns: st.closed_unix_ns,
                    close: st.close,
                    detail: st.detail.clone(),
                    events: c.events.load(Ordering::Relaxed),
                    acks_sent: c.acks.load(Ordering::Relaxed),
                }
            })
            .collect();
        totals.connections_accepted = connections.len() as u64;
        for c in &connections {
            totals.acks_sent += c.acks_sent;
            let n = match c.close {
                CloseKind::Open => &mut totals.connections_open,
                CloseKind::Fin => &mut totals.closed_fin,
                CloseKind::Rst => &mut totals.closed_rst,
                CloseKind::Error => &mut totals.closed_error,
                CloseKind::Protocol => &mut totals.closed_protocol,
                CloseKind::Aborted => &mut totals.closed_aborted,
                CloseKind::Closed => &mut totals.closed_by_sink,
            };
            *n += 1;
        }
        totals.accept_errors = s.accept_errors.load(Ordering::Relaxed);
        SinkReport {
            version: REPORT_VERSION,
            listen: s.local_addr.to_string(),
            started_unix_ns: s.started_unix_ns,
            report_unix_ns: unix_ns(),
            totals,
            agents,
            connections,
            timeline: s.timeline.report(),
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<Stop>,
    done: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let slot = Arc::new(ConnSlot {
                        peer,
                        local: stream.local_addr().unwrap_or(shared.local_addr),
                        opened_unix_ns: unix_ns(),
                        events: AtomicU64::new(0),
                        acks: AtomicU64::new(0),
                        state: Mutex::new(ConnState {
                            hello: None,
                            closed_unix_ns: None,
                            close: CloseKind::Open,
                            detail: None,
                        }),
                    });
                    lock(&shared.conns).push(slot.clone());
                    tokio::spawn(serve(shared.clone(), stream, slot, stop.clone(), done.clone()));
                }
                Err(_) => {
                    // EMFILE and friends: count, breathe, keep accepting.
                    shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

type Outcome = (CloseKind, Option<String>);

async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    slot: Arc<ConnSlot>,
    mut stop: watch::Receiver<Stop>,
    _done: mpsc::Sender<()>,
) {
    let (kind, detail) = serve_conn(&shared, &mut stream, &slot, &mut stop).await;
    if kind == CloseKind::Aborted {
        // Close with RST instead of FIN.
        let _ = stream.set_zero_linger();
    }
    // Recorded before the close, so that a peer that saw the close can rely on the
    // report showing it.
    {
        let mut st = lock(&slot.state);
        st.close = kind;
        st.detail = detail;
        st.closed_unix_ns = Some(unix_ns());
    }
    drop(stream);
}

fn classify(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::ConnectionReset => (CloseKind::Rst, None),
        io::ErrorKind::UnexpectedEof => (CloseKind::Fin, None),
        _ => (CloseKind::Error, Some(e.to_string())),
    }
}

/// Reads the stop state after a change (a dropped sender means close).
fn stop_now(stop: &watch::Receiver<Stop>, changed: Result<(), watch::error::RecvError>) -> Stop {
    match changed {
        Ok(()) => *stop.borrow(),
        Err(_) => Stop::Close,
    }
}

async fn serve_conn(
    shared: &Shared,
    stream: &mut TcpStream,
    slot: &ConnSlot,
    stop: &mut watch::Receiver<Stop>,
) -> Outcome {
    if *stop.borrow() != Stop::Running {
        return (CloseKind::Aborted, None);
    }
    let mut hb = [0u8; HELLO_LEN];
    let hello = tokio::select! {
        biased;
        c = stop.changed() => return match stop_now(stop, c) {
            Stop::Abort => (CloseKind::Aborted, None),
            _ => (CloseKind::Closed, None),
        },
        r = tokio::time::timeout(shared.cfg.hello_timeout, stream.read_exact(&mut hb)) => match r {
            Err(_) => return (CloseKind::Protocol, Some("no HELLO in time".into())),
            Ok(Err(e)) => return classify(&e),
            Ok(Ok(_)) => match Hello::decode(&hb) {
                Ok(h) => h,
                Err(e) => return (CloseKind::Protocol, Some(e.to_string())),
            },
        },
    };
    lock(&slot.state).hello = Some(hello);
    let agent = lock(&shared.agents).entry(hello.agent).or_default().clone();
    let mut acked = {
        let mut a = lock(&agent);
        a.track.hello(hello.resume_from);
        a.connections += 1;
        hello.resume_from
    };
    let contiguous = || lock(&agent).track.contiguous();
    // The agent learns at once if this sink already holds more than it knows acked.
    if let Err(e) = send_ack(stream, slot, &mut acked, contiguous()).await {
        return classify(&e);
    }

    let mut buf = vec![0u8; 2 * (EVENT_HEADER_LEN + usize::from(MAX_PAYLOAD))];
    let mut filled = 0;
    let mut since_ack = 0u64;
    let ack_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(ack_timer);
    let mut ack_armed = false;
    loop {
        tokio::select! {
            biased;
            c = stop.changed() => match stop_now(stop, c) {
                Stop::Running => {}
                Stop::Abort => return (CloseKind::Aborted, None),
                Stop::Close => {
                    let _ = send_ack(stream, slot, &mut acked, contiguous()).await;
                    let _ = stream.shutdown().await;
                    return (CloseKind::Closed, None);
                }
            },
            r = stream.read(&mut buf[filled..]) => {
                let n = match r {
                    Ok(0) => return (CloseKind::Fin, None),
                    Ok(n) => n,
                    Err(e) => return classify(&e),
                };
                filled += n;
                let now = Instant::now();
                let mut off = 0;
                let mut count = 0u64;
                let mut bad = None;
                let level = {
                    let mut a = lock(&agent);
                    if let Some(last) = a.last_arrival.replace(now) {
                        a.max_silence = a.max_silence.max(now - last);
                    }
                    loop {
                        match Event::decode(&buf[off..filled]) {
                            Ok(Some((ev, len))) => {
                                a.track.record(ev.seq);
                                off += len;
                                count += 1;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                    }
                    a.track.contiguous()
                };
                buf.copy_within(off..filled, 0);
                filled -= off;
                shared.timeline.add(now.into_std(), count);
                slot.events.fetch_add(count, Ordering::Relaxed);
                if let Some(e) = bad {
                    return (CloseKind::Protocol, Some(e.to_string()));
                }
                since_ack += count;
                if level > acked {
                    if since_ack >= shared.cfg.ack_every {
                        since_ack = 0;
                        ack_armed = false;
                        if let Err(e) = send_ack(stream, slot, &mut acked, level).await {
                            return classify(&e);
                        }
                    } else if !ack_armed {
                        ack_armed = true;
                        ack_timer.as_mut().reset(now + shared.cfg.ack_interval);
                    }
                }
            }
            () = &mut ack_timer, if ack_armed => {
                ack_armed = false;
                since_ack = 0;
                if let Err(e) = send_ack(stream, slot, &mut acked, contiguous()).await {
                    return classify(&e);
                }
            }
        }
    }
}

/// Sends an ACK of `level` if it is above what this connection acked before.
async fn send_ack(
    stream: &mut TcpStream,
    slot: &ConnSlot,
    acked: &mut u64,
    level: u64,
) -> io::Result<()> {
    if level > *acked {
        stream.write_all(&encode_ack(level)).await?;
        *acked = level;
        slot.acks.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
