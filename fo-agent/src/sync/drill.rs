//! What a drill (`fo-agent drill`) carries over the sync channel: each node's
//! readiness per router, sent to the peers with every heartbeat (a `Ready` message),
//! and the forwarding timeline a drill asks its peer to record (`DrillRequest`,
//! `DrillReply`). Both ride the channel's key and replay guard like every datagram.
//!
//! ```text
//! Ready: header index bit 0 = the sender's NAT table is current (sync-then-claim would
//!   not wait), bit 1 = it is in sync with every peer (no snapshot outstanding, none
//!   unreachable); one slot per router:
//!   state (1 init, 2 backup, 3 master, 4 fault) | flags (bit 0: no fault source
//!   failing: gates, link, data plane, fence) | name length | name (32 bytes) | 0 0
//! DrillRequest: seq = first ms (unix ms), index = window length in ms, snapshot = id
//! DrillReply: snapshot = the request's id, seq = first ms, index = window length,
//!   total = the sampler's longest step (µs); slots = the client→backend bitmap then
//!   the backend→client (NAT reply) bitmap, ceil(ms / 8) bytes each, bit i = packets
//!   forwarded in ms i (least significant bit first); then 1 and the TCP resets the
//!   data plane counted over the window, client→VIP then backend→SNAT address (u64
//!   little-endian each; a build without them sends zeros there: not counted); then 2
//!   and the clients the data plane saw on an owned VIP: how many (u32), the median and
//!   the latest first packet (i32 ms from the window's start), how many are listed (u8),
//!   and the busiest of them [`BUSIEST`] at most: family (4 or 6) | address (16 bytes)
//!   | first packet (i32 ms) | packets (u32), all little-endian
//! ```
//!
//! The timelines of the two nodes are stamped with each node's CLOCK_REALTIME: on real
//! machines the blackout is as exact as NTP keeps the clocks together (a millisecond
//! or better on a LAN); in the lab both namespaces share one clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::codec::{MAX_RECORDS, RECORD_LEN, Slot};
use crate::dataplane::{Forwarded, ForwardedCount, MonoNanos};

/// Longest router name a Ready slot holds; longer names are not announced (a drill of
/// such a router is refused: the peer is never heard for it).
pub const NAME_MAX: usize = 32;
/// Longest window a timeline covers: its two bitmaps fill one datagram.
pub const MAX_WINDOW_MS: u32 = 4000;
const _: () =
    assert!(2 * (MAX_WINDOW_MS as usize).div_ceil(8) + RESETS_LEN <= MAX_RECORDS * RECORD_LEN);
/// Bytes of the resets after the bitmaps: a marker and two u64.
const RESETS_LEN: usize = 17;
/// The busiest clients a timeline lists.
pub const BUSIEST: usize = 5;
/// Bytes of the clients after the resets: a marker, the figures, and the busiest.
const CLIENTS_LEN: usize = 14 + BUSIEST * CLIENT_LEN;
const CLIENT_LEN: usize = 25;
const _: () = assert!(
    2 * (MAX_WINDOW_MS as usize).div_ceil(8) + RESETS_LEN + CLIENTS_LEN <= MAX_RECORDS * RECORD_LEN
);
/// A peer's readiness older than this is not taken (three heartbeats missed).
pub const READY_FRESH: Duration = Duration::from_millis(350);
/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_micros(500);

/// One router's readiness on a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterReady {
    pub router: String,
    /// "init", "backup", "master" or "fault".
    pub state: String,
    /// No fault source is failing (gates, link, data plane, fence).
    pub gates_open: bool,
}

/// A node's readiness, as its peers last heard it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReady {
    /// Its NAT table holds everything its peers sent (or the peers are unreachable).
    pub table_current: bool,
    /// It holds every peer's stream: no snapshot outstanding, no peer unreachable.
    pub in_sync: bool,
    pub routers: Vec<RouterReady>,
}

impl NodeReady {
    pub fn router(&self, name: &str) -> Option<&RouterReady> {
        self.routers.iter().find(|r| r.router == name)
    }
}

