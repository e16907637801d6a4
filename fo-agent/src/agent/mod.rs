//! `fo-agent run`: the data plane, ownership of the VIPs and the services, wired
//! together in one tokio process.

mod backends;
mod state;

use std::time::Duration;

use anyhow::{Context as _, bail};
use fo_config::{Config, Ownership, XdpMode};
use tracing::{error, info, info_span, warn, Instrument as _};

use crate::dataplane::{Attach, Dataplane, LoadOptions, Origin, ServiceTable, XdpAttachMode};
use crate::net;
use crate::vrrp::Vrrp;
use backends::Neighbours;
pub use state::SharedPlane;

/// Lease of a statically owned VIP: how long the data plane keeps answering ARP/ND
/// for it after the agent stops refreshing.
pub const STATIC_LEASE: Duration = Duration::from_secs(1);
/// How long VRRP routers get to send their priority-0 adverts and run their hooks.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a backend's MAC before leaving it out for now.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often backend MACs are checked again.
const NEIGHBOUR_REFRESH: Duration = Duration::from_secs(5);

pub fn load_options(config: &Config) -> LoadOptions {
    let n = &config.node;
    LoadOptions {
        pin_dir: n.bpf_dir.clone(),
        maglev_size: n.maglev_table_size,
        max_services: n.max_services,
        max_backends: n.max_backends,
        flow_table_size: n.flow_table_size,
    }
}

pub fn attach_of(config: &Config) -> Attach {
    Attach::Interface {
        name: config.node.interface.clone(),
        mode: match config.node.xdp_mode {
            XdpMode::Native => XdpAttachMode::Native,
            XdpMode::Generic => XdpAttachMode::Generic,
        },
    }
}

/// Run until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    for r in &config.routers {
        if matches!(r.ownership, Ownership::Bgp(_)) {
            bail!(
                "router {}: ownership {:?} is not available in this build yet; use \"vrrp\" or \"static\"",
                r.name,
                r.ownership_kind()
            );
        }
    }
    backends::warn_unsupported(&config);
    let handle = net::handle()?;
    let link = net::link::by_name(&handle, &config.node.interface)
        .await
        .with_context(|| format!("interface {}", config.node.interface))?;

    let dp = Dataplane::open(&load_options(&config), &attach_of(&config))
        .context("opening the data plane")?;
    match dp.origin() {
        Origin::Loaded => info!(interface = %link.name, "XDP program loaded and attached"),
        Origin::Adopted => info!(interface = %link.name, "adopted the pinned XDP program and maps (nothing reloaded)"),
    }
    let table = ServiceTable::from_dataplane(&dp).context("reading the service maps")?;
    let plane = SharedPlane::new(dp, table);
    {
        let mut p = plane.lock();
        p.dp.set_iface(link.index, link.mac)?;
        let vips: Vec<_> = config.routers.iter().flat_map(|r| r.vips.iter().copied()).collect();
        p.sync_vips(&vips)?;
    }

    let neighbours = Neighbours::resolve_all(&handle, &config, &link, RESOLVE_TIMEOUT).await;
    apply_services(&plane, &config, &link, &neighbours)?;

    for router in config.routers.iter().filter(|r| matches!(r.ownership, Ownership::Static)) {
        let span = info_span!("router", name = %router.name);
        let _e = span.enter();
        plane.lock().set_owned(&router.vips, true, STATIC_LEASE)?;
        info!(vips = ?router.vips, "static ownership: serving the VIPs");
    }

    let lease = tokio::spawn(lease_task(plane.clone()));
    let vrrp = Vrrp::start(&config, &handle, &link, plane.clone()).await.context("starting VRRP")?;
    let refresher = tokio::spawn(
        neighbour_task(plane.clone(), handle.clone(), config.clone(), link.clone(), neighbours)
            .instrument(info_span!("neighbours")),
    );
    info!("running");
    wait_for_shutdown().await?;
    info!("shutting down; the data plane stays pinned");
    // Masters send priority 0 and release their VIPs before the lease task stops.
    vrrp.shutdown(SHUTDOWN_TIMEOUT).await;
    lease.abort();
    refresher.abort();
    Ok(())
}

fn apply_services(
    plane: &SharedPlane,
    config: &Config,
    link: &net::link::LinkInfo,
    neighbours: &Neighbours,
) -> anyhow::Result<()> {
    let specs = backends::specs(config, link, neighbours);
    let mut p = plane.lock();
    let p = &mut *p;
    let summary = p.table.apply(&mut p.dp, &specs).context("writing services to the data plane")?;
    info!(?summary, "services applied");
    Ok(())
}

/// The dead-man switch's other half: push every owned VIP's lease forward, three
/// times per lease. If this process dies or hangs, the leases run out.
async fn lease_task(plane: SharedPlane) {
    loop {
        let period = plane.lock().shortest_lease().map_or(Duration::from_millis(100), |l| l / 3);
        tokio::time::sleep(period).await;
        if let Err(e) = plane.lock().refresh_leases() {
            error!(error = %e, "refreshing VIP leases failed");
        }
    }
}

async fn neighbour_task(
    plane: SharedPlane,
    handle: rtnetlink::Handle,
    config: Config,
    link: net::link::LinkInfo,
    mut known: Neighbours,
) {
    loop {
        tokio::time::sleep(NEIGHBOUR_REFRESH).await;
        let now = Neighbours::resolve_all(&handle, &config, &link, RESOLVE_TIMEOUT).await;
        if now != known {
            info!("backend MACs changed; updating the data plane");
            if let Err(e) = apply_services(&plane, &config, &link, &now) {
                warn!(error = %format!("{e:#}"), "updating services failed");
                continue;
            }
            known = now;
        }
    }
}

async fn wait_for_shutdown() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
