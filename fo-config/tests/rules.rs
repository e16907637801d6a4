//! One test per validation rule: the exact `LINE:COL: message` of every problem.
//!
//! Tests built on `with_base` append to BASE (12 lines), so their first line is 13.

use fo_config::Config;

/// A valid config that the rule tests extend.
const BASE: &str = r#"[node]
interface = "eth0"

[[check]]
name = "docker"
kind = "exec"
command = ["docker", "info"]

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]
"#;

fn with_base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// BASE and a second router `b` (VRID 52, one VIP) ending in `lines`, the first of
/// them on line 17.
fn with_router_b(lines: &str) -> String {
    with_base(&format!(
        "[[router]]\nname = \"b\"\nvrid = 52\nvips = [\"192.0.2.11\"]\n{lines}\n"
    ))
}

/// BASE and an https check `x` on 10.0.0.1 ending in `lines`, the first of them on
/// line 17.
fn with_https_check(lines: &str) -> String {
    with_base(&format!(
        "[[check]]\nname = \"x\"\nkind = \"https\"\naddress = \"10.0.0.1\"\n{lines}\n"
    ))
}

#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    let seen: Vec<String> = match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(seen, expected, "config:\n{text}");
}

#[test]
fn base_is_valid() {
    assert_errors(BASE, &[]);
}

#[test]
fn unknown_key_in_node() {
    assert_errors(
        r#"[node]
interface = "eth0"
xdp = "native"
"#,
        &[
            "3:1: unknown field `xdp`, expected one of `interface`, `xdp_mode`, `bpf_dir`, `control_socket`, `state_file`, `metrics`, `maglev_table_size`, `max_services`, `max_backends`, `flow_table_size`, `garp_count`, `garp_interval`, `garp_refresh`, `vip_on_interface`, `control_group`, `nat_table_size`, `nat_timeouts`, `sync`, `tunnel_check_mark`",
        ],
    );
}

#[test]
fn unknown_top_level_key() {
    assert_errors(
        r#"[nodes]
interface = "eth0"
"#,
        &[
            "1:1: missing [node] table (it needs at least `interface`)",
            "1:2: unknown key `nodes`: expected [node], [[router]], [[service]] or [[check]]",
        ],
    );
}

#[test]
fn missing_node() {
    assert_errors(
        r#"[[check]]
name = "a"
kind = "file"
path = "/x"
"#,
        &["1:1: missing [node] table (it needs at least `interface`)"],
    );
}

#[test]
fn node_interface_missing() {
    assert_errors(
        r#"[node]
xdp_mode = "native"
"#,
        &["1:1: [node] needs `interface` (the network interface XDP and VRRP use)"],
    );
}

#[test]
fn interface_name_too_long() {
    assert_errors(
        r#"[node]
interface = "averyveryverylongname"
"#,
        &[
            "2:13: interface \"averyveryverylongname\" is not a valid interface name (1 to 15 bytes, no '/', ':' or spaces)",
        ],
    );
}

#[test]
fn xdp_mode_bad() {
    assert_errors(
        r#"[node]
interface = "eth0"
xdp_mode = "offload"
"#,
        &["3:12: unknown variant `offload`, expected `native` or `generic`"],
    );
}

#[test]
fn bpf_dir_relative() {
    assert_errors(
        r#"[node]
interface = "eth0"
bpf_dir = "fo"
"#,
        &["3:11: bpf_dir must be an absolute path, got \"fo\""],
    );
}

#[test]
fn control_socket_relative() {
    assert_errors(
        r#"[node]
interface = "eth0"
control_socket = "run/fo.sock"
"#,
        &["3:18: control_socket must be an absolute path, got \"run/fo.sock\""],
    );
}

#[test]
fn state_file_relative() {
    assert_errors(
        r#"[node]
interface = "eth0"
state_file = "state.json"
"#,
        &["3:14: state_file must be an absolute path, got \"state.json\""],
    );
}

#[test]
fn metrics_bad() {
    assert_errors(
        r#"[node]
interface = "eth0"
metrics = "localhost"
"#,
        &[
            "3:11: metrics \"localhost\" is not an IP:PORT like \"127.0.0.1:9469\" or \"[::1]:9469\"",
        ],
    );
}

#[test]
fn maglev_not_prime() {
    assert_errors(
        r#"[node]
interface = "eth0"
maglev_table_size = 65536
"#,
        &["3:21: maglev_table_size must be prime (e.g. 65537), got 65536"],
    );
}

#[test]
fn maglev_too_small() {
    assert_errors(
        r#"[node]
interface = "eth0"
maglev_table_size = 13
"#,
        &["3:21: maglev_table_size must be a prime between 251 and 1000003, got 13"],
    );
}

#[test]
fn maglev_too_large() {
    assert_errors(
        r#"[node]
interface = "eth0"
maglev_table_size = 1000033
"#,
        &["3:21: maglev_table_size must be a prime between 251 and 1000003, got 1000033"],
    );
}

#[test]
fn max_services_zero() {
    assert_errors(
        r#"[node]
interface = "eth0"
max_services = 0
"#,
        &["3:16: max_services must be between 1 and 65535, got 0"],
    );
}

#[test]
fn tunnel_check_mark_needs_its_low_bits_free() {
    assert_errors(
        r#"[node]
interface = "eth0"
tunnel_check_mark = 0x7e000001
"#,
        &[
            "3:21: tunnel_check_mark 0x7e000001 must have its low 16 bits zero (they carry the GUE port), e.g. 0x7e000000",
        ],
    );
    assert_errors(
        r#"[node]
interface = "eth0"
tunnel_check_mark = 0
"#,
        &["3:21: tunnel_check_mark must be between 65536 and 4294901760, got 0"],
    );
}

#[test]
fn garp_count_zero() {
    assert_errors(
        r#"[node]
interface = "eth0"
garp_count = 0
"#,
        &["3:14: garp_count must be between 1 and 255, got 0"],
    );
}

#[test]
fn garp_interval_zero() {
    assert_errors(
        r#"[node]
interface = "eth0"
garp_interval = "0ms"
"#,
        &["3:17: garp_interval must be greater than zero"],
    );
}

#[test]
fn control_group_bad() {
    assert_errors(
        r#"[node]
interface = "eth0"
control_group = "wheel users"
"#,
        &["3:17: control_group \"wheel users\" is not a valid group name"],
    );
}

