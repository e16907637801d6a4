//! Failover under a fleet: fo (VRRPv3, adverts 100 ms and 20 ms, XDP DSR) against
//! keepalived + HAProxy (VRRPv2 1 s as deployed today, and VRRPv3 100 ms; HAProxy in TCP
//! mode, `balance source`), on the same topology: a client namespace running `fo-fleet`
//! (`AGENTS` long-lived connections from 100 source addresses), LB nodes a (priority 150,
//! preempts) and b (100), three backends running `fo-sink`.
//!
//! - fo: as in the demo; the backends hold the VIP on lo and answer the clients
//!   directly (DSR); each sink listens on VIP:1514.
//! - fo NAT: `mode = "nat"` with SNAT address `SNAT` and connection-state sync between
//!   a and b; the backends do not hold the VIP (sinks on 0.0.0.0:1514); the client's and
//!   backends' TX checksum offload is off (NAT needs complete checksums; see README).
//! - baseline: keepalived adds the VIP to the master's eth0; HAProxy listens on VIP:1514
//!   on both nodes (`ip_nonlocal_bind=1`) and proxies to the sinks, which listen on
//!   0.0.0.0:1514 on backends that do not hold the VIP.
//!
//! Per run: sinks and fleet start fresh, every agent connects, `PRE` later node a fails
//! — (a) kill -9 of every process in its namespace (fo-agent; keepalived and HAProxy),
//! or (b) `ip link set eth0 down` in it, a dead node as the network sees it — and the
//! run ends once every agent is connected and the reset count has been stable for a
//! second (or `SETTLE_MAX` after the takeover). Then, with the fleet still running, a
//! is restored (its processes restarted, or its link set up) and preempts back (the old
//! master's return); the run ends once the fleet is whole again after that, and the
//! resets and the service gap of the return are counted apart from the failure's. One
//! lab per variant.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Opts, fmt_mmm, keep_config, mmm_json, ms_between, read_json, save};
use crate::lab::plot::{self, Marker, Panel};
use crate::lab::series::{longest_empty_ms, sum_timelines};
use crate::lab::{Bins, Lab, Proc, Spec, log_time, netns};
use crate::util::root;

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// SNAT address of the NAT variant (floats with the router like the VIP).
const SNAT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
const PORT: u16 = 1514;
const AGENTS: u32 = 200;
const RATE_PER_S: u32 = 100;
const SOURCES: (u8, u8) = (129, 228);
const BACKENDS: [u8; 3] = [21, 22, 23];
const PRE: Duration = Duration::from_secs(2);
const DRAIN: Duration = Duration::from_secs(2);
/// Longest wait for the fleet to be whole again after the takeover.
const SETTLE_MAX: Duration = Duration::from_secs(20);
const XDP_MODE: &str = "generic";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Fo,
    Baseline,
}

#[derive(Debug, Clone, Copy)]
struct Variant {
    key: &'static str,
    label: &'static str,
    system: System,
    version: u8,
    advert_ms: u64,
    /// fo with `mode = "nat"` and sync instead of DSR.
    nat: bool,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        key: "fo-v3-100ms",
        label: "fo, VRRPv3 100 ms, XDP DSR",
        system: System::Fo,
        version: 3,
        advert_ms: 100,
        nat: false,
    },
    Variant {
        key: "fo-nat-v3-100ms",
        label: "fo, VRRPv3 100 ms, XDP NAT + sync",
        system: System::Fo,
        version: 3,
        advert_ms: 100,
        nat: true,
    },
    Variant {
        key: "fo-v3-20ms",
        label: "fo, VRRPv3 20 ms, XDP DSR",
        system: System::Fo,
        version: 3,
        advert_ms: 20,
        nat: false,
    },
    Variant {
        key: "ka-v2-1s",
        label: "keepalived VRRPv2 1 s + HAProxy",
        system: System::Baseline,
        version: 2,
        advert_ms: 1000,
        nat: false,
    },
    Variant {
        key: "ka-v3-100ms",
        label: "keepalived VRRPv3 100 ms + HAProxy",
        system: System::Baseline,
        version: 3,
        advert_ms: 100,
        nat: false,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Kill,
    LinkDown,
}

impl Failure {
    fn key(self) -> &'static str {
        match self {
            Failure::Kill => "kill9",
            Failure::LinkDown => "link-down",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Failure::Kill => "kill -9 of the LB processes",
            Failure::LinkDown => "link down (node failure)",
        }
    }
}

