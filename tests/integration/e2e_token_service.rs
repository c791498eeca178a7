//! The gateway's own token service end to end. API keys and client secrets
//! are exchanged for JWT access tokens at the token endpoint, and those
//! tokens are used on the users API in front of the Express upstream. Also
//! covered: the published JWKS and metadata, introspection, and
//! signing-key rotation with `portcullis token rotate-keys` while tokens
//! are in flight.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{
    eventually, record_credential, Gateway, KeyFiles, Response, TokenForge, Upstream,
    ADMIN_ADDRESS, LISTEN_ADDRESS,
};
use http::Method;
use serde_json::Value;
use tempfile::TempDir;

const ISSUER: &str = "https://gateway.portcullis.test";

/// A configuration with API keys and a token service on disk: the API key
/// file and server secret, the keys directory, two clients' secret hashes
/// (made with `portcullis token hash-secret`) and the YAML. `config` is the
/// file the `portcullis key` and `portcullis token` commands read.
struct Setup {
    dir: TempDir,
    config: PathBuf,
    yaml: String,
    /// The secret of client `billing` (no tenant; read:users, write:users).
    billing_secret: String,
    /// The secret of client `acme-reporting` (tenant acme; read:users).
    acme_secret: String,
}

impl Setup {
    fn new(upstream: &Upstream, token_ttl: &str, attempts_per_minute: u32) -> Setup {
        Setup::with_options(upstream, token_ttl, attempts_per_minute, "")
    }

    /// Like [`Setup::new`], with `options` (YAML lines indented by two
    /// spaces, `{dir}` standing for the temporary directory) added to the
    /// token_service section.
    fn with_options(
        upstream: &Upstream,
        token_ttl: &str,
        attempts_per_minute: u32,
        options: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let server_secret = "server-secret-for-api-key-hashes-0123456789";
        std::fs::write(dir.path().join("secret"), server_secret).expect("writing the secret");
        record_credential(server_secret);
        let billing_secret = hash_secret(&dir.path().join("billing.hash"));
        let acme_secret = hash_secret(&dir.path().join("acme.hash"));

        let yaml = format!(
            "\
server:
  address: {LISTEN_ADDRESS}
admin:
  address: {ADMIN_ADDRESS}
upstreams:
  users: {{ url: {upstream} }}
api_keys:
  file: {dir}/keys.json
  secret: {{ file: {dir}/secret }}
  failed_attempts: {{ requests: 100, per: 1m }}
token_service:
  issuer: {ISSUER}
  audience: users-api
  token_ttl: {token_ttl}
  clock_skew: 0s
  keys_dir: {dir}/token-keys
  failed_attempts: {{ requests: {attempts_per_minute}, per: 1m }}
{options}  clients:
    - client_id: billing
      secret_hash: {{ file: {dir}/billing.hash }}
      scopes: [read:users, write:users]
    - client_id: acme-reporting
      secret_hash: {{ file: {dir}/acme.hash }}
      tenant: acme
      scopes: [read:users]
tenants:
  - id: acme
  - id: globex
routes:
  - id: list-users
    match: {{ path: /users, methods: [GET] }}
    upstream: users
    require: {{ scopes: [read:users] }}
  - id: get-user
    match: {{ path: \"/users/{{id}}\", methods: [GET] }}
    upstream: users
    tenant_from: {{ header: x-tenant }}
    require: {{ scopes: [read:users] }}
",
            upstream = upstream.url(),
            dir = dir.path().display(),
            options = options.replace("{dir}", &dir.path().display().to_string()),
        );
        let config = dir.path().join("portcullis.yaml");
        common::write_command_config(&config, &yaml);
        Setup {
            dir,
            config,
            yaml,
            billing_secret,
            acme_secret,
        }
    }

    /// Creates an API key with `portcullis key create` and records it.
    fn create_key(&self, args: &[&str]) -> String {
        let output = portcullis(&["key", "create", "-c"], &self.config, args);
        let key = output.trim().to_string();
        assert!(key.starts_with("pk_"), "not a key: {key:?}");
        record_credential(&key);
        key
    }

    /// Runs `portcullis token rotate-keys` and returns its standard error.
    fn rotate_keys(&self, publish_delay: &str) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["token", "rotate-keys", "-c"])
            .arg(&self.config)
            .args(["--publish-delay", publish_delay])
            .output()
            .expect("running portcullis token rotate-keys");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "rotate-keys failed: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "rotate-keys printed on standard output"
        );
        stderr
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("token-keys")
    }
}

