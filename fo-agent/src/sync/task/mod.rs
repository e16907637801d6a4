//! The sync task: one loop that reads the data plane's connection events, streams them to
//! the peers, serves and receives snapshots, and publishes the status. Sending is in
//! `send`, receiving and installing in `receive`.

mod drill;
mod receive;
mod send;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fo_common::{Counter, FlowKey, NatFlow};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::codec::{MAX_RECORDS, Op, Record};
use super::drill::{NodeReady, READY_FRESH, ReadySource};
use super::guard::{PeerGuard, Refusal};
use super::peer::PeerTrack;
use super::snapshot::{Outgoing, RateLimit};
use super::{FLUSH, HEARTBEAT, PeerStatus, Placement, SyncStatus, TimelineAsk, record, socket};
use crate::dataplane::nat::NatTable;
use crate::dataplane::{MonoNanos, NatEvents, SharedPlane};
use crate::locks::{Flag, lock};

/// The same refusal (reason, peer) is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Connections of a snapshot made room for at once, at most.
const MAX_RESERVE: usize = 1 << 24;
/// Trouble binding the socket is logged at most this often.
const BIND_LOG_EVERY: Duration = Duration::from_secs(30);

/// What the task is given at its start.
pub(super) struct Start {
    pub key: Vec<u8>,
    pub epoch: u64,
    pub plane: SharedPlane,
    pub table: NatTable,
    pub status: Arc<Mutex<SyncStatus>>,
    pub table_current: Flag,
    pub ready_source: Arc<Mutex<Option<ReadySource>>>,
    pub asks: mpsc::Receiver<TimelineAsk>,
}

