//! The complete example config, resolved values, several problems at once, load().

use std::net::IpAddr;
use std::time::Duration;

use fo_config::*;

const EXAMPLE: &str = include_str!("data/example.toml");

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn file(path: &str, line: usize, col: usize) -> ConfigFile {
    ConfigFile {
        path: path.into(),
        line,
        col,
    }
}

fn example() -> Config {
    Config::parse(EXAMPLE).unwrap_or_else(|e| panic!("the example must parse, got:\n{e}"))
}

#[test]
fn example_node_resolves_with_defaults() {
    let cfg = example();
    assert_eq!(
        cfg.node,
        Node {
            interface: "eth0".into(),
            xdp_mode: XdpMode::Native,
            bpf_dir: "/sys/fs/bpf/fo".into(),
            control_socket: "/run/fo/control.sock".into(),
            state_file: "/var/lib/fo/state.json".into(),
            metrics: Some("127.0.0.1:9469".parse().expect("addr")),
            maglev_table_size: 65_537,
            max_services: 64,
            max_backends: 4096,
            flow_table_size: 1_000_000,
            garp_count: 5,
            garp_interval: Duration::from_millis(100),
            garp_refresh: Some(Duration::from_secs(60)),
            vip_on_interface: false,
            control_group: Some("fo".into()),
            nat_table_size: 262_144,
            nat_timeouts: NatTimeouts {
                syn: Duration::from_secs(30),
                established: Duration::from_secs(3600),
                fin: Duration::from_secs(60),
                closed: Duration::from_secs(10),
                udp: Duration::from_secs(60),
            },
            sync: None,
            tunnel_check_mark: 0x4f48_0000,
        }
    );
}

#[test]
fn example_routers_resolve() {
    let cfg = example();
    let names: Vec<&str> = cfg.routers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["wazuh", "ingest", "legacy", "v6"]);

    let wazuh = cfg.router("wazuh").expect("wazuh");
    assert_eq!(
        wazuh.vrrp(),
        Some(&Vrrp {
            vrid: 51,
            priority: 150,
            version: VrrpVersion::V3,
            advert_interval: Duration::from_millis(100),
            preempt: true,
            preempt_delay: Duration::ZERO,
            peers: vec![ip("192.168.1.11")],
            auth_pass: None,
            auth_key_file: None,
            track: vec![Track {
                check: "docker".into(),
                weight: -60
            }],
            witness: None,
        })
    );
    assert_eq!(wazuh.gates, ["nfs"]);
    assert_eq!(
        wazuh.hooks.master,
        Some(HookCommand::path("/etc/fo/hooks/master.sh"))
    );
    assert_eq!(wazuh.hooks.notify, None);
    assert_eq!(wazuh.hooks.timeout, Duration::from_secs(30));

    let ingest = cfg.router("ingest").expect("ingest");
    assert_eq!(ingest.ownership_kind(), OwnershipKind::Bgp);
    assert_eq!(
        ingest.bgp(),
        Some(&Bgp {
            daemon: BgpDaemon::Bird,
            control: "/run/bird/bird.ctl".into(),
            bfd: true
        })
    );
    assert_eq!(ingest.vrrp(), None);
    assert_eq!(ingest.hooks, Hooks::default());

    let legacy = cfg
        .router("legacy")
        .and_then(Router::vrrp)
        .expect("legacy vrrp");
    assert_eq!(legacy.version, VrrpVersion::V2);
    assert_eq!(legacy.auth_pass.as_deref(), Some("Ns3c2024"));
    assert_eq!(legacy.priority, 100, "default priority");
    assert!(legacy.peers.is_empty());

    let v6 = cfg.router("v6").expect("v6");
    assert!(v6.is_ipv6());
    assert_eq!(
        v6.vrrp().map(|v| v.advert_interval),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        cfg.router_for_vip(ip("192.168.1.102"))
            .map(|r| r.name.as_str()),
        Some("legacy")
    );
}