#[test]
fn duration_unitless() {
    assert_errors(
        r#"[node]
interface = "eth0"
garp_interval = "100"
"#,
        &[
            "3:17: duration \"100\" has no unit: write e.g. \"100s\" or \"100ms\" (units: ns, us, ms, s, m, h, d)",
        ],
    );
}

#[test]
fn duration_negative() {
    assert_errors(
        r#"[node]
interface = "eth0"
garp_refresh = "-1s"
"#,
        &["3:16: duration \"-1s\" cannot be negative"],
    );
}

#[test]
fn duration_integer() {
    assert_errors(
        r#"[node]
interface = "eth0"
garp_interval = 100
"#,
        &[
            "3:17: duration \"100\" has no unit: write e.g. \"100s\" or \"100ms\" (units: ns, us, ms, s, m, h, d)",
        ],
    );
}

#[test]
fn router_name_bad() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "Web"
vrid = 52
vips = ["192.0.2.11"]
"#,
        ),
        &["14:8: router name \"Web\" must be 1 to 63 characters of a-z, 0-9, '_' and '-'"],
    );
}

#[test]
fn router_name_duplicate() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "web"
vrid = 52
vips = ["192.0.2.11"]
"#,
        ),
        &["14:8: duplicate router name \"web\" (first defined on line 10)"],
    );
}

#[test]
fn router_name_missing() {
    assert_errors(
        &with_base(
            r#"[[router]]
vrid = 52
vips = ["192.0.2.11"]
"#,
        ),
        &["13:1: [[router]] needs a `name`"],
    );
}

#[test]
fn vrid_out_of_range() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 256
vips = ["192.0.2.11"]
"#,
        ),
        &["15:8: vrid must be between 1 and 255, got 256"],
    );
}

#[test]
fn vrid_missing() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vips = ["192.0.2.11"]
"#,
        ),
        &["13:1: a VRRP router needs a `vrid` (1..=255, unique on the interface)"],
    );
}

#[test]
fn vrid_duplicate() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 51
vips = ["192.0.2.11"]
"#,
        ),
        &["15:8: vrid 51 is already used by router \"web\" (line 11) on this interface"],
    );
}

#[test]
fn priority_zero() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
priority = 0
vips = ["192.0.2.11"]
"#,
        ),
        &["16:12: priority must be between 1 and 255, got 0"],
    );
}

#[test]
fn version_4() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 4
vips = ["192.0.2.11"]
"#,
        ),
        &["16:11: version must be 3 or 2, got 4"],
    );
}

#[test]
fn advert_v3_not_multiple_of_10ms() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
advert_interval = "15ms"
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "16:19: advert_interval 15ms must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)",
        ],
    );
}

#[test]
fn advert_v3_too_long() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
advert_interval = "41s"
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "16:19: advert_interval 41s must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)",
        ],
    );
}

#[test]
fn advert_v2_fractional() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 2
advert_interval = "1500ms"
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "17:19: advert_interval 1500ms must be whole seconds between 1s and 255s in VRRP version 2",
        ],
    );
}

#[test]
fn advert_v2_too_long() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 2
advert_interval = "256s"
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "17:19: advert_interval 256s must be whole seconds between 1s and 255s in VRRP version 2",
        ],
    );
}

#[test]
fn vips_missing() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
"#,
        ),
        &["13:1: [[router]] needs `vips` (at least one address)"],
    );
}

#[test]
fn vips_empty() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = []
"#,
        ),
        &["16:8: vips must not be empty"],
    );
}

#[test]
fn vip_not_an_address() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = ["192.0.2.300"]
"#,
        ),
        &["16:9: VIP \"192.0.2.300\" is not an IPv4 or IPv6 address"],
    );
}

#[test]
fn vip_multicast() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = ["224.0.0.18"]
"#,
        ),
        &["16:9: VIP 224.0.0.18 is not a unicast address"],
    );
}

#[test]
fn vip_mixed_family() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = ["192.0.2.11", "2001:db8::11"]
"#,
        ),
        &[
            "16:23: VIP 2001:db8::11 is IPv6 but the router's first VIP 192.0.2.11 is IPv4: one router, one address family",
        ],
    );
}

#[test]
fn vip_twice_in_router() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = ["192.0.2.11", "192.0.2.11"]
"#,
        ),
        &["16:23: VIP 192.0.2.11 is listed twice (first on line 16)"],
    );
}

#[test]
fn vip_in_two_routers() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
vips = ["192.0.2.10"]
"#,
        ),
        &["16:9: VIP 192.0.2.10 already belongs to router \"web\" (line 12)"],
    );
}

#[test]
fn v2_with_ipv6() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 2
vips = ["2001:db8::11"]
"#,
        ),
        &["17:8: VRRP version 2 carries IPv4 VIPs only: use version = 3 for IPv6"],
    );
}

#[test]
fn auth_pass_with_v3() {
    assert_errors(
        &with_router_b(r#"auth_pass = "secret""#),
        &["17:13: auth_pass only exists in VRRP version 2 (set version = 2, or remove it)"],
    );
}

#[test]
fn auth_pass_too_long() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 2
vips = ["192.0.2.11"]
auth_pass = "123456789"
"#,
        ),
        &["18:13: auth_pass must be 1 to 8 bytes, got 9"],
    );
}

#[test]
fn auth_key_file_needs_v3_and_an_absolute_path() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
version = 2
vips = ["192.0.2.11"]
auth_key_file = "/etc/fo/vrrp.key"

[[router]]
name = "c"
vrid = 53
vips = ["192.0.2.12"]
auth_key_file = "vrrp.key"

[[router]]
name = "d"
ownership = "static"
vips = ["192.0.2.13"]
auth_key_file = "/etc/fo/vrrp.key"
"#,
        ),
        &[
            "18:17: auth_key_file (HMAC between fo nodes) needs version = 3; version 2 has only auth_pass, for keepalived peers",
            "24:17: auth_key_file must be an absolute path, got \"vrrp.key\"",
            "30:17: `auth_key_file` does not apply to ownership = \"static\" (only to \"vrrp\")",
        ],
    );
}

#[test]
fn auth_key_file_with_v3_is_valid() {
    let cfg = Config::parse(&with_base(
        r#"auth_key_file = "/etc/fo/vrrp.key"
"#,
    ))
    .expect("valid");
    assert_eq!(
        cfg.routers[0].vrrp().and_then(|v| v.auth_key_file.clone()),
        Some("/etc/fo/vrrp.key".into())
    );
}

