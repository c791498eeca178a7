//! Concurrency limits: at most N requests of one key in flight at once. A
//! request holds a [`Lease`] from the rate-limit stage until its response
//! body has been sent or dropped, so every way a request ends (completion,
//! client disconnect, upstream error, a later rejection) gives the slot
//! back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// In-process counts of requests in flight per key.
#[derive(Default)]
pub struct LocalConcurrency {
    counts: Mutex<HashMap<u64, u32>>,
}

impl LocalConcurrency {
    /// Takes a slot of `key` when fewer than `max` are taken.
    pub fn acquire(self: &Arc<Self>, key: u64, max: u32) -> Option<Lease> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Lease::Local {
            counts: self.clone(),
            key,
        })
    }

    /// Requests of `key` in flight.
    pub fn in_flight(&self, key: u64) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&key).copied().unwrap_or(0)
    }

    fn release(&self, key: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

/// One slot of a concurrency limit, given back when dropped.
pub enum Lease {
    Local {
        counts: Arc<LocalConcurrency>,
        key: u64,
    },
    Shared(crate::ratelimit::redis::SharedLease),
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Lease::Local { counts, key } = self {
            counts.release(*key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_back_when_leases_drop() {
        let counts = Arc::new(LocalConcurrency::default());

        let first = counts.acquire(1, 2).expect("first slot");
        let second = counts.acquire(1, 2).expect("second slot");
        assert!(
            counts.acquire(1, 2).is_none(),
            "third request over the limit"
        );
        assert!(
            counts.acquire(2, 2).is_some(),
            "another key has its own slots"
        );

        drop(first);
        let third = counts.acquire(1, 2).expect("slot given back");

        drop((second, third));
        assert_eq!(counts.in_flight(1), 0);
    }
}
