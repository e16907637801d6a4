//! What the task receives: each datagram checked (key, version, replay guard), then
//! applied: Updates and snapshots installed in the NAT table, snapshot requests served,
//! acknowledgements counted.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::{MAX_RESERVE, REFUSAL_LOG_EVERY, Task};
use crate::dataplane::MonoNanos;
use crate::sync::SnapshotFigures;
use crate::sync::codec::{self, Header, Kind, Op, Record};
use crate::sync::guard::Refusal;
use crate::sync::peer::{self, Chunk, End, Verdict};
use crate::sync::records::entries;
use crate::sync::snapshot::{self, Outgoing, RateLimit};
use crate::sync::unix_ms;

/// The reason a datagram that failed to decode is refused for.
fn refusal_of(e: &codec::DecodeError) -> Refusal {
    use codec::DecodeError as D;
    match e {
        D::Short { .. } | D::Magic | D::Auth => Refusal::Auth,
        D::Version { .. } => Refusal::Version,
        D::Kind(_)
        | D::Length { .. }
        | D::Op(_)
        | D::TooMany(_)
        | D::Payload(_)
        | D::Family
        | D::Record6 => Refusal::Malformed,
    }
}

impl Task {
    pub(super) fn refuse(
        &mut self,
        peer: Option<IpAddr>,
        why: Refusal,
        detail: impl FnOnce() -> String,
    ) {
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

    pub(super) async fn receive(
        &mut self,
        sock: &tokio::net::UdpSocket,
        d: &[u8],
        from: SocketAddr,
    ) {
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
            self.refuse(Some(ip), why, || {
                let detail = match why {
                    Refusal::ClockSkew => format!(
                        " sent at {} ms, our clock {now_ms} ms: more than max_clock_skew {max_skew:?} apart (synchronise the clocks, NTP)",
                        h.sent_unix_ms
                    ),
                    Refusal::OldEpoch => format!(
                        " of the peer's epoch {}, older than its epoch {known} (a replay, or its epoch file was reset with its clock behind)",
                        h.epoch
                    ),
                    Refusal::Unverified => format!(
                        " echoes our epoch as {}, ours is {mine} (the handshake after a restart, or a replay)",
                        h.echo
                    ),
                    Refusal::Replay => {
                        format!(" with counter {} was seen before (a replay)", h.counter)
                    }
                    _ => String::new(),
                };
                format!("{}{detail}", m.kind.name())
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
                            .map(|r| r.vip)
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
            Kind::Ready => self.on_ready(ip, &m, now),
            Kind::DrillRequest => self.on_drill_request(ip, m.header),
            Kind::DrillReply => self.on_drill_reply(ip, &m),
        }
        self.publish();
    }

    /// Install or remove the records' connections, except for VIPs we own; a
    /// snapshot's are remembered (stale ones are removed after its end).
    pub(super) fn apply(&mut self, peer: IpAddr, records: &[Record], snapshot: bool) {
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
            if owned.contains_key(&r.vip) {
                continue;
            }
            let slot = slots
                .get(&(r.vip, r.vip_port, r.proto, r.backend, r.backend_port))
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
    pub(super) fn finish_snapshot(
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
}
