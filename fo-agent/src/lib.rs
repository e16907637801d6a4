//! fo-agent as a library: the pieces the daemon is made of, used by its binary, by
//! the integration tests and by the benchmarks.

pub mod agent;
pub mod api;
pub mod bgp;
pub mod clock;
pub mod dataplane;
pub mod fence;
pub mod health;
pub mod hooks;
pub mod locks;
pub mod logging;
pub mod net;
pub mod sched;
pub mod sdnotify;
pub mod sync;
pub mod vrrp;
