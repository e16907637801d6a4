//! The NAT connection table from the agent's side: aging (the program only records
//! state and last-seen time), flows installed by the connection-state sync, and
//! reading the table for status and snapshots.
//!
//! The table is three pairs of maps: the connections (`NAT_FWD`, `NAT_REV`) and the
//! UDP flows (`NAT_UDP_FWD`, `NAT_UDP_REV`, a quarter of the size: UDP's proof of a
//! live client is weak, so a UDP flood must not take TCP's place), which the sync
//! carries, and the embryonic ones that have not proved their client yet
//! (`NAT_EMBRYO_FWD`, `NAT_EMBRYO_REV`, LRU), which stay local to this node.
//!
//! Aging removes the client-side entry first and the reply-side entry (the SNAT port
//! reservation) last, so a port is free again only once nothing refers to it.

use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap, MapData, MapError};
use fo_common::{
    FlowKey, NAT_TCP_CLOSED, NAT_TCP_ESTABLISHED, NAT_TCP_FIN, NAT_TCP_SYN, NAT_UDP, NatFlow,
    PROTO_UDP,
};

use super::{Dataplane, MonoNanos, Result, found, map_err};

/// How long a NAT connection lives after its last packet, by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeouts {
    pub syn: Duration,
    pub established: Duration,
    pub fin: Duration,
    pub closed: Duration,
    pub udp: Duration,
}

impl Default for NatTimeouts {
    fn default() -> Self {
        (&fo_config::NatTimeouts::default()).into()
    }
}

impl From<&fo_config::NatTimeouts> for NatTimeouts {
    fn from(c: &fo_config::NatTimeouts) -> Self {
        NatTimeouts {
            syn: c.syn,
            established: c.established,
            fin: c.fin,
            closed: c.closed,
            udp: c.udp,
        }
    }
}

impl NatTimeouts {
    pub fn of(&self, state: u8) -> Duration {
        match state {
            NAT_TCP_SYN => self.syn,
            NAT_TCP_ESTABLISHED => self.established,
            NAT_TCP_FIN => self.fin,
            NAT_TCP_CLOSED => self.closed,
            NAT_UDP => self.udp,
            _ => self.closed,
        }
    }
}

/// Has `flow` outlived its state's timeout at `now`? Times before `floor` count as
/// `floor`: a node that just became master ages synced flows from its takeover, not
/// from when the old master last saw them.
pub fn expired(flow: &NatFlow, now: MonoNanos, floor: MonoNanos, timeouts: &NatTimeouts) -> bool {
    let last = flow.last_seen_ns.max(floor.0);
    now.0.saturating_sub(last)
        > u64::try_from(timeouts.of(flow.state).as_nanos()).unwrap_or(u64::MAX)
}

/// A NAT connection's state name, for status output.
pub fn state_name(state: u8) -> &'static str {
    match state {
        NAT_TCP_SYN => "syn",
        NAT_TCP_ESTABLISHED => "established",
        NAT_TCP_FIN => "fin",
        NAT_TCP_CLOSED => "closed",
        NAT_UDP => "udp",
        _ => "unknown",
    }
}

/// Handles of their own on the pinned NAT maps, so that aging and the sync walk the
/// table without holding the data plane's lock (which the lease refresh needs).
pub struct NatTable {
    fwd: HashMap<MapData, FlowKey, NatFlow>,
    rev: HashMap<MapData, FlowKey, FlowKey>,
    udp_fwd: HashMap<MapData, FlowKey, NatFlow>,
    udp_rev: HashMap<MapData, FlowKey, FlowKey>,
    embryo_fwd: HashMap<MapData, FlowKey, NatFlow>,
    embryo_rev: HashMap<MapData, FlowKey, FlowKey>,
}

/// Which pair of maps of the NAT table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pair {
    /// `NAT_FWD`, `NAT_REV`: TCP connections.
    Connections,
    /// `NAT_UDP_FWD`, `NAT_UDP_REV`.
    Udp,
    /// `NAT_EMBRYO_FWD`, `NAT_EMBRYO_REV`.
    Embryonic,
}

impl Pair {
    /// The pair that holds an established connection of `proto`.
    fn of(proto: u8) -> Pair {
        if proto == PROTO_UDP {
            Pair::Udp
        } else {
            Pair::Connections
        }
    }

    /// Whether the sync carries this pair's connections.
    fn synced(self) -> bool {
        self != Pair::Embryonic
    }
}

