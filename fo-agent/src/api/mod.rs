//! The agent's interfaces to operators: the control socket and Prometheus metrics,
//! both rendering the same [`status::Status`] snapshot.

pub mod conns;
pub mod control;
pub mod drill;
pub mod exposition;
pub mod http;
pub mod metrics;
pub mod status;
