//! A copy of the root booted with systemd-nspawn ([`Booted`]): a boot that fails
//! instead of hanging, and commands run inside it, bounded in time.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use super::chroot::Chroot;
use super::command::{bounded, output, try_output};

/// Longest a command in the booted root may take (a stop waits up to 20 s for a hook).
pub(super) const BOOTED_COMMAND_SECONDS: u64 = 180;
/// How long the booted root may take to finish booting (a few seconds here).
const BOOT_SECONDS: u64 = 60;

/// A booted copy of the root (systemd-nspawn), killed on drop.
pub(super) struct Booted {
    nspawn: std::process::Child,
    leader: u32,
}

impl Booted {
    /// Boot `c`; its console goes to `log`. Fails (never hangs) when nspawn exits or
    /// the boot does not finish in [`BOOT_SECONDS`], with what nspawn and systemd said.
    pub(super) fn boot(c: &Chroot, log: &Path) -> anyhow::Result<Booted> {
        let console = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        // Its own network namespace (no interface on this machine's); the agent's bpf(2)
        // calls let through nspawn's system call filter; all capabilities it may keep.
        let nspawn = Command::new("systemd-nspawn")
            .arg("--directory")
            .arg(&c.dir)
            .args([
                "--boot",
                "--private-network",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "--capability=all",
                "--system-call-filter=bpf perf_event_open",
                "--quiet",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()
            .context("spawning systemd-nspawn")?;
        let mut booted = Booted { nspawn, leader: 0 };
        let pid = booted.nspawn.id();
        let started = Instant::now();
        let said = || std::fs::read_to_string(log).unwrap_or_default();
        let mut state = String::new();
        loop {
            if booted.leader == 0 {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                booted.leader = children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if booted.leader != 0 {
                let (_, s) = booted.try_sh_quiet(10, "systemctl is-system-running")?;
                state = s.trim().to_owned();
                if matches!(state.as_str(), "running" | "degraded") {
                    return Ok(booted);
                }
            }
            if let Some(st) = booted.nspawn.try_wait()? {
                bail!(
                    "systemd-nspawn exited ({st}) before the container booted (docs/lab.md: the \
                     package test's preconditions); it said:\n{}",
                    said()
                );
            }
            if started.elapsed() > std::time::Duration::from_secs(BOOT_SECONDS) {
                let jobs = if booted.leader != 0 {
                    booted
                        .try_sh_quiet(
                            10,
                            "systemctl list-jobs --no-pager; systemctl --failed --no-pager",
                        )?
                        .1
                } else {
                    "(no container process)".to_owned()
                };
                bail!(
                    "the container did not finish booting in {BOOT_SECONDS} s (state {state:?}):\n\
                     {jobs}\nsystemd-nspawn said:\n{}",
                    said()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `script` in the container (all its namespaces, or its mount namespace only),
    /// bounded by `seconds`.
    pub(super) fn command(&self, seconds: u64, mount_only: bool, script: &str) -> Command {
        let mut c = bounded(seconds, "nsenter");
        c.arg("-t").arg(self.leader.to_string());
        c.arg(if mount_only { "-m" } else { "-a" });
        c.args(["sh", "-c", script])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    fn try_sh_quiet(&self, seconds: u64, script: &str) -> anyhow::Result<(bool, String)> {
        let what = format!("[booted] {script}");
        try_output(&mut self.command(seconds, false, script), &what, seconds)
    }

    /// Run `script` inside (all namespaces); (success, output).
    pub(super) fn try_sh(&self, script: &str) -> anyhow::Result<(bool, String)> {
        eprintln!("+ [booted] {script}");
        self.try_sh_quiet(BOOTED_COMMAND_SECONDS, script)
    }

    pub(super) fn sh(&self, script: &str) -> anyhow::Result<String> {
        eprintln!("+ [booted] {script}");
        output(&mut self.command(BOOTED_COMMAND_SECONDS, false, script))
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
