//! A lab for one run of an xtask command that keeps its logs (`demo`, `chaos`): under
//! `target/<what>/run-<pid>`, the directories of runs whose process is gone removed.

use std::path::{Path, PathBuf};

use super::{Bins, Lab, Spec, target_dir};

/// Builds the lab for one run of `what` and says where its logs go; returns it and
/// `target/<what>`, where the run's reports go.
pub fn build(what: &str, spec: &Spec, bins: Bins) -> anyhow::Result<(Lab, PathBuf)> {
    let out = target_dir().join(what);
    let run_dir = out.join(format!("run-{}", std::process::id()));
    remove_old_runs(&out);
    eprintln!(
        "{what}: building the lab {}-{} (logs in {})",
        spec.prefix,
        std::process::id(),
        run_dir.display()
    );
    Ok((Lab::build(spec, bins, &run_dir)?, out))
}

/// Remove the `run-<pid>` log directories under `out` (of the demo, the chaos run) whose
/// process is gone.
fn remove_old_runs(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
