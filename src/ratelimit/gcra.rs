//! Generic cell rate algorithm (GCRA), the pure decision behind every rate
//! limit store. A store keeps one number per key and calls [`decide`]. The
//! in-memory store does so under a shard lock, and a Redis store must run the
//! same steps, in the same integer arithmetic, inside one server-side script.
//!
//! # Algorithm
//!
//! The state of a key is its theoretical arrival time (TAT): the instant, in
//! nanoseconds on the store's clock, at which the key is back to full
//! capacity. A key with no stored TAT, or with one at or before `now`, is
//! idle. With `T` the emission interval (`period / requests` rounded up to
//! whole nanoseconds), `B` the burst and `n` the cost of the request:
//!
//! ```text
//! tat     = max(stored_tat, now)        // now when nothing is stored
//! new_tat = tat + n * T
//! window  = B * T                       // the burst window
//! allowed = new_tat - now <= window and new_tat <= u64::MAX
//! ```
//!
//! An admitted request stores `new_tat`, and a denied one stores nothing. The
//! decision reports the following values, where `/` rounds down:
//!
//! | field         | admitted                         | denied                                   |
//! |---------------|----------------------------------|------------------------------------------|
//! | `remaining`   | `(window - (new_tat - now)) / T` | `(window - (tat - now)) / T`, at least 0 |
//! | `reset_after` | `new_tat - now`                  | `tat - now`                              |
//! | `retry_after` | none                             | `new_tat - window - now`                 |
//!
//! A denied request has no `retry_after` when waiting cannot help: its cost
//! exceeds the burst, or its `new_tat` does not fit in `u64`. Products are
//! computed in `u128`, so no step overflows.
//!
//! NOTE: Redis runs Lua 5.1, whose numbers are doubles and exact only up to
//! 2^53 (about 104 days in nanoseconds). A Redis port must keep these values
//! below that bound, for example with TATs relative to a recent epoch, or it
//! stops being exact.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// Maximum burst window (burst × emission interval) of a [`Quota`]:
/// `u64::MAX / 2` nanoseconds, about 292 years. The limit keeps every stored
/// TAT below `u64::MAX` while the clock reads less than another 292 years.
pub const MAX_BURST_WINDOW: Duration = Duration::from_nanos(u64::MAX / 2);

/// Rate limit: `requests` per `period` sustained, up to `burst` requests at
/// once from an idle key; burst defaults to requests.
///
/// The emission interval, `period / requests`, is rounded up to whole
/// nanoseconds, so the enforced sustained rate never exceeds the configured
/// one. For example, 3 requests per second admit one request every
/// 333,333,334 ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    requests: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
    emission_interval_nanos: u64,
}

/// Reason a [`Quota`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// The period is zero.
    ZeroPeriod,
    /// `period / requests` is shorter than one nanosecond.
    IntervalTooShort { requests: u32, period: Duration },
    /// `burst * period / requests` is longer than [`MAX_BURST_WINDOW`].
    BurstWindowTooLong {
        requests: u32,
        period: Duration,
        burst: u32,
    },
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroPeriod => {
                write!(
                    f,
                    "invalid rate limit period 0s: expected a period greater than zero"
                )
            }
            Self::IntervalTooShort { requests, period } => write!(
                f,
                "invalid rate limit of {requests} requests per {period:?}: \
                 the interval between requests is below 1ns; \
                 lower the requests or lengthen the period"
            ),
            Self::BurstWindowTooLong {
                requests,
                period,
                burst,
            } => write!(
                f,
                "invalid rate limit of {requests} requests per {period:?} with burst {burst}: \
                 the burst takes longer than the maximum of {MAX_BURST_WINDOW:?} to refill; \
                 lower the burst or shorten the period"
            ),
        }
    }
}

impl std::error::Error for QuotaError {}

