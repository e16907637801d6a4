//! Full NAT (`mode = "nat"`): the layouts of the NAT maps, the TCP tracking that
//! ages connections and guards them against spoofed RSTs and FINs, and incremental
//! checksum arithmetic. Pure, so the agent and the tests use the very code the XDP
//! program runs.
//!
//! A NAT connection has two entries, written together:
//! - `NAT_FWD`: the client's 5-tuple (client -> VIP:port) -> [`NatFlow`];
//! - `NAT_REV`: the reply's 5-tuple as it arrives (backend:bport -> SNAT:sport) ->
//!   the client's 5-tuple (a [`FlowKey`]).
//!
//! The reverse entry *is* the SNAT port reservation: the program allocates a port by
//! inserting it with `BPF_NOEXIST`, so two connections can never share a reply tuple,
//! and a port is free again only once the agent's aging removed the entry.
//!
//! A new connection starts in the embryonic pair of maps (`NAT_EMBRYO_FWD`,
//! `NAT_EMBRYO_REV`, LRU hashes of a quarter of the table's size) and moves to the
//! pair above once it proved that the client receives replies: a TCP client that
//! acknowledged the backend's SYN-ACK exactly, a UDP client that sent again after a
//! reply. A flood of spoofed SYNs or datagrams only churns the embryonic maps (the
//! oldest unproven connection goes first, as conntrack's early drop), while
//! established connections and the ones completing their handshake keep their place.

use core::mem::size_of;

use crate::maps::{Addr, FlowKey};

/// Most SNAT addresses of one service (its router's `snat` list).
pub const NAT_MAX_SNAT: usize = 4;
/// Lowest and highest SNAT port. SNAT addresses are dedicated (no kernel socket owns
/// them on the LB), so the whole unprivileged range is ours.
pub const NAT_PORT_MIN: u16 = 1024;
pub const NAT_PORT_MAX: u16 = 65535;
/// Port candidates the program tries for a new connection before giving up
/// (`nat_ports_exhausted`). Each is a different hash of the 5-tuple.
pub const NAT_PORT_TRIES: u32 = 8;

/// `NatFlow::state`.
pub const NAT_TCP_SYN: u8 = 1;
pub const NAT_TCP_ESTABLISHED: u8 = 2;
/// A FIN was seen (either direction): the connection is closing.
pub const NAT_TCP_FIN: u8 = 3;
/// An RST was seen: the connection is over.
pub const NAT_TCP_CLOSED: u8 = 4;
pub const NAT_UDP: u8 = 5;

/// TCP header flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Value of `NAT_SERVICES` (array indexed by service slot), written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatService {
    /// SNAT addresses of the service's router; the first `snat_count` are used.
    pub snat: [Addr; NAT_MAX_SNAT],
    pub snat_count: u32,
    pub port_min: u16,
    pub port_max: u16,
}
const _: () = assert!(size_of::<NatService>() == 72);

/// Value of `NAT_FWD` and `NAT_EMBRYO_FWD`: how one client connection is translated.
/// Written by the program (new connection, state, sequence tracking, last seen) and by
/// the agent (synced from a peer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatFlow {
    pub backend: Addr,
    pub snat: Addr,
    /// Source MAC of the client's frames (the client, or the router in front of us):
    /// where replies go when the kernel has no neighbour entry for the client.
    pub client_mac: [u8; 6],
    pub backend_port_be: u16,
    pub snat_port_be: u16,
    /// `NAT_TCP_*` or `NAT_UDP`.
    pub state: u8,
    pub _pad: u8,
    /// Backend slot for the per-backend counters; `u32::MAX` when unknown.
    pub backend_slot: u32,
    /// `bpf_ktime_get_ns` of the last packet (either direction), at most
    /// [`NAT_TOUCH_NS`] stale.
    pub last_seen_ns: u64,
    /// What each direction sent, as seen here ([`NAT_CLIENT`], [`NAT_BACKEND`]): the
    /// window an RST or FIN must fall in. All zero (nothing known) for a connection
    /// installed by the sync: it is picked up from the next segments.
    pub seq: [NatSeq; 2],
}
const _: () = assert!(size_of::<NatFlow>() == 88);

/// Index of the client's and the backend's side in [`NatFlow::seq`].
pub const NAT_CLIENT: usize = 0;
pub const NAT_BACKEND: usize = 1;

