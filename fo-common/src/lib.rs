//! Layouts shared by the XDP program (`fo-ebpf`) and the agent (`fo-agent`).
//!
//! This crate is the one place where a byte layout crosses the kernel/user boundary.
//! Every type is `#[repr(C)]`, `Copy`, made of fixed-width integers and byte arrays,
//! with explicit padding and a size assertion, so the two sides cannot drift apart.
//! Fields in network byte order carry a `_be` suffix. No `bool`, enum or `Option`
//! is ever stored in a map value.
#![no_std]

pub mod counters;
pub mod hash;
pub mod hc;
pub mod maps;
pub mod nat;
pub mod tunnel;

pub use counters::Counter;
pub use hc::*;
pub use maps::*;
pub use nat::*;
pub use tunnel::*;

/// Version of the layouts in this crate. The agent refuses to adopt a pinned data
/// plane whose `DataplaneInfo::abi` differs, and loads a new one instead. Bump it with
/// any change to a map's key, value or definition.
pub const ABI_VERSION: u32 = 7;

/// XDP action codes (uapi `enum xdp_action`), shared so that counters and tests agree.
pub mod xdp_action {
    pub const XDP_ABORTED: u32 = 0;
    pub const XDP_DROP: u32 = 1;
    pub const XDP_PASS: u32 = 2;
    pub const XDP_TX: u32 = 3;
    pub const XDP_REDIRECT: u32 = 4;
}
