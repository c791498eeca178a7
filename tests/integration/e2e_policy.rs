//! Tier-2 authorization end to end: a route that names a Rego rule is
//! allowed only when the rule allows it, a failing rule denies with
//! `policy_error`, decisions are cached and logged, and a policy that fails
//! to compile at reload leaves the last good bundle serving.

use crate::common;

use std::time::Duration;

use common::{config_for, eventually, Gateway, Provider, ProviderOptions, Upstream};

const POLICY: &str = r#"package demo

default allow_read := false

allow_read if input.subject == input.route.params.id

allow_read if "read:users:all" in input.scopes

broken if {
	x := 1 / count(input.route.params)
	x > 100
}

zero := 0

divides if {
	y := 10 / zero
	y > 1
}
"#;

/// Writes the policy into a fresh directory and returns the configuration
/// with `get-user` deciding by `data.demo.allow_read` and `faults` by
/// `data.demo.divides`.
fn policy_config(upstream: &Upstream, provider: &Provider, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("demo.rego"), POLICY).expect("writing the policy");
    let yaml = config_for(upstream, &[provider]).yaml();
    let yaml = yaml.replacen(
        "    match: { path: \"/users/{id}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users] }",
        "    match: { path: \"/users/{id}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users], policy: data.demo.allow_read }",
        1,
    );
    let yaml = yaml.replacen(
        "    match: { path: \"/faults/{*fault}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users] }",
        "    match: { path: \"/faults/{*fault}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users], policy: data.demo.divides }",
        1,
    );
    assert!(
        yaml.contains("policy: data.demo.allow_read") && yaml.contains("policy: data.demo.divides"),
        "the route text changed"
    );
    format!(
        "{yaml}\npolicies:\n  paths: [\"{}\"]\n  budget: 50ms\n",
        dir.display()
    )
}

#[tokio::test]
async fn policy_decides_route() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let gateway = Gateway::start(&policy_config(&upstream, &provider, dir.path())).await;

    let own = provider.forge().subject("2").scope("read:users").sign();
    let response = gateway.get("/users/2").bearer(&own).send().await;
    assert_eq!(response.status(), 200, "own record: {}", response.text());

    let other = gateway.get("/users/1").bearer(&own).send().await;
    assert_eq!(other.status(), 403, "{}", other.text());
    assert_eq!(other.json()["reason"], "policy_denied");
    assert_eq!(
        upstream.count().await,
        1,
        "a denied request reached the upstream"
    );

    let all = provider
        .forge()
        .subject("2")
        .scope("read:users read:users:all")
        .sign();
    assert_eq!(
        gateway.get("/users/1").bearer(&all).send().await.status(),
        200
    );

    let failing = gateway.get("/faults/headers").bearer(&all).send().await;
    assert_eq!(failing.status(), 403, "{}", failing.text());
    assert_eq!(failing.json()["reason"], "policy_error");
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn decisions_cached_and_logged() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let gateway = Gateway::start(&policy_config(&upstream, &provider, dir.path())).await;
    let token = provider.forge().subject("3").scope("read:users").sign();

    for _ in 0..2 {
        assert_eq!(
            gateway.get("/users/3").bearer(&token).send().await.status(),
            200
        );
    }

    let decisions: Vec<String> = gateway
        .logs()
        .lines()
        .filter(|l| l.contains("policy decision"))
        .map(str::to_string)
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(
        decisions[0].contains("\"cached\":false"),
        "{}",
        decisions[0]
    );
    assert!(decisions[1].contains("\"cached\":true"), "{}", decisions[1]);
    assert!(
        decisions[0].contains("\"policy.rule\":\"data.demo.allow_read\""),
        "{}",
        decisions[0]
    );
    assert!(
        decisions[0].contains("\"decision_id\":"),
        "{}",
        decisions[0]
    );
    assert!(!decisions[0].contains(&token), "the token was logged");
}

#[tokio::test]
async fn broken_policy_reload_keeps_last_good() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let config = policy_config(&upstream, &provider, dir.path());
    let gateway = Gateway::start(&config).await;
    let token = provider.forge().subject("2").scope("read:users").sign();

    std::fs::write(
        dir.path().join("demo.rego"),
        "package demo\n\nallow_read if {\n",
    )
    .expect("writing a broken policy");
    gateway.hangup();

    eventually(
        "the rejected reload is counted",
        Duration::from_secs(10),
        || async {
            gateway
                .metrics()
                .await
                .value("portcullis_config_reloads_total", &[("result", "failure")])
                >= 1.0
        },
    )
    .await;
    assert!(
        gateway.logs().contains("demo.rego:"),
        "the policy problem has no file location"
    );
    assert_eq!(
        gateway.get("/users/2").bearer(&token).send().await.status(),
        200,
        "the last good bundle stopped serving"
    );
    assert_eq!(
        gateway.get("/users/1").bearer(&token).send().await.status(),
        403
    );
}

