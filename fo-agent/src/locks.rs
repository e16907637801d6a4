//! One way to take a lock. The agent's mutexes guard plain data written whole (status,
//! counters, map handles whose every write is one entry), so a writer that panicked leaves
//! them usable: a poisoned lock is taken anyway instead of spreading the panic.
//!
//! [`Flag`] is a boolean one task sets and another reads or waits on; [`LastSeen`] the
//! latest of the times one task reports and another reads.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Lock `m`, also when a panicking holder poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A shared boolean (false at first) that can be waited on until it is true. Clones share
/// it.
#[derive(Clone, Debug, Default)]
pub struct Flag(Arc<(Mutex<bool>, Condvar)>);

impl Flag {
    pub fn set(&self, value: bool) {
        let (m, c) = &*self.0;
        *lock(m) = value;
        c.notify_all();
    }

    pub fn get(&self) -> bool {
        *lock(&self.0.0)
    }

    /// Block until the flag is true, at most `bound`: (its value then, the time waited).
    pub fn wait_true(&self, bound: Duration) -> (bool, Duration) {
        let start = Instant::now();
        let (m, c) = &*self.0;
        let (guard, _) = c
            .wait_timeout_while(lock(m), bound, |value| !*value)
            .unwrap_or_else(|p| p.into_inner());
        (*guard, start.elapsed())
    }
}

/// The latest time something was seen (e.g. the last answer of a peer or witness), shared
/// by the task that sees it and the one that reads it. Reports may come out of order: the
/// latest one counts.
#[derive(Debug, Default)]
pub struct LastSeen(Mutex<Option<Instant>>);

impl LastSeen {
    /// Seen at `at`.
    pub fn seen(&self, at: Instant) {
        let mut last = lock(&self.0);
        *last = Some(last.map_or(at, |l| l.max(at)));
    }

    /// The latest time seen, if any.
    pub fn get(&self) -> Option<Instant> {
        *lock(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = held.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn a_flag_waits_at_most_its_bound_and_opens_at_once() {
        let f = Flag::default();
        let (value, waited) = f.wait_true(Duration::from_millis(50));
        assert!(!value);
        assert!(waited >= Duration::from_millis(50));
        let f2 = f.clone();
        let t = std::thread::spawn(move || f2.wait_true(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        f.set(true);
        let (value, waited) = t.join().expect("thread");
        assert!(value);
        // Woken by set, not by the bound running out (no speed is asserted).
        assert!(waited < Duration::from_secs(10), "never woken: {waited:?}");
    }

    #[test]
    fn last_seen_keeps_the_latest_report() {
        let seen = LastSeen::default();
        assert_eq!(seen.get(), None);
        let t0 = Instant::now();
        seen.seen(t0 + Duration::from_millis(300));
        assert_eq!(seen.get(), Some(t0 + Duration::from_millis(300)));
        seen.seen(t0 + Duration::from_millis(100));
        assert_eq!(
            seen.get(),
            Some(t0 + Duration::from_millis(300)),
            "an older report does not move it back"
        );
    }
}