/// Where the sync reads this node's routers from (the agent sets it once VRRP runs).
pub type ReadySource = Arc<dyn Fn() -> Vec<RouterReady> + Send + Sync>;

const STATES: [&str; 4] = ["init", "backup", "master", "fault"];

/// The slots of a Ready message (routers with longer names than [`NAME_MAX`] left out).
pub fn ready_slots(routers: &[RouterReady]) -> Vec<Slot> {
    routers
        .iter()
        .filter(|r| r.router.len() <= NAME_MAX)
        .take(MAX_RECORDS)
        .map(|r| {
            let mut s = [0u8; RECORD_LEN];
            s[0] = STATES
                .iter()
                .position(|&n| n == r.state)
                .map_or(0, |i| i as u8 + 1);
            s[1] = u8::from(r.gates_open);
            s[2] = r.router.len() as u8;
            s[3..3 + r.router.len()].copy_from_slice(r.router.as_bytes());
            s
        })
        .collect()
}

/// A Ready message's readiness (`flags`: its header's index).
pub fn read_ready(flags: u32, slots: &[Slot]) -> NodeReady {
    let routers = slots
        .iter()
        .filter_map(|s| {
            let len = usize::from(s[2]).min(NAME_MAX);
            let router = std::str::from_utf8(&s[3..3 + len]).ok()?.to_string();
            let state = usize::from(s[0])
                .checked_sub(1)
                .and_then(|i| STATES.get(i))
                .copied()
                .unwrap_or("unknown")
                .to_string();
            Some(RouterReady {
                router,
                state,
                gates_open: s[1] & 1 == 1,
            })
        })
        .collect();
    NodeReady {
        table_current: flags & 1 == 1,
        in_sync: flags & 2 == 2,
        routers,
    }
}

/// Which milliseconds of a window a node forwarded packets in, per direction.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Timeline {
    pub start_unix_ms: u64,
    pub ms: u32,
    /// Client to backend.
    pub forward: Vec<u8>,
    /// Backend to client through NAT.
    pub reply: Vec<u8>,
    /// The sampler's longest step between two reads (the timeline's resolution).
    pub max_step_us: u32,
    /// The TCP resets the data plane counted over the window (`None`: a peer whose
    /// build does not count them).
    pub resets: Option<Resets>,
    /// The clients the data plane saw on an owned VIP over the window (`None`: a peer
    /// whose build does not record them).
    pub clients: Option<Clients>,
}

/// The clients whose packets reached a node's data plane for an owned VIP during a
/// drill's window; times in ms from the window's start (CLOCK_MONOTONIC of the
/// program, brought to the node's CLOCK_REALTIME).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients {
    pub seen: u32,
    /// The median and the latest first packet over every client seen.
    pub median_first_ms: i32,
    pub max_first_ms: i32,
    /// The clients with the most packets, most first ([`BUSIEST`] at most).
    pub busiest: Vec<Client>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client: std::net::IpAddr,
    pub first_ms: i32,
    pub packets: u32,
}

