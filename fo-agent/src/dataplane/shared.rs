//! The data plane shared by the agent's tasks: one lock around the maps' owner.
//! Map operations are short syscalls, so a plain mutex is the simplest correct
//! choice; no task holds it across an await. [`lease_task`] is the dead-man switch's
//! other half: it keeps the owned VIPs' leases running while this process lives.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing::error;

use super::{Dataplane, DataplaneError, MonoNanos, ServiceTable};

pub struct Plane {
    pub dp: Dataplane,
    pub table: ServiceTable,
    /// VIP -> lease length, for every VIP this node owns now.
    owned: BTreeMap<IpAddr, Duration>,
    /// VIP -> when this node took it (NAT aging counts from there at the earliest).
    since: BTreeMap<IpAddr, MonoNanos>,
    /// Woken when a lease is taken: the lease task then recomputes its period at once
    /// (it may be sleeping for a longer lease's period, or for no lease at all).
    pub leases_changed: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
pub struct SharedPlane(Arc<Mutex<Plane>>);

impl SharedPlane {
    pub fn new(dp: Dataplane, table: ServiceTable) -> Self {
        SharedPlane(Arc::new(Mutex::new(Plane {
            dp,
            table,
            owned: BTreeMap::new(),
            since: BTreeMap::new(),
            leases_changed: Arc::new(tokio::sync::Notify::new()),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, Plane> {
        // A panic while holding the lock leaves the maps consistent (every write is
        // a whole entry), so a poisoned lock is still usable.
        crate::locks::lock(&self.0)
    }
}

impl Plane {
    /// Take or give up `vips`. Taking writes a lease of `lease`; the lease task keeps
    /// pushing it forward while this process lives (the dead-man switch).
    pub fn set_owned(
        &mut self,
        vips: &[IpAddr],
        owned: bool,
        lease: Duration,
    ) -> Result<(), DataplaneError> {
        let until = MonoNanos::now().after(lease);
        for &vip in vips {
            self.dp.set_vip(vip, owned, until)?;
            if owned {
                if self.owned.insert(vip, lease) != Some(lease) {
                    self.leases_changed.notify_one();
                }
                self.since.entry(vip).or_insert_with(MonoNanos::now);
            } else {
                self.owned.remove(&vip);
                self.since.remove(&vip);
            }
        }
        Ok(())
    }

    /// Stop answering for `vips` but keep forwarding what still reaches this node (make
    /// before break: another node has taken them). The lease stops; `set_owned(false)`
    /// ends the draining. The VIP is no longer this node's in `owned_since` either: the
    /// new master's table is the truth now, so the sync takes its updates for the VIP
    /// (connections it opens during the grace included) and aging leaves them to it.
    pub fn set_draining(&mut self, vips: &[IpAddr]) -> Result<(), DataplaneError> {
        for &vip in vips {
            self.dp.set_vip_draining(vip)?;
            self.owned.remove(&vip);
            self.since.remove(&vip);
        }
        Ok(())
    }

    /// Forward the services of `vips` (announced over BGP) without answering ARP/ND
    /// for them. No lease: whatever the router still sends here is forwarded.
    pub fn set_routed(&mut self, vips: &[IpAddr]) -> Result<(), DataplaneError> {
        for &vip in vips {
            self.dp.set_vip_routed(vip)?;
            self.owned.remove(&vip);
        }
        Ok(())
    }

    /// Make sure every VIP of the config has an entry (not owned unless taken), and
    /// drop entries of VIPs no longer configured.
    pub fn sync_vips(&mut self, configured: &[IpAddr]) -> Result<(), DataplaneError> {
        for (vip, _) in self.dp.vips()? {
            if !configured.contains(&vip) {
                self.dp.remove_vip(vip)?;
                self.owned.remove(&vip);
                self.since.remove(&vip);
            }
        }
        let present: Vec<IpAddr> = self.dp.vips()?.into_iter().map(|(v, _)| v).collect();
        for &vip in configured {
            if !present.contains(&vip) {
                self.dp.set_vip(vip, false, MonoNanos(0))?;
            }
        }
        Ok(())
    }

    /// Push the lease of every owned VIP forward.
    pub fn refresh_leases(&mut self) -> Result<(), DataplaneError> {
        let now = MonoNanos::now();
        for (&vip, &lease) in &self.owned {
            self.dp.set_vip(vip, true, now.after(lease))?;
        }
        Ok(())
    }

    /// The shortest lease in use (sets the refresh period).
    pub fn shortest_lease(&self) -> Option<Duration> {
        self.owned.values().min().copied()
    }

    /// Whether the maps (maybe left by an earlier run of the agent) show `vip` owned
    /// with a lease still running: the node is serving it right now.
    pub fn serving(&self, vip: IpAddr) -> bool {
        let now = MonoNanos::now().0;
        self.dp.vips().ok().is_some_and(|v| {
            v.iter().any(|(ip, st)| {
                *ip == vip && st.flags & fo_common::VIP_OWNED != 0 && st.lease_until_ns > now
            })
        })
    }

    /// Every VIP owned now, with when this node took it.
    pub fn owned_since(&self) -> BTreeMap<IpAddr, MonoNanos> {
        self.since.clone()
    }

    pub fn owns(&self, vip: IpAddr) -> bool {
        self.owned.contains_key(&vip)
    }
}

/// The dead-man switch's other half: push every owned VIP's lease forward, three
/// times per lease. If this process dies or hangs, the leases run out.
pub async fn lease_task(plane: SharedPlane) {
    let changed = plane.lock().leases_changed.clone();
    loop {
        let period = plane.lock().shortest_lease().map(|l| l / 3);
        match period {
            Some(p) => {
                // Woken early by a new lease: refresh now as well, so that a run of
                // new leases never postpones the others'.
                tokio::select! {
                    () = tokio::time::sleep(p) => {}
                    () = changed.notified() => {}
                }
            }
            None => {
                changed.notified().await;
                continue;
            }
        }
        if let Err(e) = plane.lock().refresh_leases() {
            error!(error = %e, "refreshing VIP leases failed");
        }
    }
}
