//! `ownership = "bgp"`: every healthy node announces the router's VIPs through the
//! BGP daemon already running on it (BIRD 2), and withdraws them when a gate fails,
//! the data plane is gone, an operator demotes the router, or the agent stops.
//!
//! fo never speaks BGP. The operator's `bird.conf` holds, per router, a
//! `protocol static fo_ROUTER { disabled; … route VIP/32 blackhole; }` exported to
//! the upstream BGP sessions; fo enables that protocol over BIRD's control socket to
//! announce and disables it to withdraw. `disabled` in the config makes a BIRD that
//! (re)starts without fo announce nothing. A task per router reconciles BIRD with
//! what the agent wants at once on every change and every [`POLL`] (so a restarted
//! BIRD is brought back in line), and publishes what it saw as [`BgpStatus`].

pub mod birdc;
pub mod client;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use fo_config::{BgpDaemon, Config};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, error, info, info_span, warn};

use birdc::{ProtocolRow, protocol_name};

/// How often BIRD is asked again without a change on fo's side.
pub const POLL: Duration = Duration::from_secs(1);
/// Longest wait for one command's reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// What this build cannot run, one line each (same words for `check` and `run`).
pub fn unsupported(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for r in &config.routers {
        let Some(b) = r.bgp() else { continue };
        if b.daemon == BgpDaemon::Frr {
            out.push(format!(
                "router {}: bgp daemon \"frr\" is not supported by this build: fo announces through BIRD 2's control socket; use daemon = \"bird\" (README, \"Active-active over BGP\")",
                r.name
            ));
        }
        let h = &r.hooks;
        if h.all().next().is_some() {
            out.push(format!(
                "router {}: hooks are not run for ownership = \"bgp\" by this build (there is no master/backup transition); remove `hooks`",
                r.name
            ));
        }
    }
    out
}

/// One BGP session of the daemon, as `show protocols` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The BIRD protocol name.
    pub name: String,
    /// `Established`, `Active`, `Connect`, … (BIRD's info column).
    pub info: String,
    pub up: bool,
}

/// One BFD session of the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdStatus {
    pub peer: String,
    pub state: String,
    pub up: bool,
}

/// What the router's task last saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// "bird".
    pub daemon: String,
    /// The static protocol fo enables and disables.
    pub protocol: String,
    /// The agent wants the VIPs announced (gates pass, data plane attached, not
    /// demoted).
    pub wanted: bool,
    /// BIRD answered on its control socket.
    pub daemon_up: bool,
    /// fo's static protocol is up in BIRD: its VIP routes are offered to BGP.
    pub route_up: bool,
    /// `route_up` and at least one BGP session established: the VIPs are announced.
    pub announced: bool,
    /// Prefixes BIRD holds in fo's protocol (while it is up).
    pub routes: Vec<String>,
    pub sessions: Vec<SessionStatus>,
    /// Filled when `bfd = true`.
    pub bfd: Vec<BfdStatus>,
    /// What is wrong, if anything (daemon unreachable, protocol missing, …).
    pub error: Option<String>,
}

/// The next step towards what the agent wants, from the row of fo's protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Enable,
    Disable,
    /// The operator's config lacks the protocol, or it is not a static one.
    Misconfigured(String),
}

/// Pure: what to do given `show protocols` and what the agent wants.
pub fn decide(rows: &[ProtocolRow], protocol: &str, wanted: bool) -> Step {
    let Some(row) = rows.iter().find(|r| r.name == protocol) else {
        return Step::Misconfigured(format!(
            "BIRD has no protocol {protocol}: add `protocol static {protocol} {{ disabled; ipv4; route VIP/32 blackhole; }}` to its config and export it to BGP (README, \"Active-active over BGP\")"
        ));
    };
    if row.proto != "Static" {
        return Step::Misconfigured(format!(
            "BIRD's protocol {protocol} is {}, not a `protocol static`",
            row.proto
        ));
    }
    // "start"/"stop" are on their way to up/down after an enable/disable.
    let enabled = row.state != "down" && row.state != "stop";
    match (wanted, enabled) {
        (true, false) => Step::Enable,
        (false, true) => Step::Disable,
        _ => Step::Nothing,
    }
}

