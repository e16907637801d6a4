//! How full the data plane's connection tables are (the DSR flow table, the NAT table),
//! for status and metrics, without a walk per request.
//!
//! Counting the entries of a BPF hash map means walking it (the kernel keeps no count
//! user space can read). Over a million entries that is about half a second to a
//! second of one core (a debug build; README, Monitoring), so each table's count is
//! shared: one walk at a time; a request arriving while it runs waits for that walk's
//! result; and a result less than [`MAX_AGE`] old is handed out again. However many
//! scrapes and `status` polls come in, a table is walked at most once per
//! [`MAX_AGE`] (plus the walk's own time), and not at all while nobody asks.
//!
//! A walk runs to its end in a task of its own and stores its result even when every
//! request that wanted it has gone (a client that disconnects): the requests behind it
//! take that result instead of starting another walk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How old a count may be when it is handed out again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One count of a table.
#[derive(Clone, Debug)]
pub struct Counted<T> {
    pub value: T,
    /// When the walk that counted it ended.
    pub at: Instant,
    pub at_unix: f64,
    /// How long the walk took.
    pub took: Duration,
}

/// The shared, reused count of one table.
pub struct SharedCount<T> {
    last: Arc<tokio::sync::Mutex<Option<Counted<T>>>>,
    /// Walks started so far (status `tables.*.walks`, `fo_table_walks_total`).
    walks: Arc<AtomicU64>,
}

impl<T> Clone for SharedCount<T> {
    fn clone(&self) -> Self {
        SharedCount {
            last: self.last.clone(),
            walks: self.walks.clone(),
        }
    }
}

impl<T> Default for SharedCount<T> {
    fn default() -> Self {
        SharedCount {
            last: Arc::default(),
            walks: Arc::default(),
        }
    }
}

impl<T: Clone + Send + 'static> SharedCount<T> {
    /// The table's count, made by `walk` (a blocking walk, run off the runtime's
    /// threads) at most [`MAX_AGE`] ago; `None` if the walk failed (it logs why).
    pub async fn get<F>(&self, walk: F) -> Option<Counted<T>>
    where
        F: FnOnce() -> Option<T> + Send + 'static,
    {
        // Whoever holds the lock walks; the others wait here and take its result.
        let last = self.last.clone().lock_owned().await;
        if let Some(c) = last.as_ref()
            && c.at.elapsed() < MAX_AGE
        {
            return Some(c.clone());
        }
        let walks = self.walks.clone();
        // The walk and the storing of its result are a task of their own, holding the
        // lock: if this request is dropped (its client left), the walk still ends and
        // its result serves whoever asks next.
        let walker = tokio::spawn(async move {
            let mut last = last;
            walks.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let value = match tokio::task::spawn_blocking(walk).await {
                Ok(v) => v?,
                Err(e) => {
                    tracing::error!(error = %e, "table walk task failed");
                    return None;
                }
            };
            let counted = Counted {
                value,
                at: Instant::now(),
                at_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
                took: started.elapsed(),
            };
            *last = Some(counted.clone());
            Some(counted)
        });
        walker.await.ok().flatten()
    }

    /// Walks started since the agent started.
    pub fn walks(&self) -> u64 {
        self.walks.load(Ordering::Relaxed)
    }
}

/// The DSR/tunnel flow table's entries.
pub type FlowCount = SharedCount<u64>;

/// The NAT table's connections by state, and how many of them are UDP flows and
/// embryonic.
pub type NatCount = SharedCount<super::status::NatConnections>;

/// Walk the flow table pinned under `pin_dir` (for [`FlowCount::get`]).
pub fn walk_flows(pin_dir: std::path::PathBuf) -> impl FnOnce() -> Option<u64> + Send + 'static {
    move || match crate::dataplane::flows::count_flows(&pin_dir) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::debug!(error = %crate::dataplane::error_chain(&e), "flow table walk");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many requests at once, some of them dropped while the walk runs: one walk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_and_abandoned_requests_share_one_walk() {
        let count = SharedCount::<u64>::default();
        let slow = || {
            std::thread::sleep(Duration::from_millis(200));
            Some(7)
        };
        let mut kept = Vec::new();
        for i in 0..100 {
            let c = count.clone();
            let h = tokio::spawn(async move { c.get(slow).await });
            if i % 2 == 0 {
                kept.push(h);
            } else {
                // The client left: its request is cancelled mid-wait.
                tokio::time::sleep(Duration::from_millis(1)).await;
                h.abort();
            }
        }
        for h in kept {
            assert_eq!(h.await.expect("request").map(|c| c.value), Some(7));
        }
        assert_eq!(count.walks(), 1, "one walk for every request");
        // Even the first request gone, its walk's result is kept for the next one.
        let c2 = SharedCount::<u64>::default();
        let c = c2.clone();
        let first = tokio::spawn(async move { c.get(slow).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.abort();
        assert_eq!(c2.get(slow).await.map(|c| c.value), Some(7));
        assert_eq!(c2.walks(), 1, "the abandoned walk's result was reused");
    }
}
