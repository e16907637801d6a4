//! Raw IP protocol 112 sockets, one per address family and interface.
//!
//! * Bound to the interface (`SO_BINDTODEVICE`): only that link's adverts are heard, and
//!   ours leave through it whatever the routing table says.
//! * Sent with TTL / hop limit 255, unicast and multicast (RFC 5798 §5.1.1.3, §5.1.2.3);
//!   multicast loopback off, so a node does not hear itself.
//! * The source is set per packet with `IP_PKTINFO` / `IPV6_PKTINFO` rather than by
//!   `bind()`: a raw socket bound to an address only receives packets addressed to it,
//!   which would hide the adverts sent to the multicast group.
//! * Receive: a raw IPv4 socket delivers the IP header, so TTL, source and destination
//!   are read from it. A raw IPv6 socket does not; the hop limit and the destination
//!   come as ancillary data (`IPV6_RECVHOPLIMIT`, `IPV6_RECVPKTINFO`).
//! * Floods: a receive buffer of [`RECV_BUFFER`] (forced past `rmem_max` when allowed), and
//!   `SO_RXQ_OVFL`, so the packets the kernel had to drop because the buffer was full are
//!   counted too ([`Received::kernel_drops`]).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use fo_vrrp::packet::{IP_PROTO_VRRP, MULTICAST_V4, MULTICAST_V6, VRRP_TTL};
use socket2::{
    Domain, InterfaceIndexOrAddress, MaybeUninitSlice, MsgHdr, MsgHdrMut, Protocol, SockAddr,
    Socket, Type,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Why a VRRP socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("VRRP {family} socket on {interface}: {what}")]
pub struct SocketError {
    pub family: &'static str,
    pub interface: String,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// One received packet: the VRRP message and what the IP layer said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl_or_hop_limit: u8,
    pub payload: Vec<u8>,
    /// `SO_RXQ_OVFL`: packets the kernel dropped on this socket so far (its buffer was
    /// full), as of this packet; `None` while there were none.
    pub kernel_drops: Option<u32>,
}

/// Receive buffer asked for: about 4,000 small adverts queued before the kernel drops.
pub const RECV_BUFFER: usize = 1 << 20;

/// A raw VRRP socket of one family on one interface.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ipv6: bool,
    ifindex: u32,
}

/// The largest VRRP packet: 255 IPv6 addresses (4088 bytes) plus headers.
const MAX_PACKET: usize = 4096 + 64;

