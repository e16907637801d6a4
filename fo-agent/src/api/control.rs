//! The control socket: a Unix stream socket (mode 0600, or 0660 for
//! `node.control_group`), one JSON request per line, one JSON response per line.
//! The server forwards each request to the agent's main loop and waits for its answer.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::status::Status;

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Promote { router: String },
    Demote { router: String },
    Resume { router: String },
    Reload,
    Drain { service: String, backend: String },
    Enable { service: String, backend: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status { status: Box<Status> },
    Ok { message: String },
    Error { message: String },
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
const MAX_LINE: usize = 64 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

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

fn group_id(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Serve connections until the listener fails.
pub async fn serve(listener: UnixListener, agent: mpsc::Sender<Envelope>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::spawn(async move {
                    if let Err(e) =
                        tokio::time::timeout(CLIENT_TIMEOUT, connection(stream, agent)).await
                    {
                        debug!(error = %e, "control client timed out");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, agent: mpsc::Sender<Envelope>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_LINE as u64));
    let mut line = String::new();
    let response = match reader.read_line(&mut line).await {
        Ok(0) => return,
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => ask(&agent, req).await,
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        },
        Err(e) => Response::Error {
            message: format!("reading the request: {e}"),
        },
    };
    let mut out = serde_json::to_string(&response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"message\":\"encoding the response: {e}\"}}")
    });
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
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

/// Client side: send one request to the socket at `path` and read the answer.
pub fn call(path: &Path, req: &Request) -> Result<Response, String> {
    use std::io::{BufRead as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot reach the agent at {}: {e} (is fo-agent running? --socket PATH)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let mut answer = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    serde_json::from_str(answer.trim())
        .map_err(|e| format!("bad answer from the agent: {e}: {answer}"))
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

    #[tokio::test]
    async fn socket_is_private_and_answers() {
        let dir = std::env::temp_dir().join(format!("fo-ctl-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind(&path, None).await.expect("bind");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "control socket mode");
        let (tx, mut rx) = mpsc::channel::<Envelope>(1);
        tokio::spawn(serve(listener, tx));
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
}
