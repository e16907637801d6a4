//! The probes: one async function per kind of check, each bounded by a timeout.
//!
//! None of them forks except [`exec`]: `tcp`, `http` and `https` are a socket each,
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fo_config::{Backend, CheckKind, Config, HttpGet, ProcessMatch, Service, ServiceCheckKind};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::child::{self, Ended, Stream};
use super::http::{self, BodySearch, find};
use super::tls::{self, Attempt, Expiring, TlsClient, TlsFailure, TlsSetupError};

/// Most bytes of an HTTP response body or of a file that are read.
pub const READ_LIMIT: usize = 1 << 20;
/// Output lines of an exec check kept for the failure detail.
const EXEC_DETAIL_LINES: usize = 3;

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
    Tcp(SocketAddr),
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
}

impl HttpProbe {
    /// The URL probed, for messages (the connected address, not `sni`).
    pub fn target(&self) -> String {
        let https = self.tls.is_some();
        format!(
            "{}://{}{}",
            if https { "https" } else { "http" },
            authority(&self.host, self.port, https),
            self.get.path
        )
    }

    /// The `Host` header: `sni` when set, else the host probed.
    fn host_header(&self) -> String {
        let sni = match &self.tls {
            Some(Ok(c)) => c.settings().sni.as_deref(),
            _ => None,
        };
        authority(sni.unwrap_or(&self.host), self.port, self.tls.is_some())
    }
}

