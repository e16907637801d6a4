//! The main loop's reactions: health changes, new backend MACs, the XDP attachment
//! check, and the bounds of the shutdown.

use std::time::Duration;

use fo_config::Config;
use tracing::{error, info, warn};

use super::backends::Neighbours;
use super::{Agent, BGP_WITHDRAW_TIMEOUT, SHUTDOWN_MARGIN};
use crate::net;

/// How long the VRRP routers may take to stop (the longest of their hooks' stop bounds,
/// [`crate::hooks::stop_bound`], plus [`SHUTDOWN_MARGIN`]), and the whole shutdown (BGP
/// withdrawals first, then that, then the rest within the margin).
pub(super) fn stop_timeouts(config: &Config) -> (Duration, Duration) {
    let hooks = config
        .routers
        .iter()
        .filter(|r| r.vrrp().is_some())
        .map(|r| crate::hooks::stop_bound(r.hooks.timeout))
        .max()
        .unwrap_or_default();
    let vrrp = hooks + SHUTDOWN_MARGIN;
    (vrrp, BGP_WITHDRAW_TIMEOUT + vrrp + SHUTDOWN_MARGIN)
}

impl Agent {
    pub(super) async fn on_health_change(&mut self) {
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
        self.apply_ownership_inputs().await;
    }

    pub(super) fn neighbours_changed(&mut self, now: Neighbours) {
        info!(
            resolved = now.0.len(),
            "backend MACs changed; updating the data plane"
        );
        self.neighbours = now;
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
    }

    /// The node must not stay master without its program on the interface.
    pub(super) async fn check_dataplane(&mut self) {
        let attached = match net::link::xdp_prog_id(&self.handle, self.link.index).await {
            Ok(Some(id)) => self.prog_id.is_none_or(|p| p == id),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the interface's XDP state");
                return;
            }
        };
        if attached != self.dataplane_attached {
            if attached {
                info!("XDP program attached again");
            } else {
                error!(interface = %self.link.name, "XDP program detached from the interface: giving up the VIPs");
            }
            self.dataplane_attached = attached;
            self.apply_ownership_inputs().await;
        }
    }
}
