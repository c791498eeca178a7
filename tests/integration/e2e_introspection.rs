//! End-to-end token introspection (RFC 7662): the gateway binary sends
//! opaque access tokens of a real OIDC provider (npm oidc-provider, its
//! `opaque` client) to the provider's introspection endpoint as the
//! `gateway` client, in front of the real Express upstream.
//!
//! Covered: active tokens and their scopes, and unknown, revoked and
//! expired tokens. A provider that is down or rejects the gateway's
//! credentials makes the gateway fail closed with 503. The result cache is
//! bounded by `exp` and by `cache_max_ttl`, counted with the introspection
//! metric. Tenants whose issuers have no introspection send tokens nowhere,
//! and the client secret stays out of logs.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    eventually, record_credential, unix_now, Gateway, Provider, ProviderOptions, RequestBuilder,
    Response, Upstream, ADMIN_ADDRESS, LISTEN_ADDRESS,
};
use http::Method;

/// The provider's client that may introspect, and its fixed test secret.
const INTROSPECTION_CLIENT: &str = "gateway";
const INTROSPECTION_SECRET: &str = "gateway-secret";
/// The provider's client that gets opaque access tokens.
const OPAQUE_CLIENT: &str = "opaque";
/// `aud` of the provider's opaque access tokens.
const OPAQUE_AUDIENCE: &str = "users-api-opaque";
const INTROSPECTIONS: &str = "portcullis_introspections_total";
const INVALID_TOKEN: &str = r#"Bearer realm="portcullis", error="invalid_token""#;

/// Settings of one issuer's `introspection` section.
struct Introspection {
    /// `None`: taken from the discovery document.
    endpoint: Option<String>,
    auth_method: &'static str,
    cache_max_ttl: &'static str,
    jwts: bool,
    /// The file holding the client secret, outside the log directory that
    /// the credential checks scan; deleted when dropped.
    secret_file: tempfile::NamedTempFile,
}

impl Introspection {
    /// Discovery, client_secret_basic, a 60s cache, opaque tokens only,
    /// with the provider's real secret.
    fn new() -> Introspection {
        Introspection {
            endpoint: None,
            auth_method: "client_secret_basic",
            cache_max_ttl: "60s",
            jwts: false,
            secret_file: secret_file(INTROSPECTION_SECRET),
        }
    }

    fn cache_max_ttl(mut self, ttl: &'static str) -> Introspection {
        self.cache_max_ttl = ttl;
        self
    }

    fn yaml(&self, indent: &str) -> String {
        let mut yaml = format!("{indent}introspection:\n");
        if let Some(endpoint) = &self.endpoint {
            yaml.push_str(&format!("{indent}  endpoint: \"{endpoint}\"\n"));
        }
        yaml.push_str(&format!(
            "{indent}  client_id: {INTROSPECTION_CLIENT}\n\
             {indent}  client_secret: {{ file: \"{}\" }}\n\
             {indent}  auth_method: {}\n\
             {indent}  timeout: 2s\n\
             {indent}  cache_max_ttl: {}\n\
             {indent}  jwts: {}\n",
            self.secret_file.path().display(),
            self.auth_method,
            self.cache_max_ttl,
            self.jwts
        ));
        yaml
    }
}

/// Writes a client secret into a temporary file and records it, and its
/// Basic credentials, so the log checks look for them.
fn secret_file(secret: &str) -> tempfile::NamedTempFile {
    record_credential(secret);
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{INTROSPECTION_CLIENT}:{secret}"));
    record_credential(&basic);
    let mut file = tempfile::Builder::new()
        .prefix("portcullis-e2e-secret-")
        .tempfile()
        .expect("creating a temporary file");
    std::io::Write::write_all(&mut file, secret.as_bytes()).expect("writing the secret");
    file
}

/// Builds one issuer entry: found by discovery, accepting the JWT and the
/// opaque audiences, with optional introspection.
fn issuer_yaml(provider: &Provider, introspection: Option<&Introspection>, indent: &str) -> String {
    let mut yaml = format!(
        "{indent}- issuer: \"{}\"\n\
         {indent}  audiences: [users-api, {OPAQUE_AUDIENCE}]\n\
         {indent}  discovery: true\n\
         {indent}  clock_skew: 0s\n",
        provider.issuer()
    );
    if let Some(introspection) = introspection {
        yaml.push_str(&introspection.yaml(&format!("{indent}  ")));
    }
    yaml
}

