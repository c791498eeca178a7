//! Rate limiting: counts each request against the route's policies (and
//! the global ones) under keys built from the client IP, subject, client
//! id, route or claims, and rejects it with 429 once a limit is reached.
//!
//! Runs after authentication, so keys can use verified identity, and before
//! authorization.

pub mod attempts;
pub mod circuit;
pub mod clock;
pub mod concurrency;
pub mod config;
pub mod gcra;
pub mod headers;
pub mod memory;
pub mod redis;
pub mod reserve;
pub mod window;

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::metrics::Metrics;
use crate::authn::Identity;
use crate::ratelimit::clock::SystemClock;
use crate::ratelimit::concurrency::{Lease, LocalConcurrency};
use crate::ratelimit::config::{KeyPart, Limit, RateLimitPolicy, StoreConfig, StoreFailure};
use crate::ratelimit::gcra::{Decision, Quota};
use crate::ratelimit::memory::MemoryStore;
use crate::ratelimit::redis::{Call, RedisStore, Reply};
use crate::ratelimit::reserve::{Grant, Reserves, Take};
use crate::ratelimit::window::{Span, WindowCounters};

/// The values a request is counted by.
pub struct KeyInputs<'a> {
    pub client_ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub route_id: &'a str,
    pub tenant: Option<&'a str>,
}

/// The outcome of all limits for one request.
#[derive(Default)]
pub struct Outcome {
    /// The share of each limit the decisions below enforced.
    share: u32,
    /// The decision of each rate and quota policy, for the response's
    /// `RateLimit` fields.
    pub reports: Vec<Report>,
    /// Concurrency slots the request keeps until its response ends.
    pub leases: Vec<Lease>,
    pub verdict: Verdict,
}

/// One policy's decision, as the response reports it.
pub struct Report {
    pub policy: Arc<RateLimitPolicy>,
    pub decision: Decision,
    /// The window of a quota, whose length the response advertises.
    pub span: Option<Span>,
    /// The in-process key it was counted under; `None` when the shared
    /// store counted it.
    local_key: Option<u64>,
    /// The part of the limit that was enforced: 1, or the instance count
    /// when the shared store was unavailable.
    share: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    Admitted,
    /// A rate or quota is exhausted.
    Limited { retry_after: Duration },
    /// Every concurrency slot of a key is taken.
    Concurrency,
    /// The shared store is unavailable and the route is set to deny.
    StoreUnavailable { retry_after: Duration },
}

/// Counts requests against rate-limit policies, in process or in the
/// shared store. Shared between configuration generations, so a reload
/// keeps the counts.
pub struct Limiter {
    memory: MemoryStore<SystemClock>,
    windows: WindowCounters,
    concurrency: Arc<LocalConcurrency>,
    shared: Option<RedisStore>,
    /// Tokens of shared rate limits taken from the store ahead of need.
    reserves: Reserves,
    /// Gateway instances sharing the store: the local fallback enforces
    /// this share of each limit.
    instances: u32,
    metrics: Arc<Metrics>,
}

/// Stands in for a key part the request does not have (such as the
/// subject on a public route); all such requests share one bucket.
const ABSENT: &[u8] = b"\x00absent";

/// Marks the in-process buckets that stand in for shared ones during an
/// outage, so they never mix with a policy that is local by design.
const FALLBACK: &[u8] = b"\x00fallback";

impl Limiter {
    pub fn new(max_keys: usize, store: &StoreConfig, metrics: Arc<Metrics>) -> Self {
        let max_keys = NonZeroUsize::new(max_keys.max(1)).unwrap();
        let (shared, instances, reserve_for) = match store {
            StoreConfig::Memory => (None, 1, Duration::ZERO),
            StoreConfig::Redis(config) => (
                Some(RedisStore::new(config.clone(), metrics.clone())),
                config.instances,
                config.reserve_for,
            ),
        };
        Limiter {
            memory: MemoryStore::new(SystemClock::new(), max_keys),
            windows: WindowCounters::new(max_keys),
            concurrency: Arc::new(LocalConcurrency::default()),
            shared,
            reserves: Reserves::new(reserve_for, max_keys.get()),
            instances,
            metrics,
        }
    }

