//! The input document built from a request's facts.

use http::{HeaderMap, HeaderValue};
use portcullis::authz::policy::{build_input, RequestFacts};
use serde_json::json;

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer secret-token"),
    );
    headers.insert(
        "proxy-authorization",
        HeaderValue::from_static("Basic c2VjcmV0"),
    );
    headers.insert("cookie", HeaderValue::from_static("session=secret"));
    headers.insert("x-request-id", HeaderValue::from_static("r-1"));
    headers.append("accept", HeaderValue::from_static("text/html"));
    headers.append("accept", HeaderValue::from_static("application/json"));
    headers.insert("x-binary", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
    headers
}

#[test]
fn input_has_documented_shape() {
    let headers = headers();
    let params = vec![
        ("tenant".to_string(), "acme".to_string()),
        ("id".to_string(), "u 1".to_string()),
    ];
    let claims = json!({"sub": "alice", "amr": ["pwd", "mfa"], "auth_time": 1767225600});
    let body = json!({"name": "Alice"});
    let scopes = vec!["read:users".to_string(), "write:users".to_string()];
    let roles = vec!["admin".to_string()];
    let facts = RequestFacts {
        method: "DELETE",
        path: "/tenants/acme/users/u%201",
        route_id: "users-delete",
        params: &params,
        headers: &headers,
        query: Some("expand=roles&expand=groups&q=a+b%2Bc&flag&=empty&bad=%zz"),
        claims: claims.as_object(),
        subject: Some("alice"),
        client_id: Some("portal"),
        scopes: &scopes,
        roles: &roles,
        tenant: Some("acme"),
        body: Some(&body),
    };

    let input = build_input(&facts);

    assert_eq!(
        input,
        json!({
            "method": "DELETE",
            "path": "/tenants/acme/users/u%201",
            "segments": ["tenants", "acme", "users", "u 1"],
            "route": {"id": "users-delete", "params": {"tenant": "acme", "id": "u 1"}},
            "headers": {"x-request-id": "r-1", "accept": "text/html, application/json"},
            "query": {"expand": ["roles", "groups"], "q": ["a b+c"], "flag": [""], "": ["empty"], "bad": ["%zz"]},
            "token": {"sub": "alice", "amr": ["pwd", "mfa"], "auth_time": 1767225600},
            "subject": "alice",
            "client_id": "portal",
            "scopes": ["read:users", "write:users"],
            "roles": ["admin"],
            "tenant": "acme",
            "body": {"name": "Alice"}
        })
    );
}

#[test]
fn absent_facts_left_out() {
    let headers = HeaderMap::new();
    let facts = RequestFacts {
        method: "GET",
        path: "/",
        route_id: "root",
        params: &[],
        headers: &headers,
        query: None,
        claims: None,
        subject: None,
        client_id: None,
        scopes: &[],
        roles: &[],
        tenant: None,
        body: None,
    };

    let input = build_input(&facts);

    assert_eq!(
        input,
        json!({
            "method": "GET",
            "path": "/",
            "segments": [],
            "route": {"id": "root", "params": {}},
            "headers": {},
            "query": {},
            "scopes": [],
            "roles": []
        })
    );
}

#[test]
fn credentials_never_in_input() {
    let headers = headers();
    let facts = RequestFacts {
        method: "GET",
        path: "/",
        route_id: "root",
        params: &[],
        headers: &headers,
        query: None,
        claims: None,
        subject: None,
        client_id: None,
        scopes: &[],
        roles: &[],
        tenant: None,
        body: None,
    };

    let text = build_input(&facts).to_string();

    assert!(!text.contains("secret"), "{text}");
}