/// Routes: `GET /users` needs read:users, `POST /users` write:users.
const ROUTES: &str = "\
routes:
  - id: list-users
    match: { path: /users, methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }
  - id: create-user
    match: { path: /users, methods: [POST] }
    upstream: users
    require: { scopes: [write:users] }
";

fn head_yaml(upstream: &Upstream) -> String {
    format!(
        "server:\n  address: {LISTEN_ADDRESS}\n  timeouts:\n    shutdown_grace: 2s\n\
         admin:\n  address: {ADMIN_ADDRESS}\n\
         upstreams:\n  users:\n    url: \"{}\"\n\
         identity_headers:\n  subject: x-portcullis-subject\n  client_id: x-portcullis-client-id\n  scopes: x-portcullis-scopes\n\n",
        upstream.url()
    )
}

/// Builds a gateway configuration with one issuer.
fn config(
    upstream: &Upstream,
    provider: &Provider,
    introspection: Option<&Introspection>,
) -> String {
    format!(
        "{}authentication:\n  issuers:\n{}\n{ROUTES}",
        head_yaml(upstream),
        issuer_yaml(provider, introspection, "    ")
    )
}

/// Gets an opaque access token of the `opaque` client for `scope`, and the
/// unix time by which it expires.
async fn opaque_token(provider: &Provider, scope: &str) -> (String, u64) {
    let requested_at = unix_now();
    let form = format!(
        "grant_type=client_credentials&resource=urn%3Aportcullis%3A{OPAQUE_AUDIENCE}&scope={}",
        scope.replace(':', "%3A").replace(' ', "+")
    );
    let response = provider_post(provider, "/token", OPAQUE_CLIENT, form).await;
    assert_eq!(response.status(), 200, "token request: {}", response.text());
    let body = response.json();
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert!(!token.contains('.'), "expected an opaque token");
    record_credential(&token);
    let expires_in = body["expires_in"].as_u64().expect("expires_in");
    (token, requested_at + expires_in + 1)
}

/// Revokes a token at the provider's revocation endpoint (RFC 7009).
async fn revoke(provider: &Provider, token: &str) {
    let form = format!("token={token}&token_type_hint=access_token");
    let response = provider_post(provider, "/token/revocation", OPAQUE_CLIENT, form).await;
    assert_eq!(response.status(), 200, "revocation: {}", response.text());
}

/// POSTs a form to the provider as `client` (secret `<client>-secret`).
async fn provider_post(provider: &Provider, path: &str, client: &str, form: String) -> Response {
    let secret = format!("{client}-secret");
    record_credential(&secret);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
    RequestBuilder::new(provider.address(), Method::POST, path)
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
}

/// Returns the introspections of `provider`'s issuer with `result`.
async fn introspections(gateway: &Gateway, provider: &Provider, result: &str) -> f64 {
    let labels = [("issuer", provider.issuer()), ("result", result)];
    gateway.metrics().await.value(INTROSPECTIONS, &labels)
}

#[track_caller]
fn assert_rejected(response: &Response, status: u16, reason: &str, case: &str) {
    assert_eq!(
        response.status(),
        status,
        "{case}: status; body {}",
        response.text()
    );
    assert_eq!(response.reason().as_deref(), Some(reason), "{case}: reason");
}

#[tokio::test]
async fn opaque_token_accepted_and_scopes_enforced() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection::new();
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (token, _) = opaque_token(&provider, "read:users").await;

    let allowed = gateway.get("/users").bearer(&token).send().await;
    let missing_scope = gateway
        .request(Method::POST, "/users")
        .bearer(&token)
        .json(&serde_json::json!({"name": "Eve"}))
        .send()
        .await;

    assert_eq!(allowed.status(), 200, "{}", allowed.text());
    assert_rejected(
        &missing_scope,
        403,
        "insufficient_scope",
        "read-only token on POST",
    );
    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 1, "only the allowed request is forwarded");
    assert_eq!(
        requests[0].raw_values("x-portcullis-client-id"),
        [OPAQUE_CLIENT]
    );
    assert_eq!(
        requests[0].raw_values("x-portcullis-scopes"),
        ["read:users"]
    );
    assert!(requests[0].raw_values("authorization").is_empty());
    assert_eq!(introspections(&gateway, &provider, "active").await, 1.0);
    assert_eq!(introspections(&gateway, &provider, "cache_hit").await, 1.0);
}