/// Runs `portcullis token hash-secret --out FILE` and returns the secret it
/// printed once.
fn hash_secret(out: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["token", "hash-secret", "--out"])
        .arg(out)
        .output()
        .expect("running portcullis token hash-secret");
    assert!(
        output.status.success(),
        "hash-secret failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    assert_eq!(secret.len(), 43, "a 32-byte base64url secret");
    let hash = std::fs::read_to_string(out).expect("reading the hash");
    assert!(hash.starts_with("$pbkdf2-sha256$i="), "not a PBKDF2 hash");
    assert!(!hash.contains(&secret));
    record_credential(&secret);
    secret
}

fn portcullis(command: &[&str], config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(command)
        .arg(config)
        .args(args)
        .output()
        .expect("running portcullis");
    assert!(
        output.status.success(),
        "portcullis {command:?} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `Authorization: Basic` for a client id and secret.
fn basic(client_id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")))
}

/// Posts a form to the token service.
async fn post_form(
    gateway: &Gateway,
    path: &str,
    authorization: Option<&str>,
    form: &str,
) -> Response {
    let mut request = gateway
        .request(Method::POST, path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(form.to_string()).send().await
}

/// Requests a token and returns the response; a token in it is recorded.
async fn token_response(gateway: &Gateway, authorization: &str, form: &str) -> Response {
    let response = post_form(gateway, "/oauth2/token", Some(authorization), form).await;
    if let Some(token) = response.json().get("access_token").and_then(Value::as_str) {
        record_credential(token);
    }
    response
}

/// Requests a token that must be issued, and returns it.
async fn token(gateway: &Gateway, authorization: &str, form: &str) -> String {
    let response = token_response(gateway, authorization, form).await;
    assert_eq!(
        response.status(),
        200,
        "token request failed: {}",
        response.text()
    );
    response.json()["access_token"]
        .as_str()
        .expect("an access_token")
        .to_string()
}

/// Decodes a JWT's header or payload (part 0 or 1) without verifying it.
fn jwt_part(token: &str, part: usize) -> Value {
    let encoded = token.split('.').nth(part).expect("a compact JWS");
    let bytes = URL_SAFE_NO_PAD.decode(encoded).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Returns the public name of an API key: `pk_<id>`.
fn key_name(key: &str) -> String {
    key.splitn(3, '_').take(2).collect::<Vec<_>>().join("_")
}

const CLIENT_CREDENTIALS: &str = "grant_type=client_credentials";

#[tokio::test]
async fn api_key_token_reaches_the_api() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let key = setup.create_key(&["--scope", "read:users", "--label", "reports"]);
    let gateway = Gateway::start(&setup.yaml).await;

    let response = token_response(&gateway, &format!("ApiKey {key}"), CLIENT_CREDENTIALS).await;

    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("pragma"), Some("no-cache"));
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "read:users");
    let token = body["access_token"].as_str().unwrap().to_string();
    let header = jwt_part(&token, 0);
    let claims = jwt_part(&token, 1);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "users-api");
    assert_eq!(claims["sub"], key_name(&key).as_str());
    assert_eq!(claims["client_id"], key_name(&key).as_str());
    assert_eq!(claims["scope"], "read:users");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    let jti = claims["jti"].as_str().unwrap();
    assert!(
        jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()),
        "jti {jti}"
    );
    assert!(claims.get("tenant_id").is_none());

    let users = gateway.get("/users").bearer(&token).send().await;

    assert_eq!(users.status(), 200);
    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(
        requests[0].header("x-portcullis-subject"),
        Some(key_name(&key).as_str())
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.value("portcullis_token_requests_total", &[("result", "issued")]),
        1.0
    );
}

