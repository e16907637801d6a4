//! The http and https probes: one GET through the shared client ([`crate::health::http`]),
//! over TLS ([`crate::health::tls`]) for https.

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::health::http::{self, BodySearch};
use crate::health::tls::{self, Attempt, TlsFailure};

use super::{HttpProbe, ProbeError, ProbeResult, READ_LIMIT, Step};

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
    let tcp = tokio::time::timeout_at(deadline, async {
        match (p.mark, p.host.parse::<std::net::IpAddr>()) {
            (Some(mark), Ok(ip)) => {
                super::mark::connect(std::net::SocketAddr::new(ip, p.port), Some(mark)).await
            }
            _ => TcpStream::connect((p.host.as_str(), p.port)).await,
        }
    })
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

#[cfg(test)]
mod tests {
    use super::super::{days, statuses};
    use super::*;
    use crate::health::http::find;
    use crate::health::testutil::T;
    use fo_config::HttpGet;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

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
            mark: None,
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
}
