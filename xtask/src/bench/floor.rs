//! The floor of any XDP middle box on this lab: a program that does nothing but what
//! DSR must do to a frame — rewrite the two MACs and send it out again (`XDP_TX`) —
//! for one VIP, and passes everything else. No maps, no parsing beyond the IPv4
//! destination, no counters. Whatever the connection rate through it lacks against
//! the no-LB row is the cost of the extra hop itself (veth and bridge crossings,
//! generic XDP's skb handling); whatever fo lacks against it is fo's own.
//!
//! It is written in BPF assembly and assembled with LLVM 22's `llvm-mc` (installed by
//! `cargo xtask setup` with `llvm-22-dev`), so the bench needs no second eBPF crate;
//! `ip link` (libbpf) loads it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::lab::Netns;

const LLVM_MC: &str = "/usr/lib/llvm-22/bin/llvm-mc";

/// A MAC in the `aa:bb:cc:dd:ee:ff` form.
fn parse_mac(mac: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("not a MAC address: {mac:?}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("not a MAC address: {mac:?}"))
}

/// The little-endian 32-bit word of `b` as the signed immediate the assembler takes.
fn word(b: [u8; 4]) -> i32 {
    i32::from_le_bytes(b)
}

/// The little-endian 16-bit word of `b`.
fn half(b: [u8; 2]) -> u16 {
    u16::from_le_bytes(b)
}

/// The program's source: frames to `vip` get `dst`/`src` as their MACs and go out
/// again; every other frame passes.
fn source(vip: Ipv4Addr, src: [u8; 6], dst: [u8; 6]) -> String {
    let v = vip.octets();
    format!(
        "\t.section xdp,\"ax\",@progbits\n\
         \t.globl floor\n\
         \t.type floor,@function\n\
         floor:\n\
         \tr2 = *(u32 *)(r1 + 0)\n\
         \tr3 = *(u32 *)(r1 + 4)\n\
         \tr4 = r2\n\
         \tr4 += 34\n\
         \tif r4 > r3 goto pass\n\
         \tw5 = *(u16 *)(r2 + 12)\n\
         \tif w5 != {ether_ip} goto pass\n\
         \tw5 = *(u32 *)(r2 + 30)\n\
         \tif w5 != {vip} goto pass\n\
         \t*(u32 *)(r2 + 0) = {d0}\n\
         \t*(u16 *)(r2 + 4) = {d1}\n\
         \t*(u16 *)(r2 + 6) = {s0}\n\
         \t*(u32 *)(r2 + 8) = {s1}\n\
         \tr0 = 3\n\
         \texit\n\
         pass:\n\
         \tr0 = 2\n\
         \texit\n\
         .Lend:\n\
         \t.size floor, .Lend-floor\n\
         \t.section license,\"aw\",@progbits\n\
         \t.asciz \"GPL\"\n",
        ether_ip = half([0x08, 0x00]),
        // A 32-bit compare (`w5`) with the word as its signed immediate: a 64-bit one
        // would sign-extend the immediate and miss VIPs whose last octet is ≥ 128.
        vip = i32::from_le_bytes(v),
        d0 = word([dst[0], dst[1], dst[2], dst[3]]),
        d1 = half([dst[4], dst[5]]),
        s0 = half([src[0], src[1]]),
        s1 = word([src[2], src[3], src[4], src[5]]),
    )
}

/// Assemble the floor program for `vip` (frames leave with source `src_mac`, for
/// `dst_mac`) into `dir`, and attach it in generic mode to eth0 in `ns`. Returns the
/// object's path.
pub fn attach(
    ns: &Netns,
    dir: &Path,
    vip: Ipv4Addr,
    src_mac: &str,
    dst_mac: &str,
) -> anyhow::Result<PathBuf> {
    let asm = dir.join("xdp-floor.s");
    let obj = dir.join("xdp-floor.o");
    std::fs::write(&asm, source(vip, parse_mac(src_mac)?, parse_mac(dst_mac)?))
        .with_context(|| format!("write {}", asm.display()))?;
    let out = Command::new(LLVM_MC)
        .args(["-triple", "bpfel", "-filetype=obj", "-o"])
        .arg(&obj)
        .arg(&asm)
        .output()
        .with_context(|| format!("run {LLVM_MC} (installed by `cargo xtask setup`)"))?;
    if !out.status.success() {
        bail!(
            "{LLVM_MC} failed on {}: {}",
            asm.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // iproute2's loader makes its default pin layout (tc/globals, and ip and xdp
    // linking to it) on the host's bpffs when that is missing; it pins nothing there
    // for this program, so what it made is removed again (only if still empty).
    let bpffs = Path::new("/sys/fs/bpf");
    let had_layout = bpffs.join("tc").exists();
    let attached = ns.sh(&format!(
        "ip link set dev eth0 xdpgeneric obj {} sec xdp",
        obj.display()
    ));
    if !had_layout {
        for link in ["ip", "xdp"] {
            let p = bpffs.join(link);
            if p.is_symlink() {
                let _ = std::fs::remove_file(p);
            }
        }
        let _ = std::fs::remove_dir(bpffs.join("tc/globals"));
        let _ = std::fs::remove_dir(bpffs.join("tc"));
    }
    attached?;
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates_are_the_frame_bytes_read_little_endian() {
        let s = source(
            Ipv4Addr::new(192, 0, 2, 105),
            parse_mac("7e:58:99:67:74:c1").unwrap(),
            parse_mac("ce:3c:fc:c9:d3:05").unwrap(),
        );
        // 192.0.2.105 read as a little-endian u32.
        assert!(s.contains("if w5 != 1761738944 goto pass"), "{s}");
        // ETH_P_IP (08 00 on the wire).
        assert!(s.contains("if w5 != 8 goto pass"), "{s}");
        // A last octet ≥ 128: the word's sign bit, kept by the 32-bit compare.
        let high = source(Ipv4Addr::new(192, 0, 2, 200), [0; 6], [0; 6]);
        assert!(
            high.contains(&format!(
                "if w5 != {} goto pass",
                i32::from_le_bytes([192, 0, 2, 200])
            )),
            "{high}"
        );
        // Destination ce:3c:fc:c9 | d3:05, source 7e:58 | 99:67:74:c1.
        assert!(s.contains("(r2 + 0) = -906216242"), "{s}");
        assert!(s.contains("(r2 + 4) = 1491"), "{s}");
        assert!(s.contains("(r2 + 6) = 22654"), "{s}");
        assert!(s.contains("(r2 + 8) = -1049335911"), "{s}");
    }

    #[test]
    fn a_malformed_mac_is_refused() {
        assert!(parse_mac("7e:58:99:67:74").is_err());
        assert!(parse_mac("7e:58:99:67:74:zz").is_err());
    }
}
