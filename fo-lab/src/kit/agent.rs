//! A running `fo-agent`, driven from outside as an operator drives it: its command line
//! against its control socket. (The lab runs the agent's binary; it does not link it.)

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// `AGENT ARGS --socket SOCKET`: whether it succeeded, and its stdout then its stderr.
pub fn ctl(agent: &Path, socket: &Path, args: &[&str]) -> std::io::Result<(bool, String)> {
    let out = Command::new(agent)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// `AGENT status --json --socket SOCKET`, parsed. Fails, with what the command printed,
/// when it fails or prints no JSON.
pub fn status(agent: &Path, socket: &Path) -> anyhow::Result<Value> {
    let (ok, text) = ctl(agent, socket, &["status", "--json"]).context("run fo-agent")?;
    if !ok {
        bail!("fo-agent status failed: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("status --json is not JSON: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_command_is_an_error_with_its_output() {
        // `false` ignores its arguments and fails.
        let (ok, text) =
            ctl(Path::new("false"), Path::new("/nonexistent"), &["status"]).expect("false runs");
        assert!(!ok);
        assert_eq!(text, "");
        let e = status(Path::new("echo"), Path::new("/x")).unwrap_err();
        assert!(
            format!("{e:#}").contains("not JSON: status --json --socket /x"),
            "{e:#}"
        );
    }
}
