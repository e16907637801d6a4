//! Tables of fo-agent configs that the lab's scenarios (demo, chaos, benches) share.

use std::fmt::Display;
use std::net::Ipv4Addr;

/// The lab's `xdp_mode`: its interfaces are veths in namespaces, so generic (SKB) mode.
pub const XDP_MODE: &str = "generic";

/// A preempting `[[router]]` table owning `vip` by VRRP with one unicast `peer`,
/// advertising every `advert_ms`. A caller's own keys (`snat`, `gates`) may follow it.
pub fn vrrp_router(
    name: &str,
    vrid: u8,
    version: u8,
    priority: impl Display,
    advert_ms: impl Display,
    vip: Ipv4Addr,
    peer: Ipv4Addr,
) -> String {
    format!(
        r#"[[router]]
name = "{name}"
ownership = "vrrp"
vrid = {vrid}
priority = {priority}
version = {version}
advert_interval = "{advert_ms}ms"
preempt = true
vips = ["{vip}"]
peers = ["{peer}"]
"#
    )
}

/// A `[[router]]` table that always owns `vip` (`ownership = "static"`). A caller's own
/// keys (`snat`) may follow it.
pub fn static_router(name: &str, vip: Ipv4Addr) -> String {
    format!("[[router]]\nname = \"{name}\"\nownership = \"static\"\nvips = [\"{vip}\"]\n")
}

/// A TCP `[[service]]` table on `vip:port`, balancing by `hash` to `backends` in `mode`
/// (`dsr`, `nat`); with `backend_port`, every backend listens there instead of on `port`.
pub fn tcp_service(
    vip: Ipv4Addr,
    port: u16,
    mode: &str,
    hash: &str,
    backends: &[Ipv4Addr],
    backend_port: Option<u16>,
) -> String {
    let backends = backends
        .iter()
        .map(|a| match backend_port {
            Some(p) => format!(r#"{{ address = "{a}", port = {p} }}"#),
            None => format!(r#"{{ address = "{a}" }}"#),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[[service]]
vip = "{vip}"
port = {port}
protocol = "tcp"
mode = "{mode}"
hash = "{hash}"
backends = [{backends}]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Value;

    /// The one table of `kind` (`router`, `service`) in `text`.
    fn table(text: &str, kind: &str) -> toml::Table {
        let doc: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
        match &doc[kind] {
            Value::Array(a) if a.len() == 1 => a[0].as_table().expect("a table").clone(),
            other => panic!("one [[{kind}]] expected, got {other:?} in\n{text}"),
        }
    }

    fn check(text: &str, kind: &str, want: &[(&str, Value)]) {
        let got = table(text, kind);
        assert_eq!(
            got.len(),
            want.len(),
            "{kind}: other keys than {want:?} in\n{text}"
        );
        for (key, value) in want {
            assert_eq!(got.get(*key), Some(value), "{kind}.{key} in\n{text}");
        }
    }

    fn backends(port: Option<i64>) -> Value {
        let each = |a: &str| {
            let mut t = toml::Table::new();
            t.insert("address".into(), a.into());
            if let Some(p) = port {
                t.insert("port".into(), p.into());
            }
            Value::Table(t)
        };
        Value::Array(vec![each("192.0.2.21"), each("192.0.2.22")])
    }

    /// The tables hold the keys the scenarios wrote out by hand before, and no other.
    #[test]
    fn the_tables_hold_the_scenarios_keys() {
        let vip = Ipv4Addr::new(192, 0, 2, 100);
        let peer = Ipv4Addr::new(192, 0, 2, 3);
        let hosts = [Ipv4Addr::new(192, 0, 2, 21), Ipv4Addr::new(192, 0, 2, 22)];
        let text = vrrp_router("demo", 51, 2, 150, 1000, vip, peer);
        let list = |a: &str| Value::Array(vec![a.into()]);
        check(
            &text,
            "router",
            &[
                ("name", "demo".into()),
                ("ownership", "vrrp".into()),
                ("vrid", 51.into()),
                ("priority", 150.into()),
                ("version", 2.into()),
                ("advert_interval", "1000ms".into()),
                ("preempt", true.into()),
                ("vips", list("192.0.2.100")),
                ("peers", list("192.0.2.3")),
            ],
        );
        check(
            &static_router("pass", vip),
            "router",
            &[
                ("name", "pass".into()),
                ("ownership", "static".into()),
                ("vips", list("192.0.2.100")),
            ],
        );
        for (port, mode, hash, backend_port) in [
            (1514, "dsr", "source-ip", None),
            (1515, "nat", "5-tuple", Some(1514)),
        ] {
            let text = tcp_service(vip, port, mode, hash, &hosts, backend_port);
            check(
                &text,
                "service",
                &[
                    ("vip", "192.0.2.100".into()),
                    ("port", i64::from(port).into()),
                    ("protocol", "tcp".into()),
                    ("mode", mode.into()),
                    ("hash", hash.into()),
                    ("backends", backends(backend_port.map(i64::from))),
                ],
            );
        }
    }
}
