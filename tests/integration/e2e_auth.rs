//! End-to-end authentication: the gateway binary between a real OIDC
//! provider (npm oidc-provider) and a real upstream (Express), checked from
//! the client's side and from what the upstream received.
//!
//! Every rejection is checked for its status, its reason code, its
//! `WWW-Authenticate` challenge, and for leaving the upstream untouched.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use common::{
    assert_no_credentials_in, config_for, eventually, recorded_credentials, suite_log_dir,
    unix_now, Gateway, KeyFiles, Provider, ProviderOptions, Response, TokenForge, UnusedPort,
    Upstream,
};
use http::Method;
use serde_json::json;

const CHALLENGE: &str = r#"Bearer realm="portcullis""#;
const INVALID_TOKEN: &str = r#"Bearer realm="portcullis", error="invalid_token""#;
const INVALID_REQUEST: &str = r#"Bearer realm="portcullis", error="invalid_request""#;

/// Asserts a problem details rejection: status, reason and challenge.
#[track_caller]
fn assert_rejected(
    response: &Response,
    status: u16,
    reason: &str,
    challenge: Option<&str>,
    case: &str,
) {
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
    assert_eq!(
        response.header("www-authenticate"),
        challenge,
        "{case}: WWW-Authenticate"
    );
}

#[tokio::test]
async fn reader_token_forwards_identity_not_spoofs() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let response = gateway
        .get("/users")
        .bearer(&token)
        .header("X-Portcullis-Subject", "admin")
        .header("x_portcullis_subject", "admin")
        .header("X-Portcullis-Scopes", "write:users")
        .header("X-Portcullis-Tenant", "other-tenant")
        .header("X-Forwarded-For", "1.2.3.4")
        .header("X-Forwarded-User", "admin")
        .header("X-HTTP-Method-Override", "DELETE")
        .header("True-Client-IP", "1.2.3.4")
        .send()
        .await;

    assert_eq!(response.status(), 200, "{}", response.text());
    let users = response.json();
    assert_eq!(users.as_array().map(Vec::len), Some(3), "{users}");
    assert_eq!(users[0]["name"], "Ada Quill");

    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.url, "/users");
    assert_eq!(seen.raw_values("x-portcullis-subject"), ["reader"]);
    assert_eq!(seen.raw_values("x-portcullis-client-id"), ["reader"]);
    assert_eq!(seen.raw_values("x-portcullis-scopes"), ["read:users"]);
    assert_eq!(seen.raw_values("x-portcullis-issuer"), [provider.issuer()]);
    assert!(
        seen.raw_values("x_portcullis_subject").is_empty(),
        "underscore spoof forwarded"
    );
    assert!(
        seen.raw_values("x-portcullis-tenant").is_empty(),
        "prefixed spoof forwarded"
    );
    assert_eq!(seen.raw_values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.raw_values("x-forwarded-proto"), ["http"]);

    // Nothing else derived from the token reaches the upstream: the header
    // names are exactly these, and the token itself is removed.
    let names: BTreeSet<String> = seen.header_names().into_iter().collect();
    let expected: BTreeSet<String> = [
        "host",
        "x-portcullis-subject",
        "x-portcullis-client-id",
        "x-portcullis-scopes",
        "x-portcullis-issuer",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    assert!(seen.raw_values("authorization").is_empty());
}

