//! The lab kit: network namespaces, processes and teardown, for xtask's labs (and, step by
//! step, the privileged tests). It depends on nothing of the product, so xtask still builds
//! on a bare machine.
//!
//! - [`agent`]: a running fo-agent, through its command line and control socket.
//! - [`bins`]: the workspace's binaries of the running build.
//! - [`netns`]: namespaces (handles, or [`netns::Owned`] ones removed on drop) and bpffs
//!   pin directories, registered for teardown the moment they are made;
//!   [`netns::Teardown`] runs it on drop and on Ctrl-C/SIGTERM.
//! - [`segment`]: a bridge in a switch namespace, and veths from it into the hosts.
//! - [`proc`]: a spawned process whose output lines are stamped and kept (and logged to a
//!   file), killed on drop.
//! - [`static_http`]: HAProxy answering a static 200, the benches' HTTP backends.
//! - [`wait`]: polling for a condition.

pub mod agent;
pub mod bins;
pub mod netns;
pub mod proc;
pub mod segment;
pub mod static_http;
pub mod wait;

pub use netns::{Netns, Teardown};
pub use proc::Proc;
