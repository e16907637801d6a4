//! The scale-out bench's report: rate per node count and connections lost per failure.

use super::*;

pub(super) fn markdown(
    sizes: &[(usize, Vec<Rate>)],
    losses: &[(&str, Vec<Loss>)],
    runs: usize,
) -> String {
    let mut s = format!(
        "## Scale-out: active-active over BGP (ECMP)\n\n\
         A router namespace (BIRD 2, `merge paths`, L4 multipath hash) spreads VIP {VIP} over \
         one, two or three fo nodes, each announcing it through its own BIRD \
         (`ownership = \"bgp\"`, BFD 100 ms × 3, hold 3 s); XDP in {XDP_MODE} mode, DSR to \
         three backends. Active nodes are chosen with `fo-agent demote/resume`. Connection \
         rate: `wrk -t2 -c{WRK_CONNS} -d{WRK_SECS}s -H 'Connection: close'` (HAProxy static \
         200 on the backends), {runs} run(s) each. Everything (client, router, nodes, backends) shares \
         this VM's 2 cores: the figures show how the load spreads and that each added node \
         carries its share, not what separate machines would add.\n\n\
         | active nodes | conn/s | p50 ms | p99 ms | wrk errors | share of packets per node (n0/n1/n2) |\n\
         |---|---|---|---|---|---|\n"
    );
    for (n, v) in sizes {
        let shares: Vec<String> = v
            .iter()
            .map(|x| {
                x.shares
                    .iter()
                    .map(|f| format!("{:.0}%", f * 100.0))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        s.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} |\n",
            fmt_mmm(&v.iter().map(|x| x.conn_s).collect::<Vec<_>>(), 0),
            fmt_mmm(&v.iter().map(|x| x.p50_ms).collect::<Vec<_>>(), 2),
            fmt_mmm(&v.iter().map(|x| x.p99_ms).collect::<Vec<_>>(), 2),
            v.iter().map(|x| x.errors).sum::<u64>(),
            shares.join("; ")
        ));
    }
    s.push_str(&format!(
        "\nLoss of node n2 of three under {AGENTS} `fo-fleet` connections (one event per 10 ms \
         each), {runs} run(s) per failure. Convergence: from the failure to the router's kernel \
         route without n2.\n\n\
         | failure | convergence ms | connections reset | events lost | longest silence of one connection ms |\n\
         |---|---|---|---|---|\n"
    ));
    for (k, v) in losses {
        s.push_str(&format!(
            "| {k} | {} | {} | {} | {} |\n",
            fmt_mmm(&v.iter().map(|x| x.converge_ms).collect::<Vec<_>>(), 0),
            fmt_mmm(&v.iter().map(|x| x.resets as f64).collect::<Vec<_>>(), 0),
            fmt_mmm(&v.iter().map(|x| x.lost as f64).collect::<Vec<_>>(), 0),
            fmt_mmm(&v.iter().map(|x| x.max_silence_ms).collect::<Vec<_>>(), 0),
        ));
    }
    s
}