#[test]
fn example_services_resolve_with_port_defaults() {
    let cfg = example();
    let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["192.168.1.100:1514/tcp", "api", "[2001:db8::100]:53/udp"]
    );

    let s = &cfg.services[0];
    assert_eq!(
        (s.protocol, s.mode, s.hash),
        (Protocol::Tcp, ForwardMode::Dsr, HashMode::SourceIp)
    );
    assert_eq!(s.router, "wazuh");
    assert_eq!(
        s.check,
        Some(ServiceCheck {
            kind: ServiceCheckKind::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        })
    );
    assert_eq!(
        s.backends(),
        [
            Backend {
                name: "192.168.1.21:1514".into(),
                address: ip("192.168.1.21"),
                port: 1514,
                weight: 1
            },
            Backend {
                name: "192.168.1.22:1514".into(),
                address: ip("192.168.1.22"),
                port: 1514,
                weight: 2
            },
        ]
    );

    let api = cfg.service("api").expect("api");
    assert_eq!(
        (api.mode, api.hash, api.router.as_str()),
        (ForwardMode::Nat, HashMode::FiveTuple, "wazuh")
    );
    assert_eq!(
        api.check.as_ref().map(|c| &c.kind),
        Some(&ServiceCheckKind::Https {
            get: HttpGet {
                path: "/healthz".into(),
                expect_status: vec![200, 204],
                expect_body: None,
            },
            tls: Tls {
                sni: Some("api.example.org".into()),
                ca: Some(file("/etc/fo/api-ca.pem", 64, 92)),
                client: None,
                insecure: false,
                min_cert_validity: Some(Duration::from_secs(30 * 86_400)),
            }
        })
    );
    assert!(api.backend("api-2").is_some_and(Backend::is_drained));
    assert_eq!(
        api.backend("api-1").map(Backend::socket_addr),
        Some("192.168.1.31:8443".parse().expect("addr"))
    );

    let dns = &cfg.services[2];
    assert_eq!(dns.backends()[0].name, "[2001:db8::53]:53");
    assert_eq!(
        dns.check.as_ref().map(|c| (&c.kind, c.interval, c.timeout)),
        Some((
            &ServiceCheckKind::Exec {
                command: vec!["/usr/local/bin/dns-ok".into()],
                run_as: None,
                at: Default::default(),
            },
            Duration::from_secs(2),
            Duration::from_secs(1)
        ))
    );
    assert_eq!(cfg.services_of("wazuh").count(), 2);
    assert_eq!(cfg.services_of("ingest").count(), 0);
}

#[test]
fn example_checks_resolve() {
    let cfg = example();
    let kinds: Vec<(&str, &CheckKind)> = cfg
        .checks
        .iter()
        .filter(|c| c.name != "indexer")
        .map(|c| (c.name.as_str(), &c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "docker",
                &CheckKind::Exec {
                    command: vec!["docker".into(), "info".into()],
                    run_as: None,
                    at: Default::default(),
                }
            ),
            (
                "nfs",
                &CheckKind::File {
                    path: "/srv/nfs/.mounted".into(),
                    contains: None
                }
            ),
            (
                "bird",
                &CheckKind::Process {
                    by: ProcessMatch::Pidfile("/run/bird/bird.pid".into())
                }
            ),
            (
                "web",
                &CheckKind::Http(HttpCheck {
                    host: "127.0.0.1".into(),
                    port: 8080,
                    get: HttpGet {
                        path: "/ready".into(),
                        expect_status: vec![200],
                        expect_body: Some("ok".into()),
                    },
                })
            ),
            (
                "db",
                &CheckKind::Tcp {
                    address: ip("192.168.1.40"),
                    port: 5432
                }
            ),
        ]
    );
    let web = cfg.check("web").expect("web");
    assert_eq!(
        (web.interval, web.timeout, web.rise, web.fall),
        (Duration::from_secs(5), Duration::from_millis(1500), 1, 2)
    );
    let docker = cfg.check("docker").expect("docker");
    assert_eq!(
        (docker.interval, docker.timeout, docker.rise, docker.fall),
        (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
    );
    if let CheckKind::Http(h) = &web.kind {
        assert_eq!(h.url(false), "http://127.0.0.1:8080/ready");
    }
}

