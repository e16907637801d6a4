//! Frame builders for the data-plane tests: Ethernet, ARP, IPv4/IPv6, TCP/UDP,
//! ICMPv6 Neighbor Solicitation — with correct checksums, written independently of
//! the XDP program's code.

use std::net::{Ipv4Addr, Ipv6Addr};

pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];

pub fn eth(dst: Mac, src: Mac, ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// An ARP packet (Ethernet/IPv4). `oper` 1 = request, 2 = reply.
pub fn arp(oper: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let dst = if oper == 1 { BROADCAST } else { tha };
    let mut f = eth(dst, sha, 0x0806);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// One's-complement sum of 16-bit big-endian words (odd byte padded).
pub fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 header (no options) with checksum.
pub fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload_len: usize) -> Vec<u8> {
    let total = (20 + payload_len) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

pub fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: usize, hop: u8) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.push(next);
    h.push(hop);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// TCP segment with checksum over the pseudo-header given as bytes.
#[allow(clippy::too_many_arguments)]
fn tcp_segment_with(
    pseudo: &[u8],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert!(
        options.len().is_multiple_of(4) && options.len() <= 40,
        "TCP options come in words, at most 40 bytes"
    );
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push((((20 + options.len()) / 4) << 4) as u8);
    t.push(flags);
    t.extend_from_slice(&win.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    let c = fold(sum16(pseudo) + sum16(&t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// An Ethernet/IPv4/TCP frame with every TCP field chosen, built fluently:
/// `Tcp4::new(..).flags(TCP_ACK).seq(1001).ack(5001).payload(b"x").frame()`.
/// Defaults: no flags, seq 1000, ack 0, window 65535, no options, no payload.
#[derive(Clone, Debug)]
pub struct Tcp4 {
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

impl Tcp4 {
    pub fn new(
        (dst_mac, src_mac): (Mac, Mac),
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
    ) -> Self {
        Tcp4 {
            dst_mac,
            src_mac,
            src,
            dst,
            sport,
            dport,
            flags: 0,
            seq: 1000,
            ack: 0,
            win: 0xffff,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = ack;
        self
    }

    pub fn win(mut self, win: u16) -> Self {
        self.win = win;
        self
    }

    /// Raw option bytes (a multiple of 4).
    pub fn options(mut self, options: &[u8]) -> Self {
        self.options = options.to_vec();
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn frame(&self) -> Vec<u8> {
        let len = 20 + self.options.len() + self.payload.len();
        let seg = tcp_segment_with(
            &pseudo4(self.src, self.dst, 6, len),
            self.sport,
            self.dport,
            self.flags,
            self.seq,
            self.ack,
            self.win,
            &self.options,
            &self.payload,
        );
        ipv4_frame((self.dst_mac, self.src_mac), self.src, self.dst, 6, seg)
    }
}

/// An Ethernet/IPv4 frame (`macs`: destination, source) carrying `l4`, of protocol
/// `proto`.
fn ipv4_frame(macs: (Mac, Mac), src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    let mut f = eth(macs.0, macs.1, 0x0800);
    f.extend(ipv4_header(src, dst, proto, l4.len()));
    f.extend(l4);
    f
}

/// An Ethernet/IPv6 frame (`macs`: destination, source) carrying `l4`, of next header
/// `next`, with hop limit `hop`.
fn ipv6_frame(
    macs: (Mac, Mac),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    l4: Vec<u8>,
) -> Vec<u8> {
    let mut f = eth(macs.0, macs.1, 0x86dd);
    f.extend(ipv6_header(src, dst, next, l4.len(), hop));
    f.extend(l4);
    f
}

/// The options of a Linux SYN: MSS 1460, SACK permitted, timestamps, NOP, window
/// scale `wscale`.
pub fn linux_syn_options(wscale: u8) -> [u8; 20] {
    [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, wscale,
    ]
}

fn udp_datagram(pseudo: &[u8], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = fold(sum16(pseudo) + sum16(&u));
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

pub fn pseudo6(src: &[u8], dst: &[u8], next: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next]);
    p
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH_ACK: u8 = 0x18;

/// An Ethernet/IPv4/TCP frame with [`Tcp4`]'s defaults but for `flags` and `payload`.
#[allow(clippy::too_many_arguments)]
pub fn tcp4(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    Tcp4::new((dst_mac, src_mac), (src, sport), (dst, dport))
        .flags(flags)
        .payload(payload)
        .frame()
}

pub fn udp4(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let pseudo = pseudo4(src, dst, 17, 8 + payload.len());
    let dg = udp_datagram(&pseudo, sport, dport, payload);
    ipv4_frame((dst_mac, src_mac), src, dst, 17, dg)
}

/// An Ethernet/IPv6/TCP frame: sequence number 1000, no ACK, window 65535, no options.
#[allow(clippy::too_many_arguments)]
pub fn tcp6(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let pseudo = pseudo6(&src.octets(), &dst.octets(), 6, 20 + payload.len());
    let seg = tcp_segment_with(&pseudo, sport, dport, flags, 1000, 0, 0xffff, &[], payload);
    ipv6_frame((dst_mac, src_mac), src, dst, 6, 64, seg)
}

/// Solicited-node multicast address of `target` (RFC 4291 §2.7.1).
pub fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    )
}

/// Neighbor Solicitation for `target` from `src` (`::` for DAD), with a source
/// link-layer address option unless `with_slla` is false.
pub fn neighbor_solicit(src_mac: Mac, src: Ipv6Addr, target: Ipv6Addr, with_slla: bool) -> Vec<u8> {
    let dst = solicited_node(target);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    if with_slla {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&src_mac);
    }
    let o = dst.octets();
    icmpv6_frame(
        ([0x33, 0x33, o[12], o[13], o[14], o[15]], src_mac),
        src,
        dst,
        icmp,
    )
}

/// The Neighbor Advertisement an owner of `target` should send back, built here
/// independently of the program (checksum included).
pub fn neighbor_advert(our_mac: Mac, target: Ipv6Addr, asker_mac: Mac, asker: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&our_mac);
    icmpv6_frame((asker_mac, our_mac), target, asker, icmp)
}

/// A Neighbor Discovery message `icmp` (checksum field zero) in an Ethernet/IPv6 frame
/// with hop limit 255, its checksum filled in.
fn icmpv6_frame(macs: (Mac, Mac), src: Ipv6Addr, dst: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let c = fold(sum16(&pseudo6(&src.octets(), &dst.octets(), 58, icmp.len())) + sum16(&icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6_frame(macs, src, dst, 58, 255, icmp)
}

/// Verify the ICMPv6 checksum of an IPv6/ICMPv6 frame by summing over it (a valid
/// checksum makes the folded sum zero).
pub fn icmpv6_checksum_ok(frame: &[u8]) -> bool {
    // After an 802.1Q tag, the same frame as without it.
    if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        return icmpv6_checksum_ok(&[&frame[..12], &frame[16..]].concat());
    }
    if frame.len() < 54 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    let Some(icmp) = frame.get(54..54 + len) else {
        return false;
    };
    fold(sum16(&pseudo6(&frame[22..38], &frame[38..54], 58, len)) + sum16(icmp)) == 0
}

/// Verify the IPv4 header checksum and the TCP or UDP checksum of an IPv4 frame by
/// summing over them (a valid checksum makes the folded sum zero; a UDP checksum of
/// 0 means "none").
pub fn ipv4_checksums_ok(frame: &[u8]) -> bool {
    if frame.len() < 34 || frame[14] != 0x45 {
        return false;
    }
    if fold(sum16(&frame[14..34])) != 0 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let Some(l4) = frame.get(34..14 + total) else {
        return false;
    };
    let proto = frame[23];
    if proto == 17 && l4.len() >= 8 && l4[6..8] == [0, 0] {
        return true;
    }
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&frame[26..34]);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    fold(sum16(&pseudo) + sum16(l4)) == 0
}

/// An Ethernet/IPv4 ICMP error (`icmp_type`, `code`, the 4 bytes after the checksum
/// `rest`, e.g. the next-hop MTU of a frag needed) from `src` to `dst`, quoting the
/// first `quote_len` bytes of the IPv4 packet in `quoted` (an Ethernet frame, as
/// built here: its IPv4 header and checksums are quoted as they are), as a router
/// quotes. Outer IPv4 and ICMP checksums computed.
#[allow(clippy::too_many_arguments)]
pub fn icmp4_error(
    macs: (Mac, Mac),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let packet = &quoted[14..];
    let mut icmp = vec![icmp_type, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(&packet[..quote_len.min(packet.len())]);
    let c = fold(sum16(&icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_frame(macs, src, dst, 1, icmp)
}

/// Verify the checksums of an IPv4 ICMP error frame: the outer IPv4 header, the
/// ICMP message (by the outer length) and the quoted IPv4 header (which must be
/// whole, without options).
pub fn icmp4_checksums_ok(frame: &[u8]) -> bool {
    if frame.len() < 34 + 8 + 20 || frame[14] != 0x45 || frame[23] != 1 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let Some(icmp) = frame.get(34..14 + total) else {
        return false;
    };
    fold(sum16(&frame[14..34])) == 0
        && fold(sum16(icmp)) == 0
        && icmp.len() >= 28
        && icmp[8] == 0x45
        && fold(sum16(&icmp[8..28])) == 0
}

/// The quoted packet of an IPv4 ICMP error frame (from its IPv4 header on), as an
/// Ethernet frame with `frame`'s MACs, so [`ipv4_checksums_ok`] can check a whole quote.
pub fn icmp4_quoted_frame(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..14].to_vec();
    f.extend_from_slice(&frame[42..]);
    f
}
