//! Reserves: tokens of a shared rate limit that this instance took from
//! the store ahead of need, so that its next requests for the same key
//! are decided without a round trip.
//!
//! A key starts without a reserve: each request takes its own token
//! from the store. When a key's requests come faster than one per hold time,
//! the call that finds the reserve empty requests twice as many tokens as
//! the last one did, up to a ceiling. When a reserve's hold time ends with
//! tokens left, the next call requests half as many. After a refusal the
//! key's reserve grows again from the start. The store never grants more
//! tokens than the burst has spare, so near the limit a reserve holds few
//! or none.
//!
//! What this does to the limit:
//! - Every token spent here was first counted in the store, so a fleet
//!   never admits more than the store granted.
//! - A token is spent at most one hold time after the store granted it.
//!   The admissions of any span of time can therefore include tokens
//!   granted up to one hold time before it. The hold is at most a
//!   twentieth of the policy's period.
//! - Tokens left when the hold time ends are dropped. The limit is then
//!   stricter for the rest of the period, never looser.
//! - One reserve holds at most a tenth of the burst, so that one instance
//!   cannot take a key's whole burst from the others.
//! - While a request spends a reserved token, its `RateLimit` fields are
//!   estimated from the store's last reply.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ratelimit::gcra::{Decision, Quota};

/// Share of a policy's period that bounds the hold time.
const PERIOD_DIVISOR: u32 = 20;

/// Share of a policy's burst that bounds one reserve.
const BURST_DIVISOR: u32 = 10;

const SHARD_COUNT: usize = 16;

/// The reserves of every shared rate limit key this instance uses, by a
/// hash of the key's parts.
pub struct Reserves {
    /// Maximum time a granted token may wait here; zero turns reserves off.
    hold: Duration,
    shards: Box<[Mutex<HashMap<u64, Reserve>>]>,
    shard_capacity: usize,
}

struct Reserve {
    /// Tokens left to spend.
    tokens: u32,
    /// When the call that granted them was sent.
    granted: Instant,
    /// Tokens the next call requests.
    size: u32,
    /// A call that will refill this reserve is on its way.
    refilling: bool,
    /// The key's bucket as the store reported it with the grant: tokens
    /// left beside this reserve, and the time until it is full again.
    shared_remaining: u32,
    reset_after: Duration,
}

/// Decision of [`Reserves::take`] for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// A reserved token admits the request.
    Spent(Decision),
    /// The store decides: ask it for `tokens` tokens (the request's own
    /// included). A `refill` call reports its reply back with
    /// [`Reserves::granted`] or [`Reserves::failed`].
    Ask { tokens: u32, refill: bool },
}

/// Tokens the store granted to a refill call.
pub struct Grant {
    /// Tokens granted, the request's own included; zero when refused.
    pub tokens: u32,
    /// Tokens the bucket has left beside them.
    pub remaining: u32,
    pub reset_after: Duration,
}

const EXACT: Take = Take::Ask {
    tokens: 1,
    refill: false,
};

impl Reserves {
    /// Tracks the reserves of at most about `max_keys` keys, each spent
    /// within `hold` of its grant.
    pub fn new(hold: Duration, max_keys: usize) -> Self {
        Reserves {
            hold,
            shards: (0..SHARD_COUNT).map(|_| Mutex::default()).collect(),
            shard_capacity: max_keys.div_ceil(SHARD_COUNT).max(1),
        }
    }

    /// Spends one reserved token of `key`, or returns what to request from
    /// the store.
    pub fn take(&self, key: u64, quota: &Quota, now: Instant) -> Take {
        let (hold, ceiling) = self.bounds(quota);
        if ceiling <= 1 {
            return EXACT;
        }

        let mut shard = self.shard(key);
        let Some(reserve) = shard.get_mut(&key) else {
            if shard.len() >= self.shard_capacity {
                shard.retain(|_, reserve| reserve.refilling || now < reserve.granted + hold);
                if shard.len() >= self.shard_capacity {
                    return EXACT;
                }
            }
            shard.insert(key, Reserve::first(now));
            return Take::Ask {
                tokens: 1,
                refill: true,
            };
        };

        let since_grant = now.saturating_duration_since(reserve.granted);
        let fresh = since_grant < hold;
        if fresh && reserve.tokens > 0 {
            reserve.tokens -= 1;
            return Take::Spent(reserve.decision(quota, since_grant));
        }
        if reserve.refilling {
            return EXACT;
        }

        reserve.size = if fresh {
            reserve.size.saturating_mul(2).min(ceiling)
        } else if reserve.tokens > 0 {
            (reserve.size / 2).max(1)
        } else {
            reserve.size.min(ceiling)
        };
        reserve.tokens = 0;
        reserve.refilling = true;
        Take::Ask {
            tokens: reserve.size,
            refill: true,
        }
    }

