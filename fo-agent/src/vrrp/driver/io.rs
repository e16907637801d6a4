//! Where a router's effects go: adverts in (decoded, authenticated, replay-checked) and
//! out, the VIPs' ownership in the data plane (after the sync-then-claim wait), and the
//! gratuitous ARP/NA burst and refresh.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fo_vrrp::{Advert, Event, Priority, RxMeta, State};
use tracing::{debug, error, info, warn};

use super::status::HEARD_MAX;
use super::{ClaimInputs, Driver, GarpTiming};
use crate::dataplane::SharedPlane;
use crate::locks::lock;
use crate::vrrp::garp::Announcer;
use crate::vrrp::socket::{Received, VrrpSocket};

/// Where the router's effects go.
pub(in crate::vrrp) struct Io {
    pub socket: Arc<VrrpSocket>,
    pub announcer: Arc<Announcer>,
    pub plane: SharedPlane,
    /// The VIPs as interface addresses (`vip_on_interface = true`), else `None`.
    pub addresses: Option<crate::net::addr::VipAddresses>,
    /// Where the router's claim inputs are read.
    pub claim: ClaimInputs,
}

/// At most one warning per [`RateLimit::PERIOD`], saying how many were held back.
#[derive(Default)]
pub(super) struct RateLimit {
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    const PERIOD: Duration = Duration::from_secs(10);

    /// `Some(held back since the last one)` when a warning may be logged now.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < Self::PERIOD => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

impl Driver {
    pub(super) fn packet(&mut self, p: Received) {
        let meta = RxMeta {
            src: p.src,
            dst: p.dst,
            ttl_or_hop_limit: p.ttl_or_hop_limit,
            version: self.spec.interval().version(),
            vrid: self.spec.vrid,
            interval: self.spec.interval(),
            auth: self.spec.auth,
            peers: &self.spec.peers,
        };
        let decoded = match &self.spec.auth_key {
            Some(key) => {
                fo_vrrp::decode_authenticated(&p.payload, &meta, key).and_then(|(advert, seq)| {
                    self.replay.check(p.src, seq)?;
                    Ok((advert, Some(seq)))
                })
            }
            None => fo_vrrp::decode(&p.payload, &meta).map(|a| (a, None)),
        };
        match decoded {
            Ok((advert, seq)) => {
                if let Some(seq) = seq {
                    self.replay.accept(p.src, seq);
                }
                self.stats.adverts_in += 1;
                {
                    let mut st = lock(&self.status);
                    st.heard.insert(p.src, Instant::now());
                    // A segment has a few VRRP speakers; keep forged sources from growing it.
                    if st.heard.len() > HEARD_MAX
                        && let Some(oldest) =
                            st.heard.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a)
                    {
                        st.heard.remove(&oldest);
                    }
                }
                if !self.warned_addresses && !same_set(&advert.addresses, &self.spec.vips) {
                    self.warned_addresses = true;
                    warn!(from = %p.src, theirs = ?advert.addresses, ours = ?self.spec.vips,
                        "the peer advertises other virtual addresses: check both configurations");
                }
                self.handle(Instant::now(), Event::advert(p.src, &advert));
            }
            Err(reason) => {
                *self.stats.drops.entry(reason.as_str()).or_default() += 1;
                if matches!(reason.as_str(), "auth" | "replay") {
                    if let Some(held) = self.auth_warn.allow(Instant::now()) {
                        error!(from = %p.src, %reason, held_back = held,
                            "unauthenticated advert ignored (one warning per 10 s; all are counted in fo_vrrp_dropped_total)");
                    }
                } else {
                    debug!(from = %p.src, %reason, "advert dropped");
                }
                self.publish();
            }
        }
    }

    /// The data plane first: with the lease set to Master_Down_Interval, a dead agent's
    /// VIPs stop being answered about when a peer takes them over.
    pub(super) fn set_ownership(&mut self, owned: bool) {
        let lease = self.router.master_down_interval();
        if let Err(e) = self
            .io
            .plane
            .lock()
            .set_owned(&self.spec.owned(), owned, lease)
        {
            error!(error = %e, owned, "writing VIP ownership to the data plane failed");
        }
        if !owned {
            if let Some(b) = self.burst.take() {
                b.abort();
            }
            self.next_refresh = None;
        }
        if let Some(a) = &self.io.addresses {
            a.set(owned);
        }
    }

