//! Health checks through the tunnel, in network namespaces (`fo_tests::tunnel_lab`):
//! a tunnel service's tcp check reaches its routed backends encapsulated (the TC
//! egress program `fo-hc` on the load balancer), so a backend whose decapsulation is
//! detached goes down (status and `fo_backend_up`) although its plain TCP port still
//! answers, and comes back when decapsulation is attached again.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fo_agent::dataplane::hc;
use fo_tests::netns::wait_for;
use fo_tests::tunnel_lab::{LbNode, PORT, RoutedLab, VIP, VIP6};

const TCP_CHECK: &str =
    r#"check = { kind = "tcp", interval = "300ms", timeout = "200ms", rise = 2, fall = 2 }"#;
const HTTP_CHECK: &str = r#"check = { kind = "http", path = "/health", expect_status = 200, interval = "300ms", timeout = "250ms", rise = 2, fall = 2 }"#;

/// The agent's metrics port, on the load balancer namespace's own loopback.
const METRICS_PORT: u16 = 9469;

/// The load balancer on segment A running the real agent (generic XDP).
struct Lb(LbNode);

impl std::ops::Deref for Lb {
    type Target = LbNode;
    fn deref(&self) -> &LbNode {
        &self.0
    }
}

impl std::ops::DerefMut for Lb {
    fn deref_mut(&mut self) -> &mut LbNode {
        &mut self.0
    }
}

impl Lb {
    /// `v6`: the service is on the IPv6 VIP, to the backends' IPv6 addresses.
    fn start(lab: &RoutedLab, v6: bool, node_extra: &str, service_extra: &str) -> Lb {
        Self::start_with(lab, v6, node_extra, service_extra, TCP_CHECK)
    }

    fn start_with(
        lab: &RoutedLab,
        v6: bool,
        node_extra: &str,
        service_extra: &str,
        check: &str,
    ) -> Lb {
        let (vip, backends) = if v6 {
            (VIP6, lab.backends6_toml())
        } else {
            (VIP, lab.backends_toml())
        };
        let rest = format!(
            r#"[[router]]
name = "lab"
ownership = "static"
vips = ["{vip}"]

[[service]]
vip = "{vip}"
port = {PORT}
hash = "5-tuple"
mode = "tunnel"
{service_extra}
{check}
backends = {backends}
"#
        );
        let node_extra = format!("metrics = \"127.0.0.1:{METRICS_PORT}\"\n{node_extra}");
        let mut lb = Lb(LbNode::new(lab, "thc", &node_extra, &rest));
        lb.start();
        lb
    }

    /// Wait until backend `addr`'s health is `up` (for up: by a probe that
    /// connected); panics with the status and log.
    fn wait_health(&self, addr: IpAddr, up: bool, what: &str) {
        let addr = addr.to_string();
        let ok = wait_for(Duration::from_secs(10), || {
            let st = self.status();
            st["services"][0]["backends"]
                .as_array()
                .and_then(|bs| bs.iter().find(|b| b["address"] == addr.as_str()))
                // Up by a probe's result, not by a backend's initial state.
                .is_some_and(|b| {
                    b["healthy"] == up
                        && (!up
                            || b["detail"]
                                .as_str()
                                .is_some_and(|d| d.starts_with("connected")))
                })
                .then_some(())
        });
        assert!(
            ok.is_some(),
            "{what}: backend {addr} never became healthy = {up}: {}\n{}",
            self.status(),
            self.log()
        );
    }

    /// `fo_backend_up` of the backend at `addr`, from GET /metrics in the namespace.
    fn backend_up_metric(&self, addr: IpAddr) -> Option<String> {
        let body = self.ns.run(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT))
                .expect("connect to metrics");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            let _ = s.read_to_string(&mut body);
            body
        });
        let addr = addr.to_string();
        body.lines()
            .find(|l| l.starts_with("fo_backend_up{") && l.contains(addr.as_str()))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    }

    /// A plain (unmarked) TCP connection from the load balancer's namespace.
    fn connects_directly(&self, addr: IpAddr) -> bool {
        self.ns.run(move || {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(addr, PORT),
                Duration::from_secs(2),
            )
            .is_ok()
        })
    }
}

/// Backend `i`'s own address in the family of the test.
fn addr_of(lab: &RoutedLab, i: usize, v6: bool) -> IpAddr {
    if v6 {
        format!("2001:db8:c::2{}", i + 1).parse().expect("address")
    } else {
        lab.backends[i].addr
    }
}

