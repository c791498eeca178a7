//! End-to-end tenant isolation: one gateway serving several tenants, each
//! tenant owning the issuer of its own real OIDC provider process (npm
//! oidc-provider) with its own keys, in front of the Express upstream.
//!
//! A credential of one tenant must never reach another tenant's routes:
//! every such request gets 403 `tenant_mismatch` (or 401 when the token
//! cannot be verified at all), and the upstream never receives it.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tenants::{tenants_config, TenantSource, TenantSpec, TENANT_HEADER};
use common::{
    eventually, send_raw, Gateway, KeyFiles, Provider, ProviderOptions, Response, TokenForge,
    Upstream,
};
use http::Method;
use serde_json::{json, Value};

/// Every route of the tenant configuration, as (method, path).
const ROUTE_CALLS: [(Method, &str); 5] = [
    (Method::GET, "/users"),
    (Method::GET, "/users/2"),
    (Method::POST, "/users"),
    (Method::DELETE, "/users/3"),
    (Method::GET, "/faults/echo"),
];

/// Claim mapping of the matrix tenants: roles from the `roles` claim.
const ROLES_CLAIM: &str = "{ roles: [roles] }";

/// Starts a provider whose tokens carry `"tenant_id": <tenant>`.
fn start_provider(tenant: &str) -> Provider {
    Provider::start(ProviderOptions {
        tenant_claim: Some(tenant.to_string()),
        ..Default::default()
    })
}

/// Starts a provider for `tenant` whose RS256 key has the same `kid` as
/// `other`'s signing key, but different key material.
fn start_provider_reusing_kid(tenant: &str, other: &Provider) -> Provider {
    let keys = KeyFiles::generate_reusing_kid(&other.signing_key().kid);
    Provider::start(ProviderOptions {
        tenant_claim: Some(tenant.to_string()),
        keys: Some(keys),
        ..Default::default()
    })
}

/// One credential a tenant's clients could present.
struct Credential {
    tenant: String,
    description: &'static str,
    token: String,
}

/// Returns every kind of credential of `tenant`: the provider's own tokens
/// (reader and writer) and tokens forged with its key, with and without
/// the tenant claim, holding every scope and the `admin` role.
async fn credentials_of(tenant: &str, provider: &Provider) -> Vec<Credential> {
    let admin = |with_claim: bool| {
        let forge = provider
            .forge()
            .subject(&format!("{tenant}-admin"))
            .scope("read:users write:users")
            .claim("roles", json!(["admin"]));
        if with_claim {
            forge.claim("tenant_id", json!(tenant)).sign()
        } else {
            forge.sign()
        }
    };
    let cases = [
        (
            "reader token from the tenant's provider",
            provider.token("reader", "read:users").await,
        ),
        (
            "writer token from the tenant's provider",
            provider.token("writer", "read:users write:users").await,
        ),
        ("admin token with the tenant claim", admin(true)),
        ("admin token without a tenant claim", admin(false)),
    ];
    cases
        .into_iter()
        .map(|(description, token)| Credential {
            tenant: tenant.to_string(),
            description,
            token,
        })
        .collect()
}

/// Sends `method path` to `tenant` with `token`; a POST carries a new user.
async fn call(
    gateway: &Gateway,
    source: TenantSource,
    tenant: &str,
    method: &Method,
    path: &str,
    token: &str,
) -> Response {
    let request = source
        .request(gateway, method.clone(), tenant, path)
        .bearer(token);
    match *method {
        Method::POST => {
            request
                .json(&json!({ "name": "Mallory Vale", "email": "mallory@example.test" }))
                .send()
                .await
        }
        _ => request.send().await,
    }
}

/// Sends every credential to every route of every tenant it does not
/// belong to, and asserts 403 `tenant_mismatch` without upstream traffic.
async fn assert_cross_tenant_rejected(
    gateway: &Gateway,
    source: TenantSource,
    upstream: &Upstream,
    credentials: &[Credential],
    tenants: &[&str],
) {
    let mut sent = 0;
    for credential in credentials {
        for addressed in tenants.iter().filter(|t| **t != credential.tenant) {
            for (method, path) in &ROUTE_CALLS {
                let response =
                    call(gateway, source, addressed, method, path, &credential.token).await;
                let case = format!(
                    "{source:?}: {} of {} on {method} {path} of {addressed}",
                    credential.description, credential.tenant
                );
                assert_eq!(
                    response.status(),
                    403,
                    "{case}: status; body {}",
                    response.text()
                );
                assert_eq!(
                    response.reason().as_deref(),
                    Some("tenant_mismatch"),
                    "{case}: reason"
                );
                sent += 1;
            }
        }
    }
    assert!(sent > 0, "the matrix sent nothing");
    assert_eq!(
        upstream.count().await,
        0,
        "{source:?}: a cross-tenant request reached the upstream"
    );
}

