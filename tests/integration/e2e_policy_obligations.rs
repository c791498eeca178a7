//! Response obligations end to end: a Rego decision
//! `{"allow": true, "obligations": {"mask": [...]}}` masks those fields of
//! the upstream response (`tests/fixtures/lib/pii.js`), on routes with and
//! without a `mask` section, and obligations the gateway cannot apply deny
//! with 403 `policy_error` before the request goes upstream.
//!
//! | route | path | mask section | rule |
//! | --- | --- | --- | --- |
//! | plain | /pii/{*rest} | none | data.oblig.read |
//! | masked | /pii-pass/{*rest} | ssn, unmask_scope read:pii, on_error: pass | data.oblig.read |
//! | bad | /pii-small/{*rest} | none | data.oblig.bad, obligations chosen by `rest` |

use crate::common;

use common::{config_for, Gateway, Provider, ProviderOptions, Response, Upstream};
use serde_json::Value;

const POLICY: &str = r#"package oblig

# Readers without read:users:pii get the contact fields and the card
# number masked.
read := {"allow": true, "obligations": {"mask": mask_fields}} if "read:users" in input.scopes

mask_fields := [] if "read:users:pii" in input.scopes

mask_fields := ["email", "phone", {"path": "$[*].card.number", "style": "pci"}] if {
	scopes := input.scopes
	not "read:users:pii" in scopes
}

invalid := {
	"not-a-list": {"mask": "email"},
	"unknown-member": {"mask": ["email"], "log": true},
	"bad-path": {"mask": ["$[?(@.email)]"]},
	"bad-style": {"mask": [{"path": "email", "style": "hash"}]},
	"number": {"mask": [7]},
	"not-an-object": ["email"],
	"pseudonym-without-key": {"mask": [{"path": "email", "style": "pseudonym"}]},
}

bad := {"allow": true, "obligations": invalid[input.route.params.rest]}
"#;

const PLAIN: &str = "id: plain\nmatch: { path: \"/pii/{*rest}\", methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users], policy: data.oblig.read }";

const MASKED: &str = "id: masked\nmatch: { path: \"/pii-pass/{*rest}\", methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users], policy: data.oblig.read }\nmask:\n  fields:\n    - { path: \"$[*].ssn\" }\n  unmask_scope: read:pii\n  on_error: pass";

const BAD: &str = "id: bad\nmatch: { path: \"/pii-small/{*rest}\", methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users], policy: data.oblig.bad }";

struct Setup {
    upstream: Upstream,
    provider: Provider,
    gateway: Gateway,
    _policy_dir: tempfile::TempDir,
}

async fn start() -> Setup {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let policy_dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(policy_dir.path().join("oblig.rego"), POLICY).expect("writing the policy");

    let yaml = config_for(&upstream, &[&provider])
        .rate_limit(1000, "1m")
        .route(PLAIN)
        .route(MASKED)
        .route(BAD)
        .yaml();
    let yaml = format!(
        "{yaml}\npolicies:\n  paths: [\"{}\"]\n  budget: 50ms\n",
        policy_dir.path().display()
    );
    let gateway = Gateway::start(&yaml).await;
    Setup {
        upstream,
        provider,
        gateway,
        _policy_dir: policy_dir,
    }
}

fn token(setup: &Setup, subject: &str, scope: &str) -> String {
    setup.provider.forge().subject(subject).scope(scope).sign()
}

async fn get(setup: &Setup, path: &str, token: &str) -> Response {
    setup.gateway.get(path).bearer(token).send().await
}

/// Asserts each `(description, JSON pointer, expected)` of `body`.
#[track_caller]
fn assert_fields(body: &Value, cases: &[(&str, &str, &str)]) {
    for (description, pointer, expected) in cases {
        assert_eq!(
            body.pointer(pointer).and_then(Value::as_str),
            Some(*expected),
            "{description} ({pointer}): {body}"
        );
    }
}

#[tokio::test]
async fn obligations_mask_route_without_mask_section() {
    let setup = start().await;
    let reader = token(&setup, "reader", "read:users");

    let response = get(&setup, "/pii/users", &reader).await;

    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(
        response.header("cache-control"),
        Some("private, max-age=60")
    );
    assert_eq!(response.header("vary"), Some("authorization"));
    let body = response.json();
    assert_fields(
        &body,
        &[
            ("name masks every email", "/0/email", "[REDACTED]"),
            ("escaped email masked", "/1/email", "[REDACTED]"),
            (
                "email in nested lists",
                "/1/contacts/0/0/email",
                "[REDACTED]",
            ),
            ("phone", "/0/phone", "[REDACTED]"),
            (
                "phone in nested lists",
                "/1/contacts/0/0/phone",
                "[REDACTED]",
            ),
            (
                "path with pci style",
                "/0/card/number",
                "4111 11** **** 1111",
            ),
            ("field not named kept", "/0/ssn", "123-45-6789"),
            (
                "no detectors run",
                "/0/notes",
                "paid with 5500-0000-0000-0004 for ORD-12345678",
            ),
            ("name kept", "/0/name", "Ann Example"),
        ],
    );
}