const FAILURES: [Failure; 2] = [Failure::Kill, Failure::LinkDown];

/// One run's figures.
#[derive(Debug, Clone, serde::Serialize)]
struct RunResult {
    run: usize,
    takeover_ms: f64,
    /// Longest time with no event arriving at any sink (10 ms buckets), ms.
    service_gap_ms: u64,
    max_silence_ms: f64,
    connections_reset: u64,
    sink_connections_rst: u64,
    reconnects: u64,
    events_sent: u64,
    lost_acked: u64,
    lost_unacked: u64,
    unacked_at_disconnect: u64,
    /// From the first connection lost to every agent writing again (0: none lost), of
    /// the outages that began before a's restore.
    recovery_ms: f64,
    /// The old master's return: from a's restore (restart / link up) to its transition
    /// to master.
    preempt_ms: f64,
    /// Longest time with no event at any sink from a's restore to the end of the run.
    return_gap_ms: u64,
    /// Connections the fleet saw reset after a's restore.
    return_resets: u64,
    /// The longest outage that began after a's restore (0: none lost).
    return_recovery_ms: f64,
    png: Option<String>,
}

/// keepalived and HAProxy of one baseline node.
#[derive(Default)]
struct BaseProcs {
    keepalived: Option<Proc>,
    haproxy: Option<Proc>,
    runs: usize,
}

struct Bench<'a> {
    lab: Lab,
    variant: Variant,
    out: &'a Path,
    base: Vec<BaseProcs>,
}

pub fn run(bins: &Bins, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let mut results: Vec<(Variant, Failure, Vec<RunResult>)> = Vec::new();
    for v in VARIANTS {
        let started = Instant::now();
        let per = one_variant(bins, v, opts.runs, out)
            .with_context(|| format!("failover bench, {}", v.label))?;
        eprintln!(
            "failover {}: {:.0} s",
            v.key,
            started.elapsed().as_secs_f64()
        );
        for (f, runs) in per {
            results.push((v, f, runs));
        }
    }
    let md = markdown(&results, opts.runs);
    print!("\n{md}");
    save(
        out,
        "failover",
        json!({
            "settings": {
                "agents": AGENTS, "rate_per_s": RATE_PER_S, "sources": 100, "backends": BACKENDS.len(),
                "runs": opts.runs, "pre_failure_s": PRE.as_secs(), "drain_s": DRAIN.as_secs(),
                "xdp_mode": XDP_MODE, "fleet_reconnect_backoff": "1s fixed (fo-fleet default)",
            },
            "variants": results.iter().map(|(v, f, runs)| json!({
                "variant": v.key, "label": v.label, "failure": f.key(),
                "vrrp_version": v.version, "advert_ms": v.advert_ms,
                "takeover_ms": mmm_json(&col(runs, |r| r.takeover_ms)),
                "service_gap_ms": mmm_json(&col(runs, |r| r.service_gap_ms as f64)),
                "connections_reset": mmm_json(&col(runs, |r| r.connections_reset as f64)),
                "lost_acked": mmm_json(&col(runs, |r| r.lost_acked as f64)),
                "lost_unacked": mmm_json(&col(runs, |r| r.lost_unacked as f64)),
                "unacked_at_disconnect": mmm_json(&col(runs, |r| r.unacked_at_disconnect as f64)),
                "recovery_ms": mmm_json(&col(runs, |r| r.recovery_ms)),
                "preempt_ms": mmm_json(&col(runs, |r| r.preempt_ms)),
                "return_gap_ms": mmm_json(&col(runs, |r| r.return_gap_ms as f64)),
                "return_resets": mmm_json(&col(runs, |r| r.return_resets as f64)),
                "return_recovery_ms": mmm_json(&col(runs, |r| r.return_recovery_ms)),
                "max_silence_ms": mmm_json(&col(runs, |r| r.max_silence_ms)),
                "runs": runs,
            })).collect::<Vec<_>>(),
            "markdown": md,
        }),
    )
}

