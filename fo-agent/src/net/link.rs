//! Interface facts: index, MAC, operational state.

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkXdp, State, XdpAttached};

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
