//! Crafted VRRP packets on a real link, for the input-safety tests: whole Ethernet frames
//! written to an `AF_PACKET` socket in a namespace (so TTL, source address, VRID, checksum
//! and trailer are exactly what the test says, whatever the kernel's routing thinks), and
//! a raw protocol-112 socket that captures real adverts to replay them.
//!
//! Messages are built with `fo_vrrp`'s encoder and HMAC sealer, then damaged on purpose;
//! the v3 checksum is recomputed here (RFC 5798 §5.2.8, RFC 1071) for damage that must get
//! past it.

use std::io::{self, Read as _};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use fo_vrrp::auth::{self, AuthKey, Sequence};
use fo_vrrp::{AdverInterval, Advert, Auth, Centisecs, Priority, Vrid};

use crate::frames::{Mac, eth, fold, sum16};
use crate::netns::Netns;

/// The Ethernet address of 224.0.0.18.
pub const VRRP_MULTICAST_MAC: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// The IPv4 VRRP group.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// A v3 IPv4 advert message from `src` to `dst` (checksum over the pseudo-header).
pub fn v3_message(
    vrid: u8,
    priority: u8,
    interval_cs: u16,
    vips: &[Ipv4Addr],
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Vec<u8> {
    Advert {
        vrid: Vrid::new(vrid).expect("VRID 1..=255"),
        priority: Priority(priority),
        max_adver_interval: AdverInterval::Centisecs(Centisecs(interval_cs)),
        addresses: vips.iter().map(|&v| v.into()).collect(),
        auth: Auth::None,
    }
    .encode(src.into(), dst.into())
    .expect("a valid advert encodes")
}

/// Recompute the v3 checksum of a (damaged) message so that the damage is what is judged.
pub fn fix_v3_checksum(msg: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    if msg.len() < 8 {
        return;
    }
    msg[6] = 0;
    msg[7] = 0;
    let mut pseudo = Vec::with_capacity(12 + msg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 112]);
    pseudo.extend_from_slice(&u16::try_from(msg.len()).expect("short").to_be_bytes());
    pseudo.extend_from_slice(msg);
    let c = fold(sum16(&pseudo));
    msg[6..8].copy_from_slice(&c.to_be_bytes());
}

/// `msg` with fo's HMAC trailer.
pub fn seal(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr, key: &AuthKey, seq: u64) -> Vec<u8> {
    auth::seal(msg, src.into(), dst.into(), key, Sequence(seq))
}

/// An Ethernet + IPv4 (protocol 112, this TTL) frame around a VRRP payload.
pub fn frame(
    dst_mac: Mac,
    src_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, 0x0800);
    let total = u16::try_from(20 + payload.len()).expect("fits");
    let mut h = vec![0x45, 0xc0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0x00, ttl, 112, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    f
}

/// An `AF_PACKET` socket that sends whole frames out of one interface of a namespace.
pub struct Injector {
    fd: OwnedFd,
    ifindex: i32,
}

impl Injector {
    pub fn open(ns: &Netns, ifname: &str) -> Injector {
        let name = std::ffi::CString::new(ifname).expect("interface name");
        let (fd, ifindex) = ns.run(move || {
            // SAFETY: plain socket(2) and if_nametoindex(3) calls with valid arguments; the
            // returned descriptor is owned by the OwnedFd below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(ifindex > 0, "no interface {name:?} in the namespace");
            // SAFETY: fd is a fresh descriptor that nothing else owns.
            (unsafe { OwnedFd::from_raw_fd(fd) }, ifindex)
        });
        Injector {
            fd,
            ifindex: i32::try_from(ifindex).expect("ifindex"),
        }
    }

    /// Send one frame; `Err` if the kernel refused it (e.g. a full queue under a flood).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = 0x0800u16.to_be();
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto(2) reads `frame` and `addr` for the lengths given; both outlive
        // the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// A raw IPv4 protocol-112 socket in a namespace: a copy of every VRRP packet it receives.
pub struct Capture {
    socket: socket2::Socket,
}

impl Capture {
    pub fn open(ns: &Netns) -> Capture {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = ns.run(|| {
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))
                .unwrap_or_else(|e| panic!("raw VRRP socket: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap_or_else(|e| panic!("SO_RCVTIMEO: {e}"));
        Capture { socket }
    }

    /// The next packet from `src` within `timeout`: (destination, IP payload).
    pub fn next_from(&self, src: Ipv4Addr, timeout: Duration) -> Option<(Ipv4Addr, Vec<u8>)> {
        let start = std::time::Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < timeout {
            let Ok(n) = (&self.socket).read(&mut buf) else {
                continue;
            };
            let p = &buf[..n];
            if n < 20 {
                continue;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let from = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            let to = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
            if from == src && n > ihl {
                return Some((to, p[ihl..].to_vec()));
            }
        }
        None
    }
}