#[test]
fn example_https_check_resolves_with_the_files_positions() {
    let cfg = example();
    let indexer = cfg.check("indexer").expect("indexer");
    let CheckKind::Https { target, tls } = &indexer.kind else {
        panic!("indexer is an https check: {:?}", indexer.kind);
    };
    assert_eq!(target.url(true), "https://127.0.0.1:9200/_cluster/health");
    assert_eq!(target.get.expect_status, [200]);
    let client = tls.client.as_ref().expect("a client certificate");
    let at = |f: &ConfigFile| (f.path.display().to_string(), f.line, f.col);
    assert_eq!(
        [
            tls.ca.as_ref().map(at),
            Some(at(&client.cert)),
            Some(at(&client.key))
        ],
        [
            Some(("/etc/fo/indexer-ca.pem".into(), 114, 6)),
            Some(("/etc/fo/indexer-client.pem".into(), 115, 8)),
            Some(("/etc/fo/indexer-client.key".into(), 116, 7)),
        ]
    );
    assert!(!tls.insecure && tls.sni.is_none() && tls.min_cert_validity.is_none());
}

#[test]
fn example_serializes_for_status_output() {
    let json = serde_json::to_value(example()).expect("serialize");
    assert_eq!(json["node"]["garp_interval"], "100ms");
    assert_eq!(json["routers"][0]["ownership"]["kind"], "vrrp");
    assert_eq!(json["routers"][0]["ownership"]["advert_interval"], "100ms");
    assert_eq!(json["routers"][0]["ownership"]["version"], 3);
    assert_eq!(json["routers"][1]["ownership"]["kind"], "bgp");
    assert_eq!(json["services"][0]["hash"], "source-ip");
    assert_eq!(json["checks"][2]["kind"]["kind"], "process");
    let api = &json["services"][1]["check"]["kind"];
    assert_eq!(api["kind"], "https");
    assert_eq!(api["expect_status"], serde_json::json!([200, 204]));
    assert_eq!(api["tls"]["ca"], "/etc/fo/api-ca.pem");
    assert_eq!(api["tls"]["min_cert_validity"], "30d");
    assert_eq!(json["checks"][3]["kind"]["path"], "/ready");
}

#[test]
fn a_changed_config_differs_and_an_identical_one_does_not() {
    let old = example();
    assert_eq!(old, example());
    let new = Config::parse(&EXAMPLE.replace("weight = 2 }", "weight = 3 }")).expect("parse");
    assert_ne!(old, new);
    assert_eq!(old.routers, new.routers);
    assert_eq!(new.services[0].backends()[1].weight, 3);
}

#[test]
fn minimal_config_gets_every_default() {
    let cfg = Config::parse("[node]\ninterface = \"eth1\"\n").expect("minimal config");
    assert!(cfg.routers.is_empty() && cfg.services.is_empty() && cfg.checks.is_empty());
    assert_eq!(cfg.node.xdp_mode, XdpMode::Native);
    assert_eq!(cfg.node.metrics, None);
    let off =
        Config::parse("[node]\ninterface = \"eth1\"\ngarp_refresh = \"0s\"\n").expect("garp off");
    assert_eq!(off.node.garp_refresh, None);
}

#[test]
fn static_ownership_needs_no_vrrp_settings() {
    let cfg = Config::parse(
        "[node]\ninterface = \"lo0\"\n[[router]]\nname = \"lab\"\nownership = \"static\"\nvips = [\"10.0.0.1\", \"10.0.0.2\"]\n",
    )
    .expect("static router");
    assert_eq!(cfg.routers[0].ownership, Ownership::Static);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"[node]
interface = "eth0"
maglev_table_size = 1000
colour = "blue"

[[router]]
name = "a"
vrid = 0
priority = "high"
vips = ["10.0.0.1", "fe80::1"]
track = [{ check = "nope", weight = 10 }]

[[service]]
vip = "10.9.9.9"
port = 70000
backends = [{ address = "10.0.0.5", weight = -1 }, { address = "10.0.0.6", port = 81 }]

[[check]]
name = "x"
kind = "tcp"
address = "10.0.0.7"
port = 22
interval = "1s"
timeout = "3s"
"#;
    let err = Config::parse(text).expect_err("many problems");
    let lines: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "3:21: maglev_table_size must be prime (e.g. 65537), got 1000",
            "4:1: unknown field `colour`, expected one of `interface`, `xdp_mode`, `bpf_dir`, `control_socket`, `state_file`, `metrics`, `maglev_table_size`, `max_services`, `max_backends`, `flow_table_size`, `garp_count`, `garp_interval`, `garp_refresh`, `vip_on_interface`, `control_group`, `nat_table_size`, `nat_timeouts`, `sync`, `tunnel_check_mark`",
            "8:8: vrid must be between 1 and 255, got 0",
            "9:12: invalid type: string \"high\", expected an integer",
            "10:21: VIP fe80::1 is IPv6 but the router's first VIP 10.0.0.1 is IPv4: one router, one address family",
            "11:20: track names check \"nope\", but there is no [[check]] with that name",
            "14:7: vip 10.9.9.9 is not a VIP of any [[router]]: add it to a router's `vips`",
            "15:8: port must be between 1 and 65535, got 70000",
            "16:46: backend weight must be between 0 and 1000, got -1",
            "24:11: timeout (3s) must be shorter than interval (1s)",
        ],
        "got:\n{err}"
    );
    assert_eq!(err.len(), 10);
    assert_eq!(err.to_string().lines().count(), 10);
    assert_eq!(
        err.errors()[0],
        ConfigError {
            line: 3,
            col: 21,
            message: "maglev_table_size must be prime (e.g. 65537), got 1000".into()
        }
    );
}

