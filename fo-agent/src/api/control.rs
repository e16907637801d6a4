//! The control socket: a Unix stream socket (mode 0600, or 0660 for
//! `node.control_group`), one JSON request per line, one JSON response per line.
//! The server forwards each request to the agent's main loop and waits for its answer.
//!
//! The file mode is one fence; the other is [`Access`]: every connection's peer
//! credentials (`SO_PEERCRED`, `SO_PEERGROUPS`) are checked, and only root, the agent's
//! own user and members of `control_group` are served. Anyone else gets an error
//! response, a warning in the log and a count (`fo_control_refused_total`), even if the
//! socket's mode was loosened by hand.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use super::conns::{Limiter, READ_DEADLINE, Ticket, client_gone, reason};
use super::status::Status;
use crate::locks::lock;

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Promote {
        router: String,
    },
    Demote {
        router: String,
        /// Break before make: release at once even if no peer takes over. Absent in
        /// requests from older clients: a make-before-break demote.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    Resume {
        router: String,
    },
    Reload,
    Drain {
        service: String,
        backend: String,
    },
    Enable {
        service: String,
        backend: String,
    },
    /// Rehearse a planned switchover of `router` (this node the master) on live
    /// traffic; `back` hands mastership back afterwards.
    Drill {
        router: String,
        #[serde(default)]
        back: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status {
        status: Box<Status>,
    },
    Drill {
        report: Box<super::drill::DrillReport>,
    },
    Ok {
        message: String,
    },
    Error {
        message: String,
    },
}

/// A request with the way back to whoever asked.
pub type Envelope = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another fo-agent is already listening on {0}")]
    InUse(PathBuf),
    #[error("control socket {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("group {0} does not exist")]
    NoGroup(String),
}

/// Longest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a refused client gets to send its request before hearing why.
const REFUSE_READ: Duration = Duration::from_secs(2);

/// Bind the socket (replacing a stale one) with its permissions set before anyone
/// can connect.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ControlError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Bind under a umask that leaves no window with a wider mode.
    // SAFETY: umask(2) only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = listener.map_err(io)?;
    if let Some(group) = group {
        let gid = group_id(group).ok_or_else(|| ControlError::NoGroup(group.to_owned()))?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
    }
    Ok(listener)
}

/// Who may use the control socket: root, the agent's own user, and the members of
/// `control_group` (primary or supplementary group of the connecting process).
#[derive(Clone, Debug)]
pub struct Access {
    group: Option<(String, u32)>,
    own_uid: u32,
    refused: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// Why a connection was turned away.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Metric label.
    pub reason: &'static str,
    pub message: String,
}

/// Everything known about a connecting process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub pid: Option<i32>,
}

impl Access {
    /// `group`: `node.control_group` (resolved to its gid now).
    pub fn new(group: Option<&str>) -> Result<Access, ControlError> {
        let group = match group {
            Some(g) => Some((
                g.to_owned(),
                group_id(g).ok_or_else(|| ControlError::NoGroup(g.to_owned()))?,
            )),
            None => None,
        };
        Ok(Access {
            group,
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            own_uid: unsafe { libc::geteuid() },
            refused: Arc::default(),
        })
    }

    /// The rule, on credentials already read.
    pub fn decide(&self, peer: &Peer) -> Result<(), Refusal> {
        if peer.uid == 0 || peer.uid == self.own_uid {
            return Ok(());
        }
        match &self.group {
            Some((_, gid)) if peer.gid == *gid || peer.groups.contains(gid) => Ok(()),
            Some((name, _)) => Err(Refusal {
                reason: "not_root_or_group",
                message: format!(
                    "permission denied: uid {} is neither root nor a member of the control group {name:?}",
                    peer.uid
                ),
            }),
            None => Err(Refusal {
                reason: "not_root_or_group",
                message: format!(
                    "permission denied: uid {} is not root (set node.control_group to let a group in)",
                    peer.uid
                ),
            }),
        }
    }

