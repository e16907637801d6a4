//! The BIRD configs shipped in deploy/examples parse with the real BIRD 2 (`bird -p`),
//! and the node's BIRD config holds the protocol and routes that fo drives for the
//! shipped fo config.

use std::process::Command;

use fo_agent::bgp::{birdc::protocol_name, expected_routes};

fn examples() -> std::path::PathBuf {
    fo_tests::workspace_root().join("deploy/examples")
}

#[test]
fn shipped_bird_configs_parse() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).expect("deploy/examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "conf") {
            let out = Command::new("bird")
                .arg("-p")
                .arg("-c")
                .arg(&path)
                .output()
                .expect("run bird (apt-get install bird2; cargo xtask setup does)");
            assert!(
                out.status.success(),
                "{} does not parse: {}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected the node's and the router's BIRD configs, found {seen}"
    );
}

#[test]
fn the_node_bird_config_matches_the_fo_config() {
    let cfg = fo_config::Config::load(examples().join("bgp-node.toml")).expect("bgp-node.toml");
    let bird = std::fs::read_to_string(examples().join("bird-bgp-node.conf")).expect("bird conf");
    let routers: Vec<_> = cfg.routers.iter().filter(|r| r.bgp().is_some()).collect();
    assert!(!routers.is_empty(), "bgp-node.toml has no bgp router");
    for r in routers {
        let proto = protocol_name(&r.name);
        let block = bird
            .split("protocol static ")
            .find(|b| b.starts_with(&format!("{proto} ")))
            .unwrap_or_else(|| panic!("bird-bgp-node.conf lacks `protocol static {proto}`"));
        let block = &block[..block.find('}').expect("closing brace")];
        assert!(
            block.contains("disabled;"),
            "{proto} must start disabled: {block}"
        );
        for route in expected_routes(&r.vips) {
            assert!(
                block.contains(&format!("route {route} blackhole;")),
                "{proto} lacks the route {route}: {block}"
            );
        }
        assert!(
            bird.contains(&format!("export where proto = \"{proto}\"")),
            "no BGP session exports {proto}"
        );
    }
}
