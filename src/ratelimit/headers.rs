//! Rate limit response header fields: `RateLimit-Policy` and `RateLimit` from
//! draft-ietf-httpapi-ratelimit-headers-11 (23 May 2026), serialized as
//! structured field values (RFC 9651), plus `Retry-After` (RFC 9110, section
//! 10.2.3) on denials. The rate limit stage calls [`apply`] once per response,
//! with the most restrictive decision when several limits apply.
//!
//! For 100 requests per minute under a policy named `api`, the response to
//! the first request from an idle client carries:
//!
//! ```text
//! RateLimit-Policy: "api";q=100;w=60
//! RateLimit: "api";r=99;t=1
//! ```

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::ratelimit::clock::saturating_nanos;
use crate::ratelimit::gcra::{Decision, Quota};

/// `RateLimit-Policy`: the quota policy, which stays the same across
/// responses.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit`: the current service limit of the client under the policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Largest integer a structured field can carry (RFC 9651, section 3.3.1).
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Sets `RateLimit-Policy` and `RateLimit` for one policy on a response, and
/// `Retry-After` when the request was denied and waiting can help. Existing
/// values of these fields are replaced.
///
/// The fields read as follows:
///
/// - `RateLimit-Policy: "<policy>";q=<quota>;w=<window>` states the sustained
///   rate: `w` is the quota period in whole seconds, rounded up because the
///   draft has no sub-second windows, and `q` is the number of requests the
///   rate admits in `w` seconds, rounded down. The burst is not advertised.
/// - `RateLimit: "<policy>";r=<remaining>;t=<seconds>` gives the remaining
///   requests and, for an admitted request, the seconds until the key is back
///   to full capacity, rounded up.
/// - On a denied request, `Retry-After` and `t` both give the seconds until a
///   request of the same cost would be admitted, rounded up and at least 1.
///   Section 6 of the draft recommends that `Retry-After` not point earlier
///   than the end of the effective window, and until then the client can send
///   no request.
///
/// The policy name is written as an sf-string: `"` and `\` are escaped, and
/// each character outside printable ASCII is replaced with `_`.
pub fn apply(headers: &mut HeaderMap, policy_name: &str, quota: &Quota, decision: &Decision) {
    apply_all(headers, &[Item::rate(policy_name, quota, decision)]);
}

/// One policy as a response reports it.
pub struct Item<'a> {
    pub policy: &'a str,
    /// `q`: requests admitted per window.
    pub quota: u64,
    /// `w`: the window in whole seconds.
    pub window: u64,
    pub decision: &'a Decision,
}

