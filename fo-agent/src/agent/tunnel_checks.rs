//! Health checks through the tunnel: when the config has a tunnel service, the
//! health-check encapsulation program goes on the egress of the node's interface
//! (the interface the tunnel traffic leaves by), so the marked probes of its
//! backends take the tunnel (see `dataplane::hc`).

use fo_config::{Config, ForwardMode};
use tracing::{error, info};

use crate::dataplane::hc;
use crate::health;

/// Attach (or refresh) the program when `config` has a tunnel service with a check; a
/// program an earlier config attached stays (it touches only marked probes). A kernel
/// that refuses it (tcx needs Linux 6.6) does not stop the agent: the error is logged
/// and those checks go direct, as DSR checks do, saying nothing of the tunnel.
pub(super) fn attach(config: &Config, interface: &str) {
    if !config
        .services
        .iter()
        .any(|s| s.mode == ForwardMode::Tunnel && s.check.is_some())
    {
        return;
    }
    let base = config.node.tunnel_check_mark;
    match hc::attach(&config.node.bpf_dir, interface, base) {
        Ok(how) => {
            health::probe::set_encapsulation(true);
            info!(
                interface,
                ?how,
                mark_base = format_args!("{base:#010x}"),
                "tunnel services' backend checks go through the tunnel"
            );
        }
        Err(e) => {
            health::probe::set_encapsulation(false);
            error!(
                interface,
                error = %e,
                "the health-check encapsulation could not be attached (it needs tcx: Linux 6.6 or later); tunnel services' backend checks go direct and do not prove the tunnel"
            );
        }
    }
}