fn col(runs: &[RunResult], f: impl Fn(&RunResult) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

fn markdown(results: &[(Variant, Failure, Vec<RunResult>)], runs: usize) -> String {
    let mut md = format!(
        "## Failover under a fleet: fo vs keepalived + HAProxy\n\n\
         {AGENTS} agents × {RATE_PER_S} events/s, each on one long-lived TCP connection to \
         VIP:{PORT} from 100 source addresses (`fo-fleet`, reconnect after a fixed 1 s, \
         resending everything unacknowledged), 3 backends running `fo-sink`. Node a \
         (priority 150, preempts) is master; b (100) takes over when a fails, either by \
         **kill -9** of every LB process on a (fo-agent; keepalived + HAProxy) or by \
         **link down** of a's eth0 (what a dead node looks like). fo: VRRPv3 unicast, XDP \
         DSR in {XDP_MODE} (SKB) mode, `hash = \"source-ip\"`; the backends hold the VIP on lo. \
         Baseline: keepalived 2.2.7 (unicast peers) moves the VIP, HAProxy 2.6 TCP mode \
         `balance source` on VIP:{PORT} on both nodes (`ip_nonlocal_bind`), sinks on the \
         backends' own addresses. {runs} runs per row, min / median / max.\n\n\
         - **takeover**: from the failure to b's transition to master (fo: the timestamp \
         of the agent's log line; keepalived: arrival of its `Entering MASTER STATE` line).\n\
         - **service gap**: longest time with no event arriving at any sink (10 ms buckets) \
         from the failure to a's restore.\n\
         - **resets**: connections the fleet saw reset (of {AGENTS}) from the failure to a's \
         restore; **lost**: events the \
         fleet wrote that no sink holds, acknowledged (must be 0) / unacknowledged \
         (the fleet resent them; a client without resend loses them); **unacked at \
         disconnect**: written into a connection that then died before its ack (lost, \
         unacked and max silence cover the whole run, the return included).\n\
         - **recovery**: from the first connection lost to every agent writing again (0: \
         none lost), longest outage that began before a's restore. **max silence**: the \
         longest pause of one agent's events at a sink.\n\
         - **a back** (the old master's return, preemption): once the fleet is whole again \
         after the takeover, a is restored with the fleet still running (kill -9: its \
         processes restarted; link down: link up) and preempts back. **preempt**: from the \
         restore to a's transition to master (timed as the takeover); **gap**, **resets**, \
         **recovery**: as above, from the restore to the end of the run (fleet whole again).\n\n\
         | system | failure | takeover ms | service gap ms | resets | lost acked / unacked | unacked at disconnect | recovery ms | max silence ms | a back: preempt ms | a back: gap ms | a back: resets | a back: recovery ms | timeline |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for (v, f, rs) in results {
        let png = rs
            .iter()
            .find_map(|r| r.png.clone())
            .map(|p| format!("[png]({p})"))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {png} |\n",
            v.label,
            f.label(),
            fmt_mmm(&col(rs, |r| r.takeover_ms), 0),
            fmt_mmm(&col(rs, |r| r.service_gap_ms as f64), 0),
            fmt_mmm(&col(rs, |r| r.connections_reset as f64), 0),
            fmt_mmm(&col(rs, |r| r.lost_acked as f64), 0),
            fmt_mmm(&col(rs, |r| r.lost_unacked as f64), 0),
            fmt_mmm(&col(rs, |r| r.unacked_at_disconnect as f64), 0),
            fmt_mmm(&col(rs, |r| r.recovery_ms), 0),
            fmt_mmm(&col(rs, |r| r.max_silence_ms), 0),
            fmt_mmm(&col(rs, |r| r.preempt_ms), 0),
            fmt_mmm(&col(rs, |r| r.return_gap_ms as f64), 0),
            fmt_mmm(&col(rs, |r| r.return_resets as f64), 0),
            fmt_mmm(&col(rs, |r| r.return_recovery_ms), 0),
        ));
    }
    md.push_str(
        "\nWhy fo's kill -9 can show no gap at all: killing the agent does not stop its \
         pinned XDP program, which forwards what still reaches a's MAC until b's gratuitous \
         ARP moves the VIP; a's dead-man lease stops it answering ARP. keepalived's kill -9 \
         leaves the VIP on a's interface, but the HAProxy holding the connections is gone. \
         Link down is the case where neither can forward: the gap then is about the \
         takeover time for fo; for the baseline it is the takeover plus TCP's retransmission \
         timeout (the dead connections learn of their death by an RST only when a \
         retransmission reaches the new master) plus the fleet's 1 s reconnect backoff. \
         After kill -9, HAProxy's sockets die with it and the clients get the RST at once: \
         the baseline's gap is then the 1 s backoff, or the takeover where that is longer \
         (a real agent's backoff is longer still). **recovery** counts from the first \
         connection the fleet saw lost, not from the failure. On a's return, \
         keepalived moves the VIP back to a, whose HAProxy has never seen the connections \
         made through b: every client's next segment draws an RST, as in a failure; fo's \
         a computes the same Maglev table over the same backends, so its XDP program \
         forwards the established flows to the backends they already use, and the \
         backends answer the clients directly (DSR). The timelines (events per 10 ms at the sinks, first run of each \
         row) are `failover-<variant>-<failure>.png`.\n",
    );
    md
}

