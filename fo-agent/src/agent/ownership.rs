//! VIP ownership inputs: tracked priorities, gates and the data-plane fault into the
//! VRRP routers (and what they are told before their Startup); static and BGP
//! routers own or announce their VIPs while every gate passes and the program is
//! attached.

use std::collections::{BTreeMap, BTreeSet};

use fo_config::{Config, Ownership};
use fo_vrrp::FaultSource;
use tracing::{error, info, info_span, warn};

use super::{Agent, STATIC_LEASE};
use crate::health;
use crate::vrrp::Control;

/// A static or BGP router's ownership changed: its state before and after (as
/// `status` shows them: master while it serves, fault while a gate is closed or the
/// program detached, else backup) and why, for the transition's log entry.
fn moved(
    states: &mut BTreeMap<String, &'static str>,
    attached: bool,
    router: &str,
    own: bool,
    closed: &[String],
    demoted: bool,
) -> (&'static str, &'static str, &'static str) {
    let (to, reason) = if own {
        ("master", "gates_pass")
    } else if demoted {
        ("backup", "admin_demote")
    } else if !attached {
        ("fault", "dataplane")
    } else if !closed.is_empty() {
        ("fault", "gate_closed")
    } else {
        ("backup", "released")
    };
    let from = states.insert(router.to_string(), to).unwrap_or("init");
    (from, to, reason)
}

impl Agent {
    /// Priorities (tracking), gates and data-plane faults into the routers; static
    /// routers own their VIPs while every gate passes and the program is attached.
    pub(super) async fn apply_ownership_inputs(&mut self) {
        let snap = self.services.health.snapshot();
        for router in self.config.routers.clone() {
            let closed: Vec<String> = health::priority::closed_gates(&router.gates, &snap)
                .into_iter()
                .map(String::from)
                .collect();
            match &router.ownership {
                Ownership::Static => {
                    let own = closed.is_empty() && self.xdp.attached;
                    // After the data plane (a no-op unless the wish changes).
                    let addresses = self.routers.static_addresses.get(&router.name);
                    let owns = self.xdp.plane.lock().owns(router.vips[0]);
                    if own != owns {
                        let _span = info_span!("static", router = %router.name).entered();
                        if let Err(e) = self.xdp.plane.lock().set_owned(
                            &router.owned_addresses(),
                            own,
                            STATIC_LEASE,
                        ) {
                            error!(error = %e, "writing VIP ownership failed");
                        } else {
                            let (from, to, reason) = moved(
                                &mut self.routers.states,
                                self.xdp.attached,
                                &router.name,
                                own,
                                &closed,
                                false,
                            );
                            if own {
                                info!(from, to, reason, vips = ?router.vips, "static ownership: serving the VIPs");
                            } else {
                                warn!(from, to, reason, gates_closed = ?closed, dataplane_attached = self.xdp.attached, "static ownership: VIPs released");
                            }
                        }
                    }
                    if let Some(a) = addresses
                        && self.xdp.plane.lock().owns(router.vips[0]) == own
                    {
                        a.set(own);
                    }
                }
                Ownership::Vrrp(v) => {
                    let Some(h) = self.routers.vrrp.router(&router.name).cloned() else {
                        continue;
                    };
                    let eff = health::priority::effective(v.priority, &v.track, &snap);
                    let last = self.routers.priorities.insert(router.name.clone(), eff);
                    if last != Some(eff) {
                        // Logged when tracking moves it, not for the configured value at start.
                        if last.is_some() || eff != v.priority {
                            let failing: Vec<&str> =
                                health::priority::failing_tracks(&v.track, &snap)
                                    .iter()
                                    .map(|t| t.check.as_str())
                                    .collect();
                            info!(router = %router.name, priority = eff, configured = v.priority, ?failing, "effective priority");
                        }
                        let _ = h.send(Control::Priority(fo_vrrp::Priority(eff))).await;
                    }
                    let mut wanted: BTreeSet<FaultSource> = closed
                        .iter()
                        .map(|g| FaultSource::Gate(g.to_string()))
                        .collect();
                    wanted.extend(
                        health::priority::track_faults(&v.track, &snap)
                            .into_iter()
                            .map(|c| FaultSource::Track(c.to_string())),
                    );
                    if !self.xdp.attached {
                        wanted.insert(FaultSource::Dataplane);
                    }
                    let had = self
                        .routers
                        .faults
                        .entry(router.name.clone())
                        .or_default()
                        .clone();
                    for src in wanted.difference(&had) {
                        warn!(router = %router.name, source = %src, "fault: this node may not be master");
                        let _ = h
                            .send(Control::Fault {
                                source: src.clone(),
                                failing: true,
                            })
                            .await;
                    }
                    for src in had.difference(&wanted) {
                        info!(router = %router.name, source = %src, "fault cleared");
                        let _ = h
                            .send(Control::Fault {
                                source: src.clone(),
                                failing: false,
                            })
                            .await;
                    }
                    self.routers.faults.insert(router.name.clone(), wanted);
                }
                Ownership::Bgp(_) => {
                    let demoted = self.operator.demoted.contains(&router.name);
                    let want = closed.is_empty() && self.xdp.attached && !demoted;
                    if self.routers.bgp.set_wanted(&router.name, want) {
                        let _span = info_span!("bgp", router = %router.name).entered();
                        let (from, to, reason) = moved(
                            &mut self.routers.states,
                            self.xdp.attached,
                            &router.name,
                            want,
                            &closed,
                            demoted,
                        );
                        if want {
                            info!(from, to, reason, vips = ?router.vips, "bgp: announcing");
                        } else if demoted {
                            info!(from, to, reason, "bgp: withdrawing");
                        } else {
                            warn!(from, to, reason, gates_closed = ?closed, dataplane_attached = self.xdp.attached, demoted, "bgp: withdrawing");
                        }
                    }
                }
            }
        }
    }
}

/// What a VRRP router is told before its Startup (see `RouterSpec::initial`).
pub(super) struct InitialInputs {
    demoted: bool,
    /// Fault sources failing already (gates, weight-0 tracks).
    pub(super) faults: BTreeSet<FaultSource>,
    /// Effective priority (configured plus the weights of tracked checks).
    pub(super) priority: u8,
    configured: u8,
}

impl InitialInputs {
    pub(super) fn controls(&self) -> Vec<Control> {
        let mut out = Vec::new();
        if self.demoted {
            out.push(Control::Demote);
        }
        out.extend(self.faults.iter().map(|source| Control::Fault {
            source: source.clone(),
            failing: true,
        }));
        if self.priority != self.configured {
            out.push(Control::Priority(fo_vrrp::Priority(self.priority)));
        }
        out
    }
}

pub(super) fn initial_inputs(
    config: &Config,
    snap: &health::Snapshot,
    demoted: &BTreeSet<String>,
) -> BTreeMap<String, InitialInputs> {
    config
        .routers
        .iter()
        .filter_map(|r| {
            let v = r.vrrp()?;
            let faults = health::priority::closed_gates(&r.gates, snap)
                .into_iter()
                .map(|g| FaultSource::Gate(g.to_string()))
                .chain(
                    health::priority::track_faults(&v.track, snap)
                        .into_iter()
                        .map(|c| FaultSource::Track(c.to_string())),
                )
                .collect();
            let inputs = InitialInputs {
                demoted: demoted.contains(&r.name),
                faults,
                priority: health::priority::effective(v.priority, &v.track, snap),
                configured: v.priority,
            };
            Some((r.name.clone(), inputs))
        })
        .collect()
}