impl Quota {
    /// Creates a quota of `requests` per `period` whose burst equals
    /// `requests`.
    ///
    /// # Errors
    ///
    /// Returns [`QuotaError`] when the period is zero, when `period / requests`
    /// is below 1 ns, or when the burst window exceeds [`MAX_BURST_WINDOW`].
    pub fn new(requests: NonZeroU32, period: Duration) -> Result<Self, QuotaError> {
        Self::with_burst(requests, period, requests)
    }

    /// Creates a quota of `requests` per `period` that admits up to `burst`
    /// requests at once from an idle key.
    ///
    /// # Errors
    ///
    /// Returns [`QuotaError`] when the period is zero, when `period / requests`
    /// is below 1 ns, or when `burst * period / requests` exceeds
    /// [`MAX_BURST_WINDOW`].
    pub fn with_burst(
        requests: NonZeroU32,
        period: Duration,
        burst: NonZeroU32,
    ) -> Result<Self, QuotaError> {
        if period.is_zero() {
            return Err(QuotaError::ZeroPeriod);
        }

        let period_nanos = period.as_nanos();
        let requests_wide = u128::from(requests.get());
        if period_nanos < requests_wide {
            return Err(QuotaError::IntervalTooShort {
                requests: requests.get(),
                period,
            });
        }

        let interval = period_nanos.div_ceil(requests_wide);
        let window = interval.saturating_mul(u128::from(burst.get()));
        let emission_interval_nanos = match u64::try_from(interval) {
            Ok(nanos) if window <= MAX_BURST_WINDOW.as_nanos() => nanos,
            _ => {
                return Err(QuotaError::BurstWindowTooLong {
                    requests: requests.get(),
                    period,
                    burst: burst.get(),
                })
            }
        };

        Ok(Self {
            requests,
            period,
            burst,
            emission_interval_nanos,
        })
    }

    /// Requests admitted per period at the sustained rate.
    pub fn requests(&self) -> NonZeroU32 {
        self.requests
    }

    /// Period over which `requests` are admitted at the sustained rate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Requests admitted at once from an idle key.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// Time one request of cost 1 takes to refill: `period / requests`,
    /// rounded up to whole nanoseconds.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_interval_nanos)
    }

    /// Time an exhausted key takes to return to full capacity:
    /// `burst × emission_interval`.
    pub fn burst_window(&self) -> Duration {
        Duration::from_nanos(self.emission_interval_nanos * u64::from(self.burst.get()))
    }
}

/// Outcome of one rate limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Burst capacity of the quota: the requests an idle key admits at once.
    pub limit: u32,
    /// Requests of cost 1 that the key would admit right after this decision.
    pub remaining: u32,
    /// Time until the key is back to full capacity if it sends nothing more.
    pub reset_after: Duration,
    /// For a denied request, the time until a request of the same cost would
    /// be admitted, if the key admits nothing else meanwhile. `None` when the
    /// request is admitted, and when waiting cannot help because the cost
    /// exceeds the burst.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Returns whichever of two decisions for one request restricts the client
    /// more, for reporting when several limits apply. On a tie it returns `a`.
    ///
    /// See [`Decision::cmp_restrictiveness`] for the order.
    pub fn most_restrictive(a: Decision, b: Decision) -> Decision {
        if b.cmp_restrictiveness(&a) == Ordering::Greater {
            b
        } else {
            a
        }
    }

    /// Orders decisions from least to most restrictive. A denial is more
    /// restrictive than an admission. Among denials a longer `retry_after`
    /// is more restrictive, and `None` (never) is the most restrictive. Ties
    /// are broken first by fewer `remaining`, then by a longer `reset_after`.
    pub fn cmp_restrictiveness(&self, other: &Decision) -> Ordering {
        let denial = (!self.allowed).cmp(&!other.allowed);
        let wait = self.wait().cmp(&other.wait());
        let remaining = other.remaining.cmp(&self.remaining);
        let reset = self.reset_after.cmp(&other.reset_after);

        denial.then(wait).then(remaining).then(reset)
    }

    fn wait(&self) -> Duration {
        if self.allowed {
            Duration::ZERO
        } else {
            self.retry_after.unwrap_or(Duration::MAX)
        }
    }
}

