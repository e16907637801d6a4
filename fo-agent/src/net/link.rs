//! Interface facts: index, MAC, operational state.

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkFlags, LinkInfo as Info, LinkXdp, State, XdpAttached,
};

use super::NetError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// Administratively up and the carrier present (operstate up, or unknown for
    /// devices that do not report it).
    pub running: bool,
}

pub async fn by_name(handle: &rtnetlink::Handle, name: &str) -> Result<LinkInfo, NetError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    let msg = match links.try_next().await {
        Ok(Some(msg)) => msg,
        Ok(None) => return Err(NetError::NoInterface(name.to_owned())),
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(_)) => {
            return Err(NetError::NoInterface(name.to_owned()));
        }
        Err(source) => {
            return Err(NetError::Netlink {
                what: format!("link {name}"),
                source,
            });
        }
    };
    let mut mac = None;
    let mut oper = State::Unknown;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Address(a) if a.len() == 6 => {
                mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]]);
            }
            LinkAttribute::OperState(s) => oper = *s,
            _ => {}
        }
    }
    let up = msg.header.flags.contains(LinkFlags::Up);
    let carrier = matches!(oper, State::Up | State::Unknown);
    Ok(LinkInfo {
        name: name.to_owned(),
        index: msg.header.index,
        mac: mac.ok_or_else(|| NetError::NoMac(name.to_owned()))?,
        running: up && carrier && msg.header.flags.contains(LinkFlags::LowerUp),
    })
}

/// The 802.1Q VLAN devices on interface `parent` (`eth0.100` on `eth0`): a VIP on a
/// VLAN of the node's interface has its backends' neighbour entries there.
pub async fn vlan_devices(handle: &rtnetlink::Handle, parent: u32) -> Result<Vec<u32>, NetError> {
    let mut links = handle.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = links
        .try_next()
        .await
        .map_err(NetError::netlink(format!("links on ifindex {parent}")))?
    {
        let mut lower = None;
        let mut vlan = false;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::Link(i) => lower = Some(*i),
                LinkAttribute::LinkInfo(infos) => {
                    vlan = infos
                        .iter()
                        .any(|i| matches!(i, Info::Kind(InfoKind::Vlan)));
                }
                _ => {}
            }
        }
        if is_vlan_device_of(parent, lower, vlan) {
            out.push(msg.header.index);
        }
    }
    Ok(out)
}

/// A link whose lower device is `parent` and whose kind is `vlan`.
fn is_vlan_device_of(parent: u32, lower: Option<u32>, vlan: bool) -> bool {
    vlan && lower == Some(parent)
}

/// The id of the XDP program attached to interface `index`, if any.
pub async fn xdp_prog_id(handle: &rtnetlink::Handle, index: u32) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_index(index).execute();
    let msg = links
        .try_next()
        .await
        .map_err(NetError::netlink(format!("link {index}")))?
        .ok_or_else(|| NetError::NoInterface(format!("ifindex {index}")))?;
    let mut attached = false;
    let mut id = None;
    for attr in &msg.attributes {
        if let LinkAttribute::Xdp(xdp) = attr {
            for x in xdp {
                match x {
                    LinkXdp::Attached(a) => attached = !matches!(a, XdpAttached::None),
                    LinkXdp::ProgId(p) => id = Some(*p),
                    _ => {}
                }
            }
        }
    }
    Ok(if attached { id } else { None })
}

#[cfg(test)]
mod tests {
    use super::is_vlan_device_of;

    #[test]
    fn only_vlan_devices_on_the_parent_count() {
        assert!(is_vlan_device_of(2, Some(2), true));
        assert!(
            !is_vlan_device_of(2, Some(3), true),
            "a VLAN device on another link"
        );
        assert!(
            !is_vlan_device_of(2, Some(2), false),
            "a macvlan or veth on the parent"
        );
        assert!(!is_vlan_device_of(2, None, true));
    }
}
