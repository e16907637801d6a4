//! A reload applies whole or changes nothing, in the running config and in the maps;
//! and what cannot fit the maps is refused by `fo-agent check`, at start and at
//! reload, with its line and column. On a NAT node (A alone, master) with
//! `max_backends = 3`: its three backends fill the backend slots.

use std::collections::BTreeSet;
use std::net::IpAddr;

use fo_tests::netns::Netns;
use fo_tests::pair::{NAT_BACKEND_PORT, Pair, PairOptions};
use fo_tests::pins::{ServiceMaps, service_maps};

/// The smallest Maglev table the config takes: the tables are read whole.
const MAGLEV: u32 = 251;

fn lab() -> Pair {
    let mut lab = Pair::new(&PairOptions {
        nat: true,
        node_extra: format!("max_backends = 3\nmaglev_table_size = {MAGLEV}"),
        ..Default::default()
    });
    lab.a.start();
    lab.assert_a_master();
    lab
}

fn maps(lab: &Pair) -> ServiceMaps {
    service_maps(&lab.a.pin_dir, MAGLEV)
}

/// The backends the running config has, by name, as status shows them.
fn configured_backends(st: &serde_json::Value) -> Vec<String> {
    st["services"][0]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str().map(String::from))
        .collect()
}

fn reloads(st: &serde_json::Value) -> (u64, u64) {
    let r = &st["node"]["reloads"];
    (
        r["succeeded"].as_u64().unwrap_or(0),
        r["failed"].as_u64().unwrap_or(0),
    )
}

/// Swapping one backend for another with every backend slot in use is a valid config
/// (three backends, `max_backends = 3`): the reload applies it whole. Before, the new
/// backend needed a fourth slot before the removed one's was freed: the reload failed
/// half-way (the new config and checks in place, the maps not) and was reported
/// "refused".
#[test]
fn a_backend_swapped_at_max_backends_is_applied_whole() {
    fo_tests::require_root();
    let lab = lab();
    let before = maps(&lab);
    assert_eq!(before.backends.len(), 3, "three slots in use: {before:?}");
    let counts = reloads(&lab.a.status());
    let text = std::fs::read_to_string(&lab.a.config).expect("config");
    std::fs::write(&lab.a.config, text.replace("10.1.0.23", "10.1.0.24")).expect("write");
    let (ok, out) = lab.a.ctl(&["reload"]);
    let st = lab.a.status();
    let after = maps(&lab);
    println!(
        "reload: {ok} {}; config backends {:?}; slots {:?}",
        out.trim(),
        configured_backends(&st),
        after.backends
    );
    assert!(ok, "the swap must apply: {out}\n{}", lab.a.log());
    let want: BTreeSet<(IpAddr, u16)> = [21, 22, 24]
        .iter()
        .map(|i| (IpAddr::from([10, 1, 0, *i]), NAT_BACKEND_PORT))
        .collect();
    let have: BTreeSet<(IpAddr, u16)> = after.backends.values().map(|&(a, p, _)| (a, p)).collect();
    assert_eq!(
        have, want,
        "the active backend slots must be exactly the new config's"
    );
    assert_eq!(after.backends.len(), 3);
    let ring = after.maglev.values().next().expect("the service's table");
    assert!(
        ring.iter()
            .all(|&e| e != 0 && after.backends.contains_key(&(e - 1))),
        "every Maglev entry must name an active slot: {ring:?}"
    );
    let names = configured_backends(&st);
    assert!(
        names.iter().any(|n| n.contains("10.1.0.24"))
            && !names.iter().any(|n| n.contains("10.1.0.23")),
        "the running config must be the new one: {names:?}"
    );
    assert_eq!(
        reloads(&st),
        (counts.0 + 1, counts.1),
        "counted as a success"
    );
}

/// More VIP and SNAT addresses than the data plane's `VIPS` map holds: `check` refuses
/// the config with the line and column of the first address past it; `run` refuses to
/// start before touching a map; a reload to it is refused and counted as refused, and
/// the running config and the maps stay as they were. Before, `check` accepted it and
/// `run` wrote 1,024 entries, then failed on the map.
#[test]
fn more_addresses_than_the_vips_map_holds_are_refused_everywhere() {
    fo_tests::require_root();
    let lab = lab();
    let good = std::fs::read_to_string(&lab.a.config).expect("config");
    let extra: Vec<String> = (0..fo_common::VIPS_CAPACITY)
        .map(|i| format!("\"10.100.{}.{}\"", i >> 8, i & 0xff))
        .collect();
    let vips_line = "vips = [\"192.0.2.100\"]";
    let line = good
        .lines()
        .position(|l| l == vips_line)
        .expect("the vips line")
        + 1;
    let big = good.replace(
        vips_line,
        &format!("vips = [\"192.0.2.100\", {}]", extra.join(", ")),
    );
    let where_ = format!(":{line}:");

    // check
    let path = lab.dir.join("big.toml");
    std::fs::write(&path, &big).expect("write");
    let out = std::process::Command::new(fo_tests::agent_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("fo-agent check");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("too many addresses") && text.contains(&where_),
        "check must refuse the address past the VIPS map's {} with its line {line}: {text}",
        fo_common::VIPS_CAPACITY
    );

    // run, on a node of its own: refused before any pin is made.
    let ns = Netns::new("big");
    lab.segment.plug(&ns, "eth0", "192.0.2.9/24");
    let pins = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/fo-big-{}",
        fo_tests::netns::unique_tag()
    ));
    let sock = lab.dir.join("big.sock");
    let own = big
        .replace(
            &lab.a.pin_dir.display().to_string(),
            &pins.display().to_string(),
        )
        .replace(
            &lab.a.socket.display().to_string(),
            &sock.display().to_string(),
        );
    std::fs::write(&path, &own).expect("write");
    let out = ns
        .command(fo_tests::agent_bin().to_str().expect("utf-8"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("fo-agent run");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let pinned = pins.exists();
    let _ = fo_agent::dataplane::remove_all_pins(&pins);
    assert!(
        !out.status.success() && text.contains("too many addresses") && text.contains(&where_),
        "run must refuse the config with its line {line}: {text}"
    );
    assert!(!pinned, "a refused start must not touch the data plane");

    // reload
    let before = maps(&lab);
    let st = lab.a.status();
    let counts = reloads(&st);
    std::fs::write(&lab.a.config, &big).expect("write");
    let (ok, out) = lab.a.ctl(&["reload"]);
    std::fs::write(&lab.a.config, &good).expect("restore");
    let after_st = lab.a.status();
    let after = maps(&lab);
    assert!(
        !ok && out.contains("too many addresses") && out.contains(&where_),
        "the reload must be refused with the line {line}: {out}"
    );
    assert_eq!(
        after_st["routers"][0]["vips"], st["routers"][0]["vips"],
        "the running config's VIPs must stay"
    );
    assert_eq!(
        configured_backends(&after_st),
        configured_backends(&st),
        "the running config's services must stay"
    );
    assert_eq!(after, before, "the maps must stay as they were");
    assert_eq!(
        reloads(&after_st),
        (counts.0, counts.1 + 1),
        "counted as refused"
    );
    let metrics = lab.a.metrics();
    assert!(
        metrics.contains(&format!(
            "fo_config_reloads_total{{result=\"failure\"}} {}",
            counts.1 + 1
        )),
        "/metrics must count the refusal:\n{metrics}"
    );
}
