//! What the sync shows in `status` and metrics.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

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
    /// The peer's readiness per router, from its last `Ready` message; `None` when
    /// none came within [`READY_FRESH`](super::drill::READY_FRESH).
    #[serde(default)]
    pub ready: Option<super::drill::NodeReady>,
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

impl PeerStatus {
    pub(super) fn new(address: IpAddr) -> Self {
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
            ready: None,
        }
    }
}
