//! `fo-agent drill ROUTER [--back]`: a planned switchover rehearsed on live traffic.
//!
//! The checks run on the agent's loop (`Agent::drill`); the drill itself runs beside
//! it and makes the operator's own requests through the control channel (demote here,
//! and with `--back` promote then resume here), so it switches over exactly as an
//! operator does. Each leg records both nodes' forwarding timelines over one window:
//! this node's sampler, and the peer's, asked over the sync channel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Agent;
use crate::api::control::{Envelope, Request, Response};
use crate::api::drill::{Blackout, DrillReport, DrillTally, Leg, LegClients, LegResets, Nodes};
use crate::dataplane::Forwarded;
use crate::locks::lock;
use crate::sync::NatSync;
use crate::sync::drill::{self, NodeReady, RouterReady, Timeline};
use crate::vrrp::RouterHandle;

/// The peer is asked this long before its window begins.
const LEAD: Duration = Duration::from_millis(150);
/// The window begins this long before the request (the traffic as it was).
const BEFORE: Duration = Duration::from_millis(300);
/// Each leg's window.
const WINDOW_MS: u32 = 3000;
/// Between the legs with `--back`: the traffic settles on the peer.
const SETTLE: Duration = Duration::from_secs(1);
/// How often the drill looks at the peer's readiness while waiting for it.
const POLL: Duration = Duration::from_millis(10);

/// A direction's bitmap in a timeline.
type Bits = fn(&Timeline) -> &[u8];

/// The readiness of these routers (sent to the peers with every heartbeat).
pub(super) fn routers_ready(routers: &[RouterHandle]) -> Vec<RouterReady> {
    routers
        .iter()
        .map(|h| {
            let s = h.status();
            RouterReady {
                router: s.name,
                state: s.state.status_name().to_string(),
                gates_open: s.faults.is_empty(),
            }
        })
        .collect()
}

/// Everything the drill needs once started.
struct Drill {
    router: String,
    peer: IpAddr,
    back: bool,
    nat: bool,
    handles: Vec<RouterHandle>,
    sync: NatSync,
    requests: mpsc::Sender<Envelope>,
    bpf_dir: PathBuf,
    /// Drills by router (status and metrics).
    tally: Arc<Mutex<BTreeMap<String, DrillTally>>>,
    /// Set while a drill runs; cleared when this one ends (dropped with it).
    _running: Running,
}

/// The "a drill runs" flag, cleared on drop (also when the drill's task fails).
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Agent {
    /// Check that a drill of `router` may start; if so, the drill (to run beside the
    /// loop). A refusal says why, and is counted.
    pub(super) fn drill(
        &mut self,
        router: &str,
        back: bool,
    ) -> Result<impl Future<Output = Response> + Send + 'static, String> {
        let checked = self.drill_checked(router, back);
        if checked.is_err() && self.config.router(router).is_some() {
            lock(&self.api.drills)
                .entry(router.to_string())
                .or_default()
                .refused();
        }
        checked
    }

    fn drill_checked(
        &mut self,
        router: &str,
        back: bool,
    ) -> Result<impl Future<Output = Response> + Send + 'static + use<>, String> {
        let Some(r) = self.config.router(router) else {
            return Err(format!("no router named {router:?}"));
        };
        let Some(h) = self.routers.vrrp.router(router) else {
            return Err(format!(
                "router {router} has {:?} ownership: only a VRRP router has a mastership to hand over",
                r.ownership_kind()
            ));
        };
        let Some(sync) = self.sync.clone() else {
            return Err(format!(
                "the drill talks to the peer over the connection-state sync, which is off: add `sync = {{ peers = [\"PEER ADDRESS\"], key_file = \"/etc/fo/sync.key\" }}` to the [node] table of both nodes (no NAT service is needed) and reload; router {router} was not touched"
            ));
        };
        let Some(requests) = self.api.requests.clone() else {
            return Err("the control channel is not running".into());
        };
        let state = h.status().state.status_name();
        if state != "master" {
            return Err(format!(
                "this node is {state} for router {router}, not master: run the drill on the master"
            ));
        }
        let (peer, ready) = peer_ready(&sync, router)?;
        check_peer(peer, &ready, router)?;
        if self.api.drill_running.swap(true, Ordering::SeqCst) {
            return Err("a drill is already running on this node".into());
        }
        let drill = Drill {
            router: router.to_string(),
            peer,
            back,
            // Replies cross the nodes only for this router's NAT services.
            nat: self
                .config
                .services
                .iter()
                .any(|s| s.router == router && s.mode == fo_config::ForwardMode::Nat),
            handles: self.routers.vrrp.routers().to_vec(),
            sync,
            requests,
            bpf_dir: self.config.node.bpf_dir.clone(),
            tally: self.api.drills.clone(),
            _running: Running(self.api.drill_running.clone()),
        };
        info!(router, %peer, back, "drill: starting");
        Ok(drill.run())
    }
}

