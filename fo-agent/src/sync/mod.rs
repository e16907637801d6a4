//! Connection-state sync of NAT connections between the nodes of a router.
//!
//! Every node streams the connections its data plane opens or closes (the program's
//! `NAT_EVENTS` ring buffer) and the ones its aging removes, batched every
//! [`FLUSH`], to its peers over UDP (`codec`), authenticated with the shared key. A
//! node installs what its peers send for VIPs it does not own (the master's table is
//! the truth) through `dataplane::nat::NatTable`. A node that starts, sees a lost
//! message, or sees a peer restart asks for a full snapshot (`peer`).
//!
//! Sync-then-claim: the [`SyncGate`] says whether the table holds everything the
//! peers sent; a backup becoming master waits on it, at most one advert interval,
//! before it serves the VIPs.

pub mod codec;
pub mod peer;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{MapData, RingBuf};
use fo_common::{Addr, Counter, FAMILY_V4, FlowKey, NatEvent, NatFlow};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::agent::SharedPlane;
use crate::dataplane::MonoNanos;
use crate::dataplane::nat::NatTable;
use codec::{Kind, MAX_RECORDS, Message, Op, Record};
use peer::{PeerTrack, Verdict};

/// Longest time a connection event waits before it is sent.
pub const FLUSH: Duration = Duration::from_millis(10);
/// A heartbeat (the last sequence sent) this often, so a receiver notices a loss.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Whether this node's table holds everything its peers sent.
#[derive(Clone, Default)]
pub struct SyncGate(Arc<(Mutex<bool>, Condvar)>);

impl SyncGate {
    fn set(&self, current: bool) {
        let (m, c) = &*self.0;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = current;
        c.notify_all();
    }

    pub fn current(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block until the table is current, at most `bound`: (current, time waited).
    pub fn wait_current(&self, bound: Duration) -> (bool, Duration) {
        let start = Instant::now();
        let (m, c) = &*self.0;
        let guard = m.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = c
            .wait_timeout_while(guard, bound, |current| !*current)
            .unwrap_or_else(|p| p.into_inner());
        (*guard, start.elapsed())
    }
}

/// Sync health for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The table holds everything the peers sent (a takeover would not wait).
    pub current: bool,
    pub peers: Vec<PeerStatus>,
    pub sent_messages: u64,
    pub sent_records: u64,
    pub snapshots_sent: u64,
    /// Datagrams refused: bad MAC, unknown sender, malformed.
    pub refused: u64,
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
}

/// What the agent keeps of the sync.
#[derive(Clone)]
pub struct Sync {
    pub gate: SyncGate,
    pub status: Arc<Mutex<SyncStatus>>,
    /// Connections removed by aging, to be streamed as closed.
    pub removed: mpsc::Sender<Vec<(FlowKey, NatFlow)>>,
}

impl Sync {
    pub fn status(&self) -> SyncStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    #[error("sync socket on port {port}")]
    Socket {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the NAT event ring buffer is not available (adopted data plane: restart with a fresh load)"
    )]
    NoEvents,
    #[error("NAT table: {0}")]
    Table(String),
}

