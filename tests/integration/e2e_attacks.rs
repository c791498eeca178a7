//! End-to-end token attacks: the forged-token catalogue of
//! `tests/integration/common/attacks.rs`, an oversized token and a token in the query
//! string, sent over the socket to the gateway binary in front of the real
//! upstream, with keys that a real provider process publishes.
//!
//! Every attack must end in a 401 problem body and leave the upstream's
//! request count at zero. A control token from the same key and claims gets
//! 200, so each suite proves that it can fail.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::attacks::{attack_catalogue, control_token, AttackCase, ForgeContext};
use common::{config_for, Gateway, KeyFile, Provider, ProviderOptions, Response, Upstream};
use portcullis::authn::jwk::Algorithm;
use portcullis::authn::jwt_sign::SigningKey;
use serde_json::json;

/// Route that the catalogue's tokens can pass: their `scope` claim is
/// `read write`, and the upstream returns 200 for `/faults/headers`.
const CATALOGUE_ROUTE: &str = "id: catalogue
match: { path: /faults/headers, methods: [GET] }
upstream: users
require: { scopes: [read] }";
const CATALOGUE_PATH: &str = "/faults/headers";

/// `list-users` requires `read:users`, which no catalogue token carries, so
/// a forged token that passes authentication there gets 403 and is never
/// forwarded.
const SCOPE_GUARDED_PATH: &str = "/users";

/// The gateway's default clock skew, which the catalogue's time cases
/// straddle.
const CLOCK_SKEW_SECS: i64 = 30;

/// Cases that expect a rejection only while the gateway's clock is in the
/// same whole second as the catalogue's `now`: they set `nbf` or `iat` to
/// `now + skew + 1`, which the gateway accepts one second later.
const SAME_SECOND_CASES: [&str; 2] = ["not_yet_valid_past_leeway", "issued_in_future"];

/// How often the same-second cases are rebuilt and sent again when the
/// gateway may have read its clock in a later second.
const SAME_SECOND_ATTEMPTS: u32 = 5;

/// Cases where the gateway's reason differs from the verification core's
/// `AttackCase::expected_reason`, and why. Every other case gets the core's
/// reason.
///
/// (case name, reason over the wire, why)
const WIRE_REASONS: &[(&str, &str, &str)] = &[
    (
        "base64_padded",
        "authorization_header_malformed",
        "a `=` inside the token is not token68 (RFC 6750), so the Authorization header is rejected before the token is parsed",
    ),
    (
        "base64_whitespace",
        "authorization_header_malformed",
        "a space inside the token splits the header value, which is then not one token68",
    ),
    (
        "issuer_wrong",
        "token_issuer_unknown",
        "the gateway picks the issuer by `iss` among the configured ones, so a foreign `iss` names no issuer",
    ),
    (
        "issuer_missing",
        "token_issuer_unknown",
        "without `iss` the gateway cannot pick an issuer",
    ),
    (
        "issuer_trailing_slash",
        "token_issuer_unknown",
        "`iss` is compared byte for byte, so the slash variant names no configured issuer",
    ),
];

#[tokio::test]
async fn rs256_catalogue_rejected_before_upstream() {
    run_catalogue("RS256").await;
}

#[tokio::test]
async fn es256_catalogue_rejected_before_upstream() {
    run_catalogue("ES256").await;
}

/// Sends every catalogue case for the provider's key of `alg`, then the
/// control token.
async fn run_catalogue(alg: &str) {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider])
        .token_types(&["at+jwt"])
        .route(CATALOGUE_ROUTE);
    let gateway = Gateway::start(&config.yaml()).await;
    let key = provider.keys().key(alg).clone();

    let sent_same_second = send_same_second_cases(&gateway, &provider, &key).await;
    assert_eq!(
        upstream.count().await,
        0,
        "{alg}: a same-second case reached the upstream"
    );

    let ctx = forge_context(&provider, &key);
    let cases = attack_catalogue(&ctx);
    let mut failures = Vec::new();
    let mut sent = sent_same_second;
    for case in cases
        .iter()
        .filter(|case| !SAME_SECOND_CASES.contains(&case.name))
    {
        let response = gateway.get(CATALOGUE_PATH).bearer(&case.token).send().await;
        sent += 1;
        if let Err(failure) = check_rejected(&response, case) {
            failures.push(format!("{alg} {}: {failure}", case.name));
        }
    }
    println!(
        "{alg}: sent {sent} attack cases ({} in the catalogue) through the gateway",
        cases.len()
    );

    assert!(
        failures.is_empty(),
        "{} cases were not rejected as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        upstream.count().await,
        0,
        "{alg}: the upstream was reached during the catalogue"
    );
    assert!(sent >= 35, "{alg}: only {sent} cases were sent");

    let control = gateway
        .get(CATALOGUE_PATH)
        .bearer(&control_token(&ctx))
        .send()
        .await;
    assert_eq!(
        control.status(),
        200,
        "{alg}: the control token was rejected: {}",
        control.text()
    );
    assert_eq!(
        upstream.count().await,
        1,
        "{alg}: the control request did not reach the upstream once"
    );
    let requests = upstream.requests().await;
    assert_eq!(
        requests[0].raw_values("x-portcullis-subject"),
        ["user-1234"],
        "{alg}: identity of the control token"
    );
}

