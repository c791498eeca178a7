//! Decision cache: keyed by bundle version, rule, tenant and input digest,
//! bounded, TTL-limited on a clock the test controls.

use std::time::{Duration, Instant};

use portcullis::authz::decision_cache::{DecisionCache, DecisionKey};
use portcullis::authz::policy::{Decision, PolicyFailure, POLICY_ALLOWED, POLICY_ERROR};
use serde_json::{json, Value};

const TTL: Duration = Duration::from_secs(5);
const RULE: &str = "data.users.allow_delete";

fn allowed() -> Decision {
    Decision {
        allowed: true,
        reason: POLICY_ALLOWED,
        result: Some(Value::Bool(true)),
        obligations: None,
        duration: Duration::from_micros(7),
        failure: None,
    }
}

fn key(version: &str, tenant: Option<&str>, input: &Value) -> DecisionKey {
    DecisionKey::new(version, RULE, tenant, input, None)
}

#[test]
fn identical_input_hits() {
    let cache = DecisionCache::new(TTL, 100);
    let now = Instant::now();
    let input =
        json!({"method": "DELETE", "route": {"params": {"id": "u-bob"}}, "roles": ["admin"]});
    let reordered =
        json!({"roles": ["admin"], "route": {"params": {"id": "u-bob"}}, "method": "DELETE"});

    cache.insert(key("v1", Some("acme"), &input), &allowed(), now);

    assert_eq!(
        cache.get(&key("v1", Some("acme"), &reordered), now),
        Some(allowed())
    );
}

#[test]
fn different_input_misses() {
    let cache = DecisionCache::new(TTL, 100);
    let now = Instant::now();
    cache.insert(
        key("v1", Some("acme"), &json!({"roles": ["admin"]})),
        &allowed(),
        now,
    );

    assert_eq!(
        cache.get(&key("v1", Some("acme"), &json!({"roles": ["user"]})), now),
        None
    );
    assert_eq!(
        cache.get(
            &key("v1", Some("acme"), &json!({"roles": ["admin"], "x": 1})),
            now
        ),
        None
    );
}

#[test]
fn version_change_misses_and_clears() {
    let cache = DecisionCache::new(TTL, 100);
    let now = Instant::now();
    let input = json!({"roles": ["admin"]});
    cache.insert(key("v1", Some("acme"), &input), &allowed(), now);
    cache.insert(
        key("v1", Some("acme"), &json!({"roles": []})),
        &allowed(),
        now,
    );

    assert_eq!(cache.get(&key("v2", Some("acme"), &input), now), None);
    assert!(cache.is_empty());
    assert_eq!(
        cache.get(&key("v1", Some("acme"), &input), now),
        None,
        "old version entries are gone"
    );
}

#[test]
fn tenants_never_share() {
    let cache = DecisionCache::new(TTL, 100);
    let now = Instant::now();
    let input = json!({"roles": ["admin"]});
    cache.insert(key("v1", Some("acme"), &input), &allowed(), now);

    assert_eq!(cache.get(&key("v1", Some("globex"), &input), now), None);
    assert_eq!(cache.get(&key("v1", None, &input), now), None);
    assert_eq!(cache.get(&key("v1", Some(""), &input), now), None);
}

#[test]
fn rules_never_share() {
    let cache = DecisionCache::new(TTL, 100);
    let now = Instant::now();
    let input = json!({"roles": ["admin"]});
    cache.insert(key("v1", Some("acme"), &input), &allowed(), now);

    let other = DecisionKey::new("v1", "data.users.allow_read", Some("acme"), &input, None);
    assert_eq!(cache.get(&other, now), None);
}

#[test]
fn entry_expires_after_ttl() {
    let cache = DecisionCache::new(TTL, 100);
    let start = Instant::now();
    let input = json!({"roles": ["admin"]});
    cache.insert(key("v1", Some("acme"), &input), &allowed(), start);

    assert!(cache
        .get(
            &key("v1", Some("acme"), &input),
            start + TTL - Duration::from_millis(1)
        )
        .is_some());
    assert_eq!(
        cache.get(&key("v1", Some("acme"), &input), start + TTL),
        None
    );
    assert!(cache.is_empty(), "an expired entry is dropped when seen");
}

