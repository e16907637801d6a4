//! 802.1Q access ports for test hosts, without the kernel's 8021q module (this kernel has
//! none, and no bridge VLAN filtering): two tiny TC programs on a host's interface, one
//! that tags everything it sends (`bpf_skb_vlan_push` at tcx egress) and one that strips
//! the tag of everything it receives (`bpf_skb_vlan_pop` at tcx ingress). The host then
//! behaves as if it sat on an access port of that VLAN, and its frames cross the bridge
//! and reach the LB's XDP program tagged.
//!
//! The programs are a handful of BPF instructions, assembled here and loaded with the
//! `bpf()` system call; both helpers are core networking, not 8021q. The links live as
//! long as the [`AccessPort`] (closing a tcx link's last descriptor detaches it).
//!
//! A veth inserts a tag pushed by `bpf_skb_vlan_push` into the frame only when its TX
//! VLAN offload is off: otherwise the tag stays in the socket buffer's metadata and the
//! peer's XDP program never sees it. [`AccessPort::attach`] turns it off on the host's
//! interface; [`untag_offload_off`] does the same for a switch port, as a bridge keeps a
//! received tag in the metadata too.

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

use crate::netns::Netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_FUNC_SKB_VLAN_PUSH: i32 = 18;
const BPF_FUNC_SKB_VLAN_POP: i32 = 19;
const ETH_P_8021Q: u16 = 0x8100;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `rD = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
const fn mov(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}

/// Call helper `id` (BPF_JMP | BPF_CALL); the context is still in r1.
const fn call(id: i32) -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: id,
    }
}

/// BPF_JMP | BPF_EXIT.
const EXIT: Insn = Insn {
    code: 0x95,
    regs: 0,
    off: 0,
    imm: 0,
};

/// Tag every frame sent: `bpf_skb_vlan_push(skb, htons(ETH_P_8021Q), vlan)`, then
/// `TCX_PASS` whatever the helper said.
fn push_program(vlan: u16) -> Vec<Insn> {
    vec![
        // The protocol is a __be16 in a register: its network-order bytes, read as a
        // little-endian integer.
        mov(2, i32::from(u16::from_ne_bytes(ETH_P_8021Q.to_be_bytes()))),
        mov(3, i32::from(vlan)),
        call(BPF_FUNC_SKB_VLAN_PUSH),
        mov(0, 0),
        EXIT,
    ]
}

/// Strip the tag of every frame received (a no-op on an untagged one), then `TCX_PASS`.
fn pop_program() -> Vec<Insn> {
    vec![call(BPF_FUNC_SKB_VLAN_POP), mov(0, 0), EXIT]
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: bpf(2) reads (and may write) the attribute block we own, of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn put_u32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Load `insns` as a TC program for tcx attach type `attach`; the verifier's log on failure.
fn load(insns: &[Insn], attach: u32, name: &str) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
    put_u32(&mut attr, 4, insns.len() as u32);
    put_u64(&mut attr, 8, insns.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    put_u32(&mut attr, 24, 1); // log_level
    put_u32(&mut attr, 28, log.len() as u32);
    put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
    let n = name.len().min(15);
    attr[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
    put_u32(&mut attr, 68, attach); // expected_attach_type
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        io::Error::new(
            e.kind(),
            format!(
                "BPF_PROG_LOAD {name}: {e}: {}",
                String::from_utf8_lossy(&log[..end])
            ),
        )
    })
}

/// Attach `prog` at tcx `attach` of `ifindex` (in the calling thread's namespace).
fn link(prog: &OwnedFd, ifindex: u32, attach: u32) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 4, ifindex);
    put_u32(&mut attr, 8, attach);
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// A host interface made an access port of one VLAN; detached on drop.
pub struct AccessPort {
    _links: Vec<OwnedFd>,
}

impl AccessPort {
    /// Tag what `ns` sends on `ifname` with `vlan` and untag what it receives there.
    pub fn attach(ns: &Netns, ifname: &str, vlan: u16) -> AccessPort {
        ns.sh(&format!("ethtool -K {ifname} txvlan off >/dev/null"));
        let ifname = ifname.to_owned();
        let links = ns.run(move || -> io::Result<Vec<OwnedFd>> {
            let c = std::ffi::CString::new(ifname.clone()).expect("interface name");
            // SAFETY: if_nametoindex reads a NUL-terminated string we own.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                return Err(io::Error::other(format!("no interface {ifname}")));
            }
            let push = load(&push_program(vlan), BPF_TCX_EGRESS, "vlan_push")?;
            let pop = load(&pop_program(), BPF_TCX_INGRESS, "vlan_pop")?;
            Ok(vec![
                link(&push, ifindex, BPF_TCX_EGRESS)?,
                link(&pop, ifindex, BPF_TCX_INGRESS)?,
            ])
        });
        AccessPort {
            _links: links.unwrap_or_else(|e| panic!("802.1Q access port: {e}")),
        }
    }
}

/// Make `port` (in `ns`) put a tag it forwards into the frame's bytes: TX VLAN offload off.
pub fn untag_offload_off(ns: &Netns, port: &str) {
    ns.sh(&format!("ethtool -K {port} txvlan off >/dev/null"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_register_holds_0x8100_in_network_order() {
        let p = push_program(100);
        assert_eq!(p[0].imm.to_ne_bytes()[..2], [0x81, 0x00]);
        assert_eq!(p[1].imm, 100);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
