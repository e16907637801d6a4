//! Runs every check on its interval, one tokio task per target, and publishes the
//! results.
//!
//! Targets are the node-level `[[check]]`s ([`Target::NodeCheck`]) and every backend
//! of every service that has a `check` ([`Target::Backend`]); backends of services
//! without a check are not targets and count as up. Each task sleeps a random
//! part of its interval first (so hundreds of checks do not fire together), then
//! probes every `interval` ± 10 %, feeds a rise/fall [`Tracker`] and updates the
//! shared [`Snapshot`].
//!
//! Two ways to follow the results:
//! - [`Health::watch`]: a `watch` of the [`Snapshot`], woken only when some target
//!   goes up or down, and once at once after subscribing. The snapshot is
//!   authoritative: read it on every wake-up (`borrow_and_update`), and recompute from it (backends in the data
//!   plane, [`super::priority::effective`], [`super::priority::all_pass`]). Detail
//!   (last result, counters) is updated in place on every probe without waking anyone.
//! - [`Health::events`]: a `broadcast` of [`HealthEvent`]s, one per transition, in
//!   order, for logs and metrics. A slow receiver can lag (it is told so); it should
//!   then resynchronise from the snapshot. No event is sent for the initial states.
//!
//! Initial states (see [`super::state`]): backends start up, node checks start down
//! until they have passed `rise` times. [`Health::start_after`] carries the states
//! of a previous run over (for a reload).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fo_config::Config;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::probe::{Probe, ProbeResult};
use super::state::{Status, Tracker};

/// What a check result is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A `[[check]]`, by name (used by `track` and `gates`).
    NodeCheck(String),
    /// One backend of a service, by the service's and the backend's names.
    Backend { service: String, backend: String },
}

impl Target {
    pub fn check(name: impl Into<String>) -> Self {
        Self::NodeCheck(name.into())
    }

    pub fn backend(service: impl Into<String>, backend: impl Into<String>) -> Self {
        Self::Backend {
            service: service.into(),
            backend: backend.into(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NodeCheck(n) => write!(f, "check {n}"),
            Self::Backend { service, backend } => write!(f, "backend {backend} of {service}"),
        }
    }
}

/// A target went up or down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub target: Target,
    pub up: bool,
    /// The result of the probe that completed the transition.
    pub detail: String,
}

/// The last probe of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    pub ok: bool,
    pub detail: String,
    /// When the probe finished.
    pub at: Instant,
    pub took: Duration,
}

/// Everything known about one target, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub up: bool,
    /// `None` before the first probe.
    pub last: Option<LastResult>,
    /// When `up` last changed; `None` if never since the start.
    pub last_change: Option<Instant>,
    /// Results in a row equal to the last one.
    pub consecutive: u32,
    pub probes: u64,
    pub failures: u64,
    pub interval: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// Health of every target, as published by [`Health`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    targets: BTreeMap<Target, TargetStatus>,
}

impl Snapshot {
    pub fn get(&self, target: &Target) -> Option<&TargetStatus> {
        self.targets.get(target)
    }

    /// Is the node check `name` up? `None` if there is no such check.
    pub fn check_up(&self, name: &str) -> Option<bool> {
        self.targets
            .get(&Target::NodeCheck(name.to_owned()))
            .map(|s| s.up)
    }

    /// Is this backend up? Backends of services without a check are not targets:
    /// `None`, which callers treat as up.
    pub fn backend_up(&self, service: &str, backend: &str) -> Option<bool> {
        self.targets
            .get(&Target::backend(service, backend))
            .map(|s| s.up)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Target, &TargetStatus)> {
        self.targets.iter()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Set a target's state directly (tests of consumers, and `priority` tests).
    pub fn set(&mut self, target: Target, up: bool) {
        self.targets
            .entry(target)
            .or_insert_with(|| blank_status(up, Duration::ZERO, 1, 1))
            .up = up;
    }
}

fn blank_status(up: bool, interval: Duration, rise: u32, fall: u32) -> TargetStatus {
    TargetStatus {
        up,
        last: None,
        last_change: None,
        consecutive: 0,
        probes: 0,
        failures: 0,
        interval,
        rise,
        fall,
    }
}

/// One target to check, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct Spec {
    pub target: Target,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub initial: Status,
}