/// Sends `GET /users` of `tenant` with its own token and spoofed tenant
/// headers, and asserts that the upstream receives the verified tenant and
/// only the tenant's own static `x-tenant-plan`.
async fn assert_own_tenant_served(
    gateway: &Gateway,
    source: TenantSource,
    upstream: &Upstream,
    tenant: &str,
    token: &str,
    plan: Option<&str>,
) {
    upstream.reset().await;
    let response = source
        .request(gateway, Method::GET, tenant, "/users?page=1")
        .bearer(token)
        .header("x-portcullis-tenant", "spoofed-tenant")
        .header("x-tenant-plan", "spoofed-plan")
        .header("x_tenant_plan", "spoofed-plan")
        .send()
        .await;

    let case = format!("{source:?}: own token of {tenant}");
    assert_eq!(
        response.status(),
        200,
        "{case}: status; body {}",
        response.text()
    );
    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 1, "{case}: upstream requests");
    let seen = &requests[0];
    assert_eq!(seen.url, "/users?page=1", "{case}: upstream path");
    assert_eq!(
        seen.raw_values("x-portcullis-tenant"),
        [tenant],
        "{case}: verified tenant header"
    );
    let expected_plan: Vec<&str> = plan.into_iter().collect();
    assert_eq!(
        seen.raw_values("x-tenant-plan"),
        expected_plan,
        "{case}: static tenant header"
    );
    assert!(
        seen.raw_values("x_tenant_plan").is_empty(),
        "{case}: underscore spelling of the static header forwarded"
    );
}

/// Starts a gateway for `tenant_ids`, each tenant with its own provider, and
/// runs the cross-tenant matrix and the own-tenant checks for `source`.
async fn check_isolation(source: TenantSource, tenant_ids: &[&str]) {
    let upstream = Upstream::start();
    let mut providers: Vec<Provider> = Vec::new();
    for (index, tenant) in tenant_ids.iter().enumerate() {
        // The third tenant's provider reuses the first one's kid.
        let provider = if index == 2 {
            start_provider_reusing_kid(tenant, &providers[0])
        } else {
            start_provider(tenant)
        };
        providers.push(provider);
    }
    let plans = ["gold", "silver"];
    let mut config = tenants_config(&upstream, source);
    for (index, (tenant, provider)) in tenant_ids.iter().zip(&providers).enumerate() {
        let mut spec = TenantSpec::new(tenant, provider).claims(ROLES_CLAIM);
        // The last tenant has no static header, so a spoofed one must not
        // reach the upstream for it either.
        if index + 1 < tenant_ids.len() {
            spec = spec.header("x-tenant-plan", plans[index]);
        }
        config = config.tenant(spec);
    }
    let gateway = Gateway::start(&config.yaml()).await;

    let mut credentials = Vec::new();
    for (tenant, provider) in tenant_ids.iter().zip(&providers) {
        credentials.extend(credentials_of(tenant, provider).await);
    }
    assert_cross_tenant_rejected(&gateway, source, &upstream, &credentials, tenant_ids).await;

    for (index, (tenant, provider)) in tenant_ids.iter().zip(&providers).enumerate() {
        let plan = (index + 1 < tenant_ids.len()).then(|| plans[index]);
        let token = provider.token("reader", "read:users").await;
        assert_own_tenant_served(&gateway, source, &upstream, tenant, &token, plan).await;
    }
}

#[tokio::test]
async fn host_tenants_isolated_in_full_matrix() {
    check_isolation(TenantSource::Host, &["acme", "globex", "initech"]).await;
}

#[tokio::test]
async fn path_prefix_tenants_isolated() {
    check_isolation(TenantSource::PathPrefix, &["acme", "globex"]).await;
}

#[tokio::test]
async fn header_tenants_isolated() {
    check_isolation(TenantSource::Header, &["acme", "globex"]).await;
}

/// Asserts that `response` is exactly the reference 404 of an unknown
/// route: status, body and header names (apart from `date`).
#[track_caller]
fn assert_same_as_unknown_route(response: &Response, reference: &Response, case: &str) {
    let names = |response: &Response| {
        let mut names: Vec<String> = response
            .headers
            .keys()
            .map(|n| n.as_str().to_string())
            .filter(|n| n != "date")
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        response.status(),
        404,
        "{case}: status; body {}",
        response.text()
    );
    assert_eq!(
        response.reason().as_deref(),
        Some("route_not_found"),
        "{case}: reason"
    );
    assert_eq!(
        response.body, reference.body,
        "{case}: body differs from an unknown route's"
    );
    assert_eq!(
        names(response),
        names(reference),
        "{case}: header names differ from an unknown route's"
    );
}