/// Start the task: it binds the socket (retrying until it can), then runs.
pub(super) fn spawn(
    cfg: &fo_config::SyncConfig,
    start: Start,
    placement: Placement,
    events: NatEvents,
    removed: mpsc::Receiver<Vec<(FlowKey, NatFlow)>>,
) -> tokio::task::JoinHandle<()> {
    let Start {
        key,
        epoch,
        plane,
        table,
        status,
        table_current,
        ready_source,
        asks,
    } = start;
    // Losses before this start (the counter lives in the pinned maps) are not ours to
    // report: a new epoch has every peer take a snapshot anyway.
    let events_lost_seen = plane.lock().dp.counter(Counter::NatEventLost).unwrap_or(0);
    let (walked_tx, walked_rx) = mpsc::unbounded_channel();
    let (sampled_tx, sampled_rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let mut task = Task {
        key,
        port: cfg.port,
        max_skew: cfg.max_clock_skew,
        peers: cfg
            .peers
            .iter()
            .map(|&a| {
                let mut track = PeerTrack::new();
                track.need_snapshot(now, false);
                (
                    a,
                    Peer {
                        guard: PeerGuard::default(),
                        track,
                        status: PeerStatus::new(a),
                        limit: RateLimit::default(),
                        out: None,
                        seen: HashSet::new(),
                        ready: None,
                    },
                )
            })
            .collect(),
        plane,
        table,
        epoch,
        counter: 0,
        seq: 0,
        pending: Vec::new(),
        pending_since: None,
        last_sent: now,
        last_beat: now,
        status,
        table_current,
        counters: SyncStatus {
            epoch,
            ..Default::default()
        },
        events_lost_seen,
        lost_checked: now,
        walked: walked_tx,
        logged: BTreeMap::new(),
        drill: drill::Drills::new(ready_source, placement.bpf_dir.clone(), sampled_tx, now),
    };
    tokio::spawn(async move {
        let (mut events, mut removed) = (events, removed);
        let sock = task.bind(&placement, &mut events, &mut removed).await;
        task.run(sock, events, removed, walked_rx, (asks, sampled_rx))
            .await
    })
}

/// One peer: its replay guard, its stream, our snapshot to it, its snapshot to us.
struct Peer {
    guard: PeerGuard,
    track: PeerTrack,
    status: PeerStatus,
    limit: RateLimit,
    out: Option<Outgoing>,
    /// Connections in the snapshot being received from it.
    seen: HashSet<FlowKey>,
    /// Its last readiness (`Ready`), and when it came.
    ready: Option<(Instant, NodeReady)>,
}

/// A table walk for a snapshot, done.
struct Walked {
    peer: IpAddr,
    id: u64,
    records: Result<Vec<Record>, String>,
}

struct Task {
    key: Vec<u8>,
    port: u16,
    max_skew: Duration,
    peers: BTreeMap<IpAddr, Peer>,
    plane: SharedPlane,
    table: NatTable,
    epoch: u64,
    /// Datagrams sent in this epoch.
    counter: u64,
    /// Last Update sequence sent.
    seq: u64,
    pending: Vec<Record>,
    pending_since: Option<Instant>,
    last_sent: Instant,
    /// Last heartbeat to the peers being sent a snapshot (they get one every
    /// [`HEARTBEAT`] even while Updates flow to the others, since theirs are held).
    last_beat: Instant,
    status: Arc<Mutex<SyncStatus>>,
    table_current: Flag,
    counters: SyncStatus,
    /// The data plane's `nat_event_lost` counter when last looked at, and when.
    events_lost_seen: u64,
    lost_checked: Instant,
    walked: mpsc::UnboundedSender<Walked>,
    /// When each (reason, peer) refusal was last logged, and how many were not since.
    logged: BTreeMap<(Refusal, Option<IpAddr>), (Instant, u64)>,
    /// Readiness sent and drill timelines asked and served (`drill`).
    drill: drill::Drills,
}

impl Task {
    /// Bind the socket to the node's own address, retrying until that works; the
    /// connection events read meanwhile are dropped (the peers take a snapshot once
    /// they hear from us).
    async fn bind(
        &mut self,
        placement: &Placement,
        events: &mut NatEvents,
        removed: &mut mpsc::Receiver<Vec<(FlowKey, NatFlow)>>,
    ) -> tokio::net::UdpSocket {
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        let mut logged: Option<(Instant, String)> = None;
        self.publish();
        loop {
            let problem = match crate::net::addr::ipv4_addresses(
                &placement.handle,
                placement.ifindex,
            )
            .await
            {
                Ok(addrs) => match socket::node_address(&addrs, &peers, &placement.floating) {
                    Some(a) => {
                        let at = SocketAddrV4::new(a, self.port);
                        match socket::bind(at) {
                            Ok((sock, granted)) => {
                                info!(address = %at, receive_buffer = granted, "sync socket bound to the node's own address");
                                self.counters.address = Some(SocketAddr::V4(at));
                                return sock;
                            }
                            Err(e) => format!(
                                "cannot bind the sync socket to {at}: {e} (is another process on that port? ss -ulpn 'sport = :{}'); retrying every {:?}, nothing is synced until then",
                                self.port,
                                socket::RETRY
                            ),
                        }
                    }
                    None => format!(
                        "no IPv4 address on {} to bind the sync socket to yet (the node's own address, from which the peers are reached); retrying every {:?}, nothing is synced until then",
                        placement.interface,
                        socket::RETRY
                    ),
                },
                Err(e) => format!(
                    "reading the addresses of {}: {}; retrying",
                    placement.interface,
                    crate::dataplane::error_chain(&e)
                ),
            };
            let now = Instant::now();
            let repeat = logged
                .as_ref()
                .is_some_and(|(t, p)| *p == problem && now.duration_since(*t) < BIND_LOG_EVERY);
            if !repeat {
                warn!("sync: {problem}");
                logged = Some((now, problem));
            }
            let retry = tokio::time::sleep(socket::RETRY);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = &mut retry => break,
                    read = events.discard() => {
                        if let Ok(n) = read {
                            self.counters.events_read += n as u64;
                        }
                    }
                    Some(_) = removed.recv() => {}
                }
            }
        }
    }

    async fn run(
        &mut self,
        sock: tokio::net::UdpSocket,
        mut events: NatEvents,
        mut removed: mpsc::Receiver<Vec<(FlowKey, NatFlow)>>,
        mut walked: mpsc::UnboundedReceiver<Walked>,
        (mut asks, mut sampled): (
            mpsc::Receiver<TimelineAsk>,
            mpsc::UnboundedReceiver<drill::Sampled>,
        ),
    ) {
        info!(port = self.port, epoch = self.epoch, peers = ?self.peers.keys().collect::<Vec<_>>(), "connection-state sync running");
        // The handshake: every peer learns our epoch from this and echoes it.
        self.heartbeats(&sock, false).await;
        self.publish();
        let mut tick = tokio::time::interval(FLUSH);
        let mut buf = vec![0u8; 2048];
        let mut read = Vec::new();
        loop {
            tokio::select! {
                r = events.read(&mut read) => {
                    match r {
                        Ok(_) => self.queue_events(&mut read),
                        Err(e) => {
                            warn!(error = %e, "NAT event ring buffer");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                Some(gone) = removed.recv() => {
                    let now = MonoNanos::now();
                    for (k, f) in gone {
                        self.pending.push(record(Op::Remove, &k, &f, now));
                    }
                    self.pending_since.get_or_insert_with(Instant::now);
                }
                r = sock.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.receive(&sock, &buf[..n], from).await;
                        self.pump(&sock).await;
                    }
                }
                Some(w) = walked.recv() => {
                    self.walked(w);
                    self.pump(&sock).await;
                }
                Some(ask) = asks.recv() => self.ask_timeline(&sock, ask).await,
                Some(s) = sampled.recv() => self.send_timeline(&sock, s).await,
                _ = tick.tick() => {
                    self.tick(&sock).await;
                    self.pump(&sock).await;
                }
            }
        }
    }

    /// Queue the connection events read from the data plane (and empty `read`).
    fn queue_events(&mut self, read: &mut Vec<fo_common::NatEvent>) {
        let now = MonoNanos::now();
        for ev in read.drain(..) {
            self.counters.events_read += 1;
            // New and reset connections alike are upserts: a reset one carries its
            // CLOSED state, and aging on the owner removes it later (a Remove).
            self.pending
                .push(record(Op::Upsert, &ev.key, &ev.flow, now));
            self.pending_since.get_or_insert_with(Instant::now);
        }
    }

    async fn tick(&mut self, sock: &tokio::net::UdpSocket) {
        let now = Instant::now();
        if now.duration_since(self.lost_checked) >= HEARTBEAT {
            self.lost_checked = now;
            self.check_lost_events();
        }
        if !self.pending.is_empty()
            && self.pending_since.is_some_and(|t| {
                now.duration_since(t) >= FLUSH || self.pending.len() >= MAX_RECORDS
            })
        {
            let pending = std::mem::take(&mut self.pending);
            self.pending_since = None;
            for chunk in super::codec::batches(&pending) {
                self.seq += 1;
                self.update(sock, self.seq, chunk.to_vec()).await;
                self.counters.sent_records += chunk.len() as u64;
            }
            self.last_sent = now;
        } else if now.duration_since(self.last_sent) >= HEARTBEAT {
            self.heartbeats(sock, false).await;
            self.last_sent = now;
            self.last_beat = now;
        }
        if now.duration_since(self.last_beat) >= HEARTBEAT {
            self.heartbeats(sock, true).await;
            self.last_beat = now;
        }
        if self.drill.ready_due(now) {
            self.send_ready(sock).await;
        }
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for p in peers {
            let Some(peer) = self.peers.get_mut(&p) else {
                continue;
            };
            if peer.out.as_ref().is_some_and(|o| o.stalled(now)) {
                let o = peer.out.take();
                warn!(%p, sent = o.as_ref().map(|o| o.sent), acknowledged = o.as_ref().map(|o| o.acked), "sync: the peer stopped acknowledging our snapshot: given up (it asks again)");
            }
            if peer.track.ask_due(now) {
                self.ask_snapshot(sock, p).await;
            }
        }
        self.publish();
    }

    /// Events the data plane could not queue (the ring was full while this task was
    /// busy) never reach the peers. Skipping a sequence number makes every peer see a
    /// gap and ask for a snapshot, which carries them.
    fn check_lost_events(&mut self) {
        let Ok(lost) = self.plane.lock().dp.counter(Counter::NatEventLost) else {
            return;
        };
        if lost > self.events_lost_seen {
            let n = lost - self.events_lost_seen;
            warn!(
                lost = n,
                "sync: NAT connection events were lost (ring full): the peers resynchronise"
            );
            self.counters.events_lost += n;
            self.seq += 1;
        }
        self.events_lost_seen = lost;
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let current =
            self.counters.address.is_some() && self.peers.values().all(|p| p.track.current());
        self.table_current.set(current);
        let mut s = self.counters.clone();
        s.current = current;
        s.peers = self
            .peers
            .values()
            .map(|p| {
                let t = &p.track;
                let mut st = p.status.clone();
                st.state = if t.unreachable() {
                    "unreachable"
                } else if t.want.is_some() {
                    "snapshot"
                } else if t.last_rx.is_none() {
                    "silent"
                } else {
                    "in_sync"
                }
                .into();
                st.last_heard_seconds = t.last_rx.map(|r| now.duration_since(r).as_secs_f64());
                st.gaps = t.gaps;
                st.ready = p
                    .ready
                    .as_ref()
                    .filter(|(at, _)| now.duration_since(*at) < READY_FRESH)
                    .map(|(_, r)| r.clone());
                st
            })
            .collect();
        *lock(&self.status) = s;
    }
}
