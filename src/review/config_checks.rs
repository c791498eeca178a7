//! Checks that read the gateway configuration alone.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::yaml::{Node, Value};

use super::checks::{self, FindingExt};
use super::gateway::{get, strings, text, Gateway, RouteView};
use super::model::{Finding, Severity, SkippedCheck, SnippetScope};
use super::{access_checks, log_checks, token_checks};

/// Shortest HMAC secret accepted without a finding, in bytes (256 bits,
/// the output size of SHA-256).
const MIN_SECRET_BYTES: usize = 32;
/// Fewest distinct byte values a secret of that length must contain; a
/// secret of repeated characters or a short word repeated has fewer.
const MIN_DISTINCT_BYTES: usize = 12;
/// Longest clock skew accepted without a finding.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(120);
/// Largest request body limit accepted without a finding.
const MAX_BODY_BYTES: u64 = 10 << 20;

/// Words in a route's path or id that mark a flow worth abusing.
const SENSITIVE_FLOW_WORDS: &[&str] = &[
    "login", "signin", "sign-in", "password", "reset", "otp", "mfa", "2fa", "verify", "token",
    "transfer", "payment", "payout", "refund",
];

/// Findings and checks that could not run.
#[derive(Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub skipped: Vec<SkippedCheck>,
}

/// Runs every configuration check. `with_documents` tells whether OpenAPI
/// documents were given, in which case public routes are judged against
/// them by the API checks instead.
pub fn run(gateway: &Gateway, with_documents: bool) -> Outcome {
    let mut out = Outcome::default();
    if !with_documents {
        for route in gateway.routes.iter().filter(|r| r.public) {
            out.findings.push(public_route(gateway, route));
        }
    }
    check_issuers(gateway, &mut out);
    check_revocation(gateway, &mut out);
    for route in &gateway.routes {
        check_object_ids(gateway, route, &mut out.findings);
        check_privileged(gateway, route, &mut out.findings);
        check_flow_limits(gateway, route, &mut out.findings);
        check_route_body_limit(gateway, route, &mut out.findings);
    }
    check_server(gateway, &mut out.findings);
    check_upstreams(gateway, &mut out.findings);
    check_admin(gateway, &mut out.findings);
    check_headers(gateway, &mut out.findings);
    check_logging(gateway, &mut out.findings);
    access_checks::run(gateway, &mut out.findings);
    token_checks::run(gateway, &mut out.findings);
    log_checks::run(gateway, &mut out.findings);
    out
}

