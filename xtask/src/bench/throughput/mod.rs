//! Throughput and connection rate through the LB: fo (XDP DSR, generic and native
//! mode; XDP NAT, generic mode, node `fonat`), HAProxy
//! (TCP mode) and no LB at all (the client straight to the backend: the ceiling), on one
//! lab: a client, node `fo` (static ownership of the VIP, so no election is involved),
//! node `hp` (HAProxy on its own address) and one backend. Two middle nodes without an
//! LB show what the extra hop itself costs: `rt` (the kernel's IP forwarding) and `xf`
//! (the minimal XDP hop of `floor.rs`).
//!
//! - bulk: `iperf3 -c TARGET -t 4`, one stream, Gbit/s received.
//! - connection rate and latency: `wrk -t2 -c50 -d4s --latency -H 'Connection: close'`
//!   against HAProxy serving a static 200 (`http-request return`) on the backend, port
//!   8080: connections/s (= requests/s, one request per connection), p50/p99 latency.
//! - CPU: two figures. (1) The whole VM's busy time (/proc/stat: user+nice+system+irq+
//!   softirq+steal) during the run, per connection and per GB — everything (client,
//!   LB, backend) shares the VM, so the difference to the no-LB row is what the LB
//!   adds. (2) The LB's own time: for HAProxy its process' user+system time
//!   (/proc/PID/stat; its share of kernel softirq TCP work is not in it), for fo the XDP
//!   program's run time from the kernel's BPF stats (`kernel.bpf_stats_enabled`; the
//!   generic-mode skb work around it is not in it).
//!
//! `topology` builds the lab and starts every system, `measure` takes the figures (run by
//! run, interleaved), `report` writes the tables.

mod measure;
mod report;
mod topology;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Opts, WRK_CONNS, WRK_SECS, fmt_mmm, keep_config, mmm_json, save};
use crate::lab::config::{XDP_MODE, static_router, tcp_service};
use crate::lab::{Bins, Lab, Netns, Proc, Spec};

use measure::*;
use report::*;
use topology::*;

pub(super) use measure::{bpf_stats, proc_cpu_ns, vm_busy_ns, wrk};
pub(super) use topology::{all_ns, wait_listen, xdp_prog_id};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const FO: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
/// Node `fon`: fo in native XDP mode, serving its own VIP.
const FON: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 4);
const VIP_NATIVE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
/// The pass-only agent on fon's switch port owns this unused VIP and serves nothing.
const VIP_UNUSED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
/// Node `rt`: no LB at all, only the kernel's IP forwarding. The client routes
/// `VIP_FWD` through it and the backend holds `VIP_FWD` on lo, so packets take fo's
/// path (client → bridge → middle node → bridge → backend, replies straight back)
/// without any LB logic: the cost of the extra hop on this one-VM lab.
const RT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 6);
const VIP_FWD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 104);
/// Node `xf`: the minimal XDP hop (`floor.rs`), for `VIP_FLOOR`, which the backend
/// holds on lo; the client has a static neighbour entry for it (the program answers
/// no ARP).
const XF: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const VIP_FLOOR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 105);
const BACKEND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
/// Node `fonat`: fo with `mode = "nat"` services on its own VIP and SNAT address.
const FONAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const VIP_NAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 102);
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 103);
const IPERF_PORT: u16 = 5201;
const HTTP_PORT: u16 = 8080;
const IPERF_SECS: u32 = 4;
/// Interleaved pairs of fo and the minimal XDP hop, connections only, at least.
const FLOOR_PAIRS: usize = 7;

/// Every path measured with the LB node sharing the cores: bulk and connections.
const PATHS: [Path_; 8] = [
    Path_::Direct,
    Path_::Fo,
    Path_::Forward,
    Path_::Floor,
    Path_::Haproxy,
    Path_::DirectTxOff,
    Path_::FoNative,
    Path_::FoNat,
];

