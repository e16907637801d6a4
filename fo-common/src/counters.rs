//! Data-plane counters: one slot per XDP action, per reply kind and per reason a
//! packet was passed to the kernel. They live in a per-CPU array indexed by
//! [`Counter`]; the agent sums the CPUs.

/// Index into the `COUNTERS` per-CPU array.
///
/// The first five slots are the XDP action codes themselves, so the program can
/// count its verdict with `counter(action)`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    ActionAborted = 0,
    ActionDrop = 1,
    ActionPass = 2,
    ActionTx = 3,
    ActionRedirect = 4,
    /// ARP replies built for an owned VIP.
    ArpReply = 5,
    /// Neighbor Advertisements built for an owned IPv6 VIP.
    NaReply = 6,
    /// Packets sent to a backend by the flow table (established flow).
    FlowHit = 7,
    /// Packets sent to a backend chosen by Maglev (a TCP SYN, a new flow, or its backend
    /// left).
    FlowMiss = 8,
    /// A new flow could not be inserted in the flow table (it was still forwarded).
    FlowInsertFailed = 9,
    /// Passed: EtherType neither IPv4, IPv6 nor ARP.
    PassNotIp = 10,
    /// Passed: a VLAN mismatch: an 802.1ad (QinQ) or priority-tagged frame, a tag that
    /// is not its VIP's VLAN, or an untagged frame for a VIP on a VLAN.
    PassVlan = 11,
    /// Passed: a header was cut short by the end of the frame.
    PassTruncated = 12,
    /// Passed: IPv4 header with options (IHL > 5).
    PassIpOptions = 13,
    /// Passed: IPv4 fragment (MF set or non-zero offset).
    PassFragment = 14,
    /// Passed: IP header not valid (version, IHL < 5), or an IPv6 UDP datagram of a
    /// NAT connection with a zero checksum (illegal in IPv6, RFC 8200 §8.1).
    PassBadIp = 15,
    /// Passed: IPv6 with an extension header before the transport header.
    PassIpv6ExtHeader = 16,
    /// Passed: transport neither TCP nor UDP.
    PassNotTcpUdp = 17,
    /// Passed: destination is not a VIP.
    PassNotVip = 18,
    /// Passed: destination is a VIP this node does not own now.
    PassNotOwned = 19,
    /// Passed: VIP owned, but no service on this port and protocol.
    PassNoService = 20,
    /// Passed: service has no backend in its table.
    PassNoBackend = 21,
    /// Passed: ARP that is not a request for a VIP (reply, gratuitous, other address).
    PassArpOther = 22,
    /// Passed: ICMPv6 that is not a Neighbor Solicitation for a VIP.
    PassNdOther = 23,
    /// Passed: ARP/NS for an owned VIP whose agent heartbeat (lease) expired:
    /// the dead-man switch stops defending the VIP.
    PassLeaseExpired = 24,
    /// Passed: the ingress interface has no entry in `IFACES` (no MAC known).
    PassNoIface = 25,
    /// Passed: `bpf_xdp_adjust_tail` refused to size a Neighbor Advertisement.
    PassAdjustFailed = 26,
    /// Passed: ARP/NS for a VIP announced over BGP: the router routes it to this
    /// node, so no node answers for it on the link.
    PassRoutedVip = 27,
    /// Passed: a frame for a routed (BGP) VIP not addressed to this interface's MAC
    /// (a switch flooding after a link loss: the node it was meant for forwards it).
    PassOtherHost = 28,
    /// NAT: a new connection was translated (entries created in both NAT maps).
    NatNew = 29,
    /// NAT: a client packet of a known connection was translated.
    NatHit = 30,
    /// NAT: a backend's reply was translated back to VIP -> client.
    NatReply = 31,
    /// Passed: the NAT table is full; the new connection is not translated.
    PassNatTableFull = 32,
    /// Passed: every SNAT port tried for a new connection is in use.
    PassNatPortsExhausted = 33,
    /// Passed: the kernel has no route to forward a NAT packet (or forwarding is off
    /// on the interface: `net.ipv4.conf.IFACE.forwarding`).
    PassNatNoRoute = 34,
    /// Passed, translated: the next hop of a NAT packet has no neighbour entry (yet);
    /// the kernel forwards it and resolves the neighbour.
    PassNatNoNeigh = 35,
    /// Passed: a packet to a SNAT address that belongs to no NAT connection, or one to a
    /// NAT service that cannot open one (a TCP segment other than a SYN; a client
    /// claiming one of the node's own addresses).
    PassNatNoFlow = 36,
    /// Passed: NAT packet larger than the egress MTU.
    PassNatFragNeeded = 37,
    /// NAT: a connection event could not be queued for the sync (the `NAT_EVENTS` ring
    /// was full: the agent fell behind). The sync then has the peers resynchronise.
    NatEventLost = 38,
    /// NAT: an RST whose sequence number is not exactly the one its receiver expects
    /// (RFC 5961 §3.2). Forwarded, so that the endpoint answers it with a challenge
    /// ACK, but the connection's state is kept.
    NatRstIgnored = 39,
    /// NAT: a FIN outside the tracked window of its direction: forwarded, state kept.
    NatFinIgnored = 40,
    /// NAT: a connection completed its handshake (TCP) or saw traffic both ways (UDP)
    /// and moved from the embryonic table to the connection table (and to the sync).
    NatPromoted = 41,
    /// NAT: a connection could not move to the full connection table; it goes on from
    /// the embryonic table, where a flood may evict it.
    NatPromoteFailed = 42,
    /// Passed: a client packet of an embryonic NAT connection whose SNAT port another
    /// connection holds now (the LRU evicted the port's reservation but not the
    /// connection, and the port was handed out again). The connection is removed
    /// rather than sent from a port that is no longer its own.
    PassNatEmbryoLost = 43,
    /// Passed: a TCP segment of a NAT connection with a data offset under 5 words (not
    /// a valid header): the kernel drops it.
    PassNatBadTcp = 44,
    /// A TCP RST from a client to an owned (or draining) VIP, counted only while a
    /// drill records (`DRILL` index 0 non-zero).
    RstToVip = 45,
    /// A TCP RST from a backend to a SNAT address (a NAT connection's reply path),
    /// counted only while a drill records.
    RstFromBackend = 46,
    /// NAT: an ICMP error to a SNAT address about a packet sent to a backend (a router
    /// on the backend's path: frag needed, unreachable, TTL exceeded) was translated
    /// for the connection's client (see `fo-ebpf/src/nat_icmp.rs`).
    NatIcmpToClient = 47,
    /// NAT: an ICMP error from a client to a NAT VIP about a reply it got (port
    /// unreachable and the like) was translated for the connection's backend.
    NatIcmpToBackend = 48,
    /// Passed: an ICMP error to a SNAT address or a NAT VIP that is cut short (the
    /// quote lacks an IPv4 header and 8 bytes of TCP/UDP) or does not quote a TCP/UDP
    /// packet of this node (IPv4 options, a later fragment, another address).
    PassNatIcmpBad = 49,
    /// Passed: an ICMP error to a SNAT address or a NAT VIP that quotes no known NAT
    /// connection.
    PassNatIcmpNoFlow = 50,
    /// Tunnel: a client packet was encapsulated to its backend.
    TunnelEncap = 51,
    /// Tunnel: a client packet too big for the path once encapsulated was answered
    /// with ICMP "fragmentation needed" / ICMPv6 "packet too big".
    TunnelTooBig = 52,
    /// Tunnel: an ICMP "fragmentation needed" / "packet too big" from the path about an
    /// encapsulated packet was turned into the same error for the client.
    TunnelIcmpRelayed = 53,
    /// Passed: an IPv4 packet without DF too big for the tunnel once encapsulated (the
    /// kernel fragments or drops it; fo never fragments).
    PassTunnelTooBig = 54,
    /// Passed: an ICMP error to a tunnel source address that could not be relayed to a
    /// client (quote cut short, not about a tunnel packet, no route to the client).
    PassTunnelIcmp = 55,
}

