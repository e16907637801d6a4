//! What the task sends: Updates, heartbeats, snapshot requests, and the snapshots it
//! serves (walked on a blocking thread, sent within the receiver's window).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use super::{Task, Walked};
use crate::dataplane::MonoNanos;
use crate::sync::codec::{self, Header, Kind, MAX_RECORDS, Message, Op, Record, Slot};
use crate::sync::records::{owns, record};
use crate::sync::snapshot::Outgoing;
use crate::sync::unix_ms;

impl Task {
    /// Encode and send one datagram to `peer`; returns its counter (the id of a
    /// SnapshotRequest) if it went out.
    pub(super) async fn send(
        &mut self,
        sock: &tokio::net::UdpSocket,
        peer: IpAddr,
        kind: Kind,
        header: Header,
        records: Vec<Record>,
    ) -> Option<u64> {
        let m = Message {
            kind,
            header,
            records,
            slots: Vec::new(),
        };
        self.send_message(sock, peer, m).await
    }

    /// As `send`, for the kinds that carry slots (Ready, the drill's messages).
    pub(super) async fn send_slots(
        &mut self,
        sock: &tokio::net::UdpSocket,
        peer: IpAddr,
        kind: Kind,
        header: Header,
        slots: Vec<Slot>,
    ) -> Option<u64> {
        let m = Message {
            kind,
            header,
            records: Vec::new(),
            slots,
        };
        self.send_message(sock, peer, m).await
    }

    async fn send_message(
        &mut self,
        sock: &tokio::net::UdpSocket,
        peer: IpAddr,
        mut m: Message,
    ) -> Option<u64> {
        self.counter += 1;
        let header = &mut m.header;
        header.epoch = self.epoch;
        header.counter = self.counter;
        header.echo = self.peers.get(&peer).map_or(0, |p| p.guard.echo());
        header.sent_unix_ms = unix_ms();
        let header = *header;
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
    pub(super) async fn update(
        &mut self,
        sock: &tokio::net::UdpSocket,
        seq: u64,
        records: Vec<Record>,
    ) {
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
    pub(super) async fn heartbeats(&mut self, sock: &tokio::net::UdpSocket, only_snapshots: bool) {
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
    pub(super) async fn ask_snapshot(&mut self, sock: &tokio::net::UdpSocket, peer: IpAddr) {
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

    /// Walk the table for a snapshot to `peer` on a blocking thread; the result
    /// comes back through `walked`.
    pub(super) fn walk(&mut self, peer: IpAddr, id: u64) {
        let owned = self.plane.lock().owned_since();
        let table = self.plane.lock().dp.nat_table();
        // IPv6 VIPs are named only if they have NAT66 services: an agent older than
        // NAT66 refuses a datagram with an IPv6 record, and a DSR VIP has no connection
        // state a snapshot could cover, so a pair with IPv6 DSR VIPs keeps syncing
        // across a rolling upgrade.
        let nat6: BTreeSet<IpAddr> = {
            let p = self.plane.lock();
            owned
                .keys()
                .filter(|v| v.is_ipv6() && p.dp.has_nat(**v))
                .copied()
                .collect()
        };
        if let Some(out) = self.peers.get_mut(&peer).and_then(|p| p.out.as_mut()) {
            // One SnapshotEnd's worth of slots: IPv4 VIPs first (the map's order),
            // then IPv6 ones (NAT66), three slots each.
            let mut slots = 0;
            out.owns = owned
                .keys()
                .filter(|v| v.is_ipv4() || nat6.contains(*v))
                .map(|v| owns(*v))
                .take_while(|r| {
                    slots += r.slots();
                    slots <= MAX_RECORDS
                })
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

    pub(super) fn walked(&mut self, w: Walked) {
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
                out.set_records(r);
            }
            Err(e) => {
                warn!(peer = %w.peer, error = %e, "reading the NAT table for a snapshot");
                p.out = None;
            }
        }
    }

    /// Send what the snapshots' windows allow; end those fully sent and release the
    /// Updates held meanwhile.
    pub(super) async fn pump(&mut self, sock: &tokio::net::UdpSocket) {
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
}