#[tokio::test]
async fn unknown_tenant_answers_like_unknown_route() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let token = acme.token("reader", "read:users").await;

    // (description, raw path, Host, tenant header)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    );
    let host_cases: [Case; 5] = [
        (
            "unknown tenant host",
            "/users",
            Some("umbrella.api.example.test"),
            None,
        ),
        (
            "bare tenant domain",
            "/users",
            Some("api.example.test"),
            None,
        ),
        (
            "nested subdomain of a tenant",
            "/users",
            Some("x.acme.api.example.test"),
            None,
        ),
        (
            "tenant name under another domain",
            "/users",
            Some("acme.api.example.org"),
            None,
        ),
        ("the gateway's own address", "/users", None, None),
    ];
    let path_cases: [Case; 4] = [
        ("missing tenant prefix", "/users", None, None),
        (
            "unknown tenant in the prefix",
            "/t/umbrella/users",
            None,
            None,
        ),
        ("empty tenant in the prefix", "/t//users", None, None),
        ("prefix without a tenant", "/t/", None, None),
    ];
    let header_cases: [Case; 3] = [
        ("missing tenant header", "/users", None, None),
        (
            "unknown tenant in the header",
            "/users",
            None,
            Some("umbrella"),
        ),
        ("empty tenant header", "/users", None, Some("")),
    ];
    let sources: [(TenantSource, &[Case]); 3] = [
        (TenantSource::Host, &host_cases),
        (TenantSource::PathPrefix, &path_cases),
        (TenantSource::Header, &header_cases),
    ];

    for (source, cases) in sources {
        let gateway = Gateway::start(
            &tenants_config(&upstream, source)
                .tenant(TenantSpec::new("acme", &acme))
                .yaml(),
        )
        .await;
        let reference = source
            .request(&gateway, Method::GET, "acme", "/no-such-route")
            .bearer(&token)
            .send()
            .await;
        assert_eq!(
            reference.status(),
            404,
            "{source:?}: unknown route of a known tenant"
        );

        for (description, path, host, header) in cases {
            for with_token in [true, false] {
                let mut request = gateway.get(path);
                if let Some(host) = host {
                    request = request.header("host", host);
                }
                if let Some(value) = header {
                    request = request.header(TENANT_HEADER, value);
                }
                if with_token {
                    request = request.bearer(&token);
                }
                let case = format!("{source:?}: {description}, with token: {with_token}");
                assert_same_as_unknown_route(&request.send().await, &reference, &case);
            }
        }
        // The reference request may count under acme or under none,
        // depending on whether the route or the tenant is resolved first.
        let metrics = gateway.metrics().await;
        let not_found = |tenant| {
            metrics.value(
                "portcullis_requests_total",
                &[("tenant", tenant), ("status", "404")],
            )
        };
        let unknown_count = (cases.len() * 2) as f64;
        assert!(
            not_found("none") >= unknown_count,
            "{source:?}: requests counted under tenant=\"none\""
        );
        assert_eq!(
            not_found("none") + not_found("acme"),
            unknown_count + 1.0,
            "{source:?}: 404 responses counted"
        );
    }
    assert_eq!(
        upstream.count().await,
        0,
        "a request without a known tenant reached the upstream"
    );
}

#[tokio::test]
async fn ambiguous_tenant_address_not_served() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let globex = start_provider("globex");
    let token = acme.token("reader", "read:users").await;
    let config = |source| {
        tenants_config(&upstream, source)
            .tenant(TenantSpec::new("acme", &acme))
            .tenant(TenantSpec::new("globex", &globex))
    };

    // Two Host lines: the gateway would resolve one tenant, an upstream
    // that keeps the Host might read the other. Normalization rejects
    // them before any tenant is resolved.
    let host_gateway = Gateway::start(&config(TenantSource::Host).yaml()).await;
    let request = format!(
        "GET /users HTTP/1.1\r\nHost: acme.api.example.test\r\nHost: globex.api.example.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let raw = send_raw(
        host_gateway.address,
        request.as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let status_line = String::from_utf8_lossy(&raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        status_line.starts_with("HTTP/1.1 400 "),
        "two Host lines: {status_line:?}"
    );
    assert!(
        String::from_utf8_lossy(&raw).contains("\"reason\":\"request_invalid_host\""),
        "two Host lines: {}",
        String::from_utf8_lossy(&raw)
    );

    // The tenant header twice, or also spelled with `_`, which CGI-style
    // upstreams read as the same header.
    let header_gateway = Gateway::start(&config(TenantSource::Header).yaml()).await;
    let cases: [(&str, &[(&str, &str)]); 3] = [
        (
            "tenant header twice with different tenants",
            &[(TENANT_HEADER, "acme"), (TENANT_HEADER, "globex")],
        ),
        (
            "tenant header twice with the same tenant",
            &[(TENANT_HEADER, "acme"), (TENANT_HEADER, "acme")],
        ),
        (
            "tenant header and its underscore spelling",
            &[(TENANT_HEADER, "acme"), ("x_tenant_id", "globex")],
        ),
    ];
    for (description, headers) in cases {
        let mut request = header_gateway.get("/users").bearer(&token);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await;
        assert_eq!(
            response.status(),
            404,
            "{description}: status; body {}",
            response.text()
        );
        assert_eq!(
            response.reason().as_deref(),
            Some("route_not_found"),
            "{description}: reason"
        );
    }
    assert_eq!(
        upstream.count().await,
        0,
        "an ambiguous request reached the upstream"
    );
}

/// Returns the gateway's JSON log lines whose message is `message`.
fn log_entries(gateway: &Gateway, message: &str) -> Vec<Value> {
    gateway
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["fields"]["message"] == message)
        .collect()
}

