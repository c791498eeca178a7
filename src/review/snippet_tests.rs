//! Every fix snippet is configuration that `portcullis check` accepts.
//!
//! The checks build their snippets in code, several from the inputs (route
//! ids, upstream names, documented scopes), so the snippets are collected
//! by running the review on scenarios that trigger every check in
//! `checks::ALL` instead of being copied here. Each snippet is merged into
//! its scenario's configuration at its `SnippetScope`: the top level, or
//! the route or issuer that the finding's location names. The
//! result goes through `config::parse`, the validation `portcullis check`
//! runs. A snippet must add no problem, and must clear every problem at
//! its finding's own location. A check that no scenario triggers fails the
//! test, so a new check needs a trigger here before its snippet counts as
//! tested.
//!
//! Placeholders such as `<scope>` are replaced by a concrete value first.
//! The files that snippets name (`keys/audit-ed25519.pem`,
//! `certs/api.pem`, `secrets/hmac.key`, rules in `policies/`) exist in the
//! scenarios' directory, and the environment variables they name are set.

use std::path::Path;

use base64::Engine;
use regex::Regex;

use crate::config::yaml::{self, Node, Value};

use super::checks;
use super::gateway::Gateway;
use super::model::{Finding, SnippetScope};
use super::openapi::ApiDoc;

/// The 32 bytes HS256 requires, with only 7 distinct byte values: valid
/// for the gateway, weak for the review.
const WEAK_HMAC_SECRET: &str = "changemechangemechangemechangeme";

/// The rules that the scenarios and the snippets name, so that
/// `require.policy` resolves.
const POLICY: &str =
    "package payments\n\ndefault owns_object := false\n\ndefault owns_body_objects := false\n";

/// Triggers most configuration checks, and with `SHOP_API` the document
/// checks. Valid as it is.
const WEAK_SHOP: &str = r#"
server:
  address: 0.0.0.0:8080
  trusted_proxies: [0.0.0.0/0]
  access_log: false
  reject_pan_in_url: false
  limits: { max_body_bytes: 20MiB }
admin:
  address: 0.0.0.0:9090
response_headers:
  hsts: ""
  nosniff: false
upstreams:
  shop:
    url: http://shop.internal.example:8080
authentication:
  issuers:
    - issuer: https://id.example
      audiences: ["*"]
      discovery: true
      clock_skew: 10m
    - issuer: https://legacy.example
      audiences: [shop]
      algorithm: HS256
      secret: { env: PORTCULLIS_TEST_SNIPPET_HMAC }
policies:
  paths: [policies/]
rate_limits:
  sign-in: { requests: 5, per: 1m, key: [ip] }
routes:
  - id: login
    match: { path: /login, methods: [POST] }
    upstream: shop
    authentication: none
    rate_limits: [sign-in]
  - id: password-reset
    match: { path: /password-reset, methods: [POST] }
    upstream: shop
    authentication: none
  - id: status
    match: { path: /status, methods: [GET] }
    upstream: shop
    authentication: none
  - id: get-order
    match: { path: "/orders/{orderId}", methods: [GET] }
    upstream: shop
    require: { scopes: [orders:read] }
  - id: delete-order
    match: { path: "/orders/{orderId}", methods: [DELETE] }
    upstream: shop
  - id: create-payment
    match: { path: /payments, methods: [POST] }
    upstream: shop
    require: { scopes: [payments:read] }
    rate_limits: [sign-in]
  - id: upload
    match: { path: /uploads, methods: [POST] }
    upstream: shop
    require: { scopes: [uploads:write] }
    max_body_bytes: 20MiB
  - id: debug
    match: { path: /debug, methods: [GET] }
    upstream: shop
    require: { scopes: [orders:read] }
  - id: legacy-order
    match: { path: "/orders/{orderId}/legacy", methods: [GET] }
    upstream: shop
    require: { scopes: [orders:read], policy: data.payments.owns_object }
"#;

/// The document of `WEAK_SHOP`'s API, with a gap for every document check.
const SHOP_API: &str = r#"
openapi: 3.0.3
info: { title: Shop, version: "1" }
servers:
  - url: https://api.shop.example
  - url: https://staging.shop.example
security:
  - oauth: [orders:read]