/// The routes fo's protocol should hold: each VIP as a host route.
pub fn expected_routes(vips: &[IpAddr]) -> Vec<String> {
    let mut out: Vec<String> = vips
        .iter()
        .map(|v| match v {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        })
        .collect();
    out.sort();
    out
}

/// Whether BIRD announces `router`'s VIPs right now (its `fo_ROUTER` protocol is
/// enabled), asked once with a short timeout; `None` if BIRD does not answer. A
/// starting agent treats an announced router as one it resumes (its checks start
/// passing), so that a restart does not withdraw a serving node.
pub async fn announced(router: &fo_config::Router) -> Option<bool> {
    let b = router.bgp()?;
    let protocol = protocol_name(&router.name);
    let reply = client::command(&b.control, "show protocols", STARTUP_TIMEOUT)
        .await
        .ok()?;
    Some(
        birdc::parse_protocols(&reply)
            .iter()
            .any(|r| r.name == protocol && r.state != "down" && r.state != "stop"),
    )
}

/// How long a starting agent waits for BIRD's answer to [`announced`].
const STARTUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Ask BIRD how things stand and take one step towards `wanted` (only look while
/// the agent has not said yet: a restarted agent leaves BIRD as it found it until
/// its first decision, so a node that keeps serving is not withdrawn in between).
async fn reconcile(
    socket: &std::path::Path,
    protocol: &str,
    vips: &[IpAddr],
    bfd: bool,
    wanted: Option<bool>,
) -> BgpStatus {
    let mut st = BgpStatus {
        daemon: "bird".into(),
        protocol: protocol.to_string(),
        wanted: wanted.unwrap_or(false),
        ..Default::default()
    };
    let rows = match client::command(socket, "show protocols", COMMAND_TIMEOUT).await {
        Ok(r) => birdc::parse_protocols(&r),
        Err(e) => {
            st.error = Some(e.to_string());
            return st;
        }
    };
    st.daemon_up = true;
    st.sessions = rows
        .iter()
        .filter(|r| r.proto == "BGP")
        .map(|r| SessionStatus {
            name: r.name.clone(),
            info: r.info.clone(),
            up: r.state == "up",
        })
        .collect();
    let enabled_now = rows
        .iter()
        .any(|r| r.name == protocol && r.state != "down" && r.state != "stop");
    let step = match wanted {
        Some(w) => decide(&rows, protocol, w),
        None => match decide(&rows, protocol, false) {
            m @ Step::Misconfigured(_) => m,
            _ => Step::Nothing,
        },
    };
    st.route_up = match step {
        Step::Nothing => enabled_now,
        Step::Misconfigured(why) => {
            st.error = Some(why);
            false
        }
        step @ (Step::Enable | Step::Disable) => {
            let verb = if step == Step::Enable {
                "enable"
            } else {
                "disable"
            };
            match client::command(socket, &format!("{verb} {protocol}"), COMMAND_TIMEOUT).await {
                Ok(_) => step == Step::Enable,
                Err(e) => {
                    st.error = Some(e.to_string());
                    enabled_now
                }
            }
        }
    };
    if st.route_up {
        match client::command(
            socket,
            &format!("show route protocol {protocol}"),
            COMMAND_TIMEOUT,
        )
        .await
        {
            Ok(r) => {
                st.routes = birdc::parse_route_prefixes(&r);
                st.routes.sort();
                let want = expected_routes(vips);
                // Right after an enable the routes may not be imported yet.
                if !st.routes.is_empty() && st.routes != want && st.error.is_none() {
                    st.error = Some(format!(
                        "BIRD's protocol {protocol} holds {:?} but the router's VIPs are {want:?}",
                        st.routes
                    ));
                }
            }
            Err(e) => st.error = st.error.or(Some(e.to_string())),
        }
    }
    if bfd {
        match client::command(socket, "show bfd sessions", COMMAND_TIMEOUT).await {
            Ok(r) => {
                st.bfd = birdc::parse_bfd_sessions(&r)
                    .into_iter()
                    .map(|s| BfdStatus {
                        peer: s.peer.to_string(),
                        up: s.is_up(),
                        state: s.state,
                    })
                    .collect();
            }
            Err(e) => {
                st.error = st.error.or(Some(format!(
                    "bfd = true but BIRD reports no BFD: {e} (add `protocol bfd` and `bfd on` to the BGP sessions)"
                )));
            }
        }
    }
    st.announced = st.route_up && st.sessions.iter().any(|s| s.up);
    st
}

struct RouterTask {
    /// `None` until the agent's first decision.
    wanted: watch::Sender<Option<bool>>,
    status: watch::Receiver<BgpStatus>,
    task: JoinHandle<()>,
}

/// The BGP announcers of every `ownership = "bgp"` router.
#[derive(Default)]
pub struct Bgp {
    routers: BTreeMap<String, RouterTask>,
}

impl Bgp {
    /// Start a task per BGP router; each only watches BIRD until told what to do.
    pub fn start(config: &Config) -> Self {
        let mut routers = BTreeMap::new();
        for r in &config.routers {
            let Some(b) = r.bgp() else { continue };
            let protocol = protocol_name(&r.name);
            let (wanted_tx, wanted_rx) = watch::channel(None);
            let (status_tx, status_rx) = watch::channel(BgpStatus {
                daemon: "bird".into(),
                protocol: protocol.clone(),
                ..Default::default()
            });
            let task = tokio::spawn(
                run(
                    b.control.clone(),
                    protocol,
                    r.vips.clone(),
                    b.bfd,
                    wanted_rx,
                    status_tx,
                )
                .instrument(info_span!("bgp", router = %r.name)),
            );
            routers.insert(
                r.name.clone(),
                RouterTask {
                    wanted: wanted_tx,
                    status: status_rx,
                    task,
                },
            );
        }
        Bgp { routers }
    }

    /// Announce (`true`) or withdraw the router's VIPs. Returns whether it changed.
    pub fn set_wanted(&self, router: &str, wanted: bool) -> bool {
        self.routers.get(router).is_some_and(|t| {
            t.wanted
                .send_if_modified(|w| w.replace(wanted) != Some(wanted))
        })
    }

    pub fn status(&self, router: &str) -> Option<BgpStatus> {
        self.routers.get(router).map(|t| t.status.borrow().clone())
    }

    /// Withdraw everything and wait (up to `timeout`) until BIRD confirms it.
    pub async fn shutdown(self, timeout: Duration) {
        for t in self.routers.values() {
            t.wanted.send_replace(Some(false));
        }
        let wait = async {
            for (name, t) in &self.routers {
                let mut rx = t.status.clone();
                let done = rx
                    .wait_for(|s| !s.wanted && (!s.route_up || !s.daemon_up))
                    .await
                    .map(|s| s.clone());
                match done {
                    Ok(s) if s.daemon_up => info!(router = %name, "BGP announcement withdrawn"),
                    Ok(s) => {
                        warn!(router = %name, error = ?s.error, "BIRD unreachable: could not withdraw the announcement")
                    }
                    Err(_) => {}
                }
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            error!(?timeout, "BGP withdrawals not confirmed in time");
        }
        for t in self.routers.into_values() {
            t.task.abort();
        }
    }
}

async fn run(
    socket: PathBuf,
    protocol: String,
    vips: Vec<IpAddr>,
    bfd: bool,
    mut wanted: watch::Receiver<Option<bool>>,
    status: watch::Sender<BgpStatus>,
) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            changed = wanted.changed() => if changed.is_err() { return },
        }
        let want = *wanted.borrow_and_update();
        let st = reconcile(&socket, &protocol, &vips, bfd, want).await;
        let before = status.borrow().clone();
        if st.error != before.error {
            match &st.error {
                Some(e) => error!(error = %e, "BGP announcement"),
                None => info!("BIRD reachable and configured"),
            }
        }
        if st.route_up != before.route_up {
            if st.route_up {
                info!(vips = ?vips, "announcing the VIPs over BGP");
            } else {
                warn!(vips = ?vips, wanted = ?want, "VIPs withdrawn from BGP");
            }
        }
        for s in &st.sessions {
            let was = before.sessions.iter().find(|b| b.name == s.name);
            if was.is_some_and(|b| b.up != s.up) {
                if s.up {
                    info!(session = %s.name, up = s.up, info = %s.info, "BGP session");
                } else {
                    warn!(session = %s.name, up = s.up, info = %s.info, "BGP session");
                }
            }
        }
        status.send_replace(st);
        // A step was taken: look again soon rather than a whole poll later.
        if want.is_some_and(|w| w != status.borrow().route_up) && status.borrow().daemon_up {
            poll.reset_after(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, proto: &str, state: &str) -> ProtocolRow {
        ProtocolRow {
            name: name.into(),
            proto: proto.into(),
            state: state.into(),
            info: String::new(),
        }
    }

    #[test]
    fn steps_towards_what_the_agent_wants() {
        let down = [row("up1", "BGP", "up"), row("fo_ingest", "Static", "down")];
        let up = [row("fo_ingest", "Static", "up")];
        assert_eq!(decide(&down, "fo_ingest", true), Step::Enable);
        assert_eq!(decide(&down, "fo_ingest", false), Step::Nothing);
        assert_eq!(decide(&up, "fo_ingest", false), Step::Disable);
        assert_eq!(decide(&up, "fo_ingest", true), Step::Nothing);
        assert_eq!(
            decide(&[row("fo_ingest", "Static", "start")], "fo_ingest", true),
            Step::Nothing
        );
    }

    #[test]
    fn a_missing_or_wrong_protocol_is_reported() {
        let Step::Misconfigured(why) = decide(&[row("up1", "BGP", "up")], "fo_ingest", true) else {
            panic!("expected Misconfigured");
        };
        assert!(why.contains("protocol static fo_ingest"), "{why}");
        assert!(matches!(
            decide(&[row("fo_ingest", "BGP", "up")], "fo_ingest", false),
            Step::Misconfigured(_)
        ));
    }

    #[test]
    fn frr_and_hooks_are_refused() {
        let cfg = |bgp: &str, extra: &str| {
            Config::parse(&format!(
                "[node]\ninterface = \"eth0\"\n\n[[router]]\nname = \"edge-1\"\nownership = \"bgp\"\nvips = [\"192.0.2.10\"]\nbgp = {bgp}\n{extra}"
            ))
            .expect("valid config")
        };
        let bird = "{ daemon = \"bird\", control = \"/run/bird/bird.ctl\" }";
        assert!(unsupported(&cfg(bird, "")).is_empty());
        let frr = unsupported(&cfg(
            "{ daemon = \"frr\", control = \"/run/frr/zebra.vty\" }",
            "",
        ));
        assert_eq!(frr.len(), 1, "{frr:?}");
        assert!(
            frr[0].starts_with("router edge-1: bgp daemon \"frr\""),
            "{frr:?}"
        );
        let hooks = unsupported(&cfg(bird, "hooks = { master = \"/bin/true\" }"));
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert!(hooks[0].contains("hooks are not run"), "{hooks:?}");
    }

    #[test]
    fn host_routes_of_the_vips() {
        let vips: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        assert_eq!(expected_routes(&vips), ["192.0.2.10/32", "2001:db8::1/128"]);
    }
}