/// One direction of a TCP connection as this node saw it, in the sender's terms
/// (RFC 9293): all sequence numbers in host order. For UDP only `flags` is used
/// ([`NAT_SEQ_END`]: that side sent a datagram).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatSeq {
    /// The highest sequence number sent, plus one (the sender's SND.NXT).
    pub end: u32,
    /// The highest acknowledgment number sent (the sender's RCV.NXT).
    pub ack: u32,
    /// The largest window advertised, in bytes (scaled), as conntrack's `td_maxwin`:
    /// a window that shrank leaves the data already in flight inside.
    pub win: u32,
    /// Window scale (RFC 7323) of the sender's SYN; meaningful with [`NAT_SEQ_WS`].
    pub wscale: u8,
    /// `NAT_SEQ_*`.
    pub flags: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<NatSeq>() == 16);

/// `NatSeq::flags`: `end` is known.
pub const NAT_SEQ_END: u8 = 1;
/// `NatSeq::flags`: `ack` is known.
pub const NAT_SEQ_ACK: u8 = 2;
/// `NatSeq::flags`: this side's SYN was seen here (so its window scale is known).
pub const NAT_SEQ_SYN: u8 = 4;
/// `NatSeq::flags`: this side's SYN carried a window scale option.
pub const NAT_SEQ_WS: u8 = 8;

/// Window scale assumed when the handshake was not seen here (a synced connection):
/// the largest RFC 7323 allows, so no genuine segment falls outside the window.
pub const NAT_WSCALE_MAX: u8 = 14;

/// The program refreshes `last_seen_ns` only when it is older than this, so an
/// established connection does not write its entry on every packet.
pub const NAT_TOUCH_NS: u64 = 250_000_000;

impl NatFlow {
    /// The key of this connection's `NAT_REV` entry, given its `NAT_FWD` key.
    pub fn reverse_key(&self, fwd: &FlowKey) -> FlowKey {
        FlowKey {
            src: self.backend,
            dst: self.snat,
            sport_be: self.backend_port_be,
            dport_be: self.snat_port_be,
            proto: fwd.proto,
            family: fwd.family,
            _pad: [0; 2],
        }
    }
}

/// The fields of a TCP segment the tracking reads, host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeg {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent (unscaled).
    pub win: u16,
    /// Payload bytes.
    pub len: u32,
    /// Window scale option of a SYN; `None` without one (or on other segments).
    pub wscale: Option<u8>,
}

/// What a segment did to its connection ([`tcp_track`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpStep {
    /// The next `NAT_TCP_*` state.
    pub state: u8,
    /// This segment completed the three-way handshake: the client acknowledged the
    /// backend's SYN-ACK exactly, which a client spoofing its address cannot do.
    pub established: bool,
    /// An RST or FIN that changed nothing (see [`tcp_track`]); counted.
    pub ignored: bool,
}

