//! Split-brain protection for two nodes without an outside arbiter: one task per VRRP
//! router with a `witness`. It probes the witness and the router's peers with ICMP echo
//! (VRRP backups are silent, so a master cannot learn from VRRP alone that its peer is
//! still there), counts a peer's VRRP adverts as proof of life too, and applies the
//! pure rule of [`decide`]: a node that reaches neither its peer nor the witness holds
//! the router in fault (fault source [`FaultSource::Fenced`]): a master stops serving the
//! VIPs, a backup never claims them. When either answers again the fault clears and the
//! router returns to the election.
//!
//! The task also reports every answer to the router ([`RouterHandle::liveness`]): at its
//! Master_Down_Timer a backup claims only if the peer or the witness answered within the
//! witness's timeout (the rule is fo-vrrp's, `Config::fence_timeout`), so a cut-off
//! backup never claims the VIPs even for the moment before this task notices.
//!
//! Peers: the configured unicast `peers`, or in multicast mode every sender of a valid
//! advert of the router's VRID heard so far.

pub mod decide;
mod status;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fo_config::{Config, Witness};
use fo_vrrp::FaultSource;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::locks::{LastSeen, lock};
use crate::net::icmp::Pinger;
use crate::vrrp::{Control, RouterHandle, Vrrp};
use decide::{Tracker, Verdict, decide};
pub use status::{FenceStatus, Reach};

/// The fence tasks of the agent's routers.
#[derive(Default)]
pub struct Fences {
    routers: BTreeMap<String, (Arc<Mutex<FenceStatus>>, JoinHandle<()>)>,
}

impl Fences {
    /// Start a task for every VRRP router of `config` that has a witness.
    /// `ifindex`: the node's interface, the scope of IPv6 link-local targets.
    pub fn start(config: &Config, vrrp: &Vrrp, ifindex: u32) -> Fences {
        let mut fences = Fences::default();
        for r in &config.routers {
            let (Some(v), Some(h)) = (r.vrrp(), vrrp.router(&r.name)) else {
                continue;
            };
            let (Some(w), Some(liveness)) = (v.witness.clone(), h.liveness()) else {
                continue;
            };
            let status = Arc::new(Mutex::new(FenceStatus {
                fenced: false,
                witness: Reach {
                    address: w.address,
                    reachable: true,
                    last_reply_seconds_ago: None,
                },
                peers: Vec::new(),
                fences_total: 0,
            }));
            let task = Task {
                witness: w,
                peers: v.peers.clone(),
                ifindex,
                router: h.clone(),
                liveness,
                status: status.clone(),
            };
            let span = info_span!("fence", router = %r.name);
            let join = tokio::spawn(task.run().instrument(span));
            fences.routers.insert(r.name.clone(), (status, join));
        }
        fences
    }

    /// The fence state of router `name`, if it has a witness.
    pub fn status(&self, name: &str) -> Option<FenceStatus> {
        self.routers.get(name).map(|(s, _)| lock(s).clone())
    }

    /// Stop probing (before the routers shut down, so that no fault arrives mid-way).
    pub fn stop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.routers) {
            task.abort();
        }
    }
}

impl Drop for Fences {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Task {
    witness: Witness,
    /// Configured unicast peers; empty = multicast (peers learnt from adverts).
    peers: Vec<IpAddr>,
    ifindex: u32,
    router: RouterHandle,
    liveness: Arc<LastSeen>,
    status: Arc<Mutex<FenceStatus>>,
}

/// One probed address.
struct Target {
    pinger: Option<Arc<Pinger>>,
    tracker: Tracker,
    receiver: Option<JoinHandle<()>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(r) = self.receiver.take() {
            r.abort();
        }
    }
}