#[tokio::test]
async fn invalid_credentials_rejected_before_upstream() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let other_audience = Provider::start(ProviderOptions {
        audience: "other-api".into(),
        ..Default::default()
    });
    let unconfigured = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider, &other_audience]).token_types(&["at+jwt"]);
    let gateway = Gateway::start(&config.yaml()).await;

    let same_kid_other_key = KeyFiles::generate_reusing_kid(&provider.signing_key().kid);
    let expired = provider.forge().subject("reader").expires_in(-120).sign();
    let wrong_audience = other_audience.token("reader", "read:users").await;
    let unknown_issuer = unconfigured.token("reader", "read:users").await;
    let bad_signature = TokenForge::new(same_kid_other_key.rs256(), provider.issuer(), "users-api")
        .subject("reader")
        .sign();
    let plain_jwt_typ = provider
        .forge()
        .subject("reader")
        .header("typ", json!("JWT"))
        .sign();
    let bearer = |token: &str| format!("Bearer {token}");

    // (description, Authorization header lines, status, reason, challenge)
    let cases: Vec<(&str, Vec<String>, u16, &str, &str)> = vec![
        (
            "no Authorization header",
            vec![],
            401,
            "token_missing",
            CHALLENGE,
        ),
        (
            "Basic scheme instead of Bearer",
            vec!["Basic cmVhZGVyOnJlYWRlci1zZWNyZXQ=".into()],
            401,
            "authorization_header_malformed",
            INVALID_REQUEST,
        ),
        (
            "two Bearer headers",
            vec![bearer(&expired), bearer(&expired)],
            401,
            "authorization_header_malformed",
            INVALID_REQUEST,
        ),
        (
            "Bearer with no token",
            vec!["Bearer".into()],
            401,
            "authorization_header_malformed",
            INVALID_REQUEST,
        ),
        (
            "Bearer value that is not a JWT",
            vec!["Bearer not-a-jwt".into()],
            401,
            "token_malformed",
            INVALID_TOKEN,
        ),
        (
            "expired two minutes ago, beyond the 30s skew",
            vec![bearer(&expired)],
            401,
            "token_expired",
            INVALID_TOKEN,
        ),
        (
            "audience other-api instead of users-api",
            vec![bearer(&wrong_audience)],
            401,
            "token_audience_mismatch",
            INVALID_TOKEN,
        ),
        (
            "issuer not configured",
            vec![bearer(&unknown_issuer)],
            401,
            "token_issuer_unknown",
            INVALID_TOKEN,
        ),
        (
            "signed by another key under the provider's kid",
            vec![bearer(&bad_signature)],
            401,
            "token_signature_invalid",
            INVALID_TOKEN,
        ),
        (
            "typ JWT where at+jwt is required",
            vec![bearer(&plain_jwt_typ)],
            401,
            "token_type_mismatch",
            INVALID_TOKEN,
        ),
    ];

    for (description, authorization, status, reason, challenge) in cases {
        let mut request = gateway.get("/users");
        for value in &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await;
        assert_rejected(&response, status, reason, Some(challenge), description);
        assert_eq!(
            upstream.count().await,
            0,
            "{description}: the upstream was reached"
        );
    }
}

#[tokio::test]
async fn provider_token_rejected_after_expiry() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions {
        access_token_ttl: 3,
        ..Default::default()
    });
    let gateway =
        Gateway::start(&config_for(&upstream, &[&provider]).clock_skew("0s").yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let fresh = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(fresh.status(), 200, "{}", fresh.text());

    // Waits for a known instant, the token's own exp, rather than a guess.
    let exp = unverified_claims(&token)["exp"]
        .as_u64()
        .expect("exp in the provider's token");
    let wait = (exp + 1).saturating_sub(unix_now());
    assert!(
        wait <= 5,
        "the token lives {wait}s more, expected at most 3s"
    );
    tokio::time::sleep(Duration::from_secs(wait)).await;

    let expired = gateway.get("/users").bearer(&token).send().await;
    assert_rejected(
        &expired,
        401,
        "token_expired",
        Some(INVALID_TOKEN),
        "after exp",
    );
    assert_eq!(upstream.count().await, 1);
}

