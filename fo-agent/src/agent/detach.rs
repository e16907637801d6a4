//! Removing the pinned data plane of a stopped agent (`fo-agent detach`; the Debian
//! package runs it when it is removed, never on an upgrade).
//!
//! The XDP program, its maps and its link stay pinned in bpffs when the agent stops, so
//! that a restart or an upgrade drops no packet. Removing the pins makes the program
//! leave its interfaces: every flow, NAT connection and VIP it served is gone.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long the program may take to leave an interface once its link is unpinned.
const DETACH_WAIT: Duration = Duration::from_secs(3);

/// Remove the pins in `dir` (`fo-agent detach`, for a stopped agent) and wait until the program has left the interfaces its
/// links were pinned for: those interfaces, or `None` if `dir` does not exist.
pub fn detach(dir: &Path) -> Result<Option<Vec<String>>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut interfaces: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("link_")
                .map(str::to_owned)
        })
        .collect();
    interfaces.sort();
    let before: Vec<(String, Option<u32>)> = interfaces
        .iter()
        .map(|i| (i.clone(), crate::dataplane::ifindex(i).ok()))
        .collect();
    crate::dataplane::remove_all_pins(dir)
        .map_err(|e| format!("{}: {}", dir.display(), crate::dataplane::error_chain(&e)))?;
    if dir.exists() {
        let left: Vec<String> = std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!(
            "{}: the data plane's pins are removed, but not these (not fo's, or of another version): {}",
            dir.display(),
            left.join(", ")
        ));
    }
    wait_detached(&before)?;
    Ok(Some(interfaces))
}

/// Wait until no interface of `links` has an XDP program any more (an interface that
/// no longer exists took its program with it).
fn wait_detached(links: &[(String, Option<u32>)]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let handle = crate::net::handle().map_err(|e| format!("netlink: {e}"))?;
        let started = Instant::now();
        loop {
            let mut attached = Vec::new();
            for (name, index) in links {
                let Some(index) = index else { continue };
                if let Ok(Some(id)) = crate::net::link::xdp_prog_id(&handle, *index).await {
                    attached.push(format!("{name} (program {id})"));
                }
            }
            if attached.is_empty() {
                return Ok(());
            }
            if started.elapsed() > DETACH_WAIT {
                return Err(format!(
                    "pins removed, but an XDP program is still attached to {} after {DETACH_WAIT:?}: \
                     something else holds it (`bpftool net show`)",
                    attached.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}