impl VrrpSocket {
    /// Open the socket on `interface` (index `ifindex`). `multicast`: join the VRRP group
    /// there (routers without unicast peers). Needs CAP_NET_RAW.
    pub fn open(
        interface: &str,
        ifindex: u32,
        ipv6: bool,
        multicast: bool,
    ) -> Result<VrrpSocket, SocketError> {
        let family = if ipv6 { "IPv6" } else { "IPv4" };
        let err = |what: &'static str| {
            let interface = interface.to_owned();
            move |source| SocketError {
                family,
                interface,
                what,
                source,
            }
        };
        let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(IP_PROTO_VRRP))),
        )
        .map_err(err("socket (needs CAP_NET_RAW)"))?;
        sock.bind_device(Some(interface.as_bytes()))
            .map_err(err("SO_BINDTODEVICE"))?;
        sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        // Root may exceed net.core.rmem_max; otherwise take what the kernel grants.
        let size = i32::try_from(RECV_BUFFER).unwrap_or(i32::MAX);
        if set_int_option(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            sock.set_recv_buffer_size(RECV_BUFFER)
                .map_err(err("SO_RCVBUF"))?;
        }
        set_int_option(&sock, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
            .map_err(err("SO_RXQ_OVFL"))?;
        let ttl = u32::from(VRRP_TTL);
        if ipv6 {
            sock.set_unicast_hops_v6(ttl)
                .map_err(err("IPV6_UNICAST_HOPS"))?;
            sock.set_multicast_hops_v6(ttl)
                .map_err(err("IPV6_MULTICAST_HOPS"))?;
            sock.set_multicast_loop_v6(false)
                .map_err(err("IPV6_MULTICAST_LOOP"))?;
            sock.set_multicast_if_v6(ifindex)
                .map_err(err("IPV6_MULTICAST_IF"))?;
            sock.set_recv_hoplimit_v6(true)
                .map_err(err("IPV6_RECVHOPLIMIT"))?;
            set_int_option(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(err("IPV6_RECVPKTINFO"))?;
            if multicast {
                sock.join_multicast_v6(&MULTICAST_V6, ifindex)
                    .map_err(err("joining ff02::12"))?;
            }
        } else {
            sock.set_ttl_v4(ttl).map_err(err("IP_TTL"))?;
            sock.set_multicast_ttl_v4(ttl)
                .map_err(err("IP_MULTICAST_TTL"))?;
            sock.set_multicast_loop_v4(false)
                .map_err(err("IP_MULTICAST_LOOP"))?;
            // The outgoing interface of multicast is given per packet (IP_PKTINFO) and
            // by SO_BINDTODEVICE; IP_MULTICAST_IF would need the source address here.
            if multicast {
                sock.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(ifindex))
                    .map_err(err("joining 224.0.0.18"))?;
            }
        }
        // SAFETY: `sock` owns its descriptor and is moved into the AsyncFd, which never
        // hands out `&mut Socket`; the fd stays open and the same until the AsyncFd drops.
        // (tokio made registration unsafe because a `T: AsRawFd` could close or swap its fd.)
        let fd = unsafe { AsyncFd::register(sock) }
            .map_err(|e| err("registering with tokio")(io::Error::from(e)))?;
        Ok(VrrpSocket { fd, ipv6, ifindex })
    }

    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Send one VRRP message from `src` (a local address) to `dst`. Raw sockets do not
    /// block on send in practice; a full buffer is reported as `WouldBlock`.
    pub fn send(&self, payload: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        let (to, control) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) if !self.ipv6 => (
                SockAddr::from(SocketAddr::new(d.into(), 0)),
                pktinfo_v4(self.ifindex, s),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) if self.ipv6 => {
                let scope = if is_link_local(d) || d.is_multicast() {
                    self.ifindex
                } else {
                    0
                };
                (
                    SockAddr::from(SocketAddrV6::new(d, 0, 0, scope)),
                    pktinfo_v6(self.ifindex, s),
                )
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{src} -> {dst} on a {} socket",
                        if self.ipv6 { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
        };
        let bufs = [io::IoSlice::new(payload)];
        let msg = MsgHdr::new()
            .with_addr(&to)
            .with_buffers(&bufs)
            .with_control(&control);
        self.fd.get_ref().sendmsg(&msg, 0).map(|_| ())
    }

    /// Wait for the next packet. Packets that are not readable as VRRP-over-IP (a
    /// truncated IPv4 header, missing ancillary data) are skipped.
    pub async fn recv(&self) -> io::Result<Received> {
        loop {
            let got = self
                .fd
                .async_io(Interest::READABLE, |s| {
                    if self.ipv6 { recv_v6(s) } else { recv_v4(s) }
                })
                .await?;
            if let Some(r) = got {
                return Ok(r);
            }
        }
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Read one IPv4 datagram, header included. `Ok(None)`: not a usable packet.
fn recv_v4(sock: &Socket) -> io::Result<Option<Received>> {
    let mut data = [MaybeUninit::new(0u8); MAX_PACKET];
    let mut control = [MaybeUninit::new(0u8); 64];
    let (data, control) = recvmsg(sock, &mut data, &mut control, None)?;
    Ok(parse_ipv4(data).map(|r| Received {
        kernel_drops: kernel_drops(control),
        ..r
    }))
}

/// The `SO_RXQ_OVFL` count in a received control buffer.
fn kernel_drops(control: &[u8]) -> Option<u32> {
    cmsgs(control).find_map(|(level, ty, body)| {
        (level == libc::SOL_SOCKET && ty == libc::SO_RXQ_OVFL && body.len() >= 4)
            .then(|| u32::from_ne_bytes([body[0], body[1], body[2], body[3]]))
    })
}

/// Split a raw IPv4 datagram into what `decode` needs.
pub fn parse_ipv4(packet: &[u8]) -> Option<Received> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || packet.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // The kernel hands raw sockets the datagram as received; trust the shorter length.
    let end = total.clamp(ihl, packet.len());
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some(Received {
        src: src.into(),
        dst: dst.into(),
        ttl_or_hop_limit: packet[8],
        payload: packet[ihl..end].to_vec(),
        kernel_drops: None,
    })
}

