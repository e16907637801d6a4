//! Commands run for the test: bounded in time (coreutils' `timeout`), their output
//! captured, a failure or a timeout an error that shows both streams.

use std::process::{Command, Output};

use anyhow::{Context as _, bail, ensure};

use crate::util::show;

/// Run a command, capturing its output; fail with both streams if it fails.
pub(super) fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    let text = text(&out);
    if timed_out(cmd, &out) {
        bail!("{} did not finish in time:\n{text}", show(cmd));
    }
    if !out.status.success() {
        bail!("{} failed ({}):\n{text}", show(cmd), out.status);
    }
    Ok(text)
}

/// `program` under coreutils' `timeout` (TERM after `seconds`, KILL 10 s later).
pub(super) fn bounded(seconds: u64, program: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["--kill-after=10", &seconds.to_string(), program]);
    c
}

/// Run a command [`bounded`] by `seconds`: (success, its output); an error, naming it
/// `what`, when it does not start or runs out of time.
pub(super) fn try_output(
    cmd: &mut Command,
    what: &str,
    seconds: u64,
) -> anyhow::Result<(bool, String)> {
    let out = cmd
        .output()
        .with_context(|| format!("spawning {}", show(cmd)))?;
    ensure!(
        !timed_out(cmd, &out),
        "{what}: did not finish in {seconds} s:\n{}",
        text(&out)
    );
    Ok((out.status.success(), text(&out)))
}

/// Did a [`bounded`] command run out of time? (`timeout` exits 124, or 137 after KILL.)
fn timed_out(cmd: &Command, out: &Output) -> bool {
    cmd.get_program() == "timeout" && matches!(out.status.code(), Some(124 | 137))
}

pub(super) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
