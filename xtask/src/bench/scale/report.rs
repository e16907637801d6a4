//! The scale bench's report: the markdown table of every size.

use super::*;

pub(super) fn label(system: &str) -> &'static str {
    match system {
        "fo" => "fo (XDP DSR)",
        _ => "HAProxy 2.6 TCP",
    }
}

/// HAProxy rows have no XDP figures.
pub(super) fn nan_na(s: String) -> String {
    if s.contains("NaN") { "n/a".into() } else { s }
}

pub(super) fn col(v: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

pub(super) fn markdown(sizes: &[Size], direct: &[Sample], runs: usize) -> String {
    let mut md = format!(
        "## Scale: 1 / 100 / 1,000 backends × 1 / 64 services\n\n\
         One client, fo (static ownership of the VIP, XDP DSR in {XDP_MODE} mode, 5-tuple \
         hash, default Maglev table of 65,537 entries per service) and three backend \
         namespaces. Every backend is real: the backends hold 1,000 addresses from \
         198.18.0.0/{BENCH_NET_LEN} (RFC 2544's benchmarking range, added on the same \
         bridge inside the namespaces; backend k is 198.18.1.1 + k, on namespace k mod 3), \
         the VIP on lo, and an HAProxy answering a static 200 on 0.0.0.0 ports \
         {BASE_PORT}–{}. Per size a fresh agent gets S services (VIP:{BASE_PORT}…, one per \
         port) each with the first N backends (the LB node's neighbour table warmed first \
         by one real ping to each backend — see the note below the table), and the \
         measurement starts only once \
         `fo-agent status --json` shows all S × N backend entries `resolved: true` (MAC \
         known, in the data plane). Then `wrk -t2 -c{WRK_CONNS} -d{WRK_SECS}s --latency -H \
         'Connection: close'` against VIP:port, one request per connection, {runs} runs per \
         size, min / median / max; with 64 services the runs rotate over ports {}. \
         **XDP ns/packet** is the program's own run time per packet from the kernel's BPF \
         stats (`kernel.bpf_stats_enabled`, Δrun_time_ns / Δrun_cnt over each wrk run: \
         every client packet to the VIP, SYN to FIN): the flatness figure. With 1 backend \
         all connections land on one backend namespace's HAProxy, with 100 and 1,000 on \
         all three: conn/s also reflects where the backend work falls on the 2 cores. The \
         sizes run one after the other (not interleaved); the no-LB ceiling was measured \
         before and after them: {}.\n\n\
         **HAProxy rows**: the same measurement through HAProxy 2.6 in TCP mode on the LB \
         node ({HAPROXY_THREADS} threads, started fresh per size right after fo's rows of \
         that size): S frontends on the node's own address, ports {BASE_PORT}…, each with a \
         backend of the same first N backend addresses (`balance roundrobin`, no health \
         checks); *ready after* is from its start to listening on every port. **LB CPU \
         µs/conn**: fo, the XDP program's run time per connection (BPF stats); HAProxy, its \
         process user+system time delta per connection (neither includes the kernel's \
         softirq work around them). Runs per size and system are capped at {MAX_RUNS} to \
         keep the scenario short: treat differences of a few percent as noise.\n\n\
         | system | backends | services | backend entries | running / ready after s | all resolved s later | conn/s | p50 ms | p99 ms | wrk errors | LB CPU µs/conn | XDP ns/packet | XDP packets/conn |\n\
         |---|---:|---:|---:|---:|---:|---|---|---|---|---|---|---|\n",
        BASE_PORT + MAX_SERVICES - 1,
        run_ports(MAX_SERVICES)
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        direct
            .iter()
            .map(|d| format!(
                "{:.0} conn/s (p50 {:.2} ms, p99 {:.2} ms)",
                d.conn_s, d.p50_ms, d.p99_ms
            ))
            .collect::<Vec<_>>()
            .join(" and "),
    );
    for s in sizes {
        if let Some(why) = &s.failed {
            md.push_str(&format!(
                "| {} | {} | {} | {} | not ready after {} s | | no figures: {} | | | | | | |\n",
                label(s.system),
                s.backends,
                s.services,
                s.entries,
                RESOLVE_MAX.as_secs(),
                why.replace('|', "/")
            ));
            continue;
        }
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            label(s.system),
            s.backends,
            s.services,
            s.entries,
            s.running_s,
            if s.resolve_s.is_nan() {
                "n/a".to_owned()
            } else {
                format!("{:.1}", s.resolve_s)
            },
            fmt_mmm(&col(&s.samples, |x| x.conn_s), 0),
            fmt_mmm(&col(&s.samples, |x| x.p50_ms), 2),
            fmt_mmm(&col(&s.samples, |x| x.p99_ms), 2),
            fmt_mmm(&col(&s.samples, |x| x.wrk_errors as f64), 0),
            fmt_mmm(&col(&s.samples, |x| x.lb_cpu_us_per_conn), 2),
            nan_na(fmt_mmm(&col(&s.samples, |x| x.xdp_ns_per_packet), 0)),
            nan_na(fmt_mmm(&col(&s.samples, |x| x.xdp_packets_per_conn), 1)),
        ));
    }
    md.push_str(
        "\nThe neighbour table is warmed before each size so that the runs measure \
         forwarding, not ARP resolution. Started cold, an earlier agent fired one neighbour \
         lookup per backend at once (1,000 netlink requests, many failing) and allocated \
         backend slots in O(n²), which took minutes at 64 × 1,000 entries; it now resolves \
         with one table dump per round and allocates slots in one pass: the *running* and \
         *all resolved* columns above are today's figures.\n",
    );
    md
}
