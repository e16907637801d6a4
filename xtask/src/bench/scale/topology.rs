//! The scale bench's lab around the LB node: backend addresses, the host's neighbour-table
//! thresholds while it runs, the agent under test (fresh per size) and the wait until every
//! backend is resolved.

use super::*;

pub(super) fn backend_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_BACKEND) + k as u32)
}

/// The lab of `spec` (one LB node, the backend namespaces) with connection churn allowed
/// (wide port range, TIME_WAIT reuse) and the benchmarking range: one address on the LB
/// node and the client, `backends` addresses spread over the backend namespaces.
pub(in crate::bench) fn bench_range_lab(
    spec: &Spec,
    bins: &Bins,
    dir: &Path,
    backends: usize,
) -> anyhow::Result<Lab> {
    let lab = Lab::build(spec, bins.clone(), dir)?;
    for ns in all_ns(&lab) {
        ns.sh("sysctl -q -w net.ipv4.ip_local_port_range='1024 65535' net.ipv4.tcp_tw_reuse=1")?;
    }
    lab.nodes[0]
        .ns
        .sh(&format!("ip addr add {FO_BENCH}/{BENCH_NET_LEN} dev eth0"))?;
    lab.client.ns.sh(&format!(
        "ip addr add {CLIENT_BENCH}/{BENCH_NET_LEN} dev eth0"
    ))?;
    for (i, b) in lab.backends.iter().enumerate() {
        let batch: String = (0..backends)
            .filter(|k| k % lab.backends.len() == i)
            .map(|k| format!("address add {}/{BENCH_NET_LEN} dev eth0\n", backend_addr(k)))
            .collect();
        let file = dir.join(format!("backend-b{}-addresses.batch", i + 1));
        std::fs::write(&file, batch).context("write the address batch")?;
        b.ns.sh(&format!("ip -batch {}", file.display()))?;
    }
    Ok(lab)
}

/// The pin directory of the agent measured with `backends` × `services`.
pub(in crate::bench) fn size_bpf_dir(lab: &Lab, backends: usize, services: u16) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/{}-fo-{backends}b-{services}s",
        lab.tag
    ))
}

