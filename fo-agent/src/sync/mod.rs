//! Connection-state sync of NAT connections between the nodes of a router.
//!
//! Every node streams the connections its data plane opens or closes (the program's
//! `NAT_EVENTS` ring buffer) and the ones its aging removes, batched every
//! [`FLUSH`], to its peers over UDP (`codec`), authenticated with the shared key. A
//! node installs what its peers send for VIPs it does not own (the master's table is
//! the truth) through `dataplane::nat::NatTable`. A node that starts, sees a lost
//! message, or sees a peer restart asks for a full snapshot (`peer`, `snapshot`).
//!
//! Sync-then-claim: [`NatSync::table_current`] says whether the table holds everything
//! the peers sent; a backup becoming master waits on it, at most one advert interval,
//! before it serves the VIPs.
//!
//! # Replay protection
//!
//! The key proves who made a datagram, not when. Someone on the segment who captured
//! datagrams could send them again later: an old Remove takes a live connection off
//! the backup, an old Snapshot brings dead ones back, an old SnapshotRequest makes
//! the master walk its table. So every datagram carries, under the MAC:
//!
//! - the sender's **epoch**, larger at every start of the sender (`epoch`: kept on
//!   disk beside the `state_file`, floored by the clock). A receiver takes epochs
//!   only moving forward: after a sender restarts, nothing from its earlier runs
//!   is accepted.
//! - a **counter**, +1 per datagram the sender sends in its epoch, whatever its kind.
//!   A receiver takes each counter once (a 64-wide window for reordering, `guard`).
//! - an **echo** of the receiver's own epoch, as the sender last heard it. A receiver
//!   takes only datagrams that echo its current epoch: they were made after it
//!   started. This covers the receiver's restart, where it remembers nothing of the
//!   peer's counters: a datagram captured before the restart echoes an older epoch.
//!   Nothing about peers is stored on disk, so nothing there can go stale.
//! - the time it was sent. A receiver refuses a datagram more than `max_clock_skew`
//!   (default 30 s) off its own clock, a bound on how old anything accepted can be.
//!
//! The echo makes a handshake: a node that (re)starts knows no peer's epoch and
//! echoes 0; its first datagrams are refused (`unverified`) but teach the peer its
//! epoch, and the peer's next datagram (a heartbeat within 100 ms) echoes it. Only
//! then does the node ask for its snapshot, echoing the peer's epoch. So a restart
//! shows one or two `unverified` refusals on each side; more of them mean replays.
//!
//! The sender restarts: its new epoch is larger (stored + 1, at least the clock in
//! ms), so its new datagrams are new to the receiver, which then wants a snapshot
//! (the restarted sender's table may differ from what it streamed before). The
//! receiver restarts: its own epoch is new, so nothing captured before passes the
//! echo, and the peers learn its epoch from its first datagram.
//!
//! Snapshot requests are served at most once per half second per peer
//! (`rate_limited`), and the table is walked on a blocking thread, never on the async
//! runtime.
//!
//! # Complete snapshots
//!
//! A snapshot's end counts the datagrams and records sent; the receiver compares them
//! with what it received and asks again at once when they differ. The sender stays
//! within a window of 64 datagrams ahead of the receiver's acknowledgements, so it
//! never overruns the receiver, and the socket's receive buffer is set with
//! `SO_RCVBUFFORCE` (not capped by `rmem_max`) for bursts of Updates. The Updates for
//! a peer being sent a snapshot are held until its end, so no snapshot record (read
//! when the walk began) overwrites a newer change; the heartbeats to that peer name
//! the snapshot, so it waits for a long walk instead of asking again (`snapshot`).
//!
//! # Versions
//!
//! The magic's last byte is the wire version (2). A datagram of another version that
//! authenticates with our key is refused (`version`, logged with both versions): the
//! sync between a version-1 and a version-2 node is off during an upgrade, and a
//! version-1 peer, which has no counters, cannot be told from a replay. Upgrade both
//! nodes back to back; each side's peer shows "unreachable" meanwhile, so takeovers
//! do not wait for it.

