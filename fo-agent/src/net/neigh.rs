//! Backend MAC addresses, from the kernel's neighbour table. When the kernel has no
//! entry yet, a datagram to the backend's discard port makes it resolve one (the
//! backend answers at most with an ICMP port unreachable).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};

use super::NetError;

/// Every usable neighbour entry (with a link-layer address) on one of `ifindexes`, both
/// families, from one dump of the kernel's table.
pub async fn table(
    handle: &rtnetlink::Handle,
    ifindexes: &[u32],
) -> Result<std::collections::HashMap<IpAddr, [u8; 6]>, NetError> {
    let ifindex = ifindexes.first().copied().unwrap_or(0);
    let mut out = std::collections::HashMap::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut entries = handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(msg) = entries.try_next().await.map_err(NetError::netlink(format!(
            "neighbours of ifindex {ifindex}"
        )))? {
            if !ifindexes.contains(&msg.header.ifindex)
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
            if let (Some(d), Some(m)) = (dest, lladdr) {
                out.insert(d, m);
            }
        }
    }
    Ok(out)
}

/// Resolve many addresses at once: one table dump per round (not one per address),
/// probes for the missing ones every 500 ms from one socket per family, until all
/// are known or `timeout` passes. Entries count on any of `ifindexes` (the node's
/// interface first, then its VLAN devices). Returns what resolved and what did not.
pub async fn resolve_many(
    handle: &rtnetlink::Handle,
    ifindexes: &[u32],
    addrs: &[IpAddr],
    timeout: Duration,
) -> (
    std::collections::BTreeMap<IpAddr, [u8; 6]>,
    Vec<(IpAddr, NetError)>,
) {
    let start = Instant::now();
    let mut found = std::collections::BTreeMap::new();
    let mut pending: Vec<IpAddr> = addrs.to_vec();
    let mut next_probe = start;
    let (v4, v6) = (
        tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok(),
        tokio::net::UdpSocket::bind("[::]:0").await.ok(),
    );
    loop {
        match table(handle, ifindexes).await {
            Ok(t) => pending.retain(|a| match t.get(a) {
                Some(mac) => {
                    found.insert(*a, *mac);
                    false
                }
                None => true,
            }),
            // A failed dump is retried on the next round.
            Err(e) => tracing::debug!(error = %e, "neighbour table dump failed"),
        }
        if pending.is_empty() || start.elapsed() >= timeout {
            break;
        }
        if Instant::now() >= next_probe {
            for &a in &pending {
                let sock = if a.is_ipv4() { &v4 } else { &v6 };
                if let Some(s) = sock {
                    // "Not yet" errors (EHOSTUNREACH …) just mean: keep polling.
                    let _ = s.send_to(&[], SocketAddr::new(a, 9)).await;
                }
            }
            next_probe = Instant::now() + Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited_ms = start.elapsed().as_millis();
    let failed = pending
        .into_iter()
        .map(|addr| {
            (
                addr,
                NetError::Unresolved {
                    addr,
                    ifindex: ifindexes.first().copied().unwrap_or(0),
                    waited_ms,
                },
            )
        })
        .collect();
    (found, failed)
}
