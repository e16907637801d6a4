//! The scale bench's measurements: one configuration size through fo (wrk, the XDP
//! program's BPF stats, CPU) and the HAProxy rows.

use super::*;

pub(super) fn one_size(lab: &mut Lab, case: Case) -> anyhow::Result<Size> {
    let Case {
        out,
        dir,
        backends,
        services,
        runs,
    } = case;
    let tag = case.tag();
    // A fresh data plane per size: its own pin directory, removed after.
    let bpf_dir = size_bpf_dir(lab, backends, services);
    netns::register_pin_dir(&bpf_dir);
    let entries = backends * usize::from(services);
    let body = fo_config(&bpf_dir, dir, backends, services, BASE_PORT);
    let node = &mut lab.nodes[0];
    std::fs::write(&node.config, body).context("write the agent's config")?;
    keep_config(out, &node.config, &format!("scale-fo-{tag}.toml"))?;
    node.bpf_dir = bpf_dir.clone();
    let bins = lab.bins.clone();
    let t0 = Instant::now();
    warm_neighbours(&lab.nodes[0].ns, backends, dir)?;
    let node = &mut lab.nodes[0];
    start_agent(node, &bins, dir)?;
    let t_running = Instant::now();
    let running = t_running - t0;
    let socket = dir.join("control-fo.sock");
    let resolved_at = wait_resolved(&bins, &socket, entries, node)?;
    let resolve_s = (resolved_at - t_running).as_secs_f64();
    eprintln!(
        "scale {tag}: agent running after {:.1} s, {entries} backend entries resolved {resolve_s:.1} s later",
        running.as_secs_f64()
    );
    let prog = xdp_prog_id(&node.ns).context("fo's XDP program on eth0")?;

    let ports = run_ports(services);
    let mut samples = Vec::new();
    for r in 0..runs {
        let port = ports[r % ports.len()];
        let s = wrk(&lab.client.ns, VIP, port, Some(Meter::Xdp(prog)))
            .with_context(|| format!("{tag} run {}", r + 1))?;
        eprintln!(
            "scale {tag} run {} (:{port}): {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, XDP {:.0} ns/packet",
            r + 1,
            s.conn_s,
            s.p50_ms,
            s.p99_ms,
            s.wrk_errors,
            s.xdp_ns_per_packet
        );
        samples.push(s);
    }

    clear_agent(lab, backends, services)?;
    Ok(Size {
        system: "fo",
        backends,
        services,
        entries,
        running_s: running.as_secs_f64(),
        resolve_s,
        samples,
        failed: None,
    })
}

pub(super) fn wrk(
    client: &Netns,
    target: Ipv4Addr,
    port: u16,
    meter: Option<Meter>,
) -> anyhow::Result<Sample> {
    let prog = match meter {
        Some(Meter::Xdp(id)) => Some(id),
        _ => None,
    };
    let pid = match meter {
        Some(Meter::Pid(pid)) => Some(pid),
        _ => None,
    };
    let vm0 = vm_busy_ns();
    let p0 = pid.and_then(proc_cpu_ns);
    let b0 = prog.and_then(bpf_stats);
    let w = crate::bench::throughput::wrk(client.command("wrk"), target, port, WRK_CONNS, WRK_SECS);
    let b1 = prog.and_then(bpf_stats);
    let p1 = pid.and_then(proc_cpu_ns);
    let vm1 = vm_busy_ns();
    let w = w?;
    let conns = w.requests.max(1) as f64;
    let (pkts, ns) = match (b0, b1) {
        (Some((t0, c0)), Some((t1, c1))) => (c1 - c0, (t1 - t0) as f64),
        _ => (0, 0.0),
    };
    Ok(Sample {
        port,
        conn_s: w.rate,
        p50_ms: w.p50_ms,
        p99_ms: w.p99_ms,
        wrk_errors: w.errors,
        vm_cpu_us_per_conn: (vm1 - vm0) as f64 / 1e3 / conns,
        xdp_packets: pkts,
        xdp_ns_per_packet: if pkts > 0 { ns / pkts as f64 } else { f64::NAN },
        xdp_packets_per_conn: if pkts > 0 {
            pkts as f64 / conns
        } else {
            f64::NAN
        },
        lb_cpu_us_per_conn: match (p0, p1) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e3 / conns,
            _ if pkts > 0 => ns / 1e3 / conns,
            _ => f64::NAN,
        },
    })
}

/// The same measurement through HAProxy 2.6 in TCP mode on the LB node: S frontends
/// (its own address, ports 8080..), each with a backend of the first N backend
/// addresses, `balance roundrobin` (a source hash would put the one client on one
/// backend), no health checks (fo's services have none either).
pub(super) fn haproxy_size(lab: &Lab, case: Case) -> anyhow::Result<Size> {
    let tag = case.tag();
    let cfg = haproxy_lb_config(
        &format!("  maxconn 9000\n  nbthread {HAPROXY_THREADS}\n"),
        "30s",
        FO,
        case.backends,
        case.services,
        BASE_PORT,
    );
    let file = case.dir.join(format!("haproxy-lb-{tag}.cfg"));
    std::fs::write(&file, cfg).context("write HAProxy's config")?;
    if case.services == 1 || case.backends == 1 {
        keep_config(case.out, &file, &format!("scale-haproxy-lb-{tag}.cfg"))?;
    }
    let ns = &lab.nodes[0].ns;
    let t0 = Instant::now();
    let mut cmd = ns.command("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&file);
    let hp = Proc::spawn(
        &format!("haproxy lb {tag}"),
        cmd,
        &case.dir.join(format!("haproxy-lb-{tag}.log")),
    )?;
    wait_listen(ns, BASE_PORT)?;
    wait_listen(ns, BASE_PORT + case.services - 1)?;
    let ready = t0.elapsed().as_secs_f64();
    eprintln!("scale haproxy {tag}: listening after {ready:.1} s");
    let ports = run_ports(case.services);
    let mut samples = Vec::new();
    for r in 0..case.runs {
        let port = ports[r % ports.len()];
        let s = wrk(&lab.client.ns, FO, port, Some(Meter::Pid(hp.pid())))
            .with_context(|| format!("HAProxy {tag} run {}", r + 1))?;
        eprintln!(
            "scale haproxy {tag} run {} (:{port}): {:.0} conn/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, HAProxy {:.1} µs CPU/conn",
            r + 1,
            s.conn_s,
            s.p50_ms,
            s.p99_ms,
            s.wrk_errors,
            s.lb_cpu_us_per_conn
        );
        samples.push(s);
    }
    drop(hp);
    Ok(Size {
        system: "haproxy",
        backends: case.backends,
        services: case.services,
        entries: case.backends * usize::from(case.services),
        running_s: ready,
        resolve_s: f64::NAN,
        samples,
        failed: None,
    })
}
