//! Issue 16's HTTPS acceptance: `kind = "https"` checks of a real `fo-agent` against real
//! TLS servers (`openssl s_server`) in a network namespace, with certificates made by
//! `openssl` for each run (`fo_tests::pki`).
//!
//! * a valid certificate passes, by DNS name (`sni`) and by IP address;
//! * a wrong CA, an expired certificate and a wrong SNI name each fail, and the status
//!   says which;
//! * mutual TLS: without the client certificate the check fails (TLS 1.3 and 1.2), with
//!   it the check passes;
//! * `insecure = true` passes a self-signed certificate that fails without it;
//! * a server that never answers the ClientHello, and one that stops in the middle of
//!   its ServerHello, are handshake timeouts, not hangs;
//! * a backend check over TLS shows its reason in the backend's status;
//! * `min_cert_validity`: a certificate expiring sooner lowers a tracked router's
//!   priority and closes a gate, and a reload with a shorter minimum restores both.
//!
//! The servers run in the lab's client namespace (192.0.2.50), the agent on 192.0.2.11.
//!
//! Run: `cargo test -p fo-tests --test health_https -- --test-threads=1` (root).

use std::net::Ipv4Addr;
use std::time::Duration;

use fo_tests::netns::{ChildGuard, Netns, wait_for};
use fo_tests::pki::{Pki, SERVER_NAME};
use fo_tests::vrrp_lab::{Kind, Lab, serial};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const SERVER: &str = "192.0.2.50";

/// The TLS servers, each on its own port of SERVER.
const VALID: u16 = 8441;
const EXPIRED: u16 = 8442;
const MTLS: u16 = 8443;
const SELF_SIGNED: u16 = 8444;
const SOON: u16 = 8445;
const STALL: u16 = 8446;
const MTLS12: u16 = 8447;
const PARTIAL: u16 = 8448;

/// A server that reads the ClientHello, sends the first bytes of a ServerHello (a
/// handshake record announcing 100 bytes, then 6 of them) and says no more; each
/// connection is held until the client closes it. Stops when dropped.
struct PartialServerHello {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PartialServerHello {
    fn start(ns: &Netns, port: u16) -> PartialServerHello {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = format!("{SERVER}:{port}");
        let listener = ns.run(move || {
            std::net::TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let mut hello = [0u8; 4096];
                    let _ = conn.read(&mut hello);
                    // TLS record: handshake (22), TLS 1.2, 100 bytes; ServerHello (2),
                    // length 96, version 3.3 — then nothing.
                    let _ = conn.write_all(&[22, 3, 3, 0, 100, 2, 0, 0, 96, 3, 3]);
                    while matches!(conn.read(&mut hello), Ok(n) if n > 0) {}
                });
            }
        });
        PartialServerHello { stop }
    }
}

