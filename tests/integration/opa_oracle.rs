//! Differential test against the real OPA engine: OPA's decisions for the
//! example policies, recorded by `tests/data/opa_oracle/oracle.py` in
//! `tests/data/opa_oracle/expected.json`, must equal regorus' decisions here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis::authz::policy::{run_tests, PolicySet, POLICY_DENIED, POLICY_ERROR};
use serde_json::Value;

const BUDGET: Duration = Duration::from_secs(1);

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Sets `token.auth_time` to now minus the case's age, as the oracle did.
fn input_of(case: &Value) -> Value {
    let mut input = case["input"].clone();
    let Some(age) = case.get("auth_age_seconds") else {
        return input;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let auth_time = match age.as_i64() {
        Some(seconds) => Value::from(now - seconds),
        None => age.clone(),
    };
    let token = input
        .as_object_mut()
        .unwrap()
        .entry("token")
        .or_insert_with(|| serde_json::json!({}));
    token
        .as_object_mut()
        .unwrap()
        .insert("auth_time".into(), auth_time);
    input
}

#[test]
fn regorus_decisions_match_opa() {
    let set = PolicySet::load(&["examples/users-api/policies"]).expect("example policies load");
    let cases = read_json("tests/data/opa_oracle/cases.json");
    let expected = read_json("tests/data/opa_oracle/expected.json");

    let mut mismatches = Vec::new();
    let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
    for case in cases.as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let rule = case["rule"].as_str().unwrap();
        let opa = &expected["cases"][id];
        let decision = set.evaluate(rule, &input_of(case), BUDGET);
        *per_rule.entry(rule.to_string()).or_default() += 1;

        let same = match opa["outcome"].as_str().unwrap() {
            "value" => decision.result.as_ref() == Some(&opa["value"]),
            "undefined" => decision.result.is_none() && decision.reason == POLICY_DENIED,
            _ => decision.reason == POLICY_ERROR,
        };
        if decision.allowed != opa["allowed"].as_bool().unwrap() || !same {
            mismatches.push(format!(
                "{id}: OPA {} {} allowed={}, regorus {} {:?} {:?}; input {}",
                opa["outcome"],
                opa["value"],
                opa["allowed"],
                decision.reason,
                decision.result,
                decision.failure,
                case["input"]
            ));
        }
    }

    assert!(per_rule.values().all(|count| *count >= 20), "{per_rule:?}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn test_rule_outcomes_match_opa() {
    let expected = read_json("tests/data/opa_oracle/expected.json");
    let report =
        run_tests(Path::new("examples/users-api/policies")).expect("example policies load");

    let ours: BTreeMap<String, String> = report
        .results
        .iter()
        .map(|result| {
            (
                format!("{}.{}", result.package, result.name),
                result.outcome.label().to_string(),
            )
        })
        .collect();
    let opa: BTreeMap<String, String> = expected["tests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, outcome)| (name.clone(), outcome.as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ours, opa);
}
