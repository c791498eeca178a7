//! API keys end to end: keys made with `portcullis key`, presented to the
//! gateway in front of the Express upstream, and the ways a stolen or
//! guessed key must fail: expired, revoked, of another tenant, in the query
//! string, under a different server secret, guessed at speed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, record_credential, Gateway, Upstream, ADMIN_ADDRESS, LISTEN_ADDRESS};
use tempfile::TempDir;

/// A configuration with API keys on disk: the key file, the server secret
/// and the YAML, all in one temporary directory. `config` is the file
/// `portcullis key` reads; the gateway gets the same YAML with its own
/// listener addresses.
struct Setup {
    dir: TempDir,
    config: PathBuf,
    yaml: String,
}

impl Setup {
    fn new(upstream: &Upstream, attempts_per_minute: u32) -> Setup {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let secret = "server-secret-for-api-key-hashes-0123456789";
        std::fs::write(dir.path().join("secret"), secret).expect("writing the secret");
        record_credential(secret);
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
  header: x-api-key
  failed_attempts: {{ requests: {attempts_per_minute}, per: 1m }}
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
        );
        let config = dir.path().join("portcullis.yaml");
        common::write_command_config(&config, &yaml);
        Setup { dir, config, yaml }
    }

    fn yaml(&self) -> String {
        self.yaml.clone()
    }

    /// Runs `portcullis key ...` and returns its standard output.
    fn key(&self, args: &[&str]) -> String {
        key_command(&self.config, args)
    }

    /// Creates a key and records it, so the gateway's logs are checked for it.
    fn create(&self, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        let key = self.key(&all).trim().to_string();
        assert!(key.starts_with("pk_"), "not a key: {key:?}");
        record_credential(&key);
        key
    }
}

fn key_command(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("key")
        .arg(args[0])
        .arg("-c")
        .arg(config)
        .args(&args[1..])
        .output()
        .expect("running portcullis key");
    assert!(
        output.status.success(),
        "portcullis key {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Returns the public name of a key: `pk_<id>`.
fn name(key: &str) -> String {
    key.splitn(3, '_').take(2).collect::<Vec<_>>().join("_")
}

#[tokio::test]
async fn key_reaches_the_api_and_never_the_upstream() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 10);
    let key = setup.create(&["--scope", "read:users", "--label", "ci"]);
    let gateway = Gateway::start(&setup.yaml()).await;

    let by_scheme = gateway
        .get("/users")
        .header("authorization", &format!("ApiKey {key}"))
        .send()
        .await;
    let by_header = gateway.get("/users").header("x-api-key", &key).send().await;

    assert_eq!(by_scheme.status(), 200);
    assert_eq!(by_header.status(), 200);
    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.header("x-api-key"), None);
        assert_eq!(
            request.header("x-portcullis-subject"),
            Some(name(&key).as_str())
        );
    }
}

#[tokio::test]
async fn key_without_the_scope_is_forbidden() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 10);
    let key = setup.create(&["--scope", "write:users"]);
    let gateway = Gateway::start(&setup.yaml()).await;

    let response = gateway.get("/users").header("x-api-key", &key).send().await;

    assert_eq!(response.status(), 403);
    assert_eq!(response.reason().as_deref(), Some("insufficient_scope"));
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test]
async fn stolen_keys_are_refused() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 50);
    let expiring = setup.create(&["--scope", "read:users", "--expires-in", "1s"]);
    let revoked = setup.create(&["--scope", "read:users"]);
    let acme = setup.create(&["--scope", "read:users", "--tenant", "acme"]);
    let gateway = Gateway::start(&setup.yaml()).await;
    let status = |key: String, path: &'static str, tenant: &'static str| {
        let request = gateway
            .get(path)
            .header("x-api-key", &key)
            .header("x-tenant", tenant);
        async move {
            let response = request.send().await;
            (response.status(), response.reason())
        }
    };

    assert_eq!(status(acme.clone(), "/users/1", "acme").await.0, 200);
    assert_eq!(
        status(acme.clone(), "/users/1", "globex").await,
        (403, Some("tenant_mismatch".into())),
        "a key of one tenant used on another"
    );
    assert_eq!(
        status(revoked.clone(), "/users/1", "acme").await,
        (403, Some("tenant_mismatch".into())),
        "a key of no tenant used on a tenant's route"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status(expiring, "/users", "").await,
        (401, Some("api_key_expired".into()))
    );

    assert_eq!(status(revoked.clone(), "/users", "").await.0, 200);
    setup.key(&["revoke", &name(&revoked)]);
    let refused = || {
        let check = status(revoked.clone(), "/users", "");
        async move { check.await == (401, Some("api_key_revoked".into())) }
    };
    eventually(
        "the revoked key is refused",
        Duration::from_secs(3),
        refused,
    )
    .await;
    upstream.reset().await;

    let in_query = gateway.get(&format!("/users?api_key={acme}")).send().await;
    let challenges: Vec<&str> = in_query
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(
        challenges,
        ["Bearer realm=\"portcullis\"", "ApiKey realm=\"portcullis\""],
        "a client without a credential learns both schemes"
    );
    assert_eq!(
        in_query.status(),
        401,
        "a key in the query string is ignored"
    );
    assert_eq!(in_query.reason().as_deref(), Some("token_missing"));

    let forged = format!("{}_{}", name(&acme), "A".repeat(43));
    assert_eq!(
        status(forged, "/users", "").await,
        (401, Some("api_key_invalid".into())),
        "a known id with a made-up secret"
    );
    assert_eq!(
        upstream.count().await,
        0,
        "a refused key reached the upstream"
    );
}

