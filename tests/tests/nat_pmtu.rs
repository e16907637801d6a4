//! ICMP through NAT, end to end. Path MTU discovery: a link of MTU 1400 between the
//! LB and its backend, two router hops away, and 10 MB through a `mode = "nat"`
//! service in each direction. And the other way, a client's port unreachable
//! reaching the backend (the last test).
//!
//! ```text
//! client 192.0.2.10 ─┐                   (MTU 1400)
//! lb 192.0.2.2 ──────┼─ 192.0.2.1 r1 10.9.0.1 ══ 10.9.0.2 r2 10.1.0.1 ── 10.1.0.21 backend
//!   (fo-agent, XDP)  │
//! ```
//!
//! - Client -> backend (upload): the client's 1500-byte segments, translated by the
//!   XDP program, reach r1, which answers "frag needed, MTU 1400" to the SNAT
//!   address. Only the data plane's ICMP translation (`nat_icmp.rs`) brings it to the
//!   client (as VIP -> client, quoting client -> VIP:1514), which lowers its MSS;
//!   without it the upload stalls at the first full-sized segment (PMTUD black hole).
//! - Backend -> client (download): r2 sends frag needed to the backend itself, which
//!   needs nothing from the LB. Both must complete.
//!
//! Run with the agent's program attached in generic and in native mode (native: an
//! XDP pass program on the switch's port, docs/lab.md). On the code before
//! `nat_icmp.rs` (the ICMP hook in `lb.rs` disabled, same lab), the upload stalled in
//! both modes with 0 of its 10 MB received by the backend (no progress for 10 s) and
//! `nat_icmp_to_client` 0, while the download completed.
//!
//! Offloads are off on every interface the traffic crosses (TSO/GSO/GRO on veth
//! would hand the program and the routers 64 KB super-packets and hide the MTU), and
//! checksums are computed in software (the NAT rewrite updates them incrementally).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fo_agent::dataplane::{Attach, Dataplane, LoadOptions, XdpAttachMode, remove_all_pins};
use fo_lab::kit::Proc;
use fo_tests::netns::{Netns, Segment};
use fo_tests::temp::TempDir;

const VIP: &str = "192.0.2.100";
const SNAT: &str = "192.0.2.50";
const BACKEND: &str = "10.1.0.21";
const BACKEND_PORT: u16 = 11514;
const UDP_BACKEND_PORT: u16 = 5514;
const TOTAL: u64 = 10 * 1024 * 1024;
/// A transfer that makes no progress for this long has stalled.
const STALL: Duration = Duration::from_secs(10);

const NO_OFFLOADS: &str = "tx off tso off gso off gro off";

struct Lab {
    // Drop order: the agent, the server, the switch port's program, then the
    // namespaces.
    agent: Option<Proc>,
    server: Server,
    peer_xdp: Option<(Dataplane, PathBuf)>,
    client: Netns,
    lb: Netns,
    _r1: Netns,
    _r2: Netns,
    backend: Netns,
    _segment: Segment,
    dir: TempDir,
    pin_dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        let _ = remove_all_pins(&self.pin_dir);
        if let Some((_, dir)) = self.peer_xdp.take() {
            let _ = remove_all_pins(&dir);
        }
    }
}

/// The backend's service on 0.0.0.0:11514, in this process: a connection's first
/// byte asks for an upload (`U`: read to the end, answer the byte count) or a
/// download (`D`: send [`TOTAL`] bytes, close). `received` counts upload bytes as
/// they arrive, so a stalled upload shows where it stopped.
struct Server {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
}

