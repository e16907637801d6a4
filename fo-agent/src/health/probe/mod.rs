//! The probes: one async function per kind of check, each bounded by a timeout.
//!
//! None of them forks except [`exec()`]: `tcp`, `http` and `https` are a socket each,
//! `process` and `file` read `/proc` and the file system on tokio's blocking pool. So
//! hundreds of backend checks cost a few sockets per second, not processes.
//!
//! A probe returns `Ok(detail)` when the target is healthy (the detail is a short
//! text for status output) or a [`ProbeError`] saying why it is not.
//!
//! `http` and `https` share one HTTP/1.1 client ([`super::http`], hyper); `https` puts
//! TLS ([`super::tls`], rustls) between the TCP connection and it. Each step (connect,
//! TLS handshake, response, body) runs against the probe's one deadline, and a step
//! that does not finish is named in the failure.
//!
//! One file per kind: `tcp`, `http` (and https), `exec`, `process` (by name or
//! pidfile) and `file`. This one holds what they share: the error, the plan of a
//! check's probe, the timeout and the blocking pool's guard.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use fo_config::{Backend, CheckKind, Config, HttpGet, ProcessMatch, Service, ServiceCheckKind};
use thiserror::Error;

use super::child;
use super::tls::{self, Expiring, TlsClient, TlsFailure, TlsSetupError};

mod exec;
mod file;
mod http;
mod mark;
mod process;
mod tcp;

pub use exec::exec;
pub use file::file;
pub use http::http;
pub use mark::{set_encapsulation, tunnel_mark};
pub use process::{process_by_name, process_by_pidfile};
pub use tcp::tcp;

/// Most bytes of an HTTP response body or of a file that are read.
pub const READ_LIMIT: usize = 1 << 20;

/// Outcome of one probe: `Ok(detail)` when healthy.
pub type ProbeResult = Result<String, ProbeError>;

/// A step of an HTTP(S) probe, named when it does not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Handshake,
    Response,
    Body,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Handshake => "TLS handshake",
            Self::Response => "response",
            Self::Body => "response body",
        })
    }
}

/// Why a probe found its target unhealthy.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("no result within {after:?}")]
    Timeout { after: Duration },
    #[error("{target}: {step} not finished within {after:?}")]
    StepTimeout {
        target: String,
        step: Step,
        after: Duration,
    },
    #[error("the previous probe has not returned yet (stuck in the kernel, e.g. a hung mount)")]
    Stuck,
    #[error("connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: {reason}")]
    Http { target: String, reason: String },
    #[error("{target}: not an HTTP response: {reason}")]
    NotHttp { target: String, reason: String },
    #[error("{target}: status {got}, expected {}", statuses(expected))]
    Status {
        target: String,
        expected: Vec<u16>,
        got: u16,
    },
    #[error(
        "{target}: response body does not contain {expected:?}{}",
        if *truncated { format!(" in its first {read} bytes") } else { String::new() }
    )]
    Body {
        target: String,
        expected: String,
        read: usize,
        truncated: bool,
    },
    #[error("{target}: TLS: {failure}")]
    Tls { target: String, failure: TlsFailure },
    #[error("{target}: {source}")]
    TlsSetup {
        target: String,
        #[source]
        source: Arc<TlsSetupError>,
    },
    #[error(
        "{target}: certificate {} expires {} (in {}), sooner than min_cert_validity {}",
        expiring.subject,
        expiring.not_after,
        days(expiring.left),
        fo_config::format_duration(*min)
    )]
    CertExpiresSoon {
        target: String,
        expiring: Expiring,
        min: Duration,
    },
    #[error("not run: {source}")]
    Refused {
        #[source]
        source: Box<super::program::Refusal>,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} {status}{}", output_suffix(.output))]
    Exit {
        program: String,
        status: ExitStatus,
        output: Vec<String>,
    },
    #[error("{program} still running after {after:?}: killed")]
    Killed { program: String, after: Duration },
    #[error("no running process named {name:?}")]
    NoProcess { name: String },
    #[error("pidfile {}: {source}", path.display())]
    Pidfile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pidfile {}: no pid in it", path.display())]
    PidfileEmpty { path: PathBuf },
    #[error("process {pid} (from {}) is not running", path.display())]
    PidGone { pid: u32, path: PathBuf },
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} does not contain {expected:?} in its first {limit} bytes", path.display())]
    FileContents {
        path: PathBuf,
        expected: String,
        limit: usize,
    },
    #[error("the probe task failed: {reason}")]
    Internal { reason: String },
}

