//! The HTTP/1.1 client that `http` and `https` checks share: one GET over a stream that
//! is already connected (plain TCP, or TLS on top of it), spoken by hyper.
//!
//! One request per connection, `Connection: close`: a check measures what a new client
//! would get, and keeps no idle connection open on the target. Header names go out in
//! title case (`Host`, `User-Agent`), as hand-written servers and embedded health
//! endpoints sometimes compare them case-sensitively.
//!
//! Timeouts are the caller's: it bounds each step with its deadline, so that the status
//! can say which step did not finish.

use std::future::poll_fn;
use std::pin::Pin;

use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, CONNECTION, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

/// Most bytes of a response head (status line and headers); a longer one is an error.
pub const HEADER_LIMIT: usize = 64 << 10;

/// A response whose head has arrived; the connection is driven until this is dropped.
pub struct Exchange {
    response: Response<Incoming>,
    _connection: AbortOnDrop,
}

impl Exchange {
    /// The response's status code.
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// Read the body until it contains `needle`, it ends, or `limit` bytes were read.
    /// Chunked and length-delimited bodies arrive decoded.
    pub async fn search_body(
        self,
        needle: &[u8],
        limit: usize,
    ) -> Result<BodySearch, hyper::Error> {
        let mut body = self.response.into_body();
        let mut seen: Vec<u8> = Vec::new();
        loop {
            if find(&seen, needle).is_some() {
                return Ok(BodySearch::Found);
            }
            if seen.len() >= limit {
                return Ok(BodySearch::Missing {
                    read: seen.len(),
                    truncated: true,
                });
            }
            let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await else {
                return Ok(BodySearch::Missing {
                    read: seen.len(),
                    truncated: false,
                });
            };
            if let Ok(data) = frame?.into_data() {
                let room = limit - seen.len();
                seen.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
}

/// Send `GET path` with `Host: authority` over `io` and wait for the response head.
pub async fn get<S>(io: S, authority: &str, path: &str) -> Result<Exchange, GetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = Request::get(path)
        .header(
            HOST,
            HeaderValue::from_str(authority).map_err(|_| GetError::Request {
                reason: format!("{authority:?} is not a valid Host header"),
            })?,
        )
        .header(USER_AGENT, "fo-health")
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(String::new())
        .map_err(|e| GetError::Request {
            reason: format!("path {path:?}: {e}"),
        })?;
    let (mut sender, connection) = http1::Builder::new()
        .title_case_headers(true)
        .max_header_size(HEADER_LIMIT)
        .handshake(TokioIo::new(io))
        .await?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        // Its errors reach the response future (or the body) too; nothing to add here.
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await?;
    Ok(Exchange {
        response,
        _connection: connection,
    })
}

/// Why a GET failed before its response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("cannot build the request: {reason}")]
    Request { reason: String },
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// What a search of a response body found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySearch {
    Found,
    /// The body ended (or `limit` bytes were read: `truncated`) without it.
    Missing {
        read: usize,
        truncated: bool,
    },
}

/// Position of `needle` in `haystack` (an empty needle is at 0).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A spawned task aborted when this is dropped: the connection of a probe that
/// timed out or finished stops with it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
