//! The list of checks: each check's stable id, title, reason and control
//! mappings. The checks themselves live in `config_checks` (configuration
//! alone) and `api_checks` (configuration and OpenAPI documents); both
//! build their findings from the definitions here, so ids, titles and
//! mappings stay in one place.

use super::model::{ApiLocation, ConfigLocation, Finding, Severity, SnippetScope};

/// A check's fixed description.
pub struct CheckDef {
    pub id: &'static str,
    pub title: &'static str,
    /// Why a finding of this check matters.
    pub why: &'static str,
    /// Control ids from the catalogue.
    pub mappings: &'static [&'static str],
    /// Whether the check reads OpenAPI documents.
    pub needs_openapi: bool,
}

impl CheckDef {
    /// Starts a finding of this check.
    pub fn finding(&self, severity: Severity, evidence: String, fix: &str) -> Finding {
        Finding {
            id: self.id.to_string(),
            title: self.title.to_string(),
            severity,
            evidence,
            excerpt: None,
            config: None,
            openapi: None,
            why: self.why.to_string(),
            fix: fix.to_string(),
            fix_snippet: None,
            fix_snippet_scope: None,
            mappings: self.mappings.iter().map(|m| m.to_string()).collect(),
        }
    }
}

/// Adds locations and a snippet to a finding in builder style.
pub trait FindingExt {
    fn in_config(self, location: ConfigLocation) -> Self;
    fn in_api(self, location: ApiLocation) -> Self;
    /// Sets the fix snippet: configuration that the gateway accepts once
    /// placed at `scope`.
    fn snippet(self, scope: SnippetScope, snippet: &str) -> Self;
}

impl FindingExt for Finding {
    fn in_config(mut self, location: ConfigLocation) -> Self {
        self.config = Some(location);
        self
    }

    fn in_api(mut self, location: ApiLocation) -> Self {
        self.openapi = Some(location);
        self
    }

    fn snippet(mut self, scope: SnippetScope, snippet: &str) -> Self {
        self.fix_snippet = Some(snippet.to_string());
        self.fix_snippet_scope = Some(scope);
        self
    }
}

/// Formats a value from the inputs (a route id, a scope) as a YAML scalar
/// for a snippet. It stays plain when it contains only letters, digits and
/// `-_.:/`, starts with a letter, digit or `/`, does not end with `:` and
/// is not `true`, `false` or `null`. Anything else is double-quoted with
/// JSON escapes, which YAML reads the same way.
pub fn yaml_scalar(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    let starts_plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
    let reserved = matches!(value, "true" | "false" | "null") || value.ends_with(':');
    if plain && starts_plain && !reserved {
        value.to_string()
    } else {
        serde_json::to_string(value).expect("a string serializes")
    }
}

macro_rules! check {
    ($name:ident, $id:literal, $openapi:literal, $title:literal, $why:literal, [$($m:literal),* $(,)?]) => {
        pub const $name: CheckDef = CheckDef {
            id: $id,
            title: $title,
            why: $why,
            mappings: &[$($m),*],
            needs_openapi: $openapi,
        };
    };
}

check!(PUBLIC_ROUTE, "PX-AUTH-001", false, "Route reachable without credentials",
    "Anyone who can reach the gateway can call this route; when the API behind it expects a caller identity, it acts for an anonymous caller.",
    ["owasp-api:API2", "pci-dss:8.3.1", "gdpr:32", "nist-csf:PR.AA-03"]);
check!(WEAK_HMAC_SECRET, "PX-AUTH-002", false, "HMAC issuer secret is weak",
    "Whoever guesses or brute-forces a shared HMAC secret can mint tokens the gateway accepts, with any subject and scope.",
    ["owasp-api:API2", "pci-dss:8.6.3", "nist-csf:PR.AA-01"]);
check!(NO_AUDIENCE, "PX-AUTH-003", false, "Issuer accepts tokens for any audience",
    "Without an audience restriction a token issued for another service of the same identity provider is accepted here too.",
    ["owasp-api:API2", "pci-dss:8.3.1", "nist-csf:PR.AA-03"]);
check!(
    LONG_CLOCK_SKEW,
    "PX-AUTH-004",
    false,
    "Token clock skew is long",
    "A long skew keeps expired tokens usable, which widens the window for a stolen token.",
    ["owasp-api:API2", "nist-csf:PR.AA-03"]
);
check!(NO_ALGORITHMS, "PX-AUTH-005", false, "Issuer has no algorithm allow-list",
    "Without an explicit list, the algorithms the issuer's published keys allow are all accepted; pinning them stops a weaker algorithm from being introduced unnoticed.",
    ["owasp-api:API2", "nist-csf:PR.AA-03"]);
