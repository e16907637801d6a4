//! How full the data plane's flow table is, for status and metrics, without a walk
//! per request.
//!
//! Counting the entries of a BPF hash map means walking it (the kernel keeps no count
//! user space can read). Over a million flows that is about 0.7 s of one core (a
//! debug build; README, Monitoring), so the count is shared: one walk at a time; a
//! request arriving while it runs waits for that walk's result; and a result less
//! than [`MAX_AGE`] old is handed out again. However many scrapes and `status` polls
//! come in, the flow table is walked at most once per [`MAX_AGE`], and not at all
//! while nobody asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How old a count may be when it is handed out again.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One count of the flow table.
#[derive(Clone, Copy, Debug)]
pub struct Counted {
    pub entries: u64,
    /// When the walk that counted them ended.
    pub at: Instant,
    pub at_unix: f64,
    /// How long the walk took.
    pub took: Duration,
}

/// The shared, reused count of the pinned flow table.
#[derive(Clone, Default)]
pub struct FlowCount {
    last: Arc<tokio::sync::Mutex<Option<Counted>>>,
    /// Walks made so far (tests read it through status: `walks`).
    walks: Arc<std::sync::atomic::AtomicU64>,
}

impl FlowCount {
    /// The entries of the flow table pinned under `pin_dir`, counted at most
    /// [`MAX_AGE`] ago; `None` if the table cannot be read (logged at debug: status
    /// and metrics then leave the table out).
    pub async fn get(&self, pin_dir: PathBuf) -> Option<Counted> {
        // Whoever holds the lock walks; the others wait here and take its result.
        let mut last = self.last.lock().await;
        if let Some(c) = *last
            && c.at.elapsed() < MAX_AGE
        {
            return Some(c);
        }
        self.walks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let counted = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            crate::dataplane::flows::count_flows(&pin_dir).map(|entries| Counted {
                entries,
                at: Instant::now(),
                at_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64()),
                took: started.elapsed(),
            })
        })
        .await;
        match counted {
            Ok(Ok(c)) => {
                *last = Some(c);
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %crate::dataplane::error_chain(&e), "flow table walk");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "flow table walk task failed");
                None
            }
        }
    }

    /// Walks made since the agent started.
    pub fn walks(&self) -> u64 {
        self.walks.load(std::sync::atomic::Ordering::Relaxed)
    }
}