#[tokio::test]
async fn obligations_skip_caller_with_pii_scope() {
    let setup = start().await;
    let pii_reader = token(&setup, "pii-reader", "read:users read:users:pii");

    let response = get(&setup, "/pii/users", &pii_reader).await;

    assert_eq!(response.status(), 200, "{}", response.text());
    // The upstream sends `public`, but another caller gets another body.
    assert_eq!(
        response.header("cache-control"),
        Some("private, max-age=60")
    );
    assert_eq!(response.header("vary"), Some("authorization"));
    assert_fields(
        &response.json(),
        &[
            ("email", "/0/email", "ann@example.com"),
            ("phone", "/0/phone", "+44 20 7946 0958"),
            ("card number", "/0/card/number", "4111 1111 1111 1111"),
        ],
    );
}

#[tokio::test]
async fn cached_decision_still_masks() {
    let setup = start().await;
    let reader = token(&setup, "reader", "read:users");

    for attempt in ["first", "cached"] {
        let response = get(&setup, "/pii/users", &reader).await;
        assert_eq!(response.status(), 200, "{attempt}: {}", response.text());
        assert_fields(&response.json(), &[(attempt, "/0/email", "[REDACTED]")]);
    }

    let logs = setup.gateway.logs();
    let decisions: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("policy decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(decisions[1].contains("\"cached\":true"), "{}", decisions[1]);
}

#[tokio::test]
async fn obligations_add_to_route_rules() {
    let setup = start().await;
    let reader = token(&setup, "reader", "read:users");

    let response = get(&setup, "/pii-pass/users", &reader).await;

    assert_eq!(response.status(), 200, "{}", response.text());
    assert_fields(
        &response.json(),
        &[
            ("route rule", "/0/ssn", "[REDACTED]"),
            ("obligation", "/0/email", "[REDACTED]"),
            ("obligation style", "/0/card/number", "4111 11** **** 1111"),
            ("neither", "/0/name", "Ann Example"),
        ],
    );
}

#[tokio::test]
async fn obligations_apply_despite_unmask_scope() {
    let setup = start().await;
    let unmasker = token(&setup, "unmasker", "read:users read:pii");

    let response = get(&setup, "/pii-pass/users", &unmasker).await;

    assert_eq!(response.status(), 200, "{}", response.text());
    assert_fields(
        &response.json(),
        &[
            ("route rule lifted", "/0/ssn", "123-45-6789"),
            ("obligation kept", "/0/email", "[REDACTED]"),
            ("obligation kept", "/0/phone", "[REDACTED]"),
        ],
    );
}

#[tokio::test]
async fn unmaskable_body_blocked_despite_on_error_pass() {
    let setup = start().await;
    let reader = token(&setup, "reader", "read:users");
    let pii_reader = token(&setup, "pii-reader", "read:users read:users:pii");

    let blocked = get(&setup, "/pii-pass/binary", &reader).await;
    assert_eq!(blocked.status(), 502, "{}", blocked.text());
    assert_eq!(blocked.json()["reason"], "response_unmaskable");

    // Without obligations the route's own on_error: pass applies.
    let passed = get(&setup, "/pii-pass/binary", &pii_reader).await;
    assert_eq!(passed.status(), 200, "{}", passed.text());
}

#[tokio::test]
async fn invalid_obligations_deny_with_policy_error() {
    let setup = start().await;
    let reader = token(&setup, "reader", "read:users");
    let cases = [
        (
            "not-a-list",
            "obligations.mask: expected a list, found a string",
        ),
        (
            "unknown-member",
            "obligations: unknown member, expected only `mask`",
        ),
        ("bad-path", "obligations.mask[0]: invalid field path"),
        (
            "bad-style",
            "obligations.mask[0].style: expected redact, pci or pseudonym",
        ),
        (
            "number",
            "obligations.mask[0]: expected a field name, a path or an object, found a number",
        ),
        (
            "not-an-object",
            "obligations: expected an object, found a list",
        ),
        (
            "pseudonym-without-key",
            "policy obligations need a pseudonym key",
        ),
    ];

    for (case, logged) in cases {
        let response = get(&setup, &format!("/pii-small/{case}"), &reader).await;
        assert_eq!(response.status(), 403, "{case}: {}", response.text());
        assert_eq!(response.json()["reason"], "policy_error", "{case}");
        assert!(
            !response.text().contains("example"),
            "{case}: {}",
            response.text()
        );
        assert!(
            setup.gateway.logs().contains(logged),
            "{case}: no log line with {logged:?}"
        );
    }

    assert_eq!(
        setup.upstream.count().await,
        0,
        "a request with invalid obligations reached the upstream"
    );
}