/// A listener on each backend's own address (what the check connects to; the
/// clients' connections arrive for the VIP). Kept open for the test.
fn own_listeners(lab: &RoutedLab, v6: bool) -> Vec<TcpListener> {
    lab.backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let addr = addr_of(lab, i, v6);
            b.ns.run(move || TcpListener::bind((addr, PORT)).expect("bind the backend's address"))
        })
        .collect()
}

fn decap_counts(lab: &RoutedLab, i: usize) -> Option<[u64; 3]> {
    fo_agent::dataplane::decap::stats(lab.backends[i].decap_dir(), "eth0").expect("decap stats")
}

fn decap_cmd(lab: &RoutedLab, i: usize, args: &str) {
    let b = &lab.backends[i];
    b.ns.sh(&format!(
        "'{}' decap --interface eth0 --xdp-mode generic --bpf-dir '{}' {args}",
        fo_tests::agent_bin().display(),
        b.decap_dir().display()
    ));
}

/// Detach `fo-agent decap` on backend 0: its check fails through the tunnel while
/// its port answers a direct connection; attach it again: back up. Backend 1 stays up
/// throughout. `gue_port` 0: IPIP (IPv6: IP6IP6).
fn check_follows_the_tunnel(v6: bool, gue_port: u16, node_extra: &str, service_extra: &str) {
    let lab = RoutedLab::new(2, gue_port);
    let _listeners = own_listeners(&lab, v6);
    let lb = Lb::start(&lab, v6, node_extra, service_extra);
    let (b0, b1) = (addr_of(&lab, 0, v6), addr_of(&lab, 1, v6));
    lb.wait_health(b0, true, "decapsulating");
    lb.wait_health(b1, true, "decapsulating");
    let slot = if gue_port == 0 { 0 } else { 1 };
    let st = lb.status();
    let detail = st["services"][0]["backends"][0]["detail"].clone();
    assert!(
        detail
            .as_str()
            .is_some_and(|d| d.ends_with("through the tunnel")),
        "status names the tunnel in the check's result: {detail}"
    );
    // A backend starts healthy; the checks' probes must arrive encapsulated.
    let seen = wait_for(Duration::from_secs(10), || {
        decap_counts(&lab, 0).filter(|c| c[slot] > 0).map(|_| ())
    });
    assert!(
        seen.is_some(),
        "the probes must reach backend 0 encapsulated ({}): its decap counters are {:?}\n{}",
        if gue_port == 0 { "IPIP" } else { "GUE" },
        decap_counts(&lab, 0),
        lb.log()
    );

    decap_cmd(&lab, 0, "--detach");
    assert_eq!(decap_counts(&lab, 0), None, "decap detached on backend 0");
    lb.wait_health(b0, false, "decapsulation detached");
    assert!(
        lb.connects_directly(b0),
        "backend 0's port must still answer a direct connection from the load balancer"
    );
    let st = lb.status();
    let down = st["services"][0]["backends"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["address"] == b0.to_string().as_str()))
        .cloned()
        .expect("backend 0 in status");
    assert_eq!(
        down["effective_weight"], 0,
        "a backend down by its check leaves the table: {st}"
    );
    assert_eq!(
        lb.backend_up_metric(b0).as_deref(),
        Some("0"),
        "fo_backend_up of the backend without decapsulation"
    );
    lb.wait_health(b1, true, "the other backend's tunnel works");

    decap_cmd(&lab, 0, &format!("--gue-port {gue_port}"));
    lb.wait_health(b0, true, "decapsulation attached again");
    assert_eq!(
        lb.backend_up_metric(b0).as_deref(),
        Some("1"),
        "fo_backend_up once decapsulation is back"
    );
}

#[test]
fn a_backend_without_decapsulation_fails_its_ipip_check() {
    check_follows_the_tunnel(false, 0, "", "");
}

/// With the mark range moved (`tunnel_check_mark`).
#[test]
fn a_backend_without_decapsulation_fails_its_gue_check() {
    check_follows_the_tunnel(
        false,
        6080,
        "tunnel_check_mark = 0x7e000000",
        "encap = \"gue\"\ngue_port = 6080",
    );
}

#[test]
fn a_backend_without_decapsulation_fails_its_ip6ip6_check() {
    check_follows_the_tunnel(true, 0, "", "");
}