#[tokio::test]
async fn unknown_opaque_token_inactive() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection {
        auth_method: "client_secret_post",
        ..Introspection::new()
    };
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (valid, _) = opaque_token(&provider, "read:users").await;
    let unknown = "Zq0Tn1l5x8Hj3RkWc7VbY2sPa4MdE6uFgQiLoN9tKeI";
    record_credential(unknown);

    let first = gateway.get("/users").bearer(unknown).send().await;
    let again = gateway.get("/users").bearer(unknown).send().await;
    let accepted = gateway.get("/users").bearer(&valid).send().await;

    for (case, response) in [("first use", &first), ("second use", &again)] {
        assert_rejected(response, 401, "token_inactive", case);
        assert_eq!(
            response.header("www-authenticate"),
            Some(INVALID_TOKEN),
            "{case}"
        );
    }
    assert_eq!(
        accepted.status(),
        200,
        "client_secret_post: {}",
        accepted.text()
    );
    assert_eq!(upstream.count().await, 1);
    // An inactive response is never cached, so both uses reached the provider.
    assert_eq!(introspections(&gateway, &provider, "inactive").await, 2.0);
    assert_eq!(introspections(&gateway, &provider, "cache_hit").await, 0.0);
}

#[tokio::test]
async fn revoked_token_refused_once_cache_entry_expires() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection::new().cache_max_ttl("1s");
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (token, _) = opaque_token(&provider, "read:users").await;

    let before = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(before.status(), 200, "{}", before.text());
    revoke(&provider, &token).await;
    let revoked_at = Instant::now();

    eventually(
        "the revoked token is refused",
        Duration::from_secs(5),
        || async {
            let response = gateway.get("/users").bearer(&token).send().await;
            if response.status() == 200 {
                return false;
            }
            assert_rejected(&response, 401, "token_inactive", "after revocation");
            true
        },
    )
    .await;
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "the revocation took {:?}, beyond cache_max_ttl 1s plus a margin",
        revoked_at.elapsed()
    );
    assert_eq!(introspections(&gateway, &provider, "inactive").await, 1.0);
}

#[tokio::test]
async fn provider_down_fails_closed() {
    let upstream = Upstream::start();
    let mut provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection::new();
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (used, _) = opaque_token(&provider, "read:users").await;
    let (unused, _) = opaque_token(&provider, "read:users").await;
    let served = gateway.get("/users").bearer(&used).send().await;
    assert_eq!(served.status(), 200, "{}", served.text());
    upstream.reset().await;

    provider.stop();
    let response = gateway.get("/users").bearer(&unused).send().await;

    assert_rejected(
        &response,
        503,
        "introspection_unavailable",
        "provider stopped",
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert_eq!(upstream.count().await, 0, "the upstream was reached");
    assert_eq!(introspections(&gateway, &provider, "error").await, 1.0);
    assert!(
        gateway.logs().contains("token introspection failed"),
        "the failure is logged"
    );
}

#[tokio::test]
async fn rejected_gateway_credentials_fail_closed() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection {
        secret_file: secret_file("not-the-gateway-secret"),
        ..Introspection::new()
    };
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (token, _) = opaque_token(&provider, "read:users").await;

    let response = gateway.get("/users").bearer(&token).send().await;

    assert_rejected(
        &response,
        503,
        "introspection_unavailable",
        "wrong client secret",
    );
    assert_eq!(upstream.count().await, 0);
    let logs = gateway.logs();
    assert!(
        logs.contains("401 Unauthorized"),
        "the status is logged:\n{logs}"
    );
    // The gateway's Drop checks that neither secret nor token is logged.
}

#[tokio::test]
async fn cache_entry_ends_at_token_exp() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions {
        access_token_ttl: 3,
        ..Default::default()
    });
    let introspection = Introspection::new().cache_max_ttl("60s");
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (token, expired_by) = opaque_token(&provider, "read:users").await;

    let first = gateway.get("/users").bearer(&token).send().await;
    let cached = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(first.status(), 200, "{}", first.text());
    assert_eq!(cached.status(), 200, "{}", cached.text());
    assert_eq!(introspections(&gateway, &provider, "active").await, 1.0);
    assert_eq!(introspections(&gateway, &provider, "cache_hit").await, 1.0);

    // Waits for a known instant, one second past the token's exp.
    eventually("the token has expired", Duration::from_secs(10), || async {
        unix_now() >= expired_by
    })
    .await;
    let after_exp = gateway.get("/users").bearer(&token).send().await;

    // The cache allowed 60s, yet the expired token went back to the provider.
    assert_rejected(&after_exp, 401, "token_inactive", "after exp");
    assert_eq!(introspections(&gateway, &provider, "cache_hit").await, 1.0);
    assert_eq!(introspections(&gateway, &provider, "inactive").await, 1.0);
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn cache_entry_ends_at_cache_max_ttl() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let introspection = Introspection::new().cache_max_ttl("1s");
    let gateway = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let (token, _) = opaque_token(&provider, "read:users").await;
    let started = Instant::now();

    let first = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(first.status(), 200, "{}", first.text());
    eventually(
        "the token is introspected again",
        Duration::from_secs(5),
        || async {
            let response = gateway.get("/users").bearer(&token).send().await;
            assert_eq!(response.status(), 200, "{}", response.text());
            introspections(&gateway, &provider, "active").await >= 2.0
        },
    )
    .await;

    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "asked again after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "asked again after {elapsed:?}"
    );
    assert!(introspections(&gateway, &provider, "cache_hit").await >= 1.0);
}