#[test]
fn peers_other_family() {
    assert_errors(
        &with_router_b(r#"peers = ["2001:db8::2"]"#),
        &["17:10: peer 2001:db8::2 is IPv6 but the VIPs are IPv4"],
    );
}

#[test]
fn peer_bad() {
    assert_errors(
        &with_router_b(r#"peers = ["0.0.0.0"]"#),
        &["17:10: peer 0.0.0.0 is not a unicast address"],
    );
}

#[test]
fn track_unknown_check() {
    assert_errors(
        &with_router_b(r#"track = [{ check = "dockr", weight = -50 }]"#),
        &["17:20: track names check \"dockr\", but there is no [[check]] with that name"],
    );
}

#[test]
fn track_weight_out_of_range() {
    assert_errors(
        &with_router_b(r#"track = [{ check = "docker", weight = -255 }]"#),
        &["17:39: track weight must be between -254 and 254, got -255"],
    );
}

#[test]
fn track_missing_weight() {
    assert_errors(
        &with_router_b(r#"track = [{ check = "docker" }]"#),
        &[
            "17:10: a track entry needs `weight`: positive = added while the check passes, negative = added while it fails, 0 = fault while it fails",
        ],
    );
}

#[test]
fn gate_unknown_check() {
    assert_errors(
        &with_router_b(r#"gates = ["docker", "nfs"]"#),
        &["17:20: gate names check \"nfs\", but there is no [[check]] with that name"],
    );
}

#[test]
fn hook_relative_path() {
    assert_errors(
        &with_router_b(r#"hooks = { master = "hooks/master.sh", timeout = "0s" }"#),
        &[
            "17:20: hooks.master must be an absolute path, got \"hooks/master.sh\"",
            "17:49: hooks.timeout must be greater than zero",
        ],
    );
}

#[test]
fn hook_unknown_key() {
    assert_errors(
        &with_router_b(r#"hooks = { on_master = "/x" }"#),
        &[
            "17:11: unknown field `on_master`, expected one of `master`, `backup`, `fault`, `stop`, `notify`, `timeout`, `user`, `group`",
        ],
    );
}

#[test]
fn bgp_missing() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "bgp"
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "15:13: ownership = \"bgp\" needs `bgp = { daemon = \"bird\" | \"frr\", control = \"/path/to/socket\" }`",
        ],
    );
}

#[test]
fn bgp_forbidden() {
    assert_errors(
        &with_router_b(r#"bgp = { daemon = "bird", control = "/run/bird/bird.ctl" }"#),
        &["17:7: `bgp` only applies to ownership = \"bgp\" (this router is \"vrrp\")"],
    );
}

#[test]
fn bgp_incomplete() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "bgp"
vips = ["192.0.2.11"]
bgp = { daemon = "gobgp", control = "bird.ctl" }
"#,
        ),
        &[
            "17:18: unknown variant `gobgp`, expected `bird` or `frr`",
            "17:37: bgp control must be an absolute path, got \"bird.ctl\"",
        ],
    );
}

#[test]
fn vrrp_keys_on_static() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "static"
vrid = 52
priority = 200
vips = ["192.0.2.11"]
"#,
        ),
        &[
            "16:8: `vrid` does not apply to ownership = \"static\" (only to \"vrrp\")",
            "17:12: `priority` does not apply to ownership = \"static\" (only to \"vrrp\")",
        ],
    );
}

#[test]
fn ownership_unknown() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "anycast"
vips = ["192.0.2.11"]
"#,
        ),
        &["15:13: unknown variant `anycast`, expected one of `vrrp`, `bgp`, `static`"],
    );
}

#[test]
fn service_vip_not_on_router() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.99"
port = 80
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["14:7: vip 192.0.2.99 is not a VIP of any [[router]]: add it to a router's `vips`"],
    );
}

#[test]
fn service_port_zero() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 0
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["15:8: port must be between 1 and 65535, got 0"],
    );
}

#[test]
fn service_missing_port_and_backends() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
"#,
        ),
        &[
            "13:1: [[service]] needs `backends` (at least one)",
            "13:1: [[service]] needs a `port`",
        ],
    );
}

#[test]
fn service_duplicate() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21" }]

[[service]]
vip = "192.0.2.10"
port = 80
protocol = "tcp"
backends = [{ address = "192.0.2.22" }]
"#,
        ),
        &["20:8: service 192.0.2.10:80/tcp is defined twice (first on line 13)"],
    );
}

#[test]
fn service_protocol_bad() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
protocol = "sctp"
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["16:12: unknown variant `sctp`, expected `tcp` or `udp`"],
    );
}

#[test]
fn backends_empty() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = []
"#,
        ),
        &["16:12: backends must not be empty"],
    );
}

#[test]
fn backend_family() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "2001:db8::21" }]
"#,
        ),
        &["16:25: backend 2001:db8::21 is IPv6 but the service VIP 192.0.2.10 is IPv4"],
    );
}

#[test]
fn backend_duplicate() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21" }, { address = "192.0.2.21", port = 80 }]
"#,
        ),
        &["16:53: backend 192.0.2.21:80 is listed twice in this service (first on line 16)"],
    );
}

#[test]
fn backend_weight() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21", weight = 1001 }]
"#,
        ),
        &["16:48: backend weight must be between 0 and 1000, got 1001"],
    );
}

#[test]
fn dsr_port_change() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21", port = 8080 }]
"#,
        ),
        &[
            "16:46: backend port 8080 differs from the service port 80: direct server return cannot change ports (use mode = \"nat\")",
        ],
    );
}

#[test]
fn backend_unknown_key() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21", wieght = 2 }]
"#,
        ),
        &["16:39: unknown field `wieght`, expected one of `address`, `port`, `weight`, `name`"],
    );
}

#[test]
fn service_check_timeout_interval() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "tcp", interval = "1s", timeout = "1s" }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["16:52: timeout (1s) must be shorter than interval (1s)"],
    );
}

#[test]
fn service_check_tcp_with_path() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "tcp", path = "/health" }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["16:32: `path` does not apply to service checks of kind tcp"],
    );
}

#[test]
fn service_check_exec_without_command() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "exec" }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["16:9: an exec check needs `command` = [program, args...]"],
    );
}

#[test]
fn service_check_kind_process() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "process" }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &["16:18: unknown variant `process`, expected one of `tcp`, `http`, `https`, `exec`"],
    );
}

