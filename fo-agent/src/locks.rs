//! One way to take a lock. The agent's mutexes guard plain data written whole (status,
//! counters, map handles whose every write is one entry), so a writer that panicked leaves
//! them usable: a poisoned lock is taken anyway instead of spreading the panic.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, also when a panicking holder poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
}