impl Counter {
    /// Number of slots in the `COUNTERS` array.
    pub const COUNT: u32 = 56;

    /// Every counter, in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::ActionAborted,
        Counter::ActionDrop,
        Counter::ActionPass,
        Counter::ActionTx,
        Counter::ActionRedirect,
        Counter::ArpReply,
        Counter::NaReply,
        Counter::FlowHit,
        Counter::FlowMiss,
        Counter::FlowInsertFailed,
        Counter::PassNotIp,
        Counter::PassVlan,
        Counter::PassTruncated,
        Counter::PassIpOptions,
        Counter::PassFragment,
        Counter::PassBadIp,
        Counter::PassIpv6ExtHeader,
        Counter::PassNotTcpUdp,
        Counter::PassNotVip,
        Counter::PassNotOwned,
        Counter::PassNoService,
        Counter::PassNoBackend,
        Counter::PassArpOther,
        Counter::PassNdOther,
        Counter::PassLeaseExpired,
        Counter::PassNoIface,
        Counter::PassAdjustFailed,
        Counter::PassRoutedVip,
        Counter::PassOtherHost,
        Counter::NatNew,
        Counter::NatHit,
        Counter::NatReply,
        Counter::PassNatTableFull,
        Counter::PassNatPortsExhausted,
        Counter::PassNatNoRoute,
        Counter::PassNatNoNeigh,
        Counter::PassNatNoFlow,
        Counter::PassNatFragNeeded,
        Counter::NatEventLost,
        Counter::NatRstIgnored,
        Counter::NatFinIgnored,
        Counter::NatPromoted,
        Counter::NatPromoteFailed,
        Counter::PassNatEmbryoLost,
        Counter::PassNatBadTcp,
        Counter::RstToVip,
        Counter::RstFromBackend,
        Counter::NatIcmpToClient,
        Counter::NatIcmpToBackend,
        Counter::PassNatIcmpBad,
        Counter::PassNatIcmpNoFlow,
        Counter::TunnelEncap,
        Counter::TunnelTooBig,
        Counter::TunnelIcmpRelayed,
        Counter::PassTunnelTooBig,
        Counter::PassTunnelIcmp,
    ];

    /// Stable snake_case label for metrics and status output.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::ActionAborted => "aborted",
            Counter::ActionDrop => "drop",
            Counter::ActionPass => "pass",
            Counter::ActionTx => "tx",
            Counter::ActionRedirect => "redirect",
            Counter::ArpReply => "arp_reply",
            Counter::NaReply => "na_reply",
            Counter::FlowHit => "flow_hit",
            Counter::FlowMiss => "flow_miss",
            Counter::FlowInsertFailed => "flow_insert_failed",
            Counter::PassNotIp => "not_ip",
            Counter::PassVlan => "vlan",
            Counter::PassTruncated => "truncated",
            Counter::PassIpOptions => "ip_options",
            Counter::PassFragment => "fragment",
            Counter::PassBadIp => "bad_ip",
            Counter::PassIpv6ExtHeader => "ipv6_ext_header",
            Counter::PassNotTcpUdp => "not_tcp_udp",
            Counter::PassNotVip => "not_vip",
            Counter::PassNotOwned => "not_owned",
            Counter::PassNoService => "no_service",
            Counter::PassNoBackend => "no_backend",
            Counter::PassArpOther => "arp_other",
            Counter::PassNdOther => "nd_other",
            Counter::PassLeaseExpired => "lease_expired",
            Counter::PassNoIface => "no_iface",
            Counter::PassAdjustFailed => "adjust_failed",
            Counter::PassRoutedVip => "routed_vip",
            Counter::PassOtherHost => "other_host",
            Counter::NatNew => "nat_new",
            Counter::NatHit => "nat_hit",
            Counter::NatReply => "nat_reply",
            Counter::PassNatTableFull => "nat_table_full",
            Counter::PassNatPortsExhausted => "nat_ports_exhausted",
            Counter::PassNatNoRoute => "nat_no_route",
            Counter::PassNatNoNeigh => "nat_no_neigh",
            Counter::PassNatNoFlow => "nat_no_flow",
            Counter::PassNatFragNeeded => "nat_frag_needed",
            Counter::NatEventLost => "nat_event_lost",
            Counter::NatRstIgnored => "nat_rst_ignored",
            Counter::NatFinIgnored => "nat_fin_ignored",
            Counter::NatPromoted => "nat_promoted",
            Counter::NatPromoteFailed => "nat_promote_failed",
            Counter::PassNatEmbryoLost => "nat_embryo_lost",
            Counter::PassNatBadTcp => "nat_bad_tcp",
            Counter::RstToVip => "rst_to_vip",
            Counter::RstFromBackend => "rst_from_backend",
            Counter::NatIcmpToClient => "nat_icmp_to_client",
            Counter::NatIcmpToBackend => "nat_icmp_to_backend",
            Counter::PassNatIcmpBad => "nat_icmp_bad",
            Counter::PassNatIcmpNoFlow => "nat_icmp_no_flow",
            Counter::TunnelEncap => "tunnel_encap",
            Counter::TunnelTooBig => "tunnel_too_big",
            Counter::TunnelIcmpRelayed => "tunnel_icmp_relayed",
            Counter::PassTunnelTooBig => "tunnel_too_big_no_df",
            Counter::PassTunnelIcmp => "tunnel_icmp",
        }
    }

    /// True for the "passed to the kernel because …" reasons.
    pub const fn is_pass_reason(self) -> bool {
        let i = self as u32;
        (i >= Counter::PassNotIp as u32 && i <= Counter::PassAdjustFailed as u32)
            || (i >= Counter::PassNatTableFull as u32 && i <= Counter::PassNatFragNeeded as u32)
            || (i >= Counter::PassNatEmbryoLost as u32 && i <= Counter::PassNatBadTcp as u32)
            || (i >= Counter::PassNatIcmpBad as u32 && i <= Counter::PassNatIcmpNoFlow as u32)
            || (i >= Counter::PassTunnelTooBig as u32 && i <= Counter::PassTunnelIcmp as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn all_is_in_index_order_and_complete() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{c:?} is out of place in Counter::ALL");
        }
    }

    #[test]
    fn only_pass_reasons_are_pass_reasons() {
        assert!(Counter::PassNotIp.is_pass_reason());
        assert!(Counter::PassNatFragNeeded.is_pass_reason());
        assert!(Counter::PassNatEmbryoLost.is_pass_reason());
        assert!(Counter::PassNatBadTcp.is_pass_reason());
        assert!(Counter::PassNatIcmpBad.is_pass_reason());
        assert!(Counter::PassNatIcmpNoFlow.is_pass_reason());
        for c in [
            Counter::NatNew,
            Counter::NatReply,
            Counter::NatEventLost,
            Counter::FlowHit,
            Counter::NatPromoteFailed,
            Counter::NatIcmpToClient,
            Counter::NatIcmpToBackend,
        ] {
            assert!(!c.is_pass_reason(), "{c:?}");
        }
    }

    #[test]
    fn action_slots_match_xdp_action_codes() {
        use crate::xdp_action::*;
        assert_eq!(Counter::ActionAborted as u32, XDP_ABORTED);
        assert_eq!(Counter::ActionDrop as u32, XDP_DROP);
        assert_eq!(Counter::ActionPass as u32, XDP_PASS);
        assert_eq!(Counter::ActionTx as u32, XDP_TX);
        assert_eq!(Counter::ActionRedirect as u32, XDP_REDIRECT);
    }
}