#[tokio::test]
async fn issuer_confusion_rejected_and_logged() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let globex = start_provider("globex");
    let initech = start_provider_reusing_kid("initech", &acme);
    let config = |source| {
        tenants_config(&upstream, source)
            .tenant(TenantSpec::new("acme", &acme))
            .tenant(TenantSpec::new("globex", &globex))
            .tenant(TenantSpec::new("initech", &initech))
    };
    let host_gateway = Gateway::start(&config(TenantSource::Host).yaml()).await;
    let path_gateway = Gateway::start(&config(TenantSource::PathPrefix).yaml()).await;

    let acme_key = acme.signing_key();
    let acme_key_globex_issuer = TokenForge::new(acme_key, globex.issuer(), "users-api")
        .claim("tenant_id", json!("globex"))
        .sign();
    let acme_key_initech_issuer = TokenForge::new(acme_key, initech.issuer(), "users-api")
        .claim("tenant_id", json!("initech"))
        .sign();
    let acme_issuer_globex_claim = acme.forge().claim("tenant_id", json!("globex")).sign();
    let acme_issuer_claim_list = acme
        .forge()
        .claim("tenant_id", json!(["acme", "globex"]))
        .sign();
    let acme_issuer_claim_object = acme
        .forge()
        .claim("tenant_id", json!({ "id": "acme" }))
        .sign();
    let acme_token = acme.token("reader", "read:users").await;

    // (description, source, addressed tenant, token, status, reason)
    let cases: [(&str, TenantSource, &str, &str, u16, &str); 9] = [
        (
            "acme's key under globex's issuer (kid unknown there)",
            TenantSource::Host,
            "globex",
            &acme_key_globex_issuer,
            401,
            "token_key_not_found",
        ),
        (
            "acme's key under initech's issuer (same kid, other key)",
            TenantSource::Host,
            "initech",
            &acme_key_initech_issuer,
            401,
            "token_signature_invalid",
        ),
        (
            "acme's issuer claiming tenant globex, sent to globex",
            TenantSource::Host,
            "globex",
            &acme_issuer_globex_claim,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's issuer claiming tenant globex, sent to acme",
            TenantSource::Host,
            "acme",
            &acme_issuer_globex_claim,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's issuer with a tenant claim listing two tenants",
            TenantSource::Host,
            "acme",
            &acme_issuer_claim_list,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's issuer with a tenant claim that is an object",
            TenantSource::Host,
            "acme",
            &acme_issuer_claim_object,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's token under globex's path prefix",
            TenantSource::PathPrefix,
            "globex",
            &acme_token,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's token under initech's path prefix",
            TenantSource::PathPrefix,
            "initech",
            &acme_token,
            403,
            "tenant_mismatch",
        ),
        (
            "acme's token under its own path prefix",
            TenantSource::PathPrefix,
            "acme",
            &acme_token,
            200,
            "",
        ),
    ];
    for (description, source, addressed, token, status, reason) in cases {
        let gateway = if source == TenantSource::Host {
            &host_gateway
        } else {
            &path_gateway
        };
        let response = source
            .request(gateway, Method::GET, addressed, "/users")
            .bearer(token)
            .send()
            .await;
        assert_eq!(
            response.status(),
            status,
            "{description}: status; body {}",
            response.text()
        );
        if status != 200 {
            assert_eq!(
                response.reason().as_deref(),
                Some(reason),
                "{description}: reason"
            );
        }
    }
    assert_eq!(
        upstream.count().await,
        1,
        "only acme's own request may reach the upstream"
    );

    let entries = log_entries(&path_gateway, "credential used outside its tenant");
    let entry = entries
        .iter()
        .find(|e| {
            e["fields"]["tenant.addressed"] == "globex"
                && e["fields"]["tenant.credential"] == "acme"
        })
        .unwrap_or_else(|| {
            panic!("no mismatch line for acme's token at globex; lines: {entries:?}")
        });
    assert_eq!(entry["level"], "WARN");
    assert_eq!(entry["fields"]["reason"], "tenant_mismatch");
    let logs = format!("{}{}", host_gateway.logs(), path_gateway.logs());
    for token in [
        &acme_issuer_globex_claim,
        &acme_issuer_claim_list,
        &acme_token,
    ] {
        assert!(!logs.contains(token.as_str()), "a token was logged");
    }
    let claimed = log_entries(&host_gateway, "credential used outside its tenant");
    assert!(
        claimed
            .iter()
            .any(|e| e["fields"]["tenant.claimed"] == "globex"
                && e["fields"]["tenant.credential"] == "acme"),
        "no mismatch line naming the claimed tenant; lines: {claimed:?}"
    );
}