/// The paths measured again with the LB node on its own core: connections only.
const SPLIT_PATHS: [Path_; 5] = [
    Path_::Direct,
    Path_::Fo,
    Path_::Forward,
    Path_::Floor,
    Path_::Haproxy,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path_ {
    Fo,
    FoNative,
    FoNat,
    Haproxy,
    /// The kernel forwarding through a middle node: fo's packet path without fo.
    Forward,
    /// The minimal XDP program (MAC rewrite, XDP_TX) in the middle node.
    Floor,
    Direct,
    /// No LB, the client's TX offload off: the ceiling for the native-mode row.
    DirectTxOff,
}

impl Path_ {
    fn label(self) -> &'static str {
        match self {
            Path_::Fo => "fo (XDP DSR, generic mode)",
            Path_::FoNative => "fo (XDP DSR, native mode)",
            Path_::FoNat => "fo (XDP NAT, generic mode)",
            Path_::Haproxy => "HAProxy 2.6 TCP mode",
            Path_::Forward => "kernel IP forwarding via a middle node (no LB)",
            Path_::Floor => "minimal XDP hop via a middle node (no LB; generic mode)",
            Path_::Direct => "no LB (client → backend)",
            Path_::DirectTxOff => "no LB (client → backend), client TX offload off",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Path_::Fo => "fo",
            Path_::FoNative => "fo-native",
            Path_::FoNat => "fo-nat",
            Path_::Haproxy => "haproxy",
            Path_::Forward => "forward",
            Path_::Floor => "xdp-floor",
            Path_::Direct => "direct",
            Path_::DirectTxOff => "direct-tx-off",
        }
    }
    fn target(self) -> Ipv4Addr {
        match self {
            Path_::Fo => VIP,
            Path_::FoNative => VIP_NATIVE,
            Path_::FoNat => VIP_NAT,
            Path_::Haproxy => HP,
            Path_::Forward => VIP_FWD,
            Path_::Floor => VIP_FLOOR,
            Path_::Direct | Path_::DirectTxOff => BACKEND,
        }
    }
    /// Native XDP on veth loses the partial checksum (docs/lab.md): the client sends with
    /// its TX checksum offload (and so TSO) off on these rows.
    fn client_tx_off(self) -> bool {
        matches!(self, Path_::FoNative | Path_::FoNat | Path_::DirectTxOff)
    }

    /// NAT rewrites addresses and ports with incremental checksum updates, which need
    /// complete checksums: the backend's TX offload is off for the NAT row too (a
    /// physical NIC delivers complete checksums; veth passes partial ones).
    fn backend_tx_off(self) -> bool {
        matches!(self, Path_::FoNat)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Sample {
    client_offloads: String,
    gbit_s: f64,
    conn_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    wrk_errors: u64,
    vm_cpu_us_per_conn: f64,
    vm_cpu_s_per_gb: f64,
    lb_cpu_us_per_conn: Option<f64>,
    lb_cpu_s_per_gb: Option<f64>,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let dir = out.join("logs").join("throughput");
    let _ = std::fs::remove_dir_all(&dir);
    let mut lab = Lab::build(&spec(), bins.clone(), &dir)?;
    // Connection churn: ports and TIME_WAIT must not be what limits the rate.
    for ns in all_ns(&lab) {
        ns.sh("sysctl -q -w net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1")?;
    }
    let offloads = client_offloads(&lab.client.ns);
    let rig = Rig::start(&mut lab, &dir, out)?;
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=1"])
        .status();
    let samples = interleave(&lab, &rig, &PATHS, opts.runs, Cores::Shared)?;
    // The same connection rates with the LB node on its own core, as it would be on
    // its own machine: client and backend (processes and their packet processing) on
    // CPU 0, the middle nodes' packet processing, and HAProxy, on CPU 1.
    // Offloads on at both ends from here (the last shared row may have been NAT's).
    lab.client.ns.sh("ethtool -K eth0 tx on")?;
    rig.be_ns.sh("ethtool -K eth0 tx on")?;
    let split = {
        let _cores = SplitCores::apply(&lab, &[rig.web.pid()], &[rig.haproxy.pid()])?;
        interleave(&lab, &rig, &SPLIT_PATHS, opts.runs, Cores::Split)?
    };
    // fo against the minimal XDP hop alone, in more pairs than the tables above: fo,
    // floor, floor, fo, … (the order reversed every other pair), connections only.
    let floor_pairs = interleave(
        &lab,
        &rig,
        &[Path_::Fo, Path_::Floor],
        opts.runs.max(FLOOR_PAIRS),
        Cores::SharedConn,
    )?;
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=0"])
        .status();
    let _ = lab.client.ns.sh("ethtool -K eth0 tx on");
    let _ = rig.be_ns.sh("ethtool -K eth0 tx on");
    let mut peer = rig.peer;
    if let Some(st) = peer.exited() {
        bail!(
            "the pass-only agent on the switch port exited ({st}):\n{}",
            peer.tail(20)
        );
    }
    drop(peer);

    let mut md = markdown(&samples, &split, opts.runs);
    md.push_str(&floor_markdown(&floor_pairs));
    print!("\n{md}");
    let rows = rows(&samples);
    let split_rows = split_rows(&split);
    drop(lab);
    save(
        out,
        "throughput",
        json!({
            "settings": {"xdp_modes": [XDP_MODE, "native"], "client_offloads_default": offloads, "iperf_s": IPERF_SECS, "wrk_s": WRK_SECS, "wrk_connections": WRK_CONNS, "runs": opts.runs},
            "rows": rows,
            "lb_own_core_rows": split_rows,
            "fo_vs_xdp_floor": floor_json(&floor_pairs),
            "markdown": md,
        }),
    )
}