fn output_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join(" | "))
    }
}

/// `200` or `one of 200, 204`.
fn statuses(codes: &[u16]) -> String {
    let list: Vec<String> = codes.iter().map(u16::to_string).collect();
    match list.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", list.join(", ")),
    }
}

/// `12.5 days`, `3.2 hours`: time left before a certificate expires.
fn days(left: Duration) -> String {
    let secs = left.as_secs_f64();
    if secs >= 86_400.0 {
        format!("{:.1} days", secs / 86_400.0)
    } else {
        format!("{:.1} hours", secs / 3_600.0)
    }
}

/// A check's probe with everything resolved from the configuration.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Address, and the probe socket's mark (a tunnel service's backend).
    Tcp(SocketAddr, Option<u32>),
    Http(Box<HttpProbe>),
    Exec {
        argv: Vec<String>,
        /// Added to the agent's environment (for backend checks: which backend).
        env: Vec<(String, String)>,
        /// Run as this user (`user`/`group` of the check); `None` = as the agent.
        run_as: Option<fo_config::RunAs>,
    },
    ProcessName(String),
    Pidfile(PathBuf),
    File {
        path: PathBuf,
        contains: Option<String>,
    },
}

/// An HTTP(S) GET and what its answer must look like.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    /// IP address or DNS name, without brackets.
    pub host: String,
    pub port: u16,
    pub get: HttpGet,
    /// `None`: plain HTTP. `Some(Err)`: https whose files could not be used when the
    /// probe was planned (every probe then fails with that reason).
    pub tls: Option<Result<TlsClient, Arc<TlsSetupError>>>,
    /// The probe socket's mark (a tunnel service's backend; `host` is then an address).
    pub mark: Option<u32>,
}

impl Probe {
    /// The probe of a node-level `[[check]]`; `tls` builds (and shares) TLS clients.
    pub fn for_check(kind: &CheckKind, tls: &mut tls::Loader) -> Self {
        match kind {
            CheckKind::Tcp { address, port } => Self::Tcp(SocketAddr::new(*address, *port), None),
            CheckKind::Http(h) => Self::Http(Box::new(HttpProbe {
                host: h.host.clone(),
                port: h.port,
                get: h.get.clone(),
                tls: None,
                mark: None,
            })),
            CheckKind::Https { target, tls: t } => Self::Http(Box::new(HttpProbe {
                host: target.host.clone(),
                port: target.port,
                get: target.get.clone(),
                tls: Some(tls.shared(t)),
                mark: None,
            })),
            CheckKind::Exec {
                command, run_as, ..
            } => Self::Exec {
                argv: command.clone(),
                env: Vec::new(),
                run_as: run_as.clone(),
            },
            CheckKind::Process {
                by: ProcessMatch::Name(n),
            } => Self::ProcessName(n.clone()),
            CheckKind::Process {
                by: ProcessMatch::Pidfile(p),
            } => Self::Pidfile(p.clone()),
            CheckKind::File { path, contains } => Self::File {
                path: path.clone(),
                contains: contains.clone(),
            },
        }
    }