/// Start the sync task.
pub async fn start(
    cfg: &fo_config::Sync,
    plane: SharedPlane,
) -> Result<(Sync, tokio::task::JoinHandle<()>), SyncError> {
    let key = std::fs::read(&cfg.key_file).map_err(|source| SyncError::Key {
        path: cfg.key_file.clone(),
        source,
    })?;
    let sock = socket(cfg.port).map_err(|source| SyncError::Socket {
        port: cfg.port,
        source,
    })?;
    let (events, table) = {
        let mut p = plane.lock();
        let events = p.dp.take_nat_events().ok_or(SyncError::NoEvents)?;
        let table =
            p.dp.nat_table()
                .map_err(|e| SyncError::Table(crate::dataplane::error_chain(&e)))?;
        (events, table)
    };
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd until both are
    // dropped together; nothing else closes or reuses it.
    let events = unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
        .map_err(|e| SyncError::Socket {
            port: cfg.port,
            source: std::io::Error::other(e.to_string()),
        })?;
    let gate = SyncGate::default();
    let status = Arc::new(Mutex::new(SyncStatus::default()));
    let (removed_tx, removed_rx) = mpsc::channel(64);
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    // Losses before this start (the counter lives in the pinned maps) are not ours to
    // report: a new epoch has every peer take a snapshot anyway.
    let events_lost_seen = plane.lock().dp.counter(Counter::NatEventLost).unwrap_or(0);
    let mut task = Task {
        key,
        sock,
        port: cfg.port,
        peers: cfg
            .peers
            .iter()
            .map(|&a| (a, (PeerTrack::new(), PeerStatus::new(a))))
            .collect(),
        plane,
        table,
        epoch,
        seq: 0,
        pending: Vec::new(),
        pending_since: None,
        last_sent: Instant::now(),
        collecting: None,
        status: status.clone(),
        gate: gate.clone(),
        counters: SyncStatus::default(),
        events_lost_seen,
        lost_checked: Instant::now(),
    };
    let handle = tokio::spawn(async move { task.run(events, removed_rx).await });
    Ok((
        Sync {
            gate,
            status,
            removed: removed_tx,
        },
        handle,
    ))
}

fn socket(port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    // Snapshots arrive in bursts.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(s.into())
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
        }
    }
}

struct Task {
    key: Vec<u8>,
    sock: tokio::net::UdpSocket,
    port: u16,
    peers: BTreeMap<IpAddr, (PeerTrack, PeerStatus)>,
    plane: SharedPlane,
    table: NatTable,
    epoch: u64,
    /// Last Update sequence sent.
    seq: u64,
    pending: Vec<Record>,
    pending_since: Option<Instant>,
    last_sent: Instant,
    /// Keys seen during a snapshot we asked for (stale entries are removed after it).
    collecting: Option<HashSet<FlowKey>>,
    status: Arc<Mutex<SyncStatus>>,
    gate: SyncGate,
    counters: SyncStatus,
    /// The data plane's `nat_event_lost` counter when last looked at, and when.
    events_lost_seen: u64,
    lost_checked: Instant,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

impl Task {
    async fn run(
        &mut self,
        mut events: AsyncFd<RingBuf<MapData>>,
        mut removed: mpsc::Receiver<Vec<(FlowKey, NatFlow)>>,
    ) {
        info!(port = self.port, peers = ?self.peers.keys().collect::<Vec<_>>(), "connection-state sync running");
        let now = Instant::now();
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for p in peers {
            self.ask_snapshot(p, now).await;
        }
        self.publish();
        let mut tick = tokio::time::interval(FLUSH);
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                ready = events.readable_mut() => {
                    match ready {
                        Ok(mut guard) => {
                            self.drain_events(guard.get_inner_mut());
                            guard.clear_ready();
                        }
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
                r = self.sock.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        let d = buf[..n].to_vec();
                        self.receive(&d, from).await;
                    }
                }
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    fn drain_events(&mut self, ring: &mut RingBuf<MapData>) {
        let now = MonoNanos::now();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<NatEvent>() {
                continue;
            }
            // SAFETY: the program writes whole NatEvent records; read unaligned.
            let ev: NatEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            self.counters.events_read += 1;
            // New and reset connections alike are upserts: a reset one carries its
            // CLOSED state, and aging on the owner removes it later (a Remove).
            self.pending
                .push(record(Op::Upsert, &ev.key, &ev.flow, now));
            self.pending_since.get_or_insert_with(Instant::now);
        }
    }