#[test]
fn limits_on_services_and_backends() {
    let text = r#"[node]
interface = "eth0"
max_services = 1
max_backends = 2
[[router]]
name = "r"
vrid = 1
vips = ["10.0.0.1"]
[[service]]
vip = "10.0.0.1"
port = 80
backends = [{ address = "10.0.0.2" }, { address = "10.0.0.3" }]
[[service]]
vip = "10.0.0.1"
port = 81
backends = [{ address = "10.0.0.4" }]
"#;
    let err = Config::parse(text).expect_err("over the limits");
    assert_eq!(
        err.to_string(),
        "13:1: too many services: max_services = 1 (raise it in [node])\n\
         16:13: too many backends in all services: max_backends = 2 (raise it in [node])"
    );
}

#[test]
fn load_reads_a_file_and_prefixes_errors_with_its_path() {
    let dir = std::env::temp_dir().join(format!("fo-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("good.toml");
    std::fs::write(&good, EXAMPLE).expect("write");
    assert_eq!(Config::load(&good).expect("load"), example());

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[node]\ninterface = \"eth0\"\nxdp_mode = \"turbo\"\n").expect("write");
    let err = Config::load(&bad).expect_err("bad config");
    assert!(matches!(err, LoadError::Invalid { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:12: unknown variant `turbo`, expected `native` or `generic`",
            bad.display()
        )
    );

    let missing = Config::load(dir.join("missing.toml")).expect_err("no file");
    assert!(matches!(missing, LoadError::Read { .. }));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn syntax_errors_have_positions_and_unicode_columns_count_characters() {
    let err = Config::parse("[node]\ninterface = \"é\" x\n").expect_err("syntax");
    assert_eq!(err.errors()[0].line, 2);
    assert_eq!(err.errors()[0].col, 17, "{err}");
}

#[test]
fn every_type_error_and_unknown_key_in_one_table_is_reported() {
    let text = r#"[node]
interface = "eth0"
[[router]]
name = "r"
vrid = "one"
preempt = "yes"
prio = 3
vips = ["10.0.0.1"]
[[service]]
vip = "10.0.0.1"
port = 80
mode = "turbo"
backends = [{ address = "10.0.0.2", port = 8080 }]
"#;
    let err = Config::parse(text).expect_err("type errors");
    assert_eq!(
        err.to_string(),
        "5:8: invalid type: string \"one\", expected an integer\n\
         6:11: invalid type: string \"yes\", expected true or false\n\
         7:1: unknown field `prio`, expected one of `name`, `ownership`, `vrid`, `priority`, `version`, `advert_interval`, `preempt`, `preempt_delay`, `vips`, `snat`, `vlan`, `peers`, `auth_pass`, `auth_key_file`, `track`, `gates`, `hooks`, `bgp`, `witness`\n\
         12:8: unknown variant `turbo`, expected one of `dsr`, `nat`, `tunnel`",
        "a removed `vrid` must not also be reported missing, and an unknown `mode` must not \
         make the backend port a DSR error"
    );
}
