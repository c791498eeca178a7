//! In-process rate limit store: one GCRA TAT per key in sharded hash maps,
//! bounded in size. It limits a single gateway instance. A shared store runs
//! the same [`decide`] arithmetic for a fleet of instances.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ratelimit::clock::{saturating_nanos, Clock};
use crate::ratelimit::gcra::{decide, Decision, Quota};

/// Default maximum number of keys a [`MemoryStore`] tracks: 100,000. One
/// entry is 16 bytes of payload. Filled through 1,000,000 distinct keys, a
/// default store grew process RSS by about 5 MiB (release build, x86-64).
pub const DEFAULT_MAX_KEYS: NonZeroUsize = match NonZeroUsize::new(100_000) {
    Some(max_keys) => max_keys,
    None => panic!("the default maximum number of keys must not be zero"),
};

/// Number of independently locked shards, so concurrent checks on different
/// keys rarely wait for each other.
const SHARD_COUNT: usize = 16;

/// A full shard evicts down to `capacity - ceil(capacity / EVICTION_DIVISOR)`
/// entries, so the O(capacity) eviction scan runs at most once per
/// `ceil(capacity / EVICTION_DIVISOR)` new keys in that shard.
const EVICTION_DIVISOR: usize = 8;

type Shard = Mutex<HashMap<u64, u64>>;

/// Rate limit store that keeps the TAT of each key in memory.
///
/// Keys are `u64` hashes from [`MemoryStore::key_hash`]. One key must always
/// be checked against the same [`Quota`], so callers put the policy or route
/// id into the hashed parts.
///
/// # Memory bound
///
/// The store tracks at most `max_keys` keys. A key whose TAT is at or before
/// now carries no state. It is dropped on its next check, on [`sweep`], or
/// when its shard fills up. When a shard is full after dropping idle keys, it
/// evicts the entries closest to becoming idle, which are the
/// least restrictive ones. A new key is always tracked. An evicted key starts
/// again from full capacity, which is the only way the store admits more than
/// a quota allows.
///
/// [`sweep`]: MemoryStore::sweep
pub struct MemoryStore<C: Clock> {
    clock: C,
    hasher: RandomState,
    shards: Box<[Shard]>,
    shard_capacity: usize,
}

impl<C: Clock> MemoryStore<C> {
    /// Creates a store that tracks at most `max_keys` keys.
    ///
    /// The keys are split over 16 shards, or a single shard when `max_keys`
    /// is below 16. Each shard stores up to `max_keys / shards` keys, so the
    /// usable capacity is `max_keys` rounded down to a multiple of the shard
    /// count.
    pub fn new(clock: C, max_keys: NonZeroUsize) -> Self {
        let max_keys = max_keys.get();
        let shard_count = if max_keys >= SHARD_COUNT {
            SHARD_COUNT
        } else {
            1
        };

        let shards = (0..shard_count)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();

        Self {
            clock,
            hasher: RandomState::new(),
            shards,
            shard_capacity: max_keys / shard_count,
        }
    }

    /// Creates a store that tracks at most [`DEFAULT_MAX_KEYS`] keys.
    pub fn with_default_capacity(clock: C) -> Self {
        Self::new(clock, DEFAULT_MAX_KEYS)
    }

    /// Hashes the parts of a composed key (for example route id, tenant and
    /// client address) into a store key.
    ///
    /// The hasher is keyed with a random seed chosen when the store is
    /// created, so clients cannot predict keys or aim collisions at a shard.
    /// Each part is hashed with its length, so `["ab", "c"]` and `["a", "bc"]`
    /// give different keys.
    pub fn key_hash(&self, parts: &[&[u8]]) -> u64 {
        self.hasher.hash_one(parts)
    }

    /// Checks one request of cost 1 for `key` against `quota`.
    pub fn check(&self, key: u64, quota: &Quota) -> Decision {
        self.check_cost(key, quota, 1)
    }

