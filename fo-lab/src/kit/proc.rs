//! A lab process whose output lines are read as they come, each stamped with the wall
//! clock at arrival (the same clock as the sinks' `*_unix_ns`), and copied to a log file.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};

use crate::locks::lock;

/// Output lines with the instant each arrived.
pub type Lines = Arc<Mutex<Vec<(SystemTime, String)>>>;

pub struct Proc {
    pub what: String,
    child: Child,
    pub lines: Lines,
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` (stdin closed, stdout and stderr read line by line into `log`).
    ///
    /// The child gets a process group of its own, so a Ctrl-C at the terminal reaches
    /// only xtask, whose handler then tears the lab down in order.
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
        Proc::spawn_attached(what, cmd, log)
    }

    /// As [`Proc::spawn`], but the child stays in the caller's process group: for test
    /// binaries, which have no Ctrl-C handler, so that a Ctrl-C at the terminal ends
    /// the child with the test instead of leaving it running.
    pub fn spawn_attached(what: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawn {what}"))?;
        let lines: Lines = Arc::default();
        let file = Arc::new(Mutex::new(
            File::create(log).with_context(|| format!("create {}", log.display()))?,
        ));
        if let Some(out) = child.stdout.take() {
            reader(out, lines.clone(), file.clone());
        }
        if let Some(err) = child.stderr.take() {
            reader(err, lines.clone(), file);
        }
        Ok(Proc {
            what: what.to_owned(),
            child,
            lines,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`INT`, `TERM`, `KILL`…) without waiting.
    pub fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            bail!("kill -s {sig} {} ({}) failed", self.pid(), self.what);
        }
        Ok(())
    }

    /// SIGKILL and reap; returns the instant of the kill.
    pub fn kill9(&mut self) -> SystemTime {
        let at = SystemTime::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait for the process to exit; SIGKILL it and fail after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if start.elapsed() >= timeout {
                self.kill9();
                bail!(
                    "{} did not exit within {timeout:?}; killed. Its log:\n{}",
                    self.what,
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until a line satisfies `pred`; fail if the process exits first or after
    /// `timeout`. Returns the line and when it arrived.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<(SystemTime, String)> {
        self.wait_for_line_since(SystemTime::UNIX_EPOCH, timeout, pred)
    }

    /// As [`Proc::wait_for_line`], for lines that arrived at or after `since`.
    pub fn wait_for_line_since(
        &mut self,
        since: SystemTime,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> anyhow::Result<(SystemTime, String)> {
        let start = Instant::now();
        loop {
            if let Some(hit) = self
                .lock()
                .iter()
                .find(|(at, l)| *at >= since && pred(l))
                .cloned()
            {
                return Ok(hit);
            }
            if let Some(status) = self.exited() {
                // The reader threads may still hold the last lines.
                std::thread::sleep(Duration::from_millis(50));
                bail!(
                    "{} exited ({status}) before it was ready. The end of its log ({}):\n{}",
                    self.what,
                    self.log.display(),
                    self.tail(30)
                );
            }
            if start.elapsed() >= timeout {
                bail!(
                    "{} not ready after {timeout:?}. Its log:\n{}",
                    self.what,
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lock();
        let from = lines.len().saturating_sub(n);
        lines[from..]
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(SystemTime, String)>> {
        lock(&self.lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reader(stream: impl Read + Send + 'static, lines: Lines, file: Arc<Mutex<File>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let now = SystemTime::now();
            let _ = writeln!(lock(&file), "{line}");
            lock(&lines).push((now, line));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_logged_and_waited_for() {
        let dir = std::env::temp_dir().join(format!("fo-lab-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let log = dir.join("p.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo first; echo second >&2; sleep 5"]);
        let mut p = Proc::spawn("sh", cmd, &log).expect("spawns");
        let line = p.wait_for_line(Duration::from_secs(10), |l| l.contains("second"));
        assert!(line.is_ok(), "stderr line seen; got {}", p.tail(5));
        assert!(p.tail(5).contains("first"), "stdout kept: {}", p.tail(5));
        p.kill9();
        assert!(p.exited().is_some(), "killed and reaped");
        let logged = std::fs::read_to_string(&log).expect("log file");
        assert!(
            logged.contains("first") && logged.contains("second"),
            "{logged}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