/// Builds the finding for a public route judged on the configuration alone:
/// medium when it changes data, low when it only reads.
pub fn public_route(gateway: &Gateway, route: &RouteView) -> Finding {
    let writes = route
        .methods
        .iter()
        .any(|m| !matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS"));
    let severity = if writes {
        Severity::Medium
    } else {
        Severity::Low
    };
    checks::PUBLIC_ROUTE
        .finding(
            severity,
            format!(
                "route {:?} ({} {}) sets authentication: none",
                route.id,
                route.methods.join(","),
                route.path
            ),
            "Require a credential unless the route is meant to be public, and document public operations with security: [] so the review can tell them apart.",
        )
        .in_config(gateway.at_route(route, "authentication"))
        .snippet(
            SnippetScope::Route,
            "authentication: required\nrequire:\n  scopes: [<scope>]",
        )
}

/// Visits every issuer, in `authentication.issuers` and under tenants,
/// with its key path.
pub fn issuers(gateway: &Gateway) -> Vec<(String, &Node)> {
    let mut found = Vec::new();
    if let Some(Value::Sequence(items)) = gateway.get("authentication.issuers").map(|n| &n.value) {
        for (i, item) in items.iter().enumerate() {
            found.push((format!("authentication.issuers[{i}]"), item));
        }
    }
    if let Some(Value::Sequence(tenants)) = gateway.get("tenants").map(|n| &n.value) {
        for (t, tenant) in tenants.iter().enumerate() {
            if let Some(Value::Sequence(items)) = get(tenant, "issuers").map(|n| &n.value) {
                for (i, item) in items.iter().enumerate() {
                    found.push((format!("tenants[{t}].issuers[{i}]"), item));
                }
            }
        }
    }
    found
}

fn check_issuers(gateway: &Gateway, out: &mut Outcome) {
    for (path, issuer) in issuers(gateway) {
        let name = get(issuer, "issuer").and_then(text).unwrap_or("?");
        if let Some(secret) = get(issuer, "secret") {
            check_secret(gateway, &path, name, secret, out);
        }
        let audiences = get(issuer, "audiences").map(strings).unwrap_or_default();
        if audiences.is_empty() || audiences.iter().any(|a| a == "*" || a.is_empty()) {
            let location = match get(issuer, "audiences") {
                Some(node) => gateway.at(node, &format!("{path}.audiences")),
                None => gateway.at(issuer, &path),
            };
            out.findings.push(
                checks::NO_AUDIENCE
                    .finding(
                        Severity::High,
                        format!("issuer {name:?} has no specific audience"),
                        "List the exact aud values of this API.",
                    )
                    .in_config(location)
                    .snippet(SnippetScope::Issuer, "audiences: [payments-api]"),
            );
        }
        if let Some(node) = get(issuer, "clock_skew") {
            let skew = text(node).and_then(|t| humantime::parse_duration(t).ok());
            if skew.is_some_and(|skew| skew > MAX_CLOCK_SKEW) {
                out.findings.push(
                    checks::LONG_CLOCK_SKEW
                        .finding(
                            Severity::Medium,
                            format!(
                                "issuer {name:?} tolerates a clock skew of {}",
                                text(node).unwrap_or_default()
                            ),
                            "Keep the skew at a minute or less and fix clock synchronisation instead.",
                        )
                        .in_config(gateway.at(node, &format!("{path}.clock_skew")))
                        .snippet(SnippetScope::Issuer, "clock_skew: 30s"),
                );
            }
        }
        let remote_keys = ["discovery", "jwks_url", "jwks_file", "jwks"]
            .iter()
            .any(|key| get(issuer, key).is_some());
        if remote_keys && get(issuer, "algorithms").is_none() {
            out.findings.push(
                checks::NO_ALGORITHMS
                    .finding(
                        Severity::Low,
                        format!("issuer {name:?} accepts whatever algorithm its keys allow"),
                        "Pin the algorithms the identity provider signs with.",
                    )
                    .in_config(gateway.at(issuer, &path))
                    .snippet(SnippetScope::Issuer, "algorithms: [ES256]"),
            );
        }
    }
}

/// Checks the strength of an HMAC secret without ever showing it: only its
/// length and variety are reported.
fn check_secret(gateway: &Gateway, path: &str, name: &str, node: &Node, out: &mut Outcome) {
    let Some(bytes) = resolve_secret(node, &gateway.base_dir) else {
        out.skipped.push(SkippedCheck {
            id: checks::WEAK_HMAC_SECRET.id.to_string(),
            reason: format!(
                "the secret of issuer {name:?} ({path}.secret) is not readable here: set its environment variable or file to check its strength"
            ),
        });
        return;
    };
    let mut distinct = bytes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if bytes.len() >= MIN_SECRET_BYTES && distinct.len() >= MIN_DISTINCT_BYTES {
        return;
    }
    out.findings.push(
        checks::WEAK_HMAC_SECRET
            .finding(
                Severity::High,
                format!(
                    "the secret of issuer {name:?} has {} bytes with {} distinct values; expected at least {MIN_SECRET_BYTES} random bytes",
                    bytes.len(),
                    distinct.len()
                ),
                "Generate the secret from a random source, such as `openssl rand -base64 48`, or move the issuer to asymmetric keys.",
            )
            .in_config(gateway.at(node, &format!("{path}.secret")))
            .snippet(
                SnippetScope::Issuer,
                "secret: { file: secrets/hmac.key }   # 48 random bytes",
            ),
    );
}

/// Reads a `{ env: NAME }` or `{ file: PATH }` secret, `None` when it is
/// not available here.
fn resolve_secret(node: &Node, base_dir: &Path) -> Option<Vec<u8>> {
    if let Some(name) = get(node, "env").and_then(text) {
        return std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(String::into_bytes);
    }
    let file = get(node, "file").and_then(text)?;
    let bytes = std::fs::read(crate::config::resolve_path(base_dir, file)).ok()?;
    Some(bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec())
}

fn check_revocation(gateway: &Gateway, out: &mut Outcome) {
    let all = issuers(gateway);
    if all.is_empty() {
        return;
    }
    let introspection = all.iter().any(|(_, i)| get(i, "introspection").is_some());
    let redis = gateway.get("rate_limit_store.type").and_then(text) == Some("redis");
    if introspection || redis {
        return;
    }
    out.findings.push(
        checks::NO_REVOCATION
            .finding(
                Severity::Low,
                "no issuer uses introspection and rate_limit_store is not Redis, so `portcullis token revoke` has nowhere to record revocations".into(),
                "Add a Redis rate_limit_store (revocations are shared through it) or introspection for issuers whose tokens must be revocable.",
            )
            .in_config(gateway.missing("rate_limit_store"))
            .snippet(
                SnippetScope::TopLevel,
                "rate_limit_store:\n  type: redis\n  url: rediss://redis.internal:6380/0\n  password: { env: REDIS_PASSWORD }",
            ),
    );
}

/// Returns the path parameters of a route pattern that look like object
/// ids, such as `{id}`, `{accountId}` or `{card_id}`.
pub fn id_parameters(pattern: &str) -> Vec<&str> {
    pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .filter(|name| !name.starts_with('*'))
        .filter(|name| {
            let lower = name.to_ascii_lowercase();
            lower == "id"
                || lower.ends_with("id")
                || lower.ends_with("_id")
                || lower.ends_with("number")
        })
        .collect()
}

fn check_object_ids(gateway: &Gateway, route: &RouteView, findings: &mut Vec<Finding>) {
    let ids = id_parameters(&route.path);
    if route.public || ids.is_empty() || route.policy.is_some() {
        return;
    }
    let tenant_bound = route.tenant_from.is_some() || gateway.get("tenant_from").is_some();
    if tenant_bound {
        return;
    }
    findings.push(
        checks::BOLA
            .finding(
                Severity::High,
                format!(
                    "route {:?} ({}) takes {} from the path but has no require.policy and no tenant binding",
                    route.id,
                    route.path,
                    ids.iter().map(|id| format!("{{{id}}}")).collect::<Vec<_>>().join(", ")
                ),
                "Add a policy that compares the object's owner with the caller, or bind the route to the caller's tenant.",
            )
            .in_config(gateway.at_route(route, "require"))
            .snippet(
                SnippetScope::Route,
                "require:\n  policy: data.payments.owns_object   # compares input.route.params with input.subject",
            ),
    );
}

fn check_privileged(gateway: &Gateway, route: &RouteView, findings: &mut Vec<Finding>) {
    let privileged = access_checks::is_privileged(route);
    let guarded = !route.scopes.is_empty() || !route.roles.is_empty() || route.policy.is_some();
    if route.public || !privileged || guarded {
        return;
    }
    findings.push(
        checks::PRIVILEGED_UNGUARDED
            .finding(
                Severity::Medium,
                format!(
                    "route {:?} ({} {}) requires a valid credential but no scope, role or policy",
                    route.id,
                    route.methods.join(","),
                    route.path
                ),
                "Require a scope or role that only the callers of this function hold.",
            )
            .in_config(gateway.at_route(route, "match"))
            .snippet(SnippetScope::Route, "require:\n  roles: [admin]"),
    );
}

/// Whether a route's path or id names a flow worth abusing.
pub fn is_sensitive_flow(route: &RouteView) -> bool {
    let haystack = format!("{} {}", route.path, route.id).to_ascii_lowercase();
    SENSITIVE_FLOW_WORDS
        .iter()
        .any(|word| haystack.contains(word))
}

fn check_flow_limits(gateway: &Gateway, route: &RouteView, findings: &mut Vec<Finding>) {
    if !is_sensitive_flow(route) {
        return;
    }
    let mut policies = gateway.global_rate_limits();
    policies.extend(route.rate_limits.iter().cloned());
    if policies.is_empty() {
        findings.push(
            checks::FLOW_UNLIMITED
                .finding(
                    Severity::High,
                    format!(
                        "route {:?} ({} {}) has no rate limit and none applies globally",
                        route.id,
                        route.methods.join(","),
                        route.path
                    ),
                    "Limit the flow per caller (subject or client for authenticated flows, ip for sign-in).",
                )
                .in_config(gateway.at_route(route, "rate_limits"))
                .snippet(SnippetScope::TopLevel, &flow_limit_snippet(route)),
        );
        return;
    }
    let reasons: Vec<String> = policies
        .iter()
        .map(|name| spoofable_part(gateway, route, name))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    if reasons.is_empty() {
        return;
    }
    findings.push(
        checks::FLOW_LIMIT_SPOOFABLE
            .finding(
                Severity::High,
                format!(
                    "every limit on route {:?} can be reset by the client: {}",
                    route.id,
                    reasons.join("; ")
                ),
                "Key the limit on a value the client cannot choose: the verified subject or client, or ip with trusted_proxies narrowed to the load balancers.",
            )
            .in_config(gateway.at_route(route, "rate_limits"))
            .snippet(
                SnippetScope::TopLevel,
                "server:\n  trusted_proxies: [10.0.0.0/24]   # only the load balancers",
            ),
    );
}

/// Builds a rate limit named after a sensitive route and attaches it to the
/// route: by ip on a public route, by subject behind authentication.
fn flow_limit_snippet(route: &RouteView) -> String {
    let id = checks::yaml_scalar(&route.id);
    let key = if route.public { "ip" } else { "subject" };
    format!(
        "rate_limits:\n  {id}:\n    requests: 5\n    per: 1m\n    key: [{key}]\nroutes:\n  - id: {id}\n    rate_limits: [{id}]"
    )
}

/// Explains how the client controls a policy's key, or `None` when the
/// key holds at least one part the client cannot change freely.
fn spoofable_part(gateway: &Gateway, route: &RouteView, policy: &str) -> Option<String> {
    let keys = gateway.rate_limit_keys(policy)?;
    let trusts_everyone = gateway
        .get("server.trusted_proxies")
        .map(strings)
        .unwrap_or_default()
        .iter()
        .any(|net| net == "0.0.0.0/0" || net == "::/0");
    let tenant_header = route.tenant_from.as_deref() == Some("header")
        || gateway
            .get("tenant_from")
            .map(super::gateway::describe_tenant_from)
            .as_deref()
            == Some("header");
    keys.iter().find_map(|key| match key.as_str() {
        "ip" if trusts_everyone => Some(format!(
            "policy {policy:?} counts by ip, and server.trusted_proxies believes X-Forwarded-For from any peer"
        )),
        "tenant" if tenant_header && route.public => Some(format!(
            "policy {policy:?} counts by tenant, which this public route takes from a request header"
        )),
        _ => None,
    })
}

fn check_route_body_limit(gateway: &Gateway, route: &RouteView, findings: &mut Vec<Finding>) {
    let location = gateway.at_route(route, "max_body_bytes");
    let Some(limit) = location_size(gateway, &format!("{}.max_body_bytes", route.key_path)) else {
        return;
    };
    if limit > MAX_BODY_BYTES {
        findings.push(
            large_body(format!(
                "route {:?} accepts bodies up to {limit} bytes",
                route.id
            ))
            .in_config(location)
            .snippet(SnippetScope::Route, "max_body_bytes: 1MiB"),
        );
    }
}

fn large_body(evidence: String) -> Finding {
    checks::LARGE_BODY_LIMIT.finding(
        Severity::Medium,
        evidence,
        "Lower the limit to what the API's largest legitimate request needs.",
    )
}

/// Reads a byte size at a key path written with route indexes, such as
/// `routes[3].max_body_bytes`.
fn location_size(gateway: &Gateway, key_path: &str) -> Option<u64> {
    let node = node_at(gateway, key_path)?;
    parse_byte_size(text(node)?)
}

fn node_at<'a>(gateway: &'a Gateway, key_path: &str) -> Option<&'a Node> {
    let mut node = &gateway.root;
    for part in key_path.split('.') {
        match part.split_once('[') {
            Some((key, index)) => {
                let index: usize = index.trim_end_matches(']').parse().ok()?;
                let Value::Sequence(items) = &get(node, key)?.value else {
                    return None;
                };
                node = items.get(index)?;
            }
            None => node = get(node, part)?,
        }
    }
    Some(node)
}