#[tokio::test]
async fn requested_scopes_are_narrowed() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let billing = basic("billing", &setup.billing_secret);

    let everything = token_response(&gateway, &billing, CLIENT_CREDENTIALS).await;
    let read_only = token_response(
        &gateway,
        &billing,
        "grant_type=client_credentials&scope=read%3Ausers",
    )
    .await;
    let write_only = token(
        &gateway,
        &billing,
        "grant_type=client_credentials&scope=write:users",
    )
    .await;
    let too_much = token_response(
        &gateway,
        &billing,
        "grant_type=client_credentials&scope=read:users+admin",
    )
    .await;

    assert_eq!(everything.json()["scope"], "read:users write:users");
    assert_eq!(read_only.json()["scope"], "read:users");
    assert_eq!(jwt_part(&write_only, 1)["scope"], "write:users");
    assert_eq!(too_much.status(), 400);
    assert_eq!(
        too_much.json(),
        serde_json::json!({
            "error": "invalid_scope",
            "error_description": "a requested scope is malformed or not allowed for this client",
        })
    );
    let read_token = read_only.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        gateway
            .get("/users")
            .bearer(&read_token)
            .send()
            .await
            .status(),
        200
    );
    let denied = gateway.get("/users").bearer(&write_only).send().await;
    assert_eq!(denied.status(), 403);
    assert_eq!(denied.reason().as_deref(), Some("insufficient_scope"));
    assert_eq!(upstream.count().await, 1);
}

#[tokio::test]
async fn malformed_token_requests_get_oauth_errors() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let billing = basic("billing", &setup.billing_secret);
    let posted = format!(
        "grant_type=client_credentials&client_id=billing&client_secret={}",
        setup.billing_secret
    );

    // (description, authorization, path, form, status, error)
    let cases = [
        (
            "client_secret_post works",
            None,
            "/oauth2/token",
            posted.clone(),
            200,
            None,
        ),
        (
            "other grant type",
            Some(billing.as_str()),
            "/oauth2/token",
            "grant_type=password".to_string(),
            400,
            Some("unsupported_grant_type"),
        ),
        (
            "no grant type",
            Some(billing.as_str()),
            "/oauth2/token",
            "scope=read:users".to_string(),
            400,
            Some("invalid_request"),
        ),
        (
            "two authentication methods",
            Some(billing.as_str()),
            "/oauth2/token",
            posted.clone(),
            400,
            Some("invalid_request"),
        ),
        (
            "repeated parameter",
            Some(billing.as_str()),
            "/oauth2/token",
            "grant_type=client_credentials&grant_type=client_credentials".to_string(),
            400,
            Some("invalid_request"),
        ),
        (
            "parameters in the query string",
            None,
            "/oauth2/token?grant_type=client_credentials",
            posted.clone(),
            400,
            Some("invalid_request"),
        ),
        (
            "no client authentication",
            None,
            "/oauth2/token",
            CLIENT_CREDENTIALS.to_string(),
            401,
            Some("invalid_client"),
        ),
    ];
    for (description, authorization, path, form, status, error) in cases {
        let response = post_form(&gateway, path, authorization, &form).await;
        if let Some(token) = response.json().get("access_token").and_then(Value::as_str) {
            record_credential(token);
        }
        assert_eq!(
            response.status(),
            status,
            "{description}: {}",
            response.text()
        );
        assert_eq!(
            response.json().get("error").and_then(Value::as_str),
            error,
            "{description}"
        );
    }

    let get = gateway.get("/oauth2/token").send().await;
    assert_eq!(get.status(), 405);
    assert_eq!(get.header("allow"), Some("POST"));
    let json_body = gateway
        .request(Method::POST, "/oauth2/token")
        .header("authorization", &billing)
        .json(&serde_json::json!({ "grant_type": "client_credentials" }))
        .send()
        .await;
    assert_eq!(json_body.status(), 400);
    assert_eq!(json_body.json()["error"], "invalid_request");
}

