//! Calendar-window quotas: at most N requests per hour, day or month of a
//! time zone, counted from zero at each window's start. A denied request
//! consumes nothing.
//!
//! The window a request falls in is computed on the gateway's clock. An
//! instance whose clock is off by a few milliseconds counts a request at a
//! window's edge in the neighbouring window; no count is lost or doubled.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime};

use crate::ratelimit::gcra::Decision;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarWindow {
    Hour,
    Day,
    Month,
}

/// A quota of requests per calendar window.
#[derive(Debug)]
pub struct WindowQuota {
    pub limit: u64,
    pub window: CalendarWindow,
    pub time_zone: TimeZone,
    /// The IANA name as configured, for messages.
    pub zone_name: String,
}

/// One window: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

impl WindowQuota {
    pub fn new(limit: u64, window: CalendarWindow, time_zone: TimeZone, zone_name: String) -> Self {
        WindowQuota {
            limit,
            window,
            time_zone,
            zone_name,
        }
    }

    /// Returns the window that contains `now`.
    pub fn span(&self, now: Timestamp) -> Span {
        let local = now.to_zoned_datetime(self.time_zone.clone());
        let (start, end) = match self.window {
            // Hours are counted on the absolute clock, so an hour that a
            // daylight-saving change repeats is two windows, not one.
            CalendarWindow::Hour => {
                let start = now.as_second() - now.as_second().rem_euclid(3600);
                let offset = local.offset().seconds() as i64 % 3600;
                let start = if offset == 0 {
                    start
                } else {
                    // Zones such as India's are offset by a part of an hour.
                    let local_start = start + offset;
                    if local_start > now.as_second() {
                        local_start - 3600
                    } else {
                        local_start
                    }
                };
                (start, start + 3600)
            }
            CalendarWindow::Day => bounds(&local, local.start_of_day(), 1.day()),
            CalendarWindow::Month => {
                let first = local.first_of_month().and_then(|d| d.start_of_day());
                bounds(&local, first, 1.month())
            }
        };
        Span { start, end }
    }

    /// Returns the decision for a window in which `used` requests were admitted,
    /// after this request (`allowed`) or without it.
    pub fn decision(&self, allowed: bool, used: u64, span: Span, now: Timestamp) -> Decision {
        let until_end = Duration::from_secs(span.end.saturating_sub(now.as_second()).max(1) as u64);
        let remaining = self.limit.saturating_sub(used);
        Decision {
            allowed,
            limit: clamp_u32(self.limit),
            remaining: clamp_u32(remaining),
            reset_after: until_end,
            retry_after: (!allowed).then_some(until_end),
        }
    }
}

