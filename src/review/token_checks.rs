//! Token lifetime checks: how long the gateway's own tokens live and how
//! long an introspection result is reused.

use std::time::Duration;

use crate::config::yaml::Node;

use super::checks::{self, FindingExt};
use super::config_checks::issuers;
use super::gateway::{get, text, Gateway};
use super::model::{Finding, Severity, SnippetScope};

/// Longest `token_service.token_ttl` accepted without a finding. Machine
/// clients fetch a new token cheaply, so a few minutes suffice; the
/// gateway itself accepts up to an hour.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Longest `introspection.cache_max_ttl` accepted without a finding: a
/// revocation at the provider takes effect after at most this long.
const MAX_INTROSPECTION_CACHE: Duration = Duration::from_secs(5 * 60);

/// Runs the checks of this module.
pub fn run(gateway: &Gateway, findings: &mut Vec<Finding>) {
    check_token_service(gateway, findings);
    check_introspection_cache(gateway, findings);
}

/// Reads a duration such as `30m`; `None` when absent or not a duration.
fn duration(node: &Node) -> Option<Duration> {
    humantime::parse_duration(text(node)?).ok()
}

fn check_token_service(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let Some(node) = gateway.get("token_service.token_ttl") else {
        return;
    };
    if duration(node).is_none_or(|ttl| ttl <= MAX_TOKEN_TTL) {
        return;
    }
    findings.push(
        checks::LONG_TOKEN_LIFETIME
            .finding(
                Severity::Medium,
                format!(
                    "token_service.token_ttl is {}; expected at most {}",
                    text(node).unwrap_or_default(),
                    humantime::format_duration(MAX_TOKEN_TTL)
                ),
                "Issue short-lived tokens; clients fetch a new one with their client credentials when it expires.",
            )
            .in_config(gateway.at(node, "token_service.token_ttl"))
            .snippet(SnippetScope::TopLevel, "token_service:\n  token_ttl: 5m"),
    );
}

fn check_introspection_cache(gateway: &Gateway, findings: &mut Vec<Finding>) {
    for (path, issuer) in issuers(gateway) {
        let Some(node) = get(issuer, "introspection").and_then(|i| get(i, "cache_max_ttl")) else {
            continue;
        };
        if duration(node).is_none_or(|ttl| ttl <= MAX_INTROSPECTION_CACHE) {
            continue;
        }
        let name = get(issuer, "issuer").and_then(text).unwrap_or("?");
        findings.push(
            checks::LONG_TOKEN_LIFETIME
                .finding(
                    Severity::Low,
                    format!(
                        "issuer {name:?} reuses an introspection result for up to {}, so a token revoked at the provider keeps working that long; expected at most {}",
                        text(node).unwrap_or_default(),
                        humantime::format_duration(MAX_INTROSPECTION_CACHE)
                    ),
                    "Lower the cache lifetime to the delay a revocation may take to apply.",
                )
                .in_config(gateway.at(node, &format!("{path}.introspection.cache_max_ttl")))
                .snippet(SnippetScope::Issuer, "introspection:\n  cache_max_ttl: 60s"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn findings(config: &str) -> Vec<Finding> {
        let gateway = Gateway::parse(config, "gw.yaml", Path::new(".")).unwrap();
        let mut found = Vec::new();
        run(&gateway, &mut found);
        found
    }

    #[test]
    fn token_lifetimes_judged_against_limits() {
        let cases = [
            ("token ttl of an hour", "token_service: { token_ttl: 1h }\n", vec![(Severity::Medium, "token_service.token_ttl")]),
            ("token ttl at the limit", "token_service: { token_ttl: 15m }\n", vec![]),
            ("token ttl by default", "token_service: { issuer: https://gw.example }\n", vec![]),
            (
                "introspection cache of ten minutes",
                "authentication:\n  issuers:\n    - issuer: https://id.example\n      introspection: { client_id: gw, cache_max_ttl: 10m }\n",
                vec![(Severity::Low, "authentication.issuers[0].introspection.cache_max_ttl")],
            ),
            (
                "introspection cache by default",
                "authentication:\n  issuers:\n    - issuer: https://id.example\n      introspection: { client_id: gw }\n",
                vec![],
            ),
        ];
        for (description, config, expected) in cases {
            let found: Vec<(Severity, String)> = findings(config)
                .into_iter()
                .map(|f| (f.severity, f.config.unwrap().key_path))
                .collect();
            let expected: Vec<(Severity, String)> = expected
                .into_iter()
                .map(|(s, k)| (s, k.to_string()))
                .collect();
            assert_eq!(found, expected, "{description}");
        }
    }
}
