//! Linker flags of the XDP object (bpf-linker).
//!
//! `--disable-expand-memcpy-in-order`: by default bpf-linker asks LLVM to expand only
//! `memcpy` itself, in order (for JITs that pattern-match copies), and sets LLVM's
//! store budget for `memset` and `memmove` to zero. Every zeroed key padding or
//! copied MAC then became a call to a byte-at-a-time loop. Without the flag LLVM
//! expands all three into plain loads and stores when the size is constant.
fn main() {
    println!("cargo::rustc-link-arg-bins=--disable-expand-memcpy-in-order");
}
