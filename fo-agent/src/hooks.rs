//! Hooks: the operator's programs run when a virtual router changes state.
//!
//! Per router, `hooks = { master, backup, fault, stop, notify, timeout, user, group }`,
//! each hook a path or `[path, args...]`:
//! - `master`, `backup`, `fault` run when the router enters that state, `stop` when the
//!   agent stops the router, with their configured arguments only;
//! - `notify` runs on every transition, after the state's own hook, with keepalived's
//!   `notify` arguments `INSTANCE NAME STATE PRIORITY` appended to its own (STATE in
//!   capitals: `MASTER`, `BACKUP`, `FAULT`, `STOP`), so a keepalived notify script works
//!   unchanged;
//! - with `user` (and `group`) every hook of the router runs as that user (see
//!   [`crate::health::child`]).
//!
//! Every hook gets `FO_ROUTER`, `FO_VRID` (0 for routers without VRRP), `FO_STATE`
//! and `FO_OLD_STATE` (`initialize`, `backup`, `master`, `fault`, `stop`),
//! `FO_VIPS` (space separated), `FO_PRIORITY` and `FO_HOOK` (`master`, `backup`,
//! `fault`, `stop`, `notify`) on top of the agent's environment. Stdin is `/dev/null`;
//! each line of stdout and stderr is logged under the router's span.
//!
//! [`RouterHooks::transition`] never blocks: it queues the transition and returns.
//! One task per router runs the queue **in order**: a later transition's hooks
//! start only after the earlier ones exited or were killed, so `backup.sh` never
//! overtakes the `master.sh` it undoes. A hook still running after `timeout` is
//! killed with its whole process group. Failures and timeouts are logged and
//! counted ([`HookStats`]) and never stop the queue.
//!
//! The queue is **coalesced**: when the state changes faster than the hooks run, the
//! transitions queued while a hook runs are replaced by the newest one, so a flood of
//! transitions runs at most one more round of hooks per router (the running hook
//! finishes or times out first). That round runs with the newest state and priority,
//! and with `FO_OLD_STATE` the state the replaced transitions started from (the one
//! the hooks last ran for), so the hooks see a consistent sequence. Replaced
//! transitions are logged and counted (`fo_hook_coalesced_total`).
//!
//! Each program is judged before it runs ([`crate::health::program`]): one that a
//! user other than root (or the hooks' `user`) could change is not run, and counts as
//! a failure. Its output reaches the log capped per line and per run
//! ([`crate::health::child`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fo_config::{Hooks, Router};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::health::child::{self, Ended, Ran, StartError, Stream};

/// The router a hook is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInfo {
    pub name: String,
    /// 0 for routers whose ownership is not VRRP.
    pub vrid: u8,
    pub vips: Vec<IpAddr>,
}

impl RouterInfo {
    pub fn of(router: &Router) -> Self {
        Self {
            name: router.name.clone(),
            vrid: router.vrrp().map_or(0, |v| v.vrid),
            vips: router.vips.clone(),
        }
    }

    fn vips_text(&self) -> String {
        self.vips
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A router state as hooks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookState {
    Initialize,
    Backup,
    Master,
    Fault,
    /// The agent stops this router (only `notify` runs, with `STOP`).
    Stop,
}

impl HookState {
    /// `FO_STATE` / `FO_OLD_STATE` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialize => "initialize",
            Self::Backup => "backup",
            Self::Master => "master",
            Self::Fault => "fault",
            Self::Stop => "stop",
        }
    }

    /// The third argument of keepalived's `notify`.
    pub fn keepalived(self) -> &'static str {
        match self {
            Self::Initialize => "INIT",
            Self::Backup => "BACKUP",
            Self::Master => "MASTER",
            Self::Fault => "FAULT",
            Self::Stop => "STOP",
        }
    }
}

/// Which hook of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Master,
    Backup,
    Fault,
    Stop,
    Notify,
}

impl HookKind {
    pub const ALL: [HookKind; 5] = [
        Self::Master,
        Self::Backup,
        Self::Fault,
        Self::Stop,
        Self::Notify,
    ];

    fn index(self) -> usize {
        match self {
            Self::Master => 0,
            Self::Backup => 1,
            Self::Fault => 2,
            Self::Stop => 3,
            Self::Notify => 4,
        }
    }

