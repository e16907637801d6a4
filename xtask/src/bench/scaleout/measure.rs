//! The scale-out bench's measurement: one wrk run against the VIP through the router.

use super::*;

/// `wrk` against VIP:8080 from the client: (conn/s, p50 ms, p99 ms, errors).
pub(super) fn wrk(client: &Netns) -> anyhow::Result<(f64, f64, f64, u64)> {
    let w =
        crate::bench::throughput::wrk(client.command("wrk"), VIP, HTTP_PORT, WRK_CONNS, WRK_SECS)?;
    Ok((w.rate, w.p50_ms, w.p99_ms, w.errors))
}
