//! Evaluating rules into decisions: allow only on `true` or
//! `{"allow": true}`, deny on everything else, never panic.

use crate::policy_support as common;

use std::num::NonZeroUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::load_ok;
use portcullis::authz::policy::{PolicyFailure, POLICY_ALLOWED, POLICY_DENIED, POLICY_ERROR};
use serde_json::{json, Value};

const BUDGET: Duration = Duration::from_secs(1);

/// A builtin call that regorus cannot interrupt, several hundred
/// milliseconds long even in an optimized build.
const HEAVY_BUILTIN: &str = "package slow\n\nallow if count(numbers.range(1, 4000000)) == 0\n";

/// Nested iteration that the execution timer interrupts.
const LOOPING: &str = "package slow\n\nallow if {\n  n := numbers.range(1, 3000)\n  count([x | some x in n; some y in n; x == y + 5000]) == 1\n}\n";

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn example_decisions() {
    let set = common::example_set();
    let cases = [
        (
            "admin deletes user of own tenant",
            "data.users.allow_delete",
            json!({"roles": ["admin"], "tenant": "acme", "route": {"params": {"id": "u-bob"}}}),
            POLICY_ALLOWED,
        ),
        (
            "admin of another tenant",
            "data.users.allow_delete",
            json!({"roles": ["admin"], "tenant": "globex", "route": {"params": {"id": "u-bob"}}}),
            POLICY_DENIED,
        ),
        (
            "tenant param decides for unknown user",
            "data.users.allow_delete",
            json!({"roles": ["admin"], "tenant": "initech", "route": {"params": {"id": "u-new", "tenant": "initech"}}}),
            POLICY_ALLOWED,
        ),
        (
            "missing user id",
            "data.users.allow_delete",
            json!({"roles": ["admin"], "tenant": "acme", "route": {"params": {"tenant": "acme"}}}),
            POLICY_DENIED,
        ),
        (
            "own record",
            "data.users.allow_read",
            json!({"subject": "u-bob", "route": {"params": {"id": "u-bob"}}}),
            POLICY_ALLOWED,
        ),
        (
            "other record without read:users:all",
            "data.users.allow_read",
            json!({"subject": "u-bob", "scopes": ["read:users"], "route": {"params": {"id": "u-alice"}}}),
            POLICY_DENIED,
        ),
        (
            "write with MFA a minute ago",
            "data.users.allow_write",
            json!({"subject": "u-bob", "route": {"params": {"id": "u-bob"}}, "token": {"amr": ["mfa"], "auth_time": now_seconds() - 60}}),
            POLICY_ALLOWED,
        ),
        (
            "write with MFA an hour ago",
            "data.users.allow_write",
            json!({"subject": "u-bob", "route": {"params": {"id": "u-bob"}}, "token": {"amr": ["mfa"], "auth_time": now_seconds() - 3600}}),
            POLICY_DENIED,
        ),
        (
            "auth_time of the wrong type",
            "data.users.allow_write",
            json!({"subject": "u-bob", "route": {"params": {"id": "u-bob"}}, "token": {"amr": ["mfa"], "auth_time": "recent"}}),
            POLICY_ERROR,
        ),
    ];

    for (description, rule, input, reason) in cases {
        let decision = set.evaluate(rule, &input, BUDGET);
        assert_eq!(decision.reason, reason, "{description}: {decision:?}");
        assert_eq!(decision.allowed, reason == POLICY_ALLOWED, "{description}");
    }
}

#[test]
fn object_decision_carries_obligations() {
    let set = common::example_set();
    let input = json!({"subject": "u-bob", "scopes": [], "route": {"params": {"id": "u-bob"}}});

    let decision = set.evaluate("data.users.read_decision", &input, BUDGET);

    assert!(decision.allowed);
    assert_eq!(decision.reason, POLICY_ALLOWED);
    assert_eq!(
        decision.obligations,
        Some(json!({"mask": ["email", "phone"]}))
    );
}

#[test]
fn evaluate_value_returns_obligation_object() {
    let set = common::example_set();
    let input = json!({"scopes": ["read:users:pii"]});

    let value = set.evaluate_value("data.users.mask_fields", &input, BUDGET);

    assert_eq!(value, Ok(Some(json!([]))));
}

