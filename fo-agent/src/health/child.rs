//! Running a program in its own process group with a deadline: shared by exec
//! checks and by the router hooks.
//!
//! The program is started with `setpgid(0, 0)` so that everything it forks shares
//! its process group; when the deadline passes the whole group gets `SIGKILL`.
//! Its stdout and stderr are read line by line while it runs and handed to a sink
//! (so a hook's output reaches the log as it is printed). Once the program itself
//! has exited its output is drained for at most [`DRAIN`]: a background process it
//! left behind that keeps the pipes open neither blocks the caller nor gets killed.
//!
//! With an [`Identity`] (`user = "..."` on an exec check or on hooks) the child drops
//! to that user between fork and exec: supplementary groups (the user's, as
//! `initgroups(3)` would set them), then the group, then the user, in that order (each
//! step needs the privilege the next one gives up). `HOME`, `USER` and `LOGNAME` are
//! set to the user's. The user is looked up again for every run, so a user created or
//! changed later is seen; one that is gone makes the run fail to start.

use std::ffi::{CString, OsStr};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::time::{Instant, sleep_until};

/// How long output is still read after the program exited.
pub const DRAIN: Duration = Duration::from_millis(200);

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a program run ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited (or was killed by someone else) before the deadline.
    Exited(ExitStatus),
    /// It was still running at the deadline; its process group was killed.
    TimedOut,
}

/// Who a child runs as, resolved from the user and group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (including `gid`).
    pub groups: Vec<u32>,
    pub home: std::path::PathBuf,
}

impl Identity {
    /// Look `run_as` up (blocking: NSS may ask a directory service; see
    /// [`Identity::lookup`] for async callers).
    pub fn resolve(run_as: &fo_config::RunAs) -> Result<Self, String> {
        use nix::unistd::{Group, User, getgrouplist};
        let user = match User::from_name(&run_as.user) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("user {:?} does not exist", run_as.user)),
            Err(e) => return Err(format!("looking up user {:?}: {e}", run_as.user)),
        };
        let gid = match &run_as.group {
            None => user.gid,
            Some(g) => match Group::from_name(g) {
                Ok(Some(g)) => g.gid,
                Ok(None) => return Err(format!("group {g:?} does not exist")),
                Err(e) => return Err(format!("looking up group {g:?}: {e}")),
            },
        };
        let name = CString::new(user.name.clone())
            .map_err(|_| format!("user {:?}: NUL in the name", run_as.user))?;
        let groups = getgrouplist(&name, gid)
            .map_err(|e| format!("groups of user {:?}: {e}", run_as.user))?;
        Ok(Self {
            user: user.name,
            uid: user.uid.as_raw(),
            gid: gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: user.dir,
        })
    }

    /// [`Identity::resolve`] on the blocking pool.
    pub async fn lookup(run_as: &fo_config::RunAs) -> Result<Self, String> {
        let r = run_as.clone();
        tokio::task::spawn_blocking(move || Self::resolve(&r))
            .await
            .unwrap_or_else(|e| Err(format!("user lookup failed: {e}")))
    }
}

/// Every `user`/`group` of the config that cannot be resolved here, one line each, and
/// one line when this process lacks the capabilities that running as another user
/// needs (for `fo-agent check`, `run` and `reload`).
pub fn run_as_problems(config: &fo_config::Config) -> Vec<String> {
    // Without /proc the capabilities are not judged: the run itself then fails.
    run_as_problems_with(config, effective_capabilities(), |r| {
        Identity::resolve(r).map(drop)
    })
}

/// CAP_SETGID: setgroups(2) and setgid(2) of another group.
const CAP_SETGID: u32 = 6;
/// CAP_SETUID: setuid(2) to another user.
const CAP_SETUID: u32 = 7;

/// The effective capability set of this process (`CapEff:` of `/proc/self/status`).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    cap_eff(&status)
}

fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// [`run_as_problems`] with the capabilities (`None`: unknown, not judged) and the user
/// lookup given.
fn run_as_problems_with(
    config: &fo_config::Config,
    caps: Option<u64>,
    resolve: impl Fn(&fo_config::RunAs) -> Result<(), String>,
) -> Vec<String> {
    use fo_config::{CheckKind, ServiceCheckKind};
    let mut sites: Vec<(String, &fo_config::RunAs)> = Vec::new();
    for c in &config.checks {
        if let CheckKind::Exec {
            run_as: Some(r), ..
        } = &c.kind
        {
            sites.push((format!("check {}", c.name), r));
        }
    }
    for s in &config.services {
        if let Some(c) = &s.check
            && let ServiceCheckKind::Exec {
                run_as: Some(r), ..
            } = &c.kind
        {
            sites.push((format!("service {} check", s.name), r));
        }
    }
    for r in &config.routers {
        if let Some(run_as) = &r.hooks.run_as {
            sites.push((format!("router {} hooks", r.name), run_as));
        }
    }
    let mut out: Vec<String> = sites
        .iter()
        .filter_map(|(what, r)| resolve(r).err().map(|e| format!("{what}: {e}")))
        .collect();
    let missing: Vec<&str> = [(CAP_SETGID, "CAP_SETGID"), (CAP_SETUID, "CAP_SETUID")]
        .into_iter()
        .filter(|(bit, _)| caps.is_some_and(|c| c & (1 << bit) == 0))
        .map(|(_, name)| name)
        .collect();
    if !sites.is_empty() && !missing.is_empty() {
        let names: Vec<&str> = sites.iter().map(|(w, _)| w.as_str()).collect();
        out.push(format!(
            "{} set `user`, but this process lacks {}, which running a program as another user needs (the packaged unit's CapabilityBoundingSet= leaves them out: add `CapabilityBoundingSet=CAP_SETUID CAP_SETGID` in a drop-in, `systemctl edit fo-agent`)",
            names.join(", "),
            missing.join(" and ")
        ));
    }
    out
}

/// Run `argv` (no shell) with `env` added to the agent's environment, as `identity`
/// when given, until it exits or `timeout` passes. Returns an error only if it could
/// not be started.
pub async fn run<I, K, V>(
    argv: &[impl AsRef<OsStr>],
    env: I,
    identity: Option<&Identity>,
    timeout: Duration,
    mut sink: impl FnMut(Stream, &str),
) -> std::io::Result<Ended>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let deadline = Instant::now() + timeout;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Belt and braces: if this future is dropped (agent shutting down, check
        // task aborted), the child does not outlive it.
        .kill_on_drop(true);
    if let Some(id) = identity {
        cmd.env("HOME", &id.home)
            .env("USER", &id.user)
            .env("LOGNAME", &id.user);
        let groups: Vec<nix::unistd::Gid> = id
            .groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        let (uid, gid) = (
            nix::unistd::Uid::from_raw(id.uid),
            nix::unistd::Gid::from_raw(id.gid),
        );
        let drop_privileges = move || -> std::io::Result<()> {
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        };
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: setgroups(2), setgid(2) and setuid(2)
        // are system calls, and the group list was built (allocated) before the fork;
        // nothing here allocates, locks or touches shared state.
        unsafe {
            cmd.pre_exec(drop_privileges);
        }
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    let mut out = lines(child.stdout.take());
    let mut err = lines(child.stderr.take());
    let (mut out_open, mut err_open) = (true, true);
    let mut status: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;

    loop {
        if status.is_some() && !out_open && !err_open {
            break;
        }
        let stop_at = drain_until.unwrap_or(deadline).min(deadline);
        tokio::select! {
            line = next_line(&mut out), if out_open => match line {
                Some(l) => sink(Stream::Stdout, &l),
                None => out_open = false,
            },
            line = next_line(&mut err), if err_open => match line {
                Some(l) => sink(Stream::Stderr, &l),
                None => err_open = false,
            },
            st = child.wait(), if status.is_none() => match st {
                Ok(st) => {
                    status = Some(st);
                    drain_until = Some(Instant::now() + DRAIN);
                }
                Err(e) => return Err(e),
            },
            () = sleep_until(stop_at) => break,
        }
    }

    if let Some(st) = status {
        return Ok(Ended::Exited(st));
    }
    if let Some(pgid) = pgid {
        kill_group(pgid);
    }
    // Reap it (SIGKILL cannot be ignored, so this is quick).
    let _ = child.wait().await;
    Ok(Ended::TimedOut)
}

type Lines<R> = Option<tokio::io::Lines<BufReader<R>>>;

fn lines<R: AsyncRead + Unpin>(r: Option<R>) -> Lines<R> {
    r.map(|r| BufReader::new(r).lines())
}

async fn next_line<R: AsyncRead + Unpin>(l: &mut Lines<R>) -> Option<String> {
    match l {
        // A read error (not UTF-8, ...) ends the stream like EOF.
        Some(l) => l.next_line().await.ok().flatten(),
        None => None,
    }
}

/// SIGKILL every process of the group led by `pgid`.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The
    // group leader has not been reaped yet (we reap it right after), so its pid,
    // and with it the process group id, cannot have been reused by another process.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(
            pgid,
            error = %std::io::Error::last_os_error(),
            "killing the process group"
        );
    }
}

