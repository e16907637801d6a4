//! The footprint bench's lab around the LB node: the sinks on the backends, the two
//! systems under test (started and stopped per run) and the fleets.

use std::path::PathBuf;

use super::*;
use crate::bench::throughput::{wait_listen, xdp_prog_id};

/// One `fo-sink` per backend namespace and service port, on 0.0.0.0 (the backend's
/// addresses and the VIP on lo alike); killed on drop.
pub(super) fn start_sinks(lab: &Lab, dir: &Path) -> anyhow::Result<Vec<Proc>> {
    let mut sinks = Vec::new();
    for (i, b) in lab.backends.iter().enumerate() {
        for port in BASE_PORT..BASE_PORT + SERVICES {
            let mut cmd = b.ns.command(&lab.bins.sink);
            cmd.arg("--listen")
                .arg(format!("0.0.0.0:{port}"))
                .args(["--timeline-span", "10m"]);
            sinks.push(Proc::spawn(
                &format!("fo-sink b{} :{port}", i + 1),
                cmd,
                &dir.join(format!("sink-b{}-{port}.log", i + 1)),
            )?);
        }
    }
    for s in &mut sinks {
        s.wait_for_line(Duration::from_secs(20), |l| l.contains("listening"))?;
    }
    Ok(sinks)
}

/// The pair's config files.
pub(super) struct PairConfigs {
    pub keepalived: PathBuf,
    /// One per HAProxy process.
    pub haproxy: Vec<PathBuf>,
}

/// keepalived: one VRRP instance alone on the segment (so master), the VIP on eth0.
/// HAProxy: the scale bench's TCP frontends on the VIP, split over [`HAPROXY_PROCS`]
/// processes (consecutive ports each), each sized for its share of the connections.
pub(super) fn pair_configs(dir: &Path) -> anyhow::Result<PairConfigs> {
    let keepalived = dir.join("keepalived.conf");
    std::fs::write(
        &keepalived,
        format!(
            "global_defs {{\n  router_id lb\n  vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance VI {{\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  \
             priority 150\n  advert_int 1\n  version 3\n  \
             virtual_ipaddress {{\n    {VIP}/32 dev eth0\n  }}\n}}\n"
        ),
    )
    .context("write keepalived's config")?;
    let per = SERVICES / HAPROXY_PROCS;
    let mut haproxy = Vec::new();
    for i in 0..HAPROXY_PROCS {
        let file = dir.join(format!("haproxy-lb-{}.cfg", i + 1));
        let global = format!(
            "  maxconn {}\n  nbthread {}\n",
            CONNECTIONS / u32::from(HAPROXY_PROCS) + 1_000,
            HAPROXY_THREADS / u32::from(HAPROXY_PROCS),
        );
        let cfg = scale::haproxy_lb_config(&global, "5m", VIP, BACKENDS, per, BASE_PORT + i * per);
        std::fs::write(&file, cfg).context("write HAProxy's config")?;
        haproxy.push(file);
    }
    Ok(PairConfigs {
        keepalived,
        haproxy,
    })
}

/// A fresh agent with 64 services × 100 backends, waited for until every entry is
/// resolved; returns its XDP program's id.
pub(super) fn start_fo(lab: &mut Lab, out: &Path, dir: &Path) -> anyhow::Result<u64> {
    let bpf_dir = scale::size_bpf_dir(lab, BACKENDS, SERVICES);
    crate::lab::netns::register_pin_dir(&bpf_dir);
    let body = scale::fo_config(&bpf_dir, dir, BACKENDS, SERVICES, BASE_PORT);
    let bins = lab.bins.clone();
    let node = &mut lab.nodes[0];
    std::fs::write(&node.config, body).context("write the agent's config")?;
    keep_config(out, &node.config, "footprint-fo.toml")?;
    node.bpf_dir = bpf_dir;
    scale::start_agent(node, &bins, dir)?;
    let entries = BACKENDS * usize::from(SERVICES);
    scale::wait_resolved(&bins, &dir.join("control-fo.sock"), entries, node)?;
    xdp_prog_id(&node.ns).context("fo's XDP program on eth0")
}

