//! Builds the XDP programs (`fo-ebpf`, binaries `fo-xdp` and `fo-decap`) for the BPF
//! target and leaves them in OUT_DIR, where `dataplane` embeds them with
//! `include_bytes_aligned!`.
//!
//! The BPF target needs `-Z build-std=core`. The toolchain is the pinned stable one
//! (see rust-toolchain.toml), so RUSTC_BOOTSTRAP=1 is set for that one inner cargo
//! invocation only; the agent itself is built as plain stable Rust.
use anyhow::{Context as _, anyhow};

/// Must match rust-toolchain.toml: the eBPF crate is built with the same compiler,
/// whose LLVM is the one bpf-linker was built against.
const TOOLCHAIN: &str = "1.98.0";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "fo-ebpf")
        .ok_or_else(|| anyhow!("package fo-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?
        .to_string();
    // SAFETY: build scripts are single-threaded; the variable is read by the child
    // cargo that aya-build spawns.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "fo-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(TOOLCHAIN),
    )
}