impl Clients {
    /// The figures of `seen` (address, first packet in ms from the window's start,
    /// packets).
    pub fn of(mut seen: Vec<(std::net::IpAddr, i32, u64)>) -> Clients {
        let mut firsts: Vec<i32> = seen.iter().map(|c| c.1).collect();
        firsts.sort_unstable();
        seen.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        Clients {
            seen: u32::try_from(firsts.len()).unwrap_or(u32::MAX),
            median_first_ms: firsts.get(firsts.len() / 2).copied().unwrap_or(0),
            max_first_ms: firsts.last().copied().unwrap_or(0),
            busiest: seen
                .into_iter()
                .take(BUSIEST)
                .map(|(client, first_ms, packets)| Client {
                    client,
                    first_ms,
                    packets: u32::try_from(packets).unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    fn put(&self, bytes: &mut Vec<u8>) {
        bytes.push(2);
        bytes.extend(self.seen.to_le_bytes());
        bytes.extend(self.median_first_ms.to_le_bytes());
        bytes.extend(self.max_first_ms.to_le_bytes());
        bytes.push(self.busiest.len().min(BUSIEST) as u8);
        for c in self.busiest.iter().take(BUSIEST) {
            let (addr, family) = fo_common::Addr::from_ip(c.client);
            bytes.push(family);
            bytes.extend(addr.bytes);
            bytes.extend(c.first_ms.to_le_bytes());
            bytes.extend(c.packets.to_le_bytes());
        }
    }

    fn get(b: &[u8]) -> Option<Clients> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        if b.first() != Some(&2) {
            return None;
        }
        let listed = usize::from(*b.get(13)?).min(BUSIEST);
        let busiest = (0..listed)
            .map(|i| {
                let at = 14 + i * CLIENT_LEN;
                let addr: [u8; 16] = b.get(at + 1..at + 17)?.try_into().ok()?;
                Some(Client {
                    client: fo_common::Addr { bytes: addr }.to_ip(*b.get(at)?),
                    first_ms: u32_at(at + 17)? as i32,
                    packets: u32_at(at + 21)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Clients {
            seen: u32_at(1)?,
            median_first_ms: u32_at(5)? as i32,
            max_first_ms: u32_at(9)? as i32,
            busiest,
        })
    }
}

/// TCP resets a node's data plane counted over a drill's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resets {
    /// Client to a VIP of this node (owned or draining).
    pub to_vip: u64,
    /// Backend to a SNAT address (NAT's reply path).
    pub from_backend: u64,
}

impl Timeline {
    fn new(start_unix_ms: u64, ms: u32) -> Timeline {
        let bytes = (ms as usize).div_ceil(8);
        Timeline {
            start_unix_ms,
            ms,
            forward: vec![0; bytes],
            reply: vec![0; bytes],
            max_step_us: 0,
            resets: None,
            clients: None,
        }
    }

    /// The slots of a DrillReply.
    pub fn slots(&self) -> Vec<Slot> {
        let mut bytes: Vec<u8> = self.forward.iter().chain(&self.reply).copied().collect();
        if let Some(r) = self.resets {
            bytes.push(1);
            bytes.extend(r.to_vip.to_le_bytes());
            bytes.extend(r.from_backend.to_le_bytes());
            if let Some(c) = &self.clients {
                c.put(&mut bytes);
            }
        }
        bytes
            .chunks(RECORD_LEN)
            .map(|c| {
                let mut s = [0u8; RECORD_LEN];
                s[..c.len()].copy_from_slice(c);
                s
            })
            .collect()
    }

    /// A DrillReply's timeline; `None` if the slots are too short for `ms`.
    pub fn read(start_unix_ms: u64, ms: u32, max_step_us: u32, slots: &[Slot]) -> Option<Timeline> {
        let mut t = Timeline::new(start_unix_ms, ms.min(MAX_WINDOW_MS));
        let bytes: Vec<u8> = slots.iter().flatten().copied().collect();
        let n = t.forward.len();
        if bytes.len() < 2 * n {
            return None;
        }
        t.forward.copy_from_slice(&bytes[..n]);
        t.reply.copy_from_slice(&bytes[n..2 * n]);
        t.max_step_us = max_step_us;
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        if bytes.len() >= 2 * n + RESETS_LEN && bytes[2 * n] == 1 {
            t.resets = Some(Resets {
                to_vip: u64_at(2 * n + 1),
                from_backend: u64_at(2 * n + 9),
            });
            t.clients = Clients::get(&bytes[2 * n + RESETS_LEN..]);
        }
        Some(t)
    }

    fn mark_range(bits: &mut [u8], range: std::ops::RangeInclusive<u64>) {
        for i in range {
            Self::mark(bits, i as usize);
        }
    }

    fn mark(bits: &mut [u8], i: usize) {
        if let Some(b) = bits.get_mut(i / 8) {
            *b |= 1 << (i % 8);
        }
    }

    pub fn forwarded(bits: &[u8], i: usize) -> bool {
        bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
}

/// Record this node's forwarding from `start_unix_ms` for `ms` milliseconds (blocking:
/// run it on a thread of its own). A counter that grew since the last read marks every
/// millisecond from that read to this one, so a silence found is one for sure (to
/// within the timeline's `max_step_us`). The data plane counts TCP resets on the VIPs
/// and records the clients meanwhile (the drill flag is set from the call to its end);
/// the timeline carries the resets of the window and the clients.
pub fn sample(
    counters: &mut Forwarded,
    start_unix_ms: u64,
    ms: u32,
) -> Result<Timeline, crate::dataplane::DataplaneError> {
    counters.clear_clients()?;
    counters.set_drill(true)?;
    let t = record(counters, start_unix_ms, ms);
    let off = counters.set_drill(false);
    let mut t = t?;
    off?;
    // bpf_ktime_get_ns is CLOCK_MONOTONIC: brought to the window's CLOCK_REALTIME
    // through one pair of readings of both clocks.
    let (mono, unix_us) = (MonoNanos::now().0, now_us());
    let start_us = start_unix_ms.saturating_mul(1000) as i64;
    let seen = counters
        .clients()?
        .into_iter()
        .map(|(client, s)| {
            let ago_us = (mono.saturating_sub(s.first_ns) / 1000) as i64;
            let first_ms = (unix_us as i64 - ago_us - start_us).div_euclid(1000);
            (client, first_ms as i32, s.packets)
        })
        .collect();
    t.clients = Some(Clients::of(seen));
    Ok(t)
}

fn record(
    counters: &Forwarded,
    start_unix_ms: u64,
    ms: u32,
) -> Result<Timeline, crate::dataplane::DataplaneError> {
    let ms = ms.min(MAX_WINDOW_MS);
    let mut t = Timeline::new(start_unix_ms, ms);
    let start_us = start_unix_ms.saturating_mul(1000);
    let end_us = start_us + u64::from(ms) * 1000;
    let mut last: Option<(u64, ForwardedCount)> = None;
    // The counts at the first read in the window.
    let mut first: Option<ForwardedCount> = None;
    loop {
        let now = now_us();
        if now >= end_us {
            break;
        }
        if now + 1000 < start_us {
            std::thread::sleep(Duration::from_micros(start_us - now - 1000));
            continue;
        }
        let c = counters.read()?;
        if now >= start_us {
            let f = *first.get_or_insert(c);
            t.resets = Some(Resets {
                to_vip: c.rst_to_vip.wrapping_sub(f.rst_to_vip),
                from_backend: c.rst_from_backend.wrapping_sub(f.rst_from_backend),
            });
        }
        if let Some((at, prev)) = last
            && now >= start_us
        {
            // Packets went somewhere in the step from the last read to this one: the
            // whole step counts as forwarding (a sampler that falls behind hides a
            // silence rather than makes one up).
            let steps = (at.max(start_us) - start_us) / 1000..=(now - start_us) / 1000;
            if c.forward != prev.forward {
                Timeline::mark_range(&mut t.forward, steps.clone());
            }
            if c.reply != prev.reply {
                Timeline::mark_range(&mut t.reply, steps);
            }
            let step = u32::try_from(now - at).unwrap_or(u32::MAX);
            t.max_step_us = t.max_step_us.max(step);
        }
        last = Some((now, c));
        std::thread::sleep(SAMPLE_EVERY);
    }
    Ok(t)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The longest run of milliseconds in which no timeline forwarded anything in the
/// direction `bits` picks, from the first millisecond any of them forwarded to the
/// last (idle before the first packet or after the last is not a blackout):
/// `(length ms, first ms of the run)`.
pub fn longest_silence<'a>(
    timelines: &'a [&'a Timeline],
    bits: impl Fn(&'a Timeline) -> &'a [u8],
) -> Option<(u32, u32)> {
    let ms = timelines.iter().map(|t| t.ms).min()?;
    let any = |i: u32| {
        timelines
            .iter()
            .any(|t| Timeline::forwarded(bits(t), i as usize))
    };
    let first = (0..ms).find(|&i| any(i))?;
    let last = (0..ms).rev().find(|&i| any(i))?;
    let (mut best, mut run_start) = ((0, first), None);
    for i in first..=last {
        if any(i) {
            if let Some(s) = run_start.take()
                && i - s > best.0
            {
                best = (i - s, s);
            }
        } else if run_start.is_none() {
            run_start = Some(i);
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_round_trips() {
        let routers = vec![
            RouterReady {
                router: "web".into(),
                state: "backup".into(),
                gates_open: true,
            },
            RouterReady {
                router: "db".into(),
                state: "fault".into(),
                gates_open: false,
            },
            RouterReady {
                router: "x".repeat(NAME_MAX + 1),
                state: "master".into(),
                gates_open: true,
            },
        ];
        let r = read_ready(3, &ready_slots(&routers));
        assert!(r.table_current && r.in_sync);
        assert_eq!(r.routers, routers[..2], "the over-long name is left out");
        let r = read_ready(1, &[]);
        assert!(r.table_current && !r.in_sync && r.routers.is_empty());
    }

    #[test]
    fn a_timeline_round_trips_through_its_slots() {
        let mut t = Timeline::new(1_700_000_000_000, MAX_WINDOW_MS);
        for i in [0, 7, 8, 1999, 3999] {
            Timeline::mark(&mut t.forward, i);
        }
        Timeline::mark(&mut t.reply, 42);
        t.max_step_us = 1234;
        let without = Timeline::read(t.start_unix_ms, t.ms, 1234, &t.slots()).expect("read");
        assert_eq!(without, t, "no resets: none read (an older peer)");
        t.resets = Some(Resets {
            to_vip: 3,
            from_backend: u64::MAX - 1,
        });
        let resets_only = Timeline::read(t.start_unix_ms, t.ms, 1234, &t.slots()).expect("read");
        assert_eq!(resets_only, t, "no clients: none read");
        let seen = (0..9u8)
            .map(|i| {
                (
                    std::net::IpAddr::from([10, 0, 0, i]),
                    i32::from(i) * 10 - 20,
                    u64::from(i),
                )
            })
            .chain([("2001:db8::7".parse().expect("v6"), 3999, 100)])
            .collect();
        t.clients = Some(Clients::of(seen));
        let c = t.clients.as_ref().expect("clients");
        assert_eq!((c.seen, c.median_first_ms, c.max_first_ms), (10, 30, 3999));
        assert_eq!(c.busiest.len(), BUSIEST);
        assert_eq!(c.busiest[0].client.to_string(), "2001:db8::7");
        assert_eq!((c.busiest[1].first_ms, c.busiest[1].packets), (60, 8));
        let slots = t.slots();
        assert!(slots.len() <= MAX_RECORDS);
        let back = Timeline::read(t.start_unix_ms, t.ms, 1234, &slots).expect("read");
        assert_eq!(back, t);
        assert_eq!(Timeline::read(0, MAX_WINDOW_MS, 0, &slots[..3]), None);
    }

    #[test]
    fn the_silence_is_where_neither_node_forwarded() {
        let mut a = Timeline::new(0, 100);
        let mut b = Timeline::new(0, 100);
        // A forwards until ms 39, B from ms 52 on; idle before 5 and after 90 is no blackout.
        for i in 5..40 {
            Timeline::mark(&mut a.forward, i);
        }
        for i in 52..=90 {
            Timeline::mark(&mut b.forward, i);
        }
        // A short overlap-free gap earlier: ms 20..22 silent on A only... filled by B.
        Timeline::mark(&mut b.forward, 3);
        let got = longest_silence(&[&a, &b], |t| &t.forward);
        assert_eq!(got, Some((12, 40)));
        assert_eq!(
            longest_silence(&[&a, &b], |t| &t.reply),
            None,
            "nothing forwarded"
        );
    }
}