    /// Stores the tokens a refill call brought beyond its request's own.
    /// `sent_at` is when the call was sent.
    pub fn granted(&self, key: u64, grant: Grant, sent_at: Instant) {
        let mut shard = self.shard(key);
        let Some(reserve) = shard.get_mut(&key) else {
            return;
        };
        reserve.refilling = false;
        reserve.granted = sent_at;
        reserve.tokens = grant.tokens.saturating_sub(1);
        reserve.shared_remaining = grant.remaining;
        reserve.reset_after = grant.reset_after;
        if grant.tokens == 0 {
            reserve.size = 1;
        }
    }

    /// Lets a later request refill the reserve after a call failed.
    pub fn failed(&self, key: u64) {
        if let Some(reserve) = self.shard(key).get_mut(&key) {
            reserve.refilling = false;
        }
    }

    /// Returns the hold time of `quota`'s tokens and the most tokens one
    /// reserve of it may hold: at most a tenth of the burst, and at most
    /// what the limit lets through in one hold time.
    fn bounds(&self, quota: &Quota) -> (Duration, u32) {
        let hold = self.hold.min(quota.period() / PERIOD_DIVISOR);
        let interval = quota.emission_interval().as_nanos().max(1);
        let emitted = hold.as_nanos() / interval;
        let ceiling = u32::try_from(emitted)
            .unwrap_or(u32::MAX)
            .min(quota.burst().get() / BURST_DIVISOR);
        (hold, ceiling)
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Reserve>> {
        let index = (key % self.shards.len() as u64) as usize;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reserve {
    fn first(now: Instant) -> Reserve {
        Reserve {
            tokens: 0,
            granted: now,
            size: 1,
            refilling: true,
            shared_remaining: 0,
            reset_after: Duration::ZERO,
        }
    }

    /// Builds the decision of a request that spends a reserved token
    /// `since_grant` after the grant. It reports the bucket as the store
    /// did, refilled since, with this reserve's tokens still available. The
    /// request itself keeps the bucket from being full for one interval.
    fn decision(&self, quota: &Quota, since_grant: Duration) -> Decision {
        let interval = quota.emission_interval();
        let refilled = since_grant.as_nanos() / interval.as_nanos().max(1);
        let remaining = u32::try_from(refilled)
            .unwrap_or(u32::MAX)
            .saturating_add(self.shared_remaining)
            .saturating_add(self.tokens)
            .min(quota.burst().get() - 1);
        Decision {
            allowed: true,
            limit: quota.burst().get(),
            remaining,
            reset_after: self.reset_after.saturating_sub(since_grant).max(interval),
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    const HOLD: Duration = Duration::from_millis(50);

    const KEY: u64 = 7;

    fn quota(requests: u32, period: Duration) -> Quota {
        Quota::new(NonZeroU32::new(requests).unwrap(), period).unwrap()
    }

    fn refill(tokens: u32) -> Take {
        Take::Ask {
            tokens,
            refill: true,
        }
    }

    fn grant(tokens: u32) -> Grant {
        Grant {
            tokens,
            remaining: 500,
            reset_after: Duration::from_millis(10),
        }
    }

    /// Takes a token for `key` at `now`, and grants a refill every token it
    /// requests, as a store with room would. Returns the tokens requested,
    /// or 0 when a reserved token was spent.
    fn request(reserves: &Reserves, quota: &Quota, now: Instant) -> u32 {
        match reserves.take(KEY, quota, now) {
            Take::Spent(decision) => {
                assert!(decision.allowed);
                0
            }
            Take::Ask { tokens, refill } => {
                if refill {
                    reserves.granted(KEY, grant(tokens), now);
                }
                tokens
            }
        }
    }

    #[test]
    fn small_limits_are_decided_by_the_store() {
        let reserves = Reserves::new(HOLD, 100);
        let now = Instant::now();
        // A burst of 10 allows no reserve of more than one token.
        let ten_a_second = quota(10, Duration::from_secs(1));
        // 1,000 a minute emits less than one token per hold time.
        let slow = quota(1_000, Duration::from_secs(60));
        for quota in [ten_a_second, slow] {
            for _ in 0..5 {
                assert_eq!(reserves.take(KEY, &quota, now), EXACT);
            }
        }
        let off = Reserves::new(Duration::ZERO, 100);
        let fast = quota(1_000_000, Duration::from_secs(1));
        assert_eq!(off.take(KEY, &fast, now), EXACT);
    }

    #[test]
    fn reserve_grows_with_demand_up_to_its_ceiling() {
        let reserves = Reserves::new(HOLD, 100);
        let fast = quota(1_000, Duration::from_secs(1));
        // Hold 50 ms; 1,000/s emits 50 tokens in it; a tenth of the burst is 100.
        assert_eq!(reserves.bounds(&fast), (HOLD, 50));

        let start = Instant::now();
        let requested: Vec<u32> = (0..200)
            .map(|i| request(&reserves, &fast, start + Duration::from_micros(i * 10)))
            .filter(|&tokens| tokens > 0)
            .collect();
        assert_eq!(requested[..7], [1, 2, 4, 8, 16, 32, 50]);
        assert!(
            requested[7..].iter().all(|&tokens| tokens == 50),
            "{requested:?}"
        );
        // Each request took one token; at most one reserve is left over.
        let granted: u32 = requested.iter().sum();
        assert!(
            (200..200 + 50).contains(&granted),
            "{granted} tokens granted"
        );
    }

    #[test]
    fn tokens_expire_after_the_hold() {
        let reserves = Reserves::new(HOLD, 100);
        let fast = quota(1_000, Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..3 {
            request(&reserves, &fast, start);
        }
        assert_eq!(request(&reserves, &fast, start), 4);

        // Three tokens are left, but the hold has passed: the store decides,
        // and the reserve shrinks.
        let later = start + HOLD;
        assert_eq!(reserves.take(KEY, &fast, later), refill(2));
    }

    #[test]
    fn refusal_restarts_the_reserve_growth() {
        let reserves = Reserves::new(HOLD, 100);
        let fast = quota(1_000, Duration::from_secs(1));
        let now = Instant::now();
        request(&reserves, &fast, now);
        assert_eq!(request(&reserves, &fast, now), 2);
        request(&reserves, &fast, now);
        assert_eq!(reserves.take(KEY, &fast, now), refill(4));
        reserves.granted(KEY, grant(0), now);
        assert_eq!(reserves.take(KEY, &fast, now), refill(2));
    }

    #[test]
    fn one_refill_at_a_time() {
        let reserves = Reserves::new(HOLD, 100);
        let fast = quota(1_000, Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(reserves.take(KEY, &fast, now), refill(1));
        // The first call is still on its way: the others ask for their own token.
        assert_eq!(reserves.take(KEY, &fast, now), EXACT);
        reserves.failed(KEY);
        assert_eq!(reserves.take(KEY, &fast, now), refill(2));
    }

    #[test]
    fn spent_tokens_report_the_bucket_estimate() {
        let reserves = Reserves::new(HOLD, 100);
        let fast = quota(1_000, Duration::from_secs(1));
        let now = Instant::now();
        let spend = |after: Duration| match reserves.take(KEY, &fast, now + after) {
            Take::Spent(decision) => decision,
            other => panic!("expected a reserved token, got {other:?}"),
        };
        request(&reserves, &fast, now);
        request(&reserves, &fast, now);

        // 500 left at the grant, and 4 more refilled in 4 ms.
        let decision = spend(Duration::from_millis(4));
        assert_eq!(decision.remaining, 504);
        assert_eq!(decision.reset_after, Duration::from_millis(6));
        assert_eq!(decision.limit, 1_000);

        // Past the store's reset time the bucket is full, but for the
        // request itself, which takes one interval (1 ms) to refill.
        assert_eq!(request(&reserves, &fast, now), 4);
        let decision = spend(Duration::from_millis(20));
        assert_eq!(decision.remaining, 500 + 20 + 2);
        assert_eq!(decision.reset_after, Duration::from_millis(1));
    }

    #[test]
    fn full_table_decides_new_keys_in_the_store() {
        let reserves = Reserves::new(HOLD, SHARD_COUNT);
        let fast = quota(1_000, Duration::from_secs(1));
        let now = Instant::now();
        let refills = (0..200)
            .filter(|&key| {
                matches!(
                    reserves.take(key, &fast, now),
                    Take::Ask { refill: true, .. }
                )
            })
            .count();
        assert!(refills <= SHARD_COUNT, "{refills} keys tracked");
        // Once their hold has passed, old entries make room.
        let later = now + HOLD;
        for i in 0..200 {
            reserves.failed(i);
        }
        assert!(matches!(
            reserves.take(1_000, &fast, later),
            Take::Ask { refill: true, .. }
        ));
    }
}
