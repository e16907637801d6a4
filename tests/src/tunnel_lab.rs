//! A routed lab for tunnel mode: backends two router hops away from the load
//! balancer, on another subnet.
//!
//! ```text
//!  client 192.0.2.10 ─┐
//!  LB     192.0.2.2  ─┼─ segment A ── r1 192.0.2.1 | 10.255.1.1 ── segment B ──
//!  (LB2   192.0.2.3) ─┘
//!      ── r2 10.255.1.2 | 10.2.0.1 ── segment C ── backends 10.2.0.21..
//! ```
//!
//! The routers are namespaces with forwarding on and reverse-path filtering off (the
//! backends answer from the VIP, which r1 has on segment A). The backends hold the VIP
//! on `lo` and decapsulate with `fo-agent decap` (this kernel has no ipip / fou).
//! Each backend runs a server on VIP:PORT that answers a connection with its number
//! and records the peer address it saw.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::id_server::IdServer;
use crate::netns::{Netns, Segment, unique_tag};

pub const VIP: &str = "192.0.2.100";
/// The IPv6 VIP, on segment A's prefix 2001:db8:a::/64 (the lab is dual-stack:
/// segment B 2001:db8:b::/64, the backends' subnet 2001:db8:c::/64).
pub const VIP6: &str = "2001:db8:a::100";
pub const CLIENT6: &str = "2001:db8:a::10";
pub const PORT: u16 = 1514;
pub const CLIENT: &str = "192.0.2.10";

/// Receives everything a connection sends on VIP:`port` and answers with the byte
/// count (8 bytes, big endian) once the client has shut down its side.
pub struct BulkServer {
    stop: Arc<AtomicBool>,
}