check!(NO_REVOCATION, "PX-AUTH-006", false, "No way to revoke a token before it expires",
    "Without introspection or a shared revocation store, a leaked token stays valid until it expires.",
    ["owasp-api:API2", "pci-dss:8.6.3", "nist-csf:PR.AA-01"]);
check!(API_KEY_IN_QUERY, "PX-AUTH-007", true, "API key accepted in the query string",
    "A key in a URL is written to browser history, proxy and server logs and referrer headers; the gateway never reads query keys, but the key still travels to the upstream with the URL.",
    ["owasp-api:API2", "pci-dss:8.6.3", "nist-csf:PR.AA-01"]);
check!(LONG_TOKEN_LIFETIME, "PX-AUTH-008", false, "Token stays usable for long",
    "A long token lifetime, or an introspection result reused for long, keeps a stolen or revoked token working for that time.",
    ["owasp-api:API2", "pci-dss:8.6.3", "nist-csf:PR.AA-03"]);
check!(BOLA, "PX-AUTHZ-001", false, "Object id in path without an ownership or tenant check",
    "The gateway checks that the caller may use the route but not that the object named in the path belongs to the caller, so any valid caller can try other ids.",
    ["owasp-api:API1", "pci-dss:7.2.1", "gdpr:32", "nist-csf:PR.AA-05"]);
check!(SCOPES_WEAKER, "PX-AUTHZ-002", true, "Gateway enforces fewer scopes than the API document declares",
    "The document promises clients and reviewers a scope that the gateway never checks, so callers with a narrower token reach the operation.",
    ["owasp-api:API5", "pci-dss:7.2.2", "nist-csf:PR.AA-05"]);
check!(PRIVILEGED_UNGUARDED, "PX-AUTHZ-003", false, "Privileged route guarded by authentication alone",
    "A delete or administrative function open to every authenticated caller lets any user or client perform it.",
    ["owasp-api:API5", "pci-dss:7.2.2", "nist-csf:PR.AA-05"]);
check!(PRIVILEGED_COMMON_SCOPE, "PX-AUTHZ-004", false, "Privileged route guarded by a scope every route requires",
    "A scope that every route asks for is held by every caller that uses the API at all, so it does not reserve the privileged function to anyone.",
    ["owasp-api:API5", "pci-dss:7.2.2", "nist-csf:PR.AA-05"]);
check!(BODY_OBJECT_ID, "PX-AUTHZ-005", true, "Object id in request body without an ownership or tenant check",
    "The request body names other objects by id, and neither a policy nor a tenant binding checks that they belong to the caller, so any valid caller can act on other callers' objects.",
    ["owasp-api:API1", "pci-dss:7.2.1", "gdpr:32", "nist-csf:PR.AA-05"]);
check!(CROSS_TENANT, "PX-AUTHZ-006", false, "Route reachable across tenants",
    "When the gateway does not compare the tenant a request addresses with the tenant of its credential, a client of one tenant reaches another tenant's data.",
    ["owasp-api:API1", "pci-dss:7.2.1", "gdpr:32", "nist-csf:PR.AA-05"]);
check!(FLOW_UNLIMITED, "PX-ABUSE-001", false, "Sensitive flow without a rate limit",
    "Sign-in, one-time codes, password reset and money movement can be driven at machine speed: credential stuffing, code guessing and fraud follow.",
    ["owasp-api:API6", "owasp-api:API4", "pci-dss:8.3.4", "nist-csf:PR.IR-04"]);
check!(FLOW_LIMIT_SPOOFABLE, "PX-ABUSE-002", false, "Rate limit keyed on client-controlled input",
    "A limit counted by a value the client chooses, such as a forwarded address from any peer or a tenant header, is reset by changing that value.",
    ["owasp-api:API6", "owasp-api:API4", "pci-dss:8.3.4", "nist-csf:PR.IR-04"]);
check!(SENSITIVE_RESPONSE, "PX-DATA-001", true, "Card or personal data returned without masking",
    "The response schema carries card numbers, security codes or personal data, and the route has no masking rule for them, so they leave the gateway in clear.",
    ["owasp-api:API3", "pci-dss:3.4.1", "pci-dss:3.3.1.2", "gdpr:5", "gdpr:25", "nist-csf:PR.DS-02"]);
check!(PII_IN_QUERY, "PX-DATA-002", true, "Personal data in query parameters",
    "Query strings end up in browser history, proxy and server logs and referrer headers, outside the controls that protect request bodies.",
    ["owasp-api:API3", "gdpr:5", "gdpr:25", "pci-dss:3.4.1", "nist-csf:PR.DS-02"]);