impl Task {
    async fn run(self) {
        let start = Instant::now();
        let timeout = self.witness.timeout;
        // Identifiers: this process and this router, so that two agents (or two
        // routers) on one host do not take each other's replies.
        let id_base = (std::process::id() as u16).wrapping_mul(31);
        let (tx, mut replies) = mpsc::channel::<(IpAddr, Instant)>(64);
        let mut targets: BTreeMap<IpAddr, Target> = BTreeMap::new();
        let open = |addr: IpAddr, n: usize, tx: mpsc::Sender<(IpAddr, Instant)>| {
            let id = id_base.wrapping_add(n as u16);
            match Pinger::open(addr, id, self.ifindex) {
                Ok(p) => {
                    let p = Arc::new(p);
                    let rp = p.clone();
                    let receiver = tokio::spawn(async move {
                        loop {
                            match rp.recv().await {
                                Ok(_) => {
                                    if tx.send((rp.target(), Instant::now())).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    debug!(target = %rp.target(), error = %e, "ICMP receive failed");
                                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                }
                            }
                        }
                    });
                    Target {
                        pinger: Some(p),
                        tracker: Tracker::new(start, timeout),
                        receiver: Some(receiver),
                    }
                }
                Err(e) => {
                    error!(%addr, error = %e, "cannot open an ICMP socket (needs CAP_NET_RAW): this target counts as unreachable");
                    Target {
                        pinger: None,
                        tracker: Tracker::new(start, timeout),
                        receiver: None,
                    }
                }
            }
        };
        let witness = self.witness.address;
        targets.insert(witness, open(witness, 0, tx.clone()));
        for &p in &self.peers {
            let n = targets.len();
            targets.entry(p).or_insert_with(|| open(p, n, tx.clone()));
        }
        info!(%witness, peers = ?self.peers, interval = ?self.witness.interval, ?timeout,
            "split-brain protection: probing the witness and the peers");
        if self.peers.is_empty() {
            warn!(
                "no unicast peers: a peer is probed once its adverts have been heard; until then only the witness counts (configure `peers` to probe the peer from the start)"
            );
        }

        let mut tick = tokio::time::interval(self.witness.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq: u16 = 0;
        let mut fenced = false;
        let mut fences_total = 0u64;
        let mut last = (true, true);
        loop {
            let deadline = targets
                .values()
                .map(|t| t.tracker.expires())
                .filter(|e| *e > Instant::now())
                .min();
            tokio::select! {
                _ = tick.tick() => {
                    let rs = self.router.status();
                    if self.peers.is_empty() {
                        // Multicast: whoever sent us adverts is a peer from now on.
                        for addr in rs.heard.keys() {
                            if !targets.contains_key(addr) {
                                info!(peer = %addr, "probing a peer heard on the VRRP group");
                                let n = targets.len();
                                targets.insert(*addr, open(*addr, n, tx.clone()));
                            }
                        }
                    }
                    seq = seq.wrapping_add(1);
                    for t in targets.values() {
                        if let Some(p) = &t.pinger
                            && let Err(e) = p.send(seq)
                        {
                            debug!(target = %p.target(), error = %e, "probe not sent");
                        }
                    }
                }
                Some((addr, at)) = replies.recv() => {
                    if let Some(t) = targets.get_mut(&addr) {
                        t.tracker.reply(at);
                    }
                }
                () = sleep_until(deadline) => {}
            }
            // A peer's adverts prove it is there as well as its echo replies do.
            let rs = self.router.status();
            for (addr, at) in &rs.heard {
                if *addr != witness
                    && let Some(t) = targets.get_mut(addr)
                {
                    t.tracker.reply(*at);
                }
            }
            for t in targets.values() {
                if let Some(at) = t.tracker.last_reply() {
                    self.liveness.seen(at);
                }
            }
            let now = Instant::now();
            let witness_up = targets[&witness].tracker.reachable(now);
            let peer_up = targets
                .iter()
                .any(|(a, t)| *a != witness && t.tracker.reachable(now));
            if (peer_up, witness_up) != last {
                match (peer_up, witness_up) {
                    (true, true) => info!("peer and witness reachable"),
                    (true, false) => warn!(%witness, "witness unreachable (the peer answers)"),
                    (false, true) => {
                        warn!("peer unreachable; the witness answers: the election decides")
                    }
                    (false, false) => warn!(%witness, "neither the peer nor the witness answers"),
                }
                last = (peer_up, witness_up);
            }
            let verdict = decide(rs.state, peer_up, witness_up);
            // The router may have fenced itself at its Master_Down_Timer (see the module
            // docs): what counts is whether it carries the fault, not what this task sent.
            let carried = rs.faults.contains(&FaultSource::Fenced.to_string());
            if verdict.fenced() != fenced {
                fenced = verdict.fenced();
                if fenced {
                    fences_total += 1;
                    match verdict {
                        Verdict::StopServing => {
                            error!(
                                "fencing: cut off from peer and witness, this master stops serving the VIPs"
                            )
                        }
                        _ => {
                            error!(
                                "fencing: cut off from peer and witness, this node must not claim the VIPs"
                            )
                        }
                    }
                } else {
                    info!("fence lifted: back to the election");
                }
            }
            if fenced != carried {
                let _ = self
                    .router
                    .send(Control::Fault {
                        source: FaultSource::Fenced,
                        failing: fenced,
                    })
                    .await;
            }
            let reach = |addr: IpAddr, t: &Target| Reach {
                address: addr,
                reachable: t.tracker.reachable(now),
                last_reply_seconds_ago: t
                    .tracker
                    .last_reply()
                    .map(|l| now.saturating_duration_since(l).as_secs_f64()),
            };
            let mut st = lock(&self.status);
            st.fenced = fenced;
            st.fences_total = fences_total;
            st.witness = reach(witness, &targets[&witness]);
            st.peers = targets
                .iter()
                .filter(|(a, _)| **a != witness)
                .map(|(a, t)| reach(*a, t))
                .collect();
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
