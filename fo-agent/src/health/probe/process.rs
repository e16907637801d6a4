//! The process probes: a process by name (from `/proc`) or by pidfile. Neither forks.

use std::path::Path;
use std::time::Duration;

use crate::health::child;

use super::{ProbeError, ProbeResult, blocking};

/// The kernel keeps 15 bytes of a process name in `comm`.
const COMM_LEN: usize = 15;

/// Healthy when a running (non-zombie) process has this name. Names longer than
/// the kernel's 15-byte `comm` are compared against the program name in
/// `/proc/PID/cmdline` too. Reads `/proc`; does not fork.
pub async fn process_by_name(name: &str, timeout: Duration) -> ProbeResult {
    let name = name.to_owned();
    blocking(
        timeout,
        format!("process {name}"),
        move || match find_process("/proc".as_ref(), &name) {
            Some(pid) => Ok(format!("{name} running as pid {pid}")),
            None => Err(ProbeError::NoProcess { name }),
        },
    )
    .await
}

fn find_process(proc: &Path, name: &str) -> Option<u32> {
    let short = truncate_bytes(name, COMM_LEN);
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') != short {
            continue;
        }
        if name.len() > COMM_LEN {
            let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
                continue;
            };
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
            if base != name.as_bytes() {
                continue;
            }
        }
        if child::pid_alive(pid) {
            return Some(pid);
        }
    }
    None
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Healthy when the pid written in `path` is a running (non-zombie) process.
pub async fn process_by_pidfile(path: &Path, timeout: Duration) -> ProbeResult {
    let path = path.to_owned();
    blocking(timeout, format!("pidfile {}", path.display()), move || {
        let text = std::fs::read_to_string(&path).map_err(|source| ProbeError::Pidfile {
            path: path.clone(),
            source,
        })?;
        let Some(pid) = text
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|p| *p > 0)
        else {
            return Err(ProbeError::PidfileEmpty { path });
        };
        if child::pid_alive(pid) {
            Ok(format!("pid {pid} running"))
        } else {
            Err(ProbeError::PidGone { pid, path })
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::{T, TempDir};

    #[tokio::test]
    async fn process_by_name_and_pidfile() {
        let dir = TempDir::new("process");
        // A uniquely named copy of sleep, so no other process can match.
        let short = format!("fo{}", std::process::id());
        let long = format!("fo-health-test-sleeper-{}", std::process::id());
        let mut children = Vec::new();
        for name in [&short, &long] {
            let exe = dir.path().join(name);
            std::fs::copy("/bin/sleep", &exe).expect("copy sleep");
            children.push(
                tokio::process::Command::new(&exe)
                    .arg("30")
                    .kill_on_drop(true)
                    .spawn()
                    .expect("start the sleeper"),
            );
        }
        // Let the children exec (comm changes at exec).
        tokio::time::sleep(Duration::from_millis(100)).await;
        for name in [&short, &long] {
            let r = process_by_name(name, T).await;
            assert!(r.is_ok(), "expected {name} found, saw {r:?}");
        }
        let r = process_by_name(&format!("{long}x"), T).await;
        assert!(
            matches!(r, Err(ProbeError::NoProcess { .. })),
            "a longer name sharing the 15-byte comm must not match, saw {r:?}"
        );

        let pidfile = dir.path().join("sleeper.pid");
        let pid = children[0].id().expect("pid");
        std::fs::write(&pidfile, format!("{pid}\n")).expect("write pidfile");
        let r = process_by_pidfile(&pidfile, T).await;
        assert!(r.is_ok(), "expected pid {pid} running, saw {r:?}");

        for c in &mut children {
            c.kill().await.expect("kill the sleeper");
        }
        let r = process_by_name(&short, T).await;
        assert!(matches!(r, Err(ProbeError::NoProcess { .. })), "saw {r:?}");
        let r = process_by_pidfile(&pidfile, T).await;
        assert!(matches!(r, Err(ProbeError::PidGone { .. })), "saw {r:?}");

        std::fs::write(&pidfile, "\n").expect("write pidfile");
        let r = process_by_pidfile(&pidfile, T).await;
        assert!(
            matches!(r, Err(ProbeError::PidfileEmpty { .. })),
            "saw {r:?}"
        );
        let r = process_by_pidfile(&dir.path().join("missing.pid"), T).await;
        assert!(matches!(r, Err(ProbeError::Pidfile { .. })), "saw {r:?}");
    }
}
