//! Running a program in its own process group with a deadline: shared by exec
//! checks and by the router hooks.
//!
//! Before each run the program is looked up and judged ([`super::program`]): one that
//! a user other than root (or the `user` it runs as) could change is not run.
//!
//! The program is started with `setpgid(0, 0)` so that everything it forks shares
//! its process group; when the deadline passes the whole group gets `SIGKILL`.
//! Its stdout and stderr are read line by line while it runs and handed to a sink
//! (so a hook's output reaches the log as it is printed): as lossy UTF-8, each line cut
//! at [`MAX_LINE`] bytes and at most [`MAX_OUTPUT`] bytes a run; past those the output
//! is still read, and dropped, so that a chatty child never blocks on a full pipe, and
//! the caller gets the counts ([`Output`]) to log a note. Once the program itself has
//! exited its output is drained for at most [`DRAIN`]: a background process it left
//! behind that keeps the pipes open neither blocks the caller nor gets killed.
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

use super::program::Refusal;

/// How long output is still read after the program exited.
pub const DRAIN: Duration = Duration::from_millis(200);
/// The longest output line handed on, in bytes (the rest of the line is dropped).
pub const MAX_LINE: usize = 4096;
/// Output bytes handed on per run (stdout and stderr together); later lines are read
/// and dropped.
pub const MAX_OUTPUT: usize = 256 * 1024;

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

    /// Who besides root may own the programs run as this identity
    /// ([`super::program::Trust::run_as`]).
    pub fn trust(&self) -> super::program::Trust {
        super::program::Trust::run_as(&self.user, self.uid, self.gid, &self.groups)
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

/// Why a program was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The program is not safe to run, or not there ([`super::program`]).
    #[error("not run: {0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Spawn(#[from] std::io::Error),
}

/// How a run ended, and what its output was.
#[derive(Debug)]
pub struct Ran {
    pub ended: Ended,
    pub output: Output,
}

/// The output of one run, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    /// Bytes read from stdout and stderr (all of them, logged or not).
    pub bytes: u64,
    /// Lines handed to the sink.
    pub lines: u64,
    /// Lines longer than [`MAX_LINE`] bytes: the sink got their first [`MAX_LINE`].
    pub cut_lines: u64,
    /// Lines read after the sink had [`MAX_OUTPUT`] bytes: read and dropped.
    pub dropped_lines: u64,
}

impl Output {
    /// A note for the log when lines were cut or dropped.
    pub fn truncated(&self) -> Option<String> {
        if self.cut_lines == 0 && self.dropped_lines == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.cut_lines > 0 {
            parts.push(format!(
                "{} line(s) longer than {MAX_LINE} bytes cut",
                self.cut_lines
            ));
        }
        if self.dropped_lines > 0 {
            parts.push(format!(
                "{} line(s) after the first {} KiB not logged",
                self.dropped_lines,
                MAX_OUTPUT / 1024
            ));
        }
        Some(format!(
            "output truncated ({} bytes in all): {}",
            self.bytes,
            parts.join(", ")
        ))
    }
}

