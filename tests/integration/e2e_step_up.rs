//! Step-up authentication end to end (RFC 9470): a route that requires MFA
//! within 10 minutes, or an `acr` level, rejects a weaker or older
//! authentication with 401 `insufficient_user_authentication` and the
//! `acr_values` and `max_age` to request, and never forwards it.

use crate::common;

use serde_json::json;

use common::{config_for, unix_now, Gateway, Provider, ProviderOptions, Upstream};

const CREATE_ROUTE: &str = "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users] }";
const CREATE_WITH_MFA: &str = "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users], amr: [mfa], max_age: 10m }";
const DELETE_ROUTE: &str = "    match: { path: \"/users/{id}\", methods: [DELETE] }\n    upstream: users\n    require: { scopes: [write:users] }";
const DELETE_WITH_ACR: &str = "    match: { path: \"/users/{id}\", methods: [DELETE] }\n    upstream: users\n    require: { scopes: [write:users], acr: [gold, platinum] }";

#[tokio::test]
async fn step_up_required_and_forwarded() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = config_for(&upstream, &[&provider])
        .yaml()
        .replacen(CREATE_ROUTE, CREATE_WITH_MFA, 1)
        .replacen(DELETE_ROUTE, DELETE_WITH_ACR, 1);
    assert!(
        yaml.contains("amr: [mfa]") && yaml.contains("acr: [gold, platinum]"),
        "the route text changed"
    );
    let gateway = Gateway::start(&yaml).await;
    let now = unix_now() as i64;
    let writer = |amr: serde_json::Value, auth_time: i64| {
        provider
            .forge()
            .subject("writer")
            .scope("read:users write:users")
            .claim("amr", amr)
            .claim("auth_time", json!(auth_time))
            .sign()
    };

    let recent = writer(json!(["pwd", "mfa"]), now - 120);
    let body = json!({ "name": "Dana Reed", "email": "dana.reed@example.com" });
    let response = gateway
        .request(http::Method::POST, "/users")
        .bearer(&recent)
        .json(&body)
        .send()
        .await;
    assert_eq!(response.status(), 201, "recent MFA: {}", response.text());
    assert_eq!(upstream.count().await, 1);

    let cases = [
        ("MFA 11 minutes ago", writer(json!(["mfa"]), now - 660)),
        ("password only", writer(json!(["pwd"]), now - 60)),
        (
            "no amr",
            provider
                .forge()
                .subject("writer")
                .scope("write:users")
                .claim("auth_time", json!(now))
                .sign(),
        ),
    ];
    for (description, token) in cases {
        let response = gateway
            .request(http::Method::POST, "/users")
            .bearer(&token)
            .json(&body)
            .send()
            .await;
        assert_eq!(response.status(), 401, "{description}: {}", response.text());
        assert_eq!(
            response.json()["reason"],
            "insufficient_user_authentication",
            "{description}"
        );
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", max_age=600"),
            "{description}"
        );
    }

    let silver = provider
        .forge()
        .subject("writer")
        .scope("write:users")
        .claim("acr", json!("silver"))
        .sign();
    let response = gateway
        .request(http::Method::DELETE, "/users/1")
        .bearer(&silver)
        .send()
        .await;
    assert_eq!(response.status(), 401, "{}", response.text());
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    assert!(
        challenge.ends_with("acr_values=\"gold platinum\""),
        "{challenge}"
    );

    let gold = provider
        .forge()
        .subject("writer")
        .scope("write:users")
        .claim("acr", json!("gold"))
        .sign();
    let response = gateway
        .request(http::Method::DELETE, "/users/1")
        .bearer(&gold)
        .send()
        .await;
    assert_eq!(response.status(), 204, "{}", response.text());
    assert_eq!(
        upstream.count().await,
        2,
        "a step-up failure reached the upstream"
    );
}
