//! Connection-state sync of NAT connections between the nodes of a router.
//!
//! Every node streams the connections its data plane opens or closes (the program's
//! `NAT_EVENTS` ring buffer) and the ones its aging removes, batched every
//! [`FLUSH`], to its peers over UDP (`codec`), authenticated with the shared key. A
//! node installs what its peers send for VIPs it does not own (the master's table is
//! the truth) through `dataplane::nat::NatTable`. A node that starts, sees a lost
//! message, or sees a peer restart asks for a full snapshot (`peer`, `snapshot`).
//! The task itself is `task` (its loop; `task::send`, `task::receive`); `records` turns
//! map entries into wire records and back; `status` is what `fo-agent status` shows.
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
pub mod drill;
pub mod epoch;
pub mod guard;
pub mod peer;
mod records;
pub mod snapshot;
pub mod socket;
mod status;
mod task;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fo_common::{FlowKey, NatFlow};
use tokio::sync::mpsc;

use crate::dataplane::{NatEvents, SharedPlane};
use crate::locks::{Flag, lock};
use drill::{ReadySource, Timeline};
pub use records::{entries, record};
pub use status::{PeerStatus, SnapshotFigures, SyncStatus};

/// Longest time a connection event waits before it is sent.
pub const FLUSH: Duration = Duration::from_millis(10);
/// A heartbeat (the last sequence sent) this often, so a receiver notices a loss.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// What the agent keeps of the NAT connection-state sync.
#[derive(Clone)]
pub struct NatSync {
    table_current: Flag,
    status: Arc<Mutex<SyncStatus>>,
    /// Connections removed by aging, to be streamed as closed.
    pub removed: mpsc::Sender<Vec<(FlowKey, NatFlow)>>,
    ready_source: Arc<Mutex<Option<ReadySource>>>,
    asks: mpsc::Sender<TimelineAsk>,
}

/// A drill's request for a peer's forwarding timeline, and where the answer goes.
pub(crate) struct TimelineAsk {
    pub peer: IpAddr,
    pub start_unix_ms: u64,
    pub ms: u32,
    pub reply: tokio::sync::oneshot::Sender<Timeline>,
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

    /// Where the readiness this node sends its peers comes from (its routers).
    pub fn set_ready_source(&self, source: ReadySource) {
        *lock(&self.ready_source) = Some(source);
    }

    /// Ask `peer` to record its forwarding timeline from `start_unix_ms` for `ms`
    /// milliseconds and send it back; waits for it at most until `deadline`.
    pub async fn peer_timeline(
        &self,
        peer: IpAddr,
        start_unix_ms: u64,
        ms: u32,
        deadline: Duration,
    ) -> Result<Timeline, String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let ask = TimelineAsk {
            peer,
            start_unix_ms,
            ms,
            reply,
        };
        self.asks
            .send(ask)
            .await
            .map_err(|_| "the sync task has ended".to_string())?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(_)) => Err(format!("the sync could not ask {peer} (not heard yet)")),
            Err(_) => Err(format!(
                "{peer} did not send its timeline within {deadline:?}"
            )),
        }
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
    /// `[node] bpf_dir`: a drill's sampler reads the pinned counters there.
    pub bpf_dir: PathBuf,
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
    let (asks_tx, asks_rx) = mpsc::channel(4);
    let ready_source = Arc::new(Mutex::new(None));
    let start = task::Start {
        key,
        epoch,
        plane,
        table,
        status: status.clone(),
        table_current: table_current.clone(),
        ready_source: ready_source.clone(),
        asks: asks_rx,
    };
    let handle = task::spawn(cfg, start, placement, events, removed_rx);
    Ok((
        NatSync {
            table_current,
            status,
            removed: removed_tx,
            ready_source,
            asks: asks_tx,
        },
        handle,
    ))
}

fn unix_ms() -> u64 {
    crate::clock::unix_millis(SystemTime::now())
}