type FwdMap = HashMap<MapData, FlowKey, NatFlow>;
type RevMap = HashMap<MapData, FlowKey, FlowKey>;

/// One count of the NAT table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatCounts {
    /// Connections by state (`NAT_TCP_*`, `NAT_UDP`), embryonic ones included.
    pub by_state: std::collections::BTreeMap<u8, u64>,
    /// Of those, the UDP flows (in `NAT_UDP_FWD`).
    pub udp: u64,
    /// Of those, the embryonic ones (in `NAT_EMBRYO_FWD`).
    pub embryonic: u64,
}

impl NatCounts {
    /// Connections in `NAT_FWD` (TCP, past their handshake): the table
    /// `nat_table_size` bounds.
    pub fn connections(&self) -> u64 {
        self.by_state.values().sum::<u64>() - self.udp - self.embryonic
    }
}

impl Dataplane {
    /// The NAT table, through new handles on its pinned maps.
    pub fn nat_table(&self) -> Result<NatTable> {
        NatTable::open(&self.pin_dir)
    }

    /// The ring buffer of new/closed connection events, for the sync task (once).
    pub fn take_nat_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.maps.nat_events.take()
    }
}

impl NatTable {
    pub fn open(pin_dir: &Path) -> Result<Self> {
        /// The pinned map `name`, as the typed handle `T`.
        fn open<T>(pin_dir: &Path, name: &'static str) -> Result<T>
        where
            T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
        {
            let data = MapData::from_pin(pin_dir.join(name)).map_err(map_err(name))?;
            aya::maps::Map::from_map_data(data)
                .map_err(map_err(name))?
                .try_into()
                .map_err(map_err(name))
        }
        Ok(NatTable {
            fwd: open(pin_dir, "NAT_FWD")?,
            rev: open(pin_dir, "NAT_REV")?,
            udp_fwd: open(pin_dir, "NAT_UDP_FWD")?,
            udp_rev: open(pin_dir, "NAT_UDP_REV")?,
            embryo_fwd: open(pin_dir, "NAT_EMBRYO_FWD")?,
            embryo_rev: open(pin_dir, "NAT_EMBRYO_REV")?,
        })
    }

    /// Every NAT connection, TCP and UDP (not the embryonic ones): the client's
    /// 5-tuple and its translation.
    pub fn flows(&self) -> Result<Vec<(FlowKey, NatFlow)>> {
        let mut all = self.fold(Pair::Connections, |v: &mut Vec<_>, k, f| v.push((k, f)))?;
        all.extend(self.fold(Pair::Udp, |v: &mut Vec<_>, k, f| v.push((k, f)))?);
        Ok(all)
    }

    /// Every embryonic connection (opened, not yet proved its client).
    pub fn embryonic(&self) -> Result<Vec<(FlowKey, NatFlow)>> {
        self.fold(Pair::Embryonic, |v: &mut Vec<_>, k, f| v.push((k, f)))
    }

    /// How many connections are in each state (`NAT_TCP_*`, `NAT_UDP`), embryonic ones
    /// included, counted as the table is read.
    pub fn count_by_state(&self) -> Result<std::collections::BTreeMap<u8, u64>> {
        Ok(self.counts()?.by_state)
    }

    /// How many connections are in each state, UDP flows and embryonic ones included,
    /// and how many of them are UDP flows and embryonic (their own maps, not
    /// `NAT_FWD`), counted as the table is read.
    pub fn counts(&self) -> Result<NatCounts> {
        let count = |counts: &mut std::collections::BTreeMap<u8, u64>, _, f: NatFlow| {
            *counts.entry(f.state).or_default() += 1
        };
        let mut by_state = self.fold(Pair::Connections, count)?;
        let (mut udp, mut embryonic) = (0, 0);
        for (pair, of_pair) in [(Pair::Udp, &mut udp), (Pair::Embryonic, &mut embryonic)] {
            for (state, n) in self.fold(pair, count)? {
                *by_state.entry(state).or_default() += n;
                *of_pair += n;
            }
        }
        Ok(NatCounts {
            by_state,
            udp,
            embryonic,
        })
    }

    /// Every connection handed to `add`, into a `T` started empty.
    ///
    /// Read with BPF_MAP_LOOKUP_BATCH: aging walks the table every second, and one
    /// lookup per entry took about 4 µs (2.2 s for 600,000 connections); falls back to
    /// that, from an empty `T` again, where the kernel has no batch operations on hash
    /// maps.
    fn fold<T: Default>(&self, pair: Pair, add: impl Fn(&mut T, FlowKey, NatFlow)) -> Result<T> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        let (map, name) = self.fwd_of(pair);
        let mut out = T::default();
        let walked = super::batch::walk_hash(map.map().fd().as_fd(), |k, f| add(&mut out, k, f));
        if let Err(e) = walked {
            super::BATCH_FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(error = %e, map = name, "NAT batch lookup failed: walking it entry by entry");
            out = T::default();
            for r in map.iter() {
                let (k, f) = r.map_err(map_err(name))?;
                add(&mut out, k, f);
            }
        }
        Ok(out)
    }