    /// Connects the shared store, waiting up to `within` for it.
    pub async fn connect(&self, within: Duration) {
        if let Some(shared) = &self.shared {
            shared.connect(within).await;
        }
    }

    /// Counts the request against every policy: the in-process ones here,
    /// the shared ones from this instance's reserves or in one round trip
    /// to the store. Returns `None` when no policy applies.
    pub async fn check(
        &self,
        policies: &[&Arc<RateLimitPolicy>],
        inputs: &KeyInputs<'_>,
        on_failure: StoreFailure,
    ) -> Option<Outcome> {
        if policies.is_empty() {
            return None;
        }
        let mut outcome = Outcome {
            share: 1,
            ..Outcome::default()
        };
        let mut shared = Vec::new();
        for &policy in policies {
            match &self.shared {
                Some(_) if policy.shared => shared.push(policy),
                _ => self.check_local(policy, inputs, 1, &mut outcome),
            }
        }
        if !shared.is_empty() {
            self.check_shared(&shared, inputs, on_failure, &mut outcome)
                .await;
        }
        if outcome.verdict != Verdict::Admitted {
            self.undo(&mut outcome, inputs);
        }
        Some(outcome)
    }

    /// Adds the outcome of a later check of the same request to `earlier`.
    /// When the later one refuses the request, `earlier` gives back what
    /// it took from quotas and concurrency slots, as one check refused by
    /// any of its policies does.
    pub fn combine(&self, mut earlier: Outcome, later: Outcome, inputs: &KeyInputs) -> Outcome {
        if later.verdict != Verdict::Admitted {
            self.undo(&mut earlier, inputs);
            earlier.verdict = later.verdict;
        }
        earlier.reports.extend(later.reports);
        earlier.leases.extend(later.leases);
        earlier
    }

    fn check_local(
        &self,
        policy: &Arc<RateLimitPolicy>,
        inputs: &KeyInputs,
        share: u32,
        outcome: &mut Outcome,
    ) {
        let marker = (share > 1 || policy.shared).then_some(FALLBACK);
        outcome.share = share;
        let key = self
            .memory
            .key_hash(&key_parts(policy, inputs, marker).as_refs());
        match &policy.limit {
            Limit::Rate(quota) => {
                let quota = divided(quota, share);
                let decision = self.memory.check(key, &quota);
                outcome.rate(policy, decision, None, Some(key));
            }
            Limit::Window(window) => {
                let now = jiff::Timestamp::now();
                let span = window.span(now);
                let limit = (window.limit / u64::from(share)).max(1);
                let (allowed, used) = self.windows.check(key, limit, span);
                let decision = window.decision(allowed, used, span, now);
                outcome.rate(policy, decision, Some(span), Some(key));
            }
            Limit::Concurrent { max, .. } => {
                let max = (max.get() / share).max(1);
                match self.concurrency.acquire(key, max) {
                    Some(lease) => outcome.leases.push(lease),
                    None => outcome.refuse(Verdict::Concurrency),
                }
            }
        }
    }

