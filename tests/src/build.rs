//! A fluent frame builder for the data-plane tests, in the manner of katran's
//! `PacketBuilder`: each layer is a call, checksums and lengths are computed at
//! [`Frame::build`], and the odd cases (VLAN tags, IPv4 options, fragments, IPv6 extension
//! headers, truncation) are named calls instead of poked bytes.
//!
//! ```text
//! Frame::eth(OUR_MAC, CLIENT_MAC).ipv4(CLIENT, VIP).tcp(40000, 1514).syn().build()
//! Frame::eth(OUR_MAC, CLIENT_MAC).vlan(10).ipv4(CLIENT, VIP).tcp(40000, 1514).syn().build()
//! Frame::eth(OUR_MAC, CLIENT_MAC).ipv4(CLIENT, VIP).udp(5140, 514).payload(b"x").truncated(40)
//! Frame::eth(BROADCAST, CLIENT_MAC).arp_request(CLIENT, VIP).build()
//! Frame::eth(mac, CLIENT_MAC).ipv6(CLIENT6, group).neighbor_solicit(VIP6).without_slla().build()
//! ```
//!
//! Defaults are those of the positional builders in `frames` (IPv4 ID 0x1234, DF, TTL 64;
//! IPv6 hop limit 64, 255 for Neighbor Discovery; TCP sequence 1000, window 0xffff), so
//! the same frame comes out byte for byte (tested below).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::frames::{Mac, fold, pseudo6, sum16};

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_VLAN: u16 = 0x8100;
const ETH_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;

/// IPv6 Destination Options, the extension header [`Frame::ext_header`] adds by default.
pub const DEST_OPTS: u8 = 60;

#[derive(Clone, Debug)]
enum Net {
    /// Only an EtherType (and the payload after it).
    Raw(u16),
    Arp {
        oper: u16,
        spa: Ipv4Addr,
        tha: Mac,
        tpa: Ipv4Addr,
    },
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ihl_words: u8,
        /// Flags (high 3 bits) and fragment offset, as on the wire.
        flags_frag: u16,
        ttl: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        /// Extension headers (their next-header values), in order.
        ext: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
enum Transport {
    None,
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        window: u16,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    IcmpEcho,
    NeighborSolicit {
        target: Ipv6Addr,
        slla: bool,
    },
}

/// A frame being built; [`Frame::build`] gives its bytes.
#[derive(Clone, Debug)]
pub struct Frame {
    dst: Mac,
    src: Mac,
    vlan: Option<u16>,
    net: Net,
    transport: Transport,
    payload: Vec<u8>,
}

impl Frame {
    /// An Ethernet frame from `src` to `dst`; say what it carries next.
    pub fn eth(dst: Mac, src: Mac) -> Frame {
        Frame {
            dst,
            src,
            vlan: None,
            net: Net::Raw(0),
            transport: Transport::None,
            payload: Vec::new(),
        }
    }

    /// An 802.1Q tag with VLAN `id` before the EtherType.
    pub fn vlan(mut self, id: u16) -> Frame {
        self.vlan = Some(id);
        self
    }

    /// Neither IP nor ARP: this EtherType, then the payload as given.
    pub fn ether_type(mut self, ether_type: u16) -> Frame {
        self.net = Net::Raw(ether_type);
        self
    }

    /// An ARP request from the Ethernet source (`spa`) for `tpa`.
    pub fn arp_request(self, spa: Ipv4Addr, tpa: Ipv4Addr) -> Frame {
        self.arp(1, spa, [0; 6], tpa)
    }

