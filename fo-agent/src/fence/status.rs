//! What the fence shows in `fo-agent status`: per router with a witness, what it reaches
//! and whether it fenced itself. The fence owns this state; `api::status` assembles it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a router with a witness reaches, and whether it fenced itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FenceStatus {
    /// Held in fault because neither the peer nor the witness answers.
    pub fenced: bool,
    pub witness: Reach,
    /// The configured unicast peers, or (multicast) the peers heard so far.
    pub peers: Vec<Reach>,
    /// Times the router fenced itself since the agent started.
    pub fences_total: u64,
}

/// Reachability of one probed address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    pub address: IpAddr,
    /// Answered (ICMP echo, or a VRRP advert from a peer) within the witness timeout.
    pub reachable: bool,
    /// Seconds since the last answer; `None`: never answered.
    pub last_reply_seconds_ago: Option<f64>,
}
