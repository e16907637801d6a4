//! The throughput bench's report: the two markdown tables (the LB sharing the cores, and on
//! its own core) and their JSON rows.

use super::*;

/// Run i of `path` over run i of `reference`, conn/s in %: the runs were taken side by
/// side, so the ratio of a pair is steadier than the ratio of two medians.
pub(super) fn paired(rows: &[(Path_, Vec<Sample>)], path: Path_, reference: Path_) -> Vec<f64> {
    conn_rates(rows, path)
        .iter()
        .zip(conn_rates(rows, reference))
        .filter(|(_, b)| *b > 0.0)
        .map(|(a, b)| a / b * 100.0)
        .collect()
}

/// The conn/s of every run of `path`.
fn conn_rates(rows: &[(Path_, Vec<Sample>)], path: Path_) -> Vec<f64> {
    rows.iter()
        .find(|(q, _)| *q == path)
        .map(|(_, v)| v.iter().map(|s| s.conn_s).collect())
        .unwrap_or_default()
}

/// Paired ratios as `median % (min–max)`.
pub(super) fn pct(v: &[f64]) -> String {
    match crate::bench::mmm(v) {
        Some((lo, m, hi)) => format!("{m:.0} % ({lo:.0}–{hi:.0})"),
        None => "n/a".into(),
    }
}

/// Both tables: every path with the LB sharing the cores, then the connection rates with
/// the LB node on its own core.
pub(super) fn markdown(
    samples: &[(Path_, Vec<Sample>)],
    split: &[(Path_, Vec<Sample>)],
    runs: usize,
) -> String {
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
        runs
    );
    for (p, v) in samples {
        let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let o = |f: &dyn Fn(&Sample) -> Option<f64>| v.iter().filter_map(f).collect::<Vec<f64>>();
        let ceiling = if p.client_tx_off() {
            Path_::DirectTxOff
        } else {
            Path_::Direct
        };
        let vs = pct(&paired(samples, *p, ceiling));
        let (vs_fwd, vs_floor) = if p.client_tx_off() {
            ("n/a".to_string(), "n/a".to_string())
        } else {
            (
                pct(&paired(samples, *p, Path_::Forward)),
                pct(&paired(samples, *p, Path_::Floor)),
            )
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
        runs
    ));
    for (p, v) in split {
        let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let o = |f: &dyn Fn(&Sample) -> Option<f64>| v.iter().filter_map(f).collect::<Vec<f64>>();
        let vs = pct(&paired(split, *p, Path_::Direct));
        let vs_floor = pct(&paired(split, *p, Path_::Floor));
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
    md
}

/// fo's and the floor's conn/s medians, the ratio of the medians, and the paired ratios
/// (fo's run over the floor's run next to it), %.
fn floor_figures(pairs: &[(Path_, Vec<Sample>)]) -> (Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    let (fo, floor) = (
        conn_rates(pairs, Path_::Fo),
        conn_rates(pairs, Path_::Floor),
    );
    let med = |v: &[f64]| crate::bench::mmm(v).map(|(_, m, _)| m).unwrap_or(f64::NAN);
    let ratio = med(&fo) / med(&floor) * 100.0;
    (fo, floor, ratio, paired(pairs, Path_::Fo, Path_::Floor))
}

/// The fo vs minimal-XDP-hop section: connections only, many interleaved pairs.
pub(super) fn floor_markdown(pairs: &[(Path_, Vec<Sample>)]) -> String {
    let (fo, floor, ratio, paired) = floor_figures(pairs);
    format!(
        "\n### fo vs the minimal XDP hop: {n} interleaved pairs\n\n\
         Connection rate alone (the wrk measurement above, client offloads on, everything \
         sharing the VM's cores), fo (node fo, generic mode) and the minimal XDP hop (node \
         xf, generic mode) one after the other, {n} times each, the order reversed every \
         other pair (fo, hop, hop, fo, …), after the tables above. **Ratio**: fo's median \
         over the hop's median; **paired**: each fo run over the hop run next to it, \
         median (min–max). At or above 100 % means fo's lookups cost the connection rate \
         nothing measurable over the cheapest XDP middle box.\n\n\
         | fo conn/s | minimal XDP hop conn/s | ratio of medians | paired |\n\
         |---|---|---|---|\n\
         | {} | {} | {ratio:.1} % | {} |\n",
        fmt_mmm(&fo, 0),
        fmt_mmm(&floor, 0),
        pct(&paired),
        n = fo.len().min(floor.len()),
    )
}

pub(super) fn floor_json(pairs: &[(Path_, Vec<Sample>)]) -> Value {
    let (fo, floor, ratio, paired) = floor_figures(pairs);
    json!({
        "pairs": fo.len().min(floor.len()),
        "fo_conn_s": mmm_json(&fo), "xdp_floor_conn_s": mmm_json(&floor),
        "ratio_of_medians_pct": ratio, "paired_pct": mmm_json(&paired),
        "fo_runs": fo, "xdp_floor_runs": floor,
    })
}

/// The JSON rows of the first table.
pub(super) fn rows(samples: &[(Path_, Vec<Sample>)]) -> Vec<Value> {
    samples
        .iter()
        .map(|(p, v)| {
            let c = |f: &dyn Fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
            json!({
                "path": p.key(), "label": p.label(),
                "gbit_s": mmm_json(&c(&|s| s.gbit_s)),
                "conn_s": mmm_json(&c(&|s| s.conn_s)),
                "vs_no_lb_pct": mmm_json(&paired(samples, *p, if p.client_tx_off() { Path_::DirectTxOff } else { Path_::Direct })),
                "vs_forwarding_pct": if p.client_tx_off() { Value::Null } else { mmm_json(&paired(samples, *p, Path_::Forward)) },
                "vs_xdp_floor_pct": if p.client_tx_off() { Value::Null } else { mmm_json(&paired(samples, *p, Path_::Floor)) },
                "p50_ms": mmm_json(&c(&|s| s.p50_ms)),
                "p99_ms": mmm_json(&c(&|s| s.p99_ms)),
                "runs": v,
            })
        })
        .collect()
}

/// The JSON rows of the LB-on-its-own-core table.
pub(super) fn split_rows(split: &[(Path_, Vec<Sample>)]) -> Vec<Value> {
    split
        .iter()
        .map(|(p, v)| {
            json!({
                "path": p.key(), "label": p.label(),
                "conn_s": mmm_json(&v.iter().map(|s| s.conn_s).collect::<Vec<_>>()),
                "vs_no_lb_pct": mmm_json(&paired(split, *p, Path_::Direct)),
                "vs_xdp_floor_pct": mmm_json(&paired(split, *p, Path_::Floor)),
                "runs": v,
            })
        })
        .collect()
}

/// `tx-checksumming: on, tcp-segmentation-offload: off, …` as `tx-csum on, TSO off, …`.
pub(super) fn short_offloads(s: &str) -> String {
    s.replace("tx-checksumming:", "tx-csum")
        .replace("tcp-segmentation-offload:", "TSO")
        .replace("generic-segmentation-offload:", "GSO")
        .replace("generic-receive-offload:", "GRO")
}
