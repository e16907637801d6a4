//! The compiled XDP object itself, read with llvm-objdump (LLVM 22, which `cargo xtask
//! setup` installs for bpf-linker): no BPF-to-BPF call to a memory builtin. bpf-linker's
//! default (`--bpf-expand-memcpy-in-order`) turned every `memset` / `memmove` (zeroed key
//! padding, MAC copies) into a call to a byte-at-a-time loop; `fo-ebpf/build.rs` links
//! without it so that LLVM expands them into plain stores.

const OBJDUMP: &str = "/usr/lib/llvm-22/bin/llvm-objdump";

/// The relocation targets of the object's calls to memory builtins, one per call site.
fn builtin_calls(object: &[u8]) -> Vec<String> {
    let path = std::env::temp_dir().join(format!("fo-xdp-object-{}.o", std::process::id()));
    std::fs::write(&path, object).expect("write the object to a temporary file");
    let out = std::process::Command::new(OBJDUMP)
        .args(["-dr", "--no-show-raw-insn"])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.unwrap_or_else(|e| panic!("{OBJDUMP}: {e} (cargo xtask setup installs it)"));
    assert!(
        out.status.success(),
        "{OBJDUMP} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("<fo_xdp>:"),
        "the disassembly has no fo_xdp function: not the XDP object?"
    );
    text.lines()
        .filter(|l| l.contains("R_BPF_64_32"))
        .filter_map(|l| l.split_whitespace().last())
        .filter(|sym| matches!(*sym, "memset" | "memmove" | "memcpy" | "memcmp" | "bcmp"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_program_calls_no_memory_builtin() {
    let calls = builtin_calls(fo_agent::dataplane::OBJECT);
    assert!(
        calls.is_empty(),
        "the XDP object calls memory builtins at {} sites ({calls:?}): expected none \
         (is fo-ebpf/build.rs's --disable-expand-memcpy-in-order still passed to bpf-linker?)",
        calls.len()
    );
}