/// True when a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => proc_stat_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/PID/stat` line (after the parenthesised comm,
/// which may itself contain spaces and parentheses).
pub fn proc_stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letter_is_read_after_the_last_parenthesis() {
        assert_eq!(proc_stat_state("12 (a) b) S 1 2"), Some('S'));
        assert_eq!(proc_stat_state("12 (sleep) Z 1"), Some('Z'));
        assert_eq!(proc_stat_state("garbage"), None);
    }

    #[tokio::test]
    async fn output_lines_reach_the_sink_in_order() {
        let mut seen = Vec::new();
        let ended = run(
            &["sh", "-c", "echo one; echo two >&2; echo three; exit 3"],
            [("X", "1")],
            None,
            Duration::from_secs(10),
            |s, l| seen.push((s, l.to_owned())),
        )
        .await
        .expect("sh starts");
        match ended {
            Ended::Exited(st) => assert_eq!(st.code(), Some(3), "exit status of sh"),
            Ended::TimedOut => panic!("expected an exit, saw a timeout"),
        }
        let out: Vec<_> = seen.iter().filter(|(s, _)| *s == Stream::Stdout).collect();
        assert_eq!(out.len(), 2, "stdout lines, saw {seen:?}");
        assert_eq!(out[0].1, "one");
        assert_eq!(out[1].1, "three");
        assert!(
            seen.contains(&(Stream::Stderr, "two".to_owned())),
            "stderr line missing from {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_background_child_holding_the_pipes_does_not_block() {
        let start = std::time::Instant::now();
        let ended = run(
            &["sh", "-c", "sleep 5 & echo started"],
            std::iter::empty::<(&str, &str)>(),
            None,
            Duration::from_secs(20),
            |_, _| {},
        )
        .await
        .expect("sh starts");
        assert!(matches!(ended, Ended::Exited(_)), "saw {ended:?}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "returned only after {:?}",
            start.elapsed()
        );
    }

    fn config_with_users() -> fo_config::Config {
        fo_config::Config::parse(
            r#"
[node]
interface = "eth0"

[[router]]
name = "web"
vrid = 51
vips = ["192.0.2.10"]
hooks = { master = "/bin/true", user = "hooks" }

[[check]]
name = "app"
kind = "exec"
command = ["/bin/true"]
user = "ghost"
"#,
        )
        .expect("valid config")
    }

    #[test]
    fn run_as_needs_cap_setuid_and_cap_setgid() {
        let config = config_with_users();
        let resolve = |r: &fo_config::RunAs| {
            if r.user == "ghost" {
                Err("user \"ghost\" does not exist".to_owned())
            } else {
                Ok(())
            }
        };
        let all = u64::MAX;
        assert_eq!(
            run_as_problems_with(&config, Some(all), resolve),
            ["check app: user \"ghost\" does not exist"],
            "with every capability only the unknown user is a problem"
        );
        // The packaged unit's set: CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_PERFMON
        // (38), CAP_BPF (39).
        let unit = (1 << 12) | (1 << 13) | (1 << 38) | (1 << 39);
        let p = run_as_problems_with(&config, Some(unit), resolve);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[1].starts_with("check app, router web hooks set `user`, but this process lacks CAP_SETGID and CAP_SETUID"),
            "{p:?}"
        );
        let p = run_as_problems_with(&config, Some(all & !(1 << CAP_SETUID)), |_| Ok(()));
        assert!(p.len() == 1 && p[0].contains("lacks CAP_SETUID,"), "{p:?}");
        assert!(
            run_as_problems_with(&config, None, |_| Ok(())).is_empty(),
            "unknown capabilities are not judged"
        );
        let none = fo_config::Config::parse("[node]\ninterface = \"eth0\"\n").expect("valid");
        assert!(
            run_as_problems_with(&none, Some(0), |_| Ok(())).is_empty(),
            "without `user` no capability is needed"
        );
    }

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tfo-agent\nCapInh:\t0000000000000000\nCapEff:\t000000c000003000\n";
        assert_eq!(cap_eff(status), Some(0xc0_0000_3000));
        assert_eq!(cap_eff("Name:\tx\n"), None);
        assert!(
            effective_capabilities().is_some(),
            "this process has a CapEff line"
        );
    }

    #[tokio::test]
    async fn an_empty_command_is_an_error() {
        let argv: [&str; 0] = [];
        let r = run(
            &argv,
            std::iter::empty::<(&str, &str)>(),
            None,
            Duration::from_secs(1),
            |_, _| {},
        )
        .await;
        assert!(r.is_err(), "expected an error, saw {r:?}");
    }
}
