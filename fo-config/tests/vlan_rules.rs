//! The rules of `vlan = N` on a `[[router]]`: the exact `LINE:COL: message` of every
//! problem, and the model a valid one gives.

use fo_config::Config;

#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    let seen: Vec<String> = match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(seen, expected, "config:\n{text}");
}

/// A router `web` with `lines` after its VIPs (the first of them on line 7), and a DSR
/// service on its VIP.
fn router_with(lines: &str) -> String {
    format!(
        "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nvips = [\"192.0.2.10\"]\n{lines}\n\n\
         [[service]]\nvip = \"192.0.2.10\"\nport = 80\nbackends = [{{ address = \"192.0.2.21\" }}]\n"
    )
}

#[test]
fn a_router_on_a_vlan() {
    let text = router_with("ownership = \"static\"\nvlan = 100");
    assert_errors(&text, &[]);
    let cfg = Config::parse(&text).expect("valid");
    assert_eq!(cfg.routers[0].vlan, Some(100));
    let untagged = Config::parse(&router_with("ownership = \"static\"")).expect("valid");
    assert_eq!(untagged.routers[0].vlan, None);
}

#[test]
fn the_vlan_is_1_to_4094() {
    for (id, col) in [("0", 8), ("4095", 8), ("-1", 8)] {
        assert_errors(
            &router_with(&format!("ownership = \"static\"\nvlan = {id}")),
            &[&format!(
                "8:{col}: vlan must be between 1 and 4094, got {id}"
            )],
        );
    }
    assert_errors(
        &router_with("ownership = \"static\"\nvlan = \"100\""),
        &["8:8: invalid type: string \"100\", expected an integer"],
    );
}

#[test]
fn no_snat_on_a_vlan_router() {
    assert_errors(
        &router_with("ownership = \"static\"\nvlan = 100\nsnat = [\"192.0.2.20\"]"),
        &[
            "9:8: snat on a router with vlan = 100: NAT is not supported on a VLAN (the data plane's NAT sends untagged frames only); use mode = \"dsr\" services",
        ],
    );
}

#[test]
fn no_nat_service_on_a_vlan_vip() {
    let text = "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nvips = [\"192.0.2.10\"]\n\
                ownership = \"static\"\nvlan = 100\n\n[[service]]\nvip = \"192.0.2.10\"\nport = 80\n\
                mode = \"nat\"\nbackends = [{ address = \"10.1.0.21\" }]\n";
    assert_errors(
        text,
        &[
            "13:8: mode = \"nat\" is not supported on VIP 192.0.2.10: router \"web\" is on vlan 100, and the data plane's NAT sends untagged frames only (use mode = \"dsr\")",
        ],
    );
}

#[test]
fn no_tunnel_service_on_a_vlan_vip() {
    let text = "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"web\"\nvips = [\"192.0.2.10\"]\n\
                ownership = \"static\"\nvlan = 100\n\n[[service]]\nvip = \"192.0.2.10\"\nport = 80\n\
                mode = \"tunnel\"\nbackends = [{ address = \"10.1.0.21\" }]\n";
    assert_errors(
        text,
        &[
            "13:8: mode = \"tunnel\" is not supported on VIP 192.0.2.10: router \"web\" is on vlan 100, and the data plane's tunnel sends untagged frames only (use mode = \"dsr\")",
        ],
    );
}