    /// This hook in `hooks`, if it is configured.
    pub fn command(self, hooks: &Hooks) -> Option<&fo_config::HookCommand> {
        match self {
            Self::Master => hooks.master.as_ref(),
            Self::Backup => hooks.backup.as_ref(),
            Self::Fault => hooks.fault.as_ref(),
            Self::Stop => hooks.stop.as_ref(),
            Self::Notify => hooks.notify.as_ref(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Backup => "backup",
            Self::Fault => "fault",
            Self::Stop => "stop",
            Self::Notify => "notify",
        }
    }
}

/// How one hook run ended.
#[derive(Debug)]
pub enum HookOutcome {
    Ok,
    Failed(ExitStatus),
    TimedOut,
    /// It was not started: refused (not safe to run, missing, not executable), or
    /// the start failed.
    NotStarted(StartError),
}

/// Counters of a router's hook runs (of one hook, or all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookStats {
    /// Hooks started (or attempted).
    pub runs: u64,
    /// Runs that exited non-zero or could not start.
    pub failures: u64,
    /// Runs killed at their timeout.
    pub timeouts: u64,
}

impl std::ops::AddAssign for HookStats {
    fn add_assign(&mut self, o: Self) {
        self.runs += o.runs;
        self.failures += o.failures;
        self.timeouts += o.timeouts;
    }
}

/// The counters of each hook, indexed by [`HookKind::index`], and the transitions
/// replaced by a newer one before their hooks ran.
#[derive(Debug, Default)]
struct PerHook {
    hooks: [Counters; HookKind::ALL.len()],
    coalesced: AtomicU64,
}

