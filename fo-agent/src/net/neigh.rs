//! Backend MAC addresses, from the kernel's neighbour table. When the kernel has no
//! entry yet, a datagram to the backend's discard port makes it resolve one.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};

use super::NetError;

/// The MAC of `addr` on interface `ifindex`, if the kernel knows it.
pub async fn lookup(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    addr: IpAddr,
) -> Result<Option<[u8; 6]>, NetError> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut entries = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute();
    while let Some(msg) = entries
        .try_next()
        .await
        .map_err(|source| NetError::Netlink {
            what: format!("neighbours of {addr}"),
            source,
        })?
    {
        if msg.header.ifindex != ifindex
            || matches!(
                msg.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            )
        {
            continue;
        }
        let mut dest = None;
        let mut lladdr = None;
        for attr in &msg.attributes {
            match attr {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                    dest = Some(IpAddr::V4(*a))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                    dest = Some(IpAddr::V6(*a))
                }
                NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                    lladdr = Some([l[0], l[1], l[2], l[3], l[4], l[5]]);
                }
                _ => {}
            }
        }
        if dest == Some(addr)
            && let Some(mac) = lladdr
        {
            return Ok(Some(mac));
        }
    }
    Ok(None)
}

/// Resolve `addr` on `ifindex`, prompting the kernel to ask for it, within `timeout`.
pub async fn resolve(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    addr: IpAddr,
    timeout: Duration,
) -> Result<[u8; 6], NetError> {
    let start = Instant::now();
    let mut next_probe = start;
    loop {
        if let Some(mac) = lookup(handle, ifindex, addr).await? {
            return Ok(mac);
        }
        if start.elapsed() >= timeout {
            return Err(NetError::Unresolved {
                addr,
                ifindex,
                waited_ms: start.elapsed().as_millis(),
            });
        }
        if Instant::now() >= next_probe {
            probe(addr).await?;
            next_probe = Instant::now() + Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One empty UDP datagram to the discard port: the kernel resolves the neighbour
/// to send it. The backend answers at most with an ICMP port unreachable.
async fn probe(addr: IpAddr) -> Result<(), NetError> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()
    } else {
        "[::]:0".parse()
    }
    .expect("literal address");
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|source| NetError::Probe { addr, source })?;
    // EHOSTUNREACH and friends just mean "not yet": the caller keeps polling.
    let _ = sock.send_to(&[], SocketAddr::new(addr, 9)).await;
    Ok(())
}
