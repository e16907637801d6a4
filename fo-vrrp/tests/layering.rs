//! fo-vrrp's modules form a one-way graph: types ▸ drops ▸ auth ▸ packet, and timing ▸ fsm.
//! docs/architecture.md explains the table; this test is its authority.

#[path = "../../tests/src/layering.rs"]
#[macro_use]
mod layering;

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

layering_tests!(
    "fo-vrrp",
    ALLOWED,
    KNOWN,
    layering::Layout {
        lib_name: "fo_vrrp",
        binary: &[],
        binary_module: "",
    },
    "modules that use a higher module"
);