/// Parses a size such as `16KiB`, `1MiB`, `512kB` or a number of bytes,
/// with the units the configuration accepts.
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// Whether a listen address or URL host is on the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_server(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let address_node = gateway.get("server.address");
    let address = address_node.and_then(text).unwrap_or("127.0.0.1:8080");
    if gateway.get("server.tls").is_none() {
        let loopback = address
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        let (severity, note) = if loopback {
            (
                Severity::Medium,
                "; it listens on loopback, so TLS must be terminated by a proxy on the same host",
            )
        } else {
            (Severity::High, "")
        };
        let location = match address_node {
            Some(node) => gateway.at(node, "server.address"),
            None => gateway.missing("server.tls"),
        };
        findings.push(
            checks::PLAIN_HTTP
                .finding(
                    severity,
                    format!("server listens on {address} without tls{note}"),
                    "Serve TLS on the listener.",
                )
                .in_config(location)
                .snippet(
                    SnippetScope::TopLevel,
                    "server:\n  tls:\n    certificate: certs/api.pem\n    key: certs/api.key\n    min_version: \"1.2\"",
                ),
        );
    }
    check_tls_version(gateway, findings);
    if let Some(limit) = location_size(gateway, "server.limits.max_body_bytes") {
        if limit > MAX_BODY_BYTES {
            let node = node_at(gateway, "server.limits.max_body_bytes").expect("read above");
            findings.push(
                large_body(format!(
                    "routes without their own limit accept bodies up to {limit} bytes"
                ))
                .in_config(gateway.at(node, "server.limits.max_body_bytes"))
                .snippet(
                    SnippetScope::TopLevel,
                    "server:\n  limits:\n    max_body_bytes: 1MiB",
                ),
            );
        }
    }
    if let Some(node) = gateway.get("server.reject_pan_in_url") {
        if text(node) == Some("false") {
            findings.push(
                checks::PAN_URL_ALLOWED
                    .finding(
                        Severity::Medium,
                        "server.reject_pan_in_url is false".into(),
                        "Keep the check on; move ids that look like card numbers out of URLs instead.",
                    )
                    .in_config(gateway.at(node, "server.reject_pan_in_url"))
                    .snippet(SnippetScope::TopLevel, "server:\n  reject_pan_in_url: true"),
            );
        }
    }
}

