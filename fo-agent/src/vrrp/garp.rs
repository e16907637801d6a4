//! Announcing the VIPs after a takeover: gratuitous ARP for IPv4 (an ARP request with
//! sender = target = VIP, broadcast, RFC 5227 §3 "ARP Announcement") and unsolicited
//! Neighbor Advertisements for IPv6 (RFC 4861 §7.2.6: to ff02::1, Override set, hop
//! limit 255), sent from the interface's MAC over an AF_PACKET socket.
//!
//! The frames are built here byte by byte (tested below); the socket only writes them.

use std::fs::File;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd as _, OwnedFd};

/// Writes Ethernet frames on one interface.
pub struct Announcer {
    /// An AF_PACKET socket bound to the interface; `File` only for `write`.
    sock: File,
    mac: [u8; 6],
}

#[derive(Debug, thiserror::Error)]
#[error("AF_PACKET socket on ifindex {ifindex}: {what}")]
pub struct AnnounceError {
    pub ifindex: u32,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

impl Announcer {
    /// A send-only packet socket on `ifindex` (protocol 0: it receives nothing).
    pub fn open(ifindex: u32, mac: [u8; 6]) -> Result<Announcer, AnnounceError> {
        let err = |what| {
            move |source| AnnounceError {
                ifindex,
                what,
                source,
            }
        };
        // SAFETY: socket(2) has no memory preconditions; the fd is owned right below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(err("socket (needs CAP_NET_RAW)")(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_ll = unsafe_zeroed_sockaddr_ll();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
        let sock = File::from(fd);
        // SAFETY: bind(2) reads a sockaddr_ll we own, with its exact size. Binding an
        // AF_PACKET socket to an interface has no safe wrapper in std or socket2.
        let rc = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(err("bind to the interface")(io::Error::last_os_error()));
        }
        Ok(Announcer { sock, mac })
    }

    /// One announcement for each VIP, with an 802.1Q tag of `vlan` if given (the VIPs
    /// live on that VLAN of the interface). Returns the first error, after trying them all.
    pub fn announce(&self, vips: &[IpAddr], vlan: Option<u16>) -> io::Result<()> {
        let mut first_err = None;
        for &vip in vips {
            let frame = match vip {
                IpAddr::V4(v) => garp_frame(self.mac, v),
                IpAddr::V6(v) => unsolicited_na_frame(self.mac, v),
            };
            let frame = match vlan {
                Some(id) => tagged(&frame, id),
                None => frame,
            };
            if let Err(e) = (&self.sock).write_all(&frame) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn unsafe_zeroed_sockaddr_ll() -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is a plain C struct of integers and a byte array; all zeroes is
    // a valid value.
    unsafe { std::mem::zeroed() }
}

const BROADCAST: [u8; 6] = [0xff; 6];

/// `frame` with an 802.1Q tag (TPID 0x8100, priority 0, VLAN `vlan`) after its MACs.
pub fn tagged(frame: &[u8], vlan: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&0x8100u16.to_be_bytes());
    f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

/// Ethernet + ARP request: who-has VIP tell VIP, from `mac`, to broadcast.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&1u16.to_be_bytes()); // request
    f.extend_from_slice(&mac); // sender hardware address
    f.extend_from_slice(&vip.octets()); // sender protocol address
    f.extend_from_slice(&[0; 6]); // target hardware address: ignored in a request
    f.extend_from_slice(&vip.octets()); // target protocol address
    f
}

/// All-nodes multicast, ff02::1.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Ethernet + IPv6 + ICMPv6 Neighbor Advertisement for `vip`: Override set, Solicited
/// and Router clear, with the Target Link-Layer Address option; from the VIP to ff02::1.
pub fn unsolicited_na_frame(mac: [u8; 6], vip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type NA, code 0, checksum below
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // R=0 S=0 O=1, reserved
    icmp.extend_from_slice(&vip.octets()); // target
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(vip, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let dst_mac = [0x33, 0x33, 0, 0, 0, 1];
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, no class, no flow label
    f.extend_from_slice(&u16::try_from(icmp.len()).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // next header ICMPv6, hop limit 255
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// RFC 4443 §2.3: one's complement sum over the IPv6 pseudo-header and the message.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        let (words, rest) = bytes.as_chunks::<2>();
        for w in words {
            sum += u64::from(u16::from_be_bytes(*w));
        }
        if let [b] = rest {
            sum += u64::from(*b) << 8;
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&u32::try_from(msg.len()).unwrap_or(0).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(u16::try_from(sum).unwrap_or(0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

    #[test]
    fn garp_is_a_broadcast_request_for_the_vip() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100));
        let expected: Vec<u8> = [
            &[0xff; 6][..],
            &MAC,
            &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1],
            &MAC,
            &[192, 0, 2, 100],
            &[0; 6],
            &[192, 0, 2, 100],
        ]
        .concat();
        assert_eq!(f, expected);
    }

    #[test]
    fn a_tagged_announcement_has_the_tag_after_the_macs() {
        let plain = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100));
        let f = tagged(&plain, 100);
        assert_eq!(f.len(), plain.len() + 4);
        assert_eq!(&f[..12], &plain[..12]);
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&f[16..], &plain[12..]);
    }

    #[test]
    fn na_has_override_hop_limit_255_and_a_valid_checksum() {
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na_frame(MAC, vip);
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[14 + 7], 255, "hop limit");
        assert_eq!(f[14 + 6], 58, "next header");
        let icmp = &f[54..];
        assert_eq!(icmp[0], 136);
        assert_eq!(icmp[4], 0x20, "override flag only");
        assert_eq!(&icmp[8..24], &vip.octets());
        assert_eq!(&icmp[24..], &[2, 1, 0x02, 0, 0, 0, 0, 0x0a]);
        // Summing a message that carries its checksum gives zero (all ones, complemented).
        assert_eq!(icmpv6_checksum(vip, ALL_NODES, icmp), 0);
    }
}