/// Read one IPv6 VRRP message with its hop limit and destination from ancillary data.
fn recv_v6(sock: &Socket) -> io::Result<Option<Received>> {
    let mut data = [MaybeUninit::new(0u8); MAX_PACKET];
    let mut control = [MaybeUninit::new(0u8); 256];
    let mut from = SockAddr::from(SocketAddr::from(([0u16; 8], 0)));
    let (data, control) = recvmsg(sock, &mut data, &mut control, Some(&mut from))?;
    let Some(SocketAddr::V6(src)) = from.as_socket() else {
        return Ok(None);
    };
    let mut hop_limit = None;
    let mut dst = None;
    for (level, ty, body) in cmsgs(control) {
        match (level, ty) {
            (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) if body.len() >= 4 => {
                let v = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                hop_limit = u8::try_from(v).ok();
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if body.len() >= 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[..16]);
                dst = Some(Ipv6Addr::from(a));
            }
            _ => {}
        }
    }
    let (Some(ttl_or_hop_limit), Some(dst)) = (hop_limit, dst) else {
        return Ok(None);
    };
    Ok(Some(Received {
        src: IpAddr::V6(*src.ip()),
        dst: IpAddr::V6(dst),
        ttl_or_hop_limit,
        payload: data.to_vec(),
        kernel_drops: kernel_drops(control),
    }))
}

/// One `recvmsg(2)` into `data` and `control`, and the sender's address into `from`
/// if given: the bytes received of each.
fn recvmsg<'a>(
    sock: &Socket,
    data: &'a mut [MaybeUninit<u8>],
    control: &'a mut [MaybeUninit<u8>],
    from: Option<&mut SockAddr>,
) -> io::Result<(&'a [u8], &'a [u8])> {
    let (n, control_len) = {
        let mut bufs = [MaybeUninitSlice::new(&mut *data)];
        let msg = MsgHdrMut::new()
            .with_buffers(&mut bufs)
            .with_control(&mut *control);
        let mut msg = match from {
            Some(from) => msg.with_addr(from),
            None => msg,
        };
        let n = sock.recvmsg(&mut msg, 0)?;
        (n, msg.control_len())
    };
    Ok((
        assume_init(&data[..n.min(data.len())]),
        assume_init(&control[..control_len.min(control.len())]),
    ))
}

/// View bytes the kernel (or we) wrote as initialised.
fn assume_init(buf: &[MaybeUninit<u8>]) -> &[u8] {
    // SAFETY: every caller's buffer was created fully initialised (`MaybeUninit::new(0)`)
    // and the kernel only writes bytes into it, so all of it is initialised `u8`s;
    // `MaybeUninit<u8>` has the layout of `u8`. socket2's recvmsg wants MaybeUninit
    // buffers, which is the only reason this cast is needed.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) }
}

// ---- ancillary data, built and parsed in safe code --------------------------------------
//
// Linux `struct cmsghdr` is { size_t cmsg_len; int cmsg_level; int cmsg_type; } followed by
// the data, each message padded to a multiple of sizeof(size_t) (CMSG_ALIGN).

const CMSG_ALIGN: usize = std::mem::size_of::<usize>();
const CMSG_HDR: usize = std::mem::size_of::<libc::cmsghdr>();

const fn cmsg_align(n: usize) -> usize {
    (n + CMSG_ALIGN - 1) & !(CMSG_ALIGN - 1)
}

/// One control message (CMSG_SPACE bytes) carrying `data`.
fn cmsg(level: i32, ty: i32, data: &[u8]) -> Vec<u8> {
    let len = cmsg_align(CMSG_HDR) + data.len();
    let mut out = Vec::with_capacity(cmsg_align(len));
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&level.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.resize(cmsg_align(CMSG_HDR), 0);
    out.extend_from_slice(data);
    out.resize(cmsg_align(len), 0);
    out
}