#[test]
fn value_cases() {
    let set = load_ok(&[(
        "demo.rego",
        "package demo\n\n\
         yes := true\n\
         no := false\n\
         undefined_rule if input.never\n\
         text := \"true\"\n\
         number := 1\n\
         allow_object := {\"allow\": true, \"obligations\": {\"log\": true}}\n\
         deny_object := {\"allow\": false}\n\
         other_object := {\"permit\": true}\n\
         allow_text := {\"allow\": \"true\"}\n\
         members contains \"a\" if true\n\
         divide := 1 / input.zero\n\
         add := input.text + 1\n",
    )]);
    let input = json!({"zero": 0, "text": "a"});
    let cases: [(&str, &str, &str, Option<PolicyFailure>); 13] = [
        ("true allows", "data.demo.yes", POLICY_ALLOWED, None),
        ("false denies", "data.demo.no", POLICY_DENIED, None),
        (
            "undefined denies",
            "data.demo.undefined_rule",
            POLICY_DENIED,
            None,
        ),
        (
            "string is not a decision",
            "data.demo.text",
            POLICY_ERROR,
            Some(PolicyFailure::NotADecision),
        ),
        (
            "number is not a decision",
            "data.demo.number",
            POLICY_ERROR,
            Some(PolicyFailure::NotADecision),
        ),
        (
            "object with allow true",
            "data.demo.allow_object",
            POLICY_ALLOWED,
            None,
        ),
        (
            "object with allow false",
            "data.demo.deny_object",
            POLICY_DENIED,
            None,
        ),
        (
            "object without allow",
            "data.demo.other_object",
            POLICY_DENIED,
            None,
        ),
        (
            "object with allow as text",
            "data.demo.allow_text",
            POLICY_DENIED,
            None,
        ),
        (
            "set is not a decision",
            "data.demo.members",
            POLICY_ERROR,
            Some(PolicyFailure::NotADecision),
        ),
        (
            "unknown rule",
            "data.demo.nothing",
            POLICY_ERROR,
            Some(PolicyFailure::RuleNotFound),
        ),
        (
            "package is not a rule",
            "data.demo",
            POLICY_ERROR,
            Some(PolicyFailure::RuleNotFound),
        ),
        (
            "rule without data prefix",
            "demo.yes",
            POLICY_ERROR,
            Some(PolicyFailure::RuleNotFound),
        ),
    ];

    for (description, rule, reason, failure) in cases {
        let decision = set.evaluate(rule, &input, BUDGET);
        assert_eq!(decision.reason, reason, "{description}: {decision:?}");
        assert_eq!(decision.allowed, reason == POLICY_ALLOWED, "{description}");
        assert_eq!(decision.failure, failure, "{description}");
    }
}

#[test]
fn evaluation_error_keeps_location_only() {
    let set = load_ok(&[(
        "demo.rego",
        "package demo\n\ndivide := 1 / input.zero\n\nadd := input.text + 1\n",
    )]);
    let input = json!({"zero": 0, "text": "secret-header-value"});

    for rule in ["data.demo.divide", "data.demo.add"] {
        let decision = set.evaluate(rule, &input, BUDGET);
        assert_eq!(decision.reason, POLICY_ERROR, "{rule}");
        let Some(PolicyFailure::Evaluation {
            location: Some(location),
        }) = &decision.failure
        else {
            panic!("{rule}: expected an evaluation failure with a location, got {decision:?}");
        };
        assert!(
            location.ends_with(if rule.ends_with("divide") {
                ":3:13"
            } else {
                ":5:13"
            }),
            "{location}"
        );
        assert!(!format!("{decision:?}").contains("secret-header-value"));
    }
}

#[test]
fn looping_rule_stopped_at_budget() {
    let set = load_ok(&[("slow.rego", LOOPING)]);
    let budget = Duration::from_millis(50);

    let decision = set.evaluate("data.slow.allow", &json!({}), budget);

    assert_eq!(decision.reason, POLICY_ERROR);
    assert_eq!(decision.failure, Some(PolicyFailure::BudgetExceeded));
    assert!(
        decision.duration < budget * 4,
        "stopped after {:?}",
        decision.duration
    );
}

#[test]
fn late_inline_result_is_budget_error() {
    let set = load_ok(&[("slow.rego", HEAVY_BUILTIN)]);
    let budget = Duration::from_millis(20);

    let decision = set.evaluate("data.slow.allow", &json!({}), budget);

    assert_eq!(decision.failure, Some(PolicyFailure::BudgetExceeded));
    assert!(decision.duration >= budget);
}