/// The encapsulation is pinned: a kill -9 of the agent leaves it on the interface,
/// and the restarted agent swaps its own build into the same link (one program,
/// probes still encapsulated: a broken tunnel is still seen).
#[test]
fn the_encapsulation_survives_a_restart_in_its_pinned_link() {
    let lab = RoutedLab::new(2, 0);
    let _listeners = own_listeners(&lab, false);
    let mut lb = Lb::start(&lab, false, "", "");
    let b0 = addr_of(&lab, 0, false);
    lb.wait_health(b0, true, "first run");
    let pin = hc::link_pin(&lb.pin_dir, "eth0");
    assert!(pin.exists(), "{} pinned", pin.display());
    lb.kill9();
    assert!(pin.exists(), "the link stays pinned after kill -9");
    // With no agent running, a marked connection still leaves encapsulated.
    let before = decap_counts(&lab, 0).expect("decap attached")[0];
    let mark = fo_common::hc_mark(fo_common::HC_MARK_BASE, 0);
    let connected = lb.ns.run(move || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        s.set_mark(mark).expect("SO_MARK");
        s.connect_timeout(&SocketAddr::new(b0, PORT).into(), Duration::from_secs(2))
            .is_ok()
    });
    let after = decap_counts(&lab, 0).expect("decap attached")[0];
    assert!(
        connected && after > before,
        "a marked connection with the agent dead: connected {connected}, IPIP decapsulated {before} -> {after}"
    );
    lb.start();
    assert!(
        lb.log().contains("how=Replaced"),
        "the restarted agent must reuse the pinned link:\n{}",
        lb.log()
    );
    // A probe of the new run connects: encapsulated once (twice would reach the
    // backend as an IPIP packet, which it cannot take).
    lb.wait_health(b0, true, "after the restart");
    decap_cmd(&lab, 0, "--detach");
    lb.wait_health(b0, false, "decapsulation detached after the restart");
    drop(lb);
    assert!(!pin.exists(), "removing the agent's pins removes the link");
}

/// Answers `GET` on each backend's own address with 200 until dropped.
struct HttpResponders(Arc<AtomicBool>);

impl HttpResponders {
    fn start(lab: &RoutedLab) -> HttpResponders {
        let stop = Arc::new(AtomicBool::new(false));
        for (i, b) in lab.backends.iter().enumerate() {
            let addr = addr_of(lab, i, false);
            let l = b
                .ns
                .run(move || TcpListener::bind((addr, PORT)).expect("bind the backend's address"));
            l.set_nonblocking(true).expect("nonblocking");
            let flag = stop.clone();
            std::thread::spawn(move || {
                use std::io::{Read as _, Write as _};
                while !flag.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, _)) => {
                            let _ = c.set_nonblocking(false);
                            let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                            let mut req = [0u8; 1024];
                            let _ = c.read(&mut req);
                            let _ = c.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            );
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
        }
        HttpResponders(stop)
    }
}

impl Drop for HttpResponders {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An http check takes the tunnel too: down without decapsulation, up with it.
#[test]
fn an_http_check_goes_through_the_tunnel_too() {
    let lab = RoutedLab::new(2, 0);
    let _http = HttpResponders::start(&lab);
    let lb = Lb::start_with(&lab, false, "", "", HTTP_CHECK);
    let b0 = addr_of(&lab, 0, false);
    let up = |st: &serde_json::Value| {
        st["services"][0]["backends"][0]["healthy"] == true
            && st["services"][0]["backends"][0]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("status 200"))
    };
    assert!(
        wait_for(Duration::from_secs(10), || up(&lb.status()).then_some(())).is_some(),
        "http check never passed: {}\n{}",
        lb.status(),
        lb.log()
    );
    let seen = wait_for(Duration::from_secs(10), || {
        decap_counts(&lab, 0).filter(|c| c[0] > 0).map(|_| ())
    });
    assert!(
        seen.is_some(),
        "the http probes must arrive encapsulated: {:?}",
        decap_counts(&lab, 0)
    );
    decap_cmd(&lab, 0, "--detach");
    lb.wait_health(b0, false, "decapsulation detached (http)");
    decap_cmd(&lab, 0, "--gue-port 0");
    assert!(
        wait_for(Duration::from_secs(10), || up(&lb.status()).then_some(())).is_some(),
        "http check never passed again: {}",
        lb.status()
    );
}
