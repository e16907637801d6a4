//! The lab kit: network namespaces, processes and teardown, for xtask's labs (and, step by
//! step, the privileged tests). It depends on nothing of the product, so xtask still builds
//! on a bare machine.
//!
//! - [`netns`]: namespaces and bpffs pin directories registered for teardown the moment
//!   they are made; [`netns::Teardown`] runs it on drop and on Ctrl-C/SIGTERM.
//! - [`proc`]: a spawned process whose output lines are stamped and kept (and logged to a
//!   file), killed on drop.
//! - [`static_http`]: HAProxy answering a static 200, the benches' HTTP backends.

pub mod netns;
pub mod proc;
pub mod static_http;

pub use netns::{Netns, Teardown};
pub use proc::Proc;
