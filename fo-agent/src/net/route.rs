//! The FIB's next hop toward an address (`ip route get`), and that hop's neighbour:
//! what a tunnel backend's encapsulated packets are sent to.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType, RouteVia};

use super::NetError;

/// What the routing table says about one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The gateway, or `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// The egress interface.
    pub ifindex: u32,
    /// The preferred source address toward it.
    pub source: Option<IpAddr>,
}

impl Route {
    /// The address whose link-layer address frames go to.
    pub fn neighbour(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

/// A resolved next hop: where to send a frame for a destination, as XDP needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The gateway, or `None` when the destination is on-link.
    pub gateway: Option<IpAddr>,
    /// Egress interface.
    pub ifindex: u32,
    pub ifname: String,
    /// The egress interface's MAC (the frame's source).
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the frame's destination).
    pub mac: [u8; 6],
    /// The egress interface's MTU.
    pub mtu: u32,
    /// The route's preferred source address.
    pub source: Option<IpAddr>,
}

impl NextHop {
    /// `via GATEWAY dev IF (MAC) mtu N`, or `dev IF (MAC) mtu N` when on-link.
    pub fn describe(&self) -> String {
        let m = self.mac;
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
        match self.gateway {
            Some(g) => format!("via {g} dev {} ({mac}) mtu {}", self.ifname, self.mtu),
            None => format!("dev {} ({mac}) mtu {}", self.ifname, self.mtu),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("no route to {addr}")]
    NoRoute { addr: IpAddr },
    #[error("the route to {addr} is not unicast ({kind})")]
    NotUnicast { addr: IpAddr, kind: String },
    #[error(transparent)]
    Net(#[from] NetError),
}

/// `ip route get ADDR`.
pub async fn get(handle: &rtnetlink::Handle, addr: IpAddr) -> Result<Route, RouteError> {
    let msg = match addr {
        IpAddr::V4(a) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(a, 32)
            .build(),
        IpAddr::V6(a) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(a, 128)
            .build(),
    };
    let mut answers = handle.route().get(msg).execute();
    let msg = match answers.try_next().await {
        Ok(Some(m)) => m,
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
            return Err(RouteError::NoRoute { addr });
        }
        Err(source) => {
            return Err(NetError::Netlink {
                what: format!("route to {addr}"),
                source,
            }
            .into());
        }
    };
    if msg.header.kind != RouteType::Unicast {
        return Err(RouteError::NotUnicast {
            addr,
            kind: format!("{:?}", msg.header.kind),
        });
    }
    let ip = |a: &RouteAddress| match a {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    };
    let mut route = Route {
        gateway: None,
        ifindex: 0,
        source: None,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Gateway(a) => route.gateway = ip(a),
            RouteAttribute::Via(RouteVia::Inet(a)) => route.gateway = Some(IpAddr::V4(*a)),
            RouteAttribute::Via(RouteVia::Inet6(a)) => route.gateway = Some(IpAddr::V6(*a)),
            RouteAttribute::PrefSource(a) => route.source = ip(a),
            RouteAttribute::Oif(i) => route.ifindex = *i,
            _ => {}
        }
    }
    if route.ifindex == 0 {
        return Err(RouteError::NoRoute { addr });
    }
    Ok(route)
}

/// Name, MAC and MTU of interface `index`.
pub async fn link_of(
    handle: &rtnetlink::Handle,
    index: u32,
) -> Result<(String, [u8; 6], u32), NetError> {
    let mut links = handle.link().get().match_index(index).execute();
    let msg = links
        .try_next()
        .await
        .map_err(NetError::netlink(format!("link {index}")))?
        .ok_or_else(|| NetError::NoInterface(format!("ifindex {index}")))?;
    let (mut name, mut mac, mut mtu) = (format!("ifindex {index}"), None, 1500);
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(a) if a.len() == 6 => {
                mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]]);
            }
            LinkAttribute::Mtu(m) => mtu = *m,
            _ => {}
        }
    }
    let mac = mac.ok_or_else(|| NetError::NoMac(name.clone()))?;
    Ok((name, mac, mtu))
}

/// The next hop toward `addr` as the route says now, with `mac` as the hop's MAC (one
/// the data plane already uses, kept while the kernel has no neighbour entry).
pub async fn hop_with_mac(
    handle: &rtnetlink::Handle,
    addr: IpAddr,
    mac: [u8; 6],
) -> Result<NextHop, RouteError> {
    let r = get(handle, addr).await?;
    let (ifname, src_mac, mtu) = link_of(handle, r.ifindex).await?;
    Ok(NextHop {
        gateway: r.gateway,
        ifindex: r.ifindex,
        ifname,
        src_mac,
        mac,
        mtu,
        source: r.source,
    })
}

/// Resolve the next hop of every address in `addrs`: the route, its egress
/// interface, and the gateway's (or on-link destination's) MAC, waiting at most
/// `timeout` for neighbours. Returns what resolved and what did not, with the reason.
pub async fn next_hops(
    handle: &rtnetlink::Handle,
    addrs: &[IpAddr],
    timeout: Duration,
) -> (BTreeMap<IpAddr, NextHop>, Vec<(IpAddr, String)>) {
    let mut found = BTreeMap::new();
    let mut failed = Vec::new();
    // Routes first, then one neighbour round per egress interface.
    let mut by_link: BTreeMap<u32, Vec<(IpAddr, Route)>> = BTreeMap::new();
    for &a in addrs {
        match get(handle, a).await {
            Ok(r) => by_link.entry(r.ifindex).or_default().push((a, r)),
            Err(e) => failed.push((a, e.to_string())),
        }
    }
    for (ifindex, routes) in by_link {
        let (ifname, src_mac, mtu) = match link_of(handle, ifindex).await {
            Ok(l) => l,
            Err(e) => {
                failed.extend(routes.into_iter().map(|(a, _)| (a, e.to_string())));
                continue;
            }
        };
        let mut hops: Vec<IpAddr> = routes.iter().map(|(a, r)| r.neighbour(*a)).collect();
        hops.sort();
        hops.dedup();
        let (macs, _) = super::neigh::resolve_many(handle, ifindex, &hops, timeout).await;
        for (a, r) in routes {
            let via = r.neighbour(a);
            match macs.get(&via) {
                Some(mac) => {
                    found.insert(
                        a,
                        NextHop {
                            gateway: r.gateway,
                            ifindex,
                            ifname: ifname.clone(),
                            src_mac,
                            mac: *mac,
                            mtu,
                            source: r.source,
                        },
                    );
                }
                None => failed.push((
                    a,
                    format!("next hop {via} on {ifname} has no neighbour entry (is it up?)"),
                )),
            }
        }
    }
    (found, failed)
}