#[tokio::test]
async fn missing_scope_gets_403_naming_scope() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let nobody = provider.token("nobody", "").await;
    let reader = provider.token("reader", "read:users").await;
    let new_user = json!({ "name": "Dana Reyes", "email": "dana.reyes@example.com" });

    // (description, method, path, token, required scope)
    let cases = [
        (
            "nobody lists users",
            Method::GET,
            "/users",
            &nobody,
            "read:users",
        ),
        (
            "nobody reads one user",
            Method::GET,
            "/users/1",
            &nobody,
            "read:users",
        ),
        (
            "reader creates a user",
            Method::POST,
            "/users",
            &reader,
            "write:users",
        ),
        (
            "reader deletes a user",
            Method::DELETE,
            "/users/1",
            &reader,
            "write:users",
        ),
    ];

    for (description, method, path, token, scope) in cases {
        let mut request = gateway.request(method.clone(), path).bearer(token);
        if method == Method::POST {
            request = request.json(&new_user);
        }
        let response = request.send().await;
        let challenge =
            format!(r#"Bearer realm="portcullis", error="insufficient_scope", scope="{scope}""#);
        assert_rejected(
            &response,
            403,
            "insufficient_scope",
            Some(&challenge),
            description,
        );
        assert_eq!(
            upstream.count().await,
            0,
            "{description}: the upstream was reached"
        );
    }
}

#[tokio::test]
async fn unknown_path_and_method_never_forwarded() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let writer = provider.token("writer", "read:users write:users").await;

    // (description, method, path, status, reason, Allow)
    let cases = [
        (
            "path outside every route",
            Method::GET,
            "/admin/users",
            404,
            "route_not_found",
            None,
        ),
        (
            "path one segment too deep",
            Method::GET,
            "/users/1/roles",
            404,
            "route_not_found",
            None,
        ),
        (
            "PUT on the users collection",
            Method::PUT,
            "/users",
            405,
            "method_not_allowed",
            Some("GET, POST, HEAD"),
        ),
        (
            "PATCH on one user",
            Method::PATCH,
            "/users/1",
            405,
            "method_not_allowed",
            Some("GET, DELETE, HEAD"),
        ),
    ];

    for (description, method, path, status, reason, allow) in cases {
        for token in [None, Some(&writer)] {
            let mut request = gateway.request(method.clone(), path);
            if let Some(token) = token {
                request = request.bearer(token);
            }
            let response = request.send().await;
            let case = format!("{description} (token: {})", token.is_some());
            assert_rejected(&response, status, reason, None, &case);
            assert_eq!(response.header("allow"), allow, "{case}: Allow");
            assert_eq!(
                upstream.count().await,
                0,
                "{case}: the upstream was reached"
            );
        }
    }
}