    /// Make before break (`Action::Drain`): the new Master serves; stop answering ARP/ND
    /// for the addresses (and stop announcing them) but keep forwarding what still reaches
    /// this node until the grace ends (`SetOwnership { owned: false }` follows).
    pub(super) fn drain(&mut self, grace: Duration) {
        info!(
            grace_ms = grace.as_millis() as u64,
            "another master serves the VIPs: draining (forwarding what still arrives, no ARP/ND answers)"
        );
        if let Err(e) = self.io.plane.lock().set_draining(&self.spec.owned()) {
            error!(error = %e, "writing the VIPs' draining to the data plane failed");
        }
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        self.next_refresh = None;
        if let Some(a) = &self.io.addresses {
            a.set(false);
        }
    }

    /// Sync-then-claim (`Action::AwaitSync`): before serving the VIPs of NAT services,
    /// wait at most `bound` until the connection table holds what the peers sent, so the
    /// connections the old master translated continue here. A zero bound: it does.
    pub(super) fn await_sync(&self, bound: Duration) {
        let Some(table_current) = &self.io.claim.table_current else {
            return;
        };
        if bound.is_zero() {
            info!("connection table current: claiming the VIPs");
            return;
        }
        let (current, waited) = tokio::task::block_in_place(|| table_current.wait_true(bound));
        if current {
            info!(
                waited_ms = waited.as_millis() as u64,
                "connection table current: claiming the VIPs"
            );
        } else {
            warn!(
                waited_ms = waited.as_millis() as u64,
                "connection table still not current after one advert interval: claiming the VIPs anyway"
            );
        }
    }

    pub(super) fn send_advert(&mut self, priority: Priority) {
        let advert = Advert {
            vrid: self.spec.vrid,
            priority,
            max_adver_interval: self.spec.interval(),
            addresses: self.spec.vips.clone(),
            auth: self.spec.auth,
        };
        let src = self.spec.fsm.primary_address;
        let mut failed = None;
        for dst in self.spec.destinations() {
            let sent = advert
                .encode(src, dst)
                .map(|msg| match &self.spec.auth_key {
                    Some(key) => {
                        fo_vrrp::auth::seal(&msg, src, dst, key, self.sequence.next_sequence())
                    }
                    None => msg,
                })
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                .and_then(|bytes| self.io.socket.send(&bytes, src, dst));
            match sent {
                Ok(()) => self.stats.adverts_out += 1,
                Err(e) => {
                    self.stats.send_errors += 1;
                    failed = Some((dst, e));
                }
            }
        }
        // Log a failing link once, not at every advert.
        match (failed, self.send_failing) {
            (Some((dst, e)), false) => {
                warn!(%dst, error = %e, "sending the advert failed (logged once until it works again)");
                self.send_failing = true;
            }
            (None, true) => {
                info!("sending adverts works again");
                self.send_failing = false;
            }
            _ => {}
        }
    }

    /// The first announcement now; the rest of the burst spaced out by a task; then the
    /// periodic refresh while master.
    pub(super) fn announce_burst(&mut self) {
        self.announce_once();
        if let Some(b) = self.burst.take() {
            b.abort();
        }
        let GarpTiming {
            count,
            interval,
            refresh,
        } = self.spec.garp;
        if count > 1 {
            let announcer = self.io.announcer.clone();
            let vips = self.spec.owned();
            let vlan = self.spec.vlan;
            self.burst = Some(tokio::spawn(async move {
                for _ in 1..count {
                    tokio::time::sleep(interval).await;
                    if let Err(e) = announcer.announce(&vips, vlan) {
                        debug!(error = %e, "gratuitous ARP/NA failed");
                    }
                }
            }));
            self.stats.announcements += u64::from(count - 1);
        }
        self.next_refresh = refresh.map(|r| Instant::now() + r);
    }

    pub(super) fn announce_once(&mut self) {
        match self
            .io
            .announcer
            .announce(&self.spec.owned(), self.spec.vlan)
        {
            Ok(()) => self.stats.announcements += 1,
            Err(e) => warn!(error = %e, "gratuitous ARP/NA failed"),
        }
    }

    pub(super) fn refresh(&mut self) {
        if self.router.state() == State::Master {
            self.announce_once();
            self.next_refresh = self.spec.garp.refresh.map(|r| Instant::now() + r);
        } else {
            self.next_refresh = None;
        }
        self.publish();
    }
}

pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_to_one_per_period_and_count_what_was_held() {
        let mut l = RateLimit::default();
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0), "the first one is logged");
        for i in 1..=5 {
            assert_eq!(
                l.allow(t0 + Duration::from_secs(i)),
                None,
                "within the period"
            );
        }
        assert_eq!(
            l.allow(t0 + RateLimit::PERIOD),
            Some(5),
            "after the period: logged, with the 5 held back"
        );
        assert_eq!(l.allow(t0 + RateLimit::PERIOD), None);
    }
}
