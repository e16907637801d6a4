//! The agent's view of the host network: interfaces, neighbours and addresses,
//! through rtnetlink in the agent's own network namespace.

pub mod addr;
pub mod icmp;
pub mod link;
pub mod neigh;
pub mod route;

use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("netlink request for {what}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    #[error(
        "no neighbour entry for {addr} on ifindex {ifindex} after {waited_ms} ms (is it on this segment and up?)"
    )]
    Unresolved {
        addr: IpAddr,
        ifindex: u32,
        waited_ms: u128,
    },
    #[error("sending to {addr} to trigger neighbour resolution")]
    Probe {
        addr: IpAddr,
        #[source]
        source: std::io::Error,
    },
}

impl NetError {
    /// A failed netlink request for `what` (`map_err(NetError::netlink(...))`).
    pub fn netlink(what: String) -> impl FnOnce(rtnetlink::Error) -> NetError {
        move |source| NetError::Netlink { what, source }
    }
}

/// A netlink handle whose connection task runs on the current tokio runtime.
pub fn handle() -> Result<rtnetlink::Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}
