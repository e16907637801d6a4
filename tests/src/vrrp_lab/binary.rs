//! The `fo-agent` binary the VRRP lab runs (see the lab's module docs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `fo-agent` binary (see the module docs).
pub fn agent_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FO_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let profile_dir = fo_lab::kit::bins::profile_dir();
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        // Without the variables `cargo test` set for this test binary (CARGO_PKG_NAME,
        // CARGO_MANIFEST_DIR, ...): ring's build script watches them, and other values
        // than a plain `cargo build` had would rebuild ring, rustls and the agent.
        for (key, _) in std::env::vars_os() {
            let Some(k) = key.to_str() else { continue };
            if k.starts_with("CARGO_PKG_")
                || k.starts_with("CARGO_MANIFEST_")
                || matches!(
                    k,
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&key);
            }
        }
        cmd.args([
            "build",
            "-p",
            "fo-agent",
            "--bin",
            "fo-agent",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("spawn cargo build -p fo-agent");
        assert!(
            out.status.success(),
            "cargo build -p fo-agent failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("fo-agent");
        assert!(
            bin.exists(),
            "expected the agent at {}, it is not there",
            bin.display()
        );
        bin
    })
    .clone()
}
