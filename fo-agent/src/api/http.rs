//! `/metrics` over HTTP, read-only: Prometheus text of the agent's status. A minimal
//! HTTP/1.1 responder (GET only, one request per connection) — this endpoint needs no
//! more, and it keeps a web framework out of a root daemon.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::warn;

use super::control::{Envelope, Request, Response, ask};
use super::exposition::Format;

const MAX_REQUEST: usize = 8 * 1024;

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(listener: TcpListener, agent: mpsc::Sender<Envelope>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(10), answer(stream, agent)).await;
                });
            }
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, agent: mpsc::Sender<Envelope>) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
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
        match ask(&agent, Request::Status).await {
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