#[tokio::test]
async fn wrong_client_secrets_are_refused_and_limited() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 3);
    let gateway = Gateway::start(&setup.yaml).await;
    let wrong = basic("billing", "not-the-secret-of-billing-0000");
    record_credential(&wrong);

    let mut statuses = Vec::new();
    let mut first = None;
    for attempt in 0..3 {
        let authorization = if attempt == 1 {
            basic("no-such-client", "guessed-secret-00000000")
        } else {
            wrong.clone()
        };
        let response = token_response(&gateway, &authorization, CLIENT_CREDENTIALS).await;
        statuses.push(response.status());
        first.get_or_insert(response);
    }
    let blocked = token_response(
        &gateway,
        &basic("billing", &setup.billing_secret),
        CLIENT_CREDENTIALS,
    )
    .await;

    assert_eq!(statuses, [401, 401, 401]);
    let first = first.unwrap();
    assert_eq!(
        first.header("www-authenticate"),
        Some("Basic realm=\"portcullis\"")
    );
    assert_eq!(
        first.json(),
        serde_json::json!({
            "error": "invalid_client",
            "error_description": "client authentication failed",
        })
    );
    assert_eq!(
        blocked.status(),
        429,
        "the source stays blocked, right secret or not"
    );
    assert_eq!(blocked.json()["error"], "invalid_client");
    let retry_after: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.value(
            "portcullis_token_requests_total",
            &[("result", "invalid_client")]
        ),
        3.0
    );
    assert_eq!(
        metrics.value(
            "portcullis_token_requests_total",
            &[("result", "client_attempts_exceeded")]
        ),
        1.0
    );
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test]
async fn tenant_tokens_stay_in_their_tenant() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let acme_key = setup.create_key(&["--scope", "read:users", "--tenant", "acme"]);
    let gateway = Gateway::start(&setup.yaml).await;
    let from_client = token(
        &gateway,
        &basic("acme-reporting", &setup.acme_secret),
        CLIENT_CREDENTIALS,
    )
    .await;
    let from_key = token(&gateway, &format!("ApiKey {acme_key}"), CLIENT_CREDENTIALS).await;
    let no_tenant = token(
        &gateway,
        &basic("billing", &setup.billing_secret),
        CLIENT_CREDENTIALS,
    )
    .await;
    let status = |token: String, tenant: &'static str| {
        let request = gateway
            .get("/users/1")
            .bearer(&token)
            .header("x-tenant", tenant);
        async move {
            let response = request.send().await;
            (response.status(), response.reason())
        }
    };

    assert_eq!(jwt_part(&from_client, 1)["tenant_id"], "acme");
    assert_eq!(jwt_part(&from_key, 1)["tenant_id"], "acme");
    for (description, token) in [
        ("client of acme", &from_client),
        ("API key of acme", &from_key),
    ] {
        assert_eq!(
            status(token.clone(), "acme").await.0,
            200,
            "{description} on acme"
        );
        assert_eq!(
            status(token.clone(), "globex").await,
            (403, Some("tenant_mismatch".into())),
            "{description} on globex"
        );
    }
    assert_eq!(
        status(no_tenant, "acme").await,
        (403, Some("tenant_mismatch".into())),
        "a token of no tenant on a tenant's route"
    );
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn jwks_and_metadata_are_published() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let issued = token(
        &gateway,
        &basic("billing", &setup.billing_secret),
        CLIENT_CREDENTIALS,
    )
    .await;

    let jwks = gateway.get("/oauth2/jwks.json").send().await;
    let metadata = gateway
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await;

    assert_eq!(jwks.status(), 200);
    assert_eq!(jwks.header("cache-control"), Some("public, max-age=150"));
    let keys = jwks.json()["keys"]
        .as_array()
        .expect("a keys array")
        .clone();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    assert!(key.get("d").is_none(), "the private key is published");
    assert_eq!(key["kid"], jwt_part(&issued, 0)["kid"]);
    assert_eq!(metadata.status(), 200);
    assert_eq!(
        metadata.json(),
        serde_json::json!({
            "issuer": ISSUER,
            "token_endpoint": format!("{ISSUER}/oauth2/token"),
            "jwks_uri": format!("{ISSUER}/oauth2/jwks.json"),
            "introspection_endpoint": format!("{ISSUER}/oauth2/introspect"),
            "revocation_endpoint": format!("{ISSUER}/oauth2/revoke"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["read:users", "write:users"],
        })
    );
    let files: Vec<String> = std::fs::read_dir(setup.keys_dir())
        .expect("the keys directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(files.len(), 2, "a manifest and one key: {files:?}");
    assert!(gateway.logs().contains("token signing key created"));
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let issued = token(
        &gateway,
        &basic("billing", &setup.billing_secret),
        CLIENT_CREDENTIALS,
    )
    .await;
    let real_kid = jwt_part(&issued, 0)["kid"].as_str().unwrap().to_string();
    let other_keys = KeyFiles::generate();
    let other = other_keys.key("ES256");

    // (description, token)
    let cases = [
        (
            "another key under the service's kid",
            TokenForge::new(other, ISSUER, "users-api")
                .header("kid", real_kid.clone().into())
                .sign(),
        ),
        (
            "another key under its own kid",
            TokenForge::new(other, ISSUER, "users-api").sign(),
        ),
        ("issued token with a changed scope", {
            let mut parts: Vec<String> = issued.split('.').map(str::to_string).collect();
            let mut claims = jwt_part(&issued, 1);
            claims["scope"] = "read:users write:users admin".into();
            parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
            let token = parts.join(".");
            record_credential(&token);
            token
        }),
    ];
    for (description, forged) in cases {
        let response = gateway.get("/users").bearer(&forged).send().await;
        assert_eq!(response.status(), 401, "{description}");
    }
    assert_eq!(
        gateway.get("/users").bearer(&issued).send().await.status(),
        200
    );
    assert_eq!(upstream.count().await, 1);
}

#[tokio::test]
async fn introspection_reports_own_tokens() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, "5m", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let billing = basic("billing", &setup.billing_secret);
    let acme = basic("acme-reporting", &setup.acme_secret);
    let billing_token = token(&gateway, &billing, CLIENT_CREDENTIALS).await;
    let acme_token = token(&gateway, &acme, CLIENT_CREDENTIALS).await;
    let forged = TokenForge::new(KeyFiles::generate().key("ES256"), ISSUER, "users-api").sign();
    let introspect = |authorization: String, token: String| {
        let form = format!("token={token}");
        let gateway = &gateway;
        async move { post_form(gateway, "/oauth2/introspect", Some(&authorization), &form).await }
    };

    let active = introspect(billing.clone(), acme_token.clone()).await;

    assert_eq!(active.status(), 200);
    assert_eq!(active.header("cache-control"), Some("no-store"));
    let claims = jwt_part(&acme_token, 1);
    let answer = active.json();
    assert_eq!(answer["active"], true);
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "tenant_id",
        "iat",
        "exp",
        "jti",
    ] {
        assert_eq!(answer[name], claims[name], "{name}");
    }
    // (description, client, token)
    let inactive = [
        (
            "another tenant's client",
            acme.clone(),
            billing_token.clone(),
        ),
        ("a token signed by another key", billing.clone(), forged),
        (
            "not a token",
            billing.clone(),
            "opaque-value-0123456789".to_string(),
        ),
    ];
    for (description, client, token) in inactive {
        let response = introspect(client, token).await;
        assert_eq!(response.status(), 200, "{description}");
        assert_eq!(
            response.json(),
            serde_json::json!({ "active": false }),
            "{description}"
        );
    }
    let wrong_secret = basic("billing", "not-the-secret-of-billing-0000");
    record_credential(&wrong_secret);
    let refused = introspect(wrong_secret, billing_token.clone()).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.json()["error"], "invalid_client");
    let unauthenticated = post_form(
        &gateway,
        "/oauth2/introspect",
        None,
        &format!("token={billing_token}"),
    )
    .await;
    assert_eq!(unauthenticated.status(), 401);
}

