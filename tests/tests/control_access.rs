//! Who may talk to the agent: one real `fo-agent` in a network namespace, with
//! `control_group = "nogroup"` and metrics on 127.0.0.1:9469.
//!
//! * the control socket serves root and members of the control group, and refuses any
//!   other uid by its peer credentials even when the socket file's mode lets it connect
//!   (the refusal is answered, logged and counted);
//! * the agent listens on no TCP or UDP address except the metrics port, and the metrics
//!   endpoint is read-only (GET only; other methods get 405).
//!
//! Other users are played with `setpriv` (util-linux) running `fo-agent status`.
//!
//! Run: `cargo test -p fo-tests --test control_access -- --test-threads=1` (root).

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use fo_tests::netns::wait_for;
use fo_tests::vrrp_lab::{Kind, Lab, agent_binary, serial};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const NOBODY: u32 = 65534;
/// Debian's "nogroup" (65534): present on every Debian machine, used as the control group.
const NOGROUP: u32 = 65534;
/// "daemon" (1): a primary group that is not the control group.
const OTHER_GID: u32 = 1;
const METRICS_PORT: u16 = 9469;

/// `fo-agent status --json` run as uid `uid`, gid `gid`, supplementary `groups`.
fn status_as(socket: &std::path::Path, uid: u32, gid: u32, groups: &[u32]) -> (bool, String) {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(agent_binary())
        .args(["status", "--json", "--socket"])
        .arg(socket);
    let out = cmd.output().expect("run setpriv");
    fo_tests::outcome(&out)
}

/// Status asked for by uid `NOBODY` outside the control group: refused (`refused` says
/// why it must be), with `needle` in what it says (`missing` if not).
fn refused_without_group(socket: &std::path::Path, refused: &str, (needle, missing): (&str, &str)) {
    let (ok, text) = status_as(socket, NOBODY, OTHER_GID, &[]);
    assert!(!ok, "uid {NOBODY} {refused}: {text}");
    assert!(text.contains(needle), "{missing}: {text}");
}

/// The lab, one test at a time (the lock, held until the test ends), with one agent
/// running under a control group and with metrics.
fn agent() -> (std::sync::MutexGuard<'static, ()>, Lab) {
    let serial = serial();
    let mut lab = Lab::new(VIP);
    let n = lab.add(
        "ctl",
        Kind::Fo {
            router: "name = \"web\"\nownership = \"static\"".into(),
        },
    );
    lab.nodes[n].node_extra =
        format!("control_group = \"nogroup\"\nmetrics = \"127.0.0.1:{METRICS_PORT}\"");
    let start = Instant::now();
    lab.nodes[n].start();
    let up = wait_for(Duration::from_secs(60), || {
        lab.nodes[n]
            .lines(|l| l.contains(" running"))
            .first()
            .map(|_| ())
    });
    assert!(
        up.is_some(),
        "agent not running {:?} after start.\n{}",
        start.elapsed(),
        lab.dump()
    );
    (serial, lab)
}

#[test]
fn control_socket_serves_root_and_the_group_only() {
    let (_serial, lab) = agent();
    let node = &lab.nodes[0];
    let socket = node.socket();
    let meta = std::fs::metadata(&socket).expect("socket exists");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "socket mode with a control group"
    );
    {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(meta.gid(), NOGROUP, "socket group");
    }

    let (ok, text) = node.ctl(&["status", "--json"]);
    assert!(ok, "root must be served: {text}");

    // A member of the control group (supplementary group, another primary group).
    let (ok, text) = status_as(&socket, NOBODY, OTHER_GID, &[NOGROUP]);
    assert!(ok, "a member of the control group must be served: {text}");
    assert!(text.contains("\"routers\""), "status expected: {text}");

    // Not a member: the file mode stops it first…
    refused_without_group(
        &socket,
        "without the group must be refused",
        ("Permission denied", "expected EACCES from the file mode"),
    );

    // …and with the mode loosened by hand, the agent's own check does.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    refused_without_group(
        &socket,
        "must be refused even through a 0666 socket",
        (
            "permission denied: uid 65534 is neither root nor a member of the control group \"nogroup\"",
            "expected the agent's refusal, got",
        ),
    );
    let logged = wait_for(Duration::from_secs(5), || {
        node.lines(|l| l.contains("control socket: connection refused") && l.contains("uid=65534"))
            .first()
            .map(|_| ())
    });
    assert!(
        logged.is_some(),
        "expected a warning in the log.\n{}",
        lab.dump()
    );

    let status = node.try_status().expect("root status");
    assert_eq!(
        status["node"]["control_refused"]["not_root_or_group"], 1,
        "refusals counted: {:#}",
        status["node"]
    );
    let metrics = node
        .ns
        .run(|| http(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(
        metrics.contains("fo_control_refused_total{reason=\"not_root_or_group\"} 1"),
        "metrics lack the refusal count:\n{metrics}"
    );
}

fn http(request: &'static [u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT)).expect("connect to metrics");
    s.write_all(request).expect("request");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn nothing_listens_but_read_only_metrics() {
    let (_serial, lab) = agent();
    let node = &lab.nodes[0];
    // Every TCP and UDP socket of the namespace (the agent is its only process), bound
    // or listening: `ss` reads them from the kernel (sock_diag), like /proc/net/{tcp,udp}*.
    let out = node.ns.sh("ss -Hlntu");
    let sockets: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        sockets.len(),
        1,
        "expected one listening socket (metrics), saw:\n{out}"
    );
    let words: Vec<&str> = sockets[0].split_whitespace().collect();
    assert_eq!(words[0], "tcp", "{out}");
    assert_eq!(words[4], format!("127.0.0.1:{METRICS_PORT}"), "{out}");

    let get = node
        .ns
        .run(|| http(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(get.starts_with("HTTP/1.1 200 OK"), "GET /metrics: {get}");
    assert!(
        get.contains("fo_vip_owned{router=\"web\"} 1"),
        "GET /metrics: {get}"
    );
    for method in ["POST", "PUT", "DELETE", "HEAD"] {
        let req: &'static [u8] = match method {
            "POST" => b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "PUT" => b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "DELETE" => b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            _ => b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        };
        let answer = node.ns.run(move || http(req));
        assert!(
            answer.starts_with("HTTP/1.1 405 Method Not Allowed") && answer.contains("Allow: GET"),
            "{method} /metrics must be refused: {answer}"
        );
    }
}