#[tokio::test]
async fn opaque_token_only_sent_to_addressed_tenant() {
    let upstream = Upstream::start();
    let acme = Provider::start(ProviderOptions::default());
    let initech = Provider::start(ProviderOptions::default());
    let introspection = Introspection {
        endpoint: Some(format!("{}/token/introspection", acme.issuer())),
        ..Introspection::new()
    };
    let yaml = format!(
        "{}tenant_from: {{ header: x-tenant-id }}\n\
         tenants:\n  - id: acme\n    issuers:\n{}  - id: initech\n    issuers:\n{}\n{ROUTES}",
        head_yaml(&upstream),
        issuer_yaml(&acme, Some(&introspection), "      "),
        issuer_yaml(&initech, None, "      "),
    );
    let gateway = Gateway::start(&yaml).await;
    let (acme_token, _) = opaque_token(&acme, "read:users").await;
    let (initech_token, _) = opaque_token(&initech, "read:users").await;
    let tenant_request = |tenant: &str, token: &str| {
        gateway
            .get("/users")
            .header("x-tenant-id", tenant)
            .bearer(token)
    };

    let acme_own = tenant_request("acme", &acme_token).send().await;
    let initech_own = tenant_request("initech", &initech_token).send().await;
    let acme_on_initech = tenant_request("initech", &acme_token).send().await;
    let no_tenant = gateway.get("/users").bearer(&acme_token).send().await;

    assert_eq!(acme_own.status(), 200, "{}", acme_own.text());
    // (description, response, reason)
    let cases = [
        (
            "initech's own opaque token, no introspection there",
            &initech_own,
            "token_issuer_unknown",
        ),
        (
            "acme's token addressed to initech",
            &acme_on_initech,
            "token_issuer_unknown",
        ),
    ];
    for (description, response, reason) in cases {
        assert_rejected(response, 401, reason, description);
    }
    assert_eq!(
        no_tenant.status(),
        404,
        "a request without a tenant has no route"
    );
    assert_eq!(upstream.count().await, 1);
    // Only acme's own request reached acme's introspection endpoint.
    assert_eq!(introspections(&gateway, &acme, "active").await, 1.0);
    let metrics = gateway.metrics().await;
    assert_eq!(metrics.value(INTROSPECTIONS, &[]), 1.0, "{}", metrics.text);
}

#[tokio::test]
async fn opaque_token_without_introspecting_issuer_malformed() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config(&upstream, &provider, None)).await;
    let (token, _) = opaque_token(&provider, "read:users").await;

    let response = gateway.get("/users").bearer(&token).send().await;

    assert_rejected(&response, 401, "token_malformed", "no issuer introspects");
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test]
async fn verified_jwt_sent_to_provider_only_with_jwts() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let plain = Gateway::start(&config(&upstream, &provider, Some(&Introspection::new()))).await;
    let introspection = Introspection {
        jwts: true,
        ..Introspection::new()
    };
    let checking = Gateway::start(&config(&upstream, &provider, Some(&introspection))).await;
    let jwt = provider.token("reader", "read:users").await;

    let without = plain.get("/users").bearer(&jwt).send().await;
    let with = checking.get("/users").bearer(&jwt).send().await;

    assert_eq!(without.status(), 200, "{}", without.text());
    assert_eq!(plain.metrics().await.value(INTROSPECTIONS, &[]), 0.0);
    // oidc-provider 9 refuses to introspect its own JWT access tokens (400
    // unsupported_token_type). Without a usable response the gateway fails
    // closed, which shows that the verified JWT was sent to the provider.
    assert_rejected(
        &with,
        503,
        "introspection_unavailable",
        "JWT with jwts: true",
    );
    assert_eq!(introspections(&checking, &provider, "error").await, 1.0);
    assert!(checking.logs().contains("400 Bad Request"));
    assert_eq!(upstream.count().await, 1);
}