#[tokio::test]
async fn keys_hashed_under_another_secret_do_not_work() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 10);
    let key = setup.create(&["--scope", "read:users"]);
    std::fs::write(
        setup.dir.path().join("secret"),
        "a-different-server-secret-of-enough-length-42",
    )
    .expect("replacing the secret");
    let gateway = Gateway::start(&setup.yaml()).await;

    let response = gateway.get("/users").header("x-api-key", &key).send().await;

    assert_eq!(response.status(), 401);
    assert_eq!(response.reason().as_deref(), Some("api_key_invalid"));
}

#[tokio::test]
async fn guessing_is_limited_per_source() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 3);
    let key = setup.create(&["--scope", "read:users"]);
    let gateway = Gateway::start(&setup.yaml()).await;

    let mut statuses = Vec::new();
    for attempt in 0..5 {
        let guess = format!("pk_{:016x}_{}", attempt, "B".repeat(43));
        let response = gateway
            .get("/users")
            .header("x-api-key", &guess)
            .send()
            .await;
        statuses.push(response.status());
    }
    let blocked = gateway.get("/users").header("x-api-key", &key).send().await;

    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    assert_eq!(
        blocked.status(),
        429,
        "the source stays blocked, valid key or not"
    );
    assert_eq!(
        blocked.reason().as_deref(),
        Some("api_key_attempts_exceeded")
    );
    let retry_after: u64 = blocked
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_overlap() {
    let upstream = Upstream::start();
    // Room for the failed attempts of the polls below.
    let setup = Setup::new(&upstream, 1000);
    let old = setup.create(&["--scope", "read:users", "--tenant", "acme"]);
    let gateway = Gateway::start(&setup.yaml()).await;

    let new = setup
        .key(&["rotate", &name(&old), "--overlap", "4s"])
        .trim()
        .to_string();
    record_credential(&new);
    let new_accepted = || {
        let request = gateway
            .get("/users/1")
            .header("x-api-key", &new)
            .header("x-tenant", "acme");
        async move { request.send().await.status() == 200 }
    };
    eventually(
        "the new key is accepted",
        Duration::from_secs(3),
        new_accepted,
    )
    .await;

    for key in [&old, &new] {
        let response = gateway
            .get("/users/1")
            .header("x-api-key", key)
            .header("x-tenant", "acme")
            .send()
            .await;
        assert_eq!(response.status(), 200, "during the overlap");
    }
    let old_refused = || {
        let request = gateway
            .get("/users/1")
            .header("x-api-key", &old)
            .header("x-tenant", "acme");
        async move { request.send().await.reason().as_deref() == Some("api_key_expired") }
    };
    eventually("the old key expires", Duration::from_secs(8), old_refused).await;
    let response = gateway
        .get("/users/1")
        .header("x-api-key", &new)
        .header("x-tenant", "acme")
        .send()
        .await;
    assert_eq!(
        response.status(),
        200,
        "the new key keeps the tenant and scopes"
    );

    let listed: serde_json::Value =
        serde_json::from_str(&setup.key(&["list", "--json"])).expect("JSON list");
    let text = listed.to_string();
    assert!(
        !text.contains(&old) && !text.contains(&new),
        "a secret was listed"
    );
    assert_eq!(listed[0]["rotated_to"], name(&new).as_str());
}