    /// Read the peer's credentials and apply the rule; a refusal is logged and counted.
    pub fn check(&self, stream: &UnixStream) -> Result<(), Refusal> {
        let verdict = match peer_of(stream) {
            Ok(peer) => self.decide(&peer).inspect_err(|r| {
                error!(uid = peer.uid, gid = peer.gid, pid = ?peer.pid, reason = r.reason,
                    "control socket: connection refused");
            }),
            Err(e) => {
                error!(error = %e, "control socket: cannot read the peer's credentials; refused");
                Err(Refusal {
                    reason: "no_credentials",
                    message: format!(
                        "permission denied: the peer's credentials are unreadable ({e})"
                    ),
                })
            }
        };
        if let Err(r) = &verdict {
            *lock(&self.refused).entry(r.reason).or_default() += 1;
        }
        verdict
    }

    /// Refusals so far, by reason.
    pub fn refused(&self) -> BTreeMap<String, u64> {
        lock(&self.refused)
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }
}

/// `SO_PEERGROUPS` (Linux 4.13+): the value of asm-generic/socket.h, used by every
/// architecture fo builds for (x86_64, aarch64); the libc crate does not export it.
const SO_PEERGROUPS: libc::c_int = 59;

fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream.as_raw_fd())?,
        pid: cred.pid(),
    })
}

/// The supplementary groups of the process that connected (as they were at connect
/// time, from the kernel: no race with a process that changes them afterwards).
fn peer_groups(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(std::mem::size_of_val(groups.as_slice()))
            .unwrap_or(libc::socklen_t::MAX);
        // SAFETY: getsockopt writes at most `len` bytes into `groups`, which has exactly
        // that room, and sets `len` to the bytes written (or needed, with ERANGE).
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(e);
    }
}

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Serve connections until the listener fails; only peers `access` allows are heard,
/// at most `limiter`'s cap of connections at once (see [`super::conns`]).
pub async fn serve(
    listener: UnixListener,
    access: Access,
    agent: mpsc::Sender<Envelope>,
    limiter: Limiter,
) {
    limiter
        .serve(&listener, "control socket", FULL_REPLY, |stream, ticket| {
            let agent = agent.clone();
            let verdict = access.check(&stream);
            async move {
                let work = async {
                    match verdict {
                        Err(refusal) => refuse(stream, refusal).await,
                        Ok(()) => connection(stream, agent, &ticket).await,
                    }
                };
                if let Err(e) = tokio::time::timeout(CLIENT_TIMEOUT, work).await {
                    debug!(error = %e, "control client timed out");
                }
            }
        })
        .await;
}

const FULL_REPLY: &[u8] =
    b"{\"result\":\"error\",\"message\":\"too many connections to the control socket: try again\"}\n";

async fn connection(stream: UnixStream, agent: mpsc::Sender<Envelope>, ticket: &Ticket) {
    let (mut read, mut write) = stream.into_split();
    let got = match tokio::time::timeout(READ_DEADLINE, read_request(&mut read)).await {
        Ok(r) => r,
        Err(_) => {
            ticket.count(reason::TIMEOUT);
            return;
        }
    };
    ticket.busy();
    let response = match got {
        None => return,
        Some(Ok(req)) => {
            // A client that leaves stops waiting for its answer (a status walks the
            // connection tables); the request itself goes on.
            tokio::select! {
                r = ask(&agent, req) => r,
                () = client_gone(&mut read) => {
                    ticket.count(reason::CLIENT_GONE);
                    return;
                }
            }
        }
        Some(Err(message)) => Response::Error { message },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"message\":\"encoding the response: {e}\"}}")
    });
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
}

/// Read and decode one request: a line of at most [`MAX_LINE`] bytes, JSON. `None`
/// when the peer closed before sending anything; `Err` says what was wrong, for the
/// peer. (Public for the fuzz target in `fo-agent/fuzz`.)
pub async fn read_request(read: impl AsyncRead + Unpin) -> Option<Result<Request, String>> {
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    let mut line = String::new();
    match reader.read_line(&mut line).await {
        Ok(0) => None,
        Ok(_) => Some(
            serde_json::from_str::<Request>(line.trim()).map_err(|e| format!("bad request: {e}")),
        ),
        Err(e) => Some(Err(format!("reading the request: {e}"))),
    }
}