/// Decides one request of `cost` units against `quota`, given the key's stored
/// TAT and the current time, both in nanoseconds on the store's clock.
///
/// Returns the decision and the TAT to store: `Some` when the request is
/// admitted, `None` when it is denied and the stored TAT stays as it was. A
/// returned TAT at or before `now` means the key is idle, and the store may
/// drop it. The module documentation gives the exact arithmetic.
#[must_use]
pub fn decide(tat: Option<u64>, now: u64, quota: &Quota, cost: u32) -> (Decision, Option<u64>) {
    let interval = u128::from(quota.emission_interval_nanos);
    let burst = quota.burst.get();
    let window = interval * u128::from(burst);

    let now = u128::from(now);
    let tat = tat.map_or(now, |stored| now.max(u128::from(stored)));
    let new_tat = tat + interval * u128::from(cost);

    if let Ok(stored) = u64::try_from(new_tat) {
        if new_tat - now <= window {
            let decision = Decision {
                allowed: true,
                limit: burst,
                remaining: remaining(window, new_tat - now, interval),
                reset_after: nanos_to_duration(new_tat - now),
                retry_after: None,
            };
            return (decision, Some(stored));
        }
    }

    let fits = new_tat <= u128::from(u64::MAX);
    let retry_after = if fits && cost <= burst {
        Some(nanos_to_duration(new_tat - window - now))
    } else {
        None
    };

    let decision = Decision {
        allowed: false,
        limit: burst,
        remaining: remaining(window, tat - now, interval),
        reset_after: nanos_to_duration(tat - now),
        retry_after,
    };
    (decision, None)
}

/// Whole requests of cost 1 that fit in the part of the window not yet used.
fn remaining(window: u128, used: u128, interval: u128) -> u32 {
    let free = window.saturating_sub(used) / interval;
    u32::try_from(free).unwrap_or(u32::MAX)
}

