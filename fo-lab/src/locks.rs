//! One way to take a lock on the lab side. The lab's mutexes guard counters, output lines
//! and teardown lists written whole, so a holder that panicked leaves them worth reading:
//! a poisoned lock is taken anyway. (The agent has its own, `fo_agent::locks`: product
//! code does not depend on the lab, nor the reverse.)

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, also when a panicking holder poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_kept_by_a_reader_that_panicked_are_still_read() {
        let lines = Mutex::new(vec!["first".to_string()]);
        let poisoned = std::panic::catch_unwind(|| {
            let mut held = lock(&lines);
            held.push("second".into());
            panic!("the reader fails mid-way, holding the lock");
        });
        assert!(poisoned.is_err() && lines.is_poisoned());
        assert_eq!(*lock(&lines), ["first", "second"]);
    }
}