/// Reports a `server.tls.min_version` below 1.2. The gateway offers no
/// cipher setting: rustls picks from its own list of strong suites.
fn check_tls_version(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let Some(node) = gateway.get("server.tls.min_version") else {
        return;
    };
    let written = text(node).unwrap_or_default();
    let version = written
        .trim()
        .to_ascii_lowercase()
        .trim_start_matches("tls")
        .trim_start_matches('v')
        .trim()
        .to_string();
    if !matches!(version.as_str(), "1" | "1.0" | "1.1") {
        return;
    }
    findings.push(
        checks::OLD_TLS
            .finding(
                Severity::High,
                format!("server.tls.min_version is {written}"),
                "Accept TLS 1.2 and later only; the gateway itself refuses lower values, so this configuration also fails `portcullis check`.",
            )
            .in_config(gateway.at(node, "server.tls.min_version"))
            .snippet(
                SnippetScope::TopLevel,
                "server:\n  tls:\n    min_version: \"1.2\"",
            ),
    );
}

fn check_upstreams(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let Some(Value::Mapping(entries)) = gateway.get("upstreams").map(|n| &n.value) else {
        return;
    };
    for (key, upstream) in entries {
        let name = text(key).unwrap_or("?");
        let Some(url_node) = get(upstream, "url") else {
            continue;
        };
        let Some(rest) = text(url_node).and_then(|u| u.strip_prefix("http://")) else {
            continue;
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => authority,
        };
        if is_loopback_host(host) {
            continue;
        }
        findings.push(
            checks::PLAIN_UPSTREAM
                .finding(
                    Severity::Medium,
                    format!("upstream {name:?} is reached at http://{authority}"),
                    "Reach the upstream over https, or keep it on the same host.",
                )
                .in_config(gateway.at(url_node, &format!("upstreams.{name}.url")))
                .snippet(
                    SnippetScope::TopLevel,
                    &format!(
                        "upstreams:\n  {}:\n    url: https://{authority}",
                        checks::yaml_scalar(name)
                    ),
                ),
        );
    }
}