/// Answer a refused peer with its error. Its request line is read (and ignored) first,
/// bounded in size and time: closing with it unread would reset the connection, and
/// the client would see a broken pipe instead of the reason.
async fn refuse(stream: UnixStream, refusal: Refusal) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    let mut line = String::new();
    let _ = tokio::time::timeout(REFUSE_READ, reader.read_line(&mut line)).await;
    let response = Response::Error {
        message: refusal.message,
    };
    if let Ok(mut out) = serde_json::to_string(&response) {
        out.push('\n');
        let _ = write.write_all(out.as_bytes()).await;
    }
}

/// Hand a request to the agent and wait for its answer.
pub async fn ask(agent: &mpsc::Sender<Envelope>, req: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    if agent.send((req, tx)).await.is_err() {
        return Response::Error {
            message: "the agent is shutting down".into(),
        };
    }
    rx.await.unwrap_or(Response::Error {
        message: "the agent dropped the request".into(),
    })
}

/// How often the client sends its request when the agent closed the connection
/// without reading it.
const CALL_ATTEMPTS: u32 = 3;

/// Client side: send one request to the socket at `path` and read the answer.
///
/// A connection the agent closed before reading the request (evicted to make room
/// under a crowd of idle connections, see `api::conns`) is sent again, up to
/// [`CALL_ATTEMPTS`] times. Only the two ways a Unix socket shows an unread request are
/// taken for that: the write fails with EPIPE (closed before it arrived), or the read
/// fails with ECONNRESET (closed with it unread). A clean close after the request was
/// written may come after the agent read it, so that is an error, never a resend: no
/// command runs twice.
pub fn call(path: &Path, req: &Request) -> Result<Response, String> {
    let mut attempt = 1;
    loop {
        match call_once(path, req) {
            Err(CallError::Unread(why)) if attempt < CALL_ATTEMPTS => {
                debug!(attempt, "control: {why}; sending the request again");
                std::thread::sleep(Duration::from_millis(100) * attempt);
                attempt += 1;
            }
            Err(CallError::Unread(why)) => {
                return Err(format!(
                    "{why} ({attempt} attempts; is the control socket flooded with idle connections?)"
                ));
            }
            Err(CallError::Other(e)) => return Err(e),
            Ok(r) => return Ok(r),
        }
    }
}

enum CallError {
    /// Closed before the agent read the request: safe to send again.
    Unread(String),
    Other(String),
}

