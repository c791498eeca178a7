//! Failed authentications per client IP (API keys, client secrets): a GCRA
//! quota in an in-process store, consumed only by failures, so a client
//! that keeps failing is rejected before its credential is even checked.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::ratelimit::clock::Clock;
use crate::ratelimit::gcra::Quota;
use crate::ratelimit::memory::MemoryStore;

/// Client IPs whose failures are tracked; the least recently failing are
/// forgotten first.
const MAX_TRACKED_SOURCES: usize = 100_000;

pub struct Attempts<C: Clock> {
    failures: MemoryStore<C>,
    quota: Quota,
}

impl<C: Clock> Attempts<C> {
    pub fn new(clock: C, quota: Quota) -> Self {
        Attempts {
            failures: MemoryStore::new(clock, NonZeroUsize::new(MAX_TRACKED_SOURCES).unwrap()),
            quota,
        }
    }

    /// Returns how long the source must wait when its failures used up the
    /// quota, or `None` when it may try.
    pub fn blocked(&self, client_ip: IpAddr) -> Option<Duration> {
        let standing = self
            .failures
            .check_cost(self.source(client_ip), &self.quota, 0);
        if standing.remaining > 0 {
            return None;
        }
        // One more attempt fits once the source is a whole interval below
        // its full window.
        let full = self.quota.burst_window() - self.quota.emission_interval();
        Some(standing.reset_after.saturating_sub(full))
    }

    /// Counts one failure of the source.
    pub fn fail(&self, client_ip: IpAddr) {
        self.failures.check(self.source(client_ip), &self.quota);
    }

    fn source(&self, client_ip: IpAddr) -> u64 {
        self.failures
            .key_hash(&[&crate::ratelimit::ip_octets(client_ip)])
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::ratelimit::clock::ManualClock;

    #[test]
    fn failures_block_the_source_until_the_quota_refills() {
        let clock = ManualClock::new();
        let quota = Quota::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(60)).unwrap();
        let attempts = Attempts::new(clock.clone(), quota);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();

        for _ in 0..3 {
            assert_eq!(attempts.blocked(client), None);
            attempts.fail(client);
        }

        let wait = attempts
            .blocked(client)
            .expect("blocked after three failures");
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(
            attempts.blocked(other),
            None,
            "another source is not blocked"
        );
        clock.advance(Duration::from_secs(20));
        assert_eq!(attempts.blocked(client), None);
    }
}
