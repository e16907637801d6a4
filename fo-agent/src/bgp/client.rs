//! One command over BIRD's control socket: connect, read the greeting, send the
//! command, read its reply. A connection per command: nothing to repair when the
//! daemon restarts.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use super::birdc::{Malformed, Reply, ReplyReader};

#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    #[error("cannot reach BIRD at {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD's control socket: {source}")]
    Io {
        #[source]
        source: std::io::Error,
    },
    #[error("BIRD closed its control socket mid-reply")]
    Closed,
    #[error("BIRD did not answer {command:?} within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("BIRD refused {command:?}: {code} {message}")]
    Refused {
        command: String,
        code: u16,
        message: String,
    },
}

/// Run `command` (one line, e.g. `enable fo_ingest`) on the BIRD behind `socket`.
/// A reply with an 8xxx/9xxx code is [`BirdError::Refused`].
pub async fn command(socket: &Path, command: &str, timeout: Duration) -> Result<Reply, BirdError> {
    match tokio::time::timeout(timeout, exchange(socket, command)).await {
        Ok(r) => r,
        Err(_) => Err(BirdError::Timeout {
            command: command.to_string(),
            timeout,
        }),
    }
}

async fn exchange(socket: &Path, command: &str) -> Result<Reply, BirdError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| BirdError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut reader = ReplyReader::default();
    let mut next = async || -> Result<Reply, BirdError> {
        loop {
            let line = lines
                .next_line()
                .await
                .map_err(|source| BirdError::Io { source })?
                .ok_or(BirdError::Closed)?;
            if let Some(reply) = reader.push(&line)? {
                return Ok(reply);
            }
        }
    };
    let _greeting = next().await?;
    wr.write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|source| BirdError::Io { source })?;
    let reply = next().await?;
    if reply.is_error() {
        return Err(BirdError::Refused {
            command: command.to_string(),
            code: reply.code(),
            message: reply.message(),
        });
    }
    Ok(reply)
}
