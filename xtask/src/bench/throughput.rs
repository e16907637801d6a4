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

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Opts, fmt_mmm, keep_config, mmm_json, save};
use crate::lab::{Bins, Lab, Netns, Proc, Spec};

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
const WRK_SECS: u32 = 4;
const WRK_CONNS: u32 = 50;
const XDP_MODE: &str = "generic";

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
    let spec = Spec {
        prefix: "fo-bench".into(),
        vip: VIP,
        port: IPERF_PORT,
        client: Ipv4Addr::new(192, 0, 2, 10),
        client_sources: Vec::new(),
        nodes: vec![
            ("fo".into(), FO),
            ("hp".into(), HP),
            ("fon".into(), FON),
            ("fonat".into(), FONAT),
            ("rt".into(), RT),
            ("xf".into(), XF),
        ],
        backends: vec![BACKEND],
    };
    let dir = out.join("logs").join("throughput");
    let _ = std::fs::remove_dir_all(&dir);
    let mut lab = Lab::build(&spec, bins.clone(), &dir)?;
    // Connection churn: ports and TIME_WAIT must not be what limits the rate.
    for ns in all_ns(&lab) {
        ns.sh("sysctl -q -w net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1")?;
    }
    let offloads = client_offloads(&lab.client.ns);

    // fo: static ownership of the VIP, two DSR services to the one backend.
    let service = |port: u16| {
        format!(
            "[[service]]\nvip = \"{VIP}\"\nport = {port}\nprotocol = \"tcp\"\nmode = \"dsr\"\nhash = \"5-tuple\"\nbackends = [{{ address = \"{BACKEND}\" }}]\n"
        )
    };
    let body = format!(
        "[[router]]\nname = \"bench\"\nownership = \"static\"\nvips = [\"{VIP}\"]\n\n{}\n{}",
        service(IPERF_PORT),
        service(HTTP_PORT)
    );
    lab.node("fo").write_config(XDP_MODE, &body)?;
    keep_config(out, &lab.nodes[0].config, "throughput-fo.toml")?;
    let bins = lab.bins.clone();
    lab.node("fo").start(&bins)?;

    // fo in native mode on node fon, with its own VIP (the backend holds it on lo too),
    // and docs/lab.md's workaround for XDP_TX on veth: an XDP program on the peer, fon's
    // switch port — a second fo-agent, native mode, a static router with an unused VIP
    // and no services, so it only passes traffic.
    let body = format!(
        "[[router]]\nname = \"bench\"\nownership = \"static\"\nvips = [\"{VIP_NATIVE}\"]\n\n{}\n{}",
        service(IPERF_PORT).replace(&VIP.to_string(), &VIP_NATIVE.to_string()),
        service(HTTP_PORT).replace(&VIP.to_string(), &VIP_NATIVE.to_string())
    );
    lab.node("fon").write_config("native", &body)?;
    keep_config(out, &lab.nodes[2].config, "throughput-fo-native.toml")?;
    lab.node("fon").start(&bins)?;

    // fo with NAT services on node fonat: its own VIP and SNAT address, the backend
    // reached by its own address (no VIP on the backend needed).
    let nat_service = |port: u16| {
        format!(
            "[[service]]\nvip = \"{VIP_NAT}\"\nport = {port}\nprotocol = \"tcp\"\nmode = \"nat\"\nhash = \"5-tuple\"\nbackends = [{{ address = \"{BACKEND}\" }}]\n"
        )
    };
    let body = format!(
        "[[router]]\nname = \"bench\"\nownership = \"static\"\nvips = [\"{VIP_NAT}\"]\nsnat = [\"{SNAT}\"]\n\n{}\n{}",
        nat_service(IPERF_PORT),
        nat_service(HTTP_PORT)
    );
    lab.node("fonat").write_config(XDP_MODE, &body)?;
    keep_config(out, &lab.nodes[3].config, "throughput-fo-nat.toml")?;
    lab.node("fonat").start(&bins)?;
    // Switch ports: p0 the client, then the nodes in order.
    let fon_port = "p3";
    let sw_bpf = std::path::PathBuf::from(format!("/sys/fs/bpf/{}-sw-{fon_port}", lab.tag));
    crate::lab::netns::register_pin_dir(&sw_bpf);
    let sw_cfg = dir.join("fo-switch-peer.toml");
    std::fs::write(
        &sw_cfg,
        format!(
            "[node]\ninterface = \"{fon_port}\"\nxdp_mode = \"native\"\nbpf_dir = \"{}\"\ncontrol_socket = \"{}\"\nstate_file = \"{}\"\n\n\
             [[router]]\nname = \"pass\"\nownership = \"static\"\nvips = [\"{VIP_UNUSED}\"]\n",
            sw_bpf.display(),
            dir.join("control-switch-peer.sock").display(),
            dir.join("state-switch-peer.json").display()
        ),
    )?;
    keep_config(out, &sw_cfg, "throughput-fo-switch-peer.toml")?;
    let mut cmd = lab.switch.command(&bins.agent);
    cmd.arg("run")
        .arg("--config")
        .arg(&sw_cfg)
        .args(["--log-format", "json"])
        .env("NO_COLOR", "1");
    let mut peer = Proc::spawn(
        "fo-agent switch peer",
        cmd,
        &dir.join("agent-switch-peer.log"),
    )?;
    peer.wait_for_line(Duration::from_secs(30), |l| {
        crate::lab::log_fields(l)
            .is_some_and(|f| f.get("message").and_then(Value::as_str) == Some("running"))
    })?;

    // HAProxy on node hp, TCP mode, the same backend for both ports.
    let hp_cfg = dir.join("haproxy-lb.cfg");
    std::fs::write(
        &hp_cfg,
        format!(
            "global\n  maxconn 9000\n  nbthread 2\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
             listen iperf\n  bind {HP}:{IPERF_PORT}\n  server b1 {BACKEND}:{IPERF_PORT}\n\n\
             listen web\n  bind {HP}:{HTTP_PORT}\n  balance source\n  server b1 {BACKEND}:{HTTP_PORT}\n"
        ),
    )?;
    keep_config(out, &hp_cfg, "throughput-haproxy-lb.cfg")?;
    let hp_ns = lab.nodes[1].ns.clone();
    let mut cmd = hp_ns.command("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&hp_cfg);
    let haproxy = Proc::spawn("haproxy lb", cmd, &dir.join("haproxy-lb.log"))?;

    // The backend: iperf3 server, and HAProxy answering every request with a static 200.
    let be_ns = lab.backends[0].ns.clone();
    be_ns.sh(&format!(
        "sh {} {VIP_NATIVE} {VIP_FWD} {VIP_FLOOR}",
        crate::util::root().join("deploy/backend-dsr.sh").display()
    ))?;
    let web_cfg = dir.join("haproxy-backend-web.cfg");
    std::fs::write(
        &web_cfg,
        format!(
            "global\n  maxconn 9000\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
             frontend web\n  bind :{HTTP_PORT}\n  http-request return status 200 content-type text/plain string ok\n"
        ),
    )?;
    keep_config(out, &web_cfg, "throughput-haproxy-backend-web.cfg")?;
    let mut cmd = be_ns.command("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&web_cfg);
    let web = Proc::spawn("haproxy web", cmd, &dir.join("haproxy-web.log"))?;
    let mut cmd = be_ns.command("iperf3");
    cmd.args(["-s", "-p", &IPERF_PORT.to_string()]);
    let _iperf = Proc::spawn("iperf3 -s", cmd, &dir.join("iperf3-server.log"))?;
    wait_listen(&be_ns, HTTP_PORT)?;
    wait_listen(&be_ns, IPERF_PORT)?;
    wait_listen(&hp_ns, HTTP_PORT)?;

    // Node rt: plain IP forwarding to the backend, which holds VIP_FWD on lo and
    // answers the client directly (as a DSR backend does). No ICMP redirects: the
    // middle node forwards out of the interface the packet came in on.
    lab.node("rt").ns.sh(&format!(
        "sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
         net.ipv4.conf.eth0.send_redirects=0 && ip route add {VIP_FWD}/32 via {BACKEND}"
    ))?;
    lab.client
        .ns
        .sh(&format!("ip route add {VIP_FWD}/32 via {RT}"))?;

    // Node xf: the floor of any XDP middle box.
    let be_mac = be_ns.mac("eth0")?;
    let xf = lab.node("xf");
    let (xf_ns, xf_mac) = (xf.ns.clone(), xf.mac.clone());
    let floor_obj = super::floor::attach(&xf_ns, &dir, VIP_FLOOR, &xf_mac, &be_mac)?;
    keep_config(
        out,
        &floor_obj.with_extension("s"),
        "throughput-xdp-floor.s",
    )?;
    lab.client.ns.sh(&format!(
        "ip neigh replace {VIP_FLOOR} lladdr {xf_mac} dev eth0 nud permanent"
    ))?;
    let floor_prog = xdp_prog_id(&xf_ns).context("the minimal XDP program on eth0")?;

    let fo_prog = xdp_prog_id(&lab.nodes[0].ns).context("fo's XDP program on eth0")?;
    let fon_prog = xdp_prog_id(&lab.nodes[2].ns).context("fo's native XDP program on eth0")?;
    let fonat_prog = xdp_prog_id(&lab.nodes[3].ns).context("fo's NAT XDP program on eth0")?;
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=1"])
        .status();

    let paths = [
        Path_::Direct,
        Path_::Fo,
        Path_::Forward,
        Path_::Floor,
        Path_::Haproxy,
        Path_::DirectTxOff,
        Path_::FoNative,
        Path_::FoNat,
    ];
    let mut samples: Vec<(Path_, Vec<Sample>)> = paths.iter().map(|p| (*p, Vec::new())).collect();
    // Interleave the systems run by run, so that drift on the VM hits them alike, and
    // reverse the order every other run, so that a steady drift within a run does too.
    for run in 1..=opts.runs {
        let order: Vec<usize> = if run % 2 == 1 {
            (0..samples.len()).collect()
        } else {
            (0..samples.len()).rev().collect()
        };
        for i in order {
            let (p, v) = &mut samples[i];
            let lb = match p {
                Path_::Fo => Lb::Bpf(fo_prog),
                Path_::FoNative => Lb::Bpf(fon_prog),
                Path_::FoNat => Lb::Bpf(fonat_prog),
                Path_::Floor => Lb::Bpf(floor_prog),
                Path_::Haproxy => Lb::Pid(haproxy.pid()),
                Path_::Direct | Path_::DirectTxOff | Path_::Forward => Lb::None,
            };
            let tx = if p.client_tx_off() { "off" } else { "on" };
            lab.client.ns.sh(&format!("ethtool -K eth0 tx {tx}"))?;
            let btx = if p.backend_tx_off() { "off" } else { "on" };
            be_ns.sh(&format!("ethtool -K eth0 tx {btx}"))?;
            let mut s = measure(&lab.client.ns, p.target(), lb)
                .with_context(|| format!("{} run {run}", p.label()))?;
            s.client_offloads = client_offloads(&lab.client.ns);
            eprintln!(
                "throughput {} run {run}: {:.2} Gbit/s, {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
                p.key(),
                s.gbit_s,
                s.conn_s,
                s.p50_ms,
                s.p99_ms,
                s.wrk_errors
            );
            v.push(s);
        }
    }
    // The same connection rates with the LB node on its own core, as it would be on
    // its own machine: client and backend (processes and their packet processing) on
    // CPU 0, the middle nodes' packet processing, and HAProxy, on CPU 1.
    lab.client.ns.sh("ethtool -K eth0 tx on")?;
    let split_paths = [
        Path_::Direct,
        Path_::Fo,
        Path_::Forward,
        Path_::Floor,
        Path_::Haproxy,
    ];
    let mut split: Vec<(Path_, Vec<Sample>)> =
        split_paths.iter().map(|p| (*p, Vec::new())).collect();
    {
        let _cores = SplitCores::apply(&lab, &[web.pid()], &[haproxy.pid()])?;
        for run in 1..=opts.runs {
            let order: Vec<usize> = if run % 2 == 1 {
                (0..split.len()).collect()
            } else {
                (0..split.len()).rev().collect()
            };
            for i in order {
                let (p, v) = &mut split[i];
                let lb = match p {
                    Path_::Fo => Lb::Bpf(fo_prog),
                    Path_::Floor => Lb::Bpf(floor_prog),
                    Path_::Haproxy => Lb::Pid(haproxy.pid()),
                    _ => Lb::None,
                };
                let s = measure_conn(&lab.client.ns, p.target(), lb, Some(0))
                    .with_context(|| format!("{} (LB on its own core) run {run}", p.label()))?;
                eprintln!(
                    "throughput split-core {} run {run}: {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
                    p.key(),
                    s.conn_s,
                    s.p50_ms,
                    s.p99_ms,
                    s.wrk_errors
                );
                v.push(s);
            }
        }
    }
    let _ = Command::new("sysctl")
        .args(["-q", "-w", "kernel.bpf_stats_enabled=0"])
        .status();
    let _ = lab.client.ns.sh("ethtool -K eth0 tx on");
    let _ = be_ns.sh("ethtool -K eth0 tx on");
    if let Some(st) = peer.exited() {
        bail!(
            "the pass-only agent on the switch port exited ({st}):\n{}",
            peer.tail(20)
        );
    }
    drop(peer);

    // Run i of a path over run i of its reference: the runs were taken side by side,
    // so the ratio of a pair is steadier than the ratio of two medians.
    let conn = |p: Path_| -> Vec<f64> {
        samples
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| v.iter().map(|s| s.conn_s).collect())
            .unwrap_or_default()
    };
    let paired = |p: Path_, reference: Path_| -> Vec<f64> {
        conn(p)
            .iter()
            .zip(conn(reference))
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| a / b * 100.0)
            .collect()
    };
    let ratio = |p: Path_, reference: Path_| -> String {
        match super::mmm(&paired(p, reference)) {
            Some((lo, m, hi)) => format!("{m:.0} % ({lo:.0}–{hi:.0})"),
            None => "n/a".into(),
        }
    };
    let mut md = format!(
        "## Throughput, connection rate and latency through the LB\n\n\
         One client, one backend, the LB between them on the same bridge (a plain L2 \
         switch: br_netfilter's hooks are off in the switch namespace, as on a hardware \
         switch; left on, they cost about 1.3 µs per bridged frame, which fo's path pays \
         twice per client packet). fo: static \
         ownership of the VIP, XDP DSR, in **generic (SKB) mode** (node fo; the veths keep \
         their offloads) and in **native mode** (node fon, its own VIP; with docs/lab.md's two \
         workarounds: an XDP program on the peer veth — a second `fo-agent run` in the \
         switch namespace on fon's switch port, native mode, a static router with an unused \
         VIP and no services, so it only passes traffic — and the client's TX offload off \
         during the native rows, `ethtool -K eth0 tx off`, which also turns TSO off). Native \
         mode on veth loses TSO, so its bulk figure says more about offloads than about the \
         program; compare it with the no-LB row with the same offloads. **NAT** (node fonat, \
         generic mode, its own VIP and SNAT address, `mode = \"nat\"` to the backend's own \
         address): client and backend TX offload off during the NAT rows (NAT updates \
         checksums incrementally and needs complete ones, which a physical NIC delivers and \
         a veth with offload does not); every packet both ways goes through the LB, unlike \
         DSR. The program's own cost is in the data-plane and scale sections. HAProxy 2.6: TCP mode, 2 threads, on \
         the LB node's own address. No LB: the client straight to the backend, the ceiling. \
         Bulk: `iperf3 -t {IPERF_SECS}`, one stream. Connections: `wrk -t2 -c{WRK_CONNS} \
         -d{WRK_SECS}s --latency -H 'Connection: close'` against HAProxy answering a static \
         200 (`http-request return`) on the backend, one request per connection. \
         {} runs per system, interleaved (the client's TX offload set per row before each \
         measurement; the order reversed every other run); min / median / max. **vs no LB**: \
         each run's conn/s over the same run's no-LB figure with the same client offloads, \
         median (min–max) of those pairs. **vs IP forwarding**: the same against node rt, \
         which only forwards (the kernel's IP forwarding, no LB logic): the client routes a \
         second VIP through it and the backend holds that VIP on lo, so its packets take \
         fo's path (client → bridge → middle node → bridge → backend, replies straight \
         back). **vs minimal XDP hop**: the same against node xf, whose XDP program (generic \
         mode, like node fo) does only what DSR must do to a frame — rewrite both MACs and \
         send it out again — for a third VIP, with no maps, no parsing beyond the IPv4 \
         destination and no counters (`configs/throughput-xdp-floor.s`; the client has a \
         static neighbour entry for that VIP): the floor of any XDP middle box here. Client, \
         LB and backend share this VM's 2 cores, so whatever the middle node spends comes \
         out of the client's and the backend's budget: the no-LB row is the ceiling of a \
         path without a middle node; the forwarding and minimal-XDP rows show what the \
         extra hop itself costs, and fo's gap to the minimal XDP hop is what fo's own \
         lookups (VIP, flow table, Maglev, counters) cost.\n\n\
         CPU: *VM* is the whole VM's busy time (client, LB and backend share its 2 cores; \
         compare with the no-LB row); *LB* is HAProxy's process user+system time, or fo's \
         XDP program run time from the kernel's BPF stats (neither includes the kernel's \
         softirq work around them).\n\n\
         | path | client offloads | iperf3 Gbit/s | conn/s | vs no LB | vs IP forwarding | vs minimal XDP hop | p50 ms | p99 ms | wrk errors | VM CPU µs/conn | VM CPU s/GB | LB CPU µs/conn | LB CPU s/GB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        opts.runs
    );
    for (p, v) in &samples {
        let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let o = |f: &dyn Fn(&Sample) -> Option<f64>| v.iter().filter_map(f).collect::<Vec<f64>>();
        let ceiling = if p.client_tx_off() {
            Path_::DirectTxOff
        } else {
            Path_::Direct
        };
        let vs = ratio(*p, ceiling);
        let (vs_fwd, vs_floor) = if p.client_tx_off() {
            ("n/a".to_string(), "n/a".to_string())
        } else {
            (ratio(*p, Path_::Forward), ratio(*p, Path_::Floor))
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {vs} | {vs_fwd} | {vs_floor} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.label(),
            v.first()
                .map(|s| short_offloads(&s.client_offloads))
                .unwrap_or_default(),
            fmt_mmm(&c(&|s| s.gbit_s), 2),
            fmt_mmm(&c(&|s| s.conn_s), 0),
            fmt_mmm(&c(&|s| s.p50_ms), 2),
            fmt_mmm(&c(&|s| s.p99_ms), 2),
            fmt_mmm(&c(&|s| s.wrk_errors as f64), 0),
            fmt_mmm(&c(&|s| s.vm_cpu_us_per_conn), 1),
            fmt_mmm(&c(&|s| s.vm_cpu_s_per_gb), 2),
            fmt_mmm(&o(&|s| s.lb_cpu_us_per_conn), 2),
            fmt_mmm(&o(&|s| s.lb_cpu_s_per_gb), 3),
        ));
    }
    let split_conn = |p: Path_| -> Vec<f64> {
        split
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| v.iter().map(|s| s.conn_s).collect())
            .unwrap_or_default()
    };
    let split_ratio = |p: Path_, reference: Path_| -> Vec<f64> {
        split_conn(p)
            .iter()
            .zip(split_conn(reference))
            .filter(|(_, b)| *b > 0.0)
            .map(|(a, b)| a / b * 100.0)
            .collect()
    };
    md.push_str(&format!(
        "\n### Connection rate with the LB node on its own core\n\n\
         The same wrk measurement (client offloads on), with the machine split the way \
         separate machines would split it: the client and the backend — their processes \
         (wrk pinned with `taskset -c 0`, the backend's HAProxy by affinity) and the \
         processing of the packets they receive (RPS on their veths and switch ports) — on \
         CPU 0; the middle nodes' packet processing (RPS on their veths and switch ports: \
         generic XDP, IP forwarding, HAProxy's TCP) and the HAProxy LB process on CPU 1. \
         The no-LB row then measures one core's worth of client and backend. If the gap \
         between fo and no LB in the table above came only from sharing the cores, it \
         closes here; what stays is the extra hop itself (two more veth and bridge \
         crossings per client packet, and the hand-over between cores, with wrk's fixed \
         {WRK_CONNS} connections in flight) — compare with the IP-forwarding and minimal-XDP \
         rows. {} runs, interleaved, order reversed every other run; **vs no LB** and **vs \
         minimal XDP hop** as above (pairs).\n\n\
         | path | conn/s | vs no LB | vs minimal XDP hop | p50 ms | p99 ms | wrk errors | LB CPU µs/conn |\n\
         |---|---|---|---|---|---|---|---|\n",
        opts.runs
    ));
    for (p, v) in &split {
        let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let o = |f: &dyn Fn(&Sample) -> Option<f64>| v.iter().filter_map(f).collect::<Vec<f64>>();
        let pct = |v: &[f64]| match super::mmm(v) {
            Some((lo, m, hi)) => format!("{m:.0} % ({lo:.0}–{hi:.0})"),
            None => "n/a".into(),
        };
        let vs = pct(&split_ratio(*p, Path_::Direct));
        let vs_floor = pct(&split_ratio(*p, Path_::Floor));
        md.push_str(&format!(
            "| {} | {} | {vs} | {vs_floor} | {} | {} | {} | {} |\n",
            p.label(),
            fmt_mmm(&c(&|s| s.conn_s), 0),
            fmt_mmm(&c(&|s| s.p50_ms), 2),
            fmt_mmm(&c(&|s| s.p99_ms), 2),
            fmt_mmm(&c(&|s| s.wrk_errors as f64), 0),
            fmt_mmm(&o(&|s| s.lb_cpu_us_per_conn), 2),
        ));
    }
    let split_rows: Vec<Value> = split
        .iter()
        .map(|(p, v)| {
            json!({
                "path": p.key(), "label": p.label(),
                "conn_s": mmm_json(&v.iter().map(|s| s.conn_s).collect::<Vec<_>>()),
                "vs_no_lb_pct": mmm_json(&split_ratio(*p, Path_::Direct)),
                "vs_xdp_floor_pct": mmm_json(&split_ratio(*p, Path_::Floor)),
                "runs": v,
            })
        })
        .collect();
    print!("\n{md}");
    let rows: Vec<Value> = samples
        .iter()
        .map(|(p, v)| {
            let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
            json!({
                "path": p.key(), "label": p.label(),
                "gbit_s": mmm_json(&c(&|s| s.gbit_s)),
                "conn_s": mmm_json(&c(&|s| s.conn_s)),
                "vs_no_lb_pct": mmm_json(&paired(*p, if p.client_tx_off() { Path_::DirectTxOff } else { Path_::Direct })),
                "vs_forwarding_pct": if p.client_tx_off() { Value::Null } else { mmm_json(&paired(*p, Path_::Forward)) },
                "vs_xdp_floor_pct": if p.client_tx_off() { Value::Null } else { mmm_json(&paired(*p, Path_::Floor)) },
                "p50_ms": mmm_json(&c(&|s| s.p50_ms)),
                "p99_ms": mmm_json(&c(&|s| s.p99_ms)),
                "runs": v,
            })
        })
        .collect();
    drop(lab);
    save(
        out,
        "throughput",
        json!({
            "settings": {"xdp_modes": [XDP_MODE, "native"], "client_offloads_default": offloads, "iperf_s": IPERF_SECS, "wrk_s": WRK_SECS, "wrk_connections": WRK_CONNS, "runs": opts.runs},
            "rows": rows,
            "lb_own_core_rows": split_rows,
            "markdown": md,
        }),
    )
}