#[tokio::test]
async fn cache_key_ignores_input_no_rule_reads() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let gateway = Gateway::start(&policy_config(&upstream, &provider, dir.path())).await;
    let token = |subject: &str| provider.forge().subject(subject).scope("read:users").sign();

    // (description, subject and path id, trace header, expected `cached`)
    let cases = [
        ("first request", "3", "t-1", false),
        (
            "another trace header, which no rule reads",
            "3",
            "t-2",
            true,
        ),
        (
            "a new token with the same claims the rules read",
            "3",
            "t-3",
            true,
        ),
        (
            "another subject and path id, which the rule reads",
            "2",
            "t-4",
            false,
        ),
    ];
    for (_, subject, trace, _) in &cases {
        let response = gateway
            .get(&format!("/users/{subject}"))
            .bearer(&token(subject))
            .header("x-trace", trace)
            .send()
            .await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }

    let cached: Vec<bool> = gateway
        .logs()
        .lines()
        .filter(|l| l.contains("policy decision"))
        .map(|l| l.contains("\"cached\":true"))
        .collect();
    let expected: Vec<bool> = cases.iter().map(|case| case.3).collect();
    assert_eq!(cached, expected, "cached flags of {:?}", cases.map(|c| c.0));
}

#[tokio::test]
async fn decision_log_masks_input() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let config = policy_config(&upstream, &provider, dir.path())
        + "  decision_log:\n    include_input: true\n    drop: [/input/headers, /input/token]\n    mask: [/input/subject]\n";
    let gateway = Gateway::start(&config).await;
    let token = provider.forge().subject("3").scope("read:users").sign();

    assert_eq!(
        gateway
            .get("/users/3")
            .bearer(&token)
            .header("x-trace", "t-1")
            .send()
            .await
            .status(),
        200
    );

    let logs = gateway.logs();
    let decision = logs
        .lines()
        .find(|l| l.contains("policy decision"))
        .expect("a decision record");
    let record: serde_json::Value = serde_json::from_str(decision).expect("a JSON log line");
    let logged: serde_json::Value =
        serde_json::from_str(record["fields"]["record"].as_str().expect("a record field"))
            .expect("JSON record");
    assert_eq!(logged["input"]["subject"], "****");
    assert!(logged["input"].get("headers").is_none(), "{logged}");
    assert!(logged["input"].get("token").is_none(), "{logged}");
    assert_eq!(logged["input"]["route"]["params"]["id"], "3");
    assert_eq!(logged["result"], true);
}

#[tokio::test]
async fn policy_reads_request_body() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(
        dir.path().join("create.rego"),
        "package create\n\nallow if startswith(input.body.name, \"A\")\n",
    )
    .expect("writing the policy");
    let config = policy_config(&upstream, &provider, dir.path()).replacen(
        "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users] }",
        "    match: { path: /users, methods: [POST] }\n    upstream: users\n    require: { scopes: [write:users], policy: data.create.allow, policy_body: true }",
        1,
    );
    assert!(
        config.contains("policy_body: true"),
        "the route text changed"
    );
    let gateway = Gateway::start(&config).await;
    let writer = provider
        .forge()
        .subject("writer")
        .scope("write:users")
        .sign();

    let allowed = serde_json::json!({ "name": "Ada Reed", "email": "ada.reed@example.com" });
    let response = gateway
        .request(http::Method::POST, "/users")
        .bearer(&writer)
        .json(&allowed)
        .send()
        .await;
    assert_eq!(response.status(), 201, "{}", response.text());
    assert_eq!(
        response.json()["name"],
        "Ada Reed",
        "the buffered body did not reach the upstream intact"
    );

    let denied = serde_json::json!({ "name": "Bob Reed", "email": "bob.reed@example.com" });
    let response = gateway
        .request(http::Method::POST, "/users")
        .bearer(&writer)
        .json(&denied)
        .send()
        .await;
    assert_eq!(response.status(), 403, "{}", response.text());
    assert_eq!(response.json()["reason"], "policy_denied");

    let response = gateway
        .request(http::Method::POST, "/users")
        .bearer(&writer)
        .body("not json")
        .send()
        .await;
    assert_eq!(
        response.status(),
        403,
        "a body that is not JSON leaves input.body undefined: {}",
        response.text()
    );
    assert_eq!(upstream.count().await, 1);
}