fn bounds(
    local: &ZonedDateTime,
    start: Result<ZonedDateTime, jiff::Error>,
    length: jiff::Span,
) -> (i64, i64) {
    // Midnight exists in every zone jiff knows, and the next window's
    // start is a few weeks away at most; the fallback is a plain day.
    let start = start.unwrap_or_else(|_| local.clone());
    let end = start
        .checked_add(length)
        .map(|end| end.timestamp().as_second())
        .unwrap_or(start.timestamp().as_second() + 86_400);
    (start.timestamp().as_second(), end)
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// In-process window counters: one count per key for its current window.
pub struct WindowCounters {
    counts: Mutex<HashMap<u64, (i64, u64)>>,
    max_keys: NonZeroUsize,
}

impl WindowCounters {
    pub fn new(max_keys: NonZeroUsize) -> Self {
        WindowCounters {
            counts: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// Counts one request of `key` against `limit` in `span`. Returns
    /// whether it is admitted and the count of the window afterwards.
    pub fn check(&self, key: u64, limit: u64, span: Span) -> (bool, u64) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= self.max_keys.get() && !counts.contains_key(&key) {
            Self::make_room(&mut counts, span, self.max_keys.get());
        }

        let entry = counts.entry(key).or_insert((span.start, 0));
        if entry.0 != span.start {
            *entry = (span.start, 0);
        }
        if entry.1 >= limit {
            return (false, entry.1);
        }
        entry.1 += 1;
        (true, entry.1)
    }

    /// Gives back a request counted by [`check`](Self::check) that another
    /// limit then refused.
    pub fn refund(&self, key: u64, span: Span) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = counts.get_mut(&key) {
            if entry.0 == span.start {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    /// Drops the counts of past windows, then, if still full, the key that
    /// used the least of its window: forgetting it admits the fewest extra
    /// requests.
    fn make_room(counts: &mut HashMap<u64, (i64, u64)>, span: Span, max_keys: usize) {
        counts.retain(|_, (start, _)| *start >= span.start);
        if counts.len() < max_keys {
            return;
        }
        let least = counts
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(key, _)| *key);
        if let Some(key) = least {
            counts.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(window: CalendarWindow, zone: &str) -> WindowQuota {
        WindowQuota::new(3, window, TimeZone::get(zone).unwrap(), zone.into())
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn windows_follow_the_calendar_of_the_zone() {
        let cases = [
            (
                "UTC hour",
                CalendarWindow::Hour,
                "UTC",
                "2026-12-04T23:05:10Z",
                "2026-12-04T23:00:00Z",
                "2026-12-05T00:00:00Z",
            ),
            (
                "half-hour offset zone hour",
                CalendarWindow::Hour,
                "Asia/Kolkata",
                "2026-12-04T23:05:10Z",
                "2026-12-04T22:30:00Z",
                "2026-12-04T23:30:00Z",
            ),
            (
                "UTC day",
                CalendarWindow::Day,
                "UTC",
                "2026-12-04T23:05:10Z",
                "2026-12-04T00:00:00Z",
                "2026-12-05T00:00:00Z",
            ),
            (
                "Berlin day starts at local midnight",
                CalendarWindow::Day,
                "Europe/Berlin",
                "2026-12-04T23:05:10Z",
                "2026-12-04T23:00:00Z",
                "2026-12-05T23:00:00Z",
            ),
            (
                "day of a spring-forward change is 23 hours",
                CalendarWindow::Day,
                "Europe/Berlin",
                "2026-03-29T12:00:00Z",
                "2026-03-28T23:00:00Z",
                "2026-03-29T22:00:00Z",
            ),
            (
                "UTC month",
                CalendarWindow::Month,
                "UTC",
                "2026-02-14T10:00:00Z",
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ),
            (
                "New York month",
                CalendarWindow::Month,
                "America/New_York",
                "2026-12-01T03:00:00Z",
                "2026-11-01T04:00:00Z",
                "2026-12-01T05:00:00Z",
            ),
        ];
        for (description, window, zone, now, start, end) in cases {
            let span = quota(window, zone).span(at(now));
            assert_eq!(
                (span.start, span.end),
                (at(start).as_second(), at(end).as_second()),
                "{description}"
            );
        }
    }

    #[test]
    fn counters_deny_at_the_limit_and_start_over_in_the_next_window() {
        let counters = WindowCounters::new(NonZeroUsize::new(10).unwrap());
        let first = Span { start: 0, end: 60 };
        let second = Span {
            start: 60,
            end: 120,
        };

        let admitted: Vec<bool> = (0..4).map(|_| counters.check(7, 3, first).0).collect();
        assert_eq!(admitted, [true, true, true, false]);

        counters.refund(7, first);
        assert_eq!(counters.check(7, 3, first), (true, 3));
        assert_eq!(counters.check(7, 3, second), (true, 1));
    }

    #[test]
    fn decision_reports_the_time_to_the_window_end() {
        let quota = quota(CalendarWindow::Hour, "UTC");
        let now = at("2026-12-04T23:59:30Z");
        let span = quota.span(now);

        let denied = quota.decision(false, 3, span, now);

        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(quota.decision(true, 1, span, now).remaining, 2);
    }
}