#[test]
fn isolated_caller_waits_only_budget() {
    let set = load_ok(&[("slow.rego", HEAVY_BUILTIN)])
        .isolate(NonZeroUsize::new(1).unwrap(), 1)
        .unwrap();
    let budget = Duration::from_millis(20);

    let started = Instant::now();
    let decision = set.evaluate("data.slow.allow", &json!({}), budget);
    let waited = started.elapsed();

    assert_eq!(decision.failure, Some(PolicyFailure::BudgetExceeded));
    assert!(waited < Duration::from_millis(150), "waited {waited:?}");

    // The only worker is still inside the builtin: the next evaluation
    // waits in the queue until its budget is spent. Its job keeps the one
    // queue slot until the worker dequeues and drops it, so the evaluation
    // after that fails at once.
    let queued = set.evaluate("data.slow.allow", &json!({}), budget);
    assert_eq!(queued.failure, Some(PolicyFailure::BudgetExceeded));
    let rejected_at = Instant::now();
    let rejected = set.evaluate("data.slow.allow", &json!({}), budget);
    assert_eq!(rejected.failure, Some(PolicyFailure::Overloaded));
    assert!(rejected_at.elapsed() < Duration::from_millis(10));
}

#[test]
fn isolated_evaluation_decides_like_inline() {
    let inline = common::example_set();
    let isolated = common::example_set()
        .isolate(NonZeroUsize::new(2).unwrap(), 8)
        .unwrap();
    let input = json!({"roles": ["admin"], "tenant": "acme", "route": {"params": {"id": "u-bob"}}});

    let expected = inline.evaluate("data.users.allow_delete", &input, BUDGET);
    let decision = isolated.evaluate("data.users.allow_delete", &input, BUDGET);

    assert_eq!(decision.reason, expected.reason);
    assert_eq!(decision.result, expected.result);
}

#[test]
fn function_cycle_through_rule_fails_without_crash() {
    let loaded = common::load(&[(
        "demo.rego",
        "package demo\n\nf(x) := y if {\n  r\n  y := x\n}\n\nr if f(1) == 1\n\nallow if r\n",
    )]);

    // Either the load rejects the cycle or evaluation reports it.
    if let Ok(set) = loaded {
        let decision = set.evaluate("data.demo.allow", &json!({}), BUDGET);
        assert_eq!(decision.reason, POLICY_ERROR);
    }
}

#[test]
fn concurrent_evaluations_agree() {
    let set = common::example_set();
    let input = json!({"roles": ["admin"], "tenant": "acme", "route": {"params": {"id": "u-bob"}}});

    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..200).all(|_| {
                        set.evaluate("data.users.allow_delete", &input, BUDGET)
                            .allowed
                    })
                })
            })
            .collect();
        for handle in handles {
            assert!(handle.join().unwrap());
        }
    });
}

#[test]
fn unusual_inputs_do_not_panic() {
    let set = common::example_set();
    let deep = (0..100).fold(json!("leaf"), |inner, _| json!({"n": inner}));
    let inputs: [Value; 6] = [
        Value::Null,
        json!([1, 2, 3]),
        json!("text"),
        json!({"roles": "admin", "tenant": 7, "route": []}),
        json!({"route": {"params": {"id": {"nested": true}}}, "subject": {"a": 1}}),
        json!({"deep": deep, "token": {"amr": [null], "auth_time": 1e300}}),
    ];

    for input in &inputs {
        for rule in set.rules().map(str::to_string).collect::<Vec<_>>() {
            let decision = set.evaluate(&rule, input, BUDGET);
            assert!(
                !decision.allowed || rule.contains("test_"),
                "{rule} allowed {input}"
            );
        }
    }
}

#[test]
fn unknown_function_fails_at_evaluation() {
    let set = load_ok(&[(
        "demo.rego",
        "package demo\n\nallow if nope.check(input.x)\n",
    )]);

    let decision = set.evaluate("data.demo.allow", &json!({"x": 1}), BUDGET);

    assert_eq!(decision.reason, POLICY_ERROR);
    assert!(matches!(
        decision.failure,
        Some(PolicyFailure::Evaluation { location: Some(_) })
    ));
}