impl Drop for PartialServerHello {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `openssl s_server` in `ns` on SERVER:`port`, answering every GET with its status
/// page (HTTP/1.0 200), its output in a log file next to the certificates.
fn s_server(ns: &Netns, pki: &Pki, port: u16, cert: &str, extra: &str) -> ChildGuard {
    let mut cmd = ns.command("sh");
    cmd.arg("-c").arg(format!(
        "exec openssl s_server -accept {SERVER}:{port} -cert {cert} -key {key} -www -quiet {extra} > {log} 2>&1",
        cert = pki.file(cert),
        key = pki.file("server.key"),
        log = pki.file(&format!("s_server-{port}.log")),
    ));
    let guard = ChildGuard::spawn(&format!("openssl s_server :{port}"), cmd);
    listening(ns, port);
    guard
}

fn listening(ns: &Netns, port: u16) {
    let up = wait_for(Duration::from_secs(10), || {
        let out = ns.try_sh(&format!("ss -Hltn 'sport = :{port}'"));
        (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
    });
    assert!(
        up.is_some(),
        "nothing listens on {SERVER}:{port} after 10 s"
    );
}

/// A node-level https check (rise 1, fall 1) with `keys` added.
fn check(name: &str, port: u16, keys: &str) -> String {
    format!(
        "[[check]]\nname = \"{name}\"\nkind = \"https\"\naddress = \"{SERVER}\"\nport = {port}\ninterval = \"1s\"\ntimeout = \"800ms\"\nrise = 1\nfall = 1\n{keys}\n"
    )
}

/// The lab, its certificates and its servers, dropped in reverse order.
struct Setup {
    lab: Lab,
    _servers: Vec<ChildGuard>,
    _stall: Option<std::net::TcpListener>,
    _partial: Option<PartialServerHello>,
    pki: Pki,
}

fn setup(ports: &[u16]) -> Setup {
    let mut lab = Lab::new(VIP);
    let pki = Pki::new(SERVER);
    let ns = &lab.client;
    let mut servers = Vec::new();
    let mut stall = None;
    let mut partial = None;
    // A server that asks for a client certificate signed by the lab's CA.
    let mtls = |extra: &str| format!("-Verify 1 -CAfile {}{extra}", pki.file("ca.pem"));
    for &port in ports {
        match port {
            VALID => servers.push(s_server(ns, &pki, port, "good.pem", "")),
            EXPIRED => servers.push(s_server(ns, &pki, port, "expired.pem", "")),
            SELF_SIGNED => servers.push(s_server(ns, &pki, port, "self.pem", "")),
            SOON => servers.push(s_server(ns, &pki, port, "soon.pem", "")),
            MTLS => servers.push(s_server(ns, &pki, port, "good.pem", &mtls(""))),
            MTLS12 => servers.push(s_server(ns, &pki, port, "good.pem", &mtls(" -tls1_2"))),
            STALL => {
                // Listens (the kernel completes the TCP handshake) and never answers
                // the ClientHello.
                let addr = format!("{SERVER}:{port}");
                stall = Some(ns.run(move || {
                    std::net::TcpListener::bind(&addr)
                        .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
                }));
            }
            PARTIAL => partial = Some(PartialServerHello::start(ns, port)),
            other => panic!("no server for port {other}"),
        }
    }
    lab.add(
        "fo",
        Kind::Fo {
            router: "name = \"web\"\nvrid = 51\npriority = 150\nadvert_interval = \"100ms\"".into(),
        },
    );
    Setup {
        lab,
        _servers: servers,
        _stall: stall,
        _partial: partial,
        pki,
    }
}

/// The `checks` entries of a status, by name: (up, detail).
fn checks(status: &serde_json::Value) -> Vec<(String, bool, String)> {
    status["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_owned(),
                        c["up"] == true,
                        c["detail"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn https_checks_pass_and_fail_with_a_clear_reason() {
    let _serial = serial();
    let mut s = setup(&[VALID, EXPIRED, MTLS, MTLS12, SELF_SIGNED, STALL, PARTIAL]);
    let ca = format!("ca = \"{}\"", s.pki.file("ca.pem"));
    let sni = format!("sni = \"{SERVER_NAME}\"");
    let client = format!(
        "cert = \"{}\"\nkey = \"{}\"",
        s.pki.file("client.pem"),
        s.pki.file("client.key")
    );
    // (name, port, keys, up, what the status must say)
    let cases: Vec<(&str, u16, String, bool, String)> = vec![
        (
            "valid",
            VALID,
            format!("{sni}\n{ca}\nexpect_body = \"Ciphers supported\""),
            true,
            format!("https://{SERVER}:{VALID}/: status 200, body matches"),
        ),
        (
            "valid-by-address",
            VALID,
            ca.clone(),
            true,
            format!("https://{SERVER}:{VALID}/: status 200"),
        ),
        (
            "wrong-ca",
            VALID,
            format!("{sni}\nca = \"{}\"", s.pki.file("other-ca.pem")),
            false,
            "TLS: certificate not trusted: unknown issuer (no CA in `ca` signed it: wrong CA?)"
                .into(),
        ),
        (
            "system-store",
            VALID,
            sni.clone(),
            false,
            "TLS: certificate not trusted: unknown issuer (no CA of the system store signed it"
                .into(),
        ),
        (
            "expired",
            EXPIRED,
            format!("{sni}\n{ca}"),
            false,
            "TLS: certificate expired on 2025-01-01T00:00:00Z".into(),
        ),
        (
            "wrong-sni",
            VALID,
            format!("sni = \"wrong.fo.test\"\n{ca}"),
            false,
            format!(
                "TLS: certificate is not valid for \"wrong.fo.test\" (it names {SERVER_NAME}, {SERVER}): wrong `sni`?"
            ),
        ),
        (
            "mtls-without-cert",
            MTLS,
            format!("{sni}\n{ca}"),
            false,
            "TLS: the server requires a client certificate and none is configured (set `cert` and `key`)"
                .into(),
        ),
        (
            "mtls12-without-cert",
            MTLS12,
            format!("{sni}\n{ca}"),
            false,
            "TLS: the server requires a client certificate and none is configured (set `cert` and `key`)"
                .into(),
        ),
        (
            "mtls",
            MTLS,
            format!("{sni}\n{ca}\n{client}"),
            true,
            format!("https://{SERVER}:{MTLS}/: status 200"),
        ),
        (
            "mtls12",
            MTLS12,
            format!("{sni}\n{ca}\n{client}"),
            true,
            format!("https://{SERVER}:{MTLS12}/: status 200"),
        ),
        (
            "self-signed",
            SELF_SIGNED,
            format!("{sni}\n{ca}"),
            false,
            "TLS: the server presents a CA certificate as its own (self-signed?)".into(),
        ),
        (
            "insecure",
            SELF_SIGNED,
            "insecure = true".into(),
            true,
            format!("https://{SERVER}:{SELF_SIGNED}/: status 200"),
        ),
        (
            "stall",
            STALL,
            format!("{sni}\n{ca}\ntimeout = \"500ms\""),
            false,
            format!("https://{SERVER}:{STALL}/: TLS handshake not finished within 500ms"),
        ),
        (
            "partial-hello",
            PARTIAL,
            format!("{sni}\n{ca}\ntimeout = \"500ms\""),
            false,
            format!("https://{SERVER}:{PARTIAL}/: TLS handshake not finished within 500ms"),
        ),
        (
            "status",
            VALID,
            format!("{sni}\n{ca}\nexpect_status = [204, 301]"),
            false,
            format!("https://{SERVER}:{VALID}/: status 200, expected one of 204, 301"),
        ),
    ];
    let mut extra: String = cases
        .iter()
        .map(|(name, port, keys, ..)| {
            // `timeout` given by a case replaces the default one.
            let c = check(name, *port, keys);
            if keys.contains("timeout") {
                c.replacen("timeout = \"800ms\"\n", "", 1)
            } else {
                c
            }
        })
        .collect();
    // Backend checks over TLS: one healthy backend, one with an expired certificate.
    for port in [VALID, EXPIRED] {
        extra.push_str(&format!(
            "[[service]]\nvip = \"{VIP}\"\nport = {port}\ncheck = {{ kind = \"https\", {sni}, {ca}, interval = \"1s\", timeout = \"800ms\", rise = 1, fall = 1 }}\nbackends = [{{ address = \"{SERVER}\" }}]\n",
        ));
    }
    let node = &mut s.lab.nodes[0];
    node.node_extra = extra;
    node.start();

    // Every check probed, and the backend with the expired certificate down.
    let settled = wait_for(Duration::from_secs(30), || {
        let status = node.try_status()?;
        let seen = checks(&status);
        let all = seen.len() == cases.len()
            && seen.iter().all(|(name, up, detail)| {
                let want = cases.iter().find(|c| c.0 == name).map(|c| c.3);
                !detail.is_empty() && want == Some(*up)
            });
        let backend_down = status["services"][1]["backends"][0]["healthy"] == false;
        (all && backend_down).then_some(status)
    });
    let status = settled.unwrap_or_else(|| {
        panic!(
            "the checks did not settle in 30 s; last status checks: {:#?}\nlog:\n{}",
            node.try_status().map(|s| checks(&s)),
            node.dump()
        )
    });
    let seen = checks(&status);
    let mut wrong = Vec::new();
    for (name, _, _, up, want) in &cases {
        let (_, saw_up, detail) = seen
            .iter()
            .find(|(n, ..)| n == name)
            .unwrap_or_else(|| panic!("no check {name} in status"));
        println!("{name:<20} up={saw_up:<5} {detail}");
        if saw_up != up || !detail.contains(want.as_str()) {
            wrong.push(format!(
                "{name}: expected up={up} and {want:?}, saw up={saw_up}: {detail:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "checks with the wrong result:\n{}",
        wrong.join("\n")
    );

    let backend = |i: usize| status["services"][i]["backends"][0].clone();
    assert_eq!(backend(0)["healthy"], true, "{}", backend(0));
    let why = backend(1)["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.contains("TLS: certificate expired on 2025-01-01T00:00:00Z"),
        "the backend with an expired certificate must say so in its status: {}",
        backend(1)
    );
    // The human status shows the same reasons.
    let (ok, human) = node.ctl(&["status"]);
    assert!(ok, "fo-agent status: {human}");
    for needle in [
        format!(
            "    why: https://{SERVER}:{EXPIRED}/: TLS: certificate expired on 2025-01-01T00:00:00Z"
        ),
        "wrong-sni        no   https://".to_string(),
    ] {
        assert!(human.contains(&needle), "expected {needle:?} in:\n{human}");
    }
}

#[test]
fn a_certificate_expiring_within_min_cert_validity_lowers_priority_and_closes_a_gate() {
    let _serial = serial();
    let mut s = setup(&[SOON]);
    let tls = format!("sni = \"{SERVER_NAME}\"\nca = \"{}\"", s.pki.file("ca.pem"));
    let config = |min: &str| {
        format!(
            "{}[[router]]\nname = \"gated\"\nownership = \"static\"\nvips = [\"192.0.2.101\"]\ngates = [\"cert\"]\n",
            check(
                "cert",
                SOON,
                &format!("{tls}\nmin_cert_validity = \"{min}\"")
            )
        )
    };
    s.lab.nodes[0].set_kind(Kind::Fo {
        router: "name = \"web\"\nvrid = 51\npriority = 150\nadvert_interval = \"100ms\"\ntrack = [{ check = \"cert\", weight = -50 }]".into(),
    });
    let node = &mut s.lab.nodes[0];
    node.node_extra = config("30d");
    node.start();

    let router = |status: &serde_json::Value, name: &str| {
        status["routers"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    // The certificate (10 days left) fails a 30-day minimum: the tracked weight applies
    // and the gate is closed.
    let failing = wait_for(Duration::from_secs(30), || {
        let st = node.try_status()?;
        let detail = checks(&st)
            .into_iter()
            .find(|c| c.0 == "cert")
            .map(|c| c.2)
            .unwrap_or_default();
        (!detail.is_empty()).then_some(st)
    })
    .unwrap_or_else(|| panic!("check \"cert\" never ran:\n{}", node.dump()));
    let detail = checks(&failing)
        .into_iter()
        .find(|c| c.0 == "cert")
        .map(|c| c.2)
        .unwrap_or_default();
    println!("min_cert_validity 30d: {detail}");
    assert!(
        detail.contains(&format!("certificate CN={SERVER_NAME} expires "))
            && detail.contains("(in 9.9 days), sooner than min_cert_validity 30d")
            || detail.contains("(in 10.0 days), sooner than min_cert_validity 30d"),
        "expected the certificate's expiry and the minimum in the reason: {detail}"
    );
    let lowered = wait_for(Duration::from_secs(10), || {
        let st = node.try_status()?;
        let web = router(&st, "web");
        let gated = router(&st, "gated");
        (web["effective_priority"] == 100
            && gated["gates_closed"] == serde_json::json!(["cert"])
            && gated["owned"] == false)
            .then_some(())
    });
    assert!(
        lowered.is_some(),
        "expected web at priority 150 - 50 and gated's gate closed; status: {:#}",
        node.try_status().unwrap_or_default()
    );

    // A 5-day minimum passes the same certificate: both effects end.
    node.node_extra = config("5d");
    let (ok, out) = node.reload();
    assert!(ok, "reload: {out}");
    let restored = wait_for(Duration::from_secs(30), || {
        let st = node.try_status()?;
        let web = router(&st, "web");
        let gated = router(&st, "gated");
        let cert = checks(&st).into_iter().find(|c| c.0 == "cert")?;
        (cert.1
            && web["effective_priority"] == 150
            && gated["gates_closed"] == serde_json::json!([])
            && gated["owned"] == true)
            .then_some(cert.2)
    });
    let detail = restored.unwrap_or_else(|| {
        panic!(
            "expected the check up, web back at 150 and the gate open after the reload; status: {:#}",
            node.try_status().unwrap_or_default()
        )
    });
    println!("min_cert_validity 5d: {detail}");
    assert!(
        detail.ends_with("status 200; no certificate expires within 5d"),
        "{detail}"
    );
}

/// At start, a TLS file the agent cannot use downs only the check that names it: the
/// agent runs, takes over, and the check's status and an `err` log line say why.
/// `fo-agent check` and `reload` still refuse the config; once the file is fixed, a
/// reload brings the check back to probing.
#[test]
fn an_unusable_tls_file_at_start_downs_only_its_check() {
    fo_tests::require_root();
    let _serial = serial();
    let lab = fo_tests::lone::Lone::new("exit 0", "");
    let pki = Pki::new(SERVER);
    // A certificate renewal left the client key readable by another group.
    pki.chmod("client.key", 0o640);
    std::os::unix::fs::chown(pki.path("client.key"), None, Some(65534)).expect("chgrp nogroup");
    let key = pki.file("client.key");
    let config = format!(
        "{}\n[[check]]\nname = \"indexer\"\nkind = \"https\"\naddress = \"{SERVER}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{key}\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n\n[[check]]\nname = \"alive\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\n",
        lab.config_text(""),
        pki.file("ca.pem"),
        pki.file("client.pem"),
    );
    std::fs::write(&lab.config, &config).expect("config");
    let config_path = lab.config.display().to_string();
    let refusal = format!(
        "check indexer: key {key}: mode 0640 lets group nogroup (gid 65534) read the private key"
    );

    let out = std::process::Command::new(fo_tests::agent_bin())
        .args(["check", "--config", &config_path])
        .output()
        .expect("fo-agent check");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains(&refusal),
        "fo-agent check must refuse the key: {said}"
    );

    let log = lab.dir.join("agent.log");
    let mut cmd = lab.agent_command(None);
    cmd.env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut agent = ChildGuard {
        child: Some(cmd.spawn().expect("spawn the agent")),
        what: "fo-agent".into(),
    };
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_for(Duration::from_secs(30), || {
        if let Some(st) = agent.exited() {
            panic!("the agent exited ({st}) over one check's key:\n{}", text());
        }
        let st = lab.status()?;
        let cs = checks(&st);
        let alive = cs.iter().any(|(n, up, _)| n == "alive" && *up);
        let master = st["routers"][0]["state"] == "master";
        (alive && master).then_some(cs)
    });
    let Some(cs) = up else {
        panic!(
            "the agent did not take over with its other check up:\n{}",
            text()
        );
    };
    let indexer = cs.iter().find(|(n, ..)| n == "indexer").expect("indexer");
    assert!(
        !indexer.1
            && indexer
                .2
                .contains("mode 0640 lets group nogroup (gid 65534) read"),
        "the check with the unusable key must be down with the reason: {indexer:?}"
    );
    let logged = text();
    let line = logged
        .lines()
        .find(|l| l.contains(&refusal))
        .unwrap_or_else(|| panic!("no log line about the key:\n{logged}"));
    assert!(
        line.contains("ERROR") && line.contains(&format!("{config_path}:")),
        "logged at error with the config's position: {line}"
    );

    let (ok, said) = lab.ctl(&["reload"]);
    assert!(
        !ok && said.contains(&refusal),
        "a reload with the key still 0640 must be refused: {said}"
    );
    pki.chmod("client.key", 0o600);
    let (ok, said) = lab.ctl(&["reload"]);
    assert!(ok, "with the key at 0600 the reload succeeds: {said}");
    let probing = wait_for(Duration::from_secs(10), || {
        let cs = checks(&lab.status()?);
        let (_, _, detail) = cs.into_iter().find(|(n, ..)| n == "indexer")?;
        (!detail.is_empty() && !detail.contains("mode 0640")).then_some(detail)
    });
    assert!(
        probing.is_some(),
        "after the reload the check probes the server (no server listens: a connect error)"
    );
    let _ = agent.kill_and_collect();
}