paths:
  /login:
    post:
      security: []
      responses: { "200": { description: ok } }
  /password-reset:
    post:
      security:
        - oauth: [account:write]
      responses: { "204": { description: ok } }
  /orders/{orderId}:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                properties:
                  card: { type: object, properties: { number: { type: string } } }
                  email: { type: string }
        "500":
          description: failed
          content:
            application/json:
              schema: { type: object, properties: { stack: { type: string } } }
    delete:
      responses: { "204": { description: ok } }
  /orders/{orderId}/legacy:
    get:
      deprecated: true
      responses: { "200": { description: ok } }
  /orders/{orderId}/cancel:
    post:
      responses: { "204": { description: ok } }
  /orders:
    get:
      parameters:
        - { name: email, in: query, schema: { type: string } }
        - { name: limit, in: query, schema: { type: integer } }
        - { name: api_key, in: query, schema: { type: string } }
      responses: { "200": { description: ok } }
  /payments:
    post:
      security:
        - oauth: [payments:write]
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                account_id: { type: string }
                role: { type: string }
                callback_url: { type: string }
      responses: { "201": { description: ok } }
  /uploads:
    post:
      security:
        - oauth: [uploads:write]
      responses: { "201": { description: ok } }
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows: { clientCredentials: { tokenUrl: "https://id.example/token", scopes: {} } }
    legacyKey: { type: apiKey, in: query, name: apikey }
"#;

/// TLS below 1.2, which the gateway rejects: the PX-TLS-003 snippet must
/// clear that problem.
const OLD_TLS: &str = r#"
server:
  address: 127.0.0.1:8443
  tls: { certificate: certs/api.pem, key: certs/api.key, min_version: "1.1" }
upstreams:
  shop: { url: "http://127.0.0.1:3000" }
authentication:
  issuers:
    - { issuer: "https://id.example", audiences: [shop], discovery: true, algorithms: [ES256] }
routes:
  - id: status
    match: { path: /status, methods: [GET] }
    upstream: shop
    require: { scopes: [status:read] }
"#;

/// Tenants, the token service, introspection and an audit trail, each
/// with a weakness. Valid as it is.
const TENANTS_AND_AUDIT: &str = r#"
upstreams:
  shop:
    url: https://shop.internal.example
authentication:
  issuers:
    - issuer: https://id.example
      audiences: [shop]
      discovery: true
      algorithms: [ES256]
      introspection:
        client_id: gateway
        client_secret: { env: PORTCULLIS_TEST_SNIPPET_INTROSPECTION }
        cache_max_ttl: 10m
tenants:
  - id: acme
    issuers:
      - issuer: https://acme.id.example
        audiences: [shop]
        discovery: true
        algorithms: [ES256]
token_service:
  issuer: https://gateway.example
  audience: shop
  keys_dir: token-keys
  token_ttl: 1h
audit:
  directory: audit
  signing_key: keys/audit-ed25519.pem
  pseudonyms: { directory: pseudonyms }
  on_failure: allow
  durability: { interval: 1s }
policies:
  paths: [policies/]
  decision_log: { include_input: true }
routes:
  - id: list-items
    match: { path: /items, methods: [GET] }
    upstream: shop
    require: { scopes: [shop] }
  - id: get-item
    match: { path: "/items/{itemId}", methods: [GET] }
    upstream: shop
    require: { scopes: [shop], policy: data.payments.owns_object }
  - id: refund
    match: { path: /refunds, methods: [POST] }
    upstream: shop
    require: { scopes: [shop] }
  - id: org-users
    match: { path: "/orgs/{orgId}/users", methods: [GET] }
    upstream: shop
    require: { scopes: [shop] }
    tenant_from: { header: x-tenant-id }
"#;

/// A configuration to review, its API document if any, and the key paths
/// of the problems the gateway finds in it as written.
struct Scenario {
    name: &'static str,
    config: &'static str,
    document: Option<&'static str>,
    problems: &'static [&'static str],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "weak-shop",
        config: WEAK_SHOP,
        document: Some(SHOP_API),
        problems: &[],
    },
    Scenario {
        name: "old-tls",
        config: OLD_TLS,
        document: None,
        problems: &["server.tls.min_version"],
    },
    Scenario {
        name: "tenants-and-audit",
        config: TENANTS_AND_AUDIT,
        document: None,
        problems: &[],
    },
];

