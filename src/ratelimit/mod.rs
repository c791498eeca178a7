//! Rate limiting: counts each request against the route's policies (and
//! the global ones) under keys built from the client IP, subject, client
//! id, route or claims, and rejects it with 429 once a limit is reached.
//!
//! Runs after authentication, so keys can use verified identity, and before
//! authorization.

pub mod clock;
pub mod config;
pub mod gcra;
pub mod headers;
pub mod memory;

use std::net::IpAddr;
use std::sync::Arc;

use crate::authn::Identity;
use crate::ratelimit::clock::SystemClock;
use crate::ratelimit::config::{KeyPart, RateLimitPolicy};
use crate::ratelimit::gcra::Decision;
use crate::ratelimit::memory::MemoryStore;

/// The values a request is counted by.
pub struct KeyInputs<'a> {
    pub client_ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub route_id: &'a str,
    pub tenant: Option<&'a str>,
}

/// The outcome of all limits for one request: the most restrictive
/// decision and the policy it came from.
pub struct Outcome {
    pub decision: Decision,
    pub policy: Arc<RateLimitPolicy>,
}

pub struct Limiter {
    store: MemoryStore<SystemClock>,
}

/// Stands in for a key part the request does not have (such as the
/// subject on a public route); all such requests share one bucket.
const ABSENT: &[u8] = b"\x00absent";

impl Limiter {
    pub fn new(max_keys: usize) -> Self {
        Limiter {
            store: MemoryStore::new(
                SystemClock::new(),
                std::num::NonZeroUsize::new(max_keys.max(1)).unwrap(),
            ),
        }
    }

    /// Counts the request against every policy. Returns `None` when no
    /// policy applies.
    pub fn check<'p>(
        &self,
        policies: impl Iterator<Item = &'p Arc<RateLimitPolicy>>,
        inputs: &KeyInputs,
    ) -> Option<Outcome> {
        let mut outcome: Option<Outcome> = None;
        for policy in policies {
            let key = self.key(policy, inputs);
            let decision = self.store.check(key, &policy.quota);
            outcome = Some(match outcome {
                Some(current)
                    if decision.cmp_restrictiveness(&current.decision)
                        != std::cmp::Ordering::Greater =>
                {
                    current
                }
                _ => Outcome {
                    decision,
                    policy: policy.clone(),
                },
            });
        }
        outcome
    }

    fn key(&self, policy: &RateLimitPolicy, inputs: &KeyInputs) -> u64 {
        let ip = match inputs.client_ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let mut claims: Vec<String> = Vec::new();
        for part in &policy.key {
            if let KeyPart::Claim(path) = part {
                claims.push(
                    inputs
                        .identity
                        .and_then(|i| i.claim_text(path))
                        .unwrap_or_default(),
                );
            }
        }
        let mut claim_values = claims.iter();
        let mut parts: Vec<&[u8]> = vec![policy.name.as_bytes()];
        for part in &policy.key {
            // A subject or client id is unique only within its issuer
            // (OpenID Connect Core 1.0, section 2), and two tenants'
            // providers may both issue `sub: reader`, so the issuer is
            // counted with them.
            if matches!(part, KeyPart::Subject | KeyPart::Client) {
                parts.push(inputs.identity.map_or(ABSENT, |i| i.issuer.as_bytes()));
            }
            let value: &[u8] = match part {
                KeyPart::Ip => &ip,
                KeyPart::Subject => inputs
                    .identity
                    .and_then(|i| i.subject.as_deref())
                    .map_or(ABSENT, str::as_bytes),
                KeyPart::Client => inputs
                    .identity
                    .and_then(|i| i.client_id.as_deref())
                    .map_or(ABSENT, str::as_bytes),
                KeyPart::Route => inputs.route_id.as_bytes(),
                KeyPart::Tenant => inputs.tenant.map_or(ABSENT, str::as_bytes),
                KeyPart::Claim(_) => claim_values.next().map_or(ABSENT, |v| {
                    if v.is_empty() {
                        ABSENT
                    } else {
                        v.as_bytes()
                    }
                }),
            };
            parts.push(value);
        }
        self.store.key_hash(&parts)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;
    use crate::ratelimit::gcra::Quota;

    #[test]
    fn subject_and_client_counted_per_issuer() {
        let quota = Quota::new(NonZeroU32::new(1).unwrap(), Duration::from_secs(60)).unwrap();
        for part in [KeyPart::Subject, KeyPart::Client] {
            let policy = Arc::new(RateLimitPolicy {
                name: "per-caller".into(),
                quota,
                key: vec![part.clone()],
            });
            let limiter = Limiter::new(100);
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
                limiter
                    .check(std::iter::once(&policy), &inputs)
                    .unwrap()
                    .decision
                    .allowed
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
}
