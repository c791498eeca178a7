//! Logging and evidence checks beyond the presence of an audit trail:
//! audit records that can be lost, and policy input logged in clear.

use super::checks::{self, FindingExt};
use super::gateway::{get, strings, text, Gateway};
use super::model::{Finding, Severity, SnippetScope};

/// Runs the checks of this module.
pub fn run(gateway: &Gateway, findings: &mut Vec<Finding>) {
    check_audit_durability(gateway, findings);
    check_decision_input(gateway, findings);
}

fn check_audit_durability(gateway: &Gateway, findings: &mut Vec<Finding>) {
    if let Some(node) = gateway.get("audit.on_failure") {
        if text(node) == Some("allow") {
            findings.push(
                checks::AUDIT_LOSSY
                    .finding(
                        Severity::Medium,
                        "audit.on_failure is allow: while the audit log cannot be written, every route serves requests that leave no audit record".into(),
                        "Keep the default deny, so requests wait for the audit log instead of going unrecorded.",
                    )
                    .in_config(gateway.at(node, "audit.on_failure"))
                    .snippet(SnippetScope::TopLevel, "audit:\n  on_failure: deny"),
            );
        }
    }
    let Some(node) = gateway.get("audit.durability") else {
        return;
    };
    let Some(interval) = get(node, "interval") else {
        return;
    };
    findings.push(
        checks::AUDIT_LOSSY
            .finding(
                Severity::Low,
                format!(
                    "audit.durability syncs every {}: records written since the last sync are lost when the host fails",
                    text(interval).unwrap_or("?")
                ),
                "Use durability: fsync where every decision must survive a crash, or keep the interval short and accept the loss in the risk assessment.",
            )
            .in_config(gateway.at(interval, "audit.durability.interval"))
            .snippet(SnippetScope::TopLevel, "audit:\n  durability: fsync"),
    );
}

/// With `include_input: true`, the decision log carries the policy input.
/// That is a finding when nothing scrubs it: no `drop` or `mask` pointer in
/// the decision log and no `logging.pii_fields` pseudonyms.
fn check_decision_input(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let Some(node) = gateway.get("policies.decision_log.include_input") else {
        return;
    };
    if text(node) != Some("true") {
        return;
    }
    let decision_log = gateway.get("policies.decision_log");
    let scrubbed_pointers = ["drop", "mask"].iter().any(|key| {
        decision_log
            .and_then(|log| get(log, key))
            .is_some_and(|n| !strings(n).is_empty())
    });
    let pseudonyms = gateway
        .get("logging.pii_fields")
        .is_some_and(|n| !strings(n).is_empty());
    if scrubbed_pointers || pseudonyms {
        return;
    }
    findings.push(
        checks::DECISION_INPUT_LOGGED
            .finding(
                Severity::Medium,
                "policies.decision_log.include_input is true with no decision_log.drop or mask and no logging.pii_fields, so decision records carry claims, headers and subjects in clear".into(),
                "Drop or mask the personal parts of the input, and pseudonymise subjects in every log line.",
            )
            .in_config(gateway.at(node, "policies.decision_log.include_input"))
            .snippet(
                SnippetScope::TopLevel,
                "policies:\n  decision_log:\n    include_input: true\n    drop: [/input/headers, /input/token]\n    mask: [/input/subject]\nlogging:\n  pii_fields: [identity.subject, client.ip]",
            ),
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn findings(config: &str) -> Vec<(String, Severity, String)> {
        let gateway = Gateway::parse(config, "gw.yaml", Path::new(".")).unwrap();
        let mut found = Vec::new();
        run(&gateway, &mut found);
        found
            .into_iter()
            .map(|f| (f.id, f.severity, f.config.unwrap().key_path))
            .collect()
    }

    #[test]
    fn audit_loss_reported() {
        let cases = [
            (
                "served unrecorded when the log fails",
                "audit: { directory: /a, on_failure: allow }\n",
                vec![("PX-LOG-003", Severity::Medium, "audit.on_failure")],
            ),
            (
                "fsync on an interval",
                "audit: { directory: /a, durability: { interval: 1s } }\n",
                vec![("PX-LOG-003", Severity::Low, "audit.durability.interval")],
            ),
            (
                "defaults: deny and fsync",
                "audit: { directory: /a, on_failure: deny, durability: fsync }\n",
                vec![],
            ),
        ];
        for (description, config, expected) in cases {
            let expected: Vec<(String, Severity, String)> = expected
                .into_iter()
                .map(|(id, s, k)| (id.to_string(), s, k.to_string()))
                .collect();
            assert_eq!(findings(config), expected, "{description}");
        }
    }

    #[test]
    fn decision_input_needs_scrubbing() {
        let cases = [
            (
                "input logged, nothing scrubbed",
                "policies: { decision_log: { include_input: true } }\n",
                true,
            ),
            (
                "input logged with drop pointers",
                "policies: { decision_log: { include_input: true, drop: [/input/headers] } }\n",
                false,
            ),
            (
                "input logged with pseudonymised subjects",
                "policies: { decision_log: { include_input: true } }\nlogging: { pii_fields: [identity.subject] }\n",
                false,
            ),
            (
                "input logged, empty pii_fields",
                "policies: { decision_log: { include_input: true } }\nlogging: { pii_fields: [] }\n",
                true,
            ),
            ("input not logged", "policies: { decision_log: { include_input: false } }\n", false),
        ];
        for (description, config, expected) in cases {
            let reported = findings(config).iter().any(|f| f.0 == "PX-LOG-004");
            assert_eq!(reported, expected, "{description}");
        }
    }
}