/// `a` comes before `b` in sequence space (RFC 9293 §3.4, modulo 2^32).
#[inline(always)]
pub const fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Track one TCP segment of a connection in `state`, sent by the client
/// (`from_client`) or the backend: update that direction's [`NatSeq`] and return the
/// next state. The rules, after conntrack's window tracking and RFC 5961:
///
/// - An RST closes only when its sequence number is exactly what its receiver
///   expects next: the highest ACK the receiver sent, or, on a connection whose
///   handshake was tracked here, the highest sequence the sender sent (data in
///   flight). In the SYN state, an RST that acknowledges the client's SYN exactly (a
///   refused connection) closes too. Any other RST is `ignored`: it is still
///   forwarded, and an endpoint that follows RFC 5961 answers it with a challenge
///   ACK, to which the real peer, if its connection is gone, replies with an RST that
///   closes here.
/// - A FIN moves to closing only inside the window of its direction: at or after the
///   receiver's last ACK, and no further than the largest window the receiver
///   advertised. On a connection picked up mid-stream (see below), only at exactly
///   the receiver's last ACK. Otherwise it is `ignored` (forwarded, state kept).
/// - A bare SYN from the client opens (or, on a closing or closed entry, reopens) the
///   connection and starts its tracking. A SYN-ACK counts only from the backend and
///   when it acknowledges that SYN. A SYN from the backend never changes anything.
/// - The handshake completes (`established`) when the client acknowledges the
///   backend's SYN exactly.
/// - Other segments move a direction's highest sequence and ACK forward only when
///   they fall inside the window, so a spoofed segment cannot move them far.
/// - A side not seen yet (a connection installed by the sync) is picked up from its
///   first segment, before that segment's FIN is judged. Such a side's numbers may
///   come from a spoofed segment, so they never make an RST or FIN exact by
///   themselves: what counts is the *receiver's* ACK, which the receiver's own
///   segments set and a blind spoofer on the other side cannot know.
#[inline(always)]
pub fn tcp_track(state: u8, seq: &mut [NatSeq; 2], seg: &TcpSeg, from_client: bool) -> TcpStep {
    let [client, backend] = seq;
    let (s, r) = if from_client {
        (client, backend)
    } else {
        (backend, client)
    };
    let (syn, ack, fin, rst) = (
        seg.flags & TCP_SYN != 0,
        seg.flags & TCP_ACK != 0,
        seg.flags & TCP_FIN != 0,
        seg.flags & TCP_RST != 0,
    );
    let keep = TcpStep {
        state,
        established: false,
        ignored: false,
    };
    // Both SYNs were seen here: every number was set by the handshake or moved inside
    // a window of known scale.
    let tracked = s.flags & r.flags & NAT_SEQ_SYN != 0;
    let r_acked = r.flags & NAT_SEQ_ACK != 0;
    if rst {
        let exact = (r_acked && seg.seq == r.ack)
            || (tracked && seg.seq == s.end)
            || (state == NAT_TCP_SYN
                && !from_client
                && ack
                && r.flags & NAT_SEQ_END != 0
                && seg.ack == r.end);
        return if exact {
            TcpStep {
                state: NAT_TCP_CLOSED,
                ..keep
            }
        } else {
            TcpStep {
                ignored: state != NAT_TCP_CLOSED,
                ..keep
            }
        };
    }
    if syn && !ack {
        if !from_client || state == NAT_TCP_ESTABLISHED {
            return keep;
        }
        // A new connection, a retransmission, or a closed tuple reused.
        *s = NatSeq::syn(seg);
        *r = NatSeq::default();
        return TcpStep {
            state: NAT_TCP_SYN,
            ..keep
        };
    }
    if syn {
        // SYN-ACK: only the backend's, and only the answer to the client's SYN.
        if !from_client && state == NAT_TCP_SYN && r.flags & NAT_SEQ_SYN != 0 && seg.ack == r.end {
            *s = NatSeq::syn(seg);
            s.ack = seg.ack;
            s.flags |= NAT_SEQ_ACK;
        }
        return keep;
    }

    let seg_end = seg.seq.wrapping_add(seg.len).wrapping_add(fin as u32);
    // The receiver's window: [its last ACK, + the largest window it advertised]. With
    // only the sender seen, the sender's own highest sequence stands in (no room
    // beyond it).
    let window = if r_acked {
        Some((r.ack, r.ack.wrapping_add(r.win)))
    } else if s.flags & NAT_SEQ_END != 0 {
        Some((s.end, s.end))
    } else {
        None
    };
    let in_window = match window {
        Some((lo, hi)) => !seq_before(seg_end, lo) && !seq_before(hi, seg.seq),
        None => false,
    };
    let mut next = state;
    let mut ignored = false;
    if state == NAT_TCP_SYN && from_client && ack && r.flags & NAT_SEQ_SYN != 0 && seg.ack == r.end
    {
        next = NAT_TCP_ESTABLISHED;
    }
    if fin && state != NAT_TCP_CLOSED {
        let fin_ok = if tracked {
            in_window && r_acked
        } else {
            r_acked && seg.seq == r.ack
        };
        if fin_ok {
            next = NAT_TCP_FIN;
        } else if state != NAT_TCP_FIN {
            ignored = true;
        }
    }
    // Window scaling applies when both SYNs carried the option (RFC 7323 §2.2).
    let shift = if !tracked {
        NAT_WSCALE_MAX
    } else if s.flags & r.flags & NAT_SEQ_WS != 0 {
        s.wscale
    } else {
        0
    };
    let win = (seg.win as u32) << shift;
    if s.flags & NAT_SEQ_END == 0 {
        s.end = seg_end;
        s.win = win;
        s.flags |= NAT_SEQ_END;
    } else if in_window {
        if seq_before(s.end, seg_end) {
            s.end = seg_end;
        }
        if s.win < win {
            s.win = win;
        }
    }
    if ack {
        if s.flags & NAT_SEQ_ACK == 0 {
            s.ack = seg.ack;
            s.flags |= NAT_SEQ_ACK;
        } else if in_window
            && seq_before(s.ack, seg.ack)
            && (r.flags & NAT_SEQ_END == 0 || !seq_before(r.end, seg.ack))
        {
            s.ack = seg.ack;
        }
    }
    TcpStep {
        state: next,
        established: next == NAT_TCP_ESTABLISHED && state == NAT_TCP_SYN,
        ignored,
    }
}