fn check_admin(gateway: &Gateway, findings: &mut Vec<Finding>) {
    if gateway.get("admin.enabled").and_then(text) == Some("false") {
        return;
    }
    let Some(node) = gateway.get("admin.address") else {
        return;
    };
    let address = text(node).unwrap_or_default();
    let loopback = address
        .parse::<SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if loopback {
        return;
    }
    findings.push(
        checks::ADMIN_EXPOSED
            .finding(
                Severity::Medium,
                format!("admin endpoints (/healthz, /readyz, /metrics) listen on {address}"),
                "Bind the admin listener to loopback or to an interface only the operator's network reaches.",
            )
            .in_config(gateway.at(node, "admin.address"))
            .snippet(SnippetScope::TopLevel, "admin:\n  address: 127.0.0.1:9090"),
    );
}

fn check_headers(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let cases = [
        (
            "response_headers.hsts",
            "",
            "HSTS is disabled (hsts: \"\")",
            "response_headers:\n  hsts: max-age=31536000",
        ),
        (
            "response_headers.nosniff",
            "false",
            "nosniff is turned off",
            "response_headers:\n  nosniff: true",
        ),
    ];
    for (key_path, bad, evidence, snippet) in cases {
        let Some(node) = gateway.get(key_path) else {
            continue;
        };
        if text(node) != Some(bad) {
            continue;
        }
        findings.push(
            checks::HEADERS_WEAKENED
                .finding(Severity::Low, evidence.into(), "Restore the default.")
                .in_config(gateway.at(node, key_path))
                .snippet(SnippetScope::TopLevel, snippet),
        );
    }
}

