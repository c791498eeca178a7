//! The "controls in place" section: what the configuration shows the
//! gateway enforces, per requirement. It never states that a requirement
//! is met: the gateway covers its own part of a control at most, and the
//! text says what remains outside its reach.

use super::gateway::{text, Gateway};
use super::model::{ControlEvidence, Finding, Support};

/// Builds the evidence entries from the configuration and the findings.
pub fn collect(
    gateway: &Gateway,
    findings: &[Finding],
    with_documents: bool,
) -> Vec<ControlEvidence> {
    vec![
        authentication(gateway),
        transport(gateway, findings),
        masking(gateway, findings, with_documents),
        rate_limits(gateway),
        object_access(gateway),
        audit(gateway),
        audit_integrity(gateway),
        log_retention(),
        card_numbers_in_urls(gateway),
    ]
}

fn entry(controls: &[&str], topic: &str, support: Support, evidence: String) -> ControlEvidence {
    ControlEvidence {
        controls: controls.iter().map(|c| c.to_string()).collect(),
        topic: topic.to_string(),
        support,
        evidence,
    }
}

fn authentication(gateway: &Gateway) -> ControlEvidence {
    let total = gateway.routes.len();
    let public: Vec<&str> = gateway
        .routes
        .iter()
        .filter(|r| r.public)
        .map(|r| r.id.as_str())
        .collect();
    let protected = total - public.len();
    let support = match (protected, public.len()) {
        (0, _) => Support::NotEvidenced,
        (_, 0) => Support::Supported,
        _ => Support::Partial,
    };
    let public_note = if public.is_empty() {
        String::new()
    } else {
        format!("; public: {}", public.join(", "))
    };
    entry(
        &["pci-dss:8.3.1", "owasp-api:API2", "nist-csf:PR.AA-03"],
        "Authentication of every request",
        support,
        format!(
            "{protected} of {total} routes require a verified token or API key{public_note}. How identities are issued and protected at the identity provider is outside the gateway."
        ),
    )
}

fn transport(gateway: &Gateway, findings: &[Finding]) -> ControlEvidence {
    let controls = ["pci-dss:4.2.1", "nist-csf:PR.DS-02", "gdpr:32"];
    let Some(tls) = gateway.get("server.tls") else {
        return entry(
            &controls,
            "Encryption in transit",
            Support::NotEvidenced,
            "The listener has no tls section; TLS may be terminated in front of the gateway, which this review cannot see.".into(),
        );
    };
    let version = super::gateway::get(tls, "min_version")
        .and_then(text)
        .unwrap_or("1.2");
    // PX-TLS-003 reports a minimum below 1.2.
    let old_version = findings.iter().any(|f| f.id == "PX-TLS-003");
    let support = if old_version {
        Support::Partial
    } else {
        Support::Supported
    };
    entry(
        &controls,
        "Encryption in transit",
        support,
        format!(
            "The listener serves TLS only, version {version} or later{}. Cipher suites are not configurable: the gateway uses the default suites of rustls with the ring provider, all AEAD with ephemeral key exchange. Certificate management and the links behind the gateway are checked separately (see PX-TLS-002).",
            if old_version { " (below 1.2, see PX-TLS-003)" } else { "" }
        ),
    )
}

fn masking(gateway: &Gateway, findings: &[Finding], with_documents: bool) -> ControlEvidence {
    let masked: Vec<&str> = gateway
        .routes
        .iter()
        .filter(|r| r.mask.is_some())
        .map(|r| r.id.as_str())
        .collect();
    let gaps = findings.iter().filter(|f| f.id == "PX-DATA-001").count();
    let support = match (masked.is_empty(), gaps, with_documents) {
        (true, _, _) => Support::NotEvidenced,
        (false, 0, true) => Support::Supported,
        _ => Support::Partial,
    };
    let coverage = match (with_documents, gaps) {
        (false, _) => "Without API documents the review cannot tell which responses carry card or personal data.".to_string(),
        (true, 0) => "Every documented response field recognised as card or personal data is covered.".to_string(),
        (true, n) => format!("{n} documented operations return such data without a rule (PX-DATA-001)."),
    };
    entry(
        &["pci-dss:3.4.1", "gdpr:25", "owasp-api:API3"],
        "Masking of card and personal data in responses",
        support,
        format!(
            "{} routes mask response fields{}. {coverage} Data stored by the APIs is outside the gateway.",
            masked.len(),
            if masked.is_empty() { String::new() } else { format!(" ({})", masked.join(", ")) }
        ),
    )
}

fn rate_limits(gateway: &Gateway) -> ControlEvidence {
    let global = !gateway.global_rate_limits().is_empty();
    let limited = gateway
        .routes
        .iter()
        .filter(|r| global || !r.rate_limits.is_empty())
        .count();
    let total = gateway.routes.len();
    let support = match limited {
        0 => Support::NotEvidenced,
        n if n == total => Support::Supported,
        _ => Support::Partial,
    };
    entry(
        &["owasp-api:API4", "owasp-api:API6", "pci-dss:8.3.4", "nist-csf:PR.IR-04"],
        "Limits on request rates",
        support,
        format!(
            "{limited} of {total} routes are rate limited{}. Account lockout after failed sign-ins is up to the identity provider.",
            if global { " (global limits apply to all)" } else { "" }
        ),
    )
}

