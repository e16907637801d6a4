//! The tcp probe: a connection, nothing sent.

use std::net::SocketAddr;
use std::time::Duration;

use super::{ProbeError, ProbeResult, within};

/// Healthy when a TCP connection to `addr` is established within `timeout`.
/// `mark`: the socket's `SO_MARK` (a probe through the tunnel).
pub async fn tcp(addr: SocketAddr, mark: Option<u32>, timeout: Duration) -> ProbeResult {
    within(timeout, async {
        super::mark::connect(addr, mark)
            .await
            .map_err(|source| ProbeError::Connect {
                target: addr.to_string(),
                source,
            })?;
        Ok(match mark {
            Some(_) => format!("connected to {addr} through the tunnel"),
            None => format!("connected to {addr}"),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::testutil::T;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn tcp_is_up_while_listening_and_down_once_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let r = tcp(addr, None, T).await;
        assert!(
            r.is_ok(),
            "expected up with a listener on {addr}, saw {r:?}"
        );
        drop(listener);
        let r = tcp(addr, None, T).await;
        assert!(
            matches!(r, Err(ProbeError::Connect { .. })),
            "expected a refused connection after closing {addr}, saw {r:?}"
        );
    }
}