#[test]
fn service_check_rise_zero() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "http", rise = 0, expect_status = 700 }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &[
            "16:33: rise must be between 1 and 100, got 0",
            "16:52: expect_status must be between 100 and 599, got 700",
        ],
    );
}

#[test]
fn check_name_duplicate() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "docker"
kind = "file"
path = "/x"
"#,
        ),
        &["14:8: duplicate check name \"docker\" (first defined on line 5)"],
    );
}

#[test]
fn check_kind_missing() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
"#,
        ),
        &["13:1: [[check]] needs a `kind`: tcp, http, https, exec, process or file"],
    );
}

#[test]
fn check_tcp_incomplete() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "tcp"
address = "10.0.0.1"
"#,
        ),
        &["15:8: a tcp check needs `port`"],
    );
}

#[test]
fn check_http_url_bad() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "http"
url = "ftp://example.org/"
"#,
        ),
        &["16:7: url \"ftp://example.org/\": must start with http:// or https://"],
    );
}

#[test]
fn check_http_url_with_port() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "http"
url = "http://example.org/"
port = 80
"#,
        ),
        &["17:8: `port` cannot be combined with `url`"],
    );
}

#[test]
fn https_key_is_refused_with_the_kind_to_write() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "http", https = true }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "https"
address = "10.0.0.1"
https = false
"#,
        ),
        &[
            "16:34: `https` is not a check key: write kind = \"https\" for a check over TLS (with `sni`, `ca`, `cert` and `key`, `insecure` as needed)",
            "23:9: `https` is not a check key: write kind = \"https\" for a check over TLS (with `sni`, `ca`, `cert` and `key`, `insecure` as needed)",
        ],
    );
}

#[test]
fn tls_keys_apply_to_https_checks_only() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "tcp", sni = "a.example", insecure = true }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "http"
address = "10.0.0.1"
ca = "/etc/fo/ca.pem"
min_cert_validity = "30d"
"#,
        ),
        &[
            "16:31: `sni` does not apply to service checks of kind tcp",
            "16:55: `insecure` does not apply to service checks of kind tcp",
            "23:6: `ca` does not apply to checks of kind http",
            "24:21: `min_cert_validity` does not apply to checks of kind http",
        ],
    );
}

#[test]
fn https_url_scheme_matches_the_kind() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "https"
url = "http://example.org/health"

[[check]]
name = "y"
kind = "http"
url = "https://example.org/health"
"#,
        ),
        &[
            "16:7: url \"http://example.org/health\": an https check needs an https:// url",
            "21:7: url \"https://example.org/health\" is https: write kind = \"https\"",
        ],
    );
}

#[test]
fn https_check_needs_a_target() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "https"
ca = "/etc/fo/ca.pem"
"#,
        ),
        &["15:8: an https check needs `url`, or `address` (with optional `port`, `path`)"],
    );
}

#[test]
fn client_cert_and_key_come_together() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "https", cert = "/etc/fo/client.pem" }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "https"
address = "10.0.0.1"
key = "/etc/fo/client.key"
"#,
        ),
        &[
            "16:34: `cert` needs `key`, the client certificate's private key",
            "23:7: `key` needs `cert`, the client certificate",
        ],
    );
}

#[test]
fn tls_files_are_absolute_paths() {
    assert_errors(
        &with_https_check(
            r#"ca = "ca.pem"
cert = "./client.pem"
key = "client.key""#,
        ),
        &[
            "17:6: ca must be an absolute path, got \"ca.pem\"",
            "18:8: cert must be an absolute path, got \"./client.pem\"",
            "19:7: key must be an absolute path, got \"client.key\"",
        ],
    );
}

#[test]
fn insecure_with_a_ca_is_a_contradiction() {
    assert_errors(
        &with_https_check(
            r#"insecure = true
ca = "/etc/fo/ca.pem""#,
        ),
        &[
            "18:6: `ca` has no effect with insecure = true (no certificate is verified): remove one of them",
        ],
    );
    // insecure = false and a CA: fine.
    assert_errors(
        &with_https_check(
            r#"insecure = false
ca = "/etc/fo/ca.pem""#,
        ),
        &[],
    );
}

#[test]
fn sni_is_a_dns_name_or_an_address() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "https", sni = "api example.org" }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "https"
address = "10.0.0.1"
sni = "-bad-.example"

[[check]]
name = "y"
kind = "https"
address = "10.0.0.1"
sni = ""

[[check]]
name = "z"
kind = "https"
address = "10.0.0.1"
sni = "2001:db8::1"

[[check]]
name = "w"
kind = "https"
address = "10.0.0.1"
sni = "indexer-1.wazuh.example."
"#,
        ),
        &[
            "16:33: sni \"api example.org\" is not a DNS name (like \"api.example.org\") or an IP address",
            "23:7: sni \"-bad-.example\" is not a DNS name (like \"api.example.org\") or an IP address",
            "29:7: sni \"\" is not a DNS name (like \"api.example.org\") or an IP address",
        ],
    );
}

#[test]
fn min_cert_validity_is_a_positive_duration() {
    assert_errors(
        &with_https_check(
            r#"min_cert_validity = "0d"

[[check]]
name = "y"
kind = "https"
address = "10.0.0.1"
min_cert_validity = 30

[[check]]
name = "z"
kind = "https"
address = "10.0.0.1"
min_cert_validity = "30 days""#,
        ),
        &[
            "17:21: min_cert_validity must be more than 0s, like \"30d\" (leave it out to not check ahead of expiry)",
            "23:21: duration \"30\" has no unit: write e.g. \"30s\" or \"30ms\" (units: ns, us, ms, s, m, h, d)",
            "29:21: duration \"30 days\" is not a number followed by a unit, like \"1s\", \"1.5s\" or \"1m30s\"",
        ],
    );
}

#[test]
fn expect_status_is_a_code_or_a_list_of_codes() {
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "https", expect_status = [200, 204, 301] }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "http"
address = "10.0.0.1"
expect_status = 204
"#,
        ),
        &[],
    );
    assert_errors(
        &with_base(
            r#"[[service]]
vip = "192.0.2.10"
port = 443
check = { kind = "https", expect_status = [200, 700, 200] }
backends = [{ address = "192.0.2.21" }]

[[check]]
name = "x"
kind = "http"
address = "10.0.0.1"
expect_status = []

[[check]]
name = "y"
kind = "http"
address = "10.0.0.1"
expect_status = "200"

[[check]]
name = "z"
kind = "http"
address = "10.0.0.1"
expect_status = [200, "204"]
"#,
        ),
        &[
            "16:49: expect_status must be between 100 and 599, got 700",
            "16:54: expect_status lists 200 twice",
            "23:17: expect_status must list at least one status code, like [200, 204]",
            "29:17: invalid type: string \"200\", expected an HTTP status code or a list of them, like 200 or [200, 204]",
            "35:23: invalid type: string \"204\", expected an integer",
        ],
    );
}