#[tokio::test]
async fn per_subject_limit_returns_429() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(
        &config_for(&upstream, &[&provider])
            .rate_limit(3, "1m")
            .yaml(),
    )
    .await;
    let reader = provider.token("reader", "read:users").await;
    let writer = provider.token("writer", "read:users write:users").await;

    for remaining in [2, 1, 0] {
        let response = gateway.get("/users").bearer(&reader).send().await;
        assert_eq!(response.status(), 200, "{}", response.text());
        assert_eq!(
            response.header("ratelimit-policy"),
            Some(r#""per-subject";q=3;w=60"#)
        );
        let limit = response.header("ratelimit").unwrap_or_default();
        assert!(
            limit.starts_with(&format!(r#""per-subject";r={remaining};t="#)),
            "RateLimit: {limit}"
        );
    }

    let limited = gateway.get("/users").bearer(&reader).send().await;
    assert_rejected(
        &limited,
        429,
        "rate_limited",
        None,
        "fourth request in a minute",
    );
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After");
    assert!(
        (1..=20).contains(&retry_after),
        "Retry-After {retry_after}: one request is admitted every 20s"
    );
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""per-subject";q=3;w=60"#)
    );
    assert_eq!(
        limited.header("ratelimit"),
        Some(format!(r#""per-subject";r=0;t={retry_after}"#).as_str())
    );
    assert_eq!(
        upstream.count().await,
        3,
        "the limited request reached the upstream"
    );

    let other_subject = gateway.get("/users").bearer(&writer).send().await;
    assert_eq!(
        other_subject.status(),
        200,
        "another subject was limited: {}",
        other_subject.text()
    );
    assert_eq!(upstream.count().await, 4);
}

/// Sends `attempts` requests to `path` with a token signed by the wrong
/// key, and asserts that each gets 401.
async fn assert_forged_rejected(
    gateway: &Gateway,
    path: &str,
    forged: &str,
    attempts: usize,
    case: &str,
) {
    for attempt in 1..=attempts {
        let response = gateway.get(path).bearer(forged).send().await;
        assert_rejected(
            &response,
            401,
            "token_signature_invalid",
            Some(INVALID_TOKEN),
            &format!("forged token {attempt} {case}"),
        );
    }
}

#[tokio::test]
async fn ip_limit_counts_forged_tokens() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let guarded = "id: guarded\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [per-ip, per-subject]";
    let yaml = config_for(&upstream, &[&provider])
        .rate_limit(3, "1m")
        .route(guarded)
        .yaml()
        .replace(
            "rate_limits:\n  per-subject:",
            "rate_limits:\n  per-ip:\n    requests: 3\n    per: 1m\n    key: [ip]\n  per-subject:",
        );
    let gateway = Gateway::start(&yaml).await;
    let other_key = KeyFiles::generate_reusing_kid(&provider.signing_key().kid);
    let forged = TokenForge::new(other_key.rs256(), provider.issuer(), "users-api")
        .subject("reader")
        .claim("scope", "read:users".into())
        .sign();
    let reader = provider.token("reader", "read:users").await;

    // The subject-keyed limit of `list-users` waits for a valid token, so
    // forged ones do not use up the reader's budget there.
    assert_forged_rejected(&gateway, "/users", &forged, 4, "on a subject-limited route").await;
    let response = gateway.get("/users").bearer(&reader).send().await;
    assert_eq!(response.status(), 200, "{}", response.text());

    // The IP-keyed limit counts every attempt, valid or not.
    assert_forged_rejected(
        &gateway,
        "/faults/headers",
        &forged,
        3,
        "within the IP budget",
    )
    .await;
    let limited = gateway.get("/faults/headers").bearer(&forged).send().await;
    assert_rejected(
        &limited,
        429,
        "rate_limited",
        None,
        "forged token over the IP budget",
    );
    assert!(
        limited.header("retry-after").is_some(),
        "429 without Retry-After"
    );
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some(r#""per-ip";q=3;w=60"#)
    );
    let valid = gateway.get("/faults/headers").bearer(&reader).send().await;
    assert_rejected(
        &valid,
        429,
        "rate_limited",
        None,
        "valid token from the same IP",
    );

    assert_eq!(
        upstream.count().await,
        1,
        "requests that reached the upstream"
    );
}

#[tokio::test]
async fn rotated_key_accepted_without_restart() {
    let upstream = Upstream::start();
    let mut provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider]).jwks_refetch_cooldown("0s");
    let gateway = Gateway::start(&config.yaml()).await;
    let issuer = provider.issuer().to_string();

    let before = provider.token("reader", "read:users").await;
    let response = gateway.get("/users").bearer(&before).send().await;
    assert_eq!(response.status(), 200, "{}", response.text());
    let old_key = provider.signing_key().clone();
    let fetches_before = gateway
        .metrics()
        .await
        .value("portcullis_jwks_fetches_total", &[("result", "success")]);

    provider.restart_with_new_keys();
    assert_eq!(
        provider.issuer(),
        issuer,
        "the restarted provider has another issuer"
    );
    assert_ne!(provider.signing_key().kid, old_key.kid);

    let after = provider.token("reader", "read:users").await;
    assert_eq!(
        unverified_header(&after)["kid"],
        provider.signing_key().kid.as_str()
    );
    let response = gateway.get("/users").bearer(&after).send().await;
    assert_eq!(
        response.status(),
        200,
        "token with the new kid: {}",
        response.text()
    );
    let fetches_after = gateway
        .metrics()
        .await
        .value("portcullis_jwks_fetches_total", &[("result", "success")]);
    assert!(
        fetches_after > fetches_before,
        "no refetch happened: {fetches_before} then {fetches_after}"
    );

    // The refetched key set no longer contains the retired key.
    let retired = TokenForge::new(&old_key, &issuer, "users-api")
        .subject("reader")
        .sign();
    let response = gateway.get("/users").bearer(&retired).send().await;
    assert_rejected(
        &response,
        401,
        "token_key_not_found",
        Some(INVALID_TOKEN),
        "token of the retired key",
    );
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn cached_keys_survive_provider_outage() {
    let upstream = Upstream::start();
    let mut provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider]).jwks_refetch_cooldown("0s");
    let gateway = Gateway::start(&config.yaml()).await;
    let issuer = provider.issuer().to_string();
    let issued = provider.token("reader", "read:users").await;
    let response = gateway.get("/users").bearer(&issued).send().await;
    assert_eq!(response.status(), 200, "{}", response.text());

    provider.stop();

    let response = gateway.get("/users").bearer(&issued).send().await;
    assert_eq!(
        response.status(),
        200,
        "token issued before the outage: {}",
        response.text()
    );
    let forged = provider.forge().subject("writer").sign();
    let response = gateway.get("/users").bearer(&forged).send().await;
    assert_eq!(
        response.status(),
        200,
        "new token of the cached key: {}",
        response.text()
    );
    assert_eq!(
        gateway.readyz().await.status(),
        200,
        "cached keys count as ready"
    );

    let failures_before = jwks_failures(&gateway, &issuer).await;
    let strangers = KeyFiles::generate();
    let unknown_kid = TokenForge::new(strangers.rs256(), &issuer, "users-api")
        .subject("reader")
        .sign();
    let response = gateway.get("/users").bearer(&unknown_kid).send().await;
    assert_rejected(
        &response,
        401,
        "token_key_not_found",
        Some(INVALID_TOKEN),
        "unknown kid during the outage",
    );
    let failures_after = jwks_failures(&gateway, &issuer).await;
    assert!(
        failures_after > failures_before,
        "the refetch for an unknown kid was not counted as a failure"
    );
    assert!(
        gateway.logs().contains("issuer key fetch failed"),
        "the failed refetch was not logged"
    );

    let response = gateway.get("/users").bearer(&issued).send().await;
    assert_eq!(
        response.status(),
        200,
        "the failed refetch dropped the cached keys: {}",
        response.text()
    );
    assert_eq!(upstream.count().await, 4);
}