    async fn check_shared(
        &self,
        policies: &[&Arc<RateLimitPolicy>],
        inputs: &KeyInputs<'_>,
        on_failure: StoreFailure,
        outcome: &mut Outcome,
    ) {
        let store = self.shared.as_ref().expect("shared policies need a store");
        let now = jiff::Timestamp::now();
        let sent_at = Instant::now();
        let mut sent = Vec::new();
        let mut refills = Refills {
            reserves: &self.reserves,
            keys: Vec::new(),
        };
        let mut calls = Vec::new();
        for &policy in policies {
            let parts = key_parts(policy, inputs, None);
            let mut requested = 1;
            let mut refill = None;
            if let Limit::Rate(quota) = &policy.limit {
                // A spent reserve token needs no digest and no call, only
                // the in-process hash of the key.
                let reserve = self.memory.key_hash(&parts.as_refs());
                match self.reserves.take(reserve, quota, sent_at) {
                    Take::Spent(decision) => {
                        self.metrics.store_reserved();
                        outcome.rate(policy, decision, None, None);
                        continue;
                    }
                    Take::Ask { tokens, refill: r } => {
                        requested = tokens;
                        refill = r.then_some(reserve);
                    }
                }
            }
            let digest = digest_of(&parts);
            sent.push(policy);
            refills.keys.push(refill);
            calls.push(shared_call(
                store.key_prefix(),
                policy,
                &digest,
                requested,
                now,
            ));
        }
        if calls.is_empty() {
            return;
        }

        let replies = match store.run(calls).await {
            Ok(replies) => replies,
            Err(unavailable) => {
                drop(refills);
                self.fall_back(&sent, inputs, on_failure, unavailable, outcome);
                return;
            }
        };
        for ((policy, reply), refill) in sent.into_iter().zip(replies).zip(&mut refills.keys) {
            if let Some(key) = refill.take() {
                self.reserves.granted(key, grant_of(&reply), sent_at);
            }
            record_reply(policy, reply, now, outcome);
        }
    }

    /// Decides the shared policies without the store, as the route's `on_store_failure` sets.
    fn fall_back(
        &self,
        policies: &[&Arc<RateLimitPolicy>],
        inputs: &KeyInputs,
        on_failure: StoreFailure,
        unavailable: redis::Unavailable,
        outcome: &mut Outcome,
    ) {
        match on_failure {
            StoreFailure::Deny => {
                self.metrics.store_fallback("deny");
                let retry_after = unavailable.retry_after();
                outcome.refuse(Verdict::StoreUnavailable { retry_after });
            }
            StoreFailure::Local => {
                self.metrics.store_fallback("local");
                for &policy in policies {
                    self.check_local(policy, inputs, self.instances, outcome);
                }
            }
        }
    }

    /// Gives back what a refused request took: its concurrency slots (by
    /// dropping them) and the quota requests it was counted for.
    fn undo(&self, outcome: &mut Outcome, inputs: &KeyInputs) {
        outcome.leases.clear();
        for report in &mut outcome.reports {
            let (Limit::Window(_), Some(span), true) =
                (&report.policy.limit, report.span, report.decision.allowed)
            else {
                continue;
            };
            // The response reports the quota as it is after the refund.
            report.decision.remaining = report.decision.remaining.saturating_add(1);
            match (report.local_key, &self.shared) {
                (Some(key), _) => self.windows.refund(key, span),
                (None, Some(store)) => {
                    store.refund(quota_key(store.key_prefix(), &report.policy, inputs, span));
                }
                (None, None) => {}
            }
        }
    }
}

impl Outcome {
    fn rate(
        &mut self,
        policy: &Arc<RateLimitPolicy>,
        decision: Decision,
        span: Option<Span>,
        local_key: Option<u64>,
    ) {
        if !decision.allowed {
            let retry_after = decision.retry_after.unwrap_or(decision.reset_after);
            let longest = match self.verdict {
                Verdict::Limited { retry_after: other } => retry_after.max(other),
                _ => retry_after,
            };
            self.refuse(Verdict::Limited {
                retry_after: longest,
            });
        }
        self.reports.push(Report {
            policy: policy.clone(),
            decision,
            span,
            local_key,
            share: self.share,
        });
    }

    /// Records a refusal; an unavailable store outranks a limit, and a
    /// limit outranks a full concurrency limit.
    fn refuse(&mut self, verdict: Verdict) {
        let rank = |v: &Verdict| match v {
            Verdict::Admitted => 0,
            Verdict::Concurrency => 1,
            Verdict::Limited { .. } => 2,
            Verdict::StoreUnavailable { .. } => 3,
        };
        if rank(&verdict) >= rank(&self.verdict) {
            self.verdict = verdict;
        }
    }

