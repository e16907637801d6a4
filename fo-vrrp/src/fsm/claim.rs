//! May this router serve? fo's additions to RFC 5798 §6.4 that decide when a router may hold
//! the virtual addresses, as inputs of the state machine:
//!
//! - **Fault sources** ([`FaultSource`], [`Event::Fault`](super::Event::Fault)): a set of local
//!   reasons not to serve. While any is failing the router is in Fault (no addresses, no
//!   adverts, no timers); the first one sets the fault, the last one cleared starts the router
//!   again as on Startup. The legacy `fault_set` / `fault_cleared` events are the source
//!   [`FaultSource::External`].
//! - **Fencing** ([`Config::fence_timeout`](super::Config::fence_timeout),
//!   [`Event::PeerAlive`](super::Event::PeerAlive)): at Master_Down a Backup cut off from
//!   its peer and its witness for the timeout refuses the claim
//!   ([`Action::ClaimRefused`](super::Action::ClaimRefused)) and fences itself.
//!
//! | source | set by the agent when |
//! |---|---|
//! | `link` | the interface lost its carrier |
//! | `dataplane` | the XDP program is detached |
//! | `gate` | a configured gate (a check that must pass before mastership) is closed |
//! | `track` | a tracked check of weight 0 fails (keepalived's fault-on-failure track) |
//! | `fenced` | the node is cut off from its peer and its witness |
//! | `external` | `fault_set` (golden scenarios, recordings) |

use std::fmt;

use serde::{Deserialize, Serialize};

/// A local reason this node may not serve. [`Display`](fmt::Display) gives the label
/// `fo-agent status` shows (`link`, `dataplane`, `gate:NAME`, …).
///
/// In JSON: `"link"`, `"dataplane"`, `{"gate":"db"}`, `{"track":"db"}`, `"fenced"`,
/// `"external"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSource {
    /// The interface is down.
    Link,
    /// The XDP program is detached: the node could not answer for the addresses.
    Dataplane,
    /// A gate is closed (its name).
    Gate(String),
    /// A tracked check of weight 0 fails (its name).
    Track(String),
    /// Cut off from the peer and the witness: serving could make a second Master.
    Fenced,
    /// The legacy `fault_set` / `fault_cleared` events, which name no source.
    External,
}

impl fmt::Display for FaultSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSource::Link => f.write_str("link"),
            FaultSource::Dataplane => f.write_str("dataplane"),
            FaultSource::Gate(name) => write!(f, "gate:{name}"),
            FaultSource::Track(name) => write!(f, "track:{name}"),
            FaultSource::Fenced => f.write_str("fenced: peer and witness unreachable"),
            FaultSource::External => f.write_str("fault"),
        }
    }
}

/// Why this router may not take mastership now ([`Router::not_ready`](super::Router::not_ready)):
/// a promote is refused with it rather than queued (make before break: the incoming
/// Master is ready before it claims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// Fault sources are failing (gates closed, link down, …).
    Faulted(Vec<FaultSource>),
    /// Sync-then-claim: the NAT connection table does not yet hold what the peers sent.
    SyncPending,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Faulted(sources) => {
                let labels: Vec<String> = sources.iter().map(ToString::to_string).collect();
                write!(f, "not ready: failing {}", labels.join(", "))
            }
            NotReady::SyncPending => f.write_str(
                "not ready: the NAT connection table is not current yet (sync from the peer pending)",
            ),
        }
    }
}
