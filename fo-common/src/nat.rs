//! Full NAT (`mode = "nat"`): the layouts of the NAT maps, the TCP state machine that
//! ages connections, and incremental checksum arithmetic. Pure, so the agent and the
//! tests use the very code the XDP program runs.
//!
//! A NAT connection has two entries, written together:
//! - `NAT_FWD`: the client's 5-tuple (client -> VIP:port) -> [`NatFlow`];
//! - `NAT_REV`: the reply's 5-tuple as it arrives (backend:bport -> SNAT:sport) ->
//!   the client's 5-tuple (a [`FlowKey`]).
//!
//! The reverse entry *is* the SNAT port reservation: the program allocates a port by
//! inserting it with `BPF_NOEXIST`, so two connections can never share a reply tuple,
//! and a port is free again only once the agent's aging removed the entry.

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

/// Value of `NAT_FWD`: how one client connection is translated. Written by the
/// program (new connection, state, last seen) and by the agent (synced from a peer).
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
}
const _: () = assert!(size_of::<NatFlow>() == 56);

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

/// The connection's next state after a TCP segment with `flags`, seen from the
/// client (`from_client`) or from the backend.
///
/// RST closes. FIN moves to closing (and stays there). A bare SYN from the client
/// on a closed or closing entry is the tuple being reused: a new connection. An ACK
/// in the SYN state establishes: the backend's SYN-ACK, or the client's ACK that ends
/// the handshake (the only one a node sees that took over after the SYN-ACK).
#[inline(always)]
pub const fn tcp_next_state(state: u8, flags: u8, from_client: bool) -> u8 {
    if flags & TCP_RST != 0 {
        NAT_TCP_CLOSED
    } else if flags & TCP_SYN != 0 && flags & TCP_ACK == 0 && from_client {
        if state == NAT_TCP_CLOSED || state == NAT_TCP_FIN {
            NAT_TCP_SYN
        } else {
            state
        }
    } else if flags & TCP_FIN != 0 {
        if state == NAT_TCP_CLOSED {
            NAT_TCP_CLOSED
        } else {
            NAT_TCP_FIN
        }
    } else if state == NAT_TCP_SYN && flags & TCP_ACK != 0 {
        NAT_TCP_ESTABLISHED
    } else {
        state
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
/// agent's connection-state sync: a connection was created or closed (RST).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEvent {
    pub key: FlowKey,
    pub flow: NatFlow,
    /// `NAT_EVENT_*`.
    pub kind: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<NatEvent>() == 104);

pub const NAT_EVENT_NEW: u32 = 1;
pub const NAT_EVENT_CLOSED: u32 = 2;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C), Copy, integers and byte arrays with explicit padding.
    unsafe impl aya::Pod for NatService {}
    unsafe impl aya::Pod for NatFlow {}
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

    #[test]
    fn tcp_states() {
        use super::tcp_next_state as n;
        assert_eq!(
            n(NAT_TCP_SYN, TCP_SYN | TCP_ACK, false),
            NAT_TCP_ESTABLISHED
        );
        assert_eq!(n(NAT_TCP_SYN, TCP_SYN, true), NAT_TCP_SYN);
        assert_eq!(n(NAT_TCP_SYN, TCP_ACK, true), NAT_TCP_ESTABLISHED);
        assert_eq!(n(NAT_TCP_ESTABLISHED, TCP_ACK, true), NAT_TCP_ESTABLISHED);
        assert_eq!(n(NAT_TCP_ESTABLISHED, TCP_FIN | TCP_ACK, true), NAT_TCP_FIN);
        assert_eq!(n(NAT_TCP_FIN, TCP_ACK, false), NAT_TCP_FIN);
        assert_eq!(n(NAT_TCP_ESTABLISHED, TCP_RST, false), NAT_TCP_CLOSED);
        assert_eq!(n(NAT_TCP_CLOSED, TCP_FIN, true), NAT_TCP_CLOSED);
        assert_eq!(n(NAT_TCP_CLOSED, TCP_SYN, true), NAT_TCP_SYN);
        assert_eq!(n(NAT_TCP_FIN, TCP_SYN, true), NAT_TCP_SYN);
        // A SYN from the backend side never resets a flow.
        assert_eq!(n(NAT_TCP_CLOSED, TCP_SYN, false), NAT_TCP_CLOSED);
    }
}
