//! The sink's control endpoint: connect, read one JSON report, the server closes.
//! A TCP address (e.g. `127.0.0.1:1515`) or a Unix socket path. A Unix socket is
//! reachable from any network namespace, which suits a sink inside a backend's netns.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

/// Where the control endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ControlAddr {
    type Err = std::convert::Infallible;
    /// An `ip:port` is TCP; anything else is a Unix socket path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse() {
            Ok(a) => Self::Tcp(a),
            Err(_) => Self::Unix(PathBuf::from(s)),
        })
    }
}

/// Serves `render()` to every client until the task is dropped. A stale Unix socket
/// file is replaced.
pub async fn serve<F>(addr: ControlAddr, render: F) -> io::Result<()>
where
    F: Fn() -> Vec<u8> + Send + 'static,
{
    match addr {
        ControlAddr::Tcp(a) => {
            let l = TcpListener::bind(a).await?;
            loop {
                let (s, _) = l.accept().await?;
                answer(s, render());
            }
        }
        ControlAddr::Unix(p) => {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let l = UnixListener::bind(&p)?;
            loop {
                let (s, _) = l.accept().await?;
                answer(s, render());
            }
        }
    }
}

/// Writes the report to one client and closes, on its own task: a slow client holds up
/// no other.
fn answer<S>(mut s: S, body: Vec<u8>)
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = s.write_all(&body).await;
        let _ = s.shutdown().await;
    });
}