/// Client and backend on CPU 0, the middle nodes on CPU 1, through RPS (which CPU
/// processes a veth's received packets, generic XDP included) and CPU affinity; undone
/// on drop. Switch ports: p0 the client, then one per node, then the backend.
struct SplitCores {
    rps: Vec<(String, String)>,
    pids: Vec<u32>,
}

const CPU0: u32 = 0b01;
const CPU1: u32 = 0b10;

impl SplitCores {
    fn apply(lab: &Lab, cpu0_pids: &[u32], cpu1_pids: &[u32]) -> anyhow::Result<SplitCores> {
        let mut me = SplitCores {
            rps: Vec::new(),
            pids: Vec::new(),
        };
        let sw = &lab.switch.name;
        let mut rps = vec![
            (lab.client.ns.name.clone(), "eth0".to_string(), CPU0),
            (sw.clone(), "p0".into(), CPU0),
            (sw.clone(), format!("p{}", lab.nodes.len() + 1), CPU0),
        ];
        rps.extend(
            lab.backends
                .iter()
                .map(|b| (b.ns.name.clone(), "eth0".into(), CPU0)),
        );
        for (i, n) in lab.nodes.iter().enumerate() {
            rps.push((n.ns.name.clone(), "eth0".into(), CPU1));
            rps.push((sw.clone(), format!("p{}", i + 1), CPU1));
        }
        for (ns, dev, mask) in rps {
            me.rps.push((ns.clone(), dev.clone()));
            set_rps(&ns, &dev, mask)?;
        }
        for (pids, mask) in [(cpu0_pids, CPU0), (cpu1_pids, CPU1)] {
            for &pid in pids {
                me.pids.push(pid);
                crate::lab::netns::sh(&format!("taskset -a -p {mask:x} {pid} >/dev/null"))?;
            }
        }
        Ok(me)
    }
}

