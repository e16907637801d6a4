//! The benches' HTTP backends (throughput, scale, scale-out): HAProxy answering a static
//! 200 on a range of ports, one process per backend namespace (HAProxy is the baseline the benches compare with, so it
//! is also the responder they trust).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::{Netns, Proc};

/// HAProxy's config for a static 200 on `ports` (`:8080` for one port, `:8080-8143` for a
/// range), at most `maxconn` connections, one thread.
pub fn config(ports: &RangeInclusive<u16>, maxconn: u32) -> String {
    let bind = if ports.start() == ports.end() {
        format!(":{}", ports.start())
    } else {
        format!(":{}-{}", ports.start(), ports.end())
    };
    format!(
        "global\n  maxconn {maxconn}\n  nbthread 1\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
         frontend web\n  bind {bind}\n  http-request return status 200 content-type text/plain string ok\n"
    )
}

/// Write the config to `dir/haproxy-backend-web.cfg` and start HAProxy in each namespace
/// (`haproxy web b1`, … logging to `dir/haproxy-web-b1.log`, …). Returns the config's path
/// and the processes (killed on drop).
pub fn start<'a>(
    dir: &Path,
    namespaces: impl IntoIterator<Item = &'a Netns>,
    ports: &RangeInclusive<u16>,
    maxconn: u32,
) -> anyhow::Result<(PathBuf, Vec<Proc>)> {
    let cfg = dir.join("haproxy-backend-web.cfg");
    std::fs::write(&cfg, config(ports, maxconn))?;
    let mut procs = Vec::new();
    for (i, ns) in namespaces.into_iter().enumerate() {
        let mut cmd = ns.command("/usr/sbin/haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        procs.push(Proc::spawn(
            &format!("haproxy web b{}", i + 1),
            cmd,
            &dir.join(format!("haproxy-web-b{}.log", i + 1)),
        )?);
    }
    Ok((cfg, procs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_port_or_a_range() {
        assert!(config(&(8080..=8080), 6000).contains("  bind :8080\n"));
        assert!(config(&(8080..=8143), 6000).contains("  bind :8080-8143\n"));
        assert!(config(&(8080..=8080), 6000).starts_with("global\n  maxconn 6000\n  nbthread 1\n"));
        assert!(config(&(8080..=8080), 9000).starts_with("global\n  maxconn 9000\n"));
    }
}