    /// Checks one request of `cost` units for `key` against `quota`. Cost 0
    /// reports the key's state without consuming anything.
    pub fn check_cost(&self, key: u64, quota: &Quota, cost: u32) -> Decision {
        let mut map = lock(self.shard(key));

        // Reading the clock under the lock keeps each shard's readings in
        // the order its decisions are made.
        let now = saturating_nanos(self.clock.now());
        let (decision, new_tat) = decide(map.get(&key).copied(), now, quota, cost);

        match new_tat {
            Some(tat) if tat > now => self.store(&mut map, key, tat, now),
            Some(_) => {
                map.remove(&key);
            }
            None => {}
        }

        decision
    }

    /// Returns the number of tracked keys, idle ones not yet swept included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    /// Returns whether the store tracks no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the number of keys the store can track: the `max_keys` given
    /// at creation, rounded down to a multiple of the shard count.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// Drops every idle key and returns how many were dropped. Meant for a
    /// periodic background task. It locks one shard at a time, and checks
    /// drop idle keys on their own when a shard fills up.
    pub fn sweep(&self) -> usize {
        let mut dropped = 0;

        for shard in self.shards.iter() {
            let mut map = lock(shard);
            let now = saturating_nanos(self.clock.now());
            let before = map.len();
            map.retain(|_, tat| *tat > now);
            dropped += before - map.len();
        }

        dropped
    }

    fn shard(&self, key: u64) -> &Shard {
        // The modulo is below the shard count, which fits in usize.
        let index = (key % self.shards.len() as u64) as usize;
        &self.shards[index]
    }

    fn store(&self, map: &mut HashMap<u64, u64>, key: u64, tat: u64, now: u64) {
        if let Some(stored) = map.get_mut(&key) {
            *stored = tat;
            return;
        }

        if map.len() >= self.shard_capacity {
            self.make_room(map, now);
        }
        map.insert(key, tat);
    }

    /// Frees at least one slot in a full shard: drops idle keys, then evicts
    /// the entries with the earliest TAT until the shard is at its low-water
    /// mark.
    fn make_room(&self, map: &mut HashMap<u64, u64>, now: u64) {
        map.retain(|_, tat| *tat > now);

        let low_water = self.shard_capacity - self.shard_capacity.div_ceil(EVICTION_DIVISOR);
        if map.len() <= low_water {
            return;
        }

        // NOTE: evicting down to the low-water mark can drop a few more
        // active keys than one insert needs. The batch bounds the CPU cost of
        // a flood of new keys, and the evicted keys are the closest to idle.
        let excess = map.len() - low_water;
        let mut by_tat: Vec<(u64, u64)> = map.iter().map(|(&key, &tat)| (tat, key)).collect();
        by_tat.select_nth_unstable(excess - 1);

        for &(_, key) in &by_tat[..excess] {
            map.remove(&key);
        }
    }
}

