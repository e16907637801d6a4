//! `/metrics` over HTTP, read-only: Prometheus text of the agent's status. A minimal
//! HTTP/1.1 responder (GET only, one request per connection) — this endpoint needs no
//! more, and it keeps a web framework out of a root daemon. Connections are capped and
//! must send their request within a deadline ([`super::conns`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::conns::{Limiter, READ_DEADLINE, Ticket, client_gone, reason};
use super::control::{Envelope, Request, Response, ask};
use super::exposition::Format;

/// Longest request head read; a longer one is answered as far as it was read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// A connection's whole life: its request, the status, the answer written.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `GET /metrics` until the listener fails, at most `limiter`'s cap of
/// connections at once (see [`super::conns`]).
pub async fn serve(listener: TcpListener, agent: mpsc::Sender<Envelope>, limiter: Limiter) {
    limiter
        .serve(&listener, "metrics", FULL_REPLY, |stream, ticket| {
            let agent = agent.clone();
            async move {
                let _ =
                    tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, agent, &ticket)).await;
            }
        })
        .await;
}

const FULL_REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

async fn answer(mut stream: TcpStream, agent: mpsc::Sender<Envelope>, ticket: &Ticket) {
    let head = match tokio::time::timeout(READ_DEADLINE, read_head(&mut stream)).await {
        Ok(Some(head)) => {
            ticket.busy();
            head
        }
        Ok(None) => return,
        Err(_) => {
            ticket.count(reason::TIMEOUT);
            return;
        }
    };
    let (code, ctype, body) = match route(&head) {
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
        Route::Metrics(format) => {
            // The status walks the connection tables (shared, see agent::tables): a
            // client that leaves meanwhile stops waiting for it.
            let status = tokio::select! {
                r = ask(&agent, Request::Status) => r,
                () = client_gone(&mut stream) => {
                    ticket.count(reason::CLIENT_GONE);
                    return;
                }
            };
            match status {
                Response::Status { status } => {
                    let text = super::metrics::render(&status);
                    let body = match format {
                        Format::OpenMetrics => text,
                        Format::Prometheus => super::exposition::to_prometheus_text(&text),
                    };
                    ("200 OK", format.content_type(), body)
                }
                other => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("{other:?}\n"),
                ),
            }
        }
        Route::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
    };
    // Read-only: every other method is refused, and says which one works.
    let allow = if code.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {code}\r\n{allow}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (with or without a query), in this format.
    Metrics(Format),
    /// `GET` of any other path.
    NotFound,
    /// Any other method.
    MethodNotAllowed,
}

/// Read a request head: up to its blank line, or about [`MAX_REQUEST`] bytes (read
/// 1 KiB at a time), whichever comes first. `None` when the peer closed or failed before
/// either. (Public, like [`route`], for the fuzz target in `fo-agent/fuzz`.)
pub async fn read_head(mut stream: impl AsyncRead + Unpin) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(buf)
}

/// What the request head `head` (as [`read_head`] returns it) asks for. Only the head
/// counts, up to its blank line: what a read brought in past it (a body, a pipelined
/// request) depends on how the client's bytes were split, and must not change the
/// answer.
pub fn route(head: &[u8]) -> Route {
    let head = match head.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &head[..end + 2],
        None => head,
    };
    let head = String::from_utf8_lossy(head);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        Route::MethodNotAllowed
    } else if path == "/metrics" || path.starts_with("/metrics?") {
        Route::Metrics(super::exposition::negotiate(header(&head, "accept")))
    } else {
        Route::NotFound
    }
}

/// The value of header `name` (lower case) in a request head, if present.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_are_found_whatever_their_case() {
        let head = "GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT: text/plain;q=0.5\r\n\r\n";
        assert_eq!(super::header(head, "accept"), Some("text/plain;q=0.5"));
        assert_eq!(super::header(head, "user-agent"), None);
    }

    /// Found by the `metrics-head` fuzz target: a head read in one piece took an
    /// `Accept` line past the blank line into account, the same bytes read in small
    /// pieces did not.
    #[test]
    fn nothing_past_the_blank_line_counts() {
        use super::{Format, Route, route};
        let head = b"GET /metrics HTTP/1.1\r\n\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(route(head), Route::Metrics(Format::Prometheus));
        assert_eq!(
            route(b"GET\r\n\r\n/metrics HTTP/1.1\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n"),
            Route::Metrics(Format::OpenMetrics)
        );
    }
}
