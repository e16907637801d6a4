//! A cap on the connections a listener (the metrics endpoint, the control socket)
//! serves at once, and the rules that keep idle connections from holding it.
//!
//! - A connection is *idle* until its whole request has arrived, *busy* after.
//! - At most `cap` connections are open per listener. A new connection that finds the
//!   listener full closes the oldest idle one that has sent nothing to take its place
//!   (`evicted`): a client
//!   that sends its request at once (Prometheus, `fo-agent status`) is busy within a
//!   round trip, so a crowd of connections that never send anything cannot keep it
//!   out. If every connection is busy, the newcomer is closed at once (`full`).
//! - A connection whose request has not arrived within [`READ_DEADLINE`] is closed
//!   (`timeout`); one whose client leaves before its answer is ready stops waiting for
//!   it (`client_gone`).
//!
//! - An eviction is finished before the listener accepts again: the accept loop waits
//!   until the evicted connection's task has dropped its socket. Otherwise, on a busy
//!   machine, a crowd of idle connections could be accepted faster than the evicted
//!   ones' tasks run to close them, and descriptors would pile up beyond the cap.
//!
//! Every such close is counted by listener and reason (`fo_api_connections_closed_total`).
//! With both caps at their defaults the agent holds at most 128 client descriptors, plus
//! one per listener while an eviction finishes, whatever the number of clients (README,
//! Running under systemd: the descriptor budget).

use std::collections::BTreeMap;
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::oneshot;
use tracing::warn;

/// Connections the metrics endpoint serves at once.
pub const METRICS_CAP: usize = 64;
/// Connections the control socket serves at once.
pub const CONTROL_CAP: usize = 64;
/// How long a client has, from its connection, to send its whole request.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// How long the accept loop waits for an evicted connection's task to drop it.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a connection was closed by the agent (metric label values).
pub mod reason {
    /// Every slot busy: the new connection was closed at once.
    pub const FULL: &str = "full";
    /// The oldest idle connection, closed to make room for a new one.
    pub const EVICTED: &str = "evicted";
    /// No whole request within [`super::READ_DEADLINE`].
    pub const TIMEOUT: &str = "timeout";
    /// The client left before its answer was ready.
    pub const CLIENT_GONE: &str = "client_gone";
}

/// One listener's connections, for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStats {
    /// Open now.
    pub open: u64,
    /// The cap.
    pub limit: u64,
    /// Closed by the agent since start, by reason (`full`, `evicted`, `timeout`,
    /// `client_gone`).
    pub closed: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Open connections in accept order.
    open: BTreeMap<u64, Slot>,
    /// Evicted connections whose tasks have not dropped them yet: each resolves when
    /// its ticket (and with it the socket) is gone.
    closing: Vec<oneshot::Receiver<()>>,
    closed: BTreeMap<&'static str, u64>,
}

/// An open connection's place.
struct Slot {
    /// Nothing of its request read yet.
    idle: bool,
    /// Its socket (peeked to tell a client that sent its request).
    fd: RawFd,
    /// Tells its task it was evicted.
    evict: Option<oneshot::Sender<()>>,
    /// Resolves when its ticket is dropped.
    gone: oneshot::Receiver<()>,
}

/// The connections of one listener.
#[derive(Clone)]
pub struct Limiter {
    cap: usize,
    inner: Arc<Mutex<Inner>>,
}

