//! fo-lab: the traffic tools that measure what a load-balancer failover costs
//! long-lived agent connections (a SIEM's agents sending to 1514/tcp).
//!
//! - [`sink::Sink`] (`fo-sink`) runs on each backend: accepts agents, counts every
//!   event per agent (gaps, duplicates, reorders), records how each connection ended
//!   (FIN, RST, still open), keeps arrivals per 10 ms, and acknowledges.
//! - [`fleet::Fleet`] (`fo-fleet`) is N agents, one long-lived connection each, writing
//!   numbered events at a fixed rate, reconnecting and resending from the last ack
//!   after a reset, like a real agent.
//! - [`report`] holds the JSON reports of both and [`report::merge`], which computes
//!   the run's figures; `lost_acked` (acknowledged, received by no sink) must be 0.
//!
//! The wire protocol is in [`proto`]. The lab kit that xtask builds its labs with
//! (namespaces, processes, teardown) is [`kit`].

pub mod control;
pub mod fleet;
pub mod kit;
pub mod locks;
pub mod proto;
pub mod report;
pub mod sink;
pub mod sys;
pub mod timeline;
pub mod track;
pub mod units;

pub use fleet::{Fleet, FleetConfig};
pub use sink::{Sink, SinkConfig};