impl<'a> Item<'a> {
    /// Builds the item of a rate, advertised as its sustained rate (see [`apply`]).
    pub fn rate(policy: &'a str, quota: &Quota, decision: &'a Decision) -> Self {
        let (quota, window) = advertised_rate(quota);
        Item {
            policy,
            quota,
            window,
            decision,
        }
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` listing every policy that
/// applied, in order, and `Retry-After` with the longest wait among the
/// denials. A calendar quota is advertised with its limit as `q` and its
/// window's length as `w`, and `t` counts to the window's end.
pub fn apply_all(headers: &mut HeaderMap, items: &[Item]) {
    let mut policies = String::new();
    let mut limits = String::new();
    let mut retry: Option<u64> = None;
    for item in items {
        let separator = if policies.is_empty() { "" } else { ", " };
        let name = sf_string(item.policy);
        let (quota, window) = (clamp_sf_integer(item.quota.into()), item.window);
        policies.push_str(&format!("{separator}{name};q={quota};w={window}"));

        let retry_seconds = retry_after_seconds(item.decision);
        let effective_window =
            retry_seconds.unwrap_or_else(|| ceil_seconds(item.decision.reset_after));
        let remaining = item.decision.remaining;
        limits.push_str(&format!(
            "{separator}{name};r={remaining};t={effective_window}"
        ));
        retry = retry.max(retry_seconds);
    }
    if items.is_empty() {
        return;
    }
    headers.insert(RATELIMIT_POLICY, ascii_value(policies));
    headers.insert(RATELIMIT, ascii_value(limits));
    if let Some(seconds) = retry {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
}

/// Returns the seconds a denied client should wait, rounded up and never 0,
/// or `None` when the request was admitted or waiting cannot help.
fn retry_after_seconds(decision: &Decision) -> Option<u64> {
    if decision.allowed {
        return None;
    }

    decision.retry_after.map(|wait| ceil_seconds(wait).max(1))
}

/// Returns `(q, w)`: the quota period rounded up to whole seconds, and the
/// requests the sustained rate admits in that window, rounded down.
fn advertised_rate(quota: &Quota) -> (u64, u64) {
    let period_nanos = quota.period().as_nanos();
    let window_seconds = period_nanos
        .div_ceil(NANOS_PER_SECOND)
        .min(u128::from(SF_INTEGER_MAX));

    let window_nanos = window_seconds * NANOS_PER_SECOND;
    let requests = u128::from(quota.requests().get()) * window_nanos / period_nanos;

    (clamp_sf_integer(requests), clamp_sf_integer(window_seconds))
}

fn ceil_seconds(duration: Duration) -> u64 {
    let seconds = u128::from(saturating_nanos(duration)).div_ceil(NANOS_PER_SECOND);
    clamp_sf_integer(seconds)
}

fn clamp_sf_integer(value: u128) -> u64 {
    // SF_INTEGER_MAX fits in u64, so the conversion cannot fail after min.
    u64::try_from(value.min(u128::from(SF_INTEGER_MAX))).unwrap_or(SF_INTEGER_MAX)
}

/// Serializes `text` as an sf-string (RFC 9651, section 3.3.3).
fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');

    for character in text.chars() {
        match character {
            '"' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            ' '..='~' => out.push(character),
            _ => out.push('_'),
        }
    }

    out.push('"');
    out
}

fn ascii_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("field values are built from printable ASCII only")
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::ratelimit::gcra::decide;

    fn quota(requests: u32, period: Duration, burst: u32) -> Quota {
        let requests = NonZeroU32::new(requests).unwrap();
        let burst = NonZeroU32::new(burst).unwrap();
        Quota::with_burst(requests, period, burst).unwrap()
    }

    /// Returns the decision for the last of `requests` requests of cost 1
    /// sent at once from an idle key, then one of `cost`.
    fn decision_after(quota: &Quota, requests: u32, cost: u32) -> Decision {
        let mut tat = None;
        for _ in 0..requests {
            let (_, new_tat) = decide(tat, 0, quota, 1);
            tat = new_tat.or(tat);
        }
        decide(tat, 0, quota, cost).0
    }

    fn field<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
        headers.get(name).map(|value| value.to_str().unwrap())
    }

    struct Case {
        description: &'static str,
        policy: &'static str,
        quota: Quota,
        decision: Decision,
        policy_field: &'static str,
        limit_field: &'static str,
        retry_after: Option<&'static str>,
    }

    fn cases() -> Vec<Case> {
        let per_minute = quota(100, Duration::from_secs(60), 100);
        let per_second = quota(1, Duration::from_secs(1), 3);
        let fast = quota(10, Duration::from_secs(1), 1);
        let slow = quota(2, Duration::from_secs(3), 1);
        let half_second = quota(10, Duration::from_millis(500), 10);
        let uneven = quota(3, Duration::from_millis(1500), 3);

        vec![
            Case {
                description: "first request from idle key",
                policy: "api",
                quota: per_minute,
                decision: decision_after(&per_minute, 0, 1),
                policy_field: r#""api";q=100;w=60"#,
                limit_field: r#""api";r=99;t=1"#,
                retry_after: None,
            },
            Case {
                description: "admitted request reports seconds to full capacity",
                policy: "api",
                quota: per_minute,
                decision: decision_after(&per_minute, 49, 1),
                policy_field: r#""api";q=100;w=60"#,
                limit_field: r#""api";r=50;t=30"#,
                retry_after: None,
            },
            Case {
                description: "denied request reports the retry time as t and Retry-After",
                policy: "login",
                quota: per_second,
                decision: decision_after(&per_second, 3, 1),
                policy_field: r#""login";q=1;w=1"#,
                limit_field: r#""login";r=0;t=1"#,
                retry_after: Some("1"),
            },
            Case {
                description: "sub-second retry rounds up to 1, never 0",
                policy: "login",
                quota: fast,
                decision: decision_after(&fast, 1, 1),
                policy_field: r#""login";q=10;w=1"#,
                limit_field: r#""login";r=0;t=1"#,
                retry_after: Some("1"),
            },
            Case {
                description: "fractional retry rounds up",
                policy: "login",
                quota: slow,
                decision: decision_after(&slow, 1, 1),
                policy_field: r#""login";q=2;w=3"#,
                limit_field: r#""login";r=0;t=2"#,
                retry_after: Some("2"),
            },
            Case {
                description: "cost above burst is denied without Retry-After",
                policy: "upload",
                quota: per_second,
                decision: decision_after(&per_second, 1, 4),
                policy_field: r#""upload";q=1;w=1"#,
                limit_field: r#""upload";r=2;t=1"#,
                retry_after: None,
            },
            Case {
                description: "sub-second period is scaled to a one-second window",
                policy: "burst",
                quota: half_second,
                decision: decision_after(&half_second, 0, 1),
                policy_field: r#""burst";q=20;w=1"#,
                limit_field: r#""burst";r=9;t=1"#,
                retry_after: None,
            },
            Case {
                description: "fractional period rounds the window up and the quota down",
                policy: "uneven",
                quota: uneven,
                decision: decision_after(&uneven, 0, 1),
                policy_field: r#""uneven";q=4;w=2"#,
                limit_field: r#""uneven";r=2;t=1"#,
                retry_after: None,
            },
            Case {
                description: "quote and backslash in the policy name are escaped",
                policy: r#"a"b\c"#,
                quota: per_minute,
                decision: decision_after(&per_minute, 0, 1),
                policy_field: r#""a\"b\\c";q=100;w=60"#,
                limit_field: r#""a\"b\\c";r=99;t=1"#,
                retry_after: None,
            },
            Case {
                description: "non-ASCII and control characters are replaced",
                policy: "caf\u{e9}\tx",
                quota: per_minute,
                decision: decision_after(&per_minute, 0, 1),
                policy_field: r#""caf__x";q=100;w=60"#,
                limit_field: r#""caf__x";r=99;t=1"#,
                retry_after: None,
            },
            Case {
                description: "idle state reports a zero effective window",
                policy: "api",
                quota: per_minute,
                decision: decision_after(&per_minute, 0, 0),
                policy_field: r#""api";q=100;w=60"#,
                limit_field: r#""api";r=100;t=0"#,
                retry_after: None,
            },
        ]
    }

    #[test]
    fn apply_writes_exact_field_values() {
        for case in cases() {
            let mut headers = HeaderMap::new();

            apply(&mut headers, case.policy, &case.quota, &case.decision);

            assert_eq!(
                field(&headers, &RATELIMIT_POLICY),
                Some(case.policy_field),
                "RateLimit-Policy: {}",
                case.description
            );
            assert_eq!(
                field(&headers, &RATELIMIT),
                Some(case.limit_field),
                "RateLimit: {}",
                case.description
            );
            assert_eq!(
                field(&headers, &RETRY_AFTER),
                case.retry_after,
                "Retry-After: {}",
                case.description
            );
        }
    }

    #[test]
    fn apply_replaces_previous_values() {
        let quota = quota(100, Duration::from_secs(60), 100);
        let mut headers = HeaderMap::new();
        headers.insert(RATELIMIT, HeaderValue::from_static("\"old\";r=1;t=1"));

        apply(&mut headers, "api", &quota, &decision_after(&quota, 0, 1));

        let values: Vec<_> = headers.get_all(RATELIMIT).iter().collect();
        assert_eq!(values, [r#""api";r=99;t=1"#]);
    }

    #[test]
    fn huge_period_clamps_to_sf_integer_range() {
        // 2^61 ns between requests and u32::MAX requests: a period of about
        // 1e19 seconds, beyond the 15 digits a structured integer may have.
        let interval: u128 = 1 << 61;
        let period_nanos = interval * u128::from(u32::MAX);
        let period = Duration::new(
            u64::try_from(period_nanos / NANOS_PER_SECOND).unwrap(),
            u32::try_from(period_nanos % NANOS_PER_SECOND).unwrap(),
        );
        let quota = quota(u32::MAX, period, 1);
        let mut headers = HeaderMap::new();

        apply(&mut headers, "p", &quota, &decision_after(&quota, 1, 1));

        assert_eq!(
            field(&headers, &RATELIMIT_POLICY),
            Some(r#""p";q=433680;w=999999999999999"#)
        );
        assert_eq!(field(&headers, &RATELIMIT), Some(r#""p";r=0;t=2305843010"#));
        assert_eq!(field(&headers, &RETRY_AFTER), Some("2305843010"));
    }

    #[test]
    fn most_restrictive_decision_drives_headers() {
        let hourly = quota(1000, Duration::from_secs(3600), 1000);
        let per_second = quota(5, Duration::from_secs(1), 5);
        let hourly_decision = decision_after(&hourly, 10, 1);
        let per_second_decision = decision_after(&per_second, 5, 1);

        let chosen = Decision::most_restrictive(hourly_decision, per_second_decision);
        assert_eq!(chosen, per_second_decision);

        let mut headers = HeaderMap::new();
        apply(&mut headers, "per_second", &per_second, &chosen);
        assert_eq!(field(&headers, &RATELIMIT), Some(r#""per_second";r=0;t=1"#));
        assert_eq!(field(&headers, &RETRY_AFTER), Some("1"));
    }

    #[test]
    fn apply_all_lists_every_policy_and_the_longest_retry() {
        let rate = quota(10, Duration::from_secs(1), 10);
        let admitted = decision_after(&rate, 0, 1);
        let quota_denied = Decision {
            allowed: false,
            limit: 1000,
            remaining: 0,
            reset_after: Duration::from_secs(3600),
            retry_after: Some(Duration::from_secs(3600)),
        };
        let items = [
            Item::rate("per-client", &rate, &admitted),
            Item {
                policy: "daily",
                quota: 1000,
                window: 86_400,
                decision: &quota_denied,
            },
        ];
        let mut headers = HeaderMap::new();

        apply_all(&mut headers, &items);

        assert_eq!(
            field(&headers, &RATELIMIT_POLICY),
            Some(r#""per-client";q=10;w=1, "daily";q=1000;w=86400"#)
        );
        assert_eq!(
            field(&headers, &RATELIMIT),
            Some(r#""per-client";r=9;t=1, "daily";r=0;t=3600"#)
        );
        assert_eq!(field(&headers, &RETRY_AFTER), Some("3600"));
    }
}
