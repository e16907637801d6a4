//! The throughput bench's lab: the nodes (fo in generic, native and NAT mode, HAProxy,
//! IP forwarding, the minimal XDP hop), the backend, and the helpers the other benches
//! share to wait for it.

use super::*;

pub(super) fn spec() -> Spec {
    Spec {
        prefix: "fo-bench".into(),
        vip: VIP,
        port: IPERF_PORT,
        client: Ipv4Addr::new(192, 0, 2, 10),
        client_sources: Vec::new(),
        nodes: vec![
            ("fo".into(), FO),
            ("hp".into(), HP),
            ("fon".into(), FON),
            ("fonat".into(), FONAT),
            ("rt".into(), RT),
            ("xf".into(), XF),
        ],
        backends: vec![BACKEND],
    }
}

/// What runs in the lab once it is up: what the measurements read, and the processes,
/// killed on drop.
pub(super) struct Rig {
    /// The pass-only agent on fon's switch port.
    pub peer: Proc,
    /// HAProxy, the LB, on node hp.
    pub haproxy: Proc,
    /// HAProxy answering a static 200 on the backend.
    pub web: Proc,
    _iperf: Proc,
    pub be_ns: Netns,
    fo_prog: u64,
    fon_prog: u64,
    fonat_prog: u64,
    floor_prog: u64,
}

impl Rig {
    /// Configure and start every node and the backend.
    pub(super) fn start(lab: &mut Lab, dir: &Path, out: &Path) -> anyhow::Result<Rig> {
        // Static ownership of `vip` (and the router's own keys `more`), two services in
        // `mode` to the one backend: iperf's and HTTP's.
        let body = |vip: Ipv4Addr, more: &str, mode: &str| {
            let service = |port| tcp_service(vip, port, mode, "5-tuple", &[BACKEND], None);
            format!(
                "{}{more}\n{}\n{}",
                static_router("bench", vip),
                service(IPERF_PORT),
                service(HTTP_PORT)
            )
        };
        // fo: two DSR services.
        lab.node("fo")
            .write_config(XDP_MODE, &body(VIP, "", "dsr"))?;
        keep_config(out, &lab.nodes[0].config, "throughput-fo.toml")?;
        let bins = lab.bins.clone();
        lab.node("fo").start(&bins)?;

        // fo in native mode on node fon, with its own VIP (the backend holds it on lo too),
        // and docs/lab.md's workaround for XDP_TX on veth: an XDP program on the peer, fon's
        // switch port — a second fo-agent, native mode, a static router with an unused VIP
        // and no services, so it only passes traffic.
        lab.node("fon")
            .write_config("native", &body(VIP_NATIVE, "", "dsr"))?;
        keep_config(out, &lab.nodes[2].config, "throughput-fo-native.toml")?;
        lab.node("fon").start(&bins)?;

        // fo with NAT services on node fonat: its own VIP and SNAT address, the backend
        // reached by its own address (no VIP on the backend needed).
        let snat = format!("snat = [\"{SNAT}\"]\n");
        lab.node("fonat")
            .write_config(XDP_MODE, &body(VIP_NAT, &snat, "nat"))?;
        keep_config(out, &lab.nodes[3].config, "throughput-fo-nat.toml")?;
        lab.node("fonat").start(&bins)?;
        // Switch ports: p0 the client, then the nodes in order.
        let fon_port = "p3";
        let sw_bpf = std::path::PathBuf::from(format!("/sys/fs/bpf/{}-sw-{fon_port}", lab.tag));
        crate::lab::netns::register_pin_dir(&sw_bpf);
        let sw_cfg = dir.join("fo-switch-peer.toml");
        std::fs::write(
            &sw_cfg,
            format!(
                "[node]\ninterface = \"{fon_port}\"\nxdp_mode = \"native\"\nbpf_dir = \"{}\"\ncontrol_socket = \"{}\"\nstate_file = \"{}\"\n\n\
                 {}",
                sw_bpf.display(),
                dir.join("control-switch-peer.sock").display(),
                dir.join("state-switch-peer.json").display(),
                static_router("pass", VIP_UNUSED)
            ),
        )?;
        keep_config(out, &sw_cfg, "throughput-fo-switch-peer.toml")?;
        let mut peer = Proc::spawn(
            "fo-agent switch peer",
            crate::lab::agent_command(&lab.switch, &bins, &sw_cfg),
            &dir.join("agent-switch-peer.log"),
        )?;
        crate::lab::wait_running(&mut peer, Duration::from_secs(30))?;

        // HAProxy on node hp, TCP mode, the same backend for both ports.
        let hp_cfg = dir.join("haproxy-lb.cfg");
        std::fs::write(
            &hp_cfg,
            format!(
                "global\n  maxconn 9000\n  nbthread 2\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\n\
                 listen iperf\n  bind {HP}:{IPERF_PORT}\n  server b1 {BACKEND}:{IPERF_PORT}\n\n\
                 listen web\n  bind {HP}:{HTTP_PORT}\n  balance source\n  server b1 {BACKEND}:{HTTP_PORT}\n"
            ),
        )?;
        keep_config(out, &hp_cfg, "throughput-haproxy-lb.cfg")?;
        let hp_ns = lab.nodes[1].ns.clone();
        let mut cmd = hp_ns.command("/usr/sbin/haproxy");
        cmd.arg("-db").arg("-f").arg(&hp_cfg);
        let haproxy = Proc::spawn("haproxy lb", cmd, &dir.join("haproxy-lb.log"))?;

        // The backend: iperf3 server, and HAProxy answering every request with a static 200.
        let be_ns = lab.backends[0].ns.clone();
        be_ns.sh(&format!(
            "sh {} {VIP_NATIVE} {VIP_FWD} {VIP_FLOOR}",
            crate::util::root().join("deploy/backend-dsr.sh").display()
        ))?;
        let (web_cfg, mut webs) =
            fo_lab::kit::static_http::start(dir, [&be_ns], &(HTTP_PORT..=HTTP_PORT), 9000)?;
        keep_config(out, &web_cfg, "throughput-haproxy-backend-web.cfg")?;
        let web = webs.pop().context("the backend's HAProxy")?;
        let mut cmd = be_ns.command("iperf3");
        cmd.args(["-s", "-p", &IPERF_PORT.to_string()]);
        let _iperf = Proc::spawn("iperf3 -s", cmd, &dir.join("iperf3-server.log"))?;
        wait_listen(&be_ns, HTTP_PORT)?;
        wait_listen(&be_ns, IPERF_PORT)?;
        wait_listen(&hp_ns, HTTP_PORT)?;

        // Node rt: plain IP forwarding to the backend, which holds VIP_FWD on lo and
        // answers the client directly (as a DSR backend does). No ICMP redirects: the
        // middle node forwards out of the interface the packet came in on.
        lab.node("rt").ns.sh(&format!(
            "sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
             net.ipv4.conf.eth0.send_redirects=0 && ip route add {VIP_FWD}/32 via {BACKEND}"
        ))?;
        lab.client
            .ns
            .sh(&format!("ip route add {VIP_FWD}/32 via {RT}"))?;

        // Node xf: the floor of any XDP middle box.
        let be_mac = be_ns.mac("eth0")?;
        let xf = lab.node("xf");
        let (xf_ns, xf_mac) = (xf.ns.clone(), xf.mac.clone());
        let floor_obj = crate::bench::floor::attach(&xf_ns, dir, VIP_FLOOR, &xf_mac, &be_mac)?;
        keep_config(
            out,
            &floor_obj.with_extension("s"),
            "throughput-xdp-floor.s",
        )?;
        lab.client.ns.sh(&format!(
            "ip neigh replace {VIP_FLOOR} lladdr {xf_mac} dev eth0 nud permanent"
        ))?;
        let floor_prog = xdp_prog_id(&xf_ns).context("the minimal XDP program on eth0")?;

        let fo_prog = xdp_prog_id(&lab.nodes[0].ns).context("fo's XDP program on eth0")?;
        let fon_prog = xdp_prog_id(&lab.nodes[2].ns).context("fo's native XDP program on eth0")?;
        let fonat_prog = xdp_prog_id(&lab.nodes[3].ns).context("fo's NAT XDP program on eth0")?;
        Ok(Rig {
            peer,
            haproxy,
            web,
            _iperf,
            be_ns,
            fo_prog,
            fon_prog,
            fonat_prog,
            floor_prog,
        })
    }

