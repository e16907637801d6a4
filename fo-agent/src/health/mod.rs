//! Health checks: node-level checks (for `track` and `gates`) and service backend
//! checks, run on their intervals without forking (except `exec`), with rise/fall
//! hysteresis.
//!
//! - [`state`]: the pure rise/fall tracker and the initial states;
//! - [`probe`]: one async function per kind of check;
//! - [`http`]: the HTTP/1.1 client of http and https checks (hyper);
//! - [`tls`]: TLS of https checks (rustls): client setup from the config's files,
//!   failure reasons, certificate expiry;
//! - [`trust`]: who may change (or, for keys, read) those files;
//! - [`scheduler`]: one task per target, publishing a [`Snapshot`] and [`HealthEvent`]s;
//! - [`priority`]: effective VRRP priority and gates from a snapshot.
//!
//! Wiring, in short:
//! ```ignore
//! let health = health::Health::start(&config);          // inside the runtime
//! let mut rx = health.watch();
//! loop {
//!     {
//!         let snap = rx.borrow_and_update();
//!         for r in &config.routers {
//!             let vrrp = r.vrrp().unwrap();
//!             let prio = health::priority::effective(vrrp.priority, &vrrp.track, &snap);
//!             let may_be_master = health::priority::all_pass(&r.gates, &snap);
//!             // ... hand prio / may_be_master to the VRRP machine
//!         }
//!         // ... snap.backend_up(service, backend) != Some(false) for the data plane
//!     }
//!     if rx.changed().await.is_err() { break }
//! }
//! ```

pub(crate) mod child;
pub mod http;
pub mod priority;
pub mod probe;
pub mod program;
pub mod scheduler;
pub mod state;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tls;
pub mod trust;

pub use child::run_as_problems;
pub use probe::{
    Probe, ProbeError, ProbeResult, Problem, problems, program_problems, tls_problems,
};
pub use scheduler::{
    Health, HealthEvent, LastResult, Snapshot, Spec, Target, TargetStatus, plan, plan_resuming,
};
pub use state::{Status, Tracker, Transition};