    /// Returns the `RateLimit` items of the response, one per rate or quota.
    pub fn header_items(&self) -> Vec<headers::Item<'_>> {
        self.reports
            .iter()
            .filter_map(|report| {
                let name = report.policy.name.as_str();
                match (&report.policy.limit, report.span) {
                    (Limit::Rate(quota), _) => Some(headers::Item::rate(
                        name,
                        &divided(quota, report.share),
                        &report.decision,
                    )),
                    (Limit::Window(window), Some(span)) => Some(headers::Item {
                        policy: name,
                        quota: (window.limit / u64::from(report.share.max(1))).max(1),
                        window: span.end.saturating_sub(span.start).max(0) as u64,
                        decision: &report.decision,
                    }),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Returns the part of a limit one instance enforces alone.
fn divided(quota: &Quota, share: u32) -> Quota {
    if share <= 1 {
        return *quota;
    }
    let part = |n: NonZeroU32| NonZeroU32::new((n.get() / share).max(1)).unwrap();
    Quota::with_burst(part(quota.requests()), quota.period(), part(quota.burst())).unwrap_or(*quota)
}

/// Builds the store call of `policy` for the key whose parts hash to
/// `digest`, taking up to `requested` tokens of a rate.
fn shared_call(
    prefix: &str,
    policy: &RateLimitPolicy,
    digest: &str,
    requested: u32,
    now: jiff::Timestamp,
) -> Call {
    match &policy.limit {
        Limit::Rate(quota) => Call::Rate {
            key: format!("{prefix}:gcra:{{{digest}}}"),
            // Rounded up, so the shared rate never exceeds the configured one.
            interval_us: quota.emission_interval().as_nanos().div_ceil(1000) as u64,
            burst: quota.burst().get(),
            cost: 1,
            requested,
        },
        Limit::Window(window) => {
            let span = window.span(now);
            Call::Quota {
                key: format!("{prefix}:quota:{{{digest}}}:{}", span.start),
                limit: window.limit,
                // An hour past the window's end, so a late instance still
                // finds the count.
                expire_at: span.end + 3600,
            }
        }
        Limit::Concurrent { max, lease } => Call::Acquire {
            key: format!("{prefix}:conc:{{{digest}}}"),
            max: max.get(),
            lease: *lease,
        },
    }
}

fn quota_key(prefix: &str, policy: &RateLimitPolicy, inputs: &KeyInputs, span: Span) -> String {
    let digest = shared_digest(policy, inputs);
    format!("{prefix}:quota:{{{digest}}}:{}", span.start)
}

fn record_reply(
    policy: &Arc<RateLimitPolicy>,
    reply: Reply,
    now: jiff::Timestamp,
    outcome: &mut Outcome,
) {
    match (reply, &policy.limit) {
        (
            Reply::Rate {
                allowed,
                remaining,
                reset_after,
                retry_after,
                ..
            },
            Limit::Rate(quota),
        ) => {
            let decision = Decision {
                allowed,
                limit: quota.burst().get(),
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_after,
                retry_after,
            };
            outcome.rate(policy, decision, None, None);
        }
        (Reply::Quota { allowed, used }, Limit::Window(window)) => {
            let span = window.span(now);
            let decision = window.decision(allowed, used, span, now);
            outcome.rate(policy, decision, Some(span), None);
        }
        (Reply::Acquire(Some(lease)), _) => outcome.leases.push(Lease::Shared(lease)),
        (Reply::Acquire(None), _) => outcome.refuse(Verdict::Concurrency),
        _ => unreachable!("the store answers each call with its own kind of reply"),
    }
}

/// Keys whose reserves wait for the store's reply, in call order. When it
/// is dropped before the reply arrives, because the call failed or the
/// client went away, later requests may refill those keys. Without it a
/// key would wait for good for a refill that never comes.
struct Refills<'a> {
    reserves: &'a Reserves,
    keys: Vec<Option<u64>>,
}

impl Drop for Refills<'_> {
    fn drop(&mut self) {
        for &key in self.keys.iter().flatten() {
            self.reserves.failed(key);
        }
    }
}

/// Returns what a rate reply granted toward the reserve of its key.
fn grant_of(reply: &Reply) -> Grant {
    match reply {
        Reply::Rate {
            granted,
            remaining,
            reset_after,
            ..
        } => Grant {
            tokens: *granted,
            remaining: u32::try_from(*remaining).unwrap_or(u32::MAX),
            reset_after: *reset_after,
        },
        _ => Grant {
            tokens: 0,
            remaining: 0,
            reset_after: Duration::ZERO,
        },
    }
}

/// A key's parts, owned: the policy name, then one value per key part.
struct KeyParts(Vec<Vec<u8>>);

impl KeyParts {
    fn as_refs(&self) -> Vec<&[u8]> {
        self.0.iter().map(Vec::as_slice).collect()
    }
}

fn key_parts(policy: &RateLimitPolicy, inputs: &KeyInputs, marker: Option<&[u8]>) -> KeyParts {
    let mut parts: Vec<Vec<u8>> = vec![policy.name.as_bytes().to_vec()];
    if let Some(marker) = marker {
        parts.push(marker.to_vec());
    }
    for part in &policy.key {
        // A subject or client id is unique only within its issuer
        // (OpenID Connect Core 1.0, section 2), and two tenants'
        // providers may both issue `sub: reader`, so the issuer is
        // counted with them.
        if matches!(part, KeyPart::Subject | KeyPart::Client) {
            parts.push(
                inputs
                    .identity
                    .map_or(ABSENT, |i| i.issuer.as_bytes())
                    .to_vec(),
            );
        }
        let value: Vec<u8> = match part {
            KeyPart::Ip => ip_octets(inputs.client_ip),
            KeyPart::Subject => present(inputs.identity.and_then(|i| i.subject.as_deref())),
            KeyPart::Client => present(inputs.identity.and_then(|i| i.client_id.as_deref())),
            KeyPart::Route => inputs.route_id.as_bytes().to_vec(),
            KeyPart::Tenant => present(inputs.tenant),
            KeyPart::Claim(path) => {
                let text = inputs.identity.and_then(|i| i.claim_text(path));
                present(text.as_deref())
            }
        };
        parts.push(value);
    }
    KeyParts(parts)
}

/// Returns the bytes of an IP address, as limit keys count it.
pub fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn present(value: Option<&str>) -> Vec<u8> {
    match value {
        Some(text) if !text.is_empty() => text.as_bytes().to_vec(),
        _ => ABSENT.to_vec(),
    }
}

/// Returns the shared key of a policy for a request: SHA-256 over the
/// length-prefixed parts, first 128 bits in hex. Identities, client IPs
/// and tokens never reach the store in the clear.
fn shared_digest(policy: &RateLimitPolicy, inputs: &KeyInputs) -> String {
    digest_of(&key_parts(policy, inputs, None))
}

/// Returns the first 128 bits of a SHA-256 of the key parts, in hex.
fn digest_of(parts: &KeyParts) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in &parts.0 {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    hex::encode(&context.finish().as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::ratelimit::config::{CircuitConfig, RedisConfig, RedisEndpoints};
    use crate::ratelimit::gcra::Quota;

    #[test]
    fn subject_and_client_counted_per_issuer() {
        let quota = Quota::new(NonZeroU32::new(1).unwrap(), Duration::from_secs(60)).unwrap();
        for part in [KeyPart::Subject, KeyPart::Client] {
            let policy = Arc::new(RateLimitPolicy {
                name: "per-caller".into(),
                limit: Limit::Rate(quota),
                key: vec![part.clone()],
                shared: false,
            });
            let limiter = Limiter::new(100, &StoreConfig::Memory, Arc::new(Metrics::new()));
            let caller = |issuer: &str| Identity {
                subject: Some("reader".into()),
                client_id: Some("reader".into()),
                ..Identity::for_tests(issuer)
            };
            let (first, second) = (caller("https://first.test"), caller("https://second.test"));
            let check = |identity: &Identity| {
                let inputs = KeyInputs {
                    client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    identity: Some(identity),
                    route_id: "list-users",
                    tenant: None,
                };
                let policies = [&policy];
                let check = limiter.check(&policies, &inputs, StoreFailure::Local);
                let outcome = futures_util::FutureExt::now_or_never(check)
                    .unwrap()
                    .unwrap();
                outcome.verdict == Verdict::Admitted
            };

            assert!(
                check(&first),
                "{part:?}: first request of the first issuer's caller"
            );
            assert!(
                !check(&first),
                "{part:?}: second request of the first issuer's caller"
            );
            assert!(
                check(&second),
                "{part:?}: same id under another issuer shares the bucket"
            );
        }
    }

    fn policy(name: &str, limit: Limit) -> Arc<RateLimitPolicy> {
        Arc::new(RateLimitPolicy {
            name: name.into(),
            limit,
            key: vec![KeyPart::Ip],
            shared: false,
        })
    }

    fn daily_quota(limit: u64) -> Arc<RateLimitPolicy> {
        let window = crate::ratelimit::window::WindowQuota::new(
            limit,
            crate::ratelimit::window::CalendarWindow::Day,
            jiff::tz::TimeZone::UTC,
            "UTC".into(),
        );
        policy("daily", Limit::Window(window))
    }

    fn verdict(limiter: &Limiter, policies: &[&Arc<RateLimitPolicy>]) -> (Verdict, Outcome) {
        let inputs = KeyInputs {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            identity: None,
            route_id: "reports",
            tenant: None,
        };
        let check = limiter.check(policies, &inputs, StoreFailure::Local);
        let outcome = futures_util::FutureExt::now_or_never(check)
            .unwrap()
            .unwrap();
        (outcome.verdict, outcome)
    }

    #[test]
    fn refused_request_gives_back_quota_and_slots() {
        let limiter = Limiter::new(100, &StoreConfig::Memory, Arc::new(Metrics::new()));
        let rate = policy(
            "rate",
            Limit::Rate(Quota::new(NonZeroU32::new(1).unwrap(), Duration::from_secs(60)).unwrap()),
        );
        let daily = daily_quota(2);
        let slots = policy(
            "slots",
            Limit::Concurrent {
                max: NonZeroU32::new(1).unwrap(),
                lease: Duration::from_secs(30),
            },
        );
        let all = [&rate, &daily, &slots];

        let (first, held) = verdict(&limiter, &all);
        assert_eq!(first, Verdict::Admitted);
        assert_eq!(held.leases.len(), 1);
        assert_eq!(
            verdict(&limiter, &[&slots]).0,
            Verdict::Concurrency,
            "the first request still holds the slot"
        );
        drop(held);

        let (second, refused) = verdict(&limiter, &all);
        assert!(matches!(second, Verdict::Limited { .. }), "{second:?}");
        assert!(refused.leases.is_empty(), "a refused request holds no slot");

        assert_eq!(
            verdict(&limiter, &[&daily]).0,
            Verdict::Admitted,
            "the refused request's quota was given back"
        );
        assert!(matches!(
            verdict(&limiter, &[&daily]).0,
            Verdict::Limited { .. }
        ));
        assert_eq!(verdict(&limiter, &[&slots]).0, Verdict::Admitted);
    }

    #[test]
    fn ip_keys_checked_before_authentication() {
        let claim = KeyPart::Claim("org".into());
        // (key, whether the tenant is known before authentication, checked
        // before authentication)
        let cases = [
            (vec![KeyPart::Ip], false, true),
            (vec![KeyPart::Ip, KeyPart::Route], false, true),
            (vec![KeyPart::Tenant, KeyPart::Ip], true, true),
            (vec![KeyPart::Tenant, KeyPart::Ip], false, false),
            (vec![KeyPart::Ip, KeyPart::Subject], true, false),
            (vec![KeyPart::Client, KeyPart::Ip], true, false),
            (vec![KeyPart::Ip, claim.clone()], true, false),
            (vec![KeyPart::Route], true, false),
            (vec![KeyPart::Tenant], true, false),
            (vec![KeyPart::Subject], true, false),
            (vec![claim], true, false),
        ];
        for (key, tenant_known, expected) in cases {
            let policy = RateLimitPolicy {
                name: "policy".into(),
                limit: Limit::Rate(
                    Quota::new(NonZeroU32::new(1).unwrap(), Duration::from_secs(60)).unwrap(),
                ),
                key: key.clone(),
                shared: false,
            };
            assert_eq!(
                policy.before_authentication(tenant_known),
                expected,
                "{key:?}, tenant known: {tenant_known}"
            );
        }
    }

    #[test]
    fn later_refusal_gives_back_earlier_quota() {
        let limiter = Limiter::new(100, &StoreConfig::Memory, Arc::new(Metrics::new()));
        let daily = daily_quota(1);
        let rate = policy(
            "rate",
            Limit::Rate(Quota::new(NonZeroU32::new(1).unwrap(), Duration::from_secs(60)).unwrap()),
        );
        let inputs = KeyInputs {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            identity: None,
            route_id: "reports",
            tenant: None,
        };

        // The rate admits one request a minute: this one.
        assert_eq!(verdict(&limiter, &[&rate]).0, Verdict::Admitted);
        let (earlier, quota_taken) = verdict(&limiter, &[&daily]);
        assert_eq!(earlier, Verdict::Admitted);
        let (later, refused) = verdict(&limiter, &[&rate]);
        assert!(matches!(later, Verdict::Limited { .. }), "{later:?}");
        let combined = limiter.combine(quota_taken, refused, &inputs);

        assert_eq!(combined.verdict, later);
        assert_eq!(combined.reports.len(), 2, "both checks are reported");
        assert_eq!(
            verdict(&limiter, &[&daily]).0,
            Verdict::Admitted,
            "the earlier check's quota was given back"
        );
    }

    /// A request cancelled while its refill call waits (its client went
    /// away) must not leave the key waiting for that refill for good.
    #[tokio::test]
    async fn cancelled_refill_lets_the_next_request_refill() {
        let store = StoreConfig::Redis(Arc::new(RedisConfig {
            endpoints: RedisEndpoints::Single("redis://127.0.0.1:1".into()),
            username: None,
            password: None,
            ca: None,
            key_prefix: "test".into(),
            timeout: Duration::from_secs(5),
            connections: 1,
            instances: 1,
            reserve_for: Duration::from_millis(50),
            circuit: CircuitConfig {
                failures: 3,
                open_for: Duration::from_secs(1),
                max_open_for: Duration::from_secs(1),
            },
        }));
        // Never connected: every call waits for a connection until the
        // timeout.
        let limiter = Limiter::new(100, &store, Arc::new(Metrics::new()));
        let quota = Quota::new(NonZeroU32::new(1_000).unwrap(), Duration::from_secs(1)).unwrap();
        let policy = Arc::new(RateLimitPolicy {
            name: "fast".into(),
            limit: Limit::Rate(quota),
            key: vec![KeyPart::Ip],
            shared: true,
        });
        let inputs = KeyInputs {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            identity: None,
            route_id: "r",
            tenant: None,
        };

        let policies = [&policy];
        let check = limiter.check(&policies, &inputs, StoreFailure::Local);
        let cancelled = tokio::time::timeout(Duration::from_millis(20), check).await;
        assert!(
            cancelled.is_err(),
            "the check should still wait for the store"
        );

        let key = limiter
            .memory
            .key_hash(&key_parts(&policy, &inputs, None).as_refs());
        let next = limiter.reserves.take(key, &quota, Instant::now());
        assert!(
            matches!(next, Take::Ask { refill: true, .. }),
            "the next request should refill the key: {next:?}"
        );
    }

    #[test]
    fn fallback_enforces_the_instance_share() {
        let quota = Quota::new(NonZeroU32::new(6).unwrap(), Duration::from_secs(60)).unwrap();
        let cases = [(1, 6), (2, 3), (4, 1), (10, 1)];
        for (instances, expected) in cases {
            let divided = divided(&quota, instances);
            assert_eq!(
                (divided.requests().get(), divided.burst().get()),
                (expected, expected),
                "{instances} instances"
            );
            assert_eq!(divided.period(), quota.period());
        }
    }
}