fn spec() -> Spec {
    Spec {
        prefix: "fo-bench".into(),
        vip: VIP,
        port: PORT,
        client: Ipv4Addr::new(192, 0, 2, 10),
        client_sources: (SOURCES.0..=SOURCES.1)
            .map(|i| Ipv4Addr::new(192, 0, 2, i))
            .collect(),
        nodes: vec![
            ("a".into(), Ipv4Addr::new(192, 0, 2, 2)),
            ("b".into(), Ipv4Addr::new(192, 0, 2, 3)),
        ],
        backends: BACKENDS
            .iter()
            .map(|&i| Ipv4Addr::new(192, 0, 2, i))
            .collect(),
    }
}

fn one_variant(
    bins: &Bins,
    v: Variant,
    runs: usize,
    out: &Path,
) -> anyhow::Result<Vec<(Failure, Vec<RunResult>)>> {
    let dir = out.join("logs").join(format!("failover-{}", v.key));
    let _ = std::fs::remove_dir_all(&dir);
    let lab = Lab::build(&spec(), bins.clone(), &dir)?;
    let mut b = Bench {
        lab,
        variant: v,
        out,
        base: Vec::new(),
    };
    b.configure()?;
    b.start_node(0)?;
    b.wait_master(0, SystemTime::UNIX_EPOCH, Duration::from_secs(20))?;
    b.start_node(1)?;
    b.wait_backup(1, SystemTime::UNIX_EPOCH, Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(500));
    let mut per = Vec::new();
    for f in FAILURES {
        let mut rs = Vec::new();
        for i in 1..=runs {
            eprintln!("failover {} {} run {i}/{runs}", v.key, f.key());
            let r = b.one_run(f, i)?;
            eprintln!(
                "  takeover {:.0} ms, gap {} ms, resets {}, lost {}/{}, unacked at disconnect {}, recovery {:.0} ms",
                r.takeover_ms,
                r.service_gap_ms,
                r.connections_reset,
                r.lost_acked,
                r.lost_unacked,
                r.unacked_at_disconnect,
                r.recovery_ms
            );
            eprintln!(
                "  a back: preempt {:.0} ms, gap {} ms, resets {}, recovery {:.0} ms",
                r.preempt_ms, r.return_gap_ms, r.return_resets, r.return_recovery_ms
            );
            rs.push(r);
        }
        per.push((f, rs));
    }
    Ok(per)
}

fn fo_router(v: Variant, priority: u8, peer: Ipv4Addr, key: &Path) -> String {
    let backends = BACKENDS
        .iter()
        .map(|i| format!("{{ address = \"192.0.2.{i}\" }}"))
        .collect::<Vec<_>>()
        .join(", ");
    // `write_config` puts the body after [node]: the sync line belongs to [node].
    let (sync, snat, mode) = if v.nat {
        (
            format!(
                "sync = {{ peers = [\"{peer}\"], key_file = \"{}\" }}\n\n",
                key.display()
            ),
            format!("snat = [\"{SNAT}\"]\n"),
            "nat",
        )
    } else {
        (String::new(), String::new(), "dsr")
    };
    format!(
        r#"{sync}[[router]]
name = "bench"
ownership = "vrrp"
vrid = 51
priority = {priority}
version = {version}
advert_interval = "{advert}ms"
preempt = true
vips = ["{VIP}"]
{snat}peers = ["{peer}"]

[[service]]
vip = "{VIP}"
port = {PORT}
protocol = "tcp"
mode = "{mode}"
hash = "source-ip"
backends = [{backends}]
"#,
        version = v.version,
        advert = v.advert_ms,
    )
}