async fn jwks_failures(gateway: &Gateway, issuer: &str) -> f64 {
    gateway.metrics().await.value(
        "portcullis_jwks_fetches_total",
        &[("issuer", issuer), ("result", "failure")],
    )
}

#[tokio::test]
async fn provider_down_at_startup_recovers() {
    let upstream = Upstream::start();
    let port = UnusedPort::new();
    let issuer = format!("http://127.0.0.1:{}", port.port);
    let keys = KeyFiles::generate();
    let gateway = Gateway::start(&config_for(&upstream, &[]).issuer(&issuer).yaml()).await;

    let readiness = gateway.readyz().await;
    assert_eq!(readiness.status(), 503);
    assert_eq!(
        readiness.json(),
        json!({ "ready": false, "issuers_without_keys": [issuer] })
    );

    let early = TokenForge::new(keys.rs256(), &issuer, "users-api")
        .subject("reader")
        .sign();
    let response = gateway.get("/users").bearer(&early).send().await;
    assert_rejected(
        &response,
        503,
        "issuer_keys_unavailable",
        Some(CHALLENGE),
        "issuer keys not fetched yet",
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert_eq!(upstream.count().await, 0);

    let provider = Provider::start(ProviderOptions {
        port: Some(port.release()),
        keys: Some(keys),
        ..Default::default()
    });
    assert_eq!(provider.issuer(), issuer);

    // The refresh backoff doubles from 1s: 1, 2, 4, 8 and 16s after the
    // first failure, so the keys arrive within about 31s.
    eventually("the gateway is ready", Duration::from_secs(40), || async {
        gateway.readyz().await.status() == 200
    })
    .await;

    let response = gateway.get("/users").bearer(&early).send().await;
    assert_eq!(
        response.status(),
        200,
        "token forged before the provider started: {}",
        response.text()
    );
    let issued = provider.token("reader", "read:users").await;
    let response = gateway.get("/users").bearer(&issued).send().await;
    assert_eq!(
        response.status(),
        200,
        "token of the provider: {}",
        response.text()
    );
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn logs_hold_no_credentials() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider])
        .token_types(&["at+jwt"])
        .rate_limit(2, "1m");
    let mut gateway = Gateway::start(&config.yaml()).await;
    let other_keys = KeyFiles::generate_reusing_kid(&provider.signing_key().kid);
    let reader = provider.token("reader", "read:users").await;
    let nobody = provider.token("nobody", "").await;

    let credentials = [
        format!("Bearer {reader}"),
        format!("Bearer {nobody}"),
        format!("Bearer {}", provider.forge().expires_in(-600).sign()),
        format!(
            "Bearer {}",
            provider.forge().header("typ", json!("JWT")).sign()
        ),
        format!(
            "Bearer {}",
            TokenForge::new(other_keys.rs256(), provider.issuer(), "users-api").sign()
        ),
        format!(
            "Bearer {}",
            provider.forge().header("kid", json!("no-such-kid")).sign()
        ),
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.".to_string(),
        "Basic cmVhZGVyOnJlYWRlci1zZWNyZXQ=".to_string(),
        "Bearer malformed-but-secret-looking-value".to_string(),
    ];
    for credential in &credentials {
        gateway
            .get("/users")
            .header("authorization", credential)
            .send()
            .await;
        gateway
            .get("/users/1?access_token=query-secret-value")
            .header("authorization", credential)
            .send()
            .await;
    }
    for _ in 0..3 {
        gateway.get("/users").bearer(&reader).send().await;
    }
    common::record_credential("query-secret-value");

    let status = gateway.stop().await;
    assert!(status.success(), "the gateway exited with {status}");

    let logs = gateway.logs();
    for reason in [
        "token_expired",
        "token_type_mismatch",
        "token_signature_invalid",
        "token_key_not_found",
        "insufficient_scope",
        "rate_limited",
    ] {
        assert!(
            logs.contains(reason),
            "no log line has reason {reason}, so the scan below proves little"
        );
    }
    assert!(recorded_credentials().len() >= credentials.len());
    assert_no_credentials_in(&suite_log_dir());
}