pub mod codec;
pub mod epoch;
pub mod guard;
pub mod peer;
pub mod snapshot;
pub mod socket;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fo_common::{Addr, Counter, FAMILY_V4, FlowKey, NatFlow};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::dataplane::nat::NatTable;
use crate::dataplane::{MonoNanos, NatEvents, SharedPlane};
use crate::locks::{Flag, lock};
use codec::{Header, Kind, MAX_RECORDS, Message, Op, Record};
use guard::{PeerGuard, Refusal};
use peer::{Chunk, End, PeerTrack, Verdict};
use snapshot::{Outgoing, RateLimit};

/// Longest time a connection event waits before it is sent.
pub const FLUSH: Duration = Duration::from_millis(10);
/// A heartbeat (the last sequence sent) this often, so a receiver notices a loss.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// The same refusal (reason, peer) is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Connections of a snapshot made room for at once, at most.
const MAX_RESERVE: usize = 1 << 24;
/// Trouble binding the socket is logged at most this often.
const BIND_LOG_EVERY: Duration = Duration::from_secs(30);

/// Sync health for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The table holds everything the peers sent (a takeover would not wait).
    pub current: bool,
    /// The address the sync socket is bound to; `None` while it cannot be (no address
    /// on the interface yet, or the port is taken): nothing is synced meanwhile.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// This run's epoch (larger at every start).
    #[serde(default)]
    pub epoch: u64,
    pub peers: Vec<PeerStatus>,
    pub sent_messages: u64,
    pub sent_records: u64,
    pub snapshots_sent: u64,
    /// Datagrams refused, in all.
    pub refused: u64,
    /// Datagrams refused, by reason (see `guard::Refusal`).
    #[serde(default)]
    pub refused_by: BTreeMap<String, u64>,
    /// Connection events read from the data plane's ring buffer.
    pub events_read: u64,
    /// Connection events the data plane could not queue (ring full); each loss made
    /// the peers resynchronise.
    #[serde(default)]
    pub events_lost: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    /// "in_sync", "snapshot" (one asked for, not complete), "unreachable", "silent"
    /// (never heard).
    pub state: String,
    pub last_heard_seconds: Option<f64>,
    pub received_messages: u64,
    pub installed: u64,
    pub removed: u64,
    /// Lost messages noticed (each led to a snapshot).
    pub gaps: u64,
    /// Connection event on the peer to installed here, last Update (ms).
    pub lag_ms: Option<f64>,
    pub max_lag_ms: f64,
    /// Snapshots from this peer that ended incomplete (each asked again).
    #[serde(default)]
    pub incomplete_snapshots: u64,
    /// The last complete snapshot from this peer.
    #[serde(default)]
    pub last_snapshot: Option<SnapshotFigures>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFigures {
    pub connections: u64,
    pub datagrams: u32,
    /// From wanting it to the table current (its stale connections removed).
    pub seconds: f64,
    /// Requests sent for it.
    pub asks: u32,
    /// Stale connections removed after it.
    pub stale_removed: u64,
}

/// What the agent keeps of the NAT connection-state sync.
#[derive(Clone)]
pub struct NatSync {
    table_current: Flag,
    status: Arc<Mutex<SyncStatus>>,
    /// Connections removed by aging, to be streamed as closed.
    pub removed: mpsc::Sender<Vec<(FlowKey, NatFlow)>>,
}

impl NatSync {
    pub fn status(&self) -> SyncStatus {
        lock(&self.status).clone()
    }