    fn fwd_of(&self, pair: Pair) -> (&FwdMap, &'static str) {
        match pair {
            Pair::Connections => (&self.fwd, "NAT_FWD"),
            Pair::Udp => (&self.udp_fwd, "NAT_UDP_FWD"),
            Pair::Embryonic => (&self.embryo_fwd, "NAT_EMBRYO_FWD"),
        }
    }

    fn rev_of(&self, pair: Pair) -> (&RevMap, &'static str) {
        match pair {
            Pair::Connections => (&self.rev, "NAT_REV"),
            Pair::Udp => (&self.udp_rev, "NAT_UDP_REV"),
            Pair::Embryonic => (&self.embryo_rev, "NAT_EMBRYO_REV"),
        }
    }

    /// One NAT connection by the client's 5-tuple, embryonic or not.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<NatFlow>> {
        match self.flow_in(Pair::of(key.proto), key)? {
            Some(f) => Ok(Some(f)),
            None => self.flow_in(Pair::Embryonic, key),
        }
    }

    /// Is the connection of `key` embryonic (opened, not yet proved its client)?
    pub fn is_embryonic(&self, key: &FlowKey) -> Result<bool> {
        Ok(self.flow_in(Pair::Embryonic, key)?.is_some())
    }

    fn flow_in(&self, pair: Pair, key: &FlowKey) -> Result<Option<NatFlow>> {
        let (map, name) = self.fwd_of(pair);
        found(name, map.get(key, 0))
    }

    /// The client 5-tuple a reply tuple maps to (the SNAT port's owner), embryonic
    /// or not.
    pub fn reverse(&self, reply: &FlowKey) -> Result<Option<FlowKey>> {
        match self.reverse_in(Pair::of(reply.proto), reply)? {
            Some(k) => Ok(Some(k)),
            None => self.reverse_in(Pair::Embryonic, reply),
        }
    }

    fn reverse_in(&self, pair: Pair, reply: &FlowKey) -> Result<Option<FlowKey>> {
        let (map, name) = self.rev_of(pair);
        found(name, map.get(reply, 0))
    }

    /// Install a connection (from the sync): the reply side first, so the program
    /// never sees a client entry whose port is not reserved. An existing entry of the
    /// same connection is replaced; a different connection that holds the reply tuple
    /// is removed first (the master's table is the truth).
    ///
    /// The replaced entry's sequence tracking is not kept: the sync installs only
    /// connections of VIPs this node does not own, which the program does not touch,
    /// so an entry here carries either nothing or what this node tracked while it was
    /// master before, since moved on at the peer. Kept, those stale numbers would
    /// count as a tracked handshake and put every genuine segment outside the window;
    /// zero is picked up afresh (`fo_common::nat::tcp_track`).
    pub fn put(&mut self, key: &FlowKey, flow: &NatFlow) -> Result<()> {
        let pair = Pair::of(key.proto);
        let rev = flow.reverse_key(key);
        if let Some(owner) = self.reverse_in(pair, &rev)?
            && owner != *key
            && let Some(other) = self.flow_in(pair, &owner)?
        {
            self.remove(&owner, &other)?;
        }
        if let Some(old) = self.flow_in(pair, key)?
            && old.reverse_key(key) != rev
        {
            self.remove(key, &old)?;
        }
        let (rev_map, fwd_map, names) = match pair {
            Pair::Udp => (
                &mut self.udp_rev,
                &mut self.udp_fwd,
                ("NAT_UDP_REV", "NAT_UDP_FWD"),
            ),
            _ => (&mut self.rev, &mut self.fwd, ("NAT_REV", "NAT_FWD")),
        };
        rev_map.insert(&rev, key, 0).map_err(map_err(names.0))?;
        fwd_map.insert(key, flow, 0).map_err(map_err(names.1))
    }

    /// Remove a connection: client side first, then its port reservation.
    pub fn remove(&mut self, key: &FlowKey, flow: &NatFlow) -> Result<()> {
        self.remove_in(Pair::of(key.proto), key, flow)
    }

    fn remove_in(&mut self, pair: Pair, key: &FlowKey, flow: &NatFlow) -> Result<()> {
        let (fwd, rev_map, names) = match pair {
            Pair::Connections => (&mut self.fwd, &mut self.rev, ("NAT_FWD", "NAT_REV")),
            Pair::Udp => (
                &mut self.udp_fwd,
                &mut self.udp_rev,
                ("NAT_UDP_FWD", "NAT_UDP_REV"),
            ),
            Pair::Embryonic => (
                &mut self.embryo_fwd,
                &mut self.embryo_rev,
                ("NAT_EMBRYO_FWD", "NAT_EMBRYO_REV"),
            ),
        };
        match fwd.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(map_err(names.0)(e)),
        }
        let rev = flow.reverse_key(key);
        // Only if the reservation is still this connection's.
        let owner = match rev_map.get(&rev, 0) {
            Ok(v) => Some(v),
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(map_err(names.1)(e)),
        };
        if owner == Some(*key) {
            match rev_map.remove(&rev) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(names.1)(e)),
            }
        }
        Ok(())
    }

    /// Remove every connection that `floor_of` names a floor for (its VIP is owned
    /// here, since then) and that is expired at `now`; returns what was removed from
    /// the connections (embryonic ones go silently: no peer knows them). An entry is
    /// read again just before removal, so a packet that refreshed it meanwhile keeps
    /// it.
    pub fn expire(
        &mut self,
        now: MonoNanos,
        floor_of: impl Fn(&FlowKey) -> Option<MonoNanos>,
        timeouts: &NatTimeouts,
    ) -> Result<Vec<(FlowKey, NatFlow)>> {
        let mut removed = Vec::new();
        for pair in [Pair::Connections, Pair::Udp, Pair::Embryonic] {
            let listed = self.fold(pair, |v: &mut Vec<_>, k, f| v.push((k, f)))?;
            for (key, flow) in listed {
                let Some(floor) = floor_of(&key) else {
                    continue;
                };
                if !expired(&flow, now, floor, timeouts) {
                    continue;
                }
                match self.flow_in(pair, &key)? {
                    Some(current) if expired(&current, now, floor, timeouts) => {
                        self.remove_in(pair, &key, &current)?;
                        if pair.synced() {
                            removed.push((key, current));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(state: u8, last_seen_ns: u64) -> NatFlow {
        NatFlow {
            state,
            last_seen_ns,
            ..Default::default()
        }
    }

    #[test]
    fn each_state_ages_with_its_own_timeout() {
        let t = NatTimeouts::default();
        let s = 1_000_000_000u64;
        let now = MonoNanos(10_000 * s);
        let zero = MonoNanos(0);
        assert!(!expired(
            &flow(NAT_TCP_ESTABLISHED, now.0 - 3000 * s),
            now,
            zero,
            &t
        ));
        assert!(expired(
            &flow(NAT_TCP_ESTABLISHED, now.0 - 3601 * s),
            now,
            zero,
            &t
        ));
        assert!(expired(
            &flow(NAT_TCP_CLOSED, now.0 - 11 * s),
            now,
            zero,
            &t
        ));
        assert!(!expired(
            &flow(NAT_TCP_CLOSED, now.0 - 9 * s),
            now,
            zero,
            &t
        ));
        assert!(expired(&flow(NAT_TCP_FIN, now.0 - 61 * s), now, zero, &t));
        assert!(expired(&flow(NAT_TCP_SYN, now.0 - 31 * s), now, zero, &t));
        assert!(expired(&flow(NAT_UDP, now.0 - 61 * s), now, zero, &t));
        assert!(!expired(&flow(NAT_UDP, now.0 - 59 * s), now, zero, &t));
    }

    #[test]
    fn a_new_master_ages_synced_flows_from_its_takeover() {
        let t = NatTimeouts::default();
        let s = 1_000_000_000u64;
        let now = MonoNanos(10_000 * s);
        // Last seen by the old master long ago, taken over 5 s ago: kept.
        let old = flow(NAT_TCP_CLOSED, 0);
        assert!(!expired(&old, now, MonoNanos(now.0 - 5 * s), &t));
        assert!(expired(&old, now, MonoNanos(now.0 - 11 * s), &t));
    }
}