/// The sync peer that runs `router`, and its readiness; a refusal if none is heard.
fn peer_ready(sync: &NatSync, router: &str) -> Result<(IpAddr, NodeReady), String> {
    let peers = sync.status().peers;
    let heard: Vec<(IpAddr, NodeReady)> = peers
        .iter()
        .filter_map(|p| p.ready.clone().map(|r| (p.address, r)))
        .collect();
    if heard.is_empty() {
        let list: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
        return Err(format!(
            "the peer is not heard on the sync channel (no readiness from {} within {:?}): is its agent running, this version, with the same sync key?",
            list.join(", "),
            drill::READY_FRESH
        ));
    }
    heard
        .into_iter()
        .find(|(_, r)| r.router(router).is_some())
        .ok_or_else(|| format!("no sync peer runs router {router}"))
}

/// Would the peer take `router` over cleanly now? A refusal says why not.
fn check_peer(peer: IpAddr, ready: &NodeReady, router: &str) -> Result<(), String> {
    let Some(r) = ready.router(router) else {
        return Err(format!("peer {peer} does not run router {router}"));
    };
    if !r.gates_open || r.state == "fault" {
        return Err(format!(
            "peer {peer}'s gates are closed for router {router} (state {}): it cannot take over; see `fo-agent status` on it",
            r.state
        ));
    }
    if !ready.in_sync {
        return Err(format!(
            "peer {peer}'s sync is behind (it has not taken every connection of this node yet: a snapshot is outstanding or a node is unreachable): a takeover now could reset NAT connections; retry when its `fo-agent status` shows the sync in_sync"
        ));
    }
    if r.state != "backup" {
        return Err(format!(
            "peer {peer} is {} for router {router}, not backup",
            r.state
        ));
    }
    Ok(())
}

fn unix_ms() -> u64 {
    crate::clock::unix_millis(SystemTime::now())
}

impl Drill {
    async fn run(self) -> Response {
        let before = self.nodes();
        let mut legs = Vec::new();
        let mut notes = Vec::new();
        let mut result = "passed".to_string();
        let router = self.router.clone();
        let first = self
            .leg(
                "to_peer",
                Request::Demote {
                    router: router.clone(),
                    force: false,
                },
                |local, peer| local != "master" && peer == "master",
            )
            .await;
        let handed = first.new_master_reported_ms.is_some();
        // The demote was accepted (a refused one has no request time).
        let demoted = first.at_unix_ms != 0;
        if let Some(p) = &first.problem {
            result = format!("leg to_peer: {p}");
        }
        legs.push(first);
        if self.back && handed {
            tokio::time::sleep(SETTLE).await;
            let back = self
                .leg(
                    "back",
                    Request::Promote {
                        router: router.clone(),
                    },
                    |local, peer| local == "master" && peer != "master",
                )
                .await;
            if let Some(p) = &back.problem
                && result == "passed"
            {
                result = format!("leg back: {p}");
            }
            let promoted = back.problem.is_none();
            legs.push(back);
            match self.operator(Request::Resume { router: router.clone() }).await {
                Ok(_) if promoted => notes.push(format!(
                    "the promote of the back leg was ended by resume: router {router} runs on its configured priorities"
                )),
                Ok(_) => notes.push(format!(
                    "the back leg did not complete; resume ended this node's demote: router {router} runs on its configured priorities"
                )),
                Err(e) => notes.push(format!("resume after the back leg failed: {e}")),
            }
        } else if demoted {
            // Also when the handover was not seen within the window (it may complete
            // later): the demote stands until resume.
            notes.push(format!(
                "this node stays demoted for router {router} until `fo-agent resume {router}` (or drill with --back)"
            ));
        }
        // The last readiness the peer sends after the handover.
        tokio::time::sleep(drill::READY_FRESH).await;
        let after = self.nodes();
        info!(router, result, "drill: finished");
        let report = DrillReport {
            router,
            peer: self.peer,
            before,
            legs,
            after,
            result,
            notes,
        };
        lock(&self.tally)
            .entry(report.router.clone())
            .or_default()
            .ran(&report);
        Response::Drill {
            report: Box::new(report),
        }
    }

    fn local(&self) -> NodeReady {
        let st = self.sync.status();
        NodeReady {
            table_current: st.current,
            in_sync: st.peers.iter().all(|p| p.state == "in_sync"),
            routers: routers_ready(&self.handles),
        }
    }

    fn peer(&self) -> Option<NodeReady> {
        self.sync
            .status()
            .peers
            .into_iter()
            .find(|p| p.address == self.peer)
            .and_then(|p| p.ready)
    }

    fn nodes(&self) -> Nodes {
        Nodes {
            local: self.local(),
            peer: self.peer(),
        }
    }

    /// Both nodes' state of the router: (this node, the peer).
    fn states(&self) -> (String, String) {
        let local = self.local();
        let state = |n: Option<&NodeReady>| {
            n.and_then(|n| n.router(&self.router))
                .map_or_else(|| "unknown".to_string(), |r| r.state.clone())
        };
        (state(Some(&local)), state(self.peer().as_ref()))
    }