/// Sends the [`SAME_SECOND_CASES`] to a route whose scope no catalogue token
/// has, and checks their rejection in an attempt where the gateway responded
/// within the catalogue's second. Returns how many requests were sent.
async fn send_same_second_cases(gateway: &Gateway, provider: &Provider, key: &KeyFile) -> usize {
    let mut sent = 0;
    for attempt in 1..=SAME_SECOND_ATTEMPTS {
        let ctx = forge_context(provider, key);
        let cases = attack_catalogue(&ctx);
        let same_second: Vec<&AttackCase> = cases
            .iter()
            .filter(|case| SAME_SECOND_CASES.contains(&case.name))
            .collect();
        assert_eq!(
            same_second.len(),
            SAME_SECOND_CASES.len(),
            "the catalogue lacks a same-second case"
        );

        let mut responses = Vec::new();
        for case in &same_second {
            responses.push(
                gateway
                    .get(SCOPE_GUARDED_PATH)
                    .bearer(&case.token)
                    .send()
                    .await,
            );
            sent += 1;
        }
        let answered_at = seconds_now();

        if answered_at < (ctx.now + 1) as f64 {
            for (case, response) in same_second.iter().zip(&responses) {
                check_rejected(response, case)
                    .unwrap_or_else(|failure| panic!("{}: {failure}", case.name));
            }
            return sent;
        }
        // The gateway may have read its clock in the next second, where
        // these tokens are valid: it returns 401 or, for a valid token, 403.
        for (case, response) in same_second.iter().zip(&responses) {
            let status = response.status();
            assert!(
                status == 401 || status == 403,
                "{} (attempt {attempt}): unexpected {status}: {}",
                case.name,
                response.text()
            );
        }
        wait_for_next_second().await;
    }
    panic!("the same-second cases never ran within one second in {SAME_SECOND_ATTEMPTS} attempts");
}

/// Builds a forge context for the provider's `key`, with the provider's
/// issuer, the `users-api` audience, the gateway's skew and the current second.
fn forge_context(provider: &Provider, key: &KeyFile) -> ForgeContext {
    let pem = std::fs::read_to_string(&key.pem_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", key.pem_path.display()));
    let signing_key = SigningKey::from_pkcs8_pem(&pem)
        .unwrap_or_else(|e| panic!("{} is not a PKCS#8 key: {e}", key.pem_path.display()));
    let alg =
        Algorithm::from_name(&key.alg).unwrap_or_else(|| panic!("unknown algorithm {}", key.alg));
    let now = seconds_now().floor() as i64;
    ForgeContext::new(
        signing_key,
        alg,
        &key.kid,
        provider.issuer(),
        provider.audience(),
        now,
        CLOCK_SKEW_SECS,
    )
}

/// Checks a 401 problem body with the reason the gateway gives `case`.
fn check_rejected(response: &Response, case: &AttackCase) -> Result<(), String> {
    let expected = wire_reason(case);
    let reason = response.reason();
    if response.status() != 401 || reason.as_deref() != Some(expected) {
        return Err(format!(
            "got {} {reason:?}, expected 401 {expected}; body {}",
            response.status(),
            response.text()
        ));
    }
    if response.header("content-type") != Some("application/problem+json") {
        return Err(format!(
            "content type {:?}",
            response.header("content-type")
        ));
    }
    Ok(())
}

fn wire_reason(case: &AttackCase) -> &'static str {
    WIRE_REASONS
        .iter()
        .find(|(name, _, _)| *name == case.name)
        .map_or(case.expected_reason, |(_, reason, _)| reason)
}