#[test]
fn selected_input_paths_cases() {
    let paths: &[&str] = &["route.params.id", "roles", "token.amr.0"];
    let base = json!({"route": {"params": {"id": "u-bob"}}, "roles": ["admin"], "token": {"amr": ["mfa"]}, "headers": {"x-request-id": "1"}});
    let cases = [
        (
            "unread member differs",
            json!({"route": {"params": {"id": "u-bob"}}, "roles": ["admin"], "token": {"amr": ["mfa"]}, "headers": {"x-request-id": "2"}}),
            true,
        ),
        (
            "read member differs",
            json!({"route": {"params": {"id": "u-alice"}}, "roles": ["admin"], "token": {"amr": ["mfa"]}}),
            false,
        ),
        (
            "array element differs",
            json!({"route": {"params": {"id": "u-bob"}}, "roles": ["admin"], "token": {"amr": ["pwd"]}}),
            false,
        ),
        (
            "read member absent",
            json!({"route": {"params": {"id": "u-bob"}}, "token": {"amr": ["mfa"]}}),
            false,
        ),
        (
            "read member null",
            json!({"route": {"params": {"id": "u-bob"}}, "roles": null, "token": {"amr": ["mfa"]}}),
            false,
        ),
    ];

    for (description, input, same) in cases {
        let first = DecisionKey::new("v1", RULE, Some("acme"), &base, Some(paths));
        let second = DecisionKey::new("v1", RULE, Some("acme"), &input, Some(paths));
        assert_eq!(first == second, same, "{description}");
    }

    let absent = DecisionKey::new("v1", RULE, None, &json!({}), Some(&["roles"]));
    let null = DecisionKey::new("v1", RULE, None, &json!({"roles": null}), Some(&["roles"]));
    assert_ne!(absent, null, "absent differs from null");
}

#[test]
fn full_cache_evicts_oldest() {
    let cache = DecisionCache::new(TTL, 2);
    let now = Instant::now();
    let inputs = [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})];
    for (offset, input) in inputs.iter().enumerate() {
        cache.insert(
            key("v1", None, input),
            &allowed(),
            now + Duration::from_millis(offset as u64),
        );
    }

    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&key("v1", None, &inputs[0]), now), None);
    assert!(cache.get(&key("v1", None, &inputs[1]), now).is_some());
    assert!(cache.get(&key("v1", None, &inputs[2]), now).is_some());
}

#[test]
fn reinserted_entry_gets_fresh_ttl() {
    let cache = DecisionCache::new(TTL, 2);
    let start = Instant::now();
    let input = json!({"n": 1});
    cache.insert(key("v1", None, &input), &allowed(), start);
    cache.insert(
        key("v1", None, &input),
        &allowed(),
        start + Duration::from_secs(3),
    );

    assert!(cache
        .get(&key("v1", None, &input), start + Duration::from_secs(6))
        .is_some());
    assert_eq!(cache.len(), 1);
}

#[test]
fn errors_not_cached() {
    let cache = DecisionCache::new(TTL, 10);
    let now = Instant::now();
    let failed = Decision {
        allowed: false,
        reason: POLICY_ERROR,
        result: None,
        obligations: None,
        duration: Duration::from_millis(50),
        failure: Some(PolicyFailure::BudgetExceeded),
    };
    cache.insert(key("v1", None, &json!({})), &failed, now);

    assert!(cache.is_empty());
}

#[test]
fn churn_keeps_size_bound() {
    let cache = DecisionCache::new(Duration::from_millis(10), 4);
    let start = Instant::now();
    for step in 0..10_000u64 {
        let now = start + Duration::from_millis(step);
        cache.insert(key("v1", None, &json!({"n": step % 7})), &allowed(), now);
        let _ = cache.get(&key("v1", None, &json!({"n": (step + 3) % 7})), now);
    }

    assert!(cache.len() <= 4);
}