#[test]
fn every_fix_snippet_passes_check() {
    set_snippet_environment();
    let dir = tempfile::tempdir().unwrap();
    write_fixture_files(dir.path());

    let mut reported: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut validated = 0;
    for scenario in SCENARIOS {
        let root = yaml::parse(scenario.config).unwrap();
        let before = problems(&root, dir.path());
        let before_paths: Vec<&str> = before.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            before_paths, scenario.problems,
            "{}: problems of the scenario as written: {before:#?}",
            scenario.name
        );

        let mut seen: Vec<(String, String, String)> = Vec::new();
        for finding in review(scenario, dir.path()) {
            reported.push(finding.id.clone());
            let Some(snippet) = &finding.fix_snippet else {
                continue;
            };
            // The two runs of a scenario repeat the configuration findings.
            let key_path = finding.config.as_ref().map(|c| c.key_path.clone());
            let identity = (
                finding.id.clone(),
                key_path.unwrap_or_default(),
                snippet.clone(),
            );
            if seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            validated += 1;
            if let Err(failure) = check_snippet(&root, &before, &finding, snippet, dir.path()) {
                failures.push(format!(
                    "{} in {}:\n{snippet}\n{failure}",
                    finding.id, scenario.name
                ));
            }
        }
    }

    let untriggered: Vec<&str> = checks::ALL
        .iter()
        .map(|check| check.id)
        .filter(|id| !reported.iter().any(|r| r == id))
        .collect();
    assert!(
        untriggered.is_empty(),
        "no scenario triggers {untriggered:?}; add a trigger so their snippets are validated"
    );
    assert!(validated > 0, "no snippet was validated");
    assert!(
        failures.is_empty(),
        "{} of {validated} snippets are not valid configuration:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Sets the variables that the scenarios and snippets read secrets from.
fn set_snippet_environment() {
    let variables = [
        ("PORTCULLIS_TEST_SNIPPET_HMAC", WEAK_HMAC_SECRET),
        (
            "PORTCULLIS_TEST_SNIPPET_INTROSPECTION",
            "introspection-secret",
        ),
        ("REDIS_PASSWORD", "redis-password"),
        (
            "PORTCULLIS_API_KEY_SECRET",
            "api-key-secret-of-at-least-32-bytes-0123",
        ),
    ];
    for (name, value) in variables {
        std::env::set_var(name, value);
    }
}

/// Writes the files the scenarios and snippets name, relative to `dir`.
fn write_fixture_files(dir: &Path) {
    for sub in ["keys", "certs", "secrets", "policies"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("keys/audit-ed25519.pem"), ed25519_pem()).unwrap();
    // The validation only requires the TLS files to exist.
    std::fs::write(dir.join("certs/api.pem"), "").unwrap();
    std::fs::write(dir.join("certs/api.key"), "").unwrap();
    let mut secret = [0_u8; 48];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).unwrap();
    std::fs::write(dir.join("secrets/hmac.key"), secret).unwrap();
    std::fs::write(dir.join("policies/payments.rego"), POLICY).unwrap();
}

/// Generates an Ed25519 private key as PKCS#8 PEM.
fn ed25519_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Reviews a scenario with its document, and without it when it has one,
/// because public routes are judged by different checks in each case.
fn review(scenario: &Scenario, dir: &Path) -> Vec<Finding> {
    let gateway = Gateway::parse(scenario.config, "scenario.yaml", dir).unwrap();
    let mut findings = super::review_loaded(&gateway, &[], Vec::new()).findings;
    if let Some(document) = scenario.document {
        let doc = ApiDoc::parse(document, "api.yaml").unwrap();
        findings.extend(super::review_loaded(&gateway, &[doc], Vec::new()).findings);
    }
    findings
}

/// Merges a snippet into the scenario at its scope and validates the
/// result. Fails with the problems that the snippet added or left at its
/// finding's location.
fn check_snippet(
    root: &Node,
    before: &[(String, String)],
    finding: &Finding,
    snippet: &str,
    dir: &Path,
) -> Result<(), String> {
    let concrete = Regex::new(r"<[a-z][a-z ]*>")
        .unwrap()
        .replace_all(snippet, "example");
    let patch = yaml::parse(&concrete).map_err(|error| {
        format!(
            "invalid YAML at {}:{}: {}",
            error.line, error.column, error.message
        )
    })?;
    if !matches!(patch.value, Value::Mapping(_)) {
        return Err(format!("expected a mapping, found {}", patch.kind()));
    }

    let key_path = finding
        .config
        .as_ref()
        .map_or("", |location| location.key_path.as_str());
    let scope = finding
        .fix_snippet_scope
        .ok_or("the snippet has no scope")?;
    let target_path = scope_path(key_path, scope).ok_or_else(|| {
        format!("the location {key_path:?} names no place for a {scope:?} snippet")
    })?;
    let mut merged = root.clone();
    let target = node_at_mut(&mut merged, &target_path)
        .ok_or_else(|| format!("{target_path} is not in the scenario"))?;
    merge(target, &patch);

    let after = problems(&merged, dir);
    let wrong: Vec<String> = after
        .iter()
        .filter(|problem| problem.0 == key_path || !before.contains(problem))
        .map(|(path, message)| format!("{path}: {message}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

/// Returns the key path of the mapping a snippet of `scope` goes into: the
/// top (empty), or the route or issuer that starts `key_path`.
fn scope_path(key_path: &str, scope: SnippetScope) -> Option<String> {
    let marker = match scope {
        SnippetScope::TopLevel => return Some(String::new()),
        SnippetScope::Route => "routes[",
        SnippetScope::Issuer => "issuers[",
    };
    let start = key_path.find(marker)?;
    let end = start + key_path[start..].find(']')? + 1;
    Some(key_path[..end].to_string())
}

/// Returns the node at a key path such as `authentication.issuers[1]`.
fn node_at_mut<'a>(root: &'a mut Node, key_path: &str) -> Option<&'a mut Node> {
    let mut node = root;
    for part in key_path.split('.').filter(|part| !part.is_empty()) {
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        node = entry_mut(node, key)?;
        if let Some(index) = index {
            let Value::Sequence(items) = &mut node.value else {
                return None;
            };
            node = items.get_mut(index)?;
        }
    }
    Some(node)
}

fn entry_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    let Value::Mapping(entries) = &mut node.value else {
        return None;
    };
    entries
        .iter_mut()
        .find(|(k, _)| scalar(k) == Some(key))
        .map(|(_, value)| value)
}

