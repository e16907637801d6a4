//! A VIP on VLAN 100, end to end in network namespaces: the real `fo-agent` on an LB whose
//! interface is untagged (XDP in native mode, with the veth workarounds of docs/lab.md,
//! and in generic mode), a router with `vlan = 100`, and hosts
//! that sit on VLAN 100 as on a switch's access port (this kernel has no 8021q: each
//! tags and untags itself with two TC programs, `fo_tests::vlan_tag`). The client on
//! the VLAN gets the VIP's ARP answer from XDP (tagged, with the LB's MAC) and 200
//! connections balanced over two backends on the VLAN, and the same over IPv6 (a tagged
//! NA, 60 connections); the data plane's counters prove the fast path. An untagged VIP on the same LB keeps working for an untagged client,
//! and that client's ARP for the VLAN VIP goes unanswered (passed, counted as `vlan`).
//!
//! The LB's kernel has no VLAN device here, so it cannot resolve the tagged backends'
//! MACs itself: the test writes them into its neighbour table, as a production kernel
//! would learn them on `eth0.100` (which the agent reads too, docs/vlan.md).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use fo_agent::dataplane::{Attach, Dataplane, LoadOptions, XdpAttachMode, remove_all_pins};
use fo_lab::kit::Proc;
use fo_tests::id_server::IdServer;
use fo_tests::netns::{Netns, Segment, unique_tag};
use fo_tests::temp::TempDir;
use fo_tests::vlan_tag::{AccessPort, untag_offload_off};

const VLAN: u16 = 100;
/// On VLAN 100.
const VLAN_VIP: &str = "192.0.2.100";
/// On VLAN 100 too, answered by Neighbor Advertisements.
const VLAN_VIP6: &str = "2001:db8::100";
/// Untagged.
const VIP: &str = "192.0.2.101";
const PORT: u16 = 1514;
const CONNECTIONS: usize = 200;

struct Lab {
    // Field order is drop order: the agent, servers and TC links before the namespaces.
    agent: Option<Proc>,
    _servers: Vec<IdServer>,
    _ports: Vec<AccessPort>,
    peer_xdp: Option<(Dataplane, PathBuf)>,
    tagged_client: Netns,
    untagged_client: Netns,
    lb: Netns,
    _backends: Vec<Netns>,
    _segment: Segment,
    dir: TempDir,
    pin_dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        if let Some((dp, dir)) = self.peer_xdp.take() {
            drop(dp);
            let _ = remove_all_pins(&dir);
        }
        let _ = remove_all_pins(&self.pin_dir);
    }
}