/// keepalived's config matching the fo router: same VRID, priorities, interval, unicast
/// peers, VIP.
fn keepalived_conf(v: Variant, name: &str, priority: u8, me: Ipv4Addr, peer: Ipv4Addr) -> String {
    let advert = if v.advert_ms >= 1000 {
        format!("{}", v.advert_ms / 1000)
    } else {
        format!("{}", v.advert_ms as f64 / 1000.0)
    };
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_garp_master_delay 0\n}}\n\
         vrrp_instance VI {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int {advert}\n  version {version}\n  \
         unicast_src_ip {me}\n  unicast_peer {{\n    {peer}\n  }}\n  \
         virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n",
        version = v.version
    )
}

/// HAProxy in TCP mode in front of the same backends as fo's service, `balance source`
/// (fo's `hash = "source-ip"`), no health checks (fo's service has none either).
fn haproxy_cfg(dir: &Path, node: &str) -> String {
    let servers: String = BACKENDS
        .iter()
        .enumerate()
        .map(|(n, i)| format!("  server b{} 192.0.2.{i}:{PORT}\n", n + 1))
        .collect();
    format!(
        "global\n  maxconn 8000\n  nbthread 2\n  pidfile {pid}\n\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5m\n  timeout server 5m\n\n\
         frontend fe\n  bind {VIP}:{PORT}\n  default_backend be\n\n\
         backend be\n  balance source\n{servers}",
        pid = dir.join(format!("haproxy-{node}.pid")).display()
    )
}