impl Probe {
    /// The probe of a node-level `[[check]]`; `tls` builds (and shares) TLS clients.
    pub fn for_check(kind: &CheckKind, tls: &mut tls::Loader) -> Self {
        match kind {
            CheckKind::Tcp { address, port } => Self::Tcp(SocketAddr::new(*address, *port)),
            CheckKind::Http(h) => Self::Http(Box::new(HttpProbe {
                host: h.host.clone(),
                port: h.port,
                get: h.get.clone(),
                tls: None,
            })),
            CheckKind::Https { target, tls: t } => Self::Http(Box::new(HttpProbe {
                host: target.host.clone(),
                port: target.port,
                get: target.get.clone(),
                tls: Some(tls.shared(t)),
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

    /// The probe of one backend of a service. An exec check gets `FO_SERVICE`,
    /// `FO_BACKEND`, `FO_BACKEND_ADDRESS` and `FO_BACKEND_PORT` in its environment.
    pub fn for_backend(
        service: &Service,
        kind: &ServiceCheckKind,
        backend: &Backend,
        tls: &mut tls::Loader,
    ) -> Self {
        match kind {
            ServiceCheckKind::Tcp => Self::Tcp(backend.socket_addr()),
            ServiceCheckKind::Http(get) => Self::Http(Box::new(HttpProbe {
                host: backend.address.to_string(),
                port: backend.port,
                get: get.clone(),
                tls: None,
            })),
            ServiceCheckKind::Https { get, tls: t } => Self::Http(Box::new(HttpProbe {
                host: backend.address.to_string(),
                port: backend.port,
                get: get.clone(),
                tls: Some(tls.shared(t)),
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
            Self::Tcp(addr) => tcp(*addr, timeout).await,
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

/// What keeps the checks and hooks of `config` from running, for `fo-agent check`,
/// `run` and `reload`: https checks whose CA, certificate or key cannot be used, and
/// hook and exec programs that are not safe to run ([`super::program`]; hooks also
/// when missing or not executable). Sorted by position; a file named by several checks
/// is reported once per check.
pub fn problems(config: &Config) -> Vec<Problem> {
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
    out.extend(super::program::problems(
        config,
        std::env::var_os("PATH").as_deref(),
        |r| child::Identity::resolve(r).ok().map(|id| id.trust()),
    ));
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

/// Healthy when a TCP connection to `addr` is established within `timeout`.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> ProbeResult {
    within(timeout, async {
        TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect {
                target: addr.to_string(),
                source,
            })?;
        Ok(format!("connected to {addr}"))
    })
    .await
}

/// `host:port` for messages and the `Host` header (default ports left out).
fn authority(host: &str, port: u16, https: bool) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == if https { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Healthy when a `GET` answers with one of the expected statuses (and, if set, a body
/// containing the expected text within the first [`READ_LIMIT`] bytes); for https, when
/// the handshake also succeeds and no certificate presented expires within
/// `min_cert_validity`. Every step shares the one `timeout`.
pub async fn http(p: &HttpProbe, timeout: Duration) -> ProbeResult {
    let target = p.target();
    let deadline = Instant::now() + timeout;
    let late = |step| ProbeError::StepTimeout {
        target: target.clone(),
        step,
        after: timeout,
    };
    let client = match &p.tls {
        Some(Err(e)) => {
            return Err(ProbeError::TlsSetup {
                target,
                source: e.clone(),
            });
        }
        Some(Ok(client)) => Some(client),
        None => None,
    };
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect((p.host.as_str(), p.port)))
        .await
        .map_err(|_| late(Step::Connect))?
        .map_err(|source| ProbeError::Connect {
            target: target.clone(),
            source,
        })?;
    let Some(client) = client else {
        return exchange(p, tcp, &target, deadline, &late, None, String::new()).await;
    };
    let name = client
        .server_name(&p.host)
        .map_err(|reason| ProbeError::Tls {
            target: target.clone(),
            failure: TlsFailure::Other { reason },
        })?;
    let (connector, attempt) = client.connector();
    let stream = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
        .await
        .map_err(|_| late(Step::Handshake))?
        .map_err(|e| ProbeError::Tls {
            target: target.clone(),
            failure: handshake_failure(&e, &attempt),
        })?;
    let mut validity = String::new();
    if let Some(min) = client.settings().min_cert_validity {
        let presented = stream.get_ref().1.peer_certificates().unwrap_or_default();
        match tls::expiring(presented, min, SystemTime::now()) {
            Err(reason) => {
                return Err(ProbeError::Tls {
                    target,
                    failure: TlsFailure::Other { reason },
                });
            }
            Ok(Some(expiring)) => {
                return Err(ProbeError::CertExpiresSoon {
                    target,
                    expiring,
                    min,
                });
            }
            Ok(None) => {
                validity = format!(
                    "; no certificate expires within {}",
                    fo_config::format_duration(min)
                );
            }
        }
    }
    exchange(
        p,
        stream,
        &target,
        deadline,
        &late,
        Some(&attempt),
        validity,
    )
    .await
}

/// The GET itself, over plain TCP or TLS.
async fn exchange<S>(
    p: &HttpProbe,
    io: S,
    target: &str,
    deadline: Instant,
    late: &(dyn Fn(Step) -> ProbeError + Sync),
    attempt: Option<&Attempt>,
    suffix: String,
) -> ProbeResult
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: &hyper::Error| hyper_failure(e, target, attempt);
    let answer = tokio::time::timeout_at(deadline, http::get(io, &p.host_header(), &p.get.path))
        .await
        .map_err(|_| late(Step::Response))?
        .map_err(|e| match e {
            http::GetError::Hyper(e) => failed(&e),
            e @ http::GetError::Request { .. } => ProbeError::Http {
                target: target.to_owned(),
                reason: e.to_string(),
            },
        })?;
    let status = answer.status();
    if !p.get.expect_status.contains(&status) {
        return Err(ProbeError::Status {
            target: target.to_owned(),
            expected: p.get.expect_status.clone(),
            got: status,
        });
    }
    let Some(expected) = p.get.expect_body.as_deref() else {
        return Ok(format!("{target}: status {status}{suffix}"));
    };
    let search = tokio::time::timeout_at(
        deadline,
        answer.search_body(expected.as_bytes(), READ_LIMIT),
    )
    .await
    .map_err(|_| late(Step::Body))?
    .map_err(|e| failed(&e))?;
    match search {
        BodySearch::Found => Ok(format!("{target}: status {status}, body matches{suffix}")),
        BodySearch::Missing { read, truncated } => Err(ProbeError::Body {
            target: target.to_owned(),
            expected: expected.to_owned(),
            read,
            truncated,
        }),
    }
}

/// The rustls error inside an error chain (hyper wraps the I/O error that carries it).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // io::Error::source() skips the error it wraps: look inside it.
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// An error and its sources on one line: `connection error: Connection reset by peer`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !out.ends_with(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        next = s.source();
    }
    out
}

fn handshake_failure(e: &std::io::Error, attempt: &Attempt) -> TlsFailure {
    if let Some(r) = rustls_error(e) {
        return TlsFailure::of(r, attempt);
    }
    TlsFailure::Other {
        reason: match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the handshake".to_owned()
            }
            _ => format!("handshake: {e}"),
        },
    }
}

fn hyper_failure(e: &hyper::Error, target: &str, attempt: Option<&Attempt>) -> ProbeError {
    if let (Some(r), Some(a)) = (rustls_error(e), attempt) {
        return ProbeError::Tls {
            target: target.to_owned(),
            failure: TlsFailure::of(r, a),
        };
    }
    if e.is_parse() || e.is_parse_status() {
        return ProbeError::NotHttp {
            target: target.to_owned(),
            reason: chain(e),
        };
    }
    ProbeError::Http {
        target: target.to_owned(),
        reason: chain(e),
    }
}

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

/// Healthy when `path` exists and, if `contains` is set, its first
/// [`READ_LIMIT`] bytes contain that text.
pub async fn file(path: &Path, contains: Option<&str>, timeout: Duration) -> ProbeResult {
    let path = path.to_owned();
    let contains = contains.map(str::to_owned);
    blocking(timeout, format!("file {}", path.display()), move || {
        use std::io::Read as _;
        let err = |source| ProbeError::File {
            path: path.clone(),
            source,
        };
        let Some(expected) = contains else {
            std::fs::metadata(&path).map_err(err)?;
            return Ok(format!("{} exists", path.display()));
        };
        let f = std::fs::File::open(&path).map_err(err)?;
        let mut data = Vec::new();
        f.take(READ_LIMIT as u64)
            .read_to_end(&mut data)
            .map_err(err)?;
        if find(&data, expected.as_bytes()).is_some() {
            Ok(format!("{} contains {expected:?}", path.display()))
        } else {
            Err(ProbeError::FileContents {
                path,
                expected,
                limit: READ_LIMIT,
            })
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::TempDir;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

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

    #[tokio::test]
    async fn tcp_is_up_while_listening_and_down_once_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let r = tcp(addr, T).await;
        assert!(
            r.is_ok(),
            "expected up with a listener on {addr}, saw {r:?}"
        );
        drop(listener);
        let r = tcp(addr, T).await;
        assert!(
            matches!(r, Err(ProbeError::Connect { .. })),
            "expected a refused connection after closing {addr}, saw {r:?}"
        );
    }

    /// Serve `response` to every connection; returns the port.
    async fn http_server(response: &'static str) -> u16 {
        serve(response, false).await
    }

    /// Like [`http_server`], but each connection stays open (silent) after the response.
    async fn http_server_then_hold(response: &'static str) -> u16 {
        serve(response, true).await
    }

    async fn serve(response: &'static str, hold: bool) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while find(&req, b"\r\n\r\n").is_none() {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req);
                    // Echo the request line and Host into a header, to assert on.
                    assert!(
                        req.starts_with("GET /health HTTP/1.1\r\n"),
                        "request was {req:?}"
                    );
                    assert!(req.contains("\r\nHost: 127.0.0.1:"), "request was {req:?}");
                    assert!(
                        req.contains("\r\nConnection: close\r\n"),
                        "request was {req:?}"
                    );
                    let _ = s.write_all(response.as_bytes()).await;
                    if hold {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                });
            }
        });
        port
    }

    fn get(port: u16, status: u16, body: Option<&str>) -> HttpProbe {
        HttpProbe {
            host: "127.0.0.1".into(),
            port,
            get: HttpGet {
                path: "/health".into(),
                expect_status: vec![status],
                expect_body: body.map(str::to_owned),
            },
            tls: None,
        }
    }

    #[tokio::test]
    async fn http_status_match_and_mismatch() {
        let port = http_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let r = http(&get(port, 200, None), T).await;
        assert!(r.is_ok(), "expected 200 to match, saw {r:?}");
        let r = http(&get(port, 204, None), T).await;
        assert!(
            matches!(
                &r,
                Err(ProbeError::Status {
                    expected,
                    got: 200,
                    ..
                }) if expected == &[204]
            ),
            "expected a status mismatch 204 vs 200, saw {r:?}"
        );
        let mut any = get(port, 204, None);
        any.get.expect_status = vec![204, 200];
        let r = http(&any, T).await;
        assert!(r.is_ok(), "200 is in [204, 200], saw {r:?}");
        any.get.expect_status = vec![204, 301];
        let r = http(&any, T).await.expect_err("200 is not in [204, 301]");
        assert!(
            r.to_string()
                .ends_with("status 200, expected one of 204, 301"),
            "saw {r}"
        );
        let port = http_server("HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        let r = http(&get(port, 200, None), T).await;
        assert!(
            matches!(r, Err(ProbeError::Status { got: 503, .. })),
            "expected 503 to fail, saw {r:?}"
        );
    }

    #[tokio::test]
    async fn http_body_substring() {
        let port =
            http_server("HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"status\":\"green\"}")
                .await;
        let r = http(&get(port, 200, Some("green")), T).await;
        assert!(r.is_ok(), "expected the body to contain green, saw {r:?}");
        let r = http(&get(port, 200, Some("red")), T).await;
        assert!(
            matches!(
                r,
                Err(ProbeError::Body {
                    truncated: false,
                    ..
                })
            ),
            "expected a body mismatch, saw {r:?}"
        );
        // A body until the server closes (HTTP/1.0, no length).
        let port = http_server("HTTP/1.0 200 OK\r\n\r\nall green here").await;
        let r = http(&get(port, 200, Some("green")), T).await;
        assert!(r.is_ok(), "a body ended by close, saw {r:?}");
    }

    #[tokio::test]
    async fn http_body_is_searched_in_its_first_mebibyte_only() {
        let filler = "x".repeat(READ_LIMIT);
        let text: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{filler}green",
                READ_LIMIT + 5
            )
            .into_boxed_str(),
        );
        let port = http_server(text).await;
        let r = http(&get(port, 200, Some("green")), T).await;
        match r {
            Err(ProbeError::Body {
                read, truncated, ..
            }) => assert_eq!((read, truncated), (READ_LIMIT, true)),
            other => panic!("expected no match within {READ_LIMIT} bytes, saw {other:?}"),
        }
    }

    #[tokio::test]
    async fn http_chunked_body_is_decoded_before_matching() {
        let port = http_server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ngre\r\n2\r\nen\r\n0\r\n\r\n",
        )
        .await;
        let r = http(&get(port, 200, Some("green")), T).await;
        assert!(
            r.is_ok(),
            "expected 'green' split over two chunks to match, saw {r:?}"
        );
    }

    #[tokio::test]
    async fn http_headers_past_the_limit_are_refused() {
        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
                "y".repeat(http::HEADER_LIMIT)
            )
            .into_boxed_str(),
        );
        let port = http_server(big).await;
        let r = http(&get(port, 200, None), T).await;
        assert!(matches!(r, Err(ProbeError::NotHttp { .. })), "saw {r:?}");
    }