fn object_access(gateway: &Gateway) -> ControlEvidence {
    let with_policy = gateway.routes.iter().filter(|r| r.policy.is_some()).count();
    let support = if with_policy == 0 {
        Support::NotEvidenced
    } else {
        Support::Partial
    };
    entry(
        &["owasp-api:API1", "pci-dss:7.2.1", "nist-csf:PR.AA-05"],
        "Object-level access decisions",
        support,
        format!(
            "{with_policy} routes pass each request to a Rego policy. Whether a policy really compares object owners with the caller needs a review of the policy itself."
        ),
    )
}

fn audit(gateway: &Gateway) -> ControlEvidence {
    let controls = ["pci-dss:10.2.1", "pci-dss:10.3.2", "nist-csf:PR.PS-04"];
    if gateway.get("audit").is_none() {
        return entry(
            &controls,
            "Audit trail",
            Support::NotEvidenced,
            "No audit section is configured.".into(),
        );
    }
    let routes = gateway.routes.len();
    entry(
        &controls,
        "Audit trail",
        Support::Partial,
        format!(
            "The gateway records one decision per request in a hash-chained log with signed checkpoints, on all {routes} routes and for requests that match no route; no route can opt out. Events inside the APIs, log retention and off-host copies are outside the gateway."
        ),
    )
}

/// Builds the audit integrity entry. The audit log cannot run without
/// checkpoints, because every record is chained to the one before and a
/// signed checkpoint follows within bounded records and time, so integrity
/// is covered whenever audit is on.
fn audit_integrity(gateway: &Gateway) -> ControlEvidence {
    let controls = ["pci-dss:10.3.2", "nist-csf:PR.PS-04"];
    if gateway.get("audit").is_none() {
        return entry(
            &controls,
            "Integrity of the audit trail",
            Support::NotEvidenced,
            "No audit section is configured.".into(),
        );
    }
    let records = gateway
        .get("audit.checkpoint_records")
        .and_then(text)
        .unwrap_or("1000");
    let interval = gateway
        .get("audit.checkpoint_interval")
        .and_then(text)
        .unwrap_or("60s");
    entry(
        &controls,
        "Integrity of the audit trail",
        Support::Supported,
        format!(
            "Each audit record is hash-chained to the one before, and an Ed25519-signed checkpoint follows at most {records} records or {interval} after the last one; `portcullis audit verify` detects a changed, removed or reordered record. Keeping the signing key away from whoever can write the log is up to the operator."
        ),
    )
}

/// Builds the log retention entry, always outside the gateway, because
/// the gateway has no retention setting.
fn log_retention() -> ControlEvidence {
    entry(
        &["pci-dss:10.2.1", "gdpr:5"],
        "Retention of audit and log records",
        Support::OutsideGateway,
        "The gateway has no retention setting: it rotates audit files and writes log lines to standard output, and how long either is kept (at least a year, three months of it at hand, for PCI DSS; no longer than needed for GDPR) is decided by the storage or log system they go to.".into(),
    )
}

fn card_numbers_in_urls(gateway: &Gateway) -> ControlEvidence {
    let off = gateway.get("server.reject_pan_in_url").and_then(text) == Some("false");
    let (support, evidence) = if off {
        (Support::NotEvidenced, "server.reject_pan_in_url is false.")
    } else {
        (
            Support::Supported,
            "Requests with a card number in the path or query string are rejected before any log or upstream sees them, and card numbers are scrubbed from every log line.",
        )
    };
    entry(
        &["pci-dss:3.4.1", "gdpr:5"],
        "Card numbers kept out of URLs and logs",
        support,
        evidence.into(),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn evidence(config: &str, topic: &str) -> ControlEvidence {
        let gateway = Gateway::parse(config, "gw.yaml", Path::new(".")).unwrap();
        collect(&gateway, &[], false)
            .into_iter()
            .find(|entry| entry.topic == topic)
            .unwrap_or_else(|| panic!("no entry {topic:?}"))
    }

    #[test]
    fn log_retention_always_outside_gateway() {
        for config in ["audit: { directory: /a }\n", "server: {}\n"] {
            let entry = evidence(config, "Retention of audit and log records");
            assert_eq!(entry.support, Support::OutsideGateway, "{config}");
        }
    }

    #[test]
    fn audit_integrity_follows_audit() {
        let on = evidence(
            "audit: { directory: /a, checkpoint_records: 500 }\n",
            "Integrity of the audit trail",
        );
        assert_eq!(on.support, Support::Supported);
        assert!(
            on.evidence.contains("at most 500 records or 60s"),
            "{}",
            on.evidence
        );
        let off = evidence("server: {}\n", "Integrity of the audit trail");
        assert_eq!(off.support, Support::NotEvidenced);
    }
}