impl BulkServer {
    pub fn start(ns: &Netns, port: u16) -> BulkServer {
        let listener =
            ns.run(move || TcpListener::bind((VIP, port)).expect("bind VIP on a backend"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            use std::io::Read as _;
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut buf = vec![0u8; 65536];
                            let mut total = 0u64;
                            loop {
                                match s.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => total += n as u64,
                                    Err(_) => return,
                                }
                            }
                            let _ = s.write_all(&total.to_be_bytes());
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        BulkServer { stop }
    }
}

impl Drop for BulkServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Send `bytes` to VIP:`port` from `client` and read the count the backend received;
/// `Err` says how it failed (a black hole shows as a timeout).
pub fn upload(client: &Netns, port: u16, bytes: usize) -> Result<u64, String> {
    client.run(move || {
        use std::io::Read as _;
        let addr = SocketAddr::new(VIP.parse::<IpAddr>().expect("VIP"), port);
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let chunk = vec![0x5au8; 65536];
        let mut sent = 0;
        while sent < bytes {
            let n = chunk.len().min(bytes - sent);
            s.write_all(&chunk[..n])
                .map_err(|e| format!("write after {sent} bytes: {e}"))?;
            sent += n;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut count = [0u8; 8];
        s.read_exact(&mut count)
            .map_err(|e| format!("reading the count after sending {sent} bytes: {e}"))?;
        Ok(u64::from_be_bytes(count))
    })
}

/// A backend: its namespace, server and decap pins.
pub struct Backend {
    pub server: IdServer,
    pub server6: IdServer,
    pub ns: Netns,
    pub addr: IpAddr,
    decap_dir: PathBuf,
}

impl Backend {
    /// Where its decap program is pinned (`--bpf-dir`).
    pub fn decap_dir(&self) -> &std::path::Path {
        &self.decap_dir
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = fo_agent::dataplane::decap::detach(&self.decap_dir, "eth0");
        let _ = std::fs::remove_dir_all(&self.decap_dir);
    }
}

pub struct RoutedLab {
    // Field order is drop order: backends (their pins) before the namespaces.
    pub backends: Vec<Backend>,
    pub client: Netns,
    pub r1: Netns,
    pub r2: Netns,
    pub a: Segment,
    pub b: Segment,
    pub c: Segment,
}

fn router_sysctls(ns: &Netns) {
    ns.sh(
        "sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.conf.all.rp_filter=0 \
         net.ipv4.conf.default.rp_filter=0 && \
         for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done",
    );
}

impl RoutedLab {
    /// The client, both routers and `n` backends running `fo-agent decap` (GUE on
    /// `gue_port` as well). Load balancers are plugged into `a` by the caller, with a
    /// route to 10.2.0.0/24 via 192.0.2.1 ([`RoutedLab::lb_routes`]).
    pub fn new(n: u8, gue_port: u16) -> RoutedLab {
        Self::with_middle_mtu(n, gue_port, None)
    }

    /// As [`RoutedLab::new`], the link between the routers (segment B) set to `mtu`.
    pub fn with_middle_mtu(n: u8, gue_port: u16, mtu: Option<u32>) -> RoutedLab {
        let a = Segment::new();
        let b = Segment::new();
        let c = Segment::new();
        let client = Netns::new("tcp-cl");
        let r1 = Netns::new("tcp-r1");
        let r2 = Netns::new("tcp-r2");
        a.plug(&client, "eth0", &format!("{CLIENT}/24"));
        client.sh(&format!("ip addr add {CLIENT6}/64 dev eth0 nodad && ip -6 route add 2001:db8::/32 via 2001:db8:a::1"));
        // Full checksums from the client, as a physical NIC's frames have.
        client.sh("ethtool -K eth0 tx off >/dev/null");
        a.plug(&r1, "eth0", "192.0.2.1/24");
        b.plug(&r1, "eth1", "10.255.1.1/30");
        b.plug(&r2, "eth0", "10.255.1.2/30");
        c.plug(&r2, "eth1", "10.2.0.1/24");
        for r in [&r1, &r2] {
            router_sysctls(r);
        }
        if let Some(mtu) = mtu {
            r1.sh(&format!("ip link set eth1 mtu {mtu}"));
            r2.sh(&format!("ip link set eth0 mtu {mtu}"));
        }
        r1.sh("ip route add 10.2.0.0/24 via 10.255.1.2");
        r2.sh("ip route add 192.0.2.0/24 via 10.255.1.1");
        r1.sh("ip addr add 2001:db8:a::1/64 dev eth0 nodad && ip addr add 2001:db8:b::1/64 dev eth1 nodad \
               && ip -6 route add 2001:db8:c::/64 via 2001:db8:b::2");
        r2.sh("ip addr add 2001:db8:b::2/64 dev eth0 nodad && ip addr add 2001:db8:c::1/64 dev eth1 nodad \
               && ip -6 route add 2001:db8:a::/64 via 2001:db8:b::1");
        client.sh("ip route add 10.0.0.0/8 via 192.0.2.1");
        let tag = unique_tag();
        let script = crate::workspace_root().join("deploy/backend-tunnel.sh");
        let mut backends = Vec::new();
        for i in 1..=n {
            let ns = Netns::new(&format!("tcp-b{i}"));
            let addr: IpAddr = format!("10.2.0.2{i}").parse().expect("backend address");
            c.plug(&ns, "eth0", &format!("{addr}/24"));
            ns.sh("ip route add default via 10.2.0.1");
            ns.sh(&format!(
                "ip addr add 2001:db8:c::2{i}/64 dev eth0 nodad && ip -6 route add default via 2001:db8:c::1"
            ));
            // The deploy script, the fo way: the VIPs on lo and fo-agent decap.
            let decap_dir = PathBuf::from(format!("/sys/fs/bpf/fo-tcp-decap-{tag}-{i}"));
            ns.sh(&format!(
                "FO_AGENT='{}' sh {} --decap fo --interface eth0 --xdp-mode generic --gue-port {gue_port} --bpf-dir '{}' {VIP} {VIP6} >/dev/null",
                crate::agent_bin().display(),
                script.display(),
                decap_dir.display()
            ));
            backends.push(Backend {
                server: IdServer::start(&ns, i, VIP, PORT),
                server6: IdServer::start(&ns, i, VIP6, PORT),
                ns,
                addr,
                decap_dir,
            });
        }
        RoutedLab {
            backends,
            client,
            r1,
            r2,
            a,
            b,
            c,
        }
    }

    /// What a load balancer on segment A needs to reach the backends.
    pub fn lb_routes(lb: &Netns) {
        lb.sh("ip route add 10.2.0.0/24 via 192.0.2.1");
        lb.sh("ip -6 route add 2001:db8:c::/64 via 2001:db8:a::1");
    }

    /// The backend addresses as a TOML list of inline tables.
    pub fn backends_toml(&self) -> String {
        let list: Vec<String> = self
            .backends
            .iter()
            .map(|b| format!("{{ address = \"{}\" }}", b.addr))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// The IPv6 backend addresses as a TOML list of inline tables.
    pub fn backends6_toml(&self) -> String {
        let list: Vec<String> = (1..=self.backends.len())
            .map(|i| format!("{{ address = \"2001:db8:c::2{i}\" }}"))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// Every peer address the backends saw (IPv4 and IPv6 servers).
    pub fn peers(&self) -> Vec<IpAddr> {
        self.backends
            .iter()
            .flat_map(|b| {
                let mut v = b.server.peers.lock().expect("peers").clone();
                v.extend(b.server6.peers.lock().expect("peers").iter());
                v
            })
            .collect()
    }

    /// Open `n` connections to VIP:PORT from the client, one after another; count the
    /// answers per backend (index = backend number). Panics on a connection that fails.
    pub fn connect(&self, n: usize) -> Vec<usize> {
        self.connect_to(VIP, n)
    }

    /// As [`RoutedLab::connect`], to `vip`.
    pub fn connect_to(&self, vip: &'static str, n: usize) -> Vec<usize> {
        let slots = self.backends.len() + 1;
        self.client.run(move || {
            use std::io::Read as _;
            let addr = SocketAddr::new(vip.parse::<IpAddr>().expect("VIP"), PORT);
            let mut per_backend = vec![0usize; slots];
            for i in 0..n {
                let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connection {i} of {n} to the VIP failed: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(3)))
                    .expect("timeout");
                let mut id = [0u8; 1];
                s.read_exact(&mut id).unwrap_or_else(|e| {
                    panic!("connection {i} of {n}: no answer from a backend: {e}")
                });
                per_backend[usize::from(id[0]).min(slots - 1)] += 1;
            }
            per_backend
        })
    }
}

/// One load balancer on segment A running the real agent (generic XDP) with the
/// config `[node]` header this lab needs plus what the test adds; killed and its pins
/// removed on drop.
pub struct LbNode {
    agent: Option<fo_lab::kit::Proc>,
    pub ns: Netns,
    pub dir: crate::temp::TempDir,
    pub pin_dir: PathBuf,
}

impl Drop for LbNode {
    fn drop(&mut self) {
        self.kill9();
        let _ = fo_agent::dataplane::remove_all_pins(&self.pin_dir);
    }
}

impl LbNode {
    /// A namespace `tag`-lb plugged into segment A (192.0.2.2, 2001:db8:a::2) with routes
    /// to the backends, and a config: the lab's `[node]` keys, then `node_extra`, then
    /// `rest` (routers and services). The agent is not started.
    pub fn new(lab: &RoutedLab, tag: &str, node_extra: &str, rest: &str) -> LbNode {
        let name = format!("{tag}-lb");
        let ns = Netns::new(&name);
        lab.a.plug(&ns, "eth0", "192.0.2.2/24");
        ns.sh("ip addr add 2001:db8:a::2/64 dev eth0 nodad");
        RoutedLab::lb_routes(&ns);
        let dir = crate::temp::TempDir::new(&name);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-{name}-{}", unique_tag()));
        let sock = dir.0.join("control.sock");
        let config = format!(
            "[node]\ninterface = \"eth0\"\nxdp_mode = \"generic\"\nbpf_dir = \"{}\"\n\
             control_socket = \"{}\"\nstate_file = \"{}.state.json\"\n{node_extra}\n\n{rest}",
            pin_dir.display(),
            sock.display(),
            sock.display(),
        );
        std::fs::write(dir.0.join("fo.toml"), config).expect("write config");
        LbNode {
            agent: None,
            ns,
            dir,
            pin_dir,
        }
    }

    /// Run the agent (again, after [`LbNode::kill9`]) and wait until it runs.
    pub fn start(&mut self) {
        let mut cmd = self
            .ns
            .command(crate::agent_bin().to_str().expect("utf-8 path"));
        cmd.arg("run")
            .arg("--config")
            .arg(self.dir.0.join("fo.toml"));
        let mut agent =
            fo_lab::kit::Proc::spawn_attached("fo-agent", cmd, &self.dir.0.join("agent.log"))
                .expect("spawn fo-agent");
        agent
            .wait_for_line(Duration::from_secs(30), |l| l.contains("running"))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.log()));
        self.agent = Some(agent);
    }

    pub fn kill9(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill9();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("agent.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.0.join("control.sock")
    }

    /// `fo-agent status --json`.
    pub fn status(&self) -> serde_json::Value {
        fo_lab::kit::agent::status(&crate::agent_bin(), &self.socket())
            .unwrap_or_else(|e| panic!("status: {e:#}"))
    }

    /// `fo-agent status`, as an operator reads it.
    pub fn text_status(&self) -> String {
        let (_, out) = fo_lab::kit::agent::ctl(&crate::agent_bin(), &self.socket(), &["status"])
            .expect("run fo-agent status");
        out
    }
}
