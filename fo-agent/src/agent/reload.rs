//! `reload` (SIGHUP or the control socket): all or nothing, without a VRRP transition.

use std::time::SystemTime;

use anyhow::Context as _;
use fo_config::{Config, Ownership};
use tracing::{error, info};

use super::{Agent, all_vips, backends, nat, tunnel_checks, vlan};
use crate::health::{self, Health};
use crate::vrrp::Control;

impl Agent {
    /// [`Self::reload`], counted for status and metrics and logged: a refusal at error.
    pub(super) async fn reload_counted(&mut self, via: &str) -> Result<String, String> {
        let outcome = self.reload().await;
        let r = &mut self.loaded.reloads;
        match &outcome {
            Ok(message) => {
                r.succeeded += 1;
                r.last_succeeded = true;
                info!(via, "{message}");
            }
            Err(message) => {
                r.failed += 1;
                r.last_succeeded = false;
                r.last_failure_at = Some(
                    SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                );
                r.last_error = Some(message.clone());
                error!(via, "reload refused, the running config stays: {message}");
            }
        }
        outcome
    }

    /// Re-read the config: validate, refuse what cannot change live, apply the rest
    /// as a diff (services and backends in the maps, checks, priorities and gates),
    /// without a VRRP transition.
    ///
    /// All or nothing: everything that can fail is done before anything changes — the
    /// config read and validated (which bounds addresses, services and backends by the
    /// maps' sizes), key and TLS files read, the new services checked against the
    /// maps (service ids, and backend slots at every step of the write). Then the maps
    /// are written; a write the kernel refuses all the same puts the running config's
    /// services back before the refusal is reported. Only then do the config, the
    /// checks, the drains and the routers' inputs change. A refused reload leaves the
    /// running config, its checks and the maps as they were.
    async fn reload(&mut self) -> Result<String, String> {
        let new = Config::load(&self.loaded.path).map_err(|e| e.to_string())?;
        let blockers = reload_blockers(&self.config, &new);
        if !blockers.is_empty() {
            return Err(format!(
                "{} (restart fo-agent to apply these; the data plane stays pinned and forwarding)",
                blockers.join("; ")
            ));
        }
        let problems = health::problems(&new);
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(|p| p.in_file(&self.loaded.path))
                .collect::<Vec<_>>()
                .join("; "));
        }
        if let Some(problem) = health::run_as_problems(&new).into_iter().next() {
            return Err(problem);
        }
        // Read every key file again: a bad one refuses the reload; a changed key (or
        // auth_key_file added, moved or removed) takes effect at once.
        let keys = crate::vrrp::keyfile::load_all(&new).map_err(|p| p.join("; "))?;

        // Prepare: the new checks (carrying over the results of unchanged ones), the
        // drains that still name a backend, and the services as they would be written.
        // Tunnel services' checks need the encapsulation before their first probe.
        tunnel_checks::attach(&new, &self.host.link.name);
        let previous = self.services.health.snapshot();
        let new_health = Health::start_after(health::plan(&new), Some(&previous));
        let mut drains = self.operator.drains.clone();
        drains.retain(|(s, b)| new.service(s).is_some_and(|s| s.backend(b).is_some()));
        let specs = self.specs_for(&new, &new_health.snapshot(), &drains);
        let fits = self.xdp.plane.lock().table.check(&specs);
        if let Err(e) = fits {
            new_health.stop().await;
            return Err(format!(
                "the new services do not fit the data plane: {e} (nothing was changed)"
            ));
        }

        // Commit the maps; undo them if the kernel refuses a write.
        if let Err(e) = self.write_maps(&new, &specs) {
            let back = self.specs_for(&self.config, &previous, &self.operator.drains);
            let restored = match self.write_maps(&self.config, &back) {
                Ok(()) => "the running config's services were written back".to_string(),
                Err(e2) => format!("writing the running config's services back failed too: {e2:#}"),
            };
            new_health.stop().await;
            return Err(format!("{e:#} ({restored})"));
        }

        // Then the rest, which cannot fail.
        let old_health = std::mem::replace(&mut self.services.health, new_health);
        old_health.stop().await;
        if drains != self.operator.drains {
            // Drains of backends that no longer exist are forgotten.
            self.operator.drains = drains;
            let _ = self.operator.save();
        }
        self.config = new;
        self.loaded.at = SystemTime::now();
        nat::enable_forwarding(&self.config);
        super::tunnel::enable_forwarding(&self.config);
        // New DSR and tunnel backends are resolved by the neighbour task and added when
        // they are.
        self.services
            .backend_addrs
            .send_replace(backends::backend_addrs(&self.config));
        // The services as health says now (the same unless a check moved meanwhile).
        if let Err(e) = self.apply_services() {
            error!("{e:#}");
        }
        self.apply_ownership_inputs().await;
        for r in self.config.routers.iter().filter(|r| r.vrrp().is_some()) {
            if let Some(h) = self.routers.vrrp.router(&r.name) {
                let key = keys
                    .iter()
                    .find(|(n, _)| *n == r.name)
                    .map(|(_, k)| k.clone());
                let _ = h.send(Control::AuthKey(key)).await;
            }
        }
        Ok(format!("reloaded {}", self.loaded.path.display()))
    }

    /// The services `config` wants written, with `snap`'s health and `drains`.
    fn specs_for(
        &self,
        config: &Config,
        snap: &health::Snapshot,
        drains: &backends::Drains,
    ) -> Vec<crate::dataplane::ServiceSpec> {
        backends::plans(
            config,
            &self.host.link,
            &self.services.neighbours,
            snap,
            drains,
        )
        .into_iter()
        .map(|p| p.spec)
        .collect()
    }

    /// Write `config`'s VIP entries and roles and the services `specs`.
    fn write_maps(
        &self,
        config: &Config,
        specs: &[crate::dataplane::ServiceSpec],
    ) -> anyhow::Result<()> {
        let mut p = self.xdp.plane.lock();
        let p = &mut *p;
        vlan::apply_vlans(&mut p.dp, config).context("writing VIP VLANs")?;
        p.sync_vips(&all_vips(config)).context("writing VIPs")?;
        nat::apply_roles(&mut p.dp, config).context("writing VIP roles")?;
        p.table
            .apply(&mut p.dp, specs)
            .context("writing services to the data plane")?;
        Ok(())
    }
}

/// What a reload cannot change without a restart: the node section and each
/// router's identity (everything but its priority, tracked checks and gates).
fn reload_blockers(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.node != new.node {
        out.push("[node] changed".to_string());
    }
    let names = |c: &Config| c.routers.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if names(old) != names(new) {
        out.push("the set of routers changed".to_string());
        return out;
    }
    for (o, n) in old.routers.iter().zip(&new.routers) {
        let mut o = o.clone();
        let mut n = n.clone();
        o.gates.clear();
        n.gates.clear();
        if let (Ownership::Vrrp(ov), Ownership::Vrrp(nv)) = (&mut o.ownership, &mut n.ownership) {
            ov.priority = 0;
            nv.priority = 0;
            // The key file is read again on every reload (rotation, on or off).
            ov.auth_key_file = None;
            nv.auth_key_file = None;
            ov.track.clear();
            nv.track.clear();
        }
        if o != n {
            out.push(format!(
                "router {} changed beyond priority, track and gates",
                o.name
            ));
        }
    }
    out
}