#[derive(Debug, Default)]
struct Counters {
    runs: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: &HookOutcome) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        match outcome {
            HookOutcome::Ok => {}
            HookOutcome::Failed(_) | HookOutcome::NotStarted(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            HookOutcome::TimedOut => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn get(&self) -> HookStats {
        HookStats {
            runs: self.runs.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

/// One hook invocation, fully described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub kind: HookKind,
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub run_as: Option<fo_config::RunAs>,
}

/// Programs one transition runs at most: its state's own hook, then `notify`.
pub const PROGRAMS_PER_TRANSITION: u32 = 2;

/// How long a stopping router may still be running hooks: the transition being run when
/// it stops and the stop's own (the queue holds at most one pending transition per
/// router), each program within `timeout`. The agent waits that long, so a hook is never
/// killed within its timeout.
pub fn stop_bound(timeout: Duration) -> Duration {
    timeout * (2 * PROGRAMS_PER_TRANSITION)
}

/// The hooks to run for a transition, in order: the new state's own hook, then
/// `notify`.
pub fn invocations(
    hooks: &Hooks,
    router: &RouterInfo,
    old: HookState,
    new: HookState,
    priority: u8,
) -> Vec<Invocation> {
    let own = match new {
        HookState::Master => hooks.master.as_ref().map(|p| (HookKind::Master, p)),
        HookState::Backup => hooks.backup.as_ref().map(|p| (HookKind::Backup, p)),
        HookState::Fault => hooks.fault.as_ref().map(|p| (HookKind::Fault, p)),
        HookState::Stop => hooks.stop.as_ref().map(|p| (HookKind::Stop, p)),
        HookState::Initialize => None,
    };
    let notify = hooks.notify.as_ref().map(|p| (HookKind::Notify, p));
    own.into_iter()
        .chain(notify)
        .map(|(kind, cmd)| Invocation {
            kind,
            path: cmd.program.clone(),
            args: if kind == HookKind::Notify {
                let mut a = cmd.args.clone();
                a.extend([
                    "INSTANCE".into(),
                    router.name.clone(),
                    new.keepalived().into(),
                    priority.to_string(),
                ]);
                a
            } else {
                cmd.args.clone()
            },
            run_as: hooks.run_as.clone(),
            env: vec![
                ("FO_ROUTER".into(), router.name.clone()),
                ("FO_VRID".into(), router.vrid.to_string()),
                ("FO_STATE".into(), new.as_str().into()),
                ("FO_OLD_STATE".into(), old.as_str().into()),
                ("FO_VIPS".into(), router.vips_text()),
                ("FO_PRIORITY".into(), priority.to_string()),
                ("FO_HOOK".into(), kind.as_str().into()),
            ],
        })
        .collect()
}

/// Run one hook to completion (or until `timeout`, when its process group is
/// killed), logging its output and how it ended under the current span.
pub async fn run(inv: &Invocation, timeout: Duration) -> HookOutcome {
    let hook = inv.kind.as_str();
    let path = inv.path.display().to_string();
    let argv: Vec<&std::ffi::OsStr> = std::iter::once(inv.path.as_os_str())
        .chain(inv.args.iter().map(|a| a.as_ref()))
        .collect();
    info!(hook, %path, "running hook");
    let identity = match &inv.run_as {
        Some(r) => match child::Identity::lookup(r).await {
            Ok(id) => Some(id),
            Err(reason) => {
                error!(hook, %path, error = %reason, "hook could not start");
                return HookOutcome::NotStarted(std::io::Error::other(reason).into());
            }
        },
        None => None,
    };
    let ran = child::run(
        &argv,
        inv.env.iter().cloned(),
        identity.as_ref(),
        timeout,
        |stream, line| match stream {
            Stream::Stdout => info!(hook, stream = "stdout", "{line}"),
            Stream::Stderr => info!(hook, stream = "stderr", "{line}"),
        },
    )
    .await;
    if let Ok(r) = &ran
        && let Some(note) = r.output.truncated()
    {
        warn!(hook, %path, "{note}");
    }
    let outcome = match ran {
        Ok(Ran {
            ended: Ended::Exited(st),
            ..
        }) if st.success() => HookOutcome::Ok,
        Ok(Ran {
            ended: Ended::Exited(st),
            ..
        }) => HookOutcome::Failed(st),
        Ok(Ran {
            ended: Ended::TimedOut,
            ..
        }) => HookOutcome::TimedOut,
        Err(e) => HookOutcome::NotStarted(e),
    };
    match &outcome {
        HookOutcome::Ok => info!(hook, %path, "hook done"),
        HookOutcome::Failed(st) => error!(hook, %path, status = %st, "hook failed"),
        HookOutcome::TimedOut => {
            error!(hook, %path, timeout = ?timeout, "hook still running at its timeout: killed")
        }
        HookOutcome::NotStarted(e @ StartError::Refused(_)) => {
            error!(hook, %path, error = %e, "hook refused")
        }
        HookOutcome::NotStarted(e) => error!(hook, %path, error = %e, "hook could not start"),
    }
    outcome
}

/// Run one hook in a task of its own: returns at once. Unordered; routers use
/// [`RouterHooks`], which runs their hooks in order.
pub fn spawn(inv: Invocation, timeout: Duration) -> tokio::task::JoinHandle<HookOutcome> {
    tokio::spawn(async move { run(&inv, timeout).await }.in_current_span())
}

enum Job {
    Transition(Transition),
    Flush(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy)]
struct Transition {
    old: HookState,
    new: HookState,
    priority: u8,
}

/// The jobs taken from the queue at once: the transition to run (the newest, from the
/// state the first one left), how many it replaced, and the flushes to answer after it.
#[derive(Default)]
struct Batch {
    transition: Option<Transition>,
    replaced: u64,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, job: Job) {
        match job {
            Job::Transition(t) => match &mut self.transition {
                Some(kept) => {
                    self.replaced += 1;
                    *kept = Transition { old: kept.old, ..t };
                }
                None => self.transition = Some(t),
            },
            Job::Flush(done) => self.flushes.push(done),
        }
    }
}

/// The hook queue of one router. Dropping it lets queued hooks finish, then the
/// task ends.
#[derive(Debug)]
pub struct RouterHooks {
    tx: mpsc::UnboundedSender<Job>,
    counters: HookCounters,
}

/// A read handle on a router's hook counters (for status and metrics).
#[derive(Debug, Clone, Default)]
pub struct HookCounters {
    counters: Arc<PerHook>,
    /// The hooks this router has (their counters are reported, zero or not).
    configured: Vec<HookKind>,
}

impl HookCounters {
    /// Runs of all this router's hooks together.
    pub fn total(&self) -> HookStats {
        let mut total = HookStats::default();
        for c in &self.counters.hooks {
            total += c.get();
        }
        total
    }

    /// Transitions whose hooks never ran: replaced by a newer one while a hook ran.
    pub fn coalesced(&self) -> u64 {
        self.counters.coalesced.load(Ordering::Relaxed)
    }

    /// Runs of each configured hook, by [`HookKind::as_str`].
    pub fn by_hook(&self) -> std::collections::BTreeMap<String, HookStats> {
        self.configured
            .iter()
            .map(|k| (k.as_str().to_string(), self.counters.hooks[k.index()].get()))
            .collect()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transition(t) => write!(f, "{:?} -> {:?}", t.old, t.new),
            Self::Flush(_) => f.write_str("flush"),
        }
    }
}

impl RouterHooks {
    /// Start the queue of `router`. Must be called inside a tokio runtime.
    pub fn start(router: RouterInfo, hooks: Hooks) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let counters = Arc::new(PerHook::default());
        let c = counters.clone();
        let configured = HookKind::ALL
            .into_iter()
            .filter(|k| k.command(&hooks).is_some())
            .collect();
        // A root span of its own (not under the router task's): one `router` field.
        let span = info_span!(parent: None, "hooks", router = %router.name);
        tokio::spawn(
            async move {
                while let Some(first) = rx.recv().await {
                    // Everything queued while the last hooks ran: only the newest
                    // transition's hooks run.
                    let mut batch = Batch::default();
                    batch.add(first);
                    while let Ok(job) = rx.try_recv() {
                        batch.add(job);
                    }
                    if let Some(t) = batch.transition {
                        if batch.replaced > 0 {
                            c.coalesced.fetch_add(batch.replaced, Ordering::Relaxed);
                            warn!(
                                replaced = batch.replaced,
                                from = t.old.as_str(),
                                to = t.new.as_str(),
                                "the state changed faster than the hooks ran: only the newest transition's hooks run"
                            );
                        }
                        for inv in invocations(&hooks, &router, t.old, t.new, t.priority) {
                            let outcome = run(&inv, hooks.timeout).await;
                            c.hooks[inv.kind.index()].count(&outcome);
                        }
                    }
                    for done in batch.flushes {
                        let _ = done.send(());
                    }
                }
            }
            .instrument(span),
        );
        Self {
            tx,
            counters: HookCounters {
                counters,
                configured,
            },
        }
    }

    /// Queue the hooks of a transition and return at once (transitions queued while a
    /// hook runs are coalesced: see the module doc).
    pub fn transition(&self, old: HookState, new: HookState, priority: u8) {
        // The task only ends when `self` is dropped, so this cannot fail while we exist.
        let _ = self
            .tx
            .send(Job::Transition(Transition { old, new, priority }));
    }

    /// Wait until every hook queued so far has finished (or was killed, or was
    /// replaced by a newer transition's).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Runs of all this router's hooks together.
    pub fn stats(&self) -> HookStats {
        self.counters.total()
    }

    /// Runs of each configured hook, by [`HookKind::as_str`].
    pub fn stats_by_hook(&self) -> std::collections::BTreeMap<String, HookStats> {
        self.counters.by_hook()
    }

    /// Transitions whose hooks were replaced by a newer transition's.
    pub fn coalesced(&self) -> u64 {
        self.counters.coalesced()
    }

    /// A handle that reads the counters after this queue has moved into its task.
    pub fn counters(&self) -> HookCounters {
        self.counters.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt as _;

    fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write hook");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    fn hook(dir: &TempDir, name: &str, body: &str) -> fo_config::HookCommand {
        fo_config::HookCommand::path(script(dir, name, body))
    }

    fn cmd(p: impl Into<PathBuf>) -> fo_config::HookCommand {
        fo_config::HookCommand::path(p)
    }

    fn router() -> RouterInfo {
        RouterInfo {
            name: "wazuh".into(),
            vrid: 51,
            vips: vec![
                "192.0.2.100".parse().expect("ip"),
                "192.0.2.101".parse().expect("ip"),
            ],
        }
    }

    fn hooks() -> Hooks {
        Hooks {
            timeout: Duration::from_secs(10),
            ..Hooks::default()
        }
    }

    type Log = crate::health::testutil::CapturedLog;

    fn stats(runs: u64, failures: u64, timeouts: u64) -> HookStats {
        HookStats {
            runs,
            failures,
            timeouts,
        }
    }

    /// The router's hooks `h` after one transition, backup to master at priority 150,
    /// has run its hooks.
    async fn became_master(h: Hooks) -> RouterHooks {
        let q = RouterHooks::start(router(), h);
        q.transition(HookState::Backup, HookState::Master, 150);
        q.flush().await;
        q
    }

    /// Waits (10 s at most) until `done` holds.
    async fn wait_until(what: &str, done: impl Fn() -> bool) {
        let waited = std::time::Instant::now();
        while !done() {
            assert!(waited.elapsed() < Duration::from_secs(10), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn hooks_get_the_environment_and_keepalived_arguments() {
        let dir = TempDir::new("hook-env");
        let out = dir.path().join("out");
        let body = format!(
            "echo \"$FO_HOOK|$FO_ROUTER|$FO_VRID|$FO_STATE|$FO_OLD_STATE|$FO_VIPS|$FO_PRIORITY|$*\" >> {}",
            out.display()
        );
        let mut h = hooks();
        h.master = Some(hook(&dir, "master.sh", &body));
        h.notify = Some(hook(&dir, "notify.sh", &body));
        let q = became_master(h).await;
        let text = std::fs::read_to_string(&out).expect("the hooks wrote their env");
        assert_eq!(
            text,
            "master|wazuh|51|master|backup|192.0.2.100 192.0.2.101|150|\n\
             notify|wazuh|51|master|backup|192.0.2.100 192.0.2.101|150|INSTANCE wazuh MASTER 150\n",
            "the state hook runs first without arguments, then notify with keepalived's"
        );
        assert_eq!(q.stats(), stats(2, 0, 0));
    }

    /// A keepalived notify line such as `notify "/etc/keepalived/notify.sh vip1"` keeps
    /// its own arguments, and `notify` gets keepalived's four after them; as root, a
    /// router's `user` runs every hook as that user.
    #[tokio::test]
    async fn hooks_keep_their_arguments_and_run_as_the_user() {
        let dir = TempDir::new("hook-args");
        // The hooks' directory stays root's (the rule); nobody writes into another.
        let outdir = TempDir::new("hook-args-out");
        let out = outdir.path().join("out");
        std::fs::set_permissions(outdir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod the dir so nobody can write");
        let body = format!("echo \"$FO_HOOK $(id -un) $*\" >> {}", out.display());
        let mut h = hooks();
        h.master = Some(fo_config::HookCommand {
            program: script(&dir, "master.sh", &body),
            args: vec!["vip 1".into(), "x".into()],
            at: Default::default(),
        });
        h.notify = Some(fo_config::HookCommand {
            program: script(&dir, "notify.sh", &body),
            args: vec!["site-a".into()],
            at: Default::default(),
        });
        let me = nix::unistd::Uid::effective();
        let who = if me.is_root() {
            h.run_as = Some(fo_config::RunAs {
                user: "nobody".into(),
                group: None,
            });
            "nobody".to_owned()
        } else {
            nix::unistd::User::from_uid(me)
                .ok()
                .flatten()
                .map_or_else(|| me.to_string(), |u| u.name)
        };
        let _q = became_master(h).await;
        let text = std::fs::read_to_string(&out).expect("the hooks wrote");
        assert_eq!(
            text,
            format!("master {who} vip 1 x\nnotify {who} site-a INSTANCE wazuh MASTER 150\n")
        );
    }

    #[tokio::test]
    async fn a_hook_whose_user_does_not_exist_fails_and_is_counted() {
        let dir = TempDir::new("hook-ghost");
        let mut h = hooks();
        h.master = Some(hook(&dir, "master.sh", "exit 0"));
        h.run_as = Some(fo_config::RunAs {
            user: "fo-no-such-user".into(),
            group: None,
        });
        let q = became_master(h).await;
        assert_eq!(q.stats(), stats(1, 1, 0));
    }

    #[tokio::test]
    async fn failing_and_missing_hooks_are_counted_and_do_not_stop_the_queue() {
        let dir = TempDir::new("hook-fail");
        let mut h = hooks();
        h.fault = Some(hook(
            &dir,
            "fault.sh",
            "echo compose down failed >&2; exit 1",
        ));
        h.backup = Some(cmd(dir.path().join("does-not-exist.sh")));
        h.master = Some(hook(&dir, "master.sh", "exit 0"));
        let q = RouterHooks::start(router(), h);
        // One at a time: transitions queued together are coalesced.
        q.transition(HookState::Master, HookState::Fault, 90);
        q.flush().await;
        q.transition(HookState::Fault, HookState::Backup, 90);
        q.flush().await;
        q.transition(HookState::Backup, HookState::Master, 150);
        q.flush().await;
        assert_eq!(q.stats(), stats(3, 2, 0));
        let one = |failures| stats(1, failures, 0);
        assert_eq!(
            q.stats_by_hook(),
            [
                ("backup".to_string(), one(1)),
                ("fault".to_string(), one(1)),
                ("master".to_string(), one(0)),
            ]
            .into(),
            "each hook is counted on its own; notify is not configured, so not listed"
        );
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_and_logged_and_the_call_returns_at_once() {
        let log = Log::default();
        let _guard = log.install();
        let dir = TempDir::new("hook-timeout");
        let pidfile = dir.path().join("pid");
        let mut h = hooks();
        h.timeout = Duration::from_millis(300);
        h.master = Some(hook(
            &dir,
            "master.sh",
            &format!(
                "echo $$ > {}; echo starting; exec sleep 30",
                pidfile.display()
            ),
        ));
        let q = RouterHooks::start(router(), h);
        let before = std::time::Instant::now();
        q.transition(HookState::Backup, HookState::Master, 150);
        let queued_in = before.elapsed();
        q.flush().await;
        assert!(
            queued_in < Duration::from_millis(100),
            "transition() must return at once, took {queued_in:?}"
        );
        assert_eq!(q.stats(), stats(1, 0, 1));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .expect("pidfile")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !child::pid_alive(pid),
            "hook process {pid} still runs after its timeout"
        );
        let text = log.text();
        assert!(
            text.contains("killed"),
            "expected a log line about the kill, saw:\n{text}"
        );
        assert!(
            text.contains("starting") && text.contains("wazuh"),
            "hook output under the router span, saw:\n{text}"
        );
    }

    #[tokio::test]
    async fn hooks_of_one_router_run_in_transition_order() {
        let dir = TempDir::new("hook-order");
        let out = dir.path().join("out");
        let mut h = hooks();
        // The first hook is slow: the second must still wait for it.
        h.master = Some(hook(
            &dir,
            "master.sh",
            &format!(
                "echo master-start >> {o}; sleep 0.3; echo master-end >> {o}",
                o = out.display()
            ),
        ));
        h.backup = Some(hook(
            &dir,
            "backup.sh",
            &format!("echo backup >> {}", out.display()),
        ));
        let q = RouterHooks::start(router(), h);
        q.transition(HookState::Backup, HookState::Master, 150);
        // Queued once master.sh runs (queued before, it would replace it).
        wait_until("master.sh never started", || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.contains("master-start"))
        })
        .await;
        q.transition(HookState::Master, HookState::Backup, 100);
        q.flush().await;
        let text = std::fs::read_to_string(&out).expect("hooks wrote");
        assert_eq!(
            text, "master-start\nmaster-end\nbackup\n",
            "hooks ran out of order"
        );
    }

    /// A flood of transitions while a hook runs: the running hook finishes, then only
    /// the newest transition's hooks run (from the state the hooks last ran for), and
    /// the replaced ones are counted and logged.
    #[tokio::test]
    async fn a_flood_of_transitions_runs_the_running_hook_then_the_newest_only() {
        let log = Log::default();
        let _guard = log.install();
        let dir = TempDir::new("hook-flood");
        let out = dir.path().join("out");
        let started = dir.path().join("started");
        let go = dir.path().join("go");
        let line = format!(
            "echo \"$FO_HOOK $FO_OLD_STATE>$FO_STATE $FO_PRIORITY\" >> {}",
            out.display()
        );
        let mut h = hooks();
        h.master = Some(hook(
            &dir,
            "master.sh",
            &format!(
                "{line}\ntouch {}\nwhile [ ! -e {go} ]; do sleep 0.01; done",
                started.display(),
                go = go.display()
            ),
        ));
        h.backup = Some(hook(&dir, "backup.sh", &line));
        h.fault = Some(hook(&dir, "fault.sh", &line));
        let q = RouterHooks::start(router(), h);
        q.transition(HookState::Backup, HookState::Master, 150);
        wait_until("the master hook never started", || started.exists()).await;
        // 100 transitions while master.sh runs, the last one master -> fault; then
        // master.sh may end.
        for i in 0..50u8 {
            q.transition(HookState::Master, HookState::Backup, 100 + i);
            q.transition(HookState::Backup, HookState::Master, 150);
        }
        q.transition(HookState::Master, HookState::Fault, 7);
        std::fs::write(&go, "").expect("go");
        q.flush().await;
        let text = std::fs::read_to_string(&out).expect("hooks wrote");
        assert_eq!(
            text, "master backup>master 150\nfault master>fault 7\n",
            "the running hook, then the newest transition only"
        );
        assert_eq!(q.coalesced(), 100, "replaced transitions counted");
        assert_eq!(q.stats(), stats(2, 0, 0));
        let text = log.text();
        assert!(
            text.contains("only the newest transition's hooks run")
                && text.contains("replaced=100"),
            "the coalescing is logged:\n{text}"
        );
    }

    /// A hook whose output is capped says so in the log.
    #[tokio::test]
    async fn a_chatty_hook_s_output_is_capped_with_a_note() {
        let log = Log::default();
        let _guard = log.install();
        let dir = TempDir::new("hook-chatty");
        let mut h = hooks();
        h.master = Some(hook(
            &dir,
            "master.sh",
            "yes fo-chatty-line | head -n 100000",
        ));
        let q = became_master(h).await;
        assert_eq!(q.stats().failures, 0, "{:?}", q.stats());
        let text = log.text();
        let logged = text.matches("fo-chatty-line").count();
        assert!(
            logged > 0 && logged * "fo-chatty-line".len() <= child::MAX_OUTPUT,
            "{logged} lines logged"
        );
        assert!(text.contains("output truncated"), "no note in the log");
    }

    #[test]
    fn stop_runs_the_stop_hook_then_notify() {
        let mut h = hooks();
        h.master = Some(cmd("/m"));
        h.notify = Some(cmd("/n"));
        let inv = invocations(&h, &router(), HookState::Master, HookState::Stop, 150);
        assert_eq!(inv.len(), 1, "no stop hook: only notify, saw {inv:?}");
        assert_eq!(inv[0].args, ["INSTANCE", "wazuh", "STOP", "150"]);
        h.stop = Some(fo_config::HookCommand {
            program: "/s".into(),
            args: vec!["down".into()],
            at: Default::default(),
        });
        let inv = invocations(&h, &router(), HookState::Master, HookState::Stop, 150);
        let seen: Vec<_> = inv.iter().map(|i| (i.kind, i.args.clone())).collect();
        assert_eq!(
            seen,
            [
                (HookKind::Stop, vec!["down".to_owned()]),
                (
                    HookKind::Notify,
                    vec![
                        "INSTANCE".into(),
                        "wazuh".into(),
                        "STOP".into(),
                        "150".into()
                    ]
                )
            ]
        );
        let inv = invocations(&hooks(), &router(), HookState::Master, HookState::Backup, 1);
        assert!(inv.is_empty(), "no hooks configured: {inv:?}");
    }

    /// The stop bound covers the longest run a stopping router can still have: every
    /// hook configured, a transition's programs running and the stop's own behind them.
    #[test]
    fn the_stop_bound_covers_a_running_transition_and_the_stop() {
        let mut h = hooks();
        for p in [&mut h.master, &mut h.backup, &mut h.fault, &mut h.notify] {
            *p = Some(cmd("/p"));
        }
        h.stop = Some(cmd("/s"));
        let states = [
            HookState::Master,
            HookState::Backup,
            HookState::Fault,
            HookState::Initialize,
        ];
        let longest = states
            .iter()
            .map(|&new| invocations(&h, &router(), HookState::Initialize, new, 1).len())
            .max()
            .expect("states");
        let stop = invocations(&h, &router(), HookState::Master, HookState::Stop, 0).len();
        let t = Duration::from_secs(30);
        assert_eq!(longest as u32, PROGRAMS_PER_TRANSITION);
        assert!(
            stop_bound(t) >= t * (longest + stop) as u32,
            "{:?}",
            stop_bound(t)
        );
    }
}