check!(
    LARGE_BODY_LIMIT,
    "PX-DATA-003",
    false,
    "Request body limit is large",
    "Large bodies let a single caller tie up memory, bandwidth and upstream parsers.",
    ["owasp-api:API4", "nist-csf:PR.IR-04"]
);
check!(MASS_ASSIGNMENT, "PX-DATA-004", true, "Privileged field writable in a request body",
    "A request schema that accepts fields such as role, balance or owner lets a caller set them unless the API drops them; the gateway does not filter bodies.",
    ["owasp-api:API3", "pci-dss:6.2.4", "nist-csf:PR.AA-05"]);
check!(
    UNBOUNDED_PAGE,
    "PX-DATA-005",
    true,
    "Page size without an upper bound",
    "A page-size parameter without a maximum lets one request ask for the whole collection.",
    ["owasp-api:API4", "nist-csf:PR.IR-04"]
);
check!(VERBOSE_ERRORS, "PX-DATA-006", true, "Error response exposes internal details",
    "Stack traces, exception names, SQL and debug fields in error responses tell an attacker which software, queries and paths sit behind the API.",
    ["owasp-api:API8", "pci-dss:6.2.4", "nist-csf:PR.PS-01"]);
check!(PLAIN_HTTP, "PX-TLS-001", false, "Listener serves plain HTTP",
    "Without TLS on the listener, tokens and payment or personal data cross the network in clear unless something in front terminates TLS.",
    ["owasp-api:API8", "pci-dss:4.2.1", "gdpr:32", "nist-csf:PR.DS-02"]);
check!(
    PLAIN_UPSTREAM,
    "PX-TLS-002",
    false,
    "Upstream reached over plain HTTP",
    "Requests, identity headers and responses travel in clear between the gateway and the API.",
    ["owasp-api:API10", "pci-dss:4.2.1", "nist-csf:PR.DS-02"]
);
check!(OLD_TLS, "PX-TLS-003", false, "TLS minimum version below 1.2",
    "TLS 1.0 and 1.1 have known weaknesses and are no longer accepted as strong cryptography for card data.",
    ["owasp-api:API8", "pci-dss:4.2.1", "gdpr:32", "nist-csf:PR.DS-02"]);
check!(
    ADMIN_EXPOSED,
    "PX-PLAT-001",
    false,
    "Admin endpoints listen beyond loopback",
    "Health and metrics endpoints reveal internals and are meant for the operator's network only.",
    ["owasp-api:API8", "pci-dss:2.2.4", "nist-csf:PR.IR-01"]
);
check!(HEADERS_WEAKENED, "PX-PLAT-002", false, "Security response headers turned off",
    "Without HSTS a browser may be downgraded to plain HTTP; without nosniff it may run a response as script.",
    ["owasp-api:API8", "nist-csf:PR.PS-01"]);
check!(PAN_URL_ALLOWED, "PX-PLAT-003", false, "Card numbers in URLs are let through",
    "With the card-number check off, a card number in a path or query string reaches the upstream and its logs.",
    ["pci-dss:3.4.1", "owasp-api:API8", "nist-csf:PR.DS-02"]);
check!(UNROUTED_OPERATION, "PX-INV-001", true, "Documented operation has no gateway route",
    "The operation is published but the gateway does not serve it: either the document is out of date or the API is reached another way, around the gateway's controls.",
    ["owasp-api:API9", "pci-dss:6.3.2", "pci-dss:12.5.1", "nist-csf:ID.AM-02"]);
check!(UNDOCUMENTED_ROUTE, "PX-INV-002", true, "Route has no documented operation",
    "The gateway forwards requests that no document describes; undocumented endpoints escape review.",
    ["owasp-api:API9", "pci-dss:6.3.2", "gdpr:30", "nist-csf:ID.AM-02"]);
check!(DEPRECATED_ROUTED, "PX-INV-003", true, "Deprecated operation still routed",
    "Deprecated operations tend to miss later security fixes yet stay reachable through the gateway.",
    ["owasp-api:API9", "pci-dss:2.2.4", "nist-csf:ID.AM-02"]);
check!(NONPROD_SERVER, "PX-INV-004", true, "Non-production server in an API document",
    "Public documents that list test or internal hosts point attackers at environments that usually have weaker controls and real data copies.",
    ["owasp-api:API9", "pci-dss:6.3.2", "nist-csf:ID.AM-02"]);
check!(SSRF, "PX-SSRF-001", true, "Operation accepts a URL from the client",
    "An API that fetches a client-supplied URL can be made to reach internal services or cloud metadata; the gateway cannot see what the API fetches.",
    ["owasp-api:API7", "pci-dss:6.2.4", "nist-csf:PR.IR-01"]);