#[test]
fn check_exec_empty_command() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "exec"
command = []
"#,
        ),
        &["16:11: command must not be empty"],
    );
}

#[test]
fn check_process_both() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "process"
process = "nfsd"
pidfile = "/run/nfsd.pid"
"#,
        ),
        &["17:11: a process check takes `process` or `pidfile`, not both"],
    );
}

#[test]
fn check_file_relative() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "file"
path = "ready"
"#,
        ),
        &["16:8: path must be an absolute path, got \"ready\""],
    );
}

#[test]
fn check_key_of_other_kind() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "file"
path = "/ready"
command = ["true"]
"#,
        ),
        &["17:11: `command` does not apply to checks of kind file"],
    );
}

#[test]
fn check_timeout_interval() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "file"
path = "/ready"
interval = "1s"
timeout = "2s"
"#,
        ),
        &["18:11: timeout (2s) must be shorter than interval (1s)"],
    );
}

#[test]
fn check_fall_zero() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "x"
kind = "file"
path = "/ready"
fall = 0
"#,
        ),
        &["17:8: fall must be between 1 and 100, got 0"],
    );
}

#[test]
fn syntax_error() {
    assert_errors(
        &with_base(
            r#"[[router]
name = "b"
"#,
        ),
        &["13:10: unclosed array table, expected `]`"],
    );
}

#[test]
fn two_syntax_errors() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b
vrid = = 3
"#,
        ),
        &[
            "14:10: invalid basic string, expected `\"`",
            "15:8: extra `=`, expected nothing",
            "15:10: unexpected key or value, expected newline, `#`",
        ],
    );
}

#[test]
fn witness_defaults_follow_the_advert_interval() {
    let cfg = Config::parse(&with_base(
        r#"[[router]]
name = "b"
vrid = 52
advert_interval = "100ms"
vips = ["192.0.2.11"]
witness = { address = "192.0.2.1" }
"#,
    ))
    .expect("valid");
    let w = cfg.routers[1].vrrp().unwrap().witness.clone().unwrap();
    assert_eq!(w.address, "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(w.interval, std::time::Duration::from_millis(50));
    assert_eq!(w.timeout, std::time::Duration::from_millis(200));
    assert_eq!(cfg.routers[0].vrrp().unwrap().witness, None);
}

#[test]
fn witness_needs_an_address() {
    assert_errors(
        &with_router_b(r#"witness = { interval = "100ms" }"#),
        &[
            "17:11: witness needs `address` (e.g. the gateway of the segment, which answers ICMP echo)",
        ],
    );
}

#[test]
fn witness_address_bad() {
    assert_errors(
        &with_router_b(r#"witness = { address = "192.0.2.11" }"#),
        &[
            "17:23: witness address 192.0.2.11 is one of this router's VIPs: pick an address another host answers for (e.g. the gateway)",
        ],
    );
    assert_errors(
        &with_router_b(r#"witness = { address = "gateway" }"#),
        &["17:23: witness address \"gateway\" is not an IPv4 or IPv6 address"],
    );
    assert_errors(
        &with_router_b(
            r#"peers = ["192.0.2.3"]
witness = { address = "192.0.2.3" }"#,
        ),
        &[
            "18:23: witness address 192.0.2.3 is this router's peer: the witness must be a third host (e.g. the gateway)",
        ],
    );
}

#[test]
fn witness_timeout_longer_than_the_master_down_interval() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
vrid = 52
advert_interval = "100ms"
vips = ["192.0.2.11"]
witness = { address = "192.0.2.1", timeout = "1s" }
"#,
        ),
        &[
            "18:46: witness timeout (1s) must not exceed 3 × advert_interval (300ms), the shortest Master_Down_Interval: a cut-off master would still serve when its peer takes over",
        ],
    );
}

#[test]
fn witness_timeout_shorter_than_two_probes() {
    assert_errors(
        &with_router_b(
            r#"witness = { address = "192.0.2.1", interval = "1s", timeout = "1500ms" }"#,
        ),
        &[
            "17:63: witness timeout (1500ms) must be at least twice the probe interval (1s): one lost probe must not count as unreachable",
        ],
    );
    assert_errors(
        &with_router_b(r#"witness = { address = "192.0.2.1", interval = "1ms" }"#),
        &["17:47: witness interval must be at least 10ms, got 1ms"],
    );
}

#[test]
fn witness_only_for_vrrp() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "static"
vips = ["192.0.2.11"]
witness = { address = "192.0.2.1" }
"#,
        ),
        &["17:11: `witness` does not apply to ownership = \"static\" (only to \"vrrp\")"],
    );
}