fn nanos_to_duration(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SECOND: u64 = 1_000_000_000;

    fn quota(requests: u32, period: Duration, burst: u32) -> Quota {
        let requests = NonZeroU32::new(requests).unwrap();
        let burst = NonZeroU32::new(burst).unwrap();
        Quota::with_burst(requests, period, burst).unwrap()
    }

    /// One request in a scenario: when it arrives, its cost and the decision
    /// expected for it.
    struct Step {
        at_nanos: u64,
        cost: u32,
        allowed: bool,
        remaining: u32,
        reset_after_nanos: u64,
        retry_after_nanos: Option<u64>,
    }

    fn step(at_nanos: u64, cost: u32, allowed: bool, remaining: u32, reset: u64) -> Step {
        Step {
            at_nanos,
            cost,
            allowed,
            remaining,
            reset_after_nanos: reset,
            retry_after_nanos: None,
        }
    }

    fn denied(at_nanos: u64, cost: u32, remaining: u32, reset: u64, retry: Option<u64>) -> Step {
        Step {
            at_nanos,
            cost,
            allowed: false,
            remaining,
            reset_after_nanos: reset,
            retry_after_nanos: retry,
        }
    }

    struct Scenario {
        description: &'static str,
        quota: Quota,
        steps: Vec<Step>,
    }

    fn scenarios() -> Vec<Scenario> {
        vec![
            Scenario {
                description: "steady rate at exactly the emission interval is admitted",
                quota: quota(10, Duration::from_secs(1), 1),
                steps: vec![
                    step(0, 1, true, 0, 100 * MS),
                    step(100 * MS, 1, true, 0, 100 * MS),
                    step(200 * MS, 1, true, 0, 100 * MS),
                    step(300 * MS, 1, true, 0, 100 * MS),
                ],
            },
            Scenario {
                description: "idle key admits the whole burst at once, then denies",
                quota: quota(5, Duration::from_secs(1), 3),
                steps: vec![
                    step(0, 1, true, 2, 200 * MS),
                    step(0, 1, true, 1, 400 * MS),
                    step(0, 1, true, 0, 600 * MS),
                    denied(0, 1, 0, 600 * MS, Some(200 * MS)),
                ],
            },
            Scenario {
                description: "retry_after is exact to the nanosecond",
                quota: quota(1, Duration::from_secs(1), 1),
                steps: vec![
                    step(0, 1, true, 0, SECOND),
                    denied(SECOND - 1, 1, 0, 1, Some(1)),
                    step(SECOND, 1, true, 0, SECOND),
                ],
            },
            Scenario {
                description: "burst recovers one unit per emission interval, then fully",
                quota: quota(2, Duration::from_secs(1), 4),
                steps: vec![
                    step(0, 1, true, 3, 500 * MS),
                    step(0, 1, true, 2, 1000 * MS),
                    step(0, 1, true, 1, 1500 * MS),
                    step(0, 1, true, 0, 2000 * MS),
                    step(1000 * MS, 1, true, 1, 1500 * MS),
                    step(10 * SECOND, 1, true, 3, 500 * MS),
                ],
            },
            Scenario {
                description: "cost above one consumes several units and waits for all",
                quota: quota(10, Duration::from_secs(1), 10),
                steps: vec![
                    step(0, 4, true, 6, 400 * MS),
                    step(0, 6, true, 0, 1000 * MS),
                    denied(0, 1, 0, 1000 * MS, Some(100 * MS)),
                    denied(300 * MS, 4, 3, 700 * MS, Some(100 * MS)),
                    step(400 * MS, 4, true, 0, 1000 * MS),
                ],
            },
            Scenario {
                description: "cost above the burst is denied with no retry time",
                quota: quota(10, Duration::from_secs(1), 5),
                steps: vec![denied(0, 6, 5, 0, None), step(0, 5, true, 0, 500 * MS)],
            },
            Scenario {
                description: "cost zero reports the state and consumes nothing",
                quota: quota(10, Duration::from_secs(1), 10),
                steps: vec![
                    step(0, 3, true, 7, 300 * MS),
                    step(0, 0, true, 7, 300 * MS),
                    step(100 * MS, 0, true, 8, 200 * MS),
                    step(100 * MS, 1, true, 7, 300 * MS),
                ],
            },
            Scenario {
                description: "uneven period rounds the emission interval up",
                quota: quota(3, Duration::from_secs(1), 1),
                steps: vec![
                    step(0, 1, true, 0, 333_333_334),
                    denied(333_333_333, 1, 0, 1, Some(1)),
                    step(333_333_334, 1, true, 0, 333_333_334),
                ],
            },
            Scenario {
                description: "clock reading earlier than the stored TAT origin is tolerated",
                quota: quota(2, Duration::from_secs(1), 2),
                steps: vec![
                    step(SECOND, 1, true, 1, 500 * MS),
                    denied(SECOND - 200 * MS, 1, 0, 700 * MS, Some(200 * MS)),
                    step(SECOND, 1, true, 0, SECOND),
                ],
            },
            Scenario {
                description: "sub-second period with a burst below the rate",
                quota: quota(100, Duration::from_millis(500), 2),
                steps: vec![
                    step(0, 1, true, 1, 5 * MS),
                    step(0, 1, true, 0, 10 * MS),
                    denied(4 * MS, 1, 0, 6 * MS, Some(MS)),
                    step(5 * MS, 1, true, 0, 10 * MS),
                ],
            },
        ]
    }

    #[test]
    fn decide_follows_scenarios() {
        for scenario in scenarios() {
            let mut tat = None;

            for (index, step) in scenario.steps.iter().enumerate() {
                let (decision, new_tat) = decide(tat, step.at_nanos, &scenario.quota, step.cost);
                let context = format!("{} (step {index})", scenario.description);

                assert_eq!(decision.allowed, step.allowed, "allowed: {context}");
                assert_eq!(
                    decision.limit,
                    scenario.quota.burst().get(),
                    "limit: {context}"
                );
                assert_eq!(decision.remaining, step.remaining, "remaining: {context}");
                assert_eq!(
                    decision.reset_after,
                    Duration::from_nanos(step.reset_after_nanos),
                    "reset_after: {context}"
                );
                assert_eq!(
                    decision.retry_after,
                    step.retry_after_nanos.map(Duration::from_nanos),
                    "retry_after: {context}"
                );
                assert_eq!(new_tat.is_some(), step.allowed, "stored TAT: {context}");

                if new_tat.is_some() {
                    tat = new_tat;
                }
            }
        }
    }

    #[test]
    fn steady_rate_admitted_for_many_intervals() {
        let quota = quota(3, Duration::from_secs(1), 3);
        let interval = 333_333_334;
        let mut tat = None;

        for index in 0..100_000 {
            let (decision, new_tat) = decide(tat, index * interval, &quota, 1);
            assert!(decision.allowed, "request {index} at the sustained rate");
            assert_eq!(decision.remaining, 2, "request {index} keeps the burst");
            tat = new_tat;
        }

        let (early, _) = decide(tat, 100_000 * interval - 1, &quota, 1);
        assert!(early.allowed, "burst still absorbs one early request");
    }

    #[test]
    fn sustained_rate_never_exceeds_quota() {
        // Hammer one key every millisecond for ten seconds: admissions must be
        // the burst plus one per emission interval, nothing more.
        let quota = quota(10, Duration::from_secs(1), 5);
        let mut tat = None;
        let mut admitted = 0;

        for millis in 0..10_000 {
            let (decision, new_tat) = decide(tat, millis * MS, &quota, 1);
            if decision.allowed {
                admitted += 1;
                tat = new_tat;
            }
        }

        // 5 at t=0, then one at each of 100 ms, 200 ms, ..., 9900 ms.
        assert_eq!(admitted, 5 + 99);
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        struct Case {
            description: &'static str,
            quota: Quota,
            tat: Option<u64>,
            now: u64,
            cost: u32,
            allowed: bool,
            retry_after: Option<Duration>,
        }

        let longest = quota(1, MAX_BURST_WINDOW, 1);
        let finest = quota(
            u32::MAX,
            Duration::from_nanos(u64::from(u32::MAX)),
            u32::MAX,
        );

        let cases = [
            Case {
                description: "longest allowed period admits once from idle",
                quota: longest,
                tat: None,
                now: 0,
                cost: 1,
                allowed: true,
                retry_after: None,
            },
            Case {
                description: "longest allowed period then waits the whole period",
                quota: longest,
                tat: Some(u64::MAX / 2),
                now: 0,
                cost: 1,
                allowed: false,
                retry_after: Some(MAX_BURST_WINDOW),
            },
            Case {
                description: "TAT past u64::MAX is denied, not wrapped",
                quota: quota(1, Duration::from_secs(1), 1),
                tat: Some(u64::MAX - 10),
                now: u64::MAX - 20,
                cost: 1,
                allowed: false,
                retry_after: None,
            },
            Case {
                description: "1 ns interval admits a maximal burst at once",
                quota: finest,
                tat: None,
                now: u64::MAX / 2,
                cost: u32::MAX,
                allowed: true,
                retry_after: None,
            },
            Case {
                description: "1 ns interval retries after exactly 1 ns",
                quota: finest,
                tat: Some(5 + u64::from(u32::MAX)),
                now: 5,
                cost: 1,
                allowed: false,
                retry_after: Some(Duration::from_nanos(1)),
            },
            Case {
                description: "maximal cost on a long period stays denied without overflow",
                quota: quota(1, Duration::from_secs(3600), 1),
                tat: Some(u64::MAX),
                now: u64::MAX,
                cost: u32::MAX,
                allowed: false,
                retry_after: None,
            },
        ];

        for case in cases {
            let (decision, _) = decide(case.tat, case.now, &case.quota, case.cost);
            assert_eq!(
                decision.allowed, case.allowed,
                "allowed: {}",
                case.description
            );
            assert_eq!(
                decision.retry_after, case.retry_after,
                "retry_after: {}",
                case.description
            );
        }
    }

    #[test]
    fn quota_validation_rejects_bad_values() {
        let one = NonZeroU32::new(1).unwrap();
        let two = NonZeroU32::new(2).unwrap();
        let max = NonZeroU32::new(u32::MAX).unwrap();

        let cases = [
            (
                "zero period",
                Quota::new(one, Duration::ZERO),
                Err(QuotaError::ZeroPeriod),
            ),
            (
                "interval below 1 ns",
                Quota::new(two, Duration::from_nanos(1)),
                Err(QuotaError::IntervalTooShort {
                    requests: 2,
                    period: Duration::from_nanos(1),
                }),
            ),
            (
                "period too long to represent",
                Quota::new(one, Duration::MAX),
                Err(QuotaError::BurstWindowTooLong {
                    requests: 1,
                    period: Duration::MAX,
                    burst: 1,
                }),
            ),
            (
                "large burst on a long period",
                Quota::with_burst(one, Duration::from_secs(86_400 * 365), max),
                Err(QuotaError::BurstWindowTooLong {
                    requests: 1,
                    period: Duration::from_secs(86_400 * 365),
                    burst: u32::MAX,
                }),
            ),
        ];

        for (description, result, expected) in cases {
            assert_eq!(result, expected, "{description}");
        }
    }

    #[test]
    fn quota_exposes_interval_and_window() {
        let quota = quota(4, Duration::from_secs(2), 6);

        assert_eq!(quota.requests().get(), 4);
        assert_eq!(quota.period(), Duration::from_secs(2));
        assert_eq!(quota.burst().get(), 6);
        assert_eq!(quota.emission_interval(), Duration::from_millis(500));
        assert_eq!(quota.burst_window(), Duration::from_secs(3));
    }

    #[test]
    fn quota_burst_defaults_to_requests() {
        let quota = Quota::new(NonZeroU32::new(7).unwrap(), Duration::from_secs(1)).unwrap();

        assert_eq!(quota.burst().get(), 7);
    }

    #[test]
    fn quota_error_messages_name_the_values() {
        let error = QuotaError::IntervalTooShort {
            requests: 2,
            period: Duration::from_nanos(1),
        };

        assert_eq!(
            error.to_string(),
            "invalid rate limit of 2 requests per 1ns: the interval between requests \
             is below 1ns; lower the requests or lengthen the period"
        );
    }

    #[test]
    fn most_restrictive_picks_the_tighter_decision() {
        fn allowed(remaining: u32, reset_secs: u64) -> Decision {
            Decision {
                allowed: true,
                limit: 10,
                remaining,
                reset_after: Duration::from_secs(reset_secs),
                retry_after: None,
            }
        }

        fn denied(retry: Option<u64>) -> Decision {
            Decision {
                allowed: false,
                limit: 10,
                remaining: 0,
                reset_after: Duration::from_secs(10),
                retry_after: retry.map(Duration::from_secs),
            }
        }

        let cases = [
            (
                "denial beats admission",
                allowed(5, 1),
                denied(Some(1)),
                denied(Some(1)),
            ),
            (
                "longer retry beats shorter",
                denied(Some(2)),
                denied(Some(9)),
                denied(Some(9)),
            ),
            (
                "never beats any retry",
                denied(Some(9)),
                denied(None),
                denied(None),
            ),
            (
                "fewer remaining beats more",
                allowed(5, 1),
                allowed(2, 1),
                allowed(2, 1),
            ),
            (
                "equal remaining, longer reset wins",
                allowed(2, 1),
                allowed(2, 4),
                allowed(2, 4),
            ),
        ];

        for (description, a, b, expected) in cases {
            assert_eq!(Decision::most_restrictive(a, b), expected, "{description}");
            assert_eq!(
                Decision::most_restrictive(b, a),
                expected,
                "{description}, swapped"
            );
        }
    }
}