fn scalar(node: &Node) -> Option<&str> {
    crate::config::reader::scalar_text(node)
}

/// Returns the `id` of a mapping.
fn item_id(node: &Node) -> Option<&str> {
    let Value::Mapping(entries) = &node.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| scalar(k) == Some("id"))
        .and_then(|(_, value)| scalar(value))
}

/// Merges `patch` into `target` as a reader pastes a snippet. A block
/// mapping is merged key by key, and a block list of mappings with ids
/// (such as `routes`) entry by entry into the entries with the same id. A
/// value written on its key's line, such as `secret: { file: x }`, is a
/// whole value and replaces the old one, as does any other value.
fn merge(target: &mut Node, patch: &Node) {
    match (&mut target.value, &patch.value) {
        (Value::Mapping(entries), Value::Mapping(patches)) => {
            for (key, value) in patches {
                let existing = entries
                    .iter_mut()
                    .find(|(k, _)| scalar(k).is_some() && scalar(k) == scalar(key));
                match existing {
                    Some((_, old)) if value.line > key.line => merge(old, value),
                    Some((_, old)) => *old = value.clone(),
                    None => entries.push((key.clone(), value.clone())),
                }
            }
        }
        (Value::Sequence(items), Value::Sequence(patches))
            if patches.iter().all(|item| item_id(item).is_some()) =>
        {
            for item in patches {
                let existing = items
                    .iter_mut()
                    .find(|old| item_id(old).is_some() && item_id(old) == item_id(item));
                match existing {
                    Some(old) => merge(old, item),
                    None => items.push(item.clone()),
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// Validates a configuration tree as `portcullis check` does, and returns
/// the key path and message of every problem.
fn problems(root: &Node, dir: &Path) -> Vec<(String, String)> {
    let mut text = String::new();
    write_block(root, 0, &mut text);
    match crate::config::parse(&text, "scenario.yaml", dir) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|problem| (problem.path, problem.message))
            .collect(),
    }
}

/// Writes the entries of a mapping or the items of a list in block style,
/// each line indented by `indent` spaces.
fn write_block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Mapping(entries) => {
            for (key, value) in entries {
                out.push_str(&format!("{pad}{}:", scalar_text(key)));
                write_value(value, indent + 2, out);
            }
        }
        Value::Sequence(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                write_value(item, indent + 2, out);
            }
        }
        Value::Scalar { .. } => out.push_str(&format!("{pad}{}\n", scalar_text(node))),
    }
}

/// Writes a value after its `key:` or `-`: a scalar or an empty collection
/// on the same line, anything else as a block on the following lines.
fn write_value(node: &Node, indent: usize, out: &mut String) {
    match &node.value {
        Value::Scalar { .. } => out.push_str(&format!(" {}\n", scalar_text(node))),
        Value::Mapping(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Value::Sequence(items) if items.is_empty() => out.push_str(" []\n"),
        _ => {
            out.push('\n');
            write_block(node, indent, out);
        }
    }
}

/// Writes a scalar as the file had it: plain, or double-quoted when it was
/// quoted, with JSON escapes, which YAML reads the same.
fn scalar_text(node: &Node) -> String {
    match &node.value {
        _ if node.is_null() => "null".to_string(),
        Value::Scalar {
            text,
            quoted: false,
        } => text.clone(),
        Value::Scalar { text, .. } => serde_json::to_string(text).unwrap(),
        _ => unreachable!("only scalars are written inline"),
    }
}