#[tokio::test]
async fn shared_kid_never_verifies_across_tenants() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let initech = start_provider_reusing_kid("initech", &acme);
    assert_eq!(
        acme.signing_key().kid,
        initech.signing_key().kid,
        "the providers must share a kid"
    );
    let config = tenants_config(&upstream, TenantSource::Host)
        .tenant(TenantSpec::new("acme", &acme))
        .tenant(TenantSpec::new("initech", &initech));
    let gateway = Gateway::start(&config.yaml()).await;

    let initech_key_acme_issuer =
        TokenForge::new(initech.signing_key(), acme.issuer(), "users-api")
            .claim("tenant_id", json!("acme"))
            .sign();
    let acme_key_initech_issuer =
        TokenForge::new(acme.signing_key(), initech.issuer(), "users-api")
            .claim("tenant_id", json!("initech"))
            .sign();
    let acme_token = acme.token("reader", "read:users").await;
    let initech_token = initech.token("reader", "read:users").await;

    // (description, addressed tenant, token, status, reason). Own tokens
    // are sent before and after the forgeries, so that no cached key or
    // verified token can stand in for another.
    let cases: [(&str, &str, &str, u16, &str); 8] = [
        ("acme's own token", "acme", &acme_token, 200, ""),
        ("initech's own token", "initech", &initech_token, 200, ""),
        (
            "initech's key under acme's issuer, sent to acme",
            "acme",
            &initech_key_acme_issuer,
            401,
            "token_signature_invalid",
        ),
        (
            "initech's key under acme's issuer, sent to initech",
            "initech",
            &initech_key_acme_issuer,
            401,
            "token_signature_invalid",
        ),
        (
            "acme's key under initech's issuer, sent to initech",
            "initech",
            &acme_key_initech_issuer,
            401,
            "token_signature_invalid",
        ),
        (
            "acme's key under initech's issuer, sent to acme",
            "acme",
            &acme_key_initech_issuer,
            401,
            "token_signature_invalid",
        ),
        ("acme's own token again", "acme", &acme_token, 200, ""),
        (
            "initech's own token again",
            "initech",
            &initech_token,
            200,
            "",
        ),
    ];
    for (description, addressed, token, status, reason) in cases {
        let response = TenantSource::Host
            .request(&gateway, Method::GET, addressed, "/users")
            .bearer(token)
            .send()
            .await;
        assert_eq!(
            response.status(),
            status,
            "{description}: status; body {}",
            response.text()
        );
        if status != 200 {
            assert_eq!(
                response.reason().as_deref(),
                Some(reason),
                "{description}: reason"
            );
        }
    }
    assert_eq!(
        upstream.count().await,
        4,
        "only the own tokens may reach the upstream"
    );
}

/// Maximum time the load of the rotation test runs.
const LOAD_DURATION: Duration = Duration::from_secs(3);
/// Bound on the requests of one load task.
const MAX_REQUESTS_PER_TASK: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_rotation_and_outage_spare_other_tenant() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let mut globex = start_provider("globex");
    let config = tenants_config(&upstream, TenantSource::Host)
        .subject_limit(1_000_000, "1m")
        .tenant(TenantSpec::new("acme", &acme))
        .tenant(TenantSpec::new("globex", &globex));
    let gateway = Arc::new(Gateway::start(&config.yaml()).await);
    let acme_token = acme.token("reader", "read:users").await;
    let globex_before = globex.token("reader", "read:users").await;
    let globex_status = |token: String| {
        let gateway = gateway.clone();
        async move {
            TenantSource::Host
                .request(&gateway, Method::GET, "globex", "/users")
                .bearer(&token)
                .send()
                .await
                .status()
        }
    };
    assert_eq!(
        globex_status(globex_before.clone()).await,
        200,
        "globex before the rotation"
    );

    let deadline = Instant::now() + LOAD_DURATION;
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (gateway, token, served, failed) = (
            gateway.clone(),
            acme_token.clone(),
            served.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_REQUESTS_PER_TASK {
                if Instant::now() >= deadline {
                    break;
                }
                let result = TenantSource::Host
                    .request(&gateway, Method::GET, "acme", "/users")
                    .bearer(&token)
                    .try_send()
                    .await;
                match result {
                    Ok(response) if response.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // The load runs on the runtime's workers while this thread restarts
    // globex's provider with new keys, then stops it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    globex.restart_with_new_keys();
    let globex_after = globex.token("reader", "read:users").await;
    assert_eq!(
        globex_status(globex_after.clone()).await,
        200,
        "globex's token signed with its new key"
    );
    globex.stop();
    let forged_after_stop = globex
        .forge()
        .subject("reader")
        .claim("tenant_id", json!("globex"))
        .sign();
    assert_eq!(
        globex_status(forged_after_stop).await,
        200,
        "globex with its provider down, from the cached new keys"
    );

    for task in tasks {
        task.await.expect("a load task panicked");
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed, 0,
        "acme requests failed while globex's provider rotated and stopped ({served} served)"
    );
    assert!(
        served >= 50,
        "too little load on acme to mean anything: {served} requests"
    );
}

#[tokio::test]
async fn tenant_budget_limits_only_its_tenant() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let globex = start_provider("globex");
    let config = tenants_config(&upstream, TenantSource::Host)
        .policy("tenant-budget", "{ requests: 3, per: 1m, key: [tenant] }")
        .tenant(TenantSpec::new("acme", &acme).rate_limit("tenant-budget"))
        .tenant(TenantSpec::new("globex", &globex));
    let gateway = Gateway::start(&config.yaml()).await;
    let acme_tokens = [
        acme.token("reader", "read:users").await,
        acme.token("writer", "read:users write:users").await,
    ];
    let globex_token = globex.token("reader", "read:users").await;
    let send = |tenant: &'static str, token: String| {
        let gateway = &gateway;
        async move {
            TenantSource::Host
                .request(gateway, Method::GET, tenant, "/users")
                .bearer(&token)
                .send()
                .await
        }
    };

    // The budget counts the whole tenant, whichever client calls.
    for attempt in 0..3 {
        let response = send("acme", acme_tokens[attempt % 2].clone()).await;
        assert_eq!(
            response.status(),
            200,
            "acme request {attempt} within the budget: {}",
            response.text()
        );
    }
    let over = send("acme", acme_tokens[1].clone()).await;
    assert_eq!(over.status(), 429, "acme over its budget: {}", over.text());
    assert_eq!(over.reason().as_deref(), Some("rate_limited"));
    assert!(
        over.header("retry-after").is_some(),
        "429 without Retry-After"
    );
    for attempt in 0..6 {
        let response = send("globex", globex_token.clone()).await;
        assert_eq!(
            response.status(),
            200,
            "globex request {attempt} while acme is limited: {}",
            response.text()
        );
    }
    assert_eq!(
        upstream.count().await,
        9,
        "requests that reached the upstream"
    );

    let metrics = gateway.metrics().await;
    let requests = |tenant: &str, status: &str| {
        metrics.value(
            "portcullis_requests_total",
            &[("tenant", tenant), ("status", status)],
        )
    };
    assert_eq!(requests("acme", "200"), 3.0, "acme's served requests");
    assert_eq!(requests("acme", "429"), 1.0, "acme's limited requests");
    assert_eq!(requests("globex", "200"), 6.0, "globex's served requests");
    assert_eq!(requests("globex", "429"), 0.0, "globex's limited requests");
}

