//! Health checks through the tunnel: when the config has a tunnel service, the
//! health-check encapsulation program goes on the egress of the node's interface
//! (the interface the tunnel traffic leaves by), so the marked probes of its
//! backends take the tunnel (see `dataplane::hc`).

use anyhow::Context as _;
use fo_config::{Config, ForwardMode};
use tracing::info;

use crate::dataplane::hc;

/// Attach (or refresh) the program when `config` has a tunnel service; a program an
/// earlier config attached stays (it touches only marked probes).
pub(super) fn attach(config: &Config, interface: &str) -> anyhow::Result<()> {
    if !config
        .services
        .iter()
        .any(|s| s.mode == ForwardMode::Tunnel && s.check.is_some())
    {
        return Ok(());
    }
    let base = config.node.tunnel_check_mark;
    let how = hc::attach(&config.node.bpf_dir, interface, base)
        .with_context(|| format!("attaching the health-check encapsulation to {interface}"))?;
    info!(
        interface,
        ?how,
        mark_base = format_args!("{base:#010x}"),
        "tunnel services' backend checks go through the tunnel"
    );
    Ok(())
}