impl Drop for SplitCores {
    fn drop(&mut self) {
        for (ns, dev) in &self.rps {
            let _ = set_rps(ns, dev, 0);
        }
        for pid in &self.pids {
            let _ = crate::lab::netns::sh(&format!("taskset -a -p 3 {pid} >/dev/null"));
        }
    }
}

/// RPS mask of every receive queue of `dev` in namespace `ns`. `ip netns exec` mounts
/// the namespace's own /sys (under `nsenter --net` /sys shows the host's devices).
fn set_rps(ns: &str, dev: &str, mask: u32) -> anyhow::Result<()> {
    crate::lab::netns::sh(&format!(
        "ip netns exec {ns} sh -c 'for q in /sys/class/net/{dev}/queues/rx-*/rps_cpus; do echo {mask:x} > $q; done'"
    ))
    .map(drop)
}

pub(super) fn all_ns(lab: &Lab) -> Vec<Netns> {
    let mut v = vec![lab.client.ns.clone()];
    v.extend(lab.nodes.iter().map(|n| n.ns.clone()));
    v.extend(lab.backends.iter().map(|b| b.ns.clone()));
    v
}

pub(super) fn wait_listen(ns: &Netns, port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while ns
        .sh(&format!("ss -Hltn 'sport = :{port}'"))?
        .trim()
        .is_empty()
    {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("nothing listens on :{port} in {}", ns.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The id of the XDP program attached to eth0 in `ns`.
pub(super) fn xdp_prog_id(ns: &Netns) -> anyhow::Result<u64> {
    let s = ns.sh("ip -d -j link show dev eth0")?;
    let v: Value = serde_json::from_str(&s)?;
    let x = &v[0]["xdp"];
    x["prog"]["id"]
        .as_u64()
        .or_else(|| {
            x["attached"]
                .as_array()
                .and_then(|a| a.iter().find_map(|p| p["prog"]["id"].as_u64()))
        })
        .with_context(|| format!("no XDP program on eth0: {x}"))
}

#[derive(Debug, Clone, Copy)]
enum Lb {
    None,
    Pid(u32),
    Bpf(u64),
}

/// The LB's CPU time so far, ns.
fn lb_cpu_ns(lb: Lb) -> Option<u64> {
    match lb {
        Lb::None => None,
        Lb::Pid(pid) => {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the comm: state is field 3, utime 14 and stime 15 (1-based).
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks * 10_000_000) // USER_HZ = 100
        }
        Lb::Bpf(id) => {
            let out = Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string(), "--json"])
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            // bpftool leaves the field out until the program has run with stats on.
            Some(v["run_time_ns"].as_u64().unwrap_or(0))
        }
    }
}