/// Checks that tokens issued before and after `rotate-keys` are all
/// accepted until they expire. Every 200 ms the loop issues a token and
/// presents every unexpired one. The retired key leaves the JWKS and the
/// keys directory once its tokens have expired.
#[tokio::test]
async fn signing_key_rotation_keeps_every_token_valid() {
    let upstream = Upstream::start();
    // 6s tokens and no clock skew: a retired key is kept for 7s.
    let setup = Setup::new(&upstream, "6s", 10);
    let gateway = Gateway::start(&setup.yaml).await;
    let billing = basic("billing", &setup.billing_secret);
    let kids = |gateway: &Gateway| {
        let request = gateway.get("/oauth2/jwks.json");
        async move {
            let jwks = request.send().await.json();
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| key["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let first_kid = kids(&gateway).await[0].clone();
    let first_token = token(&gateway, &billing, CLIENT_CREDENTIALS).await;

    let started = Instant::now();
    let mut in_flight: Vec<(String, u64)> = Vec::new();
    let mut used_kids: Vec<String> = Vec::new();
    let mut rotations = 0;
    let mut checks = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let issued = token(&gateway, &billing, CLIENT_CREDENTIALS).await;
        let claims = jwt_part(&issued, 1);
        let kid = jwt_part(&issued, 0)["kid"].as_str().unwrap().to_string();
        if !used_kids.contains(&kid) {
            used_kids.push(kid);
        }
        in_flight.push((issued, claims["exp"].as_u64().unwrap()));

        // Keep only tokens with more than half a second to live.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        in_flight.retain(|(_, exp)| *exp as f64 - now > 0.5);
        for (token, exp) in &in_flight {
            let response = gateway.get("/users").bearer(token).send().await;
            assert_eq!(
                response.status(),
                200,
                "a token valid until {exp} was refused at {now:.1}: {:?}",
                response.reason()
            );
            checks += 1;
        }

        if (rotations == 0 && started.elapsed() > Duration::from_millis(500))
            || (rotations == 1 && started.elapsed() > Duration::from_secs(4))
        {
            setup.rotate_keys("2s");
            rotations += 1;
            let expected = rotations + 1;
            eventually("the next key is published", Duration::from_secs(2), || {
                let listed = kids(&gateway);
                async move { listed.await.len() == expected }
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(rotations, 2);
    assert_eq!(
        used_kids.len(),
        3,
        "every key signed in turn: {used_kids:?}"
    );
    assert_eq!(used_kids[0], first_kid);
    assert!(checks > 50, "only {checks} checks ran");

    // The first key stopped signing about 3s in and was kept for 7s after.
    let removed = setup.rotate_keys("2s");
    assert!(
        removed.contains(&format!("removed key {first_kid}")),
        "{removed}"
    );
    eventually(
        "the first key leaves the JWKS",
        Duration::from_secs(2),
        || {
            let listed = kids(&gateway);
            let first_kid = first_kid.clone();
            async move { !listed.await.contains(&first_kid) }
        },
    )
    .await;
    assert!(!setup.keys_dir().join(format!("{first_kid}.pem")).exists());
    let expired = gateway.get("/users").bearer(&first_token).send().await;
    assert_eq!(expired.status(), 401, "a token of the removed key");
    let introspected = post_form(
        &gateway,
        "/oauth2/introspect",
        Some(&billing),
        &format!("token={first_token}"),
    )
    .await;
    assert_eq!(introspected.json(), serde_json::json!({ "active": false }));
}

#[tokio::test]
async fn encrypted_eddsa_keys_sign_and_rotate() {
    let upstream = Upstream::start();
    let passphrase = "passphrase-for-token-signing-keys-42";
    record_credential(passphrase);
    let setup = Setup::with_options(
        &upstream,
        "5m",
        10,
        "  algorithm: EdDSA\n  keys_passphrase: { file: {dir}/passphrase }\n",
    );
    std::fs::write(setup.dir.path().join("passphrase"), passphrase)
        .expect("writing the passphrase");
    let gateway = Gateway::start(&setup.yaml).await;
    let billing = basic("billing", &setup.billing_secret);

    let before = token(&gateway, &billing, CLIENT_CREDENTIALS).await;
    let output = setup.rotate_keys("0s");
    let rotated = || {
        let gateway = &gateway;
        let billing = billing.clone();
        let first_kid = jwt_part(&before, 0)["kid"].clone();
        async move {
            let issued = token(gateway, &billing, CLIENT_CREDENTIALS).await;
            jwt_part(&issued, 0)["kid"] != first_kid
        }
    };
    eventually("the new key signs", Duration::from_secs(3), rotated).await;
    let after = token(&gateway, &billing, CLIENT_CREDENTIALS).await;

    assert!(output.contains("(EdDSA)"), "{output}");
    assert_eq!(jwt_part(&before, 0)["alg"], "EdDSA");
    assert_eq!(jwt_part(&after, 0)["alg"], "EdDSA");
    for (description, issued) in [("before the rotation", &before), ("after it", &after)] {
        let response = gateway.get("/users").bearer(issued).send().await;
        assert_eq!(response.status(), 200, "a token from {description}");
    }
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(setup.keys_dir().join("keys.json")).expect("the manifest"),
    )
    .expect("JSON");
    let entries = manifest["keys"].as_array().expect("a keys list");
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["encrypted"], true);
        let file = setup
            .keys_dir()
            .join(format!("{}.pem", entry["kid"].as_str().unwrap()));
        let text = std::fs::read_to_string(file).expect("a key file");
        assert!(text.starts_with("-----BEGIN PORTCULLIS ENCRYPTED PRIVATE KEY-----\n"));
    }
}

#[test]
fn hash_secret_reads_a_chosen_secret() {
    let run = |secret: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["token", "hash-secret", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running portcullis token hash-secret");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{secret}\n").as_bytes())
            .expect("writing the secret");
        child.wait_with_output().expect("waiting for hash-secret")
    };
    let chosen = "a-client-secret-chosen-by-people";
    record_credential(chosen);

    let hashed = run(chosen);
    let too_short = run("short");

    assert!(hashed.status.success());
    let hash = String::from_utf8(hashed.stdout).expect("UTF-8");
    assert!(hash.starts_with("$pbkdf2-sha256$i=100000$"), "{hash}");
    assert!(!hash.contains(chosen));
    assert!(!too_short.status.success());
    assert!(too_short.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&too_short.stderr).trim(),
        "error: the secret is shorter than 16 bytes; use a longer one, or leave out --stdin to generate one"
    );
}

