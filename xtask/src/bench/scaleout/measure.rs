//! The scale-out bench's measurement: one wrk run against the VIP through the router.

use super::*;

/// `wrk` against VIP:8080 from the client: (conn/s, p50 ms, p99 ms, errors).
pub(super) fn wrk(client: &Netns) -> anyhow::Result<(f64, f64, f64, u64)> {
    let out = client
        .command("wrk")
        .args([
            "-t2",
            &format!("-c{WRK_CONNS}"),
            &format!("-d{WRK_SECS}s"),
            "--latency",
        ])
        .args(["-H", "Connection: close"])
        .arg(format!("http://{VIP}:{HTTP_PORT}/"))
        .output()
        .context("spawn wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let w = parse_wrk(&text).with_context(|| format!("parse wrk's output:\n{text}"))?;
    Ok((w.rate, w.p50_ms, w.p99_ms, w.errors))
}