/// The agent's config: static ownership of the VIP, `services` DSR services (ports
/// `base_port`…, 5-tuple hash), each with the first `backends` backend addresses.
pub(in crate::bench) fn fo_config(
    bpf_dir: &Path,
    dir: &Path,
    backends: usize,
    services: u16,
    base_port: u16,
) -> String {
    let list: String = (0..backends)
        .map(|k| format!("{{ address = \"{}\" }}", backend_addr(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let entries = backends * usize::from(services);
    let mut body = format!(
        "[node]\ninterface = \"eth0\"\nxdp_mode = \"{XDP_MODE}\"\nbpf_dir = \"{}\"\n\
         control_socket = \"{}\"\nstate_file = \"{}\"\nmax_services = {MAX_SERVICES}\nmax_backends = {}\n\n\
         {}",
        bpf_dir.display(),
        dir.join("control-fo.sock").display(),
        dir.join("state-fo.json").display(),
        entries.max(4096).next_power_of_two(),
        static_router("bench", VIP),
    );
    for i in 0..services {
        body.push_str(&format!(
            "\n[[service]]\nname = \"web{i}\"\nvip = \"{VIP}\"\nport = {}\nprotocol = \"tcp\"\nmode = \"dsr\"\nhash = \"5-tuple\"\nbackends = [{list}]\n",
            base_port + i
        ));
    }
    body
}

/// HAProxy in TCP mode on the LB node: `services` frontends on `bind`, ports
/// `base_port`…, each with a backend of the first `backends` backend addresses on its
/// port, `balance roundrobin` (a source hash would put the one client on one backend),
/// no health checks (fo's services have none either); `global` lines first.
pub(in crate::bench) fn haproxy_lb_config(
    global: &str,
    timeout: &str,
    bind: Ipv4Addr,
    backends: usize,
    services: u16,
    base_port: u16,
) -> String {
    let mut cfg = format!(
        "global\n{global}\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client {timeout}\n  timeout server {timeout}\n"
    );
    for i in 0..services {
        let port = base_port + i;
        cfg.push_str(&format!(
            "\nfrontend f{i}\n  bind {bind}:{port}\n  default_backend b{i}\n\nbackend b{i}\n  balance roundrobin\n"
        ));
        for k in 0..backends {
            cfg.push_str(&format!("  server s{k} {}:{port}\n", backend_addr(k)));
        }
    }
    cfg
}

/// Restores the host's neighbour gc thresholds when dropped.
pub(super) struct GcThresh(Vec<(String, String)>);

impl GcThresh {
    pub(super) fn raise() -> anyhow::Result<GcThresh> {
        let mut old = Vec::new();
        for (k, v) in GC_THRESH {
            let cur = netns::sh(&format!("sysctl -n {k}"))?.trim().to_owned();
            // Registered before the write: an interrupted run restores it too.
            netns::register_sysctl_restore(k, &cur);
            old.push((k.to_owned(), cur));
            netns::sh(&format!("sysctl -q -w {k}={v}"))?;
        }
        Ok(GcThresh(old))
    }
}

impl Drop for GcThresh {
    fn drop(&mut self) {
        // Lower first: thresh1 <= thresh2 <= thresh3 must hold at every step.
        for (k, v) in self.0.iter() {
            let _ = netns::sh(&format!("sysctl -q -w {k}={v}"));
        }
    }
}

/// Stop the agent and unload its data plane before the next size.
pub(in crate::bench) fn clear_agent(
    lab: &mut Lab,
    backends: usize,
    services: u16,
) -> anyhow::Result<()> {
    let tag = format!("{backends}b-{services}s");
    let bpf_dir = size_bpf_dir(lab, backends, services);
    let node = &mut lab.nodes[0];
    if let Some(p) = node.runs.last_mut()
        && p.exited().is_none()
    {
        let _ = p.signal("TERM");
        let _ = p.wait(Duration::from_secs(20));
    }
    if bpf_dir.exists() {
        std::fs::remove_dir_all(&bpf_dir)
            .with_context(|| format!("remove {}", bpf_dir.display()))?;
    }
    let start = Instant::now();
    while xdp_prog_id(&node.ns).is_ok() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the XDP program of {tag} is still attached after its pins were removed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Resolve the first `n` backend addresses in the LB node's neighbour table by real ARP
/// (one ping each, 64 at a time) before the agent starts, so that the measurement is
/// about the data plane, not about how fast the kernel resolves 1,000 addresses.
pub(in crate::bench) fn warm_neighbours(ns: &Netns, n: usize, dir: &Path) -> anyhow::Result<()> {
    let list: String = (0..n).map(|k| format!("{}\n", backend_addr(k))).collect();
    let file = dir.join(format!("warm-{n}.txt"));
    std::fs::write(&file, list)?;
    ns.sh(&format!(
        "xargs -P 64 -I ADDR ping -c1 -W2 -q ADDR < {} >/dev/null 2>&1 || true",
        file.display()
    ))?;
    let known = ns
        .sh("ip -4 neigh show dev eth0 | grep -c lladdr || true")?
        .trim()
        .parse::<usize>()
        .unwrap_or(0);
    if known < n {
        bail!("only {known} of {n} backend addresses resolved by ping");
    }
    Ok(())
}

/// As [`crate::lab::Node::start`], with a longer wait for `running`: with 64 services ×
/// 1,000 backends the agent's first resolution and table fill take far longer than 30 s.
pub(in crate::bench) fn start_agent(
    node: &mut crate::lab::Node,
    bins: &Bins,
    dir: &Path,
) -> anyhow::Result<()> {
    let mut p = node.spawn_agent(bins, dir)?;
    let res = crate::lab::wait_running(&mut p, RESOLVE_MAX);
    // Kept even when it is not running: clear_agent stops it.
    node.runs.push(p);
    res.map(drop)
}

/// Wait until the agent's status lists `entries` backend entries, all resolved;
/// returns when it did.
pub(in crate::bench) fn wait_resolved(
    bins: &Bins,
    socket: &Path,
    entries: usize,
    node: &crate::lab::Node,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + RESOLVE_MAX;
    loop {
        let out = Command::new(&bins.agent)
            .args(["status", "--json", "--socket"])
            .arg(socket)
            .output()
            .context("spawn fo-agent status")?;
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
        {
            let all: Vec<&Value> = v["services"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .flat_map(|s| s["backends"].as_array().into_iter().flatten())
                        .collect()
                })
                .unwrap_or_default();
            let resolved = all
                .iter()
                .filter(|b| b["resolved"].as_bool() == Some(true))
                .count();
            let last = format!("{resolved} of {} entries resolved", all.len());
            if all.len() == entries && resolved == entries {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "not every backend resolved after {RESOLVE_MAX:?}: {last}\n{}",
                    node.runs.last().map(|p| p.tail(20)).unwrap_or_default()
                );
            }
        } else if Instant::now() > deadline {
            let last = String::from_utf8_lossy(&out.stderr);
            bail!(
                "not every backend resolved after {RESOLVE_MAX:?}: {last}\n{}",
                node.runs.last().map(|p| p.tail(20)).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