/// Run `argv` (no shell) with `env` added to the agent's environment, as `identity`
/// when given, until it exits or `timeout` passes. The program is looked up and judged
/// first ([`super::program::checked`]; a bare name through the agent's `PATH`) and run
/// by that absolute path, `argv[0]` as given. Its output reaches `sink` line by line:
/// lossy UTF-8, each line at most [`MAX_LINE`] bytes, at most [`MAX_OUTPUT`] bytes per
/// run; the rest is read and dropped, so a chatty child never blocks on a full pipe.
/// Returns an error only if it could not be started.
pub async fn run<I, K, V>(
    argv: &[impl AsRef<OsStr>],
    env: I,
    identity: Option<&Identity>,
    timeout: Duration,
    mut sink: impl FnMut(Stream, &str),
) -> Result<Ran, StartError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command").into());
    };
    let deadline = Instant::now() + timeout;
    let trust = identity.map(Identity::trust).unwrap_or_default();
    let name = program.as_ref().to_owned();
    let exe = tokio::task::spawn_blocking(move || {
        super::program::checked(&name, std::env::var_os("PATH").as_deref(), &trust)
    })
    .await
    .map_err(std::io::Error::other)??;
    let mut cmd = Command::new(exe);
    cmd.arg0(program)
        .args(args)
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
    let mut out = child.stdout.take().map(LineReader::new);
    let mut err = child.stderr.take().map(LineReader::new);
    let (mut out_open, mut err_open) = (out.is_some(), err.is_some());
    let mut status: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut output = Output::default();
    let mut logged: usize = 0;
    let mut line = |stream: Stream, l: Line, output: &mut Output| {
        output.cut_lines += u64::from(l.cut);
        if logged + l.text.len() > MAX_OUTPUT {
            // The budget is spent: read on, log nothing more.
            logged = MAX_OUTPUT;
            output.dropped_lines += 1;
            return;
        }
        logged += l.text.len();
        output.lines += 1;
        sink(stream, &l.text);
    };

    loop {
        if status.is_some() && !out_open && !err_open {
            break;
        }
        let stop_at = drain_until.unwrap_or(deadline).min(deadline);
        tokio::select! {
            l = next_line(&mut out), if out_open => match l {
                Some(l) => line(Stream::Stdout, l, &mut output),
                None => out_open = false,
            },
            l = next_line(&mut err), if err_open => match l {
                Some(l) => line(Stream::Stderr, l, &mut output),
                None => err_open = false,
            },
            st = child.wait(), if status.is_none() => match st {
                Ok(st) => {
                    status = Some(st);
                    drain_until = Some(Instant::now() + DRAIN);
                }
                Err(e) => return Err(e.into()),
            },
            () = sleep_until(stop_at) => break,
        }
    }
    output.bytes = out.as_ref().map_or(0, |r| r.bytes) + err.as_ref().map_or(0, |r| r.bytes);

    if let Some(st) = status {
        return Ok(Ran {
            ended: Ended::Exited(st),
            output,
        });
    }
    if let Some(pgid) = pgid {
        kill_group(pgid);
    }
    // Reap it (SIGKILL cannot be ignored, so this is quick).
    let _ = child.wait().await;
    Ok(Ran {
        ended: Ended::TimedOut,
        output,
    })
}

/// One line of a child's output.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    /// Lossy UTF-8, without the newline (and a `\r` before it).
    text: String,
    /// The line was longer than [`MAX_LINE`] bytes: this is its start.
    cut: bool,
}

/// Reads a child's stream as lines of at most [`MAX_LINE`] bytes, whatever it writes
/// (bytes that are not UTF-8 become U+FFFD; the rest of a longer line is read and
/// dropped). Cancel-safe: its only await is `fill_buf`, and the state changes after it.
struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
    /// In the middle of a line that was cut: drop up to its newline.
    skipping: bool,
    done: bool,
    /// Bytes read so far.
    bytes: u64,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(r: R) -> Self {
        Self {
            inner: BufReader::new(r),
            line: Vec::new(),
            skipping: false,
            done: false,
            bytes: 0,
        }
    }

    fn take(&mut self, cut: bool) -> Line {
        if self.line.last() == Some(&b'\r') && !cut {
            self.line.pop();
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        Line { text, cut }
    }

    /// The next line, or `None` at the end of the stream (or a read error, which ends
    /// it too).
    async fn next(&mut self) -> Option<Line> {
        loop {
            if self.done {
                return None;
            }
            let buf = match self.inner.fill_buf().await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => &[],
            };
            if buf.is_empty() {
                self.done = true;
                if self.line.is_empty() {
                    return None;
                }
                return Some(self.take(false));
            }
            let newline = buf.iter().position(|b| *b == b'\n');
            let chunk = &buf[..newline.unwrap_or(buf.len())];
            let used = chunk.len() + usize::from(newline.is_some());
            let mut cut = false;
            if !self.skipping {
                let take = chunk.len().min(MAX_LINE - self.line.len());
                self.line.extend_from_slice(&chunk[..take]);
                cut = take < chunk.len();
            }
            self.inner.consume(used);
            self.bytes += used as u64;
            if cut {
                self.skipping = newline.is_none();
                return Some(self.take(true));
            }
            if newline.is_some() {
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Some(self.take(false));
            }
        }
    }
}