    /// True while this node's table holds everything its peers sent (sync-then-claim
    /// waits on it).
    pub fn table_current(&self) -> Flag {
        self.table_current.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the sync key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Epoch(#[from] epoch::EpochError),
    #[error(
        "the NAT event ring buffer is not available (adopted data plane: restart with a fresh load)"
    )]
    NoEvents,
    #[error("the NAT event ring buffer cannot be polled")]
    Poll(#[source] std::io::Error),
    #[error("NAT table: {0}")]
    Table(String),
}

/// Where the sync runs on this node.
pub struct Placement {
    pub handle: rtnetlink::Handle,
    /// `[node] interface`: the node's own address there is bound.
    pub interface: String,
    pub ifindex: u32,
    /// VIPs and SNAT addresses: never the node's own address.
    pub floating: Vec<IpAddr>,
    /// `[node] state_file`: the epoch is kept beside it.
    pub state_file: PathBuf,
}

/// Start the sync task. The socket is bound by the task (see `socket`).
pub async fn start(
    cfg: &fo_config::SyncConfig,
    plane: SharedPlane,
    placement: Placement,
) -> Result<(NatSync, tokio::task::JoinHandle<()>), SyncError> {
    let key = std::fs::read(&cfg.key_file).map_err(|source| SyncError::Key {
        path: cfg.key_file.clone(),
        source,
    })?;
    let epoch = epoch::advance(&epoch::path_for(&placement.state_file), unix_ms())?;
    let (events, table) = {
        let mut p = plane.lock();
        let events = NatEvents::take(&mut p.dp)
            .ok_or(SyncError::NoEvents)?
            .map_err(SyncError::Poll)?;
        let table =
            p.dp.nat_table()
                .map_err(|e| SyncError::Table(crate::dataplane::error_chain(&e)))?;
        (events, table)
    };
    let table_current = Flag::default();
    let status = Arc::new(Mutex::new(SyncStatus {
        epoch,
        peers: cfg.peers.iter().map(|&a| PeerStatus::new(a)).collect(),
        ..Default::default()
    }));
    let (removed_tx, removed_rx) = mpsc::channel(64);
    // Losses before this start (the counter lives in the pinned maps) are not ours to
    // report: a new epoch has every peer take a snapshot anyway.
    let events_lost_seen = plane.lock().dp.counter(Counter::NatEventLost).unwrap_or(0);
    let (walked_tx, walked_rx) = mpsc::unbounded_channel();
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
        status: status.clone(),
        table_current: table_current.clone(),
        counters: SyncStatus {
            epoch,
            ..Default::default()
        },
        events_lost_seen,
        lost_checked: now,
        walked: walked_tx,
        logged: BTreeMap::new(),
    };
    let handle = tokio::spawn(async move {
        let (mut events, mut removed) = (events, removed_rx);
        let sock = task.bind(&placement, &mut events, &mut removed).await;
        task.run(sock, events, removed, walked_rx).await
    });
    Ok((
        NatSync {
            table_current,
            status,
            removed: removed_tx,
        },
        handle,
    ))
}

impl PeerStatus {
    fn new(address: IpAddr) -> Self {
        PeerStatus {
            address,
            state: "silent".into(),
            last_heard_seconds: None,
            received_messages: 0,
            installed: 0,
            removed: 0,
            gaps: 0,
            lag_ms: None,
            max_lag_ms: 0.0,
            incomplete_snapshots: 0,
            last_snapshot: None,
        }
    }
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
}

fn unix_ms() -> u64 {
    crate::clock::unix_millis(SystemTime::now())
}

fn v4(a: &Addr) -> Ipv4Addr {
    Ipv4Addr::new(a.bytes[0], a.bytes[1], a.bytes[2], a.bytes[3])
}

/// The record of a connection (`op`), its age measured now.
pub fn record(op: Op, key: &FlowKey, flow: &NatFlow, now: MonoNanos) -> Record {
    Record {
        op,
        proto: key.proto,
        client: v4(&key.src),
        vip: v4(&key.dst),
        client_port: u16::from_be(key.sport_be),
        vip_port: u16::from_be(key.dport_be),
        backend: v4(&flow.backend),
        backend_port: u16::from_be(flow.backend_port_be),
        snat: v4(&flow.snat),
        snat_port: u16::from_be(flow.snat_port_be),
        client_mac: flow.client_mac,
        state: flow.state,
        age: Duration::from_nanos(now.0.saturating_sub(flow.last_seen_ns)),
    }
}

/// A SnapshotEnd's statement that the sender owns `vip`.
fn owns(vip: Ipv4Addr) -> Record {
    Record {
        op: Op::Owns,
        proto: 0,
        client: Ipv4Addr::UNSPECIFIED,
        vip,
        client_port: 0,
        vip_port: 0,
        backend: Ipv4Addr::UNSPECIFIED,
        backend_port: 0,
        snat: Ipv4Addr::UNSPECIFIED,
        snat_port: 0,
        client_mac: [0; 6],
        state: 0,
        age: Duration::ZERO,
    }
}