#[tokio::test]
async fn shared_store_reaches_every_instance_within_a_second() {
    let upstream = Upstream::start();
    let redis = common::RedisServer::shared();
    let prefix = common::unique_key_prefix();
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let secret = "server-secret-for-shared-api-key-hashes-0123";
    std::fs::write(dir.path().join("secret"), secret).expect("writing the secret");
    record_credential(secret);
    let yaml = format!(
        "\
server:
  address: {LISTEN_ADDRESS}
admin:
  address: {ADMIN_ADDRESS}
upstreams:
  users: {{ url: {upstream} }}
rate_limit_store:
  type: redis
  url: {redis}
  key_prefix: {prefix}
api_keys:
  store: redis
  secret: {{ file: {dir}/secret }}
  header: x-api-key
routes:
  - id: list-users
    match: {{ path: /users, methods: [GET] }}
    upstream: users
    require: {{ scopes: [read:users] }}
",
        upstream = upstream.url(),
        redis = redis.url(),
        prefix = prefix,
        dir = dir.path().display(),
    );
    let config = dir.path().join("cli.yaml");
    common::write_command_config(&config, &yaml);
    let first = Gateway::start(&yaml).await;
    let second = Gateway::start(&yaml).await;

    let key = key_command(&config, &["create", "--scope", "read:users"])
        .trim()
        .to_string();
    record_credential(&key);
    for gateway in [&first, &second] {
        let accepted = || {
            let request = gateway.get("/users").header("x-api-key", &key);
            async move { request.send().await.status() == 200 }
        };
        eventually("a new key is accepted", Duration::from_secs(1), accepted).await;
    }

    key_command(&config, &["revoke", &name(&key)]);
    for gateway in [&first, &second] {
        let refused = || {
            let request = gateway.get("/users").header("x-api-key", &key);
            async move { request.send().await.reason().as_deref() == Some("api_key_revoked") }
        };
        eventually("a revoked key is refused", Duration::from_secs(1), refused).await;
    }
    let late = Gateway::start(&yaml).await;
    let response = late.get("/users").header("x-api-key", &key).send().await;
    assert_eq!(response.reason().as_deref(), Some("api_key_revoked"));
    let stored = redis.keys(&format!("{prefix}:apikey:*"));
    assert_eq!(stored.len(), 1, "{stored:?}");
    let record = redis.cli(&["GET", &stored[0]]);
    assert!(!record.contains(&key[20..]), "the key's secret is stored");
}

#[tokio::test]
async fn two_credentials_in_one_request_are_refused() {
    let upstream = Upstream::start();
    let setup = Setup::new(&upstream, 10);
    let key = setup.create(&["--scope", "read:users"]);
    let other = setup.create(&["--scope", "read:users"]);
    let gateway = Gateway::start(&setup.yaml()).await;
    let scheme = format!("ApiKey {key}");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "two key headers",
            vec![("x-api-key", &key), ("x-api-key", &other)],
        ),
        (
            "two Authorization headers",
            vec![("authorization", &scheme), ("authorization", &scheme)],
        ),
        (
            "a key header beside ApiKey",
            vec![("authorization", &scheme), ("x-api-key", &other)],
        ),
        (
            "a key header beside a bearer token",
            vec![("authorization", "Bearer a.b.c"), ("x-api-key", &key)],
        ),
    ];

    for (description, headers) in cases {
        let mut request = gateway.get("/users");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await;
        assert_eq!(response.status(), 400, "{description}");
        assert_eq!(
            response.reason().as_deref(),
            Some("credentials_ambiguous"),
            "{description}"
        );
    }
    assert_eq!(upstream.count().await, 0);
}

#[test]
fn key_commands_never_print_a_secret_and_check_their_input() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(
        dir.path().join("secret"),
        "server-secret-for-api-key-hashes-0123456789",
    )
    .expect("writing the secret");
    let config = dir.path().join("gateway.yaml");
    let yaml = format!(
        "upstreams:\n  users: {{ url: http://127.0.0.1:9 }}\napi_keys:\n  file: keys.json\n  secret: {{ file: {}/secret }}\nroutes:\n  - id: users\n    match: {{ path: /users, methods: [GET] }}\n    upstream: users\n",
        dir.path().display()
    );
    std::fs::write(&config, yaml).expect("writing the config");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("key")
            .arg(args[0])
            .arg("-c")
            .arg(&config)
            .args(&args[1..])
            .output()
            .expect("running portcullis key")
    };
    let unknown = "pk_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRET1";

    for command in ["revoke", "rotate"] {
        let output = run(&[command, unknown]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}");
        assert!(
            !stderr.contains("SECRET"),
            "{command} printed the key: {stderr}"
        );
        assert!(
            stderr.contains("pk_0123456789abcdef"),
            "{command}: {stderr}"
        );
    }
    let cases = [
        (
            "a scope with a space",
            vec!["create", "--scope", "read:users admin:all"],
        ),
        ("an empty scope", vec!["create", "--scope", ""]),
        (
            "a label with a newline",
            vec!["create", "--label", "ci\nadmin"],
        ),
        ("a zero lifetime", vec!["create", "--expires-in", "0s"]),
    ];
    for (description, args) in cases {
        let output = run(&args);
        assert!(!output.status.success(), "{description} was accepted");
        assert!(output.stdout.is_empty(), "{description}: a key was printed");
    }

    let keys = dir.path().join("keys.json");
    let record = r#"{"id":"0123456789abcdef","hash":"00","created_at":1}"#;
    std::fs::write(
        &keys,
        format!(r#"{{"version":1,"keys":[{record},{record}]}}"#),
    )
    .expect("writing a key file");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("running portcullis check");
    assert!(
        !check.status.success(),
        "check accepted a key file with a repeated key"
    );
    assert!(String::from_utf8_lossy(&check.stderr).contains("appears twice"));
}