#[test]
fn wire_reasons_name_catalogue_cases() {
    let ctx = ForgeContext::new(
        SigningKey::generate(Algorithm::Es256).expect("ring generates P-256 keys"),
        Algorithm::Es256,
        "any-kid",
        "https://issuer.test",
        "users-api",
        1_750_000_000,
        CLOCK_SKEW_SECS,
    );
    let cases = attack_catalogue(&ctx);
    for (name, reason, why) in WIRE_REASONS {
        assert!(
            cases.iter().any(|case| case.name == *name),
            "{name} is not a catalogue case"
        );
        assert!(
            reason.starts_with("token_") || *reason == "authorization_header_malformed",
            "{name}: {reason}"
        );
        assert!(!why.is_empty(), "{name} has no explanation");
    }
    for name in SAME_SECOND_CASES {
        assert!(
            cases.iter().any(|case| case.name == name),
            "{name} is not a catalogue case"
        );
    }
}

#[tokio::test]
async fn oversized_token_rejected_unparsed() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    // Room in the header block for a 20 KiB token, so the token limit decides
    // and not the HTTP parser.
    let config = config_for(&upstream, &[&provider]).max_header_bytes("64KiB");
    let gateway = Gateway::start(&config.yaml()).await;

    // A genuine token that the gateway would accept if it read it, padded to
    // 20 KiB, and junk of the same size that parsing would call malformed.
    let genuine = provider
        .forge()
        .subject("reader")
        .scope("read:users")
        .claim("padding", json!("A".repeat(15 * 1024)))
        .sign();
    let junk = "A".repeat(20 * 1024);
    assert!(
        genuine.len() > 20 * 1024,
        "the padded token has {} bytes",
        genuine.len()
    );

    // (description, token)
    let cases = [
        ("genuine token of 20 KiB", genuine.as_str()),
        ("20 KiB of junk", junk.as_str()),
    ];
    for (description, token) in cases {
        let response = gateway.get("/users").bearer(token).send().await;
        assert_problem(&response, 401, "token_too_large", description);
    }
    assert_eq!(
        upstream.count().await,
        0,
        "an oversized token reached the upstream"
    );
    let lookups = gateway
        .metrics()
        .await
        .value("portcullis_token_cache_lookups_total", &[]);
    assert_eq!(
        lookups, 0.0,
        "an oversized token got as far as the token cache"
    );

    // The limit is 8 KiB: one byte more is too large, the limit itself is
    // parsed (and found malformed).
    let at_limit = gateway
        .get("/users")
        .bearer(&"A".repeat(8 * 1024))
        .send()
        .await;
    assert_problem(&at_limit, 401, "token_malformed", "junk of exactly 8 KiB");
    let over_limit = gateway
        .get("/users")
        .bearer(&"A".repeat(8 * 1024 + 1))
        .send()
        .await;
    assert_problem(
        &over_limit,
        401,
        "token_too_large",
        "junk of 8 KiB plus one byte",
    );

    let control = provider
        .forge()
        .subject("reader")
        .scope("read:users")
        .sign();
    let response = gateway.get("/users").bearer(&control).send().await;
    assert_eq!(
        response.status(),
        200,
        "the same forge without padding: {}",
        response.text()
    );
    assert_eq!(upstream.count().await, 1);
}

#[tokio::test]
async fn query_string_token_ignored_and_unlogged() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let mut gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;

    // (description, path)
    let cases = [
        (
            "access_token in the query",
            format!("/users?access_token={token}"),
        ),
        (
            "access_token after another parameter",
            format!("/users/1?page=2&access_token={token}"),
        ),
    ];
    for (description, path) in &cases {
        let response = gateway.get(path).send().await;
        assert_problem(&response, 401, "token_missing", description);
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer realm="portcullis""#),
            "{description}"
        );
    }
    assert_eq!(
        upstream.count().await,
        0,
        "a request with only a query token reached the upstream"
    );

    let with_header = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(
        with_header.status(),
        200,
        "the same token in the header: {}",
        with_header.text()
    );

    let status = gateway.stop().await;
    assert!(status.success(), "the gateway exited with {status}");
    let logs = gateway.logs();
    assert!(
        logs.contains("token_missing"),
        "no access log line for the query token requests"
    );
    assert!(!logs.contains(&token), "the query token was logged");
    assert!(
        !logs.contains("access_token"),
        "the query string was logged"
    );
}

/// Asserts a problem details rejection: status and reason.
#[track_caller]
fn assert_problem(response: &Response, status: u16, reason: &str, case: &str) {
    assert_eq!(
        response.status(),
        status,
        "{case}: status; body {}",
        response.text()
    );
    assert_eq!(response.reason().as_deref(), Some(reason), "{case}: reason");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{case}: content type"
    );
}

fn seconds_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_secs_f64()
}

/// Sleeps until just after the next whole second. The gateway process reads
/// the real clock, so the test cannot move it.
async fn wait_for_next_second() {
    let now = seconds_now();
    let wait = now.floor() + 1.0 - now + 0.005;
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
}