/// A row that names fo as its LB must have gone through fo's XDP program: no run time
/// across the measurement means the packets took another path (an address clash, a
/// route), and the figures would describe that path under fo's name.
fn went_through(
    lb: Lb,
    before: Option<u64>,
    after: Option<u64>,
    target: Ipv4Addr,
) -> anyhow::Result<()> {
    if let (Lb::Bpf(id), Some(a), Some(b)) = (lb, before, after)
        && b <= a
    {
        bail!(
            "traffic to {target} did not go through fo: XDP program {id} did not run during \
             the measurement (the lab routes that address elsewhere)"
        );
    }
    Ok(())
}

/// The VM's busy CPU time so far, ns.
pub(super) fn vm_busy_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(l) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy * 10_000_000
}

/// The client's offloads that matter here, as `ethtool -k` names them.
fn client_offloads(client: &Netns) -> String {
    client
        .sh("ethtool -k eth0 | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|tx-checksumming|generic-receive-offload):'")
        .unwrap_or_default()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tx-checksumming: on, tcp-segmentation-offload: off, …` as `tx-csum on, TSO off, …`.
fn short_offloads(s: &str) -> String {
    s.replace("tx-checksumming:", "tx-csum")
        .replace("tcp-segmentation-offload:", "TSO")
        .replace("generic-segmentation-offload:", "GSO")
        .replace("generic-receive-offload:", "GRO")
}

fn measure(client: &Netns, target: Ipv4Addr, lb: Lb) -> anyhow::Result<Sample> {
    // Bulk.
    let (vm0, lb0) = (vm_busy_ns(), lb_cpu_ns(lb));
    let out = client
        .command("iperf3")
        .args(["-c", &target.to_string(), "-p", &IPERF_PORT.to_string()])
        .args(["-t", &IPERF_SECS.to_string(), "-J"])
        // A path that drops everything fails the bench instead of hanging it.
        .args(["--connect-timeout", "3000"])
        .output()
        .context("spawn iperf3")?;
    let (vm1, lb1) = (vm_busy_ns(), lb_cpu_ns(lb));
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3 to {target}: {e}");
    }
    went_through(lb, lb0, lb1, target)?;
    let bits = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3: no end.sum_received")?;
    let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    let gb = bytes / 1e9;
    let vm_cpu_s_per_gb = (vm1 - vm0) as f64 / 1e9 / gb.max(1e-9);
    let lb_cpu_s_per_gb = match (lb0, lb1) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1e9 / gb.max(1e-9)),
        _ => None,
    };

    let c = measure_conn(client, target, lb, None)?;
    Ok(Sample {
        gbit_s: bits / 1e9,
        vm_cpu_s_per_gb,
        lb_cpu_s_per_gb,
        ..c
    })
}

/// The connection-rate part of [`measure`]: wrk, one request per connection; `cpu`
/// pins wrk to that CPU.
fn measure_conn(
    client: &Netns,
    target: Ipv4Addr,
    lb: Lb,
    cpu: Option<u32>,
) -> anyhow::Result<Sample> {
    let (vm0, lb0) = (vm_busy_ns(), lb_cpu_ns(lb));
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = client.command("taskset");
            t.args(["-c", &c.to_string(), "wrk"]);
            t
        }
        None => client.command("wrk"),
    };
    let out = cmd
        .args([
            "-t2",
            &format!("-c{WRK_CONNS}"),
            &format!("-d{WRK_SECS}s"),
            "--latency",
        ])
        .args(["-H", "Connection: close"])
        .arg(format!("http://{target}:{HTTP_PORT}/"))
        .output()
        .context("spawn wrk")?;
    let (vm1, lb1) = (vm_busy_ns(), lb_cpu_ns(lb));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    went_through(lb, lb0, lb1, target)?;
    let w = parse_wrk(&text).with_context(|| format!("parse wrk's output:\n{text}"))?;
    let conns = w.requests.max(1) as f64;
    Ok(Sample {
        conn_s: w.rate,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        wrk_errors: w.errors,
        vm_cpu_us_per_conn: (vm1 - vm0) as f64 / 1e3 / conns,
        lb_cpu_us_per_conn: match (lb0, lb1) {
            (Some(a), Some(b)) => Some((b - a) as f64 / 1e3 / conns),
            _ => None,
        },
        ..Sample::default()
    })
}

pub(super) struct Wrk {
    pub rate: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// `Requests/sec:`, `N requests in`, the latency distribution (`50%  1.23ms`), socket
/// errors and non-2xx responses from wrk's text output.
pub(super) fn parse_wrk(text: &str) -> Option<Wrk> {
    let mut w = Wrk {
        rate: 0.0,
        requests: 0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for l in text.lines().map(str::trim) {
        if let Some(r) = l.strip_prefix("Requests/sec:") {
            w.rate = r.trim().parse().ok()?;
        } else if l.contains(" requests in ") {
            w.requests = l.split_whitespace().next()?.parse().ok()?;
        } else if let Some(r) = l.strip_prefix("50%") {
            w.p50_ms = to_ms(r.trim())?;
        } else if let Some(r) = l.strip_prefix("99%") {
            w.p99_ms = to_ms(r.trim())?;
        } else if let Some(r) = l.strip_prefix("Socket errors:") {
            // connect 0, read 0, write 0, timeout 0
            w.errors += r
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(r) = l.strip_prefix("Non-2xx or 3xx responses:") {
            w.errors += r.trim().parse::<u64>().unwrap_or(0);
        }
    }
    (w.rate > 0.0).then_some(w)
}

fn to_ms(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        (s, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|v| v * mult)
}