/// keepalived and HAProxy on the LB node, ready once HAProxy listens on the first and
/// the last port and the VIP is on eth0: [keepalived, HAProxy…].
pub(super) fn start_pair(
    lab: &Lab,
    pair: &PairConfigs,
    dir: &Path,
    run: usize,
) -> anyhow::Result<Vec<Proc>> {
    let ns = &lab.nodes[0].ns;
    for f in ["keepalived.pid", "vrrp.pid"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let mut ka = ns.command("/usr/sbin/keepalived");
    ka.args(["-n", "-l", "-D", "-f"])
        .arg(&pair.keepalived)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"));
    let ka = Proc::spawn("keepalived", ka, &dir.join(format!("keepalived-{run}.log")))?;
    let mut procs = vec![ka];
    for (i, cfg) in pair.haproxy.iter().enumerate() {
        let mut hp = ns.command("/usr/sbin/haproxy");
        hp.arg("-db").arg("-f").arg(cfg);
        procs.push(Proc::spawn(
            &format!("haproxy lb {}", i + 1),
            hp,
            &dir.join(format!("haproxy-lb-{}-{run}.log", i + 1)),
        )?);
    }
    wait_listen(ns, BASE_PORT)?;
    wait_listen(ns, BASE_PORT + SERVICES - 1)?;
    let held = fo_lab::kit::wait::wait_for(Duration::from_secs(10), || {
        ns.sh(&format!("ip -4 addr show dev eth0 to {VIP}/32"))
            .is_ok_and(|s| !s.trim().is_empty())
            .then_some(())
    });
    if held.is_none() {
        bail!("keepalived did not take the VIP within 10 s");
    }
    Ok(procs)
}

/// SIGTERM both (keepalived removes the VIP as it exits) and wait for them.
pub(super) fn stop_pair(lab: &Lab, procs: Vec<Proc>) -> anyhow::Result<()> {
    for mut p in procs {
        p.signal("TERM")?;
        p.wait(Duration::from_secs(20))?;
    }
    // Whatever keepalived left, fo's next run must not find the VIP on eth0.
    let _ = lab.nodes[0].ns.sh(&format!(
        "ip addr del {VIP}/32 dev eth0 2>/dev/null || true"
    ));
    Ok(())
}

/// 64 fleets, one per service port, 10,000 agents in all (ids distinct), one event a
/// second each; killed on drop (the client's kernel closes their connections).
pub(super) fn start_fleets(lab: &Lab, dir: &Path) -> anyhow::Result<Vec<Proc>> {
    let per = CONNECTIONS / u32::from(SERVICES);
    let extra = CONNECTIONS % u32::from(SERVICES);
    let mut first = 0;
    let mut fleets = Vec::new();
    for i in 0..SERVICES {
        let agents = per + u32::from(u32::from(i) < extra);
        let mut cmd = lab.client.ns.command(&lab.bins.fleet);
        cmd.arg("--target")
            .arg(format!("{VIP}:{}", BASE_PORT + i))
            .args(["--agents", &agents.to_string()])
            .args(["--first-agent", &first.to_string()])
            .args(["--rate", &format!("{EVENT_RATE}/s")])
            .args(["--ramp", RAMP, "--timeline-span", "10m", "--quiet"]);
        fleets.push(Proc::spawn(
            &format!("fo-fleet :{}", BASE_PORT + i),
            cmd,
            &dir.join(format!("fleet-{}.log", BASE_PORT + i)),
        )?);
        first += agents;
    }
    Ok(fleets)
}

/// The client's TCP connections to the VIP in state established.
pub(super) fn established(lab: &Lab) -> anyhow::Result<usize> {
    let n = lab
        .client
        .ns
        .sh(&format!("ss -Htn state established dst {VIP} | wc -l"))?;
    n.trim()
        .parse()
        .with_context(|| format!("count of established connections: {n:?}"))
}

/// Wait until exactly `want` client connections to the VIP are established.
pub(super) fn wait_established(lab: &Lab, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONNECT_MAX;
    loop {
        let n = established(lab)?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} client connections established after {CONNECT_MAX:?}, not {want}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