/// Every target of `config`: its node checks (starting down) and the backends of
/// its checked services (starting up).
pub fn plan(config: &Config) -> Vec<Spec> {
    let mut specs = Vec::new();
    let mut tls = super::tls::Loader::default();
    for c in &config.checks {
        specs.push(Spec {
            target: Target::NodeCheck(c.name.clone()),
            probe: Probe::for_check(&c.kind, &mut tls),
            interval: c.interval,
            timeout: c.timeout,
            rise: c.rise,
            fall: c.fall,
            initial: Status::Down,
        });
    }
    for s in &config.services {
        let Some(check) = &s.check else { continue };
        for b in s.backends() {
            specs.push(Spec {
                target: Target::backend(&s.name, &b.name),
                probe: Probe::for_backend(
                    s,
                    &check.kind,
                    b,
                    config.node.tunnel_check_mark,
                    &mut tls,
                ),
                interval: check.interval,
                timeout: check.timeout,
                rise: check.rise,
                fall: check.fall,
                initial: Status::Up,
            });
        }
    }
    specs
}

/// [`plan`] for an agent that restarts under a serving data plane: the node checks that
/// gate or track only `resumed` routers (whose VIPs the pinned program still serves)
/// start up instead of "not proven". The master goes on as it would have had the agent
/// not restarted, unless such a check then fails `fall` times; otherwise a gate would
/// fault it, and hand the VIPs to the peer and back, on every restart. A check that
/// also gates or tracks a router not resumed starts down: that router must not take
/// a VIP on a dependency nobody has seen pass.
pub fn plan_resuming(config: &Config, resumed: &std::collections::BTreeSet<String>) -> Vec<Spec> {
    let uses = |resumed_side: bool| -> std::collections::BTreeSet<&str> {
        config
            .routers
            .iter()
            .filter(|r| resumed.contains(&r.name) == resumed_side)
            .flat_map(|r| {
                let tracks = r.vrrp().map(|v| v.track.as_slice()).unwrap_or_default();
                r.gates
                    .iter()
                    .map(String::as_str)
                    .chain(tracks.iter().map(|t| t.check.as_str()))
            })
            .collect()
    };
    let (by_resumed, by_others) = (uses(true), uses(false));
    let mut specs = plan(config);
    for s in &mut specs {
        if let Target::NodeCheck(name) = &s.target
            && by_resumed.contains(name.as_str())
            && !by_others.contains(name.as_str())
        {
            s.initial = Status::Up;
        }
    }
    specs
}

type BoxProbe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ProbeResult> + Send>> + Send + Sync>;

/// Capacity of the event broadcast.
const EVENT_CAPACITY: usize = 1024;

/// The running checks. Dropping it stops them.
pub struct Health {
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<HealthEvent>,
    tasks: JoinSet<()>,
}

impl Health {
    /// Start every check of `config`. Must be called inside a tokio runtime.
    pub fn start(config: &Config) -> Self {
        Self::start_after(plan(config), None)
    }

    /// Start `specs`; targets also present in `previous` (the snapshot of the run
    /// being replaced, on reload) keep their up/down state and detail.
    pub fn start_after(specs: Vec<Spec>, previous: Option<&Snapshot>) -> Self {
        let with_probes = specs
            .into_iter()
            .map(|spec| {
                let probe = spec.probe.clone();
                let timeout = spec.timeout;
                let label = spec.target.to_string();
                let f: BoxProbe = Arc::new(move || {
                    let probe = probe.clone();
                    let label = label.clone();
                    Box::pin(async move { probe.run(timeout, &label).await })
                });
                (spec, f)
            })
            .collect();
        Self::start_with_probes(with_probes, previous)
    }