    /// An operator request through the agent's loop, as `fo-agent` would send it.
    async fn operator(&self, req: Request) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((req, tx))
            .await
            .map_err(|_| "the agent's loop has ended".to_string())?;
        match rx.await {
            Ok(Response::Ok { message }) => Ok(message),
            Ok(Response::Error { message }) => Err(message),
            _ => Err("no answer from the agent's loop".into()),
        }
    }

    /// One handover: `request` at a known point of a window both nodes record; done
    /// when `done(this node's state, the peer's)` holds.
    async fn leg(&self, name: &str, request: Request, done: impl Fn(&str, &str) -> bool) -> Leg {
        let what = match &request {
            Request::Demote { .. } => "demote",
            Request::Promote { .. } => "promote",
            _ => "request",
        };
        let start = unix_ms() + LEAD.as_millis() as u64;
        let deadline = LEAD + Duration::from_millis(u64::from(WINDOW_MS)) + Duration::from_secs(2);
        let peer_timeline = self
            .sync
            .peer_timeline(self.peer, start, WINDOW_MS, deadline);
        let dir = self.bpf_dir.clone();
        let local_timeline = tokio::task::spawn_blocking(move || {
            Forwarded::open(&dir)
                .and_then(|mut f| drill::sample(&mut f, start, WINDOW_MS))
                .map_err(|e| crate::dataplane::error_chain(&e))
        });
        let switch = async {
            let at = start + BEFORE.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(unix_ms()))).await;
            let at = unix_ms();
            info!(router = self.router, leg = name, "drill: {what}");
            self.operator(request).await?;
            let bound = Duration::from_millis(u64::from(WINDOW_MS)) - BEFORE;
            let t0 = tokio::time::Instant::now();
            loop {
                let (local, peer) = self.states();
                if done(&local, &peer) {
                    return Ok((at, Some(unix_ms().saturating_sub(at))));
                }
                if t0.elapsed() > bound {
                    return Ok((at, None));
                }
                tokio::time::sleep(POLL).await;
            }
        };
        let (peer_t, local_t, switched): (_, _, Result<_, String>) =
            tokio::join!(peer_timeline, local_timeline, switch);
        let mut leg = Leg {
            name: name.to_string(),
            request: what.to_string(),
            at_unix_ms: 0,
            new_master_reported_ms: None,
            window_start_unix_ms: start,
            window_ms: WINDOW_MS,
            resolution_ms: 0.0,
            blackout: Default::default(),
            resets: Default::default(),
            clients: None,
            problem: None,
        };
        match switched {
            Ok((at, reported)) => {
                leg.at_unix_ms = at;
                leg.new_master_reported_ms = reported;
                if reported.is_none() {
                    leg.problem = Some(format!(
                        "the new master was not reported within {} ms",
                        WINDOW_MS - BEFORE.as_millis() as u32
                    ));
                }
            }
            Err(e) => {
                leg.problem = Some(format!("{what} refused: {e}"));
                return leg;
            }
        }
        let local_t = local_t.map_err(|e| e.to_string()).and_then(|r| r);
        match (local_t, peer_t) {
            (Ok(l), Ok(p)) => self.blackouts(&mut leg, &l, &p),
            (Err(e), _) => {
                warn!(error = %e, "drill: this node's timeline");
                leg.problem
                    .get_or_insert(format!("this node's timeline: {e}"));
            }
            (_, Err(e)) => {
                warn!(error = %e, "drill: the peer's timeline");
                leg.problem
                    .get_or_insert(format!("the peer's timeline: {e}"));
            }
        }
        leg
    }

    fn blackouts(&self, leg: &mut Leg, l: &Timeline, p: &Timeline) {
        leg.resolution_ms = f64::from(l.max_step_us.max(p.max_step_us)) / 1000.0;
        leg.resets = LegResets {
            this_node: l.resets,
            peer: p.resets,
        };
        let both = [l, p];
        let mut dirs: Vec<(&str, Bits)> = vec![("client_to_backend", |t| &t.forward)];
        if self.nat {
            dirs.push(("backend_to_client", |t| &t.reply));
        }
        let request_at = leg.at_unix_ms.saturating_sub(leg.window_start_unix_ms) as i64;
        // The incoming node: the peer when this one demotes, this one when it promotes.
        let (node, incoming) = if leg.request == "demote" {
            ("peer", p)
        } else {
            ("this_node", l)
        };
        leg.clients = incoming
            .clients
            .as_ref()
            .map(|c| LegClients::new(node, c, request_at));
        for (dir, bits) in dirs {
            if let Some((ms, from)) = drill::longest_silence(&both, bits) {
                leg.blackout.insert(
                    dir.to_string(),
                    Blackout {
                        ms,
                        from_request_ms: i64::from(from) - request_at,
                    },
                );
            }
        }
    }
}
