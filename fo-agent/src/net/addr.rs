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
    while let Some(msg) = msgs
        .try_next()
        .await
        .map_err(NetError::netlink(format!("addresses of ifindex {ifindex}")))?
    {
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

/// An IPv4 address on an interface, with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4Address {
    pub address: std::net::Ipv4Addr,
    pub prefix_len: u8,
    /// The kernel's "secondary" flag: another address of the same prefix came first.
    pub secondary: bool,
}

/// The IPv4 addresses on `ifindex` in the kernel's order (tentative ones left out).
pub async fn ipv4_addresses(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<Vec<V4Address>, NetError> {
    let mut req = handle.address().get().set_link_index_filter(ifindex);
    req.message_mut().header.family = AddressFamily::Inet;
    let mut msgs = req.execute();
    let mut out = Vec::new();
    while let Some(msg) = msgs
        .try_next()
        .await
        .map_err(NetError::netlink(format!("addresses of ifindex {ifindex}")))?
    {
        if msg.header.index != ifindex
            || msg.header.family != AddressFamily::Inet
            || msg.header.flags.contains(AddressHeaderFlags::Tentative)
        {
            continue;
        }
        let (mut address, mut local) = (None, None);
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Local(a) => local = Some(*a),
                _ => {}
            }
        }
        if let Some(IpAddr::V4(a)) = local.or(address) {
            out.push(V4Address {
                address: a,
                prefix_len: msg.header.prefix_len,
                secondary: msg.header.flags.contains(AddressHeaderFlags::Secondary),
            });
        }
    }
    Ok(out)
}

const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps a router's VIPs configured as addresses on the interface while the router
/// serves them (`vip_on_interface = true`), for local services that bind to a VIP.
/// Changes are applied in order by one task, after the data plane was written; the
/// latest wish wins. At start the wish is "absent" (which also clears addresses left
/// behind by an agent that crashed while master) unless the router resumes. A failed change is retried (1 s,
/// doubling up to 30 s) until it takes or the wish changes: a backup left with the
/// VIP as an address would answer ARP for it.
pub struct VipAddresses {
    tx: tokio::sync::watch::Sender<bool>,
}

impl VipAddresses {
    /// Start with the wish `present`: true for a router that a restart finds still
    /// serving, so that its addresses are not removed and added back.
    pub fn spawn(
        handle: rtnetlink::Handle,
        ifindex: u32,
        vips: Vec<IpAddr>,
        present: bool,
    ) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel(present);
        tokio::spawn(async move {
            let mut backoff = RETRY_FIRST;
            loop {
                let present = *rx.borrow_and_update();
                let mut failed = false;
                for &vip in &vips {
                    if let Err(e) = set_address(&handle, ifindex, vip, present).await {
                        tracing::warn!(%vip, present, error = %e, retry_in = ?backoff, "VIP address on the interface");
                        failed = true;
                    }
                }
                if failed {
                    match tokio::time::timeout(backoff, rx.changed()).await {
                        Ok(Err(_)) => return,
                        Ok(Ok(())) => backoff = RETRY_FIRST,
                        Err(_) => backoff = (backoff * 2).min(RETRY_MAX),
                    }
                    continue;
                }
                backoff = RETRY_FIRST;
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        VipAddresses { tx }
    }

    /// Wish the addresses present or absent; a wish equal to the last one is a no-op.
    pub fn set(&self, present: bool) {
        self.tx
            .send_if_modified(|v| std::mem::replace(v, present) != present);
    }
}

/// Add (`present`) or remove `vip` as a host address on `ifindex`; idempotent.
pub async fn set_address(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    vip: IpAddr,
    present: bool,
) -> Result<(), NetError> {
    let prefix = if vip.is_ipv4() { 32 } else { 128 };
    let what = || format!("address {vip}/{prefix} on ifindex {ifindex}");
    if present {
        handle
            .address()
            .add(ifindex, vip, prefix)
            .replace()
            .execute()
            .await
            .map_err(NetError::netlink(what()))
    } else {
        let mut req = handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(vip)
            .execute();
        while let Some(msg) = req.try_next().await.map_err(NetError::netlink(what()))? {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(NetError::netlink(what()))?;
        }
        Ok(())
    }
}

/// Every address on `ifindex`, both families, but IPv6 link-local and tentative ones
/// (what a backend receives tunnel packets on).
pub async fn all_addresses(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<Vec<IpAddr>, NetError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = handle.address().get().set_link_index_filter(ifindex);
        req.message_mut().header.family = family;
        let mut msgs = req.execute();
        while let Some(msg) = msgs
            .try_next()
            .await
            .map_err(NetError::netlink(format!("addresses of ifindex {ifindex}")))?
        {
            if msg.header.index != ifindex
                || msg.header.family != family
                || msg.header.scope == AddressScope::Link
                || msg.header.flags.contains(AddressHeaderFlags::Tentative)
            {
                continue;
            }
            let (mut address, mut local) = (None, None);
            for attr in &msg.attributes {
                match attr {
                    AddressAttribute::Address(a) => address = Some(*a),
                    AddressAttribute::Local(a) => local = Some(*a),
                    _ => {}
                }
            }
            if let Some(a) = local.or(address) {
                out.push(a);
            }
        }
    }
    Ok(out)
}
