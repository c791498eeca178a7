//! Monotonic time source for rate limiting. Stores read the clock on every
//! check, and tests swap in [`ManualClock`] so no test sleeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monotonic time source for rate limit stores.
pub trait Clock: Send + Sync + 'static {
    /// Returns the time elapsed since an arbitrary epoch fixed for the life of
    /// the clock. Successive calls never go backwards.
    fn now(&self) -> Duration;
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX`
/// (about 584 years).
pub fn saturating_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Production clock: the time elapsed since the clock was created, read from
/// [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    /// Creates a clock whose epoch is the current instant.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Test clock that moves only when a test advances or sets it. Clones share
/// one time, so a test keeps a clone and advances the clock that a store owns.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// Creates a clock that reads zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `step`, saturating at `u64::MAX` nanoseconds.
    pub fn advance(&self, step: Duration) {
        let step = saturating_nanos(step);
        let mut current = self.nanos.load(Ordering::SeqCst);

        loop {
            let next = current.saturating_add(step);
            match self
                .nanos
                .compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(observed) => current = observed,
            }
        }
    }

    /// Sets the clock to `time`. Unlike [`SystemClock`], this can move the
    /// clock backwards, which tests use to check that the stores tolerate it.
    pub fn set(&self, time: Duration) {
        self.nanos.store(saturating_nanos(time), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let clock = ManualClock::new();
        let copy = clock.clone();

        copy.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), Duration::from_millis(1500));

        clock.set(Duration::from_secs(7));
        assert_eq!(copy.now(), Duration::from_secs(7));
    }

    #[test]
    fn manual_clock_advance_saturates() {
        let clock = ManualClock::new();
        clock.set(Duration::from_nanos(u64::MAX - 5));

        clock.advance(Duration::from_secs(1));

        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn saturating_nanos_clamps_long_durations() {
        assert_eq!(saturating_nanos(Duration::from_nanos(42)), 42);
        assert_eq!(saturating_nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn system_clock_never_goes_backwards() {
        let clock = SystemClock::new();
        let first = clock.now();
        let second = clock.now();

        assert!(second >= first);
    }
}