    fn start_with_probes(specs: Vec<(Spec, BoxProbe)>, previous: Option<&Snapshot>) -> Self {
        let mut initial = Snapshot::default();
        let mut trackers = Vec::with_capacity(specs.len());
        for (spec, probe) in specs {
            let carried = previous.and_then(|p| p.get(&spec.target));
            let status = match carried {
                Some(s) if s.up => Status::Up,
                Some(_) => Status::Down,
                None => spec.initial,
            };
            let mut st = carried.cloned().unwrap_or_else(|| {
                blank_status(status.is_up(), spec.interval, spec.rise, spec.fall)
            });
            (st.interval, st.rise, st.fall) = (spec.interval, spec.rise, spec.fall);
            initial.targets.insert(spec.target.clone(), st);
            trackers.push((Tracker::new(spec.rise, spec.fall, status), spec, probe));
        }
        let (snapshot, _) = watch::channel(initial);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let mut tasks = JoinSet::new();
        for (tracker, spec, probe) in trackers {
            let target = spec.target.clone();
            let run = run_target(
                tracker,
                spec.target,
                spec.interval,
                probe,
                snapshot.clone(),
                events.clone(),
            );
            tasks.spawn(async move {
                // A task that dies is a failure of the agent's own: logged at error,
                // since nothing probes this target any more.
                let run = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run));
                if let Err(panic) = run.await {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    error!(%target, panic = %why, "health check task died: this target is no longer probed and keeps its last state until a reload or restart");
                }
            });
        }
        Self {
            snapshot,
            events,
            tasks,
        }
    }

    /// A copy of the current state of every target.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver woken whenever a target goes up or down. Its first `changed()`
    /// resolves at once: a state that changed before the caller subscribed (between
    /// its last read of the snapshot and this call) is never missed.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        let mut rx = self.snapshot.subscribe();
        rx.mark_changed();
        rx
    }

    /// Every transition from now on.
    pub fn events(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    /// How many check tasks run.
    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Stop every check and wait until they have stopped (an exec check in flight
    /// has its process killed).
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// A small PRNG for jitter, seeded from std's per-process random hasher keys.
struct Jitter(u64);

impl Jitter {
    fn new(target: &Target) -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(target.to_string().as_bytes());
        Self(h.finish() | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn run_target(
    mut tracker: Tracker,
    target: Target,
    interval: Duration,
    probe: BoxProbe,
    snapshot: watch::Sender<Snapshot>,
    events: broadcast::Sender<HealthEvent>,
) {
    let mut jitter = Jitter::new(&target);
    let mut next = Instant::now() + interval.mul_f64(jitter.next());
    loop {
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        next = started + interval.mul_f64(0.9 + 0.2 * jitter.next());
        let result = probe().await;
        let took = started.elapsed();
        let ok = result.is_ok();
        let detail = match result {
            Ok(d) => d,
            Err(e) => {
                debug!(%target, error = %e, "check failed");
                e.to_string()
            }
        };
        let transition = tracker.observe(ok);
        let now = Instant::now();
        snapshot.send_if_modified(|s| {
            let Some(st) = s.targets.get_mut(&target) else {
                return false;
            };
            st.probes += 1;
            st.failures += u64::from(!ok);
            st.consecutive = tracker.consecutive();
            st.last = Some(LastResult {
                ok,
                detail: detail.clone(),
                at: now,
                took,
            });
            match transition {
                Some(t) => {
                    st.up = t.to.is_up();
                    st.last_change = Some(now);
                    true
                }
                None => false,
            }
        });
        if let Some(t) = transition {
            if t.to.is_up() {
                info!(%target, %detail, "up");
            } else {
                warn!(%target, %detail, "down");
            }
            let _ = events.send(HealthEvent {
                target: target.clone(),
                up: t.to.is_up(),
                detail,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::probe::ProbeError;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A probe answering from a script ("+" up, "-" down), then always down.
    fn scripted(script: &str) -> (BoxProbe, Arc<Mutex<u32>>) {
        let q: Arc<Mutex<VecDeque<bool>>> =
            Arc::new(Mutex::new(script.chars().map(|c| c == '+').collect()));
        let calls = Arc::new(Mutex::new(0));
        let c = calls.clone();
        let f: BoxProbe = Arc::new(move || {
            let ok = q.lock().expect("lock").pop_front().unwrap_or(false);
            *c.lock().expect("lock") += 1;
            Box::pin(async move {
                if ok {
                    Ok("fine".to_owned())
                } else {
                    Err(ProbeError::Internal {
                        reason: "scripted failure".into(),
                    })
                }
            })
        });
        (f, calls)
    }

    fn spec(target: Target, initial: Status, rise: u32, fall: u32) -> Spec {
        Spec {
            target,
            probe: Probe::ProcessName("unused".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            rise,
            fall,
            initial,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn node_check_goes_up_after_rise_and_down_after_fall() {
        let t = Target::check("nfs");
        let (probe, calls) = scripted("++--+---");
        let health =
            Health::start_with_probes(vec![(spec(t.clone(), Status::Down, 2, 3), probe)], None);
        let mut events = health.events();
        let mut watch = health.watch();
        assert_eq!(
            health.snapshot().check_up("nfs"),
            Some(false),
            "node checks start down"
        );

        let e = events.recv().await.expect("an event");
        assert_eq!(
            e,
            HealthEvent {
                target: t.clone(),
                up: true,
                detail: "fine".into()
            }
        );
        assert_eq!(
            *calls.lock().expect("lock"),
            2,
            "up after exactly rise=2 probes"
        );
        watch.changed().await.expect("watch woken");
        assert_eq!(watch.borrow_and_update().check_up("nfs"), Some(true));

        let e = events.recv().await.expect("an event");
        assert!(!e.up, "expected down, saw {e:?}");
        assert!(
            e.detail.contains("scripted failure"),
            "detail: {}",
            e.detail
        );
        assert_eq!(
            *calls.lock().expect("lock"),
            8,
            "'--+---': down after the 3rd failure in a row"
        );
        let snap = health.snapshot();
        let st = snap.get(&t).expect("status");
        assert_eq!(
            (st.up, st.consecutive, st.probes, st.failures),
            (false, 3, 8, 5)
        );
        assert!(st.last_change.is_some() && st.last.as_ref().is_some_and(|l| !l.ok));
    }

    /// The agent reads the snapshot, then subscribes; a transition in between must
    /// still wake it (CI once saw a gate stay closed forever through this window).
    #[tokio::test(start_paused = true)]
    async fn a_probe_task_that_dies_is_logged_as_an_error() {
        let log = crate::health::testutil::CapturedLog::default();
        let _guard = log.install();
        let f: BoxProbe = Arc::new(|| Box::pin(async { panic!("probe bug") }));
        let _health = Health::start_with_probes(
            vec![(spec(Target::check("nfs"), Status::Down, 1, 1), f)],
            None,
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let text = log.text();
        assert!(
            text.contains("ERROR")
                && text.contains("health check task died")
                && text.contains("probe bug"),
            "expected an ERROR naming the dead task and its panic, saw:\n{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_taken_after_a_transition_wakes_at_once() {
        let (probe, _) = scripted("+");
        let health = Health::start_with_probes(
            vec![(spec(Target::check("ready"), Status::Down, 1, 1), probe)],
            None,
        );
        let mut events = health.events();
        let e = events.recv().await.expect("an event");
        assert!(e.up, "expected up, saw {e:?}");

        let mut watch = health.watch();
        tokio::time::timeout(Duration::from_millis(1), watch.changed())
            .await
            .expect("the first changed() resolves without a further transition")
            .expect("sender alive");
        assert_eq!(watch.borrow_and_update().check_up("ready"), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_follow_the_interval_with_jitter() {
        let (probe, calls) = scripted(&"+".repeat(1000));
        let health = Health::start_with_probes(
            vec![(spec(Target::backend("s", "b"), Status::Up, 1, 1), probe)],
            None,
        );
        tokio::time::sleep(Duration::from_secs(100)).await;
        let n = *calls.lock().expect("lock");
        // First probe within one interval, then every 0.9..1.1 s.
        assert!(
            (90..=112).contains(&n),
            "expected about 100 probes in 100 s, saw {n}"
        );
        assert_eq!(health.snapshot().backend_up("s", "b"), Some(true));
        assert_eq!(health.tasks(), 1);
        health.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn backends_start_up_and_previous_state_is_carried_over() {
        let b = Target::backend("web", "a");
        let (probe, _) = scripted("");
        let health =
            Health::start_with_probes(vec![(spec(b.clone(), Status::Up, 1, 3), probe)], None);
        assert_eq!(
            health.snapshot().backend_up("web", "a"),
            Some(true),
            "backends start up"
        );
        let mut events = health.events();
        let e = events.recv().await.expect("event");
        assert!(!e.up, "down after 3 failures, saw {e:?}");
        let prev = health.snapshot();
        health.stop().await;

        let (probe, _) = scripted("");
        let health = Health::start_with_probes(
            vec![(spec(b.clone(), Status::Up, 1, 3), probe)],
            Some(&prev),
        );
        assert_eq!(
            health.snapshot().backend_up("web", "a"),
            Some(false),
            "a reload must not bring a dead backend back up"
        );
        assert_eq!(
            health.snapshot().backend_up("web", "other"),
            None,
            "unknown backend"
        );
    }

    #[test]
    fn a_resumed_routers_checks_start_up_and_the_others_down() {
        let config = Config::parse(
            r#"
[node]
interface = "eth0"

[[router]]
name = "a"
vrid = 1
vips = ["192.0.2.1"]
gates = ["nfs"]
track = [{ check = "docker", weight = -60 }]

[[router]]
name = "b"
vrid = 2
vips = ["192.0.2.2"]
gates = ["quorum", "nfs"]

[[check]]
name = "nfs"
kind = "file"
path = "/mnt/ok"

[[check]]
name = "docker"
kind = "file"
path = "/run/docker.pid"

[[check]]
name = "quorum"
kind = "file"
path = "/run/quorum"
"#,
        )
        .unwrap_or_else(|e| panic!("test config must be valid: {e}"));
        let initial = |resumed: &[&str]| {
            let resumed = resumed.iter().map(|s| s.to_string()).collect();
            plan_resuming(&config, &resumed)
                .into_iter()
                .map(|s| (s.target.to_string(), s.initial))
                .collect::<Vec<_>>()
        };
        let down = |n: &str| (Target::check(n).to_string(), Status::Down);
        let up = |n: &str| (Target::check(n).to_string(), Status::Up);
        assert_eq!(initial(&[]), [down("nfs"), down("docker"), down("quorum")]);
        // nfs gates b too, which does not resume: it stays "not proven".
        assert_eq!(initial(&["a"]), [down("nfs"), up("docker"), down("quorum")]);
        assert_eq!(
            initial(&["a", "b"]),
            [up("nfs"), up("docker"), up("quorum")]
        );
    }

    #[test]
    fn plan_covers_node_checks_and_checked_backends() {
        let config = Config::parse(
            r#"
[node]
interface = "eth0"

[[router]]
name = "r"
vrid = 1
priority = 100
vips = ["192.0.2.1"]
snat = ["192.0.2.2"]

[[service]]
vip = "192.0.2.1"
port = 80
mode = "nat"
check = { kind = "http", path = "/health", interval = "2s", timeout = "1s", rise = 2, fall = 3 }
backends = [{ address = "198.51.100.1" }, { address = "198.51.100.2", port = 8080 }]

[[service]]
vip = "192.0.2.1"
port = 443
backends = [{ address = "198.51.100.1" }]

[[check]]
name = "docker"
kind = "exec"
command = ["docker", "info"]
"#,
        )
        .unwrap_or_else(|e| panic!("test config must be valid: {e}"));
        let specs = plan(&config);
        assert_eq!(
            specs.len(),
            3,
            "one node check + two checked backends: {specs:#?}"
        );
        assert_eq!(specs[0].target, Target::check("docker"));
        assert_eq!(specs[0].initial, Status::Down);
        assert!(specs[0].probe.forks());
        let Target::Backend { service, .. } = &specs[1].target else {
            panic!("expected a backend target, saw {:?}", specs[1].target);
        };
        assert_eq!(specs[1].initial, Status::Up);
        assert_eq!(specs[2].interval, Duration::from_secs(2));
        match &specs[2].probe {
            Probe::Http(h) => {
                assert_eq!(
                    (h.host.as_str(), h.port, h.get.path.as_str()),
                    ("198.51.100.2", 8080, "/health")
                );
                assert!(h.tls.is_none(), "an http check has no TLS: {h:?}");
            }
            other => panic!("expected an http probe, saw {other:?}"),
        }
        assert!(service.contains("80"), "service name {service}");
    }

    #[tokio::test]
    async fn real_tcp_checks_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut s = spec(Target::backend("svc", "b"), Status::Down, 1, 1);
        s.probe = Probe::Tcp(addr, None);
        s.interval = Duration::from_millis(50);
        s.timeout = Duration::from_millis(40);
        let health = Health::start_after(vec![s], None);
        let mut events = health.events();
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("event");
        assert!(e.up, "expected up with a listener, saw {e:?}");
        drop(listener);
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("event");
        assert!(!e.up, "expected down once the listener closed, saw {e:?}");
    }
}
