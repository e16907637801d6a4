//! The throughput bench's measurements: iperf3 and wrk through each path, the VM's and
//! the LB's CPU time around them, interleaved run by run.

use super::*;

/// Where the LB node runs while measuring.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cores {
    /// Everything shares the VM's cores: bulk and connections, with each path's offloads.
    Shared,
    /// The LB node on its own core ([`SplitCores`]): connections only, offloads on.
    Split,
    /// Everything shares the VM's cores, connections only, offloads on: the fo vs
    /// minimal-XDP-hop pairs.
    SharedConn,
}

/// Every path in `paths`, `runs` times. Interleaved run by run, so that drift on the VM
/// hits the systems alike, and in reverse order every other run, so that a steady drift
/// within a run does too.
pub(super) fn interleave(
    lab: &Lab,
    rig: &Rig,
    paths: &[Path_],
    runs: usize,
    cores: Cores,
) -> anyhow::Result<Vec<(Path_, Vec<Sample>)>> {
    let mut samples: Vec<(Path_, Vec<Sample>)> = paths.iter().map(|p| (*p, Vec::new())).collect();
    for run in 1..=runs {
        let order: Vec<usize> = if run % 2 == 1 {
            (0..samples.len()).collect()
        } else {
            (0..samples.len()).rev().collect()
        };
        for i in order {
            let (p, v) = &mut samples[i];
            let lb = rig.lb(*p);
            let s = match cores {
                Cores::Shared => {
                    let tx = if p.client_tx_off() { "off" } else { "on" };
                    lab.client.ns.sh(&format!("ethtool -K eth0 tx {tx}"))?;
                    let btx = if p.backend_tx_off() { "off" } else { "on" };
                    rig.be_ns.sh(&format!("ethtool -K eth0 tx {btx}"))?;
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
                    s
                }
                Cores::Split | Cores::SharedConn => {
                    let (cpu, what) = match cores {
                        Cores::Split => (Some(0), "split-core"),
                        _ => (None, "pair"),
                    };
                    let s = measure_conn(&lab.client.ns, p.target(), lb, cpu)
                        .with_context(|| format!("{} ({what}) run {run}", p.label()))?;
                    eprintln!(
                        "throughput {what} {} run {run}: {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}",
                        p.key(),
                        s.conn_s,
                        s.p50_ms,
                        s.p99_ms,
                        s.wrk_errors
                    );
                    s
                }
            };
            v.push(s);
        }
    }
    Ok(samples)
}

/// Client and backend on CPU 0, the middle nodes on CPU 1, through RPS (which CPU
/// processes a veth's received packets, generic XDP included) and CPU affinity; undone
/// on drop. Switch ports: p0 the client, then one per node, then the backend.
pub(super) struct SplitCores {
    rps: Vec<(String, String)>,
    pids: Vec<u32>,
}

impl SplitCores {
    pub(super) fn apply(
        lab: &Lab,
        cpu0_pids: &[u32],
        cpu1_pids: &[u32],
    ) -> anyhow::Result<SplitCores> {
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

const CPU0: u32 = 0b01;

const CPU1: u32 = 0b10;

/// RPS mask of every receive queue of `dev` in namespace `ns`. `ip netns exec` mounts
/// the namespace's own /sys (under `nsenter --net` /sys shows the host's devices).
fn set_rps(ns: &str, dev: &str, mask: u32) -> anyhow::Result<()> {
    crate::lab::netns::sh(&format!(
        "ip netns exec {ns} sh -c 'for q in /sys/class/net/{dev}/queues/rx-*/rps_cpus; do echo {mask:x} > $q; done'"
    ))
    .map(drop)
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Lb {
    None,
    Pid(u32),
    Bpf(u64),
}

/// The LB's CPU time so far, ns.
fn lb_cpu_ns(lb: Lb) -> Option<u64> {
    match lb {
        Lb::None => None,
        Lb::Pid(pid) => proc_cpu_ns(pid),
        Lb::Bpf(id) => bpf_stats(id).map(|(run_time_ns, _)| run_time_ns),
    }
}

/// A process's user+system CPU time so far (all its threads), ns.
pub(in crate::bench) fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: utime and stime are fields 14 and 15 (1-based).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000) // USER_HZ = 100
}

/// (run_time_ns, run_cnt) of a BPF program.
pub(in crate::bench) fn bpf_stats(id: u64) -> Option<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    // bpftool leaves the fields out until the program has run with stats on.
    Some((
        v["run_time_ns"].as_u64().unwrap_or(0),
        v["run_cnt"].as_u64().unwrap_or(0),
    ))
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
pub(in crate::bench) fn vm_busy_ns() -> u64 {
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
pub(super) fn client_offloads(client: &Netns) -> String {
    client
        .sh("ethtool -k eth0 | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|tx-checksumming|generic-receive-offload):'")
        .unwrap_or_default()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
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
    let cmd = match cpu {
        Some(c) => {
            let mut t = client.command("taskset");
            t.args(["-c", &c.to_string(), "wrk"]);
            t
        }
        None => client.command("wrk"),
    };
    let w = wrk(cmd, target, HTTP_PORT, WRK_CONNS, WRK_SECS);
    let (vm1, lb1) = (vm_busy_ns(), lb_cpu_ns(lb));
    let w = w?;
    went_through(lb, lb0, lb1, target)?;
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

/// `wrk -t2 -cCONNS -dSECSs --latency -H 'Connection: close' http://TARGET:PORT/` (one
/// request per connection), run by `cmd` (`wrk`, or `taskset -c N wrk`, in the client's
/// namespace): its figures, or why there are none.
pub(in crate::bench) fn wrk(
    mut cmd: Command,
    target: Ipv4Addr,
    port: u16,
    conns: u32,
    secs: u32,
) -> anyhow::Result<Wrk> {
    let out = cmd
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .args(["-H", "Connection: close"])
        .arg(format!("http://{target}:{port}/"))
        .output()
        .context("spawn wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text).with_context(|| format!("parse wrk's output:\n{text}"))
}

pub(in crate::bench) struct Wrk {
    pub rate: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// `Requests/sec:`, `N requests in`, the latency distribution (`50%  1.23ms`), socket
/// errors and non-2xx responses from wrk's text output.
pub(in crate::bench) fn parse_wrk(text: &str) -> Option<Wrk> {
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