    /// The probe of one backend of a service (`mark_base`: `tunnel_check_mark`, for
    /// a tunnel service's probes). An exec check gets `FO_SERVICE`,
    /// `FO_BACKEND`, `FO_BACKEND_ADDRESS` and `FO_BACKEND_PORT` in its environment.
    pub fn for_backend(
        service: &Service,
        kind: &ServiceCheckKind,
        backend: &Backend,
        mark_base: u32,
        tls: &mut tls::Loader,
    ) -> Self {
        match kind {
            ServiceCheckKind::Tcp => Self::Tcp(
                backend.socket_addr(),
                tunnel_mark(service, backend.address, mark_base),
            ),
            ServiceCheckKind::Http(get) => Self::Http(Box::new(HttpProbe {
                host: backend.address.to_string(),
                port: backend.port,
                get: get.clone(),
                tls: None,
                mark: tunnel_mark(service, backend.address, mark_base),
            })),
            ServiceCheckKind::Https { get, tls: t } => Self::Http(Box::new(HttpProbe {
                host: backend.address.to_string(),
                port: backend.port,
                get: get.clone(),
                tls: Some(tls.shared(t)),
                mark: tunnel_mark(service, backend.address, mark_base),
            })),
            ServiceCheckKind::Exec {
                command, run_as, ..
            } => Self::Exec {
                run_as: run_as.clone(),
                argv: command.clone(),
                env: vec![
                    ("FO_SERVICE".into(), service.name.clone()),
                    ("FO_BACKEND".into(), backend.name.clone()),
                    ("FO_BACKEND_ADDRESS".into(), backend.address.to_string()),
                    ("FO_BACKEND_PORT".into(), backend.port.to_string()),
                ],
            },
        }
    }

    /// True for probes that start a process.
    pub fn forks(&self) -> bool {
        matches!(self, Self::Exec { .. })
    }

    /// Run the probe once. `label` names the target in debug logs.
    pub async fn run(&self, timeout: Duration, label: &str) -> ProbeResult {
        match self {
            Self::Tcp(addr, mark) => tcp(*addr, *mark, timeout).await,
            Self::Http(h) => http(h, timeout).await,
            Self::Exec { argv, env, run_as } => {
                exec(argv, env, run_as.as_ref(), timeout, label).await
            }
            Self::ProcessName(n) => process_by_name(n, timeout).await,
            Self::Pidfile(p) => process_by_pidfile(p, timeout).await,
            Self::File { path, contains } => file(path, contains.as_deref(), timeout).await,
        }
    }
}

/// A problem with a check's files, and where the config names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line and column, when a file named in the config is at fault.
    pub at: Option<(usize, usize)>,
    pub message: String,
}

impl Problem {
    /// `PATH:LINE:COL: message` (or `PATH: message`), as config errors are written.
    pub fn in_file(&self, path: &Path) -> String {
        match self.at {
            Some((line, col)) => format!("{}:{line}:{col}: {}", path.display(), self.message),
            None => format!("{}: {}", path.display(), self.message),
        }
    }
}

/// What keeps the checks and hooks of `config` from running, for `fo-agent check` and
/// `reload` (which refuse the config): [`tls_problems`], and hook and exec programs that
/// are not safe to run ([`super::program`]; hooks also when missing or not executable).
/// `run` refuses the program problems too, but only logs the TLS ones (see
/// [`tls_problems`]). Sorted by position; a file named by several checks is reported
/// once per check.
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut out = tls_problems(config);
    out.extend(program_problems(config));
    out.sort_by_key(|p| p.at);
    out
}

/// Hook and exec programs of `config` that are not safe to run (or, for hooks, missing
/// or not executable), sorted by position: `run`, `check` and `reload` refuse them.
pub fn program_problems(config: &Config) -> Vec<Problem> {
    let mut out = super::program::problems(config, std::env::var_os("PATH").as_deref(), |r| {
        child::Identity::resolve(r).ok().map(|id| id.trust())
    });
    out.sort_by_key(|p| p.at);
    out
}

/// https checks whose CA, certificate or key cannot be used, sorted by position. `check`
/// and `reload` refuse them; `run` logs them and starts with those checks down (their
/// probes fail with the reason), so a certificate renewal that leaves a bad file costs
/// one check at the next restart, not HA.
pub fn tls_problems(config: &Config) -> Vec<Problem> {
    let mut loader = tls::Loader::default();
    let mut out: Vec<Problem> = Vec::new();
    let mut report = |what: String, e: &TlsSetupError| {
        let p = Problem {
            at: e.position(),
            message: format!("{what}: {e}"),
        };
        if !out.contains(&p) {
            out.push(p);
        }
    };
    for c in &config.checks {
        if let CheckKind::Https { tls, .. } = &c.kind
            && let Err(e) = loader.shared(tls)
        {
            report(format!("check {}", c.name), &e);
        }
    }
    for s in &config.services {
        if let Some(check) = &s.check
            && let ServiceCheckKind::Https { tls, .. } = &check.kind
            && let Err(e) = loader.shared(tls)
        {
            report(format!("service {}", s.name), &e);
        }
    }
    out.sort_by_key(|p| p.at);
    out
}

