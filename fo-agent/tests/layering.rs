//! fo-agent's modules form a one-way graph:
//! `cli → agent → {api, bgp, fence, sync, vrrp, health, hooks} → {dataplane, net}`,
//! with the middle layer ordered api ▸ fence ▸ vrrp ▸ hooks and shared leaves below.
//! docs/architecture.md explains the table; this test is its authority.

#[path = "../../tests/src/layering.rs"]
#[macro_use]
mod layering;

use std::path::Path;

/// Which top-level module may use which (besides itself). `cli` is the binary's
/// (src/main.rs and src/cli/), which reaches the library as `fo_agent::`; it also sets up
/// `logging` and the process's scheduling (`sched`) before anything runs.
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &["agent", "api", "logging", "sched"]),
    (
        "agent",
        &[
            "api",
            "bgp",
            "fence",
            "sync",
            "vrrp",
            "health",
            "hooks",
            "dataplane",
            "net",
            "sdnotify",
            "child",
            "clock",
            "locks",
        ],
    ),
    // api assembles the status types their owners define (bgp, fence, sync, hooks).
    ("api", &["bgp", "fence", "sync", "hooks", "clock", "locks"]),
    ("fence", &["vrrp", "net", "clock", "locks"]),
    (
        "vrrp",
        &["hooks", "dataplane", "net", "sched", "clock", "locks"],
    ),
    ("sync", &["dataplane", "net", "clock", "locks"]),
    ("bgp", &["child", "clock", "locks"]),
    ("health", &["child", "clock", "locks"]),
    ("hooks", &["child", "clock", "locks"]),
    ("dataplane", &["clock", "locks"]),
    ("net", &["clock", "locks"]),
    ("child", &[]),
    ("clock", &[]),
    ("locks", &[]),
    ("sdnotify", &[]),
    ("sched", &[]),
    ("logging", &[]),
    ("testutil", &[]),
];

/// Today's edges outside ALLOWED, by file and target module (no line numbers, so
/// concurrent edits do not break it). The list may only shrink: an entry that no longer
/// occurs fails `known_edges_still_occur` until it is removed.
const KNOWN: &[(&str, &str)] = &[
    // hooks runs children through health::child (moves to a shared leaf).
    ("src/hooks.rs", "health"),
    // `fo-agent check` lists problems itself (moves to agent::preflight).
    ("src/cli/check.rs", "bgp"),
    ("src/cli/check.rs", "health"),
    ("src/cli/check.rs", "vrrp"),
];

layering_tests!(
    "fo-agent",
    ALLOWED,
    KNOWN,
    layering::Layout {
        lib_name: "fo_agent",
        binary: &["main.rs", "cli/"],
        binary_module: "cli",
    },
    "modules that use a higher or sibling module"
);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Everything the code and docs cite is in the repository: no file names the project's
/// working notes outside it.
#[test]
fn repository_stands_alone() {
    let workspace = root().parent().expect("workspace root");
    let needles = [
        ["LAB", ".md"].concat(),
        ["CONTRACT", ".md"].concat(),
        ["/wo", "rk/"].concat(),
    ];
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    layering::assert_none(
        "files that cite something outside the repository (write the fact into docs/ instead)",
        &layering::cites(workspace, &needles),
    );
}

/// The lab side (xtask, fo-lab) builds on a bare machine: it may use the pure crates
/// (fo-vrrp, fo-config: no build script, no BPF, no system library) but never the agent,
/// the XDP program or fo-common's aya side.
#[test]
fn the_lab_side_uses_no_product_crate() {
    let workspace = root().parent().expect("workspace root");
    let mut problems = Vec::new();
    for krate in ["xtask", "fo-lab"] {
        let manifest = std::fs::read_to_string(workspace.join(krate).join("Cargo.toml"))
            .expect("readable Cargo.toml");
        for line in manifest.lines().map(str::trim) {
            let name = line.split(['=', ' ']).next().unwrap_or("");
            if ["fo-agent", "fo-ebpf", "fo-common", "fo-tests"].contains(&name) {
                problems.push(format!("{krate}/Cargo.toml: {line}"));
            }
        }
    }
    layering::assert_none(
        "the lab side depends on a product crate (it must build without BPF or aya)",
        &problems,
    );
}