#[test]
fn nat_on_a_bgp_vip() {
    assert_errors(
        &with_base(
            r#"[[router]]
name = "b"
ownership = "bgp"
vips = ["192.0.2.11"]
bgp = { daemon = "bird", control = "/run/bird/bird.ctl", bfd = true }

[[service]]
vip = "192.0.2.11"
port = 1514
mode = "nat"
backends = [{ address = "192.0.2.21" }]

[[service]]
vip = "192.0.2.11"
port = 1515
mode = "dsr"
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &[
            "22:8: mode = \"nat\" is not supported on VIP 192.0.2.11: router \"b\" announces it over BGP from every node, and NAT flow state is not shared between nodes (use mode = \"dsr\")",
        ],
    );
}

// ---- NAT and connection-state sync ---------------------------------------------

#[test]
fn nat_needs_snat_on_the_router() {
    assert_errors(
        &with_base(
            r#"
[[service]]
vip = "192.0.2.10"
port = 1514
mode = "nat"
backends = [{ address = "10.1.0.21", port = 11514 }]
"#,
        ),
        &[
            "17:8: mode = \"nat\" needs SNAT addresses: add `snat = [\"ADDRESS\"]` to router \"web\" (an IPv4 address of its own that moves with the router)",
        ],
    );
}

#[test]
fn nat_with_snat_may_translate_ports() {
    let text = r#"[node]
interface = "eth0"

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]
snat = ["192.0.2.11"]

[[service]]
vip = "192.0.2.10"
port = 1514
mode = "nat"
backends = [{ address = "10.1.0.21", port = 11514 }]
"#;
    assert_errors(text, &[]);
    let cfg = Config::parse(text).expect("valid");
    assert_eq!(
        cfg.routers[0].snat,
        ["192.0.2.11".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(cfg.services[0].backends[0].port, 11514);
}

#[test]
fn nat66_on_an_ipv6_vip_with_ipv6_snat_addresses_is_accepted() {
    let cfg = Config::parse(
        r#"[node]
interface = "eth0"

[[router]]
name = "v6"
vrid = 51
vips = ["2001:db8::10"]
snat = ["2001:db8::11", "192.0.2.11"]

[[service]]
vip = "2001:db8::10"
port = 1514
mode = "nat"
backends = [{ address = "fd00:1::21", port = 11514 }]
"#,
    )
    .expect("NAT66 config");
    assert_eq!(cfg.services[0].mode, fo_config::ForwardMode::Nat);
    assert_eq!(cfg.routers[0].snat.len(), 2);
}

#[test]
fn nat_needs_a_snat_address_of_the_vips_family() {
    let config = |vip: &str, snat: &str, backend: &str| {
        format!(
            r#"[node]
interface = "eth0"

[[router]]
name = "r"
vrid = 51
vips = ["{vip}"]
snat = ["{snat}"]

[[service]]
vip = "{vip}"
port = 1514
mode = "nat"
backends = [{{ address = "{backend}" }}]
"#
        )
    };
    assert_errors(
        &config("2001:db8::10", "192.0.2.11", "fd00:1::21"),
        &[
            "13:8: mode = \"nat\" on the IPv6 VIP 2001:db8::10 needs an IPv6 SNAT address: router \"r\" has only IPv4 ones (add one to its `snat`)",
        ],
    );
    assert_errors(
        &config("192.0.2.10", "2001:db8::11", "10.1.0.21"),
        &[
            "13:8: mode = \"nat\" on the IPv4 VIP 192.0.2.10 needs an IPv4 SNAT address: router \"r\" has only IPv6 ones (add one to its `snat`)",
        ],
    );
}

#[test]
fn snat_addresses_are_not_a_vip() {
    assert_errors(
        &with_base(
            r#"
[[router]]
name = "other"
vrid = 52
vips = ["192.0.2.20"]
snat = ["192.0.2.10", "2001:db8::1", "192.0.2.21"]
"#,
        ),
        &[
            "18:9: snat address 192.0.2.10 is already used by router \"web\" (line 12): a SNAT address must be an address of its own",
        ],
    );
}

#[test]
fn sync_needs_a_key_file() {
    assert_errors(
        r#"[node]
interface = "eth0"
sync = { peers = ["192.0.2.3"] }
"#,
        &[
            "3:8: sync needs `key_file` (a shared secret of at least 16 bytes, mode 0600): flows are authenticated with it",
        ],
    );
}

#[test]
fn sync_key_file_must_be_private_and_long_enough() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("fo-sync-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let loose = dir.join("loose.key");
    std::fs::write(&loose, "0123456789abcdef0123").expect("write");
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let short = dir.join("short.key");
    std::fs::write(&short, "short").expect("write");
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let good = dir.join("good.key");
    std::fs::write(&good, "0123456789abcdef0123").expect("write");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = |p: &std::path::Path| {
        format!(
            "[node]\ninterface = \"eth0\"\nsync = {{ peers = [\"192.0.2.3\"], key_file = \"{}\" }}\n",
            p.display()
        )
    };
    let col = "3:44";
    assert_errors(
        &cfg(&loose),
        &[&format!(
            "{col}: sync key_file {} has mode 0644: the key must be readable by its owner only (chmod 600)",
            loose.display()
        )],
    );
    assert_errors(
        &cfg(&short),
        &[&format!(
            "{col}: sync key_file {} holds 5 bytes: the key needs at least 16",
            short.display()
        )],
    );
    let ok = Config::parse(&cfg(&good)).expect("a private key of 20 bytes is fine");
    let sync = ok.node.sync.expect("sync");
    assert_eq!(sync.port, 7480);
    assert_eq!(sync.key_file, good);
    assert_eq!(sync.max_clock_skew, std::time::Duration::from_secs(30));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn sync_max_clock_skew_is_bounded() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("fo-sync-skew-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("sync.key");
    std::fs::write(&key, "0123456789abcdef0123").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg = |skew: &str| {
        format!(
            "[node]\ninterface = \"eth0\"\nsync = {{ peers = [\"192.0.2.3\"], key_file = \"{}\",\n  max_clock_skew = \"{skew}\" }}\n",
            key.display()
        )
    };
    let ok = Config::parse(&cfg("5s")).expect("5 s is fine");
    assert_eq!(
        ok.node.sync.expect("sync").max_clock_skew,
        std::time::Duration::from_secs(5)
    );
    for bad in ["500ms", "2h"] {
        assert_errors(
            &cfg(bad),
            &[
                "4:20: sync max_clock_skew must be between 1s and 1h: a datagram further off our clock is refused",
            ],
        );
    }
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn nat_timeouts_override_the_defaults_they_name() {
    let cfg = Config::parse(
        r#"[node]
interface = "eth0"
nat_timeouts = { established = "2h", udp = "5m" }
"#,
    )
    .expect("valid");
    let t = cfg.node.nat_timeouts;
    let d = fo_config::NatTimeouts::default();
    assert_eq!(t.established, std::time::Duration::from_secs(7200));
    assert_eq!(t.udp, std::time::Duration::from_secs(300));
    assert_eq!((t.syn, t.fin, t.closed), (d.syn, d.fin, d.closed));
}

#[test]
fn nat_timeouts_below_a_second_or_unknown_are_refused() {
    assert_errors(
        r#"[node]
interface = "eth0"
nat_timeouts = { established = "500ms", closed = "0s" }
"#,
        &[
            "3:32: nat_timeouts established must be at least 1s: aging runs every second, and a live connection's last-seen time is refreshed only every 250 ms",
            "3:50: nat_timeouts closed must be at least 1s: aging runs every second, and a live connection's last-seen time is refreshed only every 250 ms",
        ],
    );
    assert_errors(
        r#"[node]
interface = "eth0"
nat_timeouts = { idle = "1h" }
"#,
        &[
            "3:18: unknown field `idle`, expected one of `syn`, `established`, `fin`, `closed`, `udp`",
        ],
    );
    assert_errors(
        r#"[node]
interface = "eth0"
nat_timeouts = { established = "9000h" }
"#,
        &["3:32: nat_timeouts established must be at most a year (8760h)"],
    );
}

#[test]
fn hooks_take_argv_arrays_a_stop_hook_and_a_user() {
    let cfg = fo_config::Config::parse(&with_router_b(r#"hooks = { master = ["/etc/keepalived/notify.sh", "MASTER", "VI 1"], stop = "/etc/fo/stop.sh", user = "nobody", group = "nogroup" }"#))
    .expect("valid");
    let h = &cfg.router("b").expect("router b").hooks;
    assert_eq!(
        h.master,
        Some(fo_config::HookCommand {
            program: "/etc/keepalived/notify.sh".into(),
            args: vec!["MASTER".into(), "VI 1".into()],
            at: Default::default(),
        })
    );
    assert_eq!(
        h.stop,
        Some(fo_config::HookCommand::path("/etc/fo/stop.sh"))
    );
    assert_eq!(
        h.run_as,
        Some(fo_config::RunAs {
            user: "nobody".into(),
            group: Some("nogroup".into()),
        })
    );
}

/// The agent points its refusal of an unsafe program at the program in the file:
/// hooks and exec commands carry where they are written (and two configs that differ
/// only there are equal).
#[test]
fn hooks_and_exec_commands_carry_their_position() {
    let extra = r#"[[router]]
name = "b"
vrid = 52
vips = ["192.0.2.11"]
hooks = { master = ["/etc/fo/m.sh", "x"], stop = "/etc/fo/stop.sh" }

[[check]]
name = "app"
kind = "exec"
command = [ "app-ok", "-q" ]
"#;
    let text = with_base(extra);
    let cfg = fo_config::Config::parse(&text).expect("valid");
    let line_of = |needle: &str| {
        let (i, l) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .last()
            .expect("line");
        (i + 1, l)
    };
    let (hooks_line, l) = line_of("hooks = ");
    let h = &cfg.router("b").expect("router b").hooks;
    let col = |l: &str, s: &str| l.find(s).expect("column") + 1;
    assert_eq!(
        h.master.as_ref().map(|m| m.at.known()),
        Some(Some((hooks_line, col(l, "[\"/etc/fo/m.sh\""))))
    );
    assert_eq!(
        h.stop.as_ref().map(|m| m.at.known()),
        Some(Some((hooks_line, col(l, "\"/etc/fo/stop.sh\""))))
    );
    let (cmd_line, l) = line_of("command = ");
    match &cfg.check("app").expect("check app").kind {
        fo_config::CheckKind::Exec { at, .. } => {
            assert_eq!(at.known(), Some((cmd_line, col(l, "\"app-ok\""))));
        }
        other => panic!("exec expected, saw {other:?}"),
    }
    let moved = fo_config::Config::parse(&with_base(&format!("\n\n{extra}"))).expect("valid");
    assert_eq!(moved, cfg, "moving a line changes nothing");
}

#[test]
fn exec_programs_are_absolute_or_bare_names() {
    assert_errors(
        &with_base(
            r#"[[check]]
name = "rel"
kind = "exec"
command = ["bin/app-ok"]

[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "exec", command = ["./probe", "-q"] }
backends = [{ address = "192.0.2.21" }]
"#,
        ),
        &[
            "16:12: command: the program must be an absolute path or a bare name looked up in PATH, got \"bin/app-ok\"",
            "21:37: command: the program must be an absolute path or a bare name looked up in PATH, got \"./probe\"",
        ],
    );
}

#[test]
fn hook_arrays_and_run_as_are_checked() {
    assert_errors(
        &with_router_b(
            r#"hooks = { master = [], backup = ["notify.sh", "BACKUP"], fault = 3, group = "nogroup" }"#,
        ),
        &[
            "17:20: hooks.master must not be an empty array",
            "17:33: hooks.backup must be an absolute path, got \"notify.sh\"",
            "17:66: invalid type: integer `3`, expected a path in quotes or an array [program, args...]",
            "17:77: `group` needs `user` (the user to run as)",
        ],
    );
}

#[test]
fn exec_checks_take_a_user_other_kinds_do_not() {
    let cfg = fo_config::Config::parse(
        r#"[node]
interface = "eth0"

[[check]]
name = "app"
kind = "exec"
command = ["/usr/local/bin/app-ok"]
user = "nobody"

[[check]]
name = "port"
kind = "tcp"
address = "127.0.0.1"
port = 80
user = "nobody"
"#,
    )
    .expect_err("user on a tcp check");
    assert_eq!(
        cfg.to_string(),
        "15:8: `user` does not apply to checks of kind tcp"
    );
    assert_errors(
        r#"[node]
interface = "eth0"

[[check]]
name = "app"
kind = "exec"
command = ["/usr/local/bin/app-ok"]
user = "bad user"

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]

[[service]]
vip = "192.0.2.10"
port = 80
check = { kind = "tcp", user = "nobody" }
backends = [{ address = "192.0.2.21" }]
"#,
        &[
            "8:8: user \"bad user\" is not a valid user name",
            "18:32: `user` does not apply to service checks of kind tcp",
        ],
    );
}

#[test]
fn track_weight_zero_and_both_signs_are_accepted() {
    let cfg = fo_config::Config::parse(&with_router_b(
        r#"track = [{ check = "docker", weight = 0 }]"#,
    ))
    .expect("valid");
    let t = &cfg.router("b").and_then(|r| r.vrrp()).expect("vrrp").track;
    assert_eq!(t[0].effect(), fo_config::TrackEffect::Fault);
    let up = fo_config::Track {
        check: "x".into(),
        weight: 20,
    };
    assert_eq!(up.effect(), fo_config::TrackEffect::AddWhileUp(20));
    let down = fo_config::Track {
        check: "x".into(),
        weight: -20,
    };
    assert_eq!(down.effect(), fo_config::TrackEffect::AddWhileDown(-20));
}

/// The data plane's `VIPS` map holds `VIPS_CAPACITY` addresses (VIPs and SNAT
/// addresses of every router): the first one past it is refused where it is written.
#[test]
fn more_addresses_than_the_vips_map_holds() {
    let cap = fo_common::VIPS_CAPACITY as usize;
    let addr = |i: usize| format!("\"10.{}.{}.{}\"", i >> 16 & 0xff, i >> 8 & 0xff, i & 0xff);
    // BASE's router has one VIP: a second router with `cap` more overflows at its last.
    let vips: Vec<String> = (1..=cap).map(addr).collect();
    let line = format!("vips = [{}]", vips.join(", "));
    let col = line
        .rfind('"')
        .map(|end| line[..end].rfind('"').unwrap_or(0) + 1);
    let text = with_base(&format!(
        "\n[[router]]\nname = \"many\"\nvrid = 52\n{line}\n"
    ));
    assert_errors(
        &text,
        &[&format!(
            "17:{}: too many addresses: the data plane holds {cap} VIP and SNAT addresses in all routers, and this is address {}",
            col.unwrap_or(0),
            cap + 1
        )],
    );
    // Exactly full is fine; a SNAT address past it is refused.
    let vips: Vec<String> = (1..cap).map(addr).collect();
    let text = with_base(&format!(
        "\n[[router]]\nname = \"many\"\nvrid = 52\nvips = [{}]\n",
        vips.join(", ")
    ));
    assert_errors(&text, &[]);
    let text = with_base(&format!(
        "\n[[router]]\nname = \"many\"\nvrid = 52\nvips = [{}]\nsnat = [\"192.0.2.200\"]\n",
        vips.join(", ")
    ));
    assert_errors(
        &text,
        &[&format!(
            "18:9: too many addresses: the data plane holds {cap} VIP and SNAT addresses in all routers, and this is address {}",
            cap + 1
        )],
    );
}

/// `max_backends` bounds the backends of all services together, at the first one past it.
#[test]
fn more_backends_than_max_backends() {
    assert_errors(
        r#"[node]
interface = "eth0"
max_backends = 2

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]

[[service]]
vip = "192.0.2.10"
port = 80
backends = [{ address = "192.0.2.21" }, { address = "192.0.2.22" }]

[[service]]
vip = "192.0.2.10"
port = 443
backends = [{ address = "192.0.2.23" }]
"#,
        &["18:13: too many backends in all services: max_backends = 2 (raise it in [node])"],
    );
}

#[test]
fn tunnel_service_defaults_and_keys() {
    let text = with_base(
        r#"
[[service]]
vip = "192.0.2.10"
port = 80
mode = "tunnel"
backends = [{ address = "10.2.0.21" }]

[[service]]
vip = "192.0.2.10"
port = 81
mode = "tunnel"
encap = "gue"
gue_port = 5555
tunnel_source = "10.9.0.0/24"
mtu = 1400
backends = [{ address = "10.2.0.21" }]
"#,
    );
    let c = Config::parse(&text).expect("valid");
    let t = c.services[0].tunnel.expect("tunnel");
    assert_eq!(c.services[0].mode, fo_config::ForwardMode::Tunnel);
    assert_eq!(
        (t.encap, t.source, t.gue_port, t.mtu),
        (fo_config::Encap::Ipip, None, 6080, None)
    );
    let t = c.services[1].tunnel.expect("tunnel");
    let p = t.source.expect("source");
    assert_eq!(
        (t.encap, p.to_string(), p.host_bits(), t.gue_port, t.mtu),
        (
            fo_config::Encap::Gue,
            "10.9.0.0/24".to_string(),
            8,
            5555,
            Some(1400)
        )
    );
}

#[test]
fn tunnel_keys_outside_tunnel_mode() {
    assert_errors(
        &with_base(
            r#"
[[service]]
vip = "192.0.2.10"
port = 80
encap = "gue"
mtu = 1400
backends = [{ address = "10.2.0.21" }]
"#,
        ),
        &[
            "17:9: `encap` does not apply to mode = \"dsr\" (only to mode = \"tunnel\")",
            "18:7: `mtu` does not apply to mode = \"dsr\" (only to mode = \"tunnel\")",
        ],
    );
}

#[test]
fn tunnel_key_values() {
    assert_errors(
        &with_base(
            r#"
[[service]]
vip = "192.0.2.10"
port = 80
mode = "tunnel"
gue_port = 5555
tunnel_source = "10.9.0.1/24"
mtu = 500
backends = [{ address = "10.2.0.21", port = 8080 }]

[[service]]
vip = "192.0.2.10"
port = 81
mode = "tunnel"
encap = "gue"
gue_port = 0
tunnel_source = "2001:db8::/120"
backends = [{ address = "10.2.0.21" }]

[[service]]
vip = "192.0.2.10"
port = 82
mode = "tunnel"
tunnel_source = "10.0.0.0/8"
backends = [{ address = "10.2.0.21" }]

[[service]]
vip = "192.0.2.10"
port = 83
mode = "tunnel"
encap = "vxlan"
backends = [{ address = "10.2.0.21" }]
"#,
        ),
        &[
            "18:12: `gue_port` does not apply to encap = \"ipip\"",
            "19:17: tunnel_source \"10.9.0.1/24\" has host bits set: write the prefix's first address",
            "20:7: mtu must be between 576 and 65535, got 500",
            "21:45: backend port 8080 differs from the service port 80: a tunnel (direct server return) cannot change ports (use mode = \"nat\")",
            "28:12: gue_port must be between 1 and 65535, got 0",
            "29:17: tunnel_source \"2001:db8::/120\" is IPv6 but the service VIP 192.0.2.10 is IPv4",
            "36:17: tunnel_source \"10.0.0.0/8\" varies 24 host bits; at most 16 (a /16 or longer)",
            "43:9: unknown variant `vxlan`, expected `ipip` or `gue`",
        ],
    );
}

#[test]
fn tunnel_on_an_ipv6_vip() {
    let text = r#"[node]
interface = "eth0"

[[router]]
name = "v6"
vrid = 60
vips = ["2001:db8::10"]

[[service]]
vip = "2001:db8::10"
port = 80
mode = "tunnel"
tunnel_source = "2001:db8:9::/112"
mtu = 1300
backends = [{ address = "2001:db8:2::21" }]
"#;
    assert_errors(
        text,
        &["14:7: mtu must be between 1332 and 65535, got 1300"],
    );
    let ok = text.replace("mtu = 1300", "mtu = 1500");
    let c = Config::parse(&ok).expect("valid");
    assert_eq!(
        c.services[0]
            .tunnel
            .expect("tunnel")
            .source
            .expect("prefix")
            .host_bits(),
        16
    );
}
