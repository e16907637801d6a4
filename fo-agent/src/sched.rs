//! How the agent's threads are scheduled, for timers that fire when they are due on a
//! loaded machine: the timer slack of every thread, memory locked against paging, and the
//! real-time policy of the VRRP timing thread. Each is tried, and refused quietly by the
//! system when it is not allowed; the caller logs what happened.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// SCHED_FIFO priority of the VRRP timing thread: above every normal thread, low among
/// real-time ones (the kernel's own threads, e.g. watchdogs and IRQ threads, run at 50
/// or 99). The packaged unit allows exactly this much (`LimitRTPRIO=10`).
pub const VRRP_RT_PRIORITY: i32 = 10;

static REALTIME: AtomicBool = AtomicBool::new(true);

/// Whether the VRRP timing thread asks for the real-time policy (`fo-agent run
/// --no-realtime` turns it off, with the timer slack and the memory lock, for comparison).
pub fn realtime() -> bool {
    REALTIME.load(Ordering::Relaxed)
}

/// Set once at start, before any thread asks [`realtime`].
pub fn set_realtime(on: bool) {
    REALTIME.store(on, Ordering::Relaxed);
}

/// Timer slack of the calling thread, and of every thread it creates afterwards: 1 ns
/// instead of the kernel's 50 µs, so a timer's wake-up is not deferred to batch it
/// with others. Call before the runtime's threads start.
pub fn tighten_timer_slack() -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// linux/capability.h: lock memory beyond RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;

/// Why the memory was not locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "RLIMIT_MEMLOCK is {limit} bytes and CAP_IPC_LOCK is missing: locking every future \
         mapping would make allocations fail (the packaged unit sets LimitMEMLOCK=infinity)"
    )]
    Limited { limit: u64 },
    #[error("mlockall: {0}")]
    Os(#[source] io::Error),
}

/// Lock the process's memory so that no page the timers need (code, stacks, heap) is
/// paged out: what is mapped now is faulted in and locked at once (MCL_CURRENT), what is
/// mapped later is locked as it is first touched (MCL_FUTURE | MCL_ONFAULT, so a thread
/// stack or an arena reserved but never used costs nothing). Only with an unlimited
/// RLIMIT_MEMLOCK or CAP_IPC_LOCK: otherwise later allocations would fail at the limit.
pub fn lock_memory() -> Result<(), LockError> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    let unlimited = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0
        && rl.rlim_cur == libc::RLIM_INFINITY;
    if !unlimited && !has_capability(CAP_IPC_LOCK) {
        return Err(LockError::Limited { limit: rl.rlim_cur });
    }
    // SAFETY: mlockall takes flags only.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
        return Err(LockError::Os(io::Error::last_os_error()));
    }
    // SAFETY: as above. Pages already locked stay locked and resident.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        return Err(LockError::Os(io::Error::last_os_error()));
    }
    Ok(())
}

/// Make the calling thread SCHED_FIFO at `priority`, with SCHED_RESET_ON_FORK so that the
/// threads and processes it creates (hooks, checks) start at the normal policy. Refused
/// (EPERM) without CAP_SYS_NICE or an RLIMIT_RTPRIO of at least `priority`, and under
/// systemd's RestrictRealtime=yes.
pub fn realtime_thread(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; the parameter is read only.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the process's effective capabilities hold `cap` (from /proc/self/status).
fn has_capability(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1u64 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_slack_is_one_nanosecond_after_tightening() {
        tighten_timer_slack().expect("PR_SET_TIMERSLACK needs no privilege");
        // SAFETY: PR_GET_TIMERSLACK takes no argument and returns the value.
        let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        assert_eq!(slack, 1);
    }

    #[test]
    fn capabilities_are_read_from_the_status_file() {
        // Root or not, the answer for a bit no kernel defines is no.
        assert!(!has_capability(63));
    }
}
