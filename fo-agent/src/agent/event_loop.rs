//! The main loop (signals, control requests, health changes, new backend MACs, the
//! watchdog tick with the XDP attachment check) and the shutdown after it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use fo_config::Config;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::backends::Neighbours;
use super::start::{Inbox, Tasks};
use super::{Agent, nat};
use crate::api::control::{Request, Response};
use crate::net;
use crate::sdnotify;

/// How long BIRD gets to confirm the withdrawal of BGP-announced VIPs on shutdown.
const BGP_WITHDRAW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long VRRP routers get to send their priority-0 adverts and release their VIPs,
/// beyond their last hooks' `hooks.timeout` (see [`stop_timeouts`]).
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(5);
/// How often the XDP attachment is verified (and systemd's watchdog fed, at most this
/// far apart).
const TICK: Duration = Duration::from_secs(1);
/// NAT next hops are prodded every this many ticks.
const NAT_PROD_TICKS: u64 = 5;

/// Serve until SIGTERM or SIGINT, or until a task of the agent ends: its name is
/// returned. SIGHUP reloads the config.
pub(super) async fn run(
    agent: &mut Agent,
    inbox: Inbox,
    lease: &JoinHandle<()>,
) -> anyhow::Result<Option<String>> {
    let Inbox {
        mut ctl_rx,
        mut neigh_rx,
    } = inbox;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut health_rx = agent.services.health.watch();
    let mut tick = tokio::time::interval(sdnotify::watchdog_period().map_or(TICK, |w| w.min(TICK)));

    let mut failure: Option<String> = None;
    info!("running");
    if let Err(e) = sdnotify::notify("READY=1") {
        warn!(error = %e, "sd_notify READY failed");
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = agent.reload_counted("SIGHUP").await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                if matches!(req, Request::Status) {
                    // Walking a big NAT table takes a while (half a second for a
                    // million connections, in batches): the answer is finished by a task
                    // of its own, so that a transition arriving meanwhile is not held
                    // behind a monitoring poll. A requester that leaves (its client
                    // disconnected) ends that task; the shared walk goes on for the others.
                    let answer = agent.status_answer();
                    let mut reply = reply;
                    tokio::spawn(async move {
                        tokio::select! {
                            st = answer => { let _ = reply.send(st); }
                            () = reply.closed() => {}
                        }
                    });
                } else if let Request::Drill { router, back } = &req {
                    // A drill lasts seconds and makes requests of this loop: it runs
                    // beside it.
                    match agent.drill(router, *back) {
                        Ok(drill) => {
                            tokio::spawn(async move {
                                let _ = reply.send(drill.await);
                            });
                        }
                        Err(message) => {
                            error!(request = ?req, "control request refused: {message}");
                            let _ = reply.send(Response::Error { message });
                        }
                    }
                } else {
                    let what = format!("{req:?}");
                    let reload = matches!(req, Request::Reload);
                    let resp = agent.handle_request(req).await;
                    // A refused reload is logged (and counted) by the reload itself.
                    if let Response::Error { message } = &resp
                        && !reload
                    {
                        error!(request = %what, "control request refused: {message}");
                    }
                    let _ = reply.send(resp);
                }
            }
            changed = health_rx.changed() => {
                if changed.is_ok() {
                    agent.on_health_change().await;
                } else {
                    health_rx = agent.services.health.watch();
                }
            }
            Some(n) = neigh_rx.recv() => agent.neighbours_changed(n),
            _ = tick.tick() => {
                let ended = agent.routers.vrrp.ended().or_else(|| lease.is_finished().then(|| "the lease task".to_string()));
                if let Some(what) = ended {
                    // Crash-only: exit, let systemd start a fresh agent. Meanwhile the
                    // data plane's leases run out and the peer takes over as usual.
                    error!(task = %what, "a task of the agent ended unexpectedly: exiting");
                    failure = Some(what);
                    break;
                }
                let _ = sdnotify::notify("WATCHDOG=1");
                agent.check_dataplane().await;
                agent.forget_failed_demotes();
                agent.ticks += 1;
                if agent.ticks % NAT_PROD_TICKS == 1 {
                    nat::prod_next_hops(&agent.config).await;
                }
            }
        }
    }
    Ok(failure)
}

/// Stop in order (BGP withdrawals, then the VRRP routers, then the rest), within
/// [`stop_timeouts`]; the data plane stays pinned. `failure` is what [`run`] returned.
pub(super) async fn shutdown(
    mut agent: Agent,
    tasks: Tasks,
    failure: Option<String>,
) -> anyhow::Result<()> {
    let (vrrp_stop, whole_stop) = stop_timeouts(&agent.config);
    let _ = sdnotify::notify("STOPPING=1");
    // The stop hooks (notify STOP, stop) get their hooks.timeout: ask systemd to wait
    // that long before it kills what is left (the unit's TimeoutStopSec is shorter).
    let _ = sdnotify::notify(&format!("EXTEND_TIMEOUT_USEC={}", whole_stop.as_micros()));
    info!(
        bound = ?whole_stop,
        "shutting down; the data plane stays pinned"
    );
    tasks.stop_listeners();
    // No fence may fault a router while it shuts down.
    agent.routers.fences.stop();
    // BGP announcements go first: the router moves the flows to the other nodes
    // while this one still forwards what arrives.
    std::mem::take(&mut agent.routers.bgp)
        .shutdown(BGP_WITHDRAW_TIMEOUT)
        .await;
    // Masters send priority 0 and release their VIPs before the lease task stops.
    agent.routers.vrrp.shutdown(vrrp_stop).await;
    if agent.config.node.vip_on_interface {
        // Released VRRP VIPs leave the interface before the process exits (static
        // routers keep serving through the pinned data plane, and keep their address).
        for r in agent.config.routers.iter().filter(|r| r.vrrp().is_some()) {
            for &vip in &r.vips {
                if let Err(e) =
                    net::addr::set_address(&agent.host.handle, agent.host.link.index, vip, false)
                        .await
                {
                    warn!(%vip, error = %e, "removing the VIP address");
                }
            }
        }
    }
    agent.services.health.stop().await;
    tasks.stop_rest();
    let _ = std::fs::remove_file(&agent.config.node.control_socket);
    match failure {
        Some(what) => bail!("{what} ended unexpectedly"),
        None => Ok(()),
    }
}

/// How long the VRRP routers may take to stop (the longest of their hooks' stop bounds,
/// [`crate::hooks::stop_bound`], plus [`SHUTDOWN_MARGIN`]), and the whole shutdown (BGP
/// withdrawals first, then that, then the rest within the margin).
fn stop_timeouts(config: &Config) -> (Duration, Duration) {
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
    async fn on_health_change(&mut self) {
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
        self.apply_ownership_inputs().await;
    }

    fn neighbours_changed(&mut self, now: Neighbours) {
        info!(
            resolved = now.0.len(),
            tunnel_hops = now.1.len(),
            "backend MACs or tunnel next hops changed; updating the data plane"
        );
        self.services.neighbours = now;
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
    }

    /// The node must not stay master without its program on the interface.
    async fn check_dataplane(&mut self) {
        let attached = match net::link::xdp_prog_id(&self.host.handle, self.host.link.index).await {
            Ok(Some(id)) => self.xdp.prog_id.is_none_or(|p| p == id),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the interface's XDP state");
                return;
            }
        };
        if attached != self.xdp.attached {
            if attached {
                info!("XDP program attached again");
            } else {
                error!(interface = %self.host.link.name, "XDP program detached from the interface: giving up the VIPs");
            }
            self.xdp.attached = attached;
            self.apply_ownership_inputs().await;
        }
    }
}