/// Removes the `tenant_from` line, so that each request's tenant comes
/// only from its credential's issuer.
fn without_tenant_from(yaml: &str) -> String {
    yaml.lines()
        .filter(|line| !line.starts_with("tenant_from:"))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[tokio::test]
async fn tenant_ip_limit_applies_after_authentication() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let config = tenants_config(&upstream, TenantSource::Host)
        .policy("ip-budget", "{ requests: 2, per: 1m, key: [ip] }")
        .tenant(TenantSpec::new("acme", &acme).rate_limit("ip-budget"));
    // Without `tenant_from` the tenant is known only from the token's
    // issuer, after authentication.
    let yaml = without_tenant_from(&config.yaml());
    let gateway = Gateway::start(&yaml).await;
    let token = acme.token("reader", "read:users").await;

    for attempt in 1..=2 {
        let response = gateway.get("/users").bearer(&token).send().await;
        assert_eq!(
            response.status(),
            200,
            "request {attempt} within the tenant's IP budget: {}",
            response.text()
        );
    }
    let over = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(over.status(), 429, "over the IP budget: {}", over.text());
    assert_eq!(over.reason().as_deref(), Some("rate_limited"));
    assert_eq!(
        upstream.count().await,
        2,
        "requests that reached the upstream"
    );
}

#[tokio::test]
async fn ip_tenant_limit_separates_token_tenants() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let globex = start_provider("globex");
    let config = tenants_config(&upstream, TenantSource::Host)
        .policy("ip-tenant", "{ requests: 2, per: 1m, key: [ip, tenant] }")
        .tenant(TenantSpec::new("acme", &acme))
        .tenant(TenantSpec::new("globex", &globex));
    // Without `tenant_from` the tenant is known only from the token, so a
    // key with `tenant` cannot be counted before authentication.
    let yaml = without_tenant_from(&config.yaml());
    let yaml = yaml.replacen(
        "rate_limits: per-subject",
        "rate_limits: [per-subject, ip-tenant]",
        1,
    );
    let gateway = Gateway::start(&yaml).await;
    let acme_token = acme.token("reader", "read:users").await;
    let globex_token = globex.token("reader", "read:users").await;

    for attempt in 1..=2 {
        let response = gateway.get("/users").bearer(&acme_token).send().await;
        assert_eq!(
            response.status(),
            200,
            "acme request {attempt}: {}",
            response.text()
        );
    }
    let over = gateway.get("/users").bearer(&acme_token).send().await;
    assert_eq!(over.status(), 429, "acme over its budget: {}", over.text());
    let other = gateway.get("/users").bearer(&globex_token).send().await;
    assert_eq!(
        other.status(),
        200,
        "globex limited by acme's budget: {}",
        other.text()
    );
}

#[tokio::test]
async fn subject_limit_separates_tenants() {
    let upstream = Upstream::start();
    let acme = start_provider("acme");
    let globex = start_provider("globex");
    let config = tenants_config(&upstream, TenantSource::Host)
        .subject_limit(3, "1m")
        .tenant(TenantSpec::new("acme", &acme))
        .tenant(TenantSpec::new("globex", &globex));
    let gateway = Gateway::start(&config.yaml()).await;
    // Both providers issue tokens with subject `reader`; a subject is only
    // unique within its issuer.
    let acme_token = acme.token("reader", "read:users").await;
    let globex_token = globex.token("reader", "read:users").await;
    let send = |tenant: &'static str, token: &str| {
        TenantSource::Host
            .request(&gateway, Method::GET, tenant, "/users")
            .bearer(token)
            .send()
    };

    for attempt in 0..3 {
        assert_eq!(
            send("globex", &globex_token).await.status(),
            200,
            "globex request {attempt}"
        );
    }
    assert_eq!(
        send("globex", &globex_token).await.status(),
        429,
        "globex's reader over its limit"
    );
    let response = send("acme", &acme_token).await;
    assert_eq!(
        response.status(),
        200,
        "acme's reader limited by globex's reader: {}",
        response.text()
    );
}

