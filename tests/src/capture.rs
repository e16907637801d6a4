//! UDP datagrams captured on the wire (tcpdump in a namespace) and sent again from a
//! forged source address (a raw IP socket in another namespace): what an attacker on
//! the segment can do with datagrams it saw.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fo_lab::kit::Proc;

use crate::netns::Netns;

/// A UDP datagram as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

/// tcpdump writing `udp port PORT` on `ifname` of a namespace to a pcap file (what it
/// says to a `.log` file beside it); stopped (and the file complete) by
/// [`Capture::stop`], killed on drop.
pub struct Capture {
    tcpdump: Option<Proc>,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, ifname: &str, port: u16, file: &Path) -> Capture {
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-i", ifname, "-U", "-n", "-s", "0", "-w"])
            .arg(file)
            .args(["udp", "port", &port.to_string()]);
        let mut tcpdump = Proc::spawn_attached("tcpdump", cmd, &file.with_extension("log"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        // "listening on …" goes to stderr once the capture runs; the file exists then.
        tcpdump
            .wait_for_line(Duration::from_secs(10), |l| l.contains("listening on"))
            .unwrap_or_else(|e| panic!("tcpdump in {}: {e:#}", ns.name));
        // The file is created before the socket filter is attached: give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        Capture {
            tcpdump: Some(tcpdump),
            file: file.to_owned(),
        }
    }

    /// Stop the capture (SIGINT: tcpdump flushes and exits; killed after 10 s) and read
    /// what it saw.
    pub fn stop(&mut self) -> Vec<Datagram> {
        if let Some(mut t) = self.tcpdump.take() {
            let _ = t.signal("INT");
            let _ = t.wait(Duration::from_secs(10));
        }
        let bytes = std::fs::read(&self.file)
            .unwrap_or_else(|e| panic!("pcap {}: {e}", self.file.display()));
        parse_pcap(&bytes)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.tcpdump.take();
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(self.file.with_extension("log"));
    }
}

/// The IPv4 UDP datagrams of a classic pcap file with Ethernet framing (what tcpdump
/// writes for a veth). Anything else in it is skipped.
pub fn parse_pcap(b: &[u8]) -> Vec<Datagram> {
    assert!(b.len() >= 24, "pcap shorter than its header");
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        other => panic!("not a pcap file (magic {other:#x})"),
    };
    let u32_at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(u32_at(20), 1, "link type must be Ethernet");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let len = u32_at(i + 8) as usize;
        let frame = &b[i + 16..(i + 16 + len).min(b.len())];
        i += 16 + len;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let udp = &ip[ihl..total];
        let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]])).min(udp.len());
        out.push(Datagram {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            sport: u16::from_be_bytes([udp[0], udp[1]]),
            dport: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..ulen].to_vec(),
        });
    }
    out
}

/// The IPv4 packet of `d` as it was sent: its own source address and ports (the UDP
/// checksum left 0, "none", which IPv4 allows).
pub fn ipv4_packet(d: &Datagram) -> Vec<u8> {
    let ulen = 8 + d.payload.len();
    let total = 20 + ulen;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&d.src.octets());
    p.extend_from_slice(&d.dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&d.sport.to_be_bytes());
    p.extend_from_slice(&d.dport.to_be_bytes());
    p.extend_from_slice(&(ulen as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&d.payload);
    p
}

/// RFC 1071 Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    crate::frames::fold(crate::frames::sum16(b))
}

/// Send `datagrams` again, each from its captured source address and port, out of
/// namespace `ns` (a raw IP socket: the source is forged), `gap` apart.
pub fn replay(ns: &Netns, datagrams: &[Datagram], gap: Duration) {
    let packets: Vec<(Ipv4Addr, Vec<u8>)> =
        datagrams.iter().map(|d| (d.dst, ipv4_packet(d))).collect();
    ns.run(move || {
        // SAFETY: a raw IPv4 socket (IPPROTO_RAW: we write the IP header), closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        for (dst, p) in packets {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(dst).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: the buffer and address are valid for the lengths passed.
            let n = unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(
                n,
                p.len() as isize,
                "raw send to {dst}: {}",
                std::io::Error::last_os_error()
            );
            std::thread::sleep(gap);
        }
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(fd) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_carries_the_forged_source_and_a_valid_header_checksum() {
        let d = Datagram {
            src: Ipv4Addr::new(192, 0, 2, 2),
            dst: Ipv4Addr::new(192, 0, 2, 3),
            sport: 7480,
            dport: 7480,
            payload: b"FOS2xyz".to_vec(),
        };
        let p = ipv4_packet(&d);
        assert_eq!(p.len(), 20 + 8 + 7);
        assert_eq!(
            checksum(&p[..20]),
            0,
            "a header with its checksum sums to 0"
        );
        assert_eq!(&p[12..16], &[192, 0, 2, 2]);
        // Wrapped in a pcap record with an Ethernet header, it parses back.
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&262_144u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        let frame_len = (14 + p.len()) as u32;
        pcap.extend_from_slice(&[0; 8]);
        pcap.extend_from_slice(&frame_len.to_le_bytes());
        pcap.extend_from_slice(&frame_len.to_le_bytes());
        pcap.extend_from_slice(&[0; 12]);
        pcap.extend_from_slice(&[0x08, 0x00]);
        pcap.extend_from_slice(&p);
        assert_eq!(parse_pcap(&pcap), vec![d]);
    }
}
