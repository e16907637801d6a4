//! ICMP echo to one address, for the witness and peer probes of split-brain protection.
//!
//! A raw ICMP socket (CAP_NET_RAW, which the agent has for VRRP) rather than an ICMP
//! datagram ("ping") socket: those depend on `net.ipv4.ping_group_range`, empty by
//! default in a new network namespace. Echo needs no cooperation from the target
//! beyond its IP stack answering, and works across a router (unlike ARP), so the
//! gateway or any host can be the witness.
//!
//! The socket is `connect`ed to its target: the kernel then hands it only ICMP from
//! that address. Every raw ICMP socket sees every echo reply, so replies are matched by
//! identifier too. The kernel fills in the ICMPv6 checksum (RFC 3542 §3.1); the ICMPv4
//! one is ours.

use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Header (8) plus a small payload that marks fo's probes in a capture.
const PAYLOAD: &[u8] = b"fo-witness-probe";

/// An echo sender/receiver for one target.
pub struct Pinger {
    fd: AsyncFd<Socket>,
    target: IpAddr,
    id: u16,
}

impl Pinger {
    /// Open a raw ICMP socket towards `target`; probes carry identifier `id`. An IPv6
    /// link-local target is reached through interface `ifindex` (VRRPv3 peers usually are).
    pub fn open(target: IpAddr, id: u16, ifindex: u32) -> io::Result<Pinger> {
        let (domain, proto) = match target {
            IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
            IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
        };
        let sock = Socket::new(domain, Type::RAW, Some(proto))?;
        sock.set_nonblocking(true)?;
        let to = match target {
            IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
                SocketAddr::V6(std::net::SocketAddrV6::new(a, 0, 0, ifindex))
            }
            _ => SocketAddr::new(target, 0),
        };
        sock.connect(&to.into())?;
        // SAFETY: `sock` owns its descriptor and is moved into the AsyncFd, which never
        // hands out `&mut Socket`; the fd stays open and the same until the AsyncFd drops.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)?;
        Ok(Pinger { fd, target, id })
    }

    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// Send echo request number `seq`. A full socket buffer or an unreachable
    /// network is an error: the probe is simply lost.
    pub fn send(&self, seq: u16) -> io::Result<()> {
        let msg = echo_request(self.target.is_ipv6(), self.id, seq);
        self.fd.get_ref().send(&msg).map(|_| ())
    }

    /// Wait for the next echo reply to one of our requests; returns its sequence number.
    pub async fn recv(&self) -> io::Result<u16> {
        let v6 = self.target.is_ipv6();
        loop {
            let got = self
                .fd
                .async_io(Interest::READABLE, |s| {
                    let mut buf = [0u8; 1500];
                    let n = (&*s).read(&mut buf)?;
                    Ok(parse_reply(&buf[..n], v6, self.id))
                })
                .await?;
            if let Some(seq) = got {
                return Ok(seq);
            }
        }
    }
}

/// An echo request: type, code 0, checksum, identifier, sequence, payload.
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + PAYLOAD.len());
    m.push(if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 });
    m.push(0);
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(PAYLOAD);
    if !v6 {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    m
}

/// The sequence number of an echo reply with identifier `id`. A raw IPv4 socket
/// delivers the IP header (skipped by its IHL), a raw IPv6 socket does not.
pub fn parse_reply(packet: &[u8], v6: bool, id: u16) -> Option<u16> {
    let icmp = if v6 {
        packet
    } else {
        let first = *packet.first()?;
        if first >> 4 != 4 {
            return None;
        }
        packet.get(usize::from(first & 0x0f) * 4..)?
    };
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < 8 || icmp[0] != want || icmp[1] != 0 {
        return None;
    }
    if u16::from_be_bytes([icmp[4], icmp[5]]) != id {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

/// RFC 1071 Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_v4_checksums_to_zero() {
        let m = echo_request(false, 0x1234, 7);
        assert_eq!(&m[..2], &[8, 0]);
        assert_eq!(&m[4..8], &[0x12, 0x34, 0, 7]);
        // A correct checksum makes the sum over the message 0xffff, i.e. checksum() 0.
        assert_eq!(checksum(&m), 0);
    }

    #[test]
    fn replies_are_matched_by_type_and_identifier() {
        let mut reply = echo_request(false, 0x1234, 9);
        reply[0] = ECHO_REPLY_V4;
        let mut ip = vec![0x45u8; 1];
        ip.resize(20, 0);
        let mut packet = ip.clone();
        packet.extend_from_slice(&reply);
        assert_eq!(parse_reply(&packet, false, 0x1234), Some(9));
        assert_eq!(
            parse_reply(&packet, false, 0x1235),
            None,
            "someone else's ping"
        );
        let mut request = ip;
        request.extend_from_slice(&echo_request(false, 0x1234, 9));
        assert_eq!(parse_reply(&request, false, 0x1234), None, "not a reply");
        assert_eq!(parse_reply(&packet[..24], false, 0x1234), None, "truncated");

        let mut reply6 = echo_request(true, 0x1234, 3);
        reply6[0] = ECHO_REPLY_V6;
        assert_eq!(parse_reply(&reply6, true, 0x1234), Some(3));
        assert_eq!(parse_reply(&reply6, false, 0x1234), None);
    }
}