impl Server {
    fn start(ns: &Netns) -> Server {
        let listener = ns.run(|| TcpListener::bind(("0.0.0.0", BACKEND_PORT)).expect("bind"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                    let mut kind = [0u8];
                    if s.read_exact(&mut kind).is_err() {
                        return;
                    }
                    if kind[0] == b'U' {
                        let mut buf = vec![0u8; 65536];
                        let mut n = 0u64;
                        while let Ok(k) = s.read(&mut buf) {
                            if k == 0 {
                                break;
                            }
                            n += k as u64;
                            count.store(n, Ordering::Relaxed);
                        }
                        let _ = s.write_all(&n.to_be_bytes());
                    } else {
                        let buf = vec![0x5au8; 65536];
                        let mut left = TOTAL;
                        while left > 0 {
                            let k = left.min(buf.len() as u64) as usize;
                            if s.write_all(&buf[..k]).is_err() {
                                return;
                            }
                            left -= k as u64;
                        }
                    }
                });
            }
        });
        Server { stop, received }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn no_offloads(ns: &Netns, ifaces: &[&str]) {
    for i in ifaces {
        ns.sh(&format!(
            "ethtool -K {i} {NO_OFFLOADS} >/dev/null 2>&1 || true"
        ));
    }
}

impl Lab {
    /// The lab, the agent attaching its program in `mode`.
    fn new(mode: XdpAttachMode) -> Lab {
        let (tag, dir) = fo_tests::temp::new_dir("nixpmtu");
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/fo-nixpmtu-{tag}"));
        let dir = TempDir(dir);
        let segment = Segment::new();
        let client = Netns::new("nixcl");
        let lb = Netns::new("nixlb");
        let r1 = Netns::new("nixr1");
        let r2 = Netns::new("nixr2");
        let backend = Netns::new("nixbe");
        segment.plug(&client, "eth0", "192.0.2.10/24");
        let lb_port = segment.plug(&lb, "eth0", "192.0.2.2/24");
        segment.plug(&r1, "eth0", "192.0.2.1/24");
        // r1 == r2 at MTU 1400 (both ends), r2 -- backend at 1500.
        r1.sh(&format!(
            "ip link add eth1 type veth peer name eth0 netns {r2} \
             && ip link set eth1 mtu 1400 && ip addr add 10.9.0.1/30 dev eth1 && ip link set eth1 up \
             && ip route add 10.1.0.0/24 via 10.9.0.2 && sysctl -qw net.ipv4.ip_forward=1",
            r2 = r2.name
        ));
        r2.sh(&format!(
            "ip link set lo up && ip link set eth0 mtu 1400 && ip addr add 10.9.0.2/30 dev eth0 \
             && ip link set eth0 up \
             && ip link add eth1 type veth peer name eth0 netns {b} \
             && ip addr add 10.1.0.1/24 dev eth1 && ip link set eth1 up \
             && ip route add default via 10.9.0.1 && sysctl -qw net.ipv4.ip_forward=1",
            b = backend.name
        ));
        backend.sh(&format!(
            "ip link set lo up && ip addr add {BACKEND}/24 dev eth0 && ip link set eth0 up \
             && ip route add default via 10.1.0.1"
        ));
        lb.sh("ip route add 10.1.0.0/24 via 192.0.2.1");
        no_offloads(&client, &["eth0"]);
        no_offloads(&lb, &["eth0"]);
        no_offloads(&r1, &["eth0", "eth1"]);
        no_offloads(&r2, &["eth0", "eth1"]);
        no_offloads(&backend, &["eth0"]);
        let server = Server::start(&backend);
        let mut peer_xdp = None;
        if mode == XdpAttachMode::Native {
            // docs/lab.md: XDP_TX out of a native-mode veth is dropped unless the peer
            // veth has an XDP program too.
            let peer_dir = PathBuf::from(format!("/sys/fs/bpf/fo-nixpmtu-peer-{tag}"));
            let opts = LoadOptions {
                pin_dir: peer_dir.clone(),
                maglev_size: 251,
                max_services: 1,
                max_backends: 1,
                flow_table_size: 16,
                nat_table_size: 16,
            };
            let attach = Attach::Interface {
                name: lb_port,
                mode: XdpAttachMode::Native,
            };
            let dp = segment
                .switch
                .run(move || Dataplane::open(&opts, &attach).map_err(|e| e.to_string()));
            peer_xdp = Some((dp.expect("XDP pass program on the switch port"), peer_dir));
        }
        let mode_name = if mode == XdpAttachMode::Native {
            "native"
        } else {
            "generic"
        };
        let config = format!(
            r#"{node}

[[router]]
name = "lab"
ownership = "static"
vips = ["{VIP}"]
snat = ["{SNAT}"]

[[service]]
name = "bulk"
vip = "{VIP}"
port = 1514
mode = "nat"
backends = [{{ address = "{BACKEND}", port = {BACKEND_PORT} }}]

[[service]]
name = "syslog"
vip = "{VIP}"
port = 514
protocol = "udp"
mode = "nat"
backends = [{{ address = "{BACKEND}", port = {UDP_BACKEND_PORT} }}]
"#,
            node = fo_tests::node_table(&pin_dir, &dir.0.join("control.sock"), 9479).replace(
                "xdp_mode = \"generic\"",
                &format!("xdp_mode = \"{mode_name}\"")
            ),
        );
        std::fs::write(dir.0.join("fo.toml"), config).expect("config");
        Lab {
            agent: None,
            server,
            peer_xdp,
            client,
            lb,
            _r1: r1,
            _r2: r2,
            backend,
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
            .arg(self.dir.0.join("fo.toml"));
        let mut agent = Proc::spawn_attached("fo-agent", cmd, &self.dir.0.join("agent.log"))
            .expect("spawn fo-agent");
        agent
            .wait_for_line(Duration::from_secs(30), |l| l.contains("running"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.agent = Some(agent);
    }

    fn xdp(&self) -> serde_json::Value {
        fo_lab::kit::agent::status(&fo_tests::agent_bin(), &self.dir.0.join("control.sock"))
            .map(|s| s["xdp"].clone())
            .unwrap_or_default()
    }

    fn connect(&self) -> TcpStream {
        let s = self.client.run(|| {
            TcpStream::connect_timeout(&format!("{VIP}:1514").parse().expect("addr"), STALL)
                .expect("connect to the VIP")
        });
        s.set_read_timeout(Some(STALL)).expect("timeout");
        s.set_write_timeout(Some(STALL)).expect("timeout");
        s
    }

    /// Client -> backend: the bytes the backend got, or where it stalled.
    fn upload(&self) -> Result<u64, String> {
        let mut s = self.connect();
        let chunk = vec![0xa5u8; 65536];
        s.write_all(b"U").map_err(|e| e.to_string())?;
        let mut sent = 0u64;
        while sent < TOTAL {
            if let Err(e) = s.write_all(&chunk) {
                return Err(format!(
                    "upload stalled ({e}): {sent} bytes written, {} received by the backend",
                    self.server.received.load(Ordering::Relaxed)
                ));
            }
            sent += chunk.len() as u64;
        }
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        let mut answer = [0u8; 8];
        s.read_exact(&mut answer).map_err(|e| {
            format!(
                "upload stalled ({e}): {sent} bytes written, {} received by the backend",
                self.server.received.load(Ordering::Relaxed)
            )
        })?;
        Ok(u64::from_be_bytes(answer))
    }

    /// Backend -> client: the bytes the client got, or where it stalled.
    fn download(&self) -> Result<u64, String> {
        let mut s = self.connect();
        s.write_all(b"D").map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(k) => got += k as u64,
                Err(e) => return Err(format!("download stalled ({e}) at {got} bytes")),
            }
        }
    }
}

#[test]
fn ten_megabytes_both_ways_through_a_1400_byte_link_generic_mode() {
    scenario(XdpAttachMode::Generic);
}

#[test]
fn ten_megabytes_both_ways_through_a_1400_byte_link_native_mode() {
    scenario(XdpAttachMode::Native);
}

fn scenario(mode: XdpAttachMode) {
    let mut lab = Lab::new(mode);
    lab.start_agent();
    let link = lab.lb.sh("ip -d link show dev eth0");
    let generic = link.contains("xdpgeneric");
    assert!(
        link.contains("prog/xdp") && generic == (mode == XdpAttachMode::Generic),
        "the agent must have attached its program in {mode:?} mode: {link}"
    );

    // One direction at a time, each starting with no path MTU learned: an end that
    // learned it advertises an MSS that fits in its SYN, and the other end's segments
    // would never meet the small link.
    let download = lab.download();
    let backend_route = lab.backend.sh(&format!("ip route get {SNAT}"));
    lab.backend.sh("ip route flush cache");
    let upload = lab.upload();
    let xdp = lab.xdp();
    let client_route = lab.client.sh(&format!("ip route get {VIP}"));
    println!("upload: {upload:?}; download: {download:?}");
    println!("client's route to the VIP: {}", client_route.trim());
    println!("backend's route to SNAT: {}", backend_route.trim());
    println!(
        "xdp: nat_new {} nat_icmp_to_client {} nat_icmp_to_backend {} nat_icmp_bad {} nat_icmp_no_flow {}",
        xdp["nat_new"],
        xdp["nat_icmp_to_client"],
        xdp["nat_icmp_to_backend"],
        xdp["nat_icmp_bad"],
        xdp["nat_icmp_no_flow"]
    );
    assert_eq!(
        upload,
        Ok(TOTAL),
        "client -> backend through the 1400-byte link"
    );
    assert_eq!(
        download,
        Ok(TOTAL),
        "backend -> client through the 1400-byte link"
    );
    assert!(
        xdp["nat_icmp_to_client"].as_u64().unwrap_or(0) >= 1,
        "r1's frag needed must have reached the client through the data plane: {xdp}"
    );
    assert!(
        client_route.contains("mtu 1400"),
        "the client must have learned the path MTU to the VIP: {client_route}"
    );
    assert!(
        backend_route.contains("mtu 1400"),
        "the download must have crossed the small MTU too (r2's frag needed to the backend): {backend_route}"
    );
}

/// The other direction of ICMP through NAT, end to end: the backend answers a UDP
/// datagram whose client has closed its socket; the client's kernel sends "port
/// unreachable" to the VIP, which the data plane translates to the backend, whose
/// connected socket then reports the refusal (ECONNREFUSED). With the ICMP hook
/// disabled the error ended at the LB: the backend's read timed out after 5 s
/// (EAGAIN), `nat_icmp_to_backend` 0.
#[test]
fn port_unreachable_from_a_client_reaches_the_backend() {
    use std::net::UdpSocket;
    let mut lab = Lab::new(XdpAttachMode::Generic);
    lab.start_agent();
    let backend = lab
        .backend
        .run(move || UdpSocket::bind(("0.0.0.0", UDP_BACKEND_PORT)).expect("bind"));
    backend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The client sends one datagram and closes its socket.
    lab.client.run(|| {
        let c = UdpSocket::bind("0.0.0.0:0").expect("bind");
        c.send_to(b"<13>one line", (VIP, 514)).expect("send");
    });
    let mut buf = [0u8; 64];
    let (n, peer) = backend
        .recv_from(&mut buf)
        .expect("the datagram through NAT");
    assert_eq!(&buf[..n], b"<13>one line");
    assert_eq!(
        peer.ip().to_string(),
        SNAT,
        "the backend sees the SNAT address"
    );
    backend
        .connect(peer)
        .expect("connect to the SNAT address and port");
    backend.send(b"ack").expect("reply");
    let refused = backend.recv(&mut buf);
    let xdp = lab.xdp();
    println!(
        "backend's read after its reply: {refused:?}; xdp: nat_icmp_to_backend {} nat_icmp_no_flow {} nat_icmp_bad {}",
        xdp["nat_icmp_to_backend"], xdp["nat_icmp_no_flow"], xdp["nat_icmp_bad"]
    );
    assert_eq!(
        refused.as_ref().map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the client's port unreachable must reach the backend's socket"
    );
    assert!(
        xdp["nat_icmp_to_backend"].as_u64().unwrap_or(0) >= 1,
        "translated by the data plane: {xdp}"
    );
}
