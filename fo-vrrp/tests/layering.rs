//! fo-vrrp's modules form a one-way graph: types ▸ drops ▸ auth ▸ packet, and timing ▸ fsm.
//! docs/architecture.md explains the table; this test is its authority.

#[allow(
    dead_code,
    reason = "the scanner is shared with fo-agent; each test uses part of it"
)]
#[path = "../../tests/src/layering.rs"]
mod layering;

use layering::{Layout, Rules, Scan};
use std::path::Path;

/// Which top-level module may use which (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("drops", &["types"]),
    ("auth", &["types", "drops"]),
    ("packet", &["types", "drops", "auth"]),
    ("timing", &["types"]),
    ("fsm", &["types", "timing", "packet"]),
];

/// Edges outside ALLOWED, by file and target module: none are left, and none may come back.
const KNOWN: &[(&str, &str)] = &[];

const RULES: Rules<'static> = Rules {
    allowed: ALLOWED,
    known: KNOWN,
    doc: "docs/architecture.md#layers",
};

fn scan() -> Scan {
    let scan = layering::scan(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &Layout {
            lib_name: "fo_vrrp",
            binary: &[],
            binary_module: "",
        },
    );
    layering::assert_none("reading fo-vrrp/src", &scan.errors);
    scan
}

#[test]
fn every_edge_is_allowed_or_known() {
    layering::assert_none(
        "fo-vrrp: modules that use a higher module",
        &RULES.violations(&scan().edges),
    );
}

#[test]
fn known_edges_still_occur() {
    layering::assert_none("fo-vrrp: KNOWN", &RULES.stale_known(&scan().edges));
}

#[test]
fn every_module_has_a_row() {
    layering::assert_none("fo-vrrp: ALLOWED", &RULES.unplaced(&scan().modules));
}

#[test]
fn the_allowed_table_is_acyclic() {
    assert_eq!(RULES.cycle(), None, "ALLOWED must have no cycle");
}