    /// Who does the LB work on `path`, for its CPU figure.
    pub(super) fn lb(&self, path: Path_) -> Lb {
        match path {
            Path_::Fo => Lb::Bpf(self.fo_prog),
            Path_::FoNative => Lb::Bpf(self.fon_prog),
            Path_::FoNat => Lb::Bpf(self.fonat_prog),
            Path_::Floor => Lb::Bpf(self.floor_prog),
            Path_::Haproxy => Lb::Pid(self.haproxy.pid()),
            Path_::Direct | Path_::DirectTxOff | Path_::Forward => Lb::None,
        }
    }
}

pub(in crate::bench) fn all_ns(lab: &Lab) -> Vec<Netns> {
    let mut v = vec![lab.client.ns.clone()];
    v.extend(lab.nodes.iter().map(|n| n.ns.clone()));
    v.extend(lab.backends.iter().map(|b| b.ns.clone()));
    v
}

pub(in crate::bench) fn wait_listen(ns: &Netns, port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while ns
        .sh(&format!("ss -Hltn 'sport = :{port}'"))?
        .trim()
        .is_empty()
    {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("nothing listens on :{port} in {}", ns.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The id of the XDP program attached to eth0 in `ns`.
pub(in crate::bench) fn xdp_prog_id(ns: &Netns) -> anyhow::Result<u64> {
    let s = ns.sh("ip -d -j link show dev eth0")?;
    let v: Value = serde_json::from_str(&s)?;
    let x = &v[0]["xdp"];
    x["prog"]["id"]
        .as_u64()
        .or_else(|| {
            x["attached"]
                .as_array()
                .and_then(|a| a.iter().find_map(|p| p["prog"]["id"].as_u64()))
        })
        .with_context(|| format!("no XDP program on eth0: {x}"))
}