impl NatSeq {
    /// A side's tracking started by its SYN (or SYN-ACK).
    #[inline(always)]
    pub const fn syn(seg: &TcpSeg) -> NatSeq {
        let (wscale, ws) = match seg.wscale {
            Some(w) if w > NAT_WSCALE_MAX => (NAT_WSCALE_MAX, NAT_SEQ_WS),
            Some(w) => (w, NAT_SEQ_WS),
            None => (0, 0),
        };
        NatSeq {
            end: seg.seq.wrapping_add(seg.len).wrapping_add(1),
            ack: 0,
            // The window of a SYN is never scaled (RFC 7323 §2.2).
            win: seg.win as u32,
            wscale,
            flags: NAT_SEQ_END | NAT_SEQ_SYN | ws,
            _pad: [0; 2],
        }
    }
}

/// Incremental checksum update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), one
/// 16-bit word at a time. Start with [`Csum::new`] from the field as read, feed every
/// changed word, write [`Csum::finish`] back.
#[derive(Clone, Copy, Debug)]
pub struct Csum(u32);

impl Csum {
    /// From the checksum field's value (host order of the big-endian field).
    #[inline(always)]
    pub const fn new(check: u16) -> Self {
        Csum(!check as u32)
    }

    /// One 16-bit word changed from `old` to `new` (both as read big-endian).
    #[inline(always)]
    pub const fn word(self, old: u16, new: u16) -> Self {
        Csum(self.0 + (!old) as u32 + new as u32)
    }

    /// Four bytes (an IPv4 address) changed.
    #[inline(always)]
    pub const fn addr4(self, old: [u8; 4], new: [u8; 4]) -> Self {
        self.word(
            u16::from_be_bytes([old[0], old[1]]),
            u16::from_be_bytes([new[0], new[1]]),
        )
        .word(
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        )
    }

    /// The new checksum field value.
    #[inline(always)]
    pub const fn finish(self) -> u16 {
        let mut s = self.0;
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        !(s as u16)
    }
}

/// Value of `NAT_EVENTS` records (ring buffer), written by the program for the
/// agent's connection-state sync: a connection was established (it left the
/// embryonic table) or closed (RST).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEvent {
    pub key: FlowKey,
    pub flow: NatFlow,
    /// `NAT_EVENT_*`.
    pub kind: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<NatEvent>() == 136);