impl Lab {
    fn new(mode: XdpAttachMode) -> Lab {
        let tag = unique_tag();
        let segment = Segment::new();
        let mut switch_ports = Vec::new();
        let tagged_client = Netns::new("vlx-ct");
        let untagged_client = Netns::new("vlx-cu");
        let lb = Netns::new("vlx-lb");
        switch_ports.push(segment.plug(&tagged_client, "eth0", "192.0.2.10/24"));
        switch_ports.push(segment.plug(&untagged_client, "eth0", "192.0.2.11/24"));
        switch_ports.push(segment.plug(&lb, "eth0", "192.0.2.2/24"));
        tagged_client.sh("ip -6 addr add 2001:db8::10/64 dev eth0 nodad");
        let script = fo_tests::workspace_root().join("deploy/backend-dsr.sh");
        let mut ports = vec![AccessPort::attach(&tagged_client, "eth0", VLAN)];
        let mut backends = Vec::new();
        let mut servers = Vec::new();
        // Backends 1 and 2 on VLAN 100 for the VLAN VIP; backend 3 untagged for the VIP.
        for (i, vip) in [(1u8, VLAN_VIP), (2, VLAN_VIP), (3, VIP)] {
            let b = Netns::new(&format!("vlx-b{i}"));
            switch_ports.push(segment.plug(&b, "eth0", &format!("192.0.2.2{i}/24")));
            b.sh(&format!("sh {} {vip} >/dev/null", script.display()));
            if vip == VLAN_VIP {
                b.sh(&format!(
                    "ip -6 addr add 2001:db8::2{i}/64 dev eth0 nodad && sh {} {VLAN_VIP6} >/dev/null",
                    script.display()
                ));
                ports.push(AccessPort::attach(&b, "eth0", VLAN));
                // What the LB's kernel would learn on its VLAN device.
                let mac = b.mac("eth0").map(|o| format!("{o:02x}")).join(":");
                lb.sh(&format!(
                    "ip neigh replace 192.0.2.2{i} lladdr {mac} dev eth0 nud permanent && \
                     ip -6 neigh replace 2001:db8::2{i} lladdr {mac} dev eth0 nud permanent"
                ));
                servers.push(IdServer::start(&b, i, VLAN_VIP6, PORT));
            }
            servers.push(IdServer::start(&b, i, vip, PORT));
            backends.push(b);
        }
        // A bridge keeps a tag it received in the packet's metadata: the ports must write
        // it back into the frame, or the next host's XDP program never sees it.
        for p in &switch_ports {
            untag_offload_off(&segment.switch, p);
        }
        let mut peer_xdp = None;
        if mode == XdpAttachMode::Native {
            // docs/lab.md: XDP_TX out of a native-mode veth is dropped unless the peer veth
            // has an XDP program too, and the senders' TX checksum offload must be off.
            let dir = PathBuf::from(format!("/sys/fs/bpf/fo-vlx-peer-{tag}"));
            let opts = LoadOptions {
                pin_dir: dir.clone(),
                maglev_size: 251,
                max_services: 1,
                max_backends: 1,
                flow_table_size: 16,
                nat_table_size: 16,
            };
            let attach = Attach::Interface {
                name: switch_ports[2].clone(),
                mode: XdpAttachMode::Native,
            };
            let dp = segment
                .switch
                .run(move || Dataplane::open(&opts, &attach).map_err(|e| e.to_string()));
            peer_xdp = Some((dp.expect("XDP pass program on the switch port"), dir));
            tagged_client.sh("ethtool -K eth0 tx off >/dev/null");
            untagged_client.sh("ethtool -K eth0 tx off >/dev/null");
        }
        let mode_name = if mode == XdpAttachMode::Native {
            "native"
        } else {
            "generic"
        };
        let dir = TempDir::new(&format!("vlan-{tag}"));
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-vlx-{tag}"));
        let config = format!(
            r#"[node]
interface = "eth0"
xdp_mode = "{mode_name}"
bpf_dir = "{pin}"
control_socket = "{sock}"
state_file = "{sock}.state.json"
metrics = "127.0.0.1:9181"

[[router]]
name = "tagged"
ownership = "static"
vips = ["{VLAN_VIP}"]
vlan = {VLAN}

[[router]]
name = "tagged6"
ownership = "static"
vips = ["{VLAN_VIP6}"]
vlan = {VLAN}

[[router]]
name = "plain"
ownership = "static"
vips = ["{VIP}"]

[[service]]
vip = "{VLAN_VIP}"
port = {PORT}
hash = "5-tuple"
backends = [{{ address = "192.0.2.21" }}, {{ address = "192.0.2.22" }}]

[[service]]
vip = "{VLAN_VIP6}"
port = {PORT}
hash = "5-tuple"
backends = [{{ address = "2001:db8::21" }}, {{ address = "2001:db8::22" }}]

[[service]]
vip = "{VIP}"
port = {PORT}
backends = [{{ address = "192.0.2.23" }}]
"#,
            pin = pin_dir.display(),
            sock = dir.path().join("control.sock").display(),
        );
        std::fs::write(dir.path().join("fo.toml"), config).expect("write config");
        Lab {
            agent: None,
            _servers: servers,
            _ports: ports,
            peer_xdp,
            tagged_client,
            untagged_client,
            lb,
            _backends: backends,
            _segment: segment,
            dir,
            pin_dir,
        }
    }

