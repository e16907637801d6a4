//! The drill's side of the sync task: this node's readiness sent every heartbeat, the
//! peers' kept, and forwarding timelines asked of a peer or recorded for one.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Task;
use crate::dataplane::Forwarded;
use crate::locks::lock;
use crate::sync::codec::{Header, Kind, Message};
use crate::sync::drill::{self, MAX_WINDOW_MS, ReadySource, Timeline};
use crate::sync::{HEARTBEAT, TimelineAsk, unix_ms};

/// A timeline asked for may start at most this far ahead of the receiver's clock.
const MAX_LEAD: Duration = Duration::from_secs(10);

pub(super) struct Drills {
    source: Arc<Mutex<Option<ReadySource>>>,
    bpf_dir: PathBuf,
    sampled: mpsc::UnboundedSender<Sampled>,
    last_ready: Instant,
    next_id: u64,
    /// Timelines asked of a peer, by id.
    asked: BTreeMap<u64, (IpAddr, oneshot::Sender<Timeline>)>,
    /// Peers a timeline is being recorded for (one at a time each).
    recording: HashSet<IpAddr>,
}

/// A timeline recorded for a peer.
pub(super) struct Sampled {
    peer: IpAddr,
    id: u64,
    timeline: Result<Timeline, String>,
}

impl Drills {
    pub(super) fn new(
        source: Arc<Mutex<Option<ReadySource>>>,
        bpf_dir: PathBuf,
        sampled: mpsc::UnboundedSender<Sampled>,
        now: Instant,
    ) -> Drills {
        Drills {
            source,
            bpf_dir,
            sampled,
            last_ready: now,
            next_id: 0,
            asked: BTreeMap::new(),
            recording: HashSet::new(),
        }
    }

    /// Whether this node's readiness is due to the peers (every heartbeat).
    pub(super) fn ready_due(&mut self, now: Instant) -> bool {
        let due = now.duration_since(self.last_ready) >= HEARTBEAT;
        if due {
            self.last_ready = now;
        }
        due
    }
}

impl Task {
    /// The peers whose epoch we know (they take what we send).
    fn heard_peers(&self) -> Vec<IpAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| p.guard.echo() != 0)
            .map(|(a, _)| *a)
            .collect()
    }

    pub(super) async fn send_ready(&mut self, sock: &tokio::net::UdpSocket) {
        let source = lock(&self.drill.source).clone();
        let routers = source.map(|f| f()).unwrap_or_default();
        let slots = drill::ready_slots(&routers);
        let in_sync = self.peers.values().all(|p| p.track.want.is_none());
        let h = Header {
            index: u32::from(self.table_current.get()) | (u32::from(in_sync) << 1),
            ..Default::default()
        };
        for p in self.heard_peers() {
            self.send_slots(sock, p, Kind::Ready, h, slots.clone())
                .await;
        }
    }

    pub(super) fn on_ready(&mut self, peer: IpAddr, m: &Message, now: Instant) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.ready = Some((now, drill::read_ready(m.header.index, &m.slots)));
        }
    }

    /// Send a drill's request; an unheard peer drops it (the asker hears why).
    pub(super) async fn ask_timeline(&mut self, sock: &tokio::net::UdpSocket, ask: TimelineAsk) {
        self.drill.asked.retain(|_, (_, tx)| !tx.is_closed());
        if !self.heard_peers().contains(&ask.peer) {
            return;
        }
        self.drill.next_id += 1;
        let id = self.drill.next_id;
        let h = Header {
            seq: ask.start_unix_ms,
            index: ask.ms,
            snapshot: id,
            ..Default::default()
        };
        if self
            .send_slots(sock, ask.peer, Kind::DrillRequest, h, Vec::new())
            .await
            .is_some()
        {
            self.drill.asked.insert(id, (ask.peer, ask.reply));
        }
    }

    /// A peer's drill asks for our timeline: recorded on a thread of its own.
    pub(super) fn on_drill_request(&mut self, peer: IpAddr, h: Header) {
        let lead = h.seq.saturating_sub(unix_ms());
        if lead > MAX_LEAD.as_millis() as u64 || h.index > MAX_WINDOW_MS {
            warn!(%peer, start = h.seq, ms = h.index, "sync: a drill timeline asked too far ahead or too long: ignored");
            return;
        }
        if !self.drill.recording.insert(peer) {
            warn!(%peer, "sync: a drill timeline is already being recorded for this peer: ignored");
            return;
        }
        info!(%peer, ms = h.index, "sync: recording the forwarding timeline for the peer's drill");
        let (dir, tx, id) = (
            self.drill.bpf_dir.clone(),
            self.drill.sampled.clone(),
            h.snapshot,
        );
        tokio::task::spawn_blocking(move || {
            let timeline = Forwarded::open(&dir)
                .and_then(|mut f| drill::sample(&mut f, h.seq, h.index))
                .map_err(|e| crate::dataplane::error_chain(&e));
            let _ = tx.send(Sampled { peer, id, timeline });
        });
    }

    pub(super) async fn send_timeline(&mut self, sock: &tokio::net::UdpSocket, s: Sampled) {
        self.drill.recording.remove(&s.peer);
        match s.timeline {
            Ok(t) => {
                let h = Header {
                    seq: t.start_unix_ms,
                    index: t.ms,
                    snapshot: s.id,
                    total: t.max_step_us,
                    ..Default::default()
                };
                self.send_slots(sock, s.peer, Kind::DrillReply, h, t.slots())
                    .await;
            }
            Err(e) => warn!(peer = %s.peer, error = %e, "sync: recording a drill timeline failed"),
        }
    }

    pub(super) fn on_drill_reply(&mut self, peer: IpAddr, m: &Message) {
        let h = m.header;
        if self
            .drill
            .asked
            .get(&h.snapshot)
            .is_none_or(|(p, _)| *p != peer)
        {
            return;
        }
        let Some((_, tx)) = self.drill.asked.remove(&h.snapshot) else {
            return;
        };
        match Timeline::read(h.seq, h.index, h.total, &m.slots) {
            Some(t) => {
                let _ = tx.send(t);
            }
            None => warn!(%peer, "sync: a drill timeline too short for its window: dropped"),
        }
    }
}
