//! The agent's side of `mode = "nat"`: which addresses are NAT VIPs and SNAT
//! addresses in the data plane, IP forwarding (the program asks the kernel's FIB,
//! which answers only where forwarding is on), keeping the next hops towards NAT
//! backends resolved, and aging the connection table.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use fo_config::{Config, ForwardMode};
use tracing::{debug, error, info, warn};

use crate::dataplane::nat::{NatTable, NatTimeouts};
use crate::dataplane::{Dataplane, DataplaneError, MonoNanos, NatEvents, SharedPlane};

/// How often expired NAT connections are removed.
pub const GC_PERIOD: Duration = Duration::from_secs(1);

/// Mark NAT VIPs and SNAT addresses in the VIPS map.
pub fn apply_roles(dp: &mut Dataplane, config: &Config) -> Result<(), DataplaneError> {
    let mut roles: BTreeMap<IpAddr, (bool, bool)> = BTreeMap::new();
    for r in &config.routers {
        for &v in &r.vips {
            roles.entry(v).or_default();
        }
        for &a in &r.snat {
            roles.entry(a).or_default().1 = true;
        }
    }
    for s in config
        .services
        .iter()
        .filter(|s| s.mode == ForwardMode::Nat)
    {
        roles.entry(s.vip).or_default().0 = true;
    }
    for (addr, (nat, snat)) in roles {
        dp.set_vip_role(addr, nat, snat)?;
    }
    Ok(())
}

/// Whether NAT services of the family (`ipv6`: NAT66) exist.
fn has_nat(config: &Config, ipv6: bool) -> bool {
    config
        .services
        .iter()
        .any(|s| s.mode == ForwardMode::Nat && s.vip.is_ipv6() == ipv6)
}

/// `net.ipv4.conf.IFACE.forwarding = 1` when IPv4 NAT services exist, and
/// `net.ipv6.conf.IFACE.forwarding = 1` when NAT66 ones do: `bpf_fib_lookup` refuses
/// to route (and every NAT packet would be passed, counted as `nat_no_route`) on an
/// interface that does not forward.
pub fn enable_forwarding(config: &Config) {
    for (ipv6, dir, family) in [(false, "ipv4", "IPv4"), (true, "ipv6", "IPv6")] {
        if !has_nat(config, ipv6) {
            continue;
        }
        let path = format!(
            "/proc/sys/net/{dir}/conf/{}/forwarding",
            config.node.interface
        );
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == "1" => {}
            _ => match std::fs::write(&path, "1") {
                Ok(()) => {
                    info!(%path, "NAT services: {family} forwarding enabled on the interface")
                }
                Err(e) => {
                    warn!(%path, error = %e, "NAT services need {family} forwarding on the interface; NAT packets are passed until it is on")
                }
            },
        }
    }
}

/// Make the kernel resolve the next hop towards every NAT backend (a datagram to its
/// discard port): the program passes a packet whose next hop has no neighbour entry.
pub async fn prod_next_hops(config: &Config) {
    let addrs = super::backends::backend_addrs_of(config, ForwardMode::Nat);
    if addrs.is_empty() {
        return;
    }
    for (ipv6, any) in [(false, "0.0.0.0:0"), (true, "[::]:0")] {
        let Ok(sock) = tokio::net::UdpSocket::bind(any).await else {
            continue;
        };
        for &a in addrs.iter().filter(|a| a.is_ipv6() == ipv6) {
            let _ = sock.send_to(&[0], SocketAddr::new(a, 9)).await;
        }
    }
}

/// Age the NAT table: remove the expired connections of the VIPs this node owns,
/// counting from when it took them (synced connections were last seen by the old
/// master). Runs off the main loop on its own map handles.
pub async fn gc_task(
    plane: SharedPlane,
    pin_dir: PathBuf,
    timeouts: NatTimeouts,
    sync: Option<tokio::sync::mpsc::Sender<Vec<(fo_common::FlowKey, fo_common::NatFlow)>>>,
) {
    let mut table: Option<NatTable> = None;
    let mut warned = false;
    loop {
        tokio::time::sleep(GC_PERIOD).await;
        let since = plane.lock().owned_since();
        if since.is_empty() {
            continue;
        }
        let t = match table.take() {
            Some(t) => t,
            None => match NatTable::open(&pin_dir) {
                Ok(t) => t,
                Err(e) => {
                    if !warned {
                        error!(error = %crate::dataplane::error_chain(&e), "opening the NAT table");
                        warned = true;
                    }
                    continue;
                }
            },
        };
        let swept = tokio::task::spawn_blocking(move || {
            let mut t = t;
            let r = t.expire(
                MonoNanos::now(),
                |k| since.get(&k.dst.to_ip(k.family)).copied(),
                &timeouts,
            );
            (t, r)
        })
        .await;
        match swept {
            Ok((t, Ok(removed))) => {
                if !removed.is_empty() {
                    debug!(removed = removed.len(), "NAT connections aged out");
                    if let Some(s) = &sync {
                        let _ = s.send(removed).await;
                    }
                }
                table = Some(t);
            }
            Ok((t, Err(e))) => {
                error!(error = %crate::dataplane::error_chain(&e), "aging the NAT table");
                table = Some(t);
            }
            Err(e) => error!(error = %e, "NAT aging task"),
        }
    }
}

/// Without connection-state sync nothing needs the data plane's connection events:
/// read and drop them as they come, so the ring never fills and `nat_event_lost`
/// keeps meaning "the sync fell behind".
pub async fn discard_events(plane: SharedPlane) {
    let Some(events) = NatEvents::take(&mut plane.lock().dp) else {
        return;
    };
    let mut events = match events {
        Ok(events) => events,
        Err(e) => {
            warn!(error = %e, "NAT event ring: cannot poll it (events pile up unread)");
            return;
        }
    };
    loop {
        if let Err(e) = events.discard().await {
            warn!(error = %e, "NAT event ring");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