pub const NAT_EVENT_NEW: u32 = 1;
pub const NAT_EVENT_CLOSED: u32 = 2;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, integers and byte arrays with explicit padding.
    unsafe impl aya::Pod for NatService {}
    unsafe impl aya::Pod for NatFlow {}
    unsafe impl aya::Pod for NatSeq {}
    unsafe impl aya::Pod for NatEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum16(data: &[u8]) -> u32 {
        data.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum()
    }

    fn full(data: &[u8]) -> u16 {
        let mut s = sum16(data);
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn incremental_update_equals_a_full_recomputation() {
        let mut hdr = [
            0x45u8, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 7, 192, 0, 2, 100,
        ];
        let c = full(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        for (old, new) in [
            ([198, 51, 100, 7], [10, 9, 8, 7]),
            ([192, 0, 2, 100], [255, 255, 255, 255]),
            ([192, 0, 2, 100], [0, 0, 0, 0]),
        ] {
            let mut h = hdr;
            let at = if old == [198, 51, 100, 7] { 12 } else { 16 };
            let check = u16::from_be_bytes([h[10], h[11]]);
            h[at..at + 4].copy_from_slice(&new);
            let inc = Csum::new(check).addr4(old, new).finish();
            h[10..12].copy_from_slice(&[0, 0]);
            assert_eq!(inc, full(&h), "{old:?} -> {new:?}");
        }
    }

    fn seg(flags: u8, seq: u32, ack: u32) -> TcpSeg {
        TcpSeg {
            flags,
            seq,
            ack,
            win: 502,
            len: 0,
            wscale: None,
        }
    }

    /// `tcp_track` of a plain segment on a tuple in the established state.
    fn established_step(
        t: &mut [NatSeq; 2],
        flags: u8,
        seq: u32,
        ack: u32,
        from_client: bool,
    ) -> TcpStep {
        tcp_track(NAT_TCP_ESTABLISHED, t, &seg(flags, seq, ack), from_client)
    }

    /// A handshake tracked: client ISN 1000 (window scale 7), backend ISN 5000
    /// (window scale 7), then 100 bytes each way.
    fn established() -> [NatSeq; 2] {
        let mut t = [NatSeq::default(); 2];
        let syn = TcpSeg {
            wscale: Some(7),
            ..seg(TCP_SYN, 1000, 0)
        };
        assert_eq!(
            tcp_track(NAT_TCP_SYN, &mut t, &syn, true).state,
            NAT_TCP_SYN
        );
        let syn_ack = TcpSeg {
            wscale: Some(7),
            ..seg(TCP_SYN | TCP_ACK, 5000, 1001)
        };
        assert_eq!(
            tcp_track(NAT_TCP_SYN, &mut t, &syn_ack, false).state,
            NAT_TCP_SYN,
            "the SYN-ACK alone does not establish"
        );
        let step = tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_ACK, 1001, 5001), true);
        assert_eq!(
            step,
            TcpStep {
                state: NAT_TCP_ESTABLISHED,
                established: true,
                ignored: false
            }
        );
        let data = |seq, ack| TcpSeg {
            len: 100,
            ..seg(TCP_ACK | 0x08, seq, ack)
        };
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data(1001, 5001), true);
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data(5001, 1101), false);
        established_step(&mut t, TCP_ACK, 1101, 5101, true);
        assert_eq!((t[0].end, t[0].ack), (1101, 5101));
        assert_eq!((t[1].end, t[1].ack), (5101, 1101));
        assert_eq!(t[1].win, 502 << 7, "scaled by the backend's own factor");
        t
    }

    #[test]
    fn the_handshake_establishes_only_with_the_exact_ack() {
        let mut t = [NatSeq::default(); 2];
        tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_SYN, 1000, 0), true);
        tcp_track(
            NAT_TCP_SYN,
            &mut t,
            &seg(TCP_SYN | TCP_ACK, 5000, 1001),
            false,
        );
        // A spoofed client cannot see the SYN-ACK: its guess of the ACK is wrong.
        let guess = tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_ACK, 1001, 4242), true);
        assert_eq!(guess.state, NAT_TCP_SYN);
        assert!(!guess.established);
        // A SYN-ACK that does not answer the SYN is not taken.
        let mut u = [NatSeq::default(); 2];
        tcp_track(NAT_TCP_SYN, &mut u, &seg(TCP_SYN, 1000, 0), true);
        tcp_track(
            NAT_TCP_SYN,
            &mut u,
            &seg(TCP_SYN | TCP_ACK, 5000, 77),
            false,
        );
        assert_eq!(u[1], NatSeq::default());
        assert_eq!(
            tcp_track(NAT_TCP_SYN, &mut u, &seg(TCP_ACK, 1001, 5001), true).state,
            NAT_TCP_SYN
        );
    }

    #[test]
    fn an_rst_closes_only_with_the_exact_sequence_number() {
        for (from_client, exact) in [(true, 1101), (false, 5101)] {
            for wrong in [0, exact - 1, exact + 1, exact + 5000, exact ^ 0x8000_0000] {
                let mut t = established();
                let step = established_step(&mut t, TCP_RST, wrong, 0, from_client);
                assert_eq!(
                    step,
                    TcpStep {
                        state: NAT_TCP_ESTABLISHED,
                        established: false,
                        ignored: true
                    },
                    "RST seq {wrong} from client {from_client}"
                );
            }
            let mut t = established();
            let step = established_step(&mut t, TCP_RST, exact, 0, from_client);
            assert_eq!(
                step.state, NAT_TCP_CLOSED,
                "exact RST from client {from_client}"
            );
        }
        // Data in flight: the sender's highest sequence is exact too.
        let mut t = established();
        let data = TcpSeg {
            len: 50,
            ..seg(TCP_ACK, 1101, 5101)
        };
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data, true);
        assert_eq!(
            established_step(&mut t, TCP_RST, 1151, 0, true).state,
            NAT_TCP_CLOSED
        );
    }

    #[test]
    fn a_refused_connection_closes() {
        let mut t = [NatSeq::default(); 2];
        tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_SYN, 1000, 0), true);
        let wrong = tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_RST | TCP_ACK, 0, 999), false);
        assert_eq!(wrong.state, NAT_TCP_SYN);
        let refused = tcp_track(NAT_TCP_SYN, &mut t, &seg(TCP_RST | TCP_ACK, 0, 1001), false);
        assert_eq!(refused.state, NAT_TCP_CLOSED);
    }

    #[test]
    fn a_fin_closes_only_inside_the_window() {
        let win = 502u32 << 7;
        for (from_client, lo) in [(true, 1101u32), (false, 5101)] {
            for ok in [lo, lo + 10, lo + win] {
                let mut t = established();
                let s = established_step(&mut t, TCP_FIN | TCP_ACK, ok, 0, from_client);
                assert_eq!(
                    s.state, NAT_TCP_FIN,
                    "FIN at {ok} from client {from_client}"
                );
            }
            for bad in [lo - 2, lo + win + 1, lo + 0x4000_0000, lo ^ 0x8000_0000] {
                let mut t = established();
                let s = established_step(&mut t, TCP_FIN | TCP_ACK, bad, 0, from_client);
                assert_eq!(
                    (s.state, s.ignored),
                    (NAT_TCP_ESTABLISHED, true),
                    "FIN at {bad} from client {from_client}"
                );
            }
        }
    }

    #[test]
    fn spoofed_segments_do_not_move_the_window() {
        let mut t = established();
        let before = t;
        for seq in [0u32, 1_000_000, 0x8000_0000, 5101 + (502 << 7) + 1] {
            let spoof = TcpSeg {
                len: 10,
                ..seg(TCP_ACK | 0x08, seq, 1_000_000)
            };
            tcp_track(NAT_TCP_ESTABLISHED, &mut t, &spoof, false);
        }
        assert_eq!(t, before, "out-of-window segments change no tracking");
        // And so the RST an attacker would then send at its own chosen sequence fails.
        let s = established_step(&mut t, TCP_RST, 1_000_010, 0, false);
        assert_eq!(s.state, NAT_TCP_ESTABLISHED);
    }

    /// A connection installed by the sync (nothing tracked) is picked up from its
    /// segments; an RST closes it only at the receiver's ACK, once that is known.
    #[test]
    fn a_synced_connection_is_picked_up_and_closes_only_at_the_receivers_ack() {
        let mut t = [NatSeq::default(); 2];
        // Nothing known: an RST or FIN from either side changes nothing.
        for from_client in [true, false] {
            for flags in [TCP_RST, TCP_FIN | TCP_ACK] {
                let s = established_step(&mut t, flags, 7, 0, from_client);
                assert_eq!(s.state, NAT_TCP_ESTABLISHED);
            }
        }
        let mut t = [NatSeq::default(); 2];
        // The client seen: an RST of its own, at its own sequence, closes nothing (its
        // receiver's ACK is not known)...
        established_step(&mut t, TCP_ACK, 90_000, 70_000, true);
        let s = established_step(&mut t, TCP_RST, 90_000, 0, true);
        assert_eq!(s.state, NAT_TCP_ESTABLISHED);
        // ...nor does a backend RST anywhere but at the client's ACK.
        let s = established_step(&mut t, TCP_RST, 70_001, 0, false);
        assert_eq!(s.state, NAT_TCP_ESTABLISHED);
        // Both seen: the exact RST closes.
        established_step(&mut t, TCP_ACK, 70_000, 90_000, false);
        let s = established_step(&mut t, TCP_RST, 90_000, 0, true);
        assert_eq!(s.state, NAT_TCP_CLOSED);
    }

    /// A connection installed by the sync, where a spoofer on the
    /// backend segment gets the first backend-side segment in (setting that side's
    /// highest sequence), then the real client speaks: an RST at the planted sequence
    /// must not close it. Only the client's own ACK (what it really received) counts.
    #[test]
    fn a_planted_sequence_does_not_close_a_synced_connection() {
        let mut t = [NatSeq::default(); 2];
        let forged = TcpSeg {
            len: 10,
            ..seg(TCP_ACK | 0x08, 777_000, 123)
        };
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &forged, false);
        established_step(&mut t, TCP_ACK, 90_000, 70_000, true);
        let s = established_step(&mut t, TCP_RST, 777_010, 0, false);
        assert_eq!(
            (s.state, s.ignored),
            (NAT_TCP_ESTABLISHED, true),
            "an RST at the spoofer's own planted sequence closed the connection"
        );
        // The backend's real reset, at what the client acknowledged, still closes.
        let s = established_step(&mut t, TCP_RST, 70_000, 0, false);
        assert_eq!(s.state, NAT_TCP_CLOSED);
    }

    /// After a failover the first segments of a connection are often
    /// its close: the client's FIN, the backend's FIN, the last ACK. The connection
    /// must move to closing (aged after `fin`), not stay established for an hour.
    #[test]
    fn a_synced_connection_that_closes_moves_to_closing() {
        // The backend's FIN acknowledges the client's, or crosses it.
        for backend_ack in [90_001, 90_000] {
            let mut t = [NatSeq::default(); 2];
            let fin = TcpSeg {
                win: 502,
                ..seg(TCP_FIN | TCP_ACK, 90_000, 70_000)
            };
            let s = tcp_track(NAT_TCP_ESTABLISHED, &mut t, &fin, true);
            assert_eq!(s.state, NAT_TCP_ESTABLISHED, "nothing to judge it by yet");
            let s = established_step(&mut t, TCP_FIN | TCP_ACK, 70_000, backend_ack, false);
            assert_eq!(
                s.state, NAT_TCP_FIN,
                "the backend's FIN (ack {backend_ack}) at what the client acknowledged"
            );
            let s = tcp_track(NAT_TCP_FIN, &mut t, &seg(TCP_ACK, 90_001, 70_001), true);
            assert_eq!(s.state, NAT_TCP_FIN);
        }
        // A spoofed FIN from the backend side, at anything but what the client
        // acknowledged, changes nothing.
        let mut t = [NatSeq::default(); 2];
        established_step(&mut t, TCP_ACK, 90_000, 70_000, true);
        for wrong in [70_001, 70_000 + 1000, 71_000_000] {
            let s = established_step(&mut t, TCP_FIN | TCP_ACK, wrong, 90_000, false);
            assert_eq!(
                (s.state, s.ignored),
                (NAT_TCP_ESTABLISHED, true),
                "FIN at {wrong}"
            );
        }
    }

    /// The window is the largest one advertised (as conntrack's
    /// `td_maxwin`), not the last. After the receiver shrank its window to zero, the
    /// data already in flight and the FIN behind it still fall inside.
    #[test]
    fn a_window_shrunk_to_zero_still_admits_the_data_in_flight_and_the_fin() {
        let mut t = established();
        let data = |seq| TcpSeg {
            len: 100,
            ..seg(TCP_ACK | 0x08, seq, 5101)
        };
        // Three segments in flight; the backend took the first and closed its window.
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data(1101), true);
        tcp_track(
            NAT_TCP_ESTABLISHED,
            &mut t,
            &TcpSeg {
                win: 0,
                ..seg(TCP_ACK, 5101, 1201)
            },
            false,
        );
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data(1201), true);
        tcp_track(NAT_TCP_ESTABLISHED, &mut t, &data(1301), true);
        assert_eq!(t[0].end, 1401, "the data in flight moves the client's end");
        let s = established_step(&mut t, TCP_FIN | TCP_ACK, 1401, 5101, true);
        assert_eq!(s.state, NAT_TCP_FIN, "the FIN after the data in flight");
    }

    #[test]
    fn syns_reopen_only_closed_tuples_from_the_client() {
        let mut t = established();
        assert_eq!(
            established_step(&mut t, TCP_SYN, 9, 0, true).state,
            NAT_TCP_ESTABLISHED
        );
        assert_eq!(
            tcp_track(NAT_TCP_CLOSED, &mut t, &seg(TCP_SYN, 9, 0), false).state,
            NAT_TCP_CLOSED,
            "a SYN from the backend side never resets a flow"
        );
        for closing in [NAT_TCP_FIN, NAT_TCP_CLOSED] {
            let mut t = established();
            assert_eq!(
                tcp_track(closing, &mut t, &seg(TCP_SYN, 9, 0), true).state,
                NAT_TCP_SYN
            );
            assert_eq!(t[0].end, 10);
            assert_eq!(t[1], NatSeq::default(), "the backend side starts over");
        }
    }
}
