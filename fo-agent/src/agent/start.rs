//! Start-up checks that stand apart from the wiring in [`super::run`].

use fo_config::Config;
use tracing::warn;

/// Descriptors the agent may hold at once with `config`: a fixed part (BPF maps and
/// programs, VRRP, ARP, netlink, sync and listening sockets, the journal), the capped
/// control and metrics connections, and up to four per check target, hook and router
/// (a probe's socket, or an exec check's or hook's pipes).
pub fn fd_budget(config: &Config) -> u64 {
    let targets: usize = config
        .services
        .iter()
        .filter(|s| s.check.is_some())
        .map(|s| s.backends().len())
        .sum::<usize>()
        + config.checks.len()
        + config.routers.len();
    (256 + crate::api::conns::METRICS_CAP + crate::api::conns::CONTROL_CAP + 4 * targets) as u64
}

/// Warn when the open-file limit is below [`fd_budget`]: past it, health probes and
/// control connections would fail with EMFILE. The packaged unit sets 65,536.
pub(super) fn check_fd_limit(config: &Config) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) fills the rlimit we own; RLIMIT_NOFILE always exists.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let need = fd_budget(config);
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        warn!(
            limit = lim.rlim_cur,
            need,
            "the open-file limit is below what this config may need: raise LimitNOFILE (the packaged unit sets 65536)"
        );
    }
}