/// Iterate over (level, type, data) of a received control buffer.
fn cmsgs(mut buf: &[u8]) -> impl Iterator<Item = (i32, i32, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < CMSG_HDR {
            return None;
        }
        let mut len_bytes = [0u8; CMSG_ALIGN];
        len_bytes.copy_from_slice(&buf[..CMSG_ALIGN]);
        let len = usize::from_ne_bytes(len_bytes);
        let level = i32::from_ne_bytes([
            buf[CMSG_ALIGN],
            buf[CMSG_ALIGN + 1],
            buf[CMSG_ALIGN + 2],
            buf[CMSG_ALIGN + 3],
        ]);
        let ty = i32::from_ne_bytes([
            buf[CMSG_ALIGN + 4],
            buf[CMSG_ALIGN + 5],
            buf[CMSG_ALIGN + 6],
            buf[CMSG_ALIGN + 7],
        ]);
        let start = cmsg_align(CMSG_HDR);
        if len < start || len > buf.len() {
            return None;
        }
        let data = &buf[start..len];
        buf = &buf[cmsg_align(len).min(buf.len())..];
        Some((level, ty, data))
    })
}

/// `IP_PKTINFO`: { int ipi_ifindex; in_addr ipi_spec_dst (our source); in_addr ipi_addr }.
fn pktinfo_v4(ifindex: u32, src: Ipv4Addr) -> Vec<u8> {
    let mut data = Vec::with_capacity(12);
    data.extend_from_slice(&i32::try_from(ifindex).unwrap_or(0).to_ne_bytes());
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&[0; 4]);
    cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &data)
}

/// `IPV6_PKTINFO`: { in6_addr ipi6_addr (our source); unsigned ipi6_ifindex }.
fn pktinfo_v6(ifindex: u32, src: Ipv6Addr) -> Vec<u8> {
    let mut data = Vec::with_capacity(20);
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&ifindex.to_ne_bytes());
    cmsg(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &data)
}

/// An integer socket option socket2 has no setter for.
fn set_int_option(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt(2) on a socket we own, reading a c_int that lives for the call,
    // with its exact size. socket2 has no setter for IPV6_RECVPKTINFO, hence libc.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_roundtrip() {
        let mut buf = pktinfo_v6(7, "fe80::1".parse().unwrap());
        buf.extend(cmsg(
            libc::IPPROTO_IPV6,
            libc::IPV6_HOPLIMIT,
            &255i32.to_ne_bytes(),
        ));
        let got: Vec<_> = cmsgs(&buf).collect();
        assert_eq!(got.len(), 2, "expected two control messages, saw {got:?}");
        assert_eq!(
            (got[0].0, got[0].1),
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
        );
        assert_eq!(
            &got[0].2[..16],
            &"fe80::1".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(got[1].2, &255i32.to_ne_bytes());
    }

    #[test]
    fn kernel_drop_count_is_read_from_control_data() {
        let mut buf = pktinfo_v6(7, "fe80::1".parse().unwrap());
        assert_eq!(kernel_drops(&buf), None);
        buf.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &1234u32.to_ne_bytes(),
        ));
        assert_eq!(kernel_drops(&buf), Some(1234));
    }

    #[test]
    fn ipv4_header_is_split_off() {
        let mut p = vec![
            0x45, 0xc0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 192, 0, 2, 11, 224, 0, 0, 18,
        ];
        p.extend_from_slice(&[0x31, 51, 100, 1, 0, 100, 0, 0]);
        let r = parse_ipv4(&p).expect("parses");
        assert_eq!(r.src, IpAddr::from([192, 0, 2, 11]));
        assert_eq!(r.dst, IpAddr::from([224, 0, 0, 18]));
        assert_eq!(r.ttl_or_hop_limit, 255);
        assert_eq!(r.payload, vec![0x31, 51, 100, 1, 0, 100, 0, 0]);
        assert_eq!(parse_ipv4(&p[..10]), None);
    }
}