#[tokio::test]
async fn revoked_token_is_refused_by_a_second_instance_within_a_second() {
    let upstream = Upstream::start();
    let redis = common::RedisServer::shared();
    let setup = Setup::new(&upstream, "5m", 10);
    let store = common::StoreConfig::server(&redis).key_prefix(&common::unique_key_prefix());
    let yaml = format!("{}{}", store.yaml(), setup.yaml);
    let key = setup.create_key(&["--scope", "read:users"]);
    let first = Gateway::start(&yaml).await;
    let second = Gateway::start(&yaml).await;
    let api_key = format!("ApiKey {key}");
    let issued = token(&first, &api_key, CLIENT_CREDENTIALS).await;
    let other = token(&first, &api_key, CLIENT_CREDENTIALS).await;
    for gateway in [&first, &second] {
        let response = gateway.get("/users").bearer(&issued).send().await;
        assert_eq!(response.status(), 200, "before the revocation");
    }

    let billing = basic("billing", &setup.billing_secret);
    let foreign = post_form(
        &first,
        "/oauth2/revoke",
        Some(&billing),
        &format!("token={issued}"),
    )
    .await;
    assert_eq!(foreign.status(), 400, "{}", foreign.text());
    assert_eq!(foreign.json()["error"], "unauthorized_client");
    let unknown = post_form(
        &first,
        "/oauth2/revoke",
        Some(&api_key),
        "token=not-a-token",
    )
    .await;
    assert_eq!(
        unknown.status(),
        200,
        "an unknown token needs no revocation"
    );

    let started = std::time::Instant::now();
    let revoked = post_form(
        &first,
        "/oauth2/revoke",
        Some(&api_key),
        &format!("token={issued}"),
    )
    .await;
    assert_eq!(revoked.status(), 200, "{}", revoked.text());
    let refused = || {
        let request = second.get("/users").bearer(&issued);
        async move { request.send().await.reason().as_deref() == Some("token_revoked") }
    };
    eventually(
        "the second instance refuses the token",
        Duration::from_secs(1),
        refused,
    )
    .await;
    eprintln!(
        "revoked on the second instance after {:?}",
        started.elapsed()
    );

    let response = second.get("/users").bearer(&other).send().await;
    assert_eq!(
        response.status(),
        200,
        "another token of the client still works"
    );
    let self_revoked = post_form(
        &first,
        "/oauth2/revoke",
        Some(&api_key),
        &format!("token={key}"),
    )
    .await;
    assert_eq!(self_revoked.status(), 200, "{}", self_revoked.text());
    let refused = token_response(&first, &api_key, CLIENT_CREDENTIALS).await;
    assert_eq!(refused.status(), 401, "a revoked key gets no token");
}