fn call_once(path: &Path, req: &Request) -> Result<Response, CallError> {
    use std::io::{BufRead as _, ErrorKind, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        CallError::Other(format!(
            "cannot reach the agent at {}: {e} (is fo-agent running? --socket PATH)",
            path.display()
        ))
    })?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| CallError::Other(e.to_string()))?;
    let mut line = serde_json::to_string(req).map_err(|e| CallError::Other(e.to_string()))?;
    line.push('\n');
    // A refusing agent may answer and close before reading all of the request: read
    // its answer even when sending failed.
    let sent = s.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = std::io::BufReader::new(s).read_line(&mut answer);
    match (sent, read) {
        (_, Ok(n)) if n > 0 => {}
        (Err(e), _) if e.kind() == ErrorKind::BrokenPipe => {
            return Err(CallError::Unread(format!(
                "the agent closed the connection: {e}"
            )));
        }
        (_, Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
            return Err(CallError::Unread(format!(
                "the agent closed the connection: {e}"
            )));
        }
        (Err(e), _) => return Err(CallError::Other(format!("sending: {e}"))),
        (Ok(()), Err(e)) => return Err(CallError::Other(format!("reading the answer: {e}"))),
        (Ok(()), Ok(_)) => {
            return Err(CallError::Other(
                "the agent closed the connection without an answer".into(),
            ));
        }
    }
    serde_json::from_str(answer.trim())
        .map_err(|e| CallError::Other(format!("bad answer from the agent: {e}: {answer}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r = Request::Drain {
            service: "events".into(),
            backend: "b1".into(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"cmd":"drain","service":"events","backend":"b1"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"status"}"#).unwrap(),
            Request::Status
        );
    }

    #[test]
    fn only_root_self_and_the_group_are_allowed() {
        let mut access = Access::new(None).unwrap();
        access.own_uid = 990;
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            groups: groups.to_vec(),
            pid: Some(1),
        };
        assert!(access.decide(&peer(0, 0, &[])).is_ok(), "root");
        assert!(
            access.decide(&peer(990, 990, &[])).is_ok(),
            "the agent's own user"
        );
        let r = access.decide(&peer(1000, 1000, &[27])).unwrap_err();
        assert_eq!(r.reason, "not_root_or_group");
        assert!(r.message.contains("uid 1000 is not root"), "{}", r.message);
        access.group = Some(("fo".into(), 27));
        assert!(
            access.decide(&peer(1000, 1000, &[27])).is_ok(),
            "supplementary member"
        );
        assert!(
            access.decide(&peer(1000, 27, &[])).is_ok(),
            "primary member"
        );
        let r = access.decide(&peer(1000, 1000, &[4, 24])).unwrap_err();
        assert!(
            r.message
                .contains("uid 1000 is neither root nor a member of the control group \"fo\""),
            "{}",
            r.message
        );
    }

    #[tokio::test]
    async fn socket_is_private_and_answers() {
        let dir = std::env::temp_dir().join(format!("fo-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind(&path, None).await.expect("bind");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "control socket mode");
        let (tx, mut rx) = mpsc::channel::<Envelope>(1);
        tokio::spawn(serve(
            listener,
            Access::new(None).unwrap(),
            tx,
            Limiter::new(super::super::conns::CONTROL_CAP),
        ));
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(Response::Ok {
                    message: format!("{req:?}"),
                });
            }
        });
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || call(&p, &Request::Reload))
            .await
            .unwrap();
        assert_eq!(
            answer,
            Ok(Response::Ok {
                message: "Reload".into()
            })
        );
        // A second agent must not steal the socket.
        assert!(matches!(
            bind(&path, None).await,
            Err(ControlError::InUse(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A server that closes its first `unread` connections without reading them (as an
    /// eviction does), then answers: the client sends again and gets the answer; with
    /// more closes than attempts it fails and says how often it tried.
    fn closing_server(unread: usize) -> (std::path::PathBuf, std::thread::JoinHandle<usize>) {
        use std::io::{BufRead as _, Write as _};
        let path =
            std::env::temp_dir().join(format!("fo-ctl-unread-{unread}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            let mut served = 0;
            for (i, c) in l.incoming().enumerate() {
                let c = c.expect("accept");
                served += 1;
                if i < unread {
                    drop(c);
                    if i + 1 == unread && unread >= CALL_ATTEMPTS as usize {
                        return served;
                    }
                    continue;
                }
                let mut line = String::new();
                std::io::BufReader::new(&c)
                    .read_line(&mut line)
                    .expect("read");
                (&c).write_all(b"{\"result\":\"ok\",\"message\":\"m\"}\n")
                    .expect("write");
                return served;
            }
            served
        });
        (path, t)
    }

    #[test]
    fn a_request_the_agent_closed_unread_is_sent_again() {
        let (path, t) = closing_server(2);
        let r = call(&path, &Request::Status).expect("answered on the third");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            r,
            Response::Ok {
                message: "m".into()
            }
        );
        assert_eq!(t.join().expect("server"), 3);

        // Read, then closed without an answer: the agent may have acted, so no resend.
        let path = std::env::temp_dir().join(format!("fo-ctl-read-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let t = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut served = 0;
            l.set_nonblocking(false).expect("blocking");
            for c in l.incoming().take(1) {
                let c = c.expect("accept");
                let mut line = String::new();
                std::io::BufReader::new(&c)
                    .read_line(&mut line)
                    .expect("read");
                served += 1;
            }
            served
        });
        let e = call(&path, &Request::Reload).expect_err("closed after reading");
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("without an answer"), "{e}");
        assert_eq!(t.join().expect("server"), 1);

        let (path, t) = closing_server(CALL_ATTEMPTS as usize);
        let e = call(&path, &Request::Reload).expect_err("never read");
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("3 attempts"), "{e}");
        assert_eq!(t.join().expect("server"), 3);
    }
}