    async fn tick(&mut self) {
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
                let m = Message {
                    kind: Kind::Update,
                    epoch: self.epoch,
                    seq: self.seq,
                    sent_unix_ms: unix_ms(),
                    records: chunk.to_vec(),
                };
                self.send_all(&m).await;
                self.counters.sent_records += chunk.len() as u64;
            }
            self.last_sent = now;
        } else if now.duration_since(self.last_sent) >= HEARTBEAT {
            let m = Message {
                kind: Kind::Heartbeat,
                epoch: self.epoch,
                seq: self.seq,
                sent_unix_ms: unix_ms(),
                records: Vec::new(),
            };
            self.send_all(&m).await;
            self.last_sent = now;
        }
        let retry: Vec<IpAddr> = self
            .peers
            .iter_mut()
            .filter_map(|(a, (t, _))| t.should_ask(now).then_some(*a))
            .collect();
        for p in retry {
            self.ask_snapshot(p, now).await;
        }
        self.publish();
    }

    /// Events the data plane could not queue (the ring was full while this task was
    /// busy, e.g. sending a large snapshot) never reach the peers. Skipping a sequence
    /// number makes every peer see a gap and ask for a snapshot, which carries them.
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

    async fn send_all(&mut self, m: &Message) {
        let Ok(d) = codec::encode(m, &self.key) else {
            return;
        };
        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
        for p in peers {
            if self.sock.send_to(&d, (p, self.port)).await.is_ok() {
                self.counters.sent_messages += 1;
            }
        }
    }

    async fn send_to(&mut self, peer: IpAddr, m: &Message) {
        if let Ok(d) = codec::encode(m, &self.key)
            && self.sock.send_to(&d, (peer, self.port)).await.is_ok()
        {
            self.counters.sent_messages += 1;
        }
    }

    async fn ask_snapshot(&mut self, peer: IpAddr, now: Instant) {
        if let Some((t, _)) = self.peers.get_mut(&peer) {
            t.asked(now);
        }
        self.collecting.get_or_insert_with(HashSet::new);
        let m = Message {
            kind: Kind::SnapshotRequest,
            epoch: self.epoch,
            seq: self.seq,
            sent_unix_ms: unix_ms(),
            records: Vec::new(),
        };
        self.send_to(peer, &m).await;
    }

    async fn receive(&mut self, d: &[u8], from: SocketAddr) {
        let peer = from.ip();
        if !self.peers.contains_key(&peer) {
            self.counters.refused += 1;
            debug!(%from, "sync datagram from an address that is no peer: refused");
            return;
        }
        let m = match codec::decode(d, &self.key) {
            Ok(m) => m,
            Err(e) => {
                self.counters.refused += 1;
                error!(%from, error = %e, "sync datagram refused");
                return;
            }
        };
        let now = Instant::now();
        let Some((track, st)) = self.peers.get_mut(&peer) else {
            return;
        };
        st.received_messages += 1;
        if m.kind == Kind::SnapshotRequest {
            // Our answer; their own stream position is not affected.
            self.send_snapshot(peer).await;
            return;
        }
        let verdict = track.on_message(now, m.kind, m.epoch, m.seq);
        match verdict {
            Verdict::Ignore => {}
            Verdict::Apply | Verdict::ApplyAndResync => {
                if m.kind == Kind::Update && !m.records.is_empty() {
                    let transit = unix_ms().saturating_sub(m.sent_unix_ms) as f64;
                    let age = m
                        .records
                        .iter()
                        .filter(|r| r.op == Op::Upsert)
                        .map(|r| r.age.as_secs_f64() * 1000.0)
                        .fold(0.0, f64::max);
                    let lag = transit + age;
                    st.lag_ms = Some(lag);
                    st.max_lag_ms = st.max_lag_ms.max(lag);
                }
                self.apply(peer, &m.records);
                if verdict == Verdict::ApplyAndResync {
                    warn!(%peer, "sync: a message was lost or the peer restarted; asking for a snapshot");
                    self.ask_snapshot(peer, now).await;
                }
            }
            Verdict::SnapshotDone => {
                let owns: HashSet<IpAddr> = m
                    .records
                    .iter()
                    .filter(|r| r.op == Op::Owns)
                    .map(|r| IpAddr::V4(r.vip))
                    .collect();
                self.finish_snapshot(peer, &owns);
            }
        }
        self.publish();
    }

    /// Install or remove the records' connections, except for VIPs we own.
    fn apply(&mut self, peer: IpAddr, records: &[Record]) {
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
                    if let Some(seen) = self.collecting.as_mut() {
                        seen.insert(key);
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
        if let Some((_, st)) = self.peers.get_mut(&peer) {
            st.installed += installed;
            st.removed += removed;
        }
    }

    /// A snapshot ended: connections of the VIPs the peer owns (and we do not) that it
    /// did not contain are gone on the peer. Connections of other VIPs are not the
    /// peer's to judge.
    fn finish_snapshot(&mut self, peer: IpAddr, peer_owns: &HashSet<IpAddr>) {
        let still_waiting = self.peers.values().any(|(t, _)| !t.current());
        if still_waiting {
            return;
        }
        let Some(seen) = self.collecting.take() else {
            return;
        };
        let owned = self.plane.lock().owned_since();
        let mut stale = 0;
        if let Ok(flows) = self.table.flows() {
            for (k, f) in flows {
                let vip = k.dst.to_ip(k.family);
                if peer_owns.contains(&vip)
                    && !owned.contains_key(&vip)
                    && !seen.contains(&k)
                    && self.table.remove(&k, &f).is_ok()
                {
                    stale += 1;
                }
            }
        }
        info!(%peer, received = seen.len(), stale_removed = stale, "sync: snapshot complete, the connection table is current");
    }

    async fn send_snapshot(&mut self, peer: IpAddr) {
        let owned = self.plane.lock().owned_since();
        let start_seq = self.seq;
        let now = MonoNanos::now();
        let records: Vec<Record> = match self.table.flows() {
            Ok(flows) => flows
                .iter()
                .filter(|(k, _)| owned.contains_key(&k.dst.to_ip(k.family)))
                .map(|(k, f)| record(Op::Upsert, k, f, now))
                .collect(),
            Err(e) => {
                error!(error = %crate::dataplane::error_chain(&e), "reading the NAT table for a snapshot");
                return;
            }
        };
        let n = records.len();
        for (i, chunk) in records.chunks(MAX_RECORDS).enumerate() {
            let m = Message {
                kind: Kind::Snapshot,
                epoch: self.epoch,
                seq: start_seq,
                sent_unix_ms: unix_ms(),
                records: chunk.to_vec(),
            };
            self.send_to(peer, &m).await;
            if i % 32 == 31 {
                // Pace bursts so the peer's socket buffer keeps up.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let end = Message {
            kind: Kind::SnapshotEnd,
            epoch: self.epoch,
            seq: start_seq,
            sent_unix_ms: unix_ms(),
            records: owned
                .keys()
                .filter_map(|v| match v {
                    IpAddr::V4(a) => Some(owns(*a)),
                    IpAddr::V6(_) => None,
                })
                .take(MAX_RECORDS)
                .collect(),
        };
        self.send_to(peer, &end).await;
        self.counters.snapshots_sent += 1;
        info!(%peer, connections = n, "sync: snapshot sent");
    }

    fn publish(&mut self) {
        let now = Instant::now();
        let current = self.peers.values().all(|(t, _)| t.current());
        self.gate.set(current);
        let mut s = self.counters.clone();
        s.current = current;
        s.peers = self
            .peers
            .values()
            .map(|(t, st)| {
                let mut st = st.clone();
                st.state = if t.unreachable {
                    "unreachable"
                } else if t.snapshot_asked.is_some() {
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
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = s;
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

    #[test]
    fn the_gate_waits_at_most_its_bound_and_opens_at_once() {
        let g = SyncGate::default();
        let (current, waited) = g.wait_current(Duration::from_millis(50));
        assert!(!current);
        assert!(waited >= Duration::from_millis(50));
        let g2 = g.clone();
        let t = std::thread::spawn(move || g2.wait_current(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        g.set(true);
        let (current, waited) = t.join().expect("thread");
        assert!(current);
        assert!(waited < Duration::from_secs(5), "opened late: {waited:?}");
    }
}