impl Bench<'_> {
    fn configure(&mut self) -> anyhow::Result<()> {
        let v = self.variant;
        let (a, b) = (self.lab.nodes[0].addr, self.lab.nodes[1].addr);
        let prios = [(150u8, a, b), (100u8, b, a)];
        match v.system {
            System::Fo => {
                let key = self.lab.dir.join("sync.key");
                if v.nat {
                    use std::os::unix::fs::PermissionsExt as _;
                    std::fs::write(&key, b"fo-bench-sync-key-0123456789abcdef")?;
                    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
                    let script = root().join("deploy/backend-dsr.sh");
                    for be in &self.lab.backends {
                        be.ns
                            .sh(&format!("sh {} --remove {VIP}", script.display()))?;
                        be.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
                    }
                    self.lab.client.ns.sh("ethtool -K eth0 tx off >/dev/null")?;
                }
                for (i, (prio, _, peer)) in prios.iter().enumerate() {
                    let n = &self.lab.nodes[i];
                    n.write_config(XDP_MODE, &fo_router(v, *prio, *peer, &key))?;
                    keep_config(
                        self.out,
                        &n.config,
                        &format!("failover-{}-{}.toml", v.key, n.name),
                    )?;
                }
            }
            System::Baseline => {
                let script = root().join("deploy/backend-dsr.sh");
                for be in &self.lab.backends {
                    be.ns
                        .sh(&format!("sh {} --remove {VIP}", script.display()))?;
                }
                for (i, (prio, me, peer)) in prios.iter().enumerate() {
                    let n = &self.lab.nodes[i];
                    n.ns.sh("sysctl -q -w net.ipv4.ip_nonlocal_bind=1")?;
                    let ka = self.lab.dir.join(format!("keepalived-{}.conf", n.name));
                    std::fs::write(&ka, keepalived_conf(v, &n.name, *prio, *me, *peer))?;
                    keep_config(
                        self.out,
                        &ka,
                        &format!("failover-{}-keepalived-{}.conf", v.key, n.name),
                    )?;
                    let hp = self.lab.dir.join(format!("haproxy-{}.cfg", n.name));
                    std::fs::write(&hp, haproxy_cfg(&self.lab.dir, &n.name))?;
                    keep_config(
                        self.out,
                        &hp,
                        &format!("failover-{}-haproxy-{}.cfg", v.key, n.name),
                    )?;
                }
                self.base = (0..self.lab.nodes.len())
                    .map(|_| BaseProcs::default())
                    .collect();
            }
        }
        Ok(())
    }

    fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        match self.variant.system {
            System::Fo => {
                let bins = self.lab.bins.clone();
                self.lab.nodes[i].start(&bins)?;
            }
            System::Baseline => {
                let n = &self.lab.nodes[i];
                let dir = &self.lab.dir;
                let bp = &mut self.base[i];
                bp.runs += 1;
                let run = bp.runs;
                // After a kill -9 the pid files are stale, and keepalived refuses to start
                // while they name a pid.
                let _ = std::fs::remove_file(dir.join(format!("keepalived-{}.pid", n.name)));
                let _ = std::fs::remove_file(dir.join(format!("vrrp-{}.pid", n.name)));
                let mut cmd = n.ns.command("stdbuf");
                cmd.args(["-oL", "-eL", "/usr/sbin/keepalived", "-n", "-l", "-D", "-f"])
                    .arg(dir.join(format!("keepalived-{}.conf", n.name)))
                    .arg("-p")
                    .arg(dir.join(format!("keepalived-{}.pid", n.name)))
                    .arg("-r")
                    .arg(dir.join(format!("vrrp-{}.pid", n.name)));
                bp.keepalived = Some(Proc::spawn(
                    &format!("keepalived {}", n.name),
                    cmd,
                    &dir.join(format!("keepalived-{}-{run}.log", n.name)),
                )?);
                let mut cmd = n.ns.command("/usr/sbin/haproxy");
                cmd.arg("-db")
                    .arg("-f")
                    .arg(dir.join(format!("haproxy-{}.cfg", n.name)));
                bp.haproxy = Some(Proc::spawn(
                    &format!("haproxy {}", n.name),
                    cmd,
                    &dir.join(format!("haproxy-{}-{run}.log", n.name)),
                )?);
                let start = Instant::now();
                loop {
                    let s = n.ns.sh(&format!("ss -Hltn 'sport = :{PORT}'"))?;
                    if !s.trim().is_empty() {
                        break;
                    }
                    if let Some(p) = bp.haproxy.as_mut()
                        && let Some(st) = p.exited()
                    {
                        bail!("haproxy on {} exited ({st}):\n{}", n.name, p.tail(20));
                    }
                    if start.elapsed() > Duration::from_secs(10) {
                        bail!("haproxy on {} does not listen on :{PORT}", n.name);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(())
    }

    /// Wait for node `i` to become master (a transition logged at or after `since`).
    /// Returns when it did: fo, the log line's own timestamp; keepalived, the line's
    /// arrival.
    fn wait_master(
        &mut self,
        i: usize,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        match self.variant.system {
            System::Fo => {
                let name = self.lab.nodes[i].name.clone();
                let arrived = self.lab.nodes[i].wait_state_after("master", since, timeout)?;
                let logged = super::takeover::master_line(&self.lab, &name, since)
                    .and_then(|(_, l)| log_time(&l));
                Ok(logged.unwrap_or(arrived))
            }
            System::Baseline => self.wait_ka(i, "Entering MASTER STATE", since, timeout),
        }
    }

    fn wait_backup(
        &mut self,
        i: usize,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        match self.variant.system {
            System::Fo => self.lab.nodes[i].wait_state_after("backup", since, timeout),
            System::Baseline => self.wait_ka(i, "Entering BACKUP STATE", since, timeout),
        }
    }

    fn wait_ka(
        &mut self,
        i: usize,
        what: &str,
        since: SystemTime,
        timeout: Duration,
    ) -> anyhow::Result<SystemTime> {
        let name = self.lab.nodes[i].name.clone();
        let p = self.base[i]
            .keepalived
            .as_mut()
            .with_context(|| format!("keepalived {name} is not running"))?;
        let (at, _) = p
            .wait_for_line_since(since, timeout, |l| l.contains(what))
            .with_context(|| format!("keepalived {name}: no `{what}`"))?;
        Ok(at)
    }

    /// Fail node a; returns the instant just before.
    fn fail(&mut self, f: Failure) -> anyhow::Result<SystemTime> {
        let ns = self.lab.nodes[0].ns.clone();
        match f {
            Failure::Kill => {
                let pids = netns::sh(&format!("ip netns pids {}", ns.name))?;
                // Children (keepalived's VRRP process) first: they would otherwise get
                // their parent-death signal and shut down cleanly.
                let mut pids: Vec<&str> = pids.split_whitespace().collect();
                pids.reverse();
                let at = SystemTime::now();
                let ok = Command::new("kill")
                    .arg("-9")
                    .args(&pids)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if !ok || pids.is_empty() {
                    bail!("kill -9 {pids:?} in {} failed", ns.name);
                }
                // Reap.
                if let Some(p) = self.lab.nodes[0].runs.last_mut() {
                    let _ = p.wait(Duration::from_secs(5));
                }
                if let Some(bp) = self.base.get_mut(0) {
                    bp.keepalived.take();
                    bp.haproxy.take();
                }
                Ok(at)
            }
            Failure::LinkDown => {
                let at = SystemTime::now();
                ns.sh("ip link set eth0 down")?;
                Ok(at)
            }
        }
    }

    /// Bring node a back after `f`; wait until it is master again and b backup.
    /// Returns when a became master.
    fn restore(&mut self, f: Failure) -> anyhow::Result<SystemTime> {
        let t = SystemTime::now();
        match f {
            Failure::Kill => {
                if self.variant.system == System::Baseline {
                    // keepalived's kill -9 left the VIP on a's interface; a restarted
                    // keepalived would find it there (see docs/lab.md).
                    let _ = self.lab.nodes[0]
                        .ns
                        .sh(&format!("ip addr del {VIP}/32 dev eth0"));
                }
                self.start_node(0)?;
            }
            Failure::LinkDown => {
                self.lab.nodes[0].ns.sh("ip link set eth0 up")?;
            }
        }
        let back = self
            .wait_master(0, t, Duration::from_secs(20))
            .context("node a did not take the VIP back")?;
        self.wait_backup(1, t, Duration::from_secs(10))
            .context("node b did not go back to backup")?;
        Ok(back)
    }

    /// The fleet's reset count in its last progress line.
    fn fleet_resets(&self) -> anyhow::Result<u64> {
        let p = self.lab.fleet.as_ref().context("fleet")?;
        let lines = p.lock();
        let last = lines
            .iter()
            .rev()
            .find(|(_, l)| l.starts_with("fo-fleet: t="))
            .context("no progress line from the fleet")?;
        last.1
            .split_whitespace()
            .find_map(|w| w.strip_prefix("resets="))
            .and_then(|n| n.parse().ok())
            .context("no resets= in the fleet's progress line")
    }

    fn one_run(&mut self, f: Failure, run: usize) -> anyhow::Result<RunResult> {
        let v = self.variant;
        match v.system {
            System::Fo if !v.nat => self.lab.start_sinks()?,
            System::Fo | System::Baseline => {
                self.lab.start_sinks_on(|_| format!("0.0.0.0:{PORT}"))?
            }
        }
        let args = crate::lab::fleet_args(AGENTS, RATE_PER_S, SOURCES, DRAIN, "2m");
        self.lab.start_fleet(&args)?;
        let fleet_start = SystemTime::now();
        let connected = format!("connected={AGENTS}/{AGENTS}");
        self.lab
            .fleet
            .as_mut()
            .context("fleet")?
            .wait_for_line(Duration::from_secs(15), |l| l.contains(&connected))
            .context("the fleet could not connect every agent through the VIP")?;
        std::thread::sleep(PRE);

        let failed = self.fail(f)?;
        let took = self.wait_master(1, failed, Duration::from_secs(15))?;
        let takeover_ms = ms_between(failed, took);
        self.wait_whole(took)?;
        // The old master's return, the fleet still running.
        let fail_resets = self.fleet_resets()?;
        let restored = SystemTime::now();
        let back = self.restore(f)?;
        let preempt_ms = ms_between(restored, back);
        self.wait_whole(back)?;
        let stop = SystemTime::now();
        let fleet_report = self.lab.stop_fleet(DRAIN)?;
        let fleet_keep = self.lab.dir.join(format!("fleet-{}-{run}.json", f.key()));
        std::fs::rename(&fleet_report, &fleet_keep).context("keep the fleet report")?;
        self.lab.stop_sinks()?;
        let sink_reports: Vec<PathBuf> = self
            .lab
            .backends
            .iter()
            .filter_map(|b| b.reports.last().cloned())
            .collect();
        let merged = self.lab.merge(&fleet_keep, &sink_reports)?;
        let sinks: Vec<Value> = sink_reports
            .iter()
            .map(|p| read_json(p))
            .collect::<anyhow::Result<_>>()?;
        let buckets = sum_timelines(&sinks);
        let gap = longest_empty_ms(&buckets, failed, restored);
        let return_gap = longest_empty_ms(&buckets, restored, stop);
        let fleet_doc = read_json(&fleet_keep)?;
        let restored_ns = restored
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let outage_max = |after: bool| {
            fleet_doc["outages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|o| (o["start_unix_ns"].as_u64().unwrap_or(0) >= restored_ns) == after)
                .filter_map(|o| o["duration_ms"].as_f64())
                .fold(0.0, f64::max)
        };
        let num = |k: &str| merged.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ms = |k: &str| merged.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let png = if run == 1 {
            let name = format!("failover-{}-{}.png", v.key, f.key());
            let rel = |t: SystemTime| ms_between(failed, t) / 1e3;
            let series: Vec<(f64, u64)> = buckets
                .iter()
                .map(|(&ns, &c)| (rel(SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)), c))
                .collect();
            let markers = [
                Marker {
                    t: 0.0,
                    label: format!("a failed ({})", f.key()),
                    color: plot::RED,
                },
                Marker {
                    t: takeover_ms / 1e3,
                    label: "b master".into(),
                    color: plot::GREEN,
                },
                Marker {
                    t: rel(restored),
                    label: "a restored".into(),
                    color: plot::RED,
                },
                Marker {
                    t: rel(back),
                    label: "a master again".into(),
                    color: plot::GREEN,
                },
            ];
            let zoom_end = (takeover_ms / 1e3 + 1.5).max(2.0);
            let panels = [
                Panel {
                    title: "whole run".into(),
                    x: rel(fleet_start) - 0.2..rel(stop) + 0.2,
                },
                Panel {
                    title: "around the failure".into(),
                    x: -0.5..zoom_end,
                },
                Panel {
                    title: "around a's return".into(),
                    x: rel(restored) - 0.5..(rel(back) + 1.5).max(rel(restored) + 2.0),
                },
            ];
            let title = format!(
                "{} — {}: takeover {:.0} ms, gap {} ms, {} resets; a back: gap {} ms, {} resets",
                v.label,
                f.label(),
                takeover_ms,
                gap,
                fail_resets,
                return_gap,
                num("connections_reset").saturating_sub(fail_resets)
            );
            match plot::timeline_png(
                &self.out.join(&name),
                &plot::Timeline {
                    title: &title,
                    x_desc: "seconds since the failure",
                    y_desc: "events per 10 ms",
                    bucket_s: 0.01,
                    buckets: &series,
                    markers: &markers,
                    panels: &panels,
                },
            ) {
                Ok(()) => Some(name),
                Err(e) => {
                    eprintln!("failover: {name} not written: {e:#}");
                    None
                }
            }
        } else {
            None
        };
        Ok(RunResult {
            run,
            takeover_ms,
            service_gap_ms: gap,
            max_silence_ms: ms("max_silence_ms"),
            connections_reset: fail_resets,
            sink_connections_rst: num("sink_connections_rst"),
            reconnects: num("reconnects"),
            events_sent: num("events_sent"),
            lost_acked: num("lost_acked"),
            lost_unacked: num("lost_unacked"),
            unacked_at_disconnect: num("unacked_at_disconnect"),
            recovery_ms: outage_max(false),
            preempt_ms,
            return_gap_ms: return_gap,
            return_resets: num("connections_reset").saturating_sub(fail_resets),
            return_recovery_ms: outage_max(true),
            png,
        })
    }

    /// Wait until the fleet is whole again after the takeover: two progress lines (one
    /// per second) at least 1 s after `took`, every agent connected, the reset count
    /// unchanged between them. At most `SETTLE_MAX`.
    fn wait_whole(&mut self, took: SystemTime) -> anyhow::Result<()> {
        let from = took + Duration::from_secs(1);
        let deadline = Instant::now() + SETTLE_MAX;
        let want = format!("connected={AGENTS}/{AGENTS}");
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let p = self.lab.fleet.as_mut().context("fleet")?;
            if let Some(st) = p.exited() {
                bail!("fo-fleet exited ({st}):\n{}", p.tail(20));
            }
            let lines: Vec<String> = p
                .lock()
                .iter()
                .filter(|(at, l)| *at >= from && l.starts_with("fo-fleet: t="))
                .map(|(_, l)| l.clone())
                .collect();
            let resets = |l: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("resets="))
                    .map(str::to_owned)
            };
            if let [.., x, y] = lines.as_slice()
                && x.contains(&want)
                && y.contains(&want)
                && resets(x) == resets(y)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!(
                    "failover: the fleet is not whole {SETTLE_MAX:?} after the takeover; ending the run"
                );
                return Ok(());
            }
        }
    }
}