#[test]
fn credential_scan_finds_planted_token() {
    let keys = KeyFiles::generate();
    let token = TokenForge::new(keys.rs256(), "https://planted.test", "users-api").sign();
    // {"alg":"ES256"} and {"sub":"planted"}, never recorded.
    let unrecorded = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJl";
    let basic = "Basic cGxhbnRlZDpwbGFudGVkLXNlY3JldA==";
    common::record_credential(basic);

    // (description, log line)
    let cases = [
        (
            "a recorded token",
            format!(r#"{{"message":"request denied","token":"{token}"}}"#),
        ),
        (
            "a JWT-shaped value",
            format!("authorization=Bearer {unrecorded}"),
        ),
        (
            "a recorded Basic credential",
            format!("header value {basic}"),
        ),
    ];
    for (description, line) in cases {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        std::fs::write(
            dir.path().join("gateway-1.stdout.log"),
            format!("first line\n{line}\n"),
        )
        .unwrap();
        let scan = std::panic::catch_unwind(|| assert_no_credentials_in(dir.path()));
        assert!(scan.is_err(), "{description}: the scan did not fail");
    }
}

/// Decodes a JWT's payload without verifying it.
fn unverified_claims(token: &str) -> serde_json::Value {
    decode_segment(token, 1)
}

/// Decodes a JWT's header without verifying it.
fn unverified_header(token: &str) -> serde_json::Value {
    decode_segment(token, 0)
}

fn decode_segment(token: &str, index: usize) -> serde_json::Value {
    let segment = token
        .split('.')
        .nth(index)
        .expect("a JWT has three segments");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .expect("a base64url JWT segment");
    serde_json::from_slice(&bytes).expect("a JSON JWT segment")
}