#[test]
fn issuer_bound_twice_rejected_by_check() {
    const TWO_TENANTS: &str = "\
upstreams:
  users: { url: \"http://127.0.0.1:3000\" }
tenant_from: { host: \"{tenant}.api.example.test\" }
tenants:
  - id: acme
    issuers:
      - { issuer: \"https://sso.example.test/shared\", audiences: [users-api], discovery: true }
  - id: globex
    issuers:
      - { issuer: \"https://sso.example.test/shared\", audiences: [users-api], discovery: true }
routes:
  - { id: list-users, match: { path: /users, methods: [GET] }, upstream: users }
";
    const TENANT_AND_GLOBAL: &str = "\
upstreams:
  users: { url: \"http://127.0.0.1:3000\" }
authentication:
  issuers:
    - { issuer: \"https://sso.example.test/shared\", audiences: [users-api], discovery: true }
tenant_from: { host: \"{tenant}.api.example.test\" }
tenants:
  - id: acme
    issuers:
      - { issuer: \"https://sso.example.test/shared\", audiences: [users-api], discovery: true }
routes:
  - { id: list-users, match: { path: /users, methods: [GET] }, upstream: users }
";
    // (description, file text, the one expected problem line)
    let cases = [
        (
            "one issuer under two tenants",
            TWO_TENANTS,
            "tenants.yaml:10:19: tenants[1].issuers[0].issuer: issuer \"https://sso.example.test/shared\" of tenant \"globex\" is already bound to tenant \"acme\"; an issuer belongs to exactly one tenant",
        ),
        (
            "one issuer under a tenant and under authentication",
            TENANT_AND_GLOBAL,
            "tenants.yaml:10:19: tenants[0].issuers[0].issuer: issuer \"https://sso.example.test/shared\" of tenant \"acme\" is already bound to authentication.issuers; an issuer belongs to exactly one tenant",
        ),
    ];
    for (description, text, expected) in cases {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let path = dir.path().join("tenants.yaml");
        std::fs::write(&path, text).expect("writing the configuration");

        let output = check(&path);

        assert_eq!(output.status.code(), Some(1), "{description}: exit code");
        let prefix = format!("{}/", dir.path().display());
        let stderr = String::from_utf8_lossy(&output.stderr).replace(&prefix, "");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(
            lines,
            [expected, "1 problem found"],
            "{description}: problems"
        );
    }
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("running portcullis check")
}

#[tokio::test]
async fn claim_mappings_of_common_providers() {
    const ROLES_URL: &str = "https://portcullis.test/roles";
    const TENANT_URL: &str = "https://portcullis.test/tenant";
    let upstream = Upstream::start();
    let keycloak = Provider::start(ProviderOptions::default());
    let auth0 = Provider::start(ProviderOptions::default());
    let entra = Provider::start(ProviderOptions::default());
    let config = tenants_config(&upstream, TenantSource::Host)
        .tenant(
            TenantSpec::new("acme", &keycloak)
                .claims("{ scopes: [scope], roles: [realm_access.roles] }"),
        )
        .tenant(TenantSpec::new("globex", &auth0).claims(&format!(
            "{{ scopes: [permissions], roles: [\"{ROLES_URL}\"], tenant: \"{TENANT_URL}\" }}"
        )))
        .tenant(
            TenantSpec::new("initech", &entra)
                .claims("{ scopes: [scp], roles: [roles], client_id: [appid, azp] }"),
        );
    let gateway = Gateway::start(&config.yaml()).await;

    let keycloak_admin = keycloak
        .forge()
        .scope("openid profile read:users")
        .claim(
            "realm_access",
            json!({ "roles": ["admin", "offline_access"] }),
        )
        .sign();
    let keycloak_plain = keycloak
        .forge()
        .scope("openid profile")
        .claim("realm_access", json!({ "roles": ["offline_access"] }))
        .sign();
    let auth0_admin = auth0
        .forge()
        .scope("openid")
        .claim("permissions", json!(["read:users"]))
        .claim(ROLES_URL, json!(["admin"]))
        .claim(TENANT_URL, json!("globex"))
        .sign();
    // `scope` contains read:users, but this tenant reads scopes from
    // `permissions` only.
    let auth0_plain = auth0
        .forge()
        .scope("read:users")
        .claim("permissions", json!([]))
        .claim(ROLES_URL, json!(["viewer"]))
        .sign();
    let auth0_other_tenant = auth0
        .forge()
        .claim("permissions", json!(["read:users"]))
        .claim(TENANT_URL, json!("acme"))
        .sign();
    let entra_admin = entra
        .forge()
        .scope("")
        .claim("scp", json!("User.Read read:users"))
        .claim("roles", json!(["admin"]))
        .sign();
    let entra_plain = entra
        .forge()
        .scope("")
        .claim("scp", json!("User.Read"))
        .claim("roles", json!(["reader"]))
        .sign();

    // (description, tenant, token, path, status, reason)
    let cases: [(&str, &str, &str, &str, u16, &str); 13] = [
        (
            "Keycloak token with the scope",
            "acme",
            &keycloak_admin,
            "/users",
            200,
            "",
        ),
        (
            "Keycloak token with the realm role",
            "acme",
            &keycloak_admin,
            "/faults/echo",
            200,
            "",
        ),
        (
            "Keycloak token without the scope",
            "acme",
            &keycloak_plain,
            "/users",
            403,
            "insufficient_scope",
        ),
        (
            "Keycloak token without the realm role",
            "acme",
            &keycloak_plain,
            "/faults/echo",
            403,
            "role_missing",
        ),
        (
            "Auth0 token with the permission",
            "globex",
            &auth0_admin,
            "/users",
            200,
            "",
        ),
        (
            "Auth0 token with the namespaced role",
            "globex",
            &auth0_admin,
            "/faults/echo",
            200,
            "",
        ),
        (
            "Auth0 token with the scope only in `scope`",
            "globex",
            &auth0_plain,
            "/users",
            403,
            "insufficient_scope",
        ),
        (
            "Auth0 token without the role",
            "globex",
            &auth0_plain,
            "/faults/echo",
            403,
            "role_missing",
        ),
        (
            "Auth0 token whose namespaced tenant claim names acme",
            "globex",
            &auth0_other_tenant,
            "/users",
            403,
            "tenant_mismatch",
        ),
        (
            "Entra token with the scp scope",
            "initech",
            &entra_admin,
            "/users",
            200,
            "",
        ),
        (
            "Entra token with the app role",
            "initech",
            &entra_admin,
            "/faults/echo",
            200,
            "",
        ),
        (
            "Entra token without the scp scope",
            "initech",
            &entra_plain,
            "/users",
            403,
            "insufficient_scope",
        ),
        (
            "Entra token without the app role",
            "initech",
            &entra_plain,
            "/faults/echo",
            403,
            "role_missing",
        ),
    ];
    for (description, tenant, token, path, status, reason) in cases {
        upstream.reset().await;
        let response = TenantSource::Host
            .request(&gateway, Method::GET, tenant, path)
            .bearer(token)
            .send()
            .await;
        assert_eq!(
            response.status(),
            status,
            "{description}: status; body {}",
            response.text()
        );
        if status != 200 {
            assert_eq!(
                response.reason().as_deref(),
                Some(reason),
                "{description}: reason"
            );
            assert_eq!(
                upstream.count().await,
                0,
                "{description}: reached the upstream"
            );
            continue;
        }
        let requests = upstream.requests().await;
        assert_eq!(requests.len(), 1, "{description}: upstream requests");
        assert_eq!(
            requests[0].raw_values("x-portcullis-tenant"),
            [tenant],
            "{description}: tenant header"
        );
        if path == "/users" {
            let scopes = requests[0].raw_values("x-portcullis-scopes");
            assert!(
                scopes
                    .iter()
                    .any(|s| s.split(' ').any(|scope| scope == "read:users")),
                "{description}: scopes sent upstream {scopes:?}"
            );
        }
    }
}

#[tokio::test]
async fn reload_adds_and_removes_tenant() {
    let upstream = Upstream::start();
    let providers: Vec<Provider> = ["acme", "globex", "initech", "umbrella"]
        .into_iter()
        .map(start_provider)
        .collect();
    let config = |tenant_count: usize| {
        let mut config = tenants_config(&upstream, TenantSource::Host);
        for (tenant, provider) in ["acme", "globex", "initech", "umbrella"]
            .iter()
            .zip(&providers)
            .take(tenant_count)
        {
            config = config.tenant(
                TenantSpec::new(tenant, provider)
                    .header("x-tenant-plan", &format!("{tenant}-plan")),
            );
        }
        config.yaml()
    };
    let gateway = Gateway::start(&config(3)).await;
    let umbrella_token = providers[3].token("reader", "read:users").await;
    let acme_token = providers[0].token("reader", "read:users").await;
    let umbrella_status = || async {
        TenantSource::Host
            .request(&gateway, Method::GET, "umbrella", "/users")
            .bearer(&umbrella_token)
            .send()
            .await
    };

    let before = umbrella_status().await;
    assert_eq!(
        before.status(),
        404,
        "umbrella before it is configured: {}",
        before.text()
    );
    assert_eq!(before.reason().as_deref(), Some("route_not_found"));

    gateway.rewrite_config(&config(4));
    gateway.hangup();
    eventually(
        "the added tenant is served",
        Duration::from_secs(15),
        || async { umbrella_status().await.status() == 200 },
    )
    .await;
    let requests = upstream.requests().await;
    let last = requests
        .last()
        .expect("umbrella's request reached the upstream");
    assert_eq!(last.raw_values("x-portcullis-tenant"), ["umbrella"]);
    assert_eq!(last.raw_values("x-tenant-plan"), ["umbrella-plan"]);
    let metrics = gateway.metrics().await;
    assert!(
        metrics.value(
            "portcullis_requests_total",
            &[("tenant", "umbrella"), ("status", "200")]
        ) >= 1.0,
        "no request counted for umbrella"
    );

    gateway.rewrite_config(&config(3));
    gateway.hangup();
    eventually(
        "the removed tenant is no longer served",
        Duration::from_secs(15),
        || async { umbrella_status().await.status() == 404 },
    )
    .await;
    let after = umbrella_status().await;
    assert_eq!(
        after.reason().as_deref(),
        Some("route_not_found"),
        "umbrella after its removal"
    );
    let acme = TenantSource::Host
        .request(&gateway, Method::GET, "acme", "/users")
        .bearer(&acme_token)
        .send()
        .await;
    assert_eq!(
        acme.status(),
        200,
        "acme after the reloads: {}",
        acme.text()
    );
    // Each rewrite is picked up by SIGHUP and may be again by the file watcher.
    assert!(
        gateway
            .metrics()
            .await
            .value("portcullis_config_generation", &[])
            >= 3.0,
        "configuration generation"
    );
}