    /// An ARP reply from the Ethernet source (`spa`) to `tha`/`tpa`.
    pub fn arp_reply(self, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Frame {
        self.arp(2, spa, tha, tpa)
    }

    /// An ARP packet (Ethernet/IPv4), the sender being the Ethernet source.
    pub fn arp(mut self, oper: u16, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Frame {
        self.net = Net::Arp {
            oper,
            spa,
            tha,
            tpa,
        };
        self
    }

    /// An IPv4 header (ID 0x1234, DF, TTL 64, no options).
    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Frame {
        self.net = Net::V4 {
            src,
            dst,
            ihl_words: 5,
            flags_frag: 0x4000,
            ttl: 64,
        };
        self
    }

    /// IPv4 header length in 32-bit words; above 5, the options are NOPs.
    pub fn ihl_words(mut self, words: u8) -> Frame {
        if let Net::V4 { ihl_words, .. } = &mut self.net {
            *ihl_words = words;
        }
        self
    }

    /// The IPv4 More Fragments flag (DF cleared): a first fragment.
    pub fn more_fragments(mut self) -> Frame {
        if let Net::V4 { flags_frag, .. } = &mut self.net {
            *flags_frag = 0x2000 | (*flags_frag & 0x1fff);
        }
        self
    }

    /// An IPv4 fragment offset in 8-byte units (DF cleared): a later fragment.
    pub fn frag_offset(mut self, units: u16) -> Frame {
        if let Net::V4 { flags_frag, .. } = &mut self.net {
            *flags_frag = (*flags_frag & 0x2000) | (units & 0x1fff);
        }
        self
    }

    /// An IPv6 header (hop limit 64; 255 once it carries Neighbor Discovery).
    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Frame {
        self.net = Net::V6 {
            src,
            dst,
            hop: 64,
            ext: Vec::new(),
        };
        self
    }

    /// An 8-byte IPv6 extension header of type `next` (e.g. [`DEST_OPTS`]) before the
    /// upper layer.
    pub fn ext_header(mut self, next: u8) -> Frame {
        if let Net::V6 { ext, .. } = &mut self.net {
            ext.push(next);
        }
        self
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, value: u8) -> Frame {
        match &mut self.net {
            Net::V4 { ttl, .. } => *ttl = value,
            Net::V6 { hop, .. } => *hop = value,
            _ => {}
        }
        self
    }

    /// A TCP header (no flags until [`Frame::syn`] and friends; sequence 1000,
    /// acknowledgment 0, window 65535, no options).
    pub fn tcp(mut self, sport: u16, dport: u16) -> Frame {
        self.transport = Transport::Tcp {
            sport,
            dport,
            flags: 0,
            seq: 1000,
            ack: 0,
            window: 0xffff,
            options: Vec::new(),
        };
        self
    }

    /// The TCP acknowledgment number (the ACK flag is [`Frame::ack`]).
    pub fn ack_number(mut self, value: u32) -> Frame {
        if let Transport::Tcp { ack, .. } = &mut self.transport {
            *ack = value;
        }
        self
    }

    /// The TCP window.
    pub fn window(mut self, value: u16) -> Frame {
        if let Transport::Tcp { window, .. } = &mut self.transport {
            *window = value;
        }
        self
    }

    /// Raw TCP option bytes (a multiple of 4), e.g. `frames::linux_syn_options(7)`.
    pub fn tcp_options(mut self, bytes: &[u8]) -> Frame {
        if let Transport::Tcp { options, .. } = &mut self.transport {
            *options = bytes.to_vec();
        }
        self
    }

    /// TCP flags as on the wire.
    pub fn flags(mut self, value: u8) -> Frame {
        if let Transport::Tcp { flags, .. } = &mut self.transport {
            *flags = value;
        }
        self
    }

    pub fn syn(self) -> Frame {
        self.flags(crate::frames::TCP_SYN)
    }

    pub fn ack(self) -> Frame {
        self.flags(crate::frames::TCP_ACK)
    }

    pub fn psh_ack(self) -> Frame {
        self.flags(crate::frames::TCP_PSH_ACK)
    }

    /// The TCP sequence number.
    pub fn seq(mut self, value: u32) -> Frame {
        if let Transport::Tcp { seq, .. } = &mut self.transport {
            *seq = value;
        }
        self
    }

    /// A UDP header.
    pub fn udp(mut self, sport: u16, dport: u16) -> Frame {
        self.transport = Transport::Udp { sport, dport };
        self
    }

    /// An ICMP echo request (identifier and sequence 0).
    pub fn icmp_echo(mut self) -> Frame {
        self.transport = Transport::IcmpEcho;
        self
    }

    /// An ICMPv6 Neighbor Solicitation for `target` with a source link-layer address
    /// option (the Ethernet source) unless [`Frame::without_slla`]; hop limit 255.
    pub fn neighbor_solicit(mut self, target: Ipv6Addr) -> Frame {
        self.transport = Transport::NeighborSolicit { target, slla: true };
        self.ttl(255)
    }

    /// A Neighbor Solicitation without the source link-layer address option.
    pub fn without_slla(mut self) -> Frame {
        if let Transport::NeighborSolicit { slla, .. } = &mut self.transport {
            *slla = false;
        }
        self
    }

    /// Bytes after the last header.
    pub fn payload(mut self, bytes: &[u8]) -> Frame {
        self.payload = bytes.to_vec();
        self
    }

    /// The whole frame, then cut to its first `len` bytes (a truncated capture).
    pub fn truncated(self, len: usize) -> Vec<u8> {
        let mut f = self.build();
        f.truncate(len);
        f
    }

    /// The frame's bytes, lengths and checksums computed.
    pub fn build(&self) -> Vec<u8> {
        let (ether_type, body) = match &self.net {
            Net::Raw(t) => (*t, self.payload.clone()),
            Net::Arp {
                oper,
                spa,
                tha,
                tpa,
            } => {
                let mut a = vec![0, 1, 8, 0, 6, 4];
                a.extend_from_slice(&oper.to_be_bytes());
                a.extend_from_slice(&self.src);
                a.extend_from_slice(&spa.octets());
                a.extend_from_slice(tha);
                a.extend_from_slice(&tpa.octets());
                a.extend_from_slice(&self.payload);
                (ETH_ARP, a)
            }
            Net::V4 {
                src,
                dst,
                ihl_words,
                flags_frag,
                ttl,
            } => {
                let proto = self.proto();
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&src.octets());
                pseudo.extend_from_slice(&dst.octets());
                let l4 = self.transport_bytes(|len| {
                    let mut p = pseudo.clone();
                    p.extend_from_slice(&[0, proto]);
                    p.extend_from_slice(&(len as u16).to_be_bytes());
                    p
                });
                let header_len = 4 * usize::from(*ihl_words);
                let total = (header_len + l4.len()) as u16;
                let mut h = vec![0x40 | (ihl_words & 0x0f), 0];
                h.extend_from_slice(&total.to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34]);
                h.extend_from_slice(&flags_frag.to_be_bytes());
                h.extend_from_slice(&[*ttl, proto, 0, 0]);
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                h.resize(header_len.max(20), 0x01); // options: NOPs
                let c = fold(sum16(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                h.extend(l4);
                (ETH_IPV4, h)
            }
            Net::V6 { src, dst, hop, ext } => {
                let proto = self.proto();
                let l4 =
                    self.transport_bytes(|len| pseudo6(&src.octets(), &dst.octets(), proto, len));
                let mut chain = Vec::new();
                for (i, _) in ext.iter().enumerate() {
                    let next = ext.get(i + 1).copied().unwrap_or(proto);
                    chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN
                }
                let first = ext.first().copied().unwrap_or(proto);
                let mut h = vec![0x60, 0, 0, 0];
                h.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
                h.push(first);
                h.push(*hop);
                h.extend_from_slice(&src.octets());
                h.extend_from_slice(&dst.octets());
                h.extend(chain);
                h.extend(l4);
                (ETH_IPV6, h)
            }
        };
        let mut f = Vec::with_capacity(18 + body.len());
        f.extend_from_slice(&self.dst);
        f.extend_from_slice(&self.src);
        if let Some(id) = self.vlan {
            f.extend_from_slice(&ETH_VLAN.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend(body);
        f
    }

    fn proto(&self) -> u8 {
        match (&self.transport, &self.net) {
            (Transport::Tcp { .. }, _) => PROTO_TCP,
            (Transport::Udp { .. }, _) => PROTO_UDP,
            (Transport::IcmpEcho, Net::V6 { .. }) | (Transport::NeighborSolicit { .. }, _) => {
                PROTO_ICMPV6
            }
            (Transport::IcmpEcho, _) => PROTO_ICMP,
            (Transport::None, _) => 59, // IPv6 "no next header"; IPv4 carries the payload raw
        }
    }

    /// The transport header and payload, its checksum over `pseudo(len)`.
    fn transport_bytes(&self, pseudo: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let (mut t, at) = match &self.transport {
            Transport::None => return self.payload.clone(),
            Transport::Tcp {
                sport,
                dport,
                flags,
                seq,
                ack,
                window,
                options,
            } => {
                let mut t = Vec::new();
                t.extend_from_slice(&sport.to_be_bytes());
                t.extend_from_slice(&dport.to_be_bytes());
                t.extend_from_slice(&seq.to_be_bytes());
                t.extend_from_slice(&ack.to_be_bytes());
                let offset = ((20 + options.len()) / 4) as u8;
                t.extend_from_slice(&[offset << 4, *flags]);
                t.extend_from_slice(&window.to_be_bytes());
                t.extend_from_slice(&[0, 0, 0, 0]);
                t.extend_from_slice(options);
                (t, 16)
            }
            Transport::Udp { sport, dport } => {
                let mut u = Vec::new();
                u.extend_from_slice(&sport.to_be_bytes());
                u.extend_from_slice(&dport.to_be_bytes());
                u.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                (u, 6)
            }
            Transport::IcmpEcho => {
                let kind = if matches!(self.net, Net::V6 { .. }) {
                    128
                } else {
                    8
                };
                (vec![kind, 0, 0, 0, 0, 0, 0, 0], 2)
            }
            Transport::NeighborSolicit { target, slla } => {
                let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
                icmp.extend_from_slice(&target.octets());
                if *slla {
                    icmp.extend_from_slice(&[1, 1]);
                    icmp.extend_from_slice(&self.src);
                }
                (icmp, 2)
            }
        };
        t.extend_from_slice(&self.payload);
        // ICMPv4's checksum has no pseudo-header.
        let pseudo_sum = if matches!(self.transport, Transport::IcmpEcho)
            && matches!(self.net, Net::V4 { .. })
        {
            0
        } else {
            sum16(&pseudo(t.len()))
        };
        let c = fold(pseudo_sum + sum16(&t));
        t[at..at + 2].copy_from_slice(&c.to_be_bytes());
        t
    }
}

/// What DSR sends on: the same frame, its MACs rewritten to the backend's (`to`) from ours.
pub fn dsr(frame: &[u8], to: Mac, from: Mac) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&to);
    out[6..12].copy_from_slice(&from);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    const A: Mac = [0x02, 0, 0, 0, 0, 0x0a];
    const B: Mac = [0x02, 0, 0, 0, 0, 0x0b];
    const C4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const C6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
    const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

    /// The builder gives the positional builders' bytes exactly, so either can build a row.
    #[test]
    fn byte_identical_to_the_positional_builders() {
        for (flags, payload) in [
            (frames::TCP_SYN, &b""[..]),
            (frames::TCP_PSH_ACK, b"event 1\n"),
            (frames::TCP_ACK, b"odd"),
        ] {
            let tcp = |ip: Frame| ip.tcp(40000, 1514).flags(flags).payload(payload).build();
            assert_eq!(
                tcp(Frame::eth(A, B).ipv4(C4, V4)),
                frames::tcp4(A, B, C4, V4, 40000, 1514, flags, payload),
                "tcp4 {flags:#x} {payload:?}"
            );
            assert_eq!(
                tcp(Frame::eth(A, B).ipv6(C6, V6)),
                frames::tcp6(A, B, C6, V6, 40000, 1514, flags, payload),
                "tcp6 {flags:#x} {payload:?}"
            );
        }
        // natsec's Tcp4: every TCP field chosen.
        for (flags, ack, window, options) in [
            (
                frames::TCP_SYN,
                0,
                64240,
                frames::linux_syn_options(7).to_vec(),
            ),
            (frames::TCP_ACK, 5001, 502, vec![]),
        ] {
            assert_eq!(
                Frame::eth(A, B)
                    .ipv4(C4, V4)
                    .tcp(40000, 1514)
                    .flags(flags)
                    .seq(7)
                    .ack_number(ack)
                    .window(window)
                    .tcp_options(&options)
                    .payload(b"x")
                    .build(),
                frames::Tcp4::new((A, B), (C4, 40000), (V4, 1514))
                    .flags(flags)
                    .seq(7)
                    .ack(ack)
                    .win(window)
                    .options(&options)
                    .payload(b"x")
                    .frame(),
                "Tcp4 {flags:#x}"
            );
        }
        for payload in [&b""[..], b"x", b"<13>syslog line"] {
            assert_eq!(
                Frame::eth(A, B)
                    .ipv4(C4, V4)
                    .udp(5140, 514)
                    .payload(payload)
                    .build(),
                frames::udp4(A, B, C4, V4, 5140, 514, payload),
                "udp4 {payload:?}"
            );
        }
        assert_eq!(
            Frame::eth(frames::BROADCAST, B).arp_request(C4, V4).build(),
            frames::arp(1, B, C4, [0; 6], V4)
        );
        assert_eq!(
            Frame::eth(A, B).arp_reply(V4, A, C4).build(),
            frames::arp(2, B, V4, A, C4)
        );
        let group = frames::solicited_node(V6);
        let o = group.octets();
        let mcast = [0x33, 0x33, o[12], o[13], o[14], o[15]];
        for slla in [true, false] {
            let ns = Frame::eth(mcast, B).ipv6(C6, group).neighbor_solicit(V6);
            let ns = if slla { ns } else { ns.without_slla() };
            assert_eq!(
                ns.build(),
                frames::neighbor_solicit(B, C6, V6, slla),
                "NS slla {slla}"
            );
        }
        let mut vlan = frames::eth(A, B, 0x8100);
        vlan.extend_from_slice(&[0x00, 0x0a, 0x08, 0x00]);
        vlan.extend_from_slice(&frames::tcp4(A, B, C4, V4, 1, 2, frames::TCP_SYN, b"")[14..]);
        assert_eq!(
            Frame::eth(A, B)
                .vlan(10)
                .ipv4(C4, V4)
                .tcp(1, 2)
                .syn()
                .build(),
            vlan
        );
        let mut echo = frames::eth(A, B, 0x0800);
        echo.extend(frames::ipv4_header(C4, V4, 1, 8));
        echo.extend_from_slice(&[8, 0, 0xf7, 0xff, 0, 0, 0, 0]);
        assert_eq!(Frame::eth(A, B).ipv4(C4, V4).icmp_echo().build(), echo);
    }

    #[test]
    fn odd_cases_are_well_formed() {
        let opts = Frame::eth(A, B)
            .ipv4(C4, V4)
            .ihl_words(6)
            .tcp(1, 2)
            .syn()
            .build();
        assert_eq!(opts[14], 0x46);
        assert_eq!(&opts[34..38], &[1, 1, 1, 1], "NOP options");
        assert_eq!(
            fold(sum16(&opts[14..38])),
            0,
            "header checksum covers the options"
        );
        let mf = Frame::eth(A, B)
            .ipv4(C4, V4)
            .more_fragments()
            .tcp(1, 2)
            .build();
        assert_eq!(&mf[20..22], &[0x20, 0x00]);
        assert!(frames::ipv4_checksums_ok(&mf));
        let later = Frame::eth(A, B)
            .ipv4(C4, V4)
            .frag_offset(16)
            .tcp(1, 2)
            .build();
        assert_eq!(&later[20..22], &[0x00, 0x10]);
        let ext = Frame::eth(A, B)
            .ipv6(C6, V6)
            .ext_header(DEST_OPTS)
            .tcp(1, 2)
            .syn()
            .build();
        assert_eq!(ext[20], DEST_OPTS, "next header");
        assert_eq!(ext[54], 6, "the extension header names TCP next");
        assert_eq!(
            u16::from_be_bytes([ext[18], ext[19]]),
            8 + 20,
            "payload length"
        );
        let t = Frame::eth(A, B)
            .ipv4(C4, V4)
            .udp(1, 2)
            .truncated(14 + 20 + 6);
        assert_eq!(t.len(), 40);
        let lldp = Frame::eth(A, B)
            .ether_type(0x88cc)
            .payload(&[0; 46])
            .build();
        assert_eq!((lldp.len(), &lldp[12..14]), (60, &[0x88, 0xcc][..]));
    }
}