/// The map entries of a record, last seen `age` before `now`.
pub fn entries(r: &Record, now: MonoNanos, slot: u32) -> (FlowKey, NatFlow) {
    let key = FlowKey {
        src: Addr::v4(r.client.octets()),
        dst: Addr::v4(r.vip.octets()),
        sport_be: r.client_port.to_be(),
        dport_be: r.vip_port.to_be(),
        proto: r.proto,
        family: FAMILY_V4,
        _pad: [0; 2],
    };
    let flow = NatFlow {
        backend: Addr::v4(r.backend.octets()),
        snat: Addr::v4(r.snat.octets()),
        client_mac: r.client_mac,
        backend_port_be: r.backend_port.to_be(),
        snat_port_be: r.snat_port.to_be(),
        state: r.state,
        _pad: 0,
        backend_slot: slot,
        last_seen_ns: now.0.saturating_sub(r.age.as_nanos() as u64),
        // Not synced: the program picks the sequence tracking up from the next segments.
        seq: Default::default(),
    };
    (key, flow)
}

/// The reason a datagram that failed to decode is refused for.
fn refusal_of(e: &codec::DecodeError) -> Refusal {
    use codec::DecodeError as D;
    match e {
        D::Short { .. } | D::Magic | D::Auth => Refusal::Auth,
        D::Version { .. } => Refusal::Version,
        D::Kind(_) | D::Length { .. } | D::Op(_) | D::TooMany(_) => Refusal::Malformed,
    }
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
            for chunk in pending.chunks(MAX_RECORDS) {
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

    /// Encode and send one datagram to `peer`; returns its counter (the id of a
    /// SnapshotRequest) if it went out.
    async fn send(
        &mut self,
        sock: &tokio::net::UdpSocket,
        peer: IpAddr,
        kind: Kind,
        mut header: Header,
        records: Vec<Record>,
    ) -> Option<u64> {
        self.counter += 1;
        header.epoch = self.epoch;
        header.counter = self.counter;
        header.echo = self.peers.get(&peer).map_or(0, |p| p.guard.echo());
        header.sent_unix_ms = unix_ms();
        let m = Message {
            kind,
            header,
            records,
        };
        let d = codec::encode(&m, &self.key).ok()?;
        match sock.send_to(&d, (peer, self.port)).await {
            Ok(_) => {
                self.counters.sent_messages += 1;
                Some(header.counter)
            }
            Err(e) => {
                debug!(%peer, error = %e, "sync: sending failed");
                None
            }
        }
    }

    /// An Update to every peer; held for a peer that is being sent a snapshot.
    async fn update(&mut self, sock: &tokio::net::UdpSocket, seq: u64, records: Vec<Record>) {
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for p in peers {
            let Some(peer) = self.peers.get_mut(&p) else {
                continue;
            };
            if let Some(out) = &mut peer.out {
                if out.hold(seq, records.clone()) {
                    continue;
                }
                peer.out = None;
                warn!(%p, "sync: too many updates held during a snapshot to the peer: snapshot given up (it asks again)");
            }
            let h = Header {
                seq,
                ..Default::default()
            };
            self.send(sock, p, Kind::Update, h, records.clone()).await;
        }
    }

    /// A heartbeat to every peer (`only_snapshots`: to those being sent a snapshot):
    /// the last Update sent to it; for a peer being sent
    /// a snapshot, the position its end will state (the Updates since are held) and
    /// the snapshot's id (its request is in hand).
    async fn heartbeats(&mut self, sock: &tokio::net::UdpSocket, only_snapshots: bool) {
        let beats: Vec<(IpAddr, Header)> = self
            .peers
            .iter()
            .filter(|(_, p)| !only_snapshots || p.out.is_some())
            .map(|(a, p)| {
                let h = match &p.out {
                    Some(o) => Header {
                        seq: o.start_seq,
                        snapshot: o.id,
                        ..Default::default()
                    },
                    None => Header {
                        seq: self.seq,
                        ..Default::default()
                    },
                };
                (*a, h)
            })
            .collect();
        for (p, h) in beats {
            self.send(sock, p, Kind::Heartbeat, h, Vec::new()).await;
        }
    }

    /// Ask `peer` for a snapshot, if it can hear us (we know its epoch to echo).
    async fn ask_snapshot(&mut self, sock: &tokio::net::UdpSocket, peer: IpAddr) {
        let heard = self.peers.get(&peer).is_some_and(|p| p.guard.echo() != 0);
        let id = if heard {
            self.send(
                sock,
                peer,
                Kind::SnapshotRequest,
                Header::default(),
                Vec::new(),
            )
            .await
        } else {
            None
        };
        if let Some(p) = self.peers.get_mut(&peer) {
            p.track.asked(id);
            p.seen.clear();
        }
        if id.is_some() {
            debug!(%peer, id, "sync: snapshot asked");
        }
    }

    fn refuse(&mut self, peer: Option<IpAddr>, why: Refusal, detail: impl FnOnce() -> String) {
        self.counters.refused += 1;
        *self
            .counters
            .refused_by
            .entry(why.reason().into())
            .or_default() += 1;
        let now = Instant::now();
        // How many were not logged since the last line, if this one is logged.
        let suppressed = match self.logged.get_mut(&(why, peer)) {
            None => {
                self.logged.insert((why, peer), (now, 0));
                Some(0)
            }
            Some((at, n)) if now.duration_since(*at) >= REFUSAL_LOG_EVERY => {
                let n = std::mem::take(n);
                *at = now;
                Some(n)
            }
            Some((_, n)) => {
                *n += 1;
                None
            }
        };
        let Some(suppressed) = suppressed else {
            return;
        };
        let peer = peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        let text = detail();
        if why == Refusal::Unverified {
            // Normal once or twice when either side restarts (the handshake).
            debug!(%peer, reason = why.reason(), suppressed, "sync datagram refused: {text}");
        } else {
            warn!(%peer, reason = why.reason(), suppressed, "sync datagram refused: {text}");
        }
    }

    async fn receive(&mut self, sock: &tokio::net::UdpSocket, d: &[u8], from: SocketAddr) {
        let ip = from.ip();
        if !self.peers.contains_key(&ip) {
            self.refuse(None, Refusal::UnknownPeer, || {
                format!("from {from}, which is no sync peer")
            });
            return;
        }
        let m = match codec::decode(d, &self.key) {
            Ok(m) => m,
            Err(e) => {
                let why = refusal_of(&e);
                self.refuse(Some(ip), why, || match e {
                    codec::DecodeError::Version { found } => format!(
                        "the peer speaks sync wire version {found}, this agent version {}: the sync stays off until both nodes run the same version (finish the upgrade)",
                        codec::VERSION
                    ),
                    e => e.to_string(),
                });
                return;
            }
        };
        let now = Instant::now();
        let now_ms = unix_ms();
        let (mine, max_skew) = (self.epoch, self.max_skew);
        let Some(p) = self.peers.get_mut(&ip) else {
            return;
        };
        let known = p.guard.echo();
        let checked = p.guard.check(&m.header, mine, now_ms, max_skew);
        if p.guard.echo() != known {
            // First heard since our start, or restarted: its table is to be taken
            // again, asked with the epoch it now has.
            if known != 0 {
                info!(peer = %ip, epoch = m.header.epoch, "sync: the peer restarted; asking for a snapshot");
            }
            p.track.need_snapshot(now, true);
            p.track.epoch = Some(m.header.epoch);
            p.track.seq = 0;
            // A snapshot for its earlier run has no taker any more, and the new run's
            // first request is not held to the old run's rate.
            p.out = None;
            p.limit = RateLimit::default();
        }
        if let Err(why) = checked {
            let h = m.header;
            self.refuse(Some(ip), why, || match why {
                Refusal::ClockSkew => format!(
                    "{} sent at {} ms, our clock {now_ms} ms: more than max_clock_skew {max_skew:?} apart (synchronise the clocks, NTP)",
                    m.kind.name(),
                    h.sent_unix_ms
                ),
                Refusal::OldEpoch => format!(
                    "{} of the peer's epoch {}, older than its epoch {known} (a replay, or its epoch file was reset with its clock behind)",
                    m.kind.name(),
                    h.epoch
                ),
                Refusal::Unverified => format!(
                    "{} echoes our epoch as {}, ours is {mine} (the handshake after a restart, or a replay)",
                    m.kind.name(),
                    h.echo
                ),
                Refusal::Replay => format!(
                    "{} with counter {} was seen before (a replay)",
                    m.kind.name(),
                    h.counter
                ),
                _ => m.kind.name().to_string(),
            });
            self.publish();
            return;
        }
        p.status.received_messages += 1;
        match m.kind {
            Kind::Update | Kind::Heartbeat => {
                if m.kind == Kind::Heartbeat && m.header.snapshot != 0 {
                    p.track.in_hand(now, m.header.snapshot);
                }
                let verdict = p.track.on_stream(now, m.kind, m.header.epoch, m.header.seq);
                match verdict {
                    Verdict::Ignore => {}
                    Verdict::Apply | Verdict::ApplyAndResync => {
                        if m.kind == Kind::Update && !m.records.is_empty() {
                            let transit = now_ms.saturating_sub(m.header.sent_unix_ms) as f64;
                            let age = m
                                .records
                                .iter()
                                .filter(|r| r.op == Op::Upsert)
                                .map(|r| r.age.as_secs_f64() * 1000.0)
                                .fold(0.0, f64::max);
                            let lag = transit + age;
                            p.status.lag_ms = Some(lag);
                            p.status.max_lag_ms = p.status.max_lag_ms.max(lag);
                        }
                        if verdict == Verdict::ApplyAndResync {
                            p.track.need_snapshot(now, false);
                            warn!(peer = %ip, "sync: a message was lost; asking for a snapshot");
                        }
                        self.apply(ip, &m.records, false);
                    }
                }
            }
            Kind::Snapshot => match p.track.on_chunk(now, m.header.snapshot, m.records.len()) {
                Chunk::Stale => {}
                Chunk::Apply { ack } => {
                    if p.seen.is_empty() {
                        // The whole snapshot's size, from its first datagram.
                        p.seen.reserve((m.header.total as usize).min(MAX_RESERVE));
                    }
                    self.apply(ip, &m.records, true);
                    if let Some(n) = ack {
                        let h = Header {
                            snapshot: m.header.snapshot,
                            index: n,
                            ..Default::default()
                        };
                        self.send(sock, ip, Kind::SnapshotAck, h, Vec::new()).await;
                    }
                }
            },
            Kind::SnapshotEnd => {
                let h = m.header;
                match p
                    .track
                    .on_end(now, h.epoch, h.snapshot, h.seq, h.index, h.total)
                {
                    End::Stale => {}
                    End::Incomplete(got) => {
                        p.seen.clear();
                        p.status.incomplete_snapshots += 1;
                        warn!(peer = %ip, received = got.records, sent = got.sent_records, datagrams_received = got.datagrams, datagrams_sent = got.sent_datagrams, "sync: the snapshot arrived incomplete; asking again");
                    }
                    End::Complete(done) => {
                        let owns: HashSet<IpAddr> = m
                            .records
                            .iter()
                            .filter(|r| r.op == Op::Owns)
                            .map(|r| IpAddr::V4(r.vip))
                            .collect();
                        self.finish_snapshot(ip, &owns, done);
                    }
                }
            }
            Kind::SnapshotRequest => {
                if !p.limit.admit(now) {
                    self.refuse(Some(ip), Refusal::RateLimited, || {
                        format!(
                            "a snapshot request sooner than {:?} after the last one served",
                            snapshot::MIN_INTERVAL
                        )
                    });
                } else if let Some(out) = &mut p.out {
                    debug!(peer = %ip, "sync: a new snapshot request takes over the one in progress");
                    out.rekey(m.header.counter, now);
                } else {
                    p.out = Some(Outgoing::new(m.header.counter, now, self.seq));
                    self.walk(ip, m.header.counter);
                }
            }
            Kind::SnapshotAck => {
                if let Some(out) = &mut p.out
                    && out.id == m.header.snapshot
                {
                    out.ack(now, m.header.index);
                }
            }
        }
        self.publish();
    }

    /// Walk the table for a snapshot to `peer` on a blocking thread; the result
    /// comes back through `walked`.
    fn walk(&mut self, peer: IpAddr, id: u64) {
        let owned = self.plane.lock().owned_since();
        let table = self.plane.lock().dp.nat_table();
        if let Some(out) = self.peers.get_mut(&peer).and_then(|p| p.out.as_mut()) {
            out.owns = owned
                .keys()
                .filter_map(|v| match v {
                    IpAddr::V4(a) => Some(owns(*a)),
                    IpAddr::V6(_) => None,
                })
                .take(MAX_RECORDS)
                .collect();
        }
        let tx = self.walked.clone();
        tokio::task::spawn_blocking(move || {
            let records = table
                .and_then(|t| t.flows())
                .map_err(|e| crate::dataplane::error_chain(&e))
                .map(|flows| {
                    let now = MonoNanos::now();
                    flows
                        .iter()
                        .filter(|(k, _)| owned.contains_key(&k.dst.to_ip(k.family)))
                        .map(|(k, f)| record(Op::Upsert, k, f, now))
                        .collect()
                });
            let _ = tx.send(Walked { peer, id, records });
        });
    }

    fn walked(&mut self, w: Walked) {
        let Some(p) = self.peers.get_mut(&w.peer) else {
            return;
        };
        let Some(out) = p.out.as_mut().filter(|o| o.id == w.id) else {
            // Replaced or given up meanwhile.
            return;
        };
        match w.records {
            Ok(r) => {
                out.progress = Instant::now();
                out.records = Some(r);
            }
            Err(e) => {
                warn!(peer = %w.peer, error = %e, "reading the NAT table for a snapshot");
                p.out = None;
            }
        }
    }

    /// Send what the snapshots' windows allow; end those fully sent and release the
    /// Updates held meanwhile.
    async fn pump(&mut self, sock: &tokio::net::UdpSocket) {
        let peers: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| p.out.as_ref().is_some_and(|o| o.records.is_some()))
            .map(|(a, _)| *a)
            .collect();
        for ip in peers {
            loop {
                let now = Instant::now();
                let Some(out) = self.peers.get_mut(&ip).and_then(|p| p.out.as_mut()) else {
                    break;
                };
                let id = out.id;
                let total = out.records.as_ref().map_or(0, Vec::len);
                let Some((index, records)) = out.next(now).map(|(i, r)| (i, r.to_vec())) else {
                    break;
                };
                let h = Header {
                    snapshot: id,
                    index,
                    total: u32::try_from(total).unwrap_or(u32::MAX),
                    ..Default::default()
                };
                self.send(sock, ip, Kind::Snapshot, h, records).await;
            }
            let Some(p) = self.peers.get_mut(&ip) else {
                continue;
            };
            if !p.out.as_ref().is_some_and(Outgoing::all_sent) {
                continue;
            }
            let Some(out) = p.out.take() else {
                continue;
            };
            let n = out.records.as_ref().map_or(0, Vec::len);
            let h = Header {
                seq: out.start_seq,
                snapshot: out.id,
                index: out.datagrams().unwrap_or(0),
                total: u32::try_from(n).unwrap_or(u32::MAX),
                ..Default::default()
            };
            self.send(sock, ip, Kind::SnapshotEnd, h, out.owns).await;
            let held = out.held.len();
            for (seq, records) in out.held {
                let h = Header {
                    seq,
                    ..Default::default()
                };
                self.send(sock, ip, Kind::Update, h, records).await;
            }
            self.counters.snapshots_sent += 1;
            info!(peer = %ip, connections = n, datagrams = h.index, held_updates = held, seconds = out.started.elapsed().as_secs_f64(), "sync: snapshot sent");
        }
    }

    /// Install or remove the records' connections, except for VIPs we own; a
    /// snapshot's are remembered (stale ones are removed after its end).
    fn apply(&mut self, peer: IpAddr, records: &[Record], snapshot: bool) {
        let (owned, slots) = {
            let p = self.plane.lock();
            let owned = p.owned_since();
            let slots: BTreeMap<(IpAddr, u16, u8, IpAddr, u16), u32> = p
                .table
                .slots()
                .into_iter()
                .map(|s| ((s.vip, s.port, s.proto, s.backend, s.backend_port), s.slot))
                .collect();
            (owned, slots)
        };
        let now = MonoNanos::now();
        let (mut installed, mut removed) = (0u64, 0u64);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for r in records {
            if owned.contains_key(&IpAddr::V4(r.vip)) {
                continue;
            }
            let slot = slots
                .get(&(
                    IpAddr::V4(r.vip),
                    r.vip_port,
                    r.proto,
                    IpAddr::V4(r.backend),
                    r.backend_port,
                ))
                .copied()
                .unwrap_or(u32::MAX);
            let (key, flow) = entries(r, now, slot);
            let done = match r.op {
                Op::Upsert => {
                    if snapshot {
                        p.seen.insert(key);
                    }
                    self.table.put(&key, &flow).map(|()| installed += 1)
                }
                Op::Remove => match self.table.flow(&key) {
                    Ok(Some(f)) => self.table.remove(&key, &f).map(|()| removed += 1),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                Op::Owns => Ok(()),
            };
            if let Err(e) = done {
                error!(%peer, error = %crate::dataplane::error_chain(&e), "installing a synced connection failed (NAT table full?)");
            }
        }
        p.status.installed += installed;
        p.status.removed += removed;
    }

    /// A snapshot from `peer` is complete: connections of the VIPs it owns (and we do
    /// not) that it did not contain are gone on the peer. Connections of other VIPs
    /// are not the peer's to judge.
    fn finish_snapshot(
        &mut self,
        peer: IpAddr,
        peer_owns: &HashSet<IpAddr>,
        done: peer::Completed,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let seen = std::mem::take(&mut p.seen);
        let owned = self.plane.lock().owned_since();
        let table = &mut self.table;
        let swept = Instant::now();
        // A walk of the whole table: off the runtime's cooperative scheduling.
        let stale = tokio::task::block_in_place(|| {
            let mut stale = 0u64;
            if peer_owns.is_empty() {
                return stale;
            }
            let judged: HashSet<IpAddr> = peer_owns
                .iter()
                .filter(|v| !owned.contains_key(v))
                .copied()
                .collect();
            if let Ok(flows) = table.flows() {
                for (k, f) in flows {
                    if judged.contains(&k.dst.to_ip(k.family))
                        && !seen.contains(&k)
                        && table.remove(&k, &f).is_ok()
                    {
                        stale += 1;
                    }
                }
            }
            drop(seen);
            stale
        });
        let swept = swept.elapsed();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let figures = SnapshotFigures {
            connections: done.got.records,
            datagrams: done.got.datagrams,
            seconds: done.since.elapsed().as_secs_f64(),
            asks: done.asks,
            stale_removed: stale,
        };
        info!(%peer, connections = figures.connections, datagrams = figures.datagrams, seconds = figures.seconds, asks = figures.asks, stale_removed = stale, stale_sweep_seconds = swept.as_secs_f64(), "sync: snapshot complete, the connection table is current");
        p.status.last_snapshot = Some(figures);
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
                st
            })
            .collect();
        *lock(&self.status) = s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_record_are_inverse() {
        let key = FlowKey {
            src: Addr::v4([198, 51, 100, 7]),
            dst: Addr::v4([192, 0, 2, 100]),
            sport_be: 40000u16.to_be(),
            dport_be: 1514u16.to_be(),
            proto: 6,
            family: FAMILY_V4,
            _pad: [0; 2],
        };
        let now = MonoNanos(50_000_000_000);
        let flow = NatFlow {
            backend: Addr::v4([10, 1, 0, 21]),
            snat: Addr::v4([192, 0, 2, 101]),
            client_mac: [2, 0xc1, 0, 0, 0, 1],
            backend_port_be: 11514u16.to_be(),
            snat_port_be: 30001u16.to_be(),
            state: 2,
            _pad: 0,
            backend_slot: 3,
            last_seen_ns: now.0 - 2_000_000_000,
            seq: Default::default(),
        };
        let r = record(Op::Upsert, &key, &flow, now);
        assert_eq!(r.age, Duration::from_secs(2));
        assert_eq!(r.snat_port, 30001);
        assert_eq!(entries(&r, now, 3), (key, flow));
    }
}