async fn next_line<R: AsyncRead + Unpin>(r: &mut Option<LineReader<R>>) -> Option<Line> {
    match r {
        Some(r) => r.next().await,
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
        match ended.ended {
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
        assert!(matches!(ended.ended, Ended::Exited(_)), "saw {ended:?}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "returned only after {:?}",
            start.elapsed()
        );
    }

    /// Run `sh -c script`, which must exit 0, and collect what the sink got.
    async fn sh(script: &str) -> (Ran, Vec<(Stream, String)>) {
        let mut seen = Vec::new();
        let ran = run(
            &["sh", "-c", script],
            std::iter::empty::<(&str, &str)>(),
            None,
            Duration::from_secs(20),
            |s, l| seen.push((s, l.to_owned())),
        )
        .await
        .expect("sh starts");
        assert!(
            matches!(ran.ended, Ended::Exited(s) if s.success()),
            "{ran:?}"
        );
        (ran, seen)
    }

    /// The output's note (what was not logged) says `says`.
    fn assert_note(output: &Output, says: &str) {
        let note = output.truncated();
        assert!(
            note.as_ref().is_some_and(|n| n.contains(says)),
            "a note saying {says:?} expected, saw {note:?}"
        );
    }

    /// Bytes that are not UTF-8 become U+FFFD, and the stream is read on: before, a
    /// read error ended it, and a child writing on blocked once the pipe was full.
    #[tokio::test]
    async fn output_that_is_not_utf8_is_read_lossily_to_the_end() {
        let (_, seen) = sh("printf 'a\\377b\\n'; echo after; printf 'x\\200' >&2").await;
        // In order within a stream (the two streams interleave as they come).
        let of = |s: Stream| -> Vec<&str> {
            seen.iter()
                .filter(|(st, _)| *st == s)
                .map(|(_, l)| l.as_str())
                .collect()
        };
        assert_eq!(of(Stream::Stdout), ["a\u{FFFD}b", "after"], "{seen:?}");
        assert_eq!(of(Stream::Stderr), ["x\u{FFFD}"], "{seen:?}");
    }

    /// A line longer than MAX_LINE is handed on cut, and the next line is whole.
    #[tokio::test]
    async fn a_long_line_is_cut_and_the_next_one_is_whole() {
        let (ran, seen) = sh("head -c 100000 /dev/zero | tr '\\0' x; echo; echo next").await;
        let lens: Vec<(usize, &str)> = seen
            .iter()
            .map(|(_, l)| (l.len(), if l.len() > 8 { "" } else { l.as_str() }))
            .collect();
        assert_eq!(lens, [(MAX_LINE, ""), (4, "next")], "line lengths");
        assert_eq!(ran.output.cut_lines, 1, "{:?}", ran.output);
        assert_eq!(ran.output.bytes, 100_000 + 1 + 5, "every byte read");
        assert_note(&ran.output, "1 line(s) longer than 4096 bytes cut");
    }

    /// Past MAX_OUTPUT the child's output is still read (it exits instead of blocking
    /// on a full pipe) and dropped, counted for the note.
    #[tokio::test]
    async fn output_past_the_cap_is_read_and_dropped() {
        // 200,000 lines of 11 bytes: 2.2 MB on stdout, and a last line on stderr.
        let (ran, seen) = sh("yes 0123456789 | head -n 200000; echo done >&2").await;
        let logged: usize = seen.iter().map(|(_, l)| l.len()).sum();
        assert!(logged <= MAX_OUTPUT, "{logged} bytes handed on");
        assert_eq!(seen.len() as u64, ran.output.lines);
        assert_eq!(
            ran.output.lines + ran.output.dropped_lines,
            200_001,
            "every line counted: {:?}",
            ran.output
        );
        assert_eq!(ran.output.bytes, 200_000 * 11 + 5);
        assert_note(&ran.output, "after the first 256 KiB not logged");
        let (quiet, _) = sh("echo one").await;
        assert_eq!(quiet.output.truncated(), None, "a short run has no note");
    }

    /// The program is judged before it runs: one in a directory others may write is
    /// refused, and never started.
    #[tokio::test]
    async fn a_program_others_could_change_is_not_run() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::os::unix::fs::PermissionsExt as _;
        let dir = super::super::testutil::TempDir::new("child-refused");
        let marker = dir.path().join("ran");
        let prog = dir.path().join("p.sh");
        std::fs::write(&prog, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("write");
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let argv = [prog.as_os_str()];
        let start = || {
            run(
                &argv,
                std::iter::empty::<(&str, &str)>(),
                None,
                Duration::from_secs(5),
                |_, _| {},
            )
        };
        let r = start().await;
        assert!(
            matches!(&r, Err(e @ StartError::Refused(_)) if e.to_string().contains("writable by others")),
            "{r:?}"
        );
        assert!(!marker.exists(), "the refused program ran");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let r = start().await;
        assert!(r.is_ok() && marker.exists(), "{r:?}");
    }

    /// argv[0] stays the name as written; the program found in PATH runs.
    #[tokio::test]
    async fn a_bare_name_runs_from_path_with_its_own_argv0() {
        let (_, seen) = sh("echo $0").await;
        assert_eq!(seen, [(Stream::Stdout, "sh".to_owned())].to_vec());
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