check!(NO_AUDIT, "PX-LOG-001", false, "Audit trail not configured",
    "Without an audit trail, decisions on access to card and personal data cannot be reconstructed or proven afterwards.",
    ["pci-dss:10.2.1", "pci-dss:10.3.2", "gdpr:32", "nist-csf:PR.PS-04", "nist-csf:DE.CM-09"]);
check!(
    NO_ACCESS_LOG,
    "PX-LOG-002",
    false,
    "Access log turned off",
    "Without access log lines, abuse and incidents cannot be investigated from the gateway.",
    ["pci-dss:10.2.1", "nist-csf:PR.PS-04"]
);

check!(AUDIT_LOSSY, "PX-LOG-003", false, "Audit records can be lost",
    "With on_failure: allow, requests are served while the audit log cannot be written; with an fsync interval, records of the last interval are lost when the host fails.",
    ["pci-dss:10.2.1", "pci-dss:10.3.2", "nist-csf:PR.PS-04"]);
check!(DECISION_INPUT_LOGGED, "PX-LOG-004", false, "Policy input logged without scrubbing",
    "The decision log then carries the whole policy input, with claims, headers and subjects, while the logging settings leave personal fields in clear.",
    ["gdpr:5", "gdpr:25", "gdpr:32", "nist-csf:PR.DS-01"]);

/// Every check, in the order reports document them.
pub const ALL: &[&CheckDef] = &[
    &PUBLIC_ROUTE,
    &WEAK_HMAC_SECRET,
    &NO_AUDIENCE,
    &LONG_CLOCK_SKEW,
    &NO_ALGORITHMS,
    &NO_REVOCATION,
    &API_KEY_IN_QUERY,
    &LONG_TOKEN_LIFETIME,
    &BOLA,
    &SCOPES_WEAKER,
    &PRIVILEGED_UNGUARDED,
    &PRIVILEGED_COMMON_SCOPE,
    &BODY_OBJECT_ID,
    &CROSS_TENANT,
    &FLOW_UNLIMITED,
    &FLOW_LIMIT_SPOOFABLE,
    &SENSITIVE_RESPONSE,
    &PII_IN_QUERY,
    &LARGE_BODY_LIMIT,
    &MASS_ASSIGNMENT,
    &UNBOUNDED_PAGE,
    &VERBOSE_ERRORS,
    &PLAIN_HTTP,
    &PLAIN_UPSTREAM,
    &OLD_TLS,
    &ADMIN_EXPOSED,
    &HEADERS_WEAKENED,
    &PAN_URL_ALLOWED,
    &UNROUTED_OPERATION,
    &UNDOCUMENTED_ROUTE,
    &DEPRECATED_ROUTED,
    &NONPROD_SERVER,
    &SSRF,
    &NO_AUDIT,
    &NO_ACCESS_LOG,
    &AUDIT_LOSSY,
    &DECISION_INPUT_LOGGED,
];

/// Finds a check by id.
pub fn by_id(id: &str) -> Option<&'static CheckDef> {
    ALL.iter().copied().find(|check| check.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapping_is_in_catalogue() {
        let controls = super::super::controls::catalogue();
        for check in ALL {
            for mapping in check.mappings {
                assert!(
                    controls.iter().any(|c| c.id == *mapping),
                    "{} maps to {mapping}, which the catalogue lacks",
                    check.id
                );
            }
        }
    }

    #[test]
    fn yaml_scalar_reads_back_unchanged() {
        let cases = [
            ("scope with a colon", "payments:write", "payments:write"),
            ("route id", "get-order", "get-order"),
            ("markup", "<img src=x>", "\"<img src=x>\""),
            ("boolean word", "true", "\"true\""),
            ("trailing colon", "orders:", "\"orders:\""),
            ("empty", "", "\"\""),
        ];
        for (description, value, expected) in cases {
            let written = yaml_scalar(value);
            assert_eq!(written, expected, "{description}");
            let list = crate::config::yaml::parse(&format!("key: [{written}]\n")).unwrap();
            let crate::config::yaml::Value::Mapping(entries) = &list.value else {
                panic!("{description}: not a mapping");
            };
            let crate::config::yaml::Value::Sequence(items) = &entries[0].1.value else {
                panic!("{description}: not a list");
            };
            let read = crate::config::reader::scalar_text(&items[0]);
            assert_eq!(read, Some(value), "{description}");
        }
    }

    #[test]
    fn check_ids_unique() {
        for (i, check) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|other| other.id != check.id),
                "{} twice",
                check.id
            );
        }
    }
}
