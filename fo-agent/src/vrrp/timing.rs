//! The VRRP timing thread: the router tasks and the receive tasks run on a runtime of
//! their own, one worker thread named `fo-vrrp`, real-time (SCHED_FIFO at
//! [`VRRP_RT_PRIORITY`]) where the system allows it. So neither the agent's other work
//! (health checks, sync, the control socket, metrics, on the main runtime) nor a loaded
//! machine's normal processes can delay an advert, a received advert or a
//! Master_Down_Timer. Refused (no CAP_SYS_NICE nor RLIMIT_RTPRIO, or systemd's
//! RestrictRealtime=yes): the thread runs at the normal policy, and says so once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};
use tracing::{info, warn};

use crate::sched::{self, VRRP_RT_PRIORITY};

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
/// The first thread's outcome is logged; the others' (block_in_place helpers) only when
/// it differs, which it does not.
static LOGGED: AtomicBool = AtomicBool::new(false);

/// The timing runtime's handle; the caller's runtime when it could not be built (logged).
pub(super) fn handle() -> Handle {
    let rt = RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fo-vrrp")
            .enable_all()
            .on_thread_start(on_thread_start)
            .build()
            .map_err(|e| e.to_string())
    });
    match rt {
        Ok(rt) => rt.handle().clone(),
        Err(e) => {
            if !LOGGED.swap(true, Ordering::Relaxed) {
                warn!(error = %e, scheduling = "shared", "no VRRP timing thread: routers run on the main runtime");
            }
            Handle::current()
        }
    }
}

fn on_thread_start() {
    if !sched::realtime() {
        if !LOGGED.swap(true, Ordering::Relaxed) {
            info!(
                scheduling = "normal",
                "VRRP timing thread at the normal policy (--no-realtime)"
            );
        }
        return;
    }
    let outcome = sched::realtime_thread(VRRP_RT_PRIORITY);
    if LOGGED.swap(true, Ordering::Relaxed) {
        return;
    }
    match outcome {
        Ok(()) => info!(
            scheduling = format!("SCHED_FIFO {VRRP_RT_PRIORITY}"),
            "VRRP timing thread is real-time"
        ),
        Err(e) => warn!(
            scheduling = "normal",
            error = %e,
            "real-time scheduling of the VRRP timing thread refused (it needs CAP_SYS_NICE or LimitRTPRIO={VRRP_RT_PRIORITY}, and systemd's RestrictRealtime=no): adverts and timers run at the normal policy, and a loaded machine may delay them"
        ),
    }
}