async fn within<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or(Err(ProbeError::Timeout { after: timeout }))
}

/// Run blocking file-system work on tokio's blocking pool, bounded by `timeout`.
/// A read stuck in the kernel (a hung NFS mount) keeps its pool thread; the probe
/// still reports a timeout, and while a call on the same thing (`key`: a path, a
/// process name) has been running longer than `timeout`, no new one is started: the
/// probe reports it stuck. One hung mount holds a thread or two, not one more per
/// interval until the pool (512) is gone and every other file check with it.
async fn blocking<T: Send + 'static>(
    timeout: Duration,
    key: String,
    f: impl FnOnce() -> Result<T, ProbeError> + Send + 'static,
) -> Result<T, ProbeError> {
    let Some(guard) = InFlight::enter(key, timeout) else {
        return Err(ProbeError::Stuck);
    };
    within(timeout, async move {
        tokio::task::spawn_blocking(move || {
            let _released_when_the_call_returns = guard;
            f()
        })
        .await
        .unwrap_or_else(|e| {
            Err(ProbeError::Internal {
                reason: e.to_string(),
            })
        })
    })
    .await
}

/// Blocking probe calls that have not returned yet, by what they read: (id, start).
type Calls = std::collections::HashMap<String, Vec<(u64, std::time::Instant)>>;
static IN_FLIGHT: std::sync::LazyLock<std::sync::Mutex<Calls>> =
    std::sync::LazyLock::new(Default::default);
static NEXT_CALL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct InFlight {
    key: String,
    id: u64,
}

impl InFlight {
    /// Register a call on `key`, unless one has been running for more than `timeout`.
    fn enter(key: String, timeout: Duration) -> Option<InFlight> {
        let mut calls = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        let running = calls.entry(key.clone()).or_default();
        if running.iter().any(|(_, t)| t.elapsed() > timeout) {
            return None;
        }
        let id = NEXT_CALL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        running.push((id, std::time::Instant::now()));
        Some(InFlight { key, id })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut calls = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = calls.get_mut(&self.key) {
            running.retain(|(id, _)| *id != self.id);
            if running.is_empty() {
                calls.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocking read that hangs holds one thread: the next probes of the same thing
    /// report it stuck instead of starting another; once it returns, probing resumes.
    #[tokio::test]
    async fn a_hung_blocking_probe_is_not_started_again() {
        let key = "file /hung/for/this/test".to_string();
        let slow = |ms| {
            move || {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
        };
        let first = blocking(Duration::from_millis(20), key.clone(), slow(400)).await;
        assert!(
            matches!(first, Err(ProbeError::Timeout { .. })),
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = blocking(Duration::from_millis(20), key.clone(), slow(0)).await;
        assert!(matches!(second, Err(ProbeError::Stuck)), "{second:?}");
        // A call still within its timeout does not hold up another on the same key
        // (two checks of one file).
        let shared = || "file /shared/for/this/test".to_string();
        let a = tokio::spawn(blocking(Duration::from_millis(300), shared(), slow(100)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = blocking(Duration::from_millis(300), shared(), slow(0)).await;
        assert!(b.is_ok(), "two calls on one file at once: {b:?}");
        assert!(a.await.expect("join").is_ok());
        let other = blocking(Duration::from_millis(200), "file /other".into(), slow(0)).await;
        assert!(other.is_ok(), "another target is not held up: {other:?}");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let later = blocking(Duration::from_millis(200), key, slow(0)).await;
        assert!(later.is_ok(), "after the stuck call returned: {later:?}");
    }
}