    #[tokio::test]
    async fn http_garbage_and_silence() {
        let port = http_server("SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        let r = http(&get(port, 200, None), T).await;
        assert!(matches!(r, Err(ProbeError::NotHttp { .. })), "saw {r:?}");

        // A listener that never answers: the timeout decides, and names the step.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let r = http(&get(port, 200, None), Duration::from_millis(200)).await;
        assert!(
            matches!(
                r,
                Err(ProbeError::StepTimeout {
                    step: Step::Response,
                    ..
                })
            ),
            "saw {r:?}"
        );
        // Headers sent, body never finished.
        let port =
            http_server_then_hold("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial").await;
        let r = http(&get(port, 200, Some("green")), Duration::from_millis(300)).await;
        assert!(
            matches!(
                r,
                Err(ProbeError::StepTimeout {
                    step: Step::Body,
                    ..
                })
            ),
            "saw {r:?}"
        );
    }

    #[test]
    fn authorities_and_messages() {
        assert_eq!(authority("::1", 8080, false), "[::1]:8080");
        assert_eq!(authority("example.org", 443, true), "example.org");
        assert_eq!(statuses(&[200]), "200");
        assert_eq!(statuses(&[200, 204]), "one of 200, 204");
        assert_eq!(days(Duration::from_secs(10 * 86_400 + 43_200)), "10.5 days");
        assert_eq!(days(Duration::from_secs(5_400)), "1.5 hours");
    }

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
        let r = exec(&argv(&["sh", "-c", &script]), &[], Some(&run_as), T, "t").await;
        assert!(r.is_ok(), "expected `{want}`, saw {r:?}");
        // Not root any more: the supplementary groups are nobody's, not root's.
        let r = exec(
            &argv(&["sh", "-c", "test \"$(id -u)\" != 0 && ! id -G | grep -qw 0"]),
            &[],
            Some(&run_as),
            T,
            "t",
        )
        .await;
        assert!(r.is_ok(), "root's groups kept: {r:?}");
        let with_group = fo_config::RunAs {
            user: "nobody".into(),
            group: Some("nogroup".into()),
        };
        let nogroup = nix::unistd::Group::from_name("nogroup")
            .expect("lookup")
            .expect("nogroup exists on Debian")
            .gid;
        let r = exec(
            &argv(&["sh", "-c", &format!("test \"$(id -g)\" = {nogroup}")]),
            &[],
            Some(&with_group),
            T,
            "t",
        )
        .await;
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

    #[tokio::test]
    async fn file_exists_and_contains() {
        let dir = TempDir::new("file");
        let path = dir.path().join("mounted");
        let r = file(&path, None, T).await;
        assert!(
            matches!(r, Err(ProbeError::File { .. })),
            "missing file, saw {r:?}"
        );
        std::fs::write(&path, "state=ready\n").expect("write");
        let r = file(&path, None, T).await;
        assert!(r.is_ok(), "existing file, saw {r:?}");
        let r = file(&path, Some("ready"), T).await;
        assert!(r.is_ok(), "contained text, saw {r:?}");
        let r = file(&path, Some("degraded"), T).await;
        assert!(
            matches!(r, Err(ProbeError::FileContents { .. })),
            "saw {r:?}"
        );
    }
}