/// An admitted connection's place; dropping it frees the place.
pub struct Ticket {
    id: u64,
    inner: Arc<Mutex<Inner>>,
    evict: Option<oneshot::Receiver<()>>,
    /// Dropped with the ticket: tells the listener an evicted connection is closed.
    _gone: oneshot::Sender<()>,
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Counters and a map of senders: still consistent after a panic elsewhere.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limiter {
    pub fn new(cap: usize) -> Limiter {
        Limiter {
            cap: cap.max(1),
            inner: Arc::default(),
        }
    }

    /// A place for the new connection on socket `fd`, evicting the oldest idle one
    /// if the listener is full; `None` if every place is busy (counted as `full`:
    /// close the connection). A connection whose request is waiting in its socket,
    /// not read yet, counts as busy.
    pub fn admit(&self, fd: RawFd) -> Option<Ticket> {
        let mut inner = lock(&self.inner);
        if inner.open.len() >= self.cap {
            let oldest_idle = inner
                .open
                .iter()
                .find(|(_, slot)| slot.idle && !has_data(slot.fd))
                .map(|(id, _)| *id);
            match oldest_idle {
                Some(id) => {
                    if let Some(slot) = inner.open.remove(&id) {
                        if let Some(tx) = slot.evict {
                            let _ = tx.send(());
                        }
                        inner.closing.push(slot.gone);
                    }
                    *inner.closed.entry(reason::EVICTED).or_default() += 1;
                }
                None => {
                    *inner.closed.entry(reason::FULL).or_default() += 1;
                    return None;
                }
            }
        }
        let id = inner.next;
        inner.next += 1;
        let (tx, evict) = oneshot::channel();
        let (gone_tx, gone) = oneshot::channel();
        inner.open.insert(
            id,
            Slot {
                idle: true,
                fd,
                evict: Some(tx),
                gone,
            },
        );
        Some(Ticket {
            id,
            inner: self.inner.clone(),
            evict: Some(evict),
            _gone: gone_tx,
        })
    }

    /// Waits until every connection evicted so far has been dropped by its task (at
    /// most [`CLOSE_WAIT`] each: a task stuck elsewhere does not stop the listener).
    async fn evictions_finished(&self) {
        let closing = std::mem::take(&mut lock(&self.inner).closing);
        for gone in closing {
            let _ = tokio::time::timeout(CLOSE_WAIT, gone).await;
        }
    }

    pub fn stats(&self) -> ConnStats {
        let inner = lock(&self.inner);
        ConnStats {
            open: inner.open.len() as u64,
            limit: self.cap as u64,
            closed: inner
                .closed
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    /// Accept connections on `listener` until it fails, at most this cap at once. Each
    /// admitted connection is served by the task `serve` makes of it and its ticket,
    /// until that task ends or the connection is evicted; one that finds every place
    /// busy gets `full_reply` if its socket takes it now, and is closed. A failed accept
    /// is logged (`what` names the listener) and retried after 100 ms.
    pub async fn serve<L: Listener, F>(
        &self,
        listener: &L,
        what: &str,
        full_reply: &[u8],
        mut serve: impl FnMut(L::Conn, Ticket) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        loop {
            match listener.accept_conn().await {
                Ok(stream) => {
                    let Some(mut ticket) = self.admit(stream.as_raw_fd()) else {
                        // Every place busy: say so if the socket takes it now, and close.
                        let _ = stream.try_write(full_reply);
                        continue;
                    };
                    let evicted = ticket.evicted();
                    let work = serve(stream, ticket);
                    tokio::spawn(async move {
                        tokio::select! {
                            () = evicted => {}
                            () = work => {}
                        }
                    });
                    self.evictions_finished().await;
                }
                Err(e) => {
                    warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Ticket {
    /// Count a close of this connection for `why` (one of [`reason`]).
    pub fn count(&self, why: &'static str) {
        *lock(&self.inner).closed.entry(why).or_default() += 1;
    }

    /// The whole request is in: the connection can no longer be evicted.
    pub fn busy(&self) {
        if let Some(slot) = lock(&self.inner).open.get_mut(&self.id) {
            slot.idle = false;
        }
    }

    /// A future that resolves when the connection is evicted to make room for a newer
    /// one (call once; a second call's future never resolves).
    pub fn evicted(&mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let evict = self.evict.take();
        async move {
            match evict {
                // The sender lives in the listener's map until it is used or the
                // ticket goes (and then nobody waits for this any more).
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.inner).open.remove(&self.id);
    }
}

/// An accepted connection, as far as its listener's cap needs it: its socket, and a
/// write that does not wait (the reply to a connection turned away).
pub trait Conn: AsRawFd {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

impl Conn for tokio::net::TcpStream {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
}

impl Conn for tokio::net::UnixStream {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::UnixStream::try_write(self, buf)
    }
}

/// A listener whose connections are capped.
pub trait Listener {
    type Conn: Conn;
    fn accept_conn(&self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn accept_conn(&self) -> std::io::Result<Self::Conn> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Whether bytes wait unread on socket `fd` (a client that sent its request).
fn has_data(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a non-blocking peek of one byte into a buffer we own; `fd` is the socket
    // of a connection whose ticket is alive (its slot goes when the ticket does), and a
    // peek cannot change a socket's state.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// Both listeners' limiters.
#[derive(Clone)]
pub struct Listeners {
    pub metrics: Limiter,
    pub control: Limiter,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            metrics: Limiter::new(METRICS_CAP),
            control: Limiter::new(CONTROL_CAP),
        }
    }
}

impl Listeners {
    /// By listener name (`metrics`, `control`).
    pub fn stats(&self) -> BTreeMap<String, ConnStats> {
        BTreeMap::from([
            ("control".to_string(), self.control.stats()),
            ("metrics".to_string(), self.metrics.stats()),
        ])
    }
}

/// Resolves when the client has closed or reset its side (read EOF or an error); any
/// bytes it still sends are read and ignored. A client waiting for its answer sends
/// nothing more, so this is how a request learns its client left (as Go's HTTP
/// server does to cancel a request's context).
pub async fn client_gone<R: AsyncRead + Unpin>(r: &mut R) {
    let mut buf = [0u8; 512];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_listener_evicts_its_oldest_idle_connection_and_refuses_when_all_are_busy() {
        let l = Limiter::new(3);
        let mut a = l.admit(-1).expect("a");
        let b = l.admit(-1).expect("b");
        let c = l.admit(-1).expect("c");
        b.busy();
        // Full: the oldest idle (a) goes for d.
        let d = l.admit(-1).expect("d evicts a");
        tokio::time::timeout(Duration::from_secs(1), a.evicted())
            .await
            .expect("a is told it was evicted");
        drop(a);
        assert_eq!(l.stats().open, 3);
        // Then c (idle; b is busy) for e.
        let _e = l.admit(-1).expect("e evicts c");
        drop(c);
        d.busy();
        _e.busy();
        assert!(l.admit(-1).is_none(), "every place busy: refused");
        let st = l.stats();
        assert_eq!(st.open, 3);
        assert_eq!(st.closed.get("evicted"), Some(&2));
        assert_eq!(st.closed.get("full"), Some(&1));
        drop(b);
        assert!(l.admit(-1).is_some(), "a freed place is taken");
    }

    /// The accept loop's wait: an eviction is finished only when the evicted ticket
    /// (and its socket) is dropped, not when it is told.
    #[tokio::test]
    async fn an_eviction_finishes_when_the_evicted_connection_is_dropped() {
        let l = Limiter::new(1);
        let a = l.admit(-1).expect("a");
        let _b = l.admit(-1).expect("b evicts a");
        let wait = l.evictions_finished();
        tokio::pin!(wait);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut wait)
                .await
                .is_err(),
            "a is still open: the eviction is not finished"
        );
        drop(a);
        tokio::time::timeout(Duration::from_millis(500), wait)
            .await
            .expect("a dropped: the eviction is finished");
        assert!(lock(&l.inner).closing.is_empty());
    }
}