    fn start_agent(&mut self) {
        let mut cmd = self
            .lb
            .command(fo_tests::agent_bin().to_str().expect("utf-8 path"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.path().join("fo.toml"));
        let mut agent = Proc::spawn_attached("fo-agent", cmd, &self.dir.path().join("agent.log"))
            .expect("spawn fo-agent");
        agent
            .wait_for_line(Duration::from_secs(30), |l| l.contains("running"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.agent = Some(agent);
    }

    /// The data plane's event counter `event` (`fo_xdp_events_total`).
    fn event(&self, event: &str) -> u64 {
        self.metric(&format!("fo_xdp_events_total{{event=\"{event}\"}}"))
    }

    /// The value of the metric written `series` (name and labels), 0 while absent.
    fn metric(&self, series: &str) -> u64 {
        let text = self.lb.run(|| {
            let mut s = TcpStream::connect(("127.0.0.1", 9181)).expect("connect to metrics");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            body
        });
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().expect("counter value"))
    }
}

/// Open `n` connections from `client` to `vip`:1514; count the answers per backend.
fn connect(client: &Netns, vip: &'static str, n: usize) -> [usize; 4] {
    client.run(move || {
        let addr = SocketAddr::new(vip.parse::<IpAddr>().expect("VIP"), PORT);
        let mut per_backend = [0usize; 4];
        for i in 0..n {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("connection {i} of {n} to {vip} failed: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let mut id = [0u8; 1];
            s.read_exact(&mut id)
                .unwrap_or_else(|e| panic!("connection {i} to {vip}: no answer: {e}"));
            per_backend[usize::from(id[0]).min(3)] += 1;
        }
        per_backend
    })
}

#[test]
fn native_xdp_answers_and_balances_a_vip_on_vlan_100() {
    scenario(XdpAttachMode::Native);
}

#[test]
fn generic_xdp_answers_and_balances_a_vip_on_vlan_100() {
    scenario(XdpAttachMode::Generic);
}

fn scenario(mode: XdpAttachMode) {
    let mut lab = Lab::new(mode);
    lab.start_agent();
    let lb_mac = lab.lb.mac("eth0");

    // Connections: the client's kernel asks for the VIP's MAC (a tagged ARP request,
    // answered by XDP), then XDP balances over the two backends on the VLAN.
    let arp_before = lab.event("arp_reply");
    let (hit0, miss0) = (lab.event("flow_hit"), lab.event("flow_miss"));
    let counts = connect(&lab.tagged_client, VLAN_VIP, CONNECTIONS);
    assert!(
        lab.event("arp_reply") > arp_before,
        "XDP answered no tagged ARP request"
    );
    assert_eq!(
        lab.tagged_client.neighbour(VLAN_VIP.parse().expect("VIP")),
        Some(lb_mac),
        "the tagged client's neighbour entry for the VLAN VIP must be the LB's MAC"
    );
    assert_eq!(counts[1] + counts[2], CONNECTIONS, "{counts:?}");
    for b in [1, 2] {
        assert!(
            (CONNECTIONS * 3 / 10..=CONNECTIONS * 7 / 10).contains(&counts[b]),
            "backend {b} got {} of {CONNECTIONS} connections ({counts:?})",
            counts[b]
        );
    }
    let (hits, misses) = (lab.event("flow_hit") - hit0, lab.event("flow_miss") - miss0);
    // Each connection's SYN is a flow-table miss (Maglev), its later segments hits.
    assert!(
        misses >= CONNECTIONS as u64 && hits >= CONNECTIONS as u64,
        "the VLAN VIP's connections did not go through XDP: {misses} misses, {hits} hits"
    );

    // IPv6 on the VLAN: the client's Neighbor Solicitation for the VIP6 goes out tagged
    // and is answered by XDP; its connections are balanced over the same backends.
    let na_before = lab.event("na_reply");
    let counts = connect(&lab.tagged_client, VLAN_VIP6, 60);
    assert_eq!(counts[1] + counts[2], 60, "VLAN VIP6: {counts:?}");
    assert!(
        counts[1] > 0 && counts[2] > 0,
        "VLAN VIP6 not balanced: {counts:?}"
    );
    assert!(
        lab.event("na_reply") > na_before,
        "XDP answered no tagged Neighbor Solicitation"
    );
    assert_eq!(
        lab.tagged_client
            .neighbour(VLAN_VIP6.parse().expect("VIP6")),
        Some(lb_mac),
        "the tagged client's neighbour entry for the VLAN VIP6 must be the LB's MAC"
    );

    // Untagged traffic is unaffected: the untagged VIP still balances for an untagged
    // client, and the VLAN VIP is not answered untagged.
    let counts = connect(&lab.untagged_client, VIP, 50);
    assert_eq!(counts[3], 50, "untagged VIP: {counts:?}");
    let vlan_before = lab.event("vlan");
    let out = lab
        .untagged_client
        .try_sh(&format!("arping -c 2 -w 2 -I eth0 {VLAN_VIP}"));
    assert!(
        !out.status.success(),
        "an untagged ARP request for the VLAN VIP was answered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        lab.event("vlan") >= vlan_before + 2,
        "the untagged ARP requests for the VLAN VIP were not passed as VLAN mismatches"
    );
    assert_eq!(lab.metric("fo_xdp_actions_total{action=\"aborted\"}"), 0);
    assert!(lab.metric("fo_xdp_actions_total{action=\"tx\"}") > 0);
}
