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
        let mut scan = BodyScan::new(needle, limit);
        loop {
            if let Some(done) = scan.outcome() {
                return Ok(done);
            }
            let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await else {
                return Ok(scan.ended());
            };
            if let Ok(data) = frame?.into_data() {
                scan.feed(&data);
            }
        }
    }
}

/// A search for a needle in a body that arrives in pieces: each byte is looked at a
/// bounded number of times however small the pieces (a server sending the body one
/// byte per chunk costs no more than one sending it whole), and only the last
/// `needle.len() - 1` bytes are kept between pieces.
#[derive(Debug)]
pub struct BodyScan {
    needle: Vec<u8>,
    limit: usize,
    /// The end of what was read, at most `needle.len() - 1` bytes, then the new piece.
    window: Vec<u8>,
    read: usize,
    found: bool,
    /// Bytes compared so far (tests bound it).
    examined: usize,
}

impl BodyScan {
    pub fn new(needle: &[u8], limit: usize) -> Self {
        Self {
            needle: needle.to_vec(),
            limit,
            window: Vec::new(),
            read: 0,
            found: needle.is_empty(),
            examined: 0,
        }
    }

    /// Take the next piece of the body (past `limit`, only what fits).
    pub fn feed(&mut self, data: &[u8]) {
        if self.found || self.read >= self.limit {
            return;
        }
        let take = &data[..data.len().min(self.limit - self.read)];
        self.read += take.len();
        self.window.extend_from_slice(take);
        self.examined += self.window.len();
        if find(&self.window, &self.needle).is_some() {
            self.found = true;
            return;
        }
        let keep = (self.needle.len() - 1).min(self.window.len());
        self.window.drain(..self.window.len() - keep);
    }

    /// Found, or `limit` bytes read without it; `None` while reading may go on.
    pub fn outcome(&self) -> Option<BodySearch> {
        if self.found {
            Some(BodySearch::Found)
        } else if self.read >= self.limit {
            Some(BodySearch::Missing {
                read: self.read,
                truncated: true,
            })
        } else {
            None
        }
    }

    /// The body ended.
    pub fn ended(&self) -> BodySearch {
        self.outcome().unwrap_or(BodySearch::Missing {
            read: self.read,
            truncated: false,
        })
    }

    /// Bytes compared against the needle's start so far.
    pub fn examined(&self) -> usize {
        self.examined
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

#[cfg(test)]
mod tests {
    use super::*;

    fn search(pieces: &[&[u8]], needle: &[u8], limit: usize) -> (BodySearch, usize) {
        let mut scan = BodyScan::new(needle, limit);
        for p in pieces {
            if scan.outcome().is_some() {
                break;
            }
            scan.feed(p);
        }
        (scan.ended(), scan.examined())
    }

    #[test]
    fn a_needle_split_across_pieces_is_found() {
        let (found, _) = search(&[b"...gr", b"e", b"en..."], b"green", 100);
        assert_eq!(found, BodySearch::Found);
        let (found, _) = search(&[b"green"], b"green", 100);
        assert_eq!(found, BodySearch::Found);
        let (missing, _) = search(&[b"gre", b"y, not gree", b"n-ish"], b"greens", 100);
        assert_eq!(
            missing,
            BodySearch::Missing {
                read: 19,
                truncated: false
            }
        );
    }

    #[test]
    fn the_limit_is_counted_and_bytes_past_it_are_not_searched() {
        let (r, _) = search(&[b"aaaa", b"aaaagreen"], b"green", 8);
        assert_eq!(
            r,
            BodySearch::Missing {
                read: 8,
                truncated: true
            }
        );
        let (r, _) = search(&[b"aaagreen"], b"green", 8);
        assert_eq!(r, BodySearch::Found);
        let (r, _) = search(&[b""], b"", 8);
        assert_eq!(r, BodySearch::Found, "an empty needle is everywhere");
    }

    /// A body of one byte per piece: each byte is looked at no more than needle.len()
    /// times (searching the whole buffer again per piece looks at limit² / 2 bytes).
    #[test]
    fn tiny_pieces_cost_no_more_than_one_big_one() {
        let needle = b"cluster is green";
        let limit = 64 << 10;
        let body = vec![b'x'; limit];
        let mut scan = BodyScan::new(needle, limit);
        for b in body.chunks(1) {
            scan.feed(b);
        }
        assert_eq!(
            scan.ended(),
            BodySearch::Missing {
                read: limit,
                truncated: true
            }
        );
        assert!(
            scan.examined() <= limit * needle.len(),
            "{} bytes examined for a body of {limit}",
            scan.examined()
        );
    }
}
