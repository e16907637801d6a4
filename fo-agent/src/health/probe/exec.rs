//! The exec probe: a program run through [`crate::health::child`], healthy when it exits 0.

use std::time::Duration;

use crate::health::child::{self, Ended, Stream};

use super::{ProbeError, ProbeResult};

/// Output lines of an exec check kept for the failure detail.
const EXEC_DETAIL_LINES: usize = 3;

/// Healthy when `argv` exits 0 within `timeout`; otherwise its whole process group
/// is killed. Its output is logged at debug level under `label`. With `run_as` it
/// runs as that user (looked up for every run).
pub async fn exec(
    argv: &[String],
    env: &[(String, String)],
    run_as: Option<&fo_config::RunAs>,
    timeout: Duration,
    label: &str,
) -> ProbeResult {
    let program = argv.first().cloned().unwrap_or_default();
    let identity = match run_as {
        Some(r) => Some(
            child::Identity::lookup(r)
                .await
                .map_err(|reason| ProbeError::Spawn {
                    program: program.clone(),
                    source: std::io::Error::other(reason),
                })?,
        ),
        None => None,
    };
    let mut last_lines: Vec<String> = Vec::new();
    let ran = child::run(
        argv,
        env.iter().map(|(k, v)| (k, v)),
        identity.as_ref(),
        timeout,
        |stream, line| {
            match stream {
                Stream::Stdout => tracing::debug!(check = label, "stdout: {line}"),
                Stream::Stderr => tracing::debug!(check = label, "stderr: {line}"),
            }
            if last_lines.len() == EXEC_DETAIL_LINES {
                last_lines.remove(0);
            }
            last_lines.push(line.chars().take(200).collect());
        },
    )
    .await
    .map_err(|e| match e {
        child::StartError::Refused(source) => ProbeError::Refused {
            source: Box::new(source),
        },
        child::StartError::Spawn(source) => ProbeError::Spawn {
            program: program.clone(),
            source,
        },
    })?;
    if let Some(note) = ran.output.truncated() {
        // The output itself is logged at debug only, so is this.
        tracing::debug!(check = label, "{note}");
    }
    match ran.ended {
        Ended::Exited(status) if status.success() => Ok(format!("{program} exited 0")),
        Ended::Exited(status) => Err(ProbeError::Exit {
            program,
            status,
            output: last_lines,
        }),
        Ended::TimedOut => Err(ProbeError::Killed {
            program,
            after: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::{T, TempDir};

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn exec_exit_codes() {
        let r = exec(&argv(&["true"]), &[], None, T, "t").await;
        assert!(r.is_ok(), "true must be up, saw {r:?}");
        let r = exec(
            &argv(&["sh", "-c", "echo broken >&2; exit 7"]),
            &[],
            None,
            T,
            "t",
        )
        .await;
        match r {
            Err(ProbeError::Exit { status, output, .. }) => {
                assert_eq!(status.code(), Some(7), "exit code");
                assert_eq!(output, vec!["broken".to_owned()], "captured output");
            }
            other => panic!("expected exit 7, saw {other:?}"),
        }
        let r = exec(&argv(&["/nonexistent/fo-check"]), &[], None, T, "t").await;
        assert!(
            matches!(&r, Err(e @ ProbeError::Refused { .. }) if e.to_string().contains("does not exist")),
            "saw {r:?}"
        );
        let env = [("FO_BACKEND_PORT".to_owned(), "1514".to_owned())];
        let r = exec(
            &argv(&["sh", "-c", "test \"$FO_BACKEND_PORT\" = 1514"]),
            &env,
            None,
            T,
            "t",
        )
        .await;
        assert!(
            r.is_ok(),
            "the environment must reach the command, saw {r:?}"
        );
    }

    /// As root (the test suite's norm), an exec check with `user = "nobody"` runs with
    /// nobody's uid, primary gid and groups, and its HOME/USER; `group` overrides the
    /// primary group; an unknown user fails to start with the reason.
    #[tokio::test]
    async fn exec_runs_as_the_configured_user() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to change user");
            return;
        }
        let nobody = child::Identity::resolve(&fo_config::RunAs {
            user: "nobody".into(),
            group: None,
        })
        .expect("nobody exists on Debian");
        let want = format!(
            "{} {} {} nobody",
            nobody.uid,
            nobody.gid,
            nobody.home.display()
        );
        let script = format!("test \"$(id -u) $(id -g) $HOME $USER\" = \"{want}\"");
        let run_as = fo_config::RunAs {
            user: "nobody".into(),
            group: None,
        };
        // `sh -c SCRIPT` run as `who`.
        let sh_as = async |script: &str, who: &fo_config::RunAs| {
            exec(&argv(&["sh", "-c", script]), &[], Some(who), T, "t").await
        };
        let r = sh_as(&script, &run_as).await;
        assert!(r.is_ok(), "expected `{want}`, saw {r:?}");
        // Not root any more: the supplementary groups are nobody's, not root's.
        let r = sh_as("test \"$(id -u)\" != 0 && ! id -G | grep -qw 0", &run_as).await;
        assert!(r.is_ok(), "root's groups kept: {r:?}");
        let with_group = fo_config::RunAs {
            user: "nobody".into(),
            group: Some("nogroup".into()),
        };
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .expect("lookup")
            .expect("nogroup exists on Debian")
            .gid;
        let r = sh_as(&format!("test \"$(id -g)\" = {nogroup}"), &with_group).await;
        assert!(r.is_ok(), "primary group {nogroup} expected: {r:?}");
        let ghost = fo_config::RunAs {
            user: "fo-no-such-user".into(),
            group: None,
        };
        let r = exec(&argv(&["true"]), &[], Some(&ghost), T, "t").await;
        match r {
            Err(e @ ProbeError::Spawn { .. }) => assert!(
                e.to_string()
                    .contains("user \"fo-no-such-user\" does not exist"),
                "reason missing from {e}"
            ),
            other => panic!("expected a start failure, saw {other:?}"),
        }
    }

    #[tokio::test]
    async fn exec_past_its_timeout_is_killed_with_its_children() {
        let dir = TempDir::new("exec-timeout");
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 30 & echo $! > {p}; echo $$ >> {p}; wait",
            p = pids.display()
        );
        let r = exec(
            &argv(&["sh", "-c", &script]),
            &[],
            None,
            Duration::from_millis(300),
            "t",
        )
        .await;
        assert!(
            matches!(r, Err(ProbeError::Killed { .. })),
            "expected a kill, saw {r:?}"
        );
        let text = std::fs::read_to_string(&pids).expect("the script wrote its pids");
        let pids: Vec<u32> = text
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect();
        assert_eq!(pids.len(), 2, "pids written: {text:?}");
        // The background sleep is re-parented to init (or a subreaper) which reaps it.
        for _ in 0..50 {
            if !pids.iter().any(|p| child::pid_alive(*p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("processes {pids:?} still run after the check timed out");
    }
}