fn check_logging(gateway: &Gateway, findings: &mut Vec<Finding>) {
    if gateway.get("audit").is_none() {
        findings.push(
            checks::NO_AUDIT
                .finding(
                    Severity::High,
                    "the configuration has no top-level audit section".into(),
                    "Turn on the tamper-evident audit log and keep its files for the retention the regulations ask (a year for PCI DSS).",
                )
                .in_config(gateway.missing("audit"))
                .snippet(
                    SnippetScope::TopLevel,
                    "audit:\n  directory: /var/lib/portcullis/audit\n  signing_key: keys/audit-ed25519.pem   # openssl genpkey -algorithm ed25519\n  pseudonyms: { directory: /var/lib/portcullis/pseudonyms }",
                ),
        );
    }
    if let Some(node) = gateway.get("server.access_log") {
        if text(node) == Some("false") {
            findings.push(
                checks::NO_ACCESS_LOG
                    .finding(
                        Severity::Medium,
                        "server.access_log is false".into(),
                        "Keep access logging on; it never records tokens, keys or query strings.",
                    )
                    .in_config(gateway.at(node, "server.access_log"))
                    .snippet(SnippetScope::TopLevel, "server:\n  access_log: true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(config: &str) -> Vec<Finding> {
        let gateway = Gateway::parse(config, "gw.yaml", Path::new(".")).unwrap();
        run(&gateway, false).findings
    }

    #[test]
    fn tls_minimum_version_below_1_2_reported() {
        let cases = [
            ("TLS 1.0 as a number", "min_version: 1.0", true),
            ("TLS 1.1 as a string", "min_version: \"1.1\"", true),
            ("TLSv1.1 spelled out", "min_version: TLSv1.1", true),
            ("TLS 1.2", "min_version: \"1.2\"", false),
            ("TLS 1.3", "min_version: \"1.3\"", false),
        ];
        for (description, setting, expected) in cases {
            let found = findings(&format!(
                "server:\n  address: 0.0.0.0:8443\n  tls: {{ certificate: c.pem, key: k.pem, {setting} }}\n"
            ));
            let old: Vec<&Finding> = found.iter().filter(|f| f.id == "PX-TLS-003").collect();
            assert_eq!(!old.is_empty(), expected, "{description}");
            if expected {
                assert_eq!(
                    old[0].config.as_ref().unwrap().key_path,
                    "server.tls.min_version"
                );
            }
        }
    }

    #[test]
    fn refund_without_scope_is_privileged() {
        let found = findings(
            "routes:\n  - id: refund\n    match: { path: '/payments/{paymentId}/refunds', methods: [POST] }\n    require: { policy: data.p.allow }\n  - id: refund-open\n    match: { path: /refunds, methods: [POST] }\n",
        );
        let privileged: Vec<&str> = found
            .iter()
            .filter(|f| f.id == "PX-AUTHZ-003")
            .map(|f| f.evidence.as_str())
            .collect();
        assert_eq!(privileged.len(), 1, "{privileged:?}");
        assert!(privileged[0].contains("refund-open"), "{privileged:?}");
    }
}
