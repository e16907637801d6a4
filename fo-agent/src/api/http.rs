//! `/metrics` over HTTP, read-only: Prometheus text of the agent's status. A minimal
//! HTTP/1.1 responder (GET only, one request per connection) — this endpoint needs no
//! more, and it keeps a web framework out of a root daemon. Connections are capped and
//! must send their request within a deadline ([`super::conns`]).

use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::warn;

use super::conns::{Limiter, READ_DEADLINE, Ticket, client_gone, reason};
use super::control::{Envelope, Request, Response, ask};
use super::exposition::Format;

const MAX_REQUEST: usize = 8 * 1024;
/// A connection's whole life: its request, the status, the answer written.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `GET /metrics` until the listener fails, at most `limiter`'s cap of
/// connections at once (see [`super::conns`]).
pub async fn serve(listener: TcpListener, agent: mpsc::Sender<Envelope>, limiter: Limiter) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Some(mut ticket) = limiter.admit(stream.as_raw_fd()) else {
                    // Every place busy: say so if the socket takes it now, and close.
                    let _ = stream.try_write(FULL_REPLY);
                    continue;
                };
                let agent = agent.clone();
                let limiter = limiter.clone();
                let evicted = ticket.evicted();
                tokio::spawn(async move {
                    tokio::select! {
                        () = evicted => {}
                        _ = tokio::time::timeout(
                            CONNECTION_DEADLINE,
                            answer(stream, agent, &ticket, &limiter),
                        ) => {}
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

const FULL_REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n";

async fn answer(
    mut stream: TcpStream,
    agent: mpsc::Sender<Envelope>,
    ticket: &Ticket,
    limiter: &Limiter,
) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    match tokio::time::timeout(READ_DEADLINE, head).await {
        Ok(true) => ticket.busy(),
        Ok(false) => return,
        Err(_) => {
            limiter.count(reason::TIMEOUT);
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let format = super::exposition::negotiate(header(&head, "accept"));
    let (code, ctype, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path == "/metrics" || path.starts_with("/metrics?") {
        // The status walks the connection tables (shared, see agent::tables): a client
        // that leaves meanwhile stops waiting for it.
        let status = tokio::select! {
            r = ask(&agent, Request::Status) => r,
            () = client_gone(&mut stream) => {
                limiter.count(reason::CLIENT_GONE);
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
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
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
}
