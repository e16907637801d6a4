//! Interface addresses: the source address VRRP advertises from.

use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressScope};

use super::NetError;

/// The address a VRRP router on `ifindex` sends from: for IPv4 the interface's first
/// (primary) address; for IPv6 its link-local address (RFC 5798 §5.1.2.1 requires the
/// IPv6 source to be link-local). Tentative (DAD in progress) addresses are skipped, as
/// the kernel refuses to send from them. `None` if the interface has no such address yet.
pub async fn primary(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    ipv6: bool,
) -> Result<Option<IpAddr>, NetError> {
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let mut req = handle.address().get().set_link_index_filter(ifindex);
    req.message_mut().header.family = family;
    let mut msgs = req.execute();
    while let Some(msg) = msgs.try_next().await.map_err(|source| NetError::Netlink {
        what: format!("addresses of ifindex {ifindex}"),
        source,
    })? {
        if msg.header.index != ifindex || msg.header.family != family {
            continue;
        }
        let header_flags = msg.header.flags;
        if header_flags.contains(AddressHeaderFlags::Secondary)
            || header_flags.contains(AddressHeaderFlags::Tentative)
        {
            continue;
        }
        if ipv6 && msg.header.scope != AddressScope::Link {
            continue;
        }
        let mut address = None;
        let mut local = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Local(a) => local = Some(*a),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
        // is the peer there. On Ethernet both are the same.
        if let Some(a) = local.or(address)
            && a.is_ipv6() == ipv6
        {
            return Ok(Some(a));
        }
    }
    Ok(None)
}