/// Locks a shard, recovering it after a panic in another thread: the map is
/// valid after every single operation, so poisoning carries no meaning here.
fn lock(shard: &Shard) -> MutexGuard<'_, HashMap<u64, u64>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::ratelimit::clock::ManualClock;

    fn quota(requests: u32, period: Duration, burst: u32) -> Quota {
        let requests = NonZeroU32::new(requests).unwrap();
        let burst = NonZeroU32::new(burst).unwrap();
        Quota::with_burst(requests, period, burst).unwrap()
    }

    fn store(max_keys: usize) -> (MemoryStore<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let store = MemoryStore::new(clock.clone(), NonZeroUsize::new(max_keys).unwrap());
        (store, clock)
    }

    #[test]
    fn store_admits_burst_then_recovers() {
        let (store, clock) = store(100);
        let quota = quota(2, Duration::from_secs(1), 3);
        let key = store.key_hash(&[b"route", b"client"]);

        let admitted: Vec<bool> = (0..4).map(|_| store.check(key, &quota).allowed).collect();
        assert_eq!(admitted, [true, true, true, false]);

        let denied = store.check(key, &quota);
        assert_eq!(denied.retry_after, Some(Duration::from_millis(500)));

        clock.advance(Duration::from_millis(499));
        assert!(!store.check(key, &quota).allowed, "1 ms before retry_after");

        clock.advance(Duration::from_millis(1));
        let recovered = store.check(key, &quota);
        assert!(recovered.allowed, "at retry_after");
        assert_eq!(recovered.remaining, 0);
        assert_eq!(recovered.reset_after, Duration::from_millis(1500));
    }

    #[test]
    fn store_keys_are_independent() {
        let (store, _clock) = store(100);
        let quota = quota(1, Duration::from_secs(60), 1);
        let first = store.key_hash(&[b"a"]);
        let second = store.key_hash(&[b"b"]);

        assert!(store.check(first, &quota).allowed);
        assert!(!store.check(first, &quota).allowed);
        assert!(store.check(second, &quota).allowed);
    }

    #[test]
    fn cost_zero_keeps_no_state() {
        let (store, _clock) = store(100);
        let quota = quota(10, Duration::from_secs(1), 10);

        let decision = store.check_cost(7, &quota, 0);

        assert!(decision.allowed);
        assert_eq!(decision.remaining, 10);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn store_drops_key_that_returns_to_idle() {
        let (store, clock) = store(100);
        let quota = quota(10, Duration::from_secs(1), 10);

        store.check(7, &quota);
        assert_eq!(store.len(), 1);

        clock.advance(Duration::from_secs(1));
        store.check_cost(7, &quota, 0);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn sweep_drops_only_idle_keys() {
        let (store, clock) = store(1000);
        let short = quota(1, Duration::from_secs(1), 1);
        let long = quota(1, Duration::from_secs(60), 1);

        for key in 0..100 {
            store.check(key, &short);
        }
        for key in 100..150 {
            store.check(key, &long);
        }
        assert_eq!(store.len(), 150);

        clock.advance(Duration::from_secs(1));
        assert_eq!(store.sweep(), 100);
        assert_eq!(store.len(), 50);
        assert!(
            !store.check(120, &long).allowed,
            "active key kept its state"
        );
    }

    #[test]
    fn key_hash_separates_parts() {
        let (store, _clock) = store(100);

        type Parts = &'static [&'static [u8]];
        let cases: [(&str, Parts, Parts); 3] = [
            ("part boundary moves", &[b"ab", b"c"], &[b"a", b"bc"]),
            ("empty part added", &[b"ab"], &[b"ab", b""]),
            ("order swapped", &[b"a", b"b"], &[b"b", b"a"]),
        ];

        for (description, left, right) in cases {
            assert_ne!(store.key_hash(left), store.key_hash(right), "{description}");
        }
        assert_eq!(store.key_hash(&[b"a", b"b"]), store.key_hash(&[b"a", b"b"]));
    }

    #[test]
    fn key_hash_seed_differs_between_stores() {
        let (first, _) = store(100);
        let (second, _) = store(100);

        assert_ne!(
            first.key_hash(&[b"route", b"client"]),
            second.key_hash(&[b"route", b"client"])
        );
    }

    #[test]
    fn capacity_rounds_to_shard_multiple() {
        let cases = [
            ("below shard count uses one shard", 5, 5),
            ("exact multiple of 16", 32, 32),
            ("rounded down to a multiple of 16", 100, 96),
            ("default", DEFAULT_MAX_KEYS.get(), 100_000),
        ];

        for (description, max_keys, capacity) in cases {
            let (store, _clock) = store(max_keys);
            assert_eq!(store.capacity(), capacity, "{description}");
        }
    }

    #[test]
    fn eviction_removes_least_restrictive_first() {
        // Five keys fit in one shard. Key k has consumed k units, so key 1 is
        // the closest to idle.
        let (store, _clock) = store(5);
        let quota = quota(10, Duration::from_secs(1), 10);
        for key in 1..=5 {
            store.check_cost(key, &quota, key as u32);
        }
        assert_eq!(store.len(), 5);

        store.check_cost(6, &quota, 6);

        assert_eq!(store.len(), 5);
        let remaining = |key: u64| store.check_cost(key, &quota, 0).remaining;
        assert_eq!(remaining(1), 10, "key 1 evicted and back to full capacity");
        for key in 2..=6 {
            assert_eq!(remaining(key), 10 - key as u32, "key {key} still tracked");
        }
    }

    #[test]
    fn eviction_drops_idle_keys_before_active_ones() {
        let (store, clock) = store(8);
        let short = quota(1, Duration::from_secs(1), 1);
        let long = quota(1, Duration::from_secs(60), 1);

        store.check(0, &long);
        for key in 1..8 {
            store.check(key, &short);
        }
        clock.advance(Duration::from_secs(2));

        store.check(100, &short);

        assert_eq!(store.len(), 2, "seven idle keys dropped, new key added");
        assert!(!store.check(0, &long).allowed, "active key kept its state");
        assert!(!store.check(100, &short).allowed, "new key is tracked");
    }

    #[test]
    fn exhausted_key_survives_flood_of_new_keys() {
        let (store, clock) = store(64);
        let hot = quota(1, Duration::from_secs(1), 10);
        let flood = quota(1, Duration::from_secs(1), 1);
        let hot_key = store.key_hash(&[b"hot"]);

        while store.check(hot_key, &hot).allowed {}

        for index in 0u64..10_000 {
            let key = store.key_hash(&[b"flood", &index.to_le_bytes()]);
            assert!(store.check(key, &flood).allowed, "new key {index} admitted");
            assert!(!store.check(key, &flood).allowed, "new key {index} tracked");
            assert!(store.len() <= 64, "bound held after key {index}");

            if index % 1000 == 0 {
                clock.advance(Duration::from_millis(100));
            }
        }

        // The flood took 1 s of clock time, which refills exactly one unit.
        let state = store.check_cost(hot_key, &hot, 0);
        assert_eq!(state.remaining, 1, "exhausted key kept its state");
    }

    #[test]
    fn memory_bounded_under_million_keys() {
        let (store, clock) = store(DEFAULT_MAX_KEYS.get());
        let quota = quota(1, Duration::from_secs(10), 1);
        let mut admitted = 0;
        let mut max_len = 0;

        for index in 0u64..1_000_000 {
            let key = store.key_hash(&[b"client", &index.to_le_bytes()]);
            if store.check(key, &quota).allowed {
                admitted += 1;
            }

            if index % 1000 == 0 {
                max_len = max_len.max(store.len());
            }
            if index % 10_000 == 0 {
                clock.advance(Duration::from_millis(50));
            }
        }

        // No key goes idle within the 5 s of clock time the flood takes, so
        // only eviction keeps the store within bounds.
        assert_eq!(admitted, 1_000_000, "every new key is admitted once");
        assert!(max_len <= 100_000, "peak of {max_len} keys");
        let final_len = store.len();
        assert!(final_len <= 100_000, "{final_len} keys at the end");
        // A full shard evicts down to 7/8 of its capacity, never further.
        assert!(
            final_len >= 87_000,
            "{final_len} keys at the end, eviction too eager"
        );
    }

    #[test]
    fn concurrent_checks_admit_exactly_the_burst() {
        let (store, _clock) = store(DEFAULT_MAX_KEYS.get());
        let quota = quota(1, Duration::from_secs(60), 100);
        let key = store.key_hash(&[b"shared"]);
        let admitted = AtomicU32::new(0);

        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        if store.check(key, &quota).allowed {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });

        assert_eq!(admitted.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn concurrent_checks_on_many_keys_admit_burst_each() {
        let (store, _clock) = store(DEFAULT_MAX_KEYS.get());
        let quota = quota(1, Duration::from_secs(60), 3);
        let admitted: Vec<AtomicU32> = (0..500).map(|_| AtomicU32::new(0)).collect();

        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..5 {
                        for (index, count) in admitted.iter().enumerate() {
                            let key = store.key_hash(&[&index.to_le_bytes()]);
                            if store.check(key, &quota).allowed {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
        });

        for (index, count) in admitted.iter().enumerate() {
            assert_eq!(count.load(Ordering::Relaxed), 3, "key {index}");
        }
    }
}
