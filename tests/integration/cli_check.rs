//! `portcullis check` and `serve` on valid and invalid configuration files:
//! every problem reported at once with its location, exact text, no secret
//! values, and `serve` refusing to start on the same problems.

use std::path::PathBuf;
use std::process::{Command, Output};

fn portcullis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn write_config(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("writing the config");
    (dir, path)
}

fn check(path: &PathBuf) -> Output {
    portcullis()
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("running portcullis check")
}

fn stderr_lines(output: &Output, dir: &tempfile::TempDir) -> Vec<String> {
    let text = String::from_utf8_lossy(&output.stderr);
    let prefix = format!("{}/", dir.path().display());
    text.lines().map(|line| line.replace(&prefix, "")).collect()
}

const BROKEN: &str = "\
server:
  address: 127.0.0.1:99999
upstreams:
  users:
    url: ftp://example.com
authentication:
  issuers:
    - issuer: https://issuer.test
      audiences: [users-api]
      discovery: true
      clock_skw: 30s
rate_limits:
  per-subject: { requests: 10, per: often, key: [subjct] }
routes:
  - id: list-users
    match: { path: /users, methods: [GET, FETCH] }
    upstream: user
    rate_limits: per-subjects
";

#[test]
fn check_reports_every_problem_with_location() {
    let (dir, path) = write_config("broken.yaml", BROKEN);
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    let expected = [
        "broken.yaml:2:12: server.address: expected an IP address and port such as 127.0.0.1:8080, found \"127.0.0.1:99999\"",
        "broken.yaml:5:10: upstreams.users.url: expected an http:// or https:// URL without a query, found \"ftp://example.com\"",
        "broken.yaml:11:7: authentication.issuers[0].clock_skw: unknown key \"clock_skw\"; did you mean \"clock_skew\"?",
        "broken.yaml:13:37: rate_limits.per-subject.per: expected a duration from 1ms to 1year such as 500ms, 30s or 5m, found \"often\"",
        "broken.yaml:13:50: rate_limits.per-subject.key[0]: expected one of ip, subject, client, route, tenant, claim:<path>, found \"subjct\"; did you mean \"subject\"?",
        "broken.yaml:16:43: routes[0].match.methods[1]: expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, found \"FETCH\"",
        "broken.yaml:17:15: routes[0].upstream: no upstream named \"user\" in upstreams; did you mean \"users\"?",
        "broken.yaml:18:18: routes[0].rate_limits: no rate-limit policy named \"per-subjects\" in rate_limits; did you mean \"per-subject\"?",
        "8 problems found",
    ];
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "missing line:\n{line}\nin:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(
        lines.len(),
        expected.len(),
        "unexpected output:\n{}",
        lines.join("\n")
    );
}

#[test]
fn serve_refuses_invalid_config() {
    let (_dir, path) = write_config("broken.yaml", BROKEN);
    let output = portcullis()
        .args(["serve", "-c"])
        .arg(&path)
        .output()
        .expect("running portcullis serve");

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("8 problems found"), "{stderr}");
}

#[test]
fn check_accepts_example_config() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/users-api/portcullis.yaml");
    let output = check(&path);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with(": ok (4 routes, 1 upstream, 1 issuer)\n"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_payments_example() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/payments/portcullis.yaml");
    // The example reads two secrets from the environment. The HMAC secret
    // has the 32 bytes HS256 requires but few distinct bytes, the weakness
    // `portcullis review` reports on this example.
    let output = portcullis()
        .args(["check", "-c"])
        .arg(&path)
        .env(
            "FICTIONALPAY_LEGACY_HMAC",
            "changemechangemechangemechangeme",
        )
        .env("REDIS_PASSWORD", "example-redis-password")
        .output()
        .expect("running portcullis check");

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with(": ok (16 routes, 2 upstreams, 2 issuers)\n"),
        "{stdout}"
    );
}

#[test]
fn payments_example_policies_pass_tests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/payments/policies");
    let output = portcullis()
        .args(["policy", "test"])
        .arg(&dir)
        .output()
        .expect("running policy test");

    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("PASS: 7/7"), "{stdout}");
}

#[test]
fn secret_value_never_printed() {
    let secret = "short-secret-value-9f3a";
    let config = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
authentication:
  issuers:
    - issuer: https://issuer.test
      audiences: [api]
      algorithm: HS256
      secret: { env: PORTCULLIS_TEST_WEAK_SECRET }
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
";
    let (dir, path) = write_config("secret.yaml", config);
    let output = portcullis()
        .args(["check", "-c"])
        .arg(&path)
        .env("PORTCULLIS_TEST_WEAK_SECRET", secret)
        .output()
        .expect("running portcullis check");

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert!(
        lines[0]
            .starts_with("secret.yaml:8:15: authentication.issuers[0].secret: unusable secret:"),
        "{lines:?}"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(secret), "the secret value was printed: {all}");
}

#[test]
fn missing_sections_reported() {
    let (dir, path) = write_config("empty.yaml", "# nothing here\n");
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert_eq!(
        lines,
        [
            "empty.yaml:1:1: upstreams: missing; expected a mapping of upstream names to { url: ... }",
            "empty.yaml:1:1: routes: missing; expected a list of routes; requests that match no route get 404",
            "2 problems found",
        ]
    );
}

#[test]
fn invalid_yaml_reports_position() {
    let (dir, path) = write_config("syntax.yaml", "routes: [\n  { id: a\n");
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert!(lines[0].starts_with("syntax.yaml:"), "{lines:?}");
    assert!(lines[0].contains("invalid YAML"), "{lines:?}");
}

/// Returns the YAML code blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block.to_string()))
        .collect()
}

#[test]
fn documented_examples_are_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for doc in ["README.md", "docs/tenants.md"] {
        let markdown = std::fs::read_to_string(root.join(doc)).expect("reading the document");
        for (index, block) in yaml_blocks(&markdown).into_iter().enumerate() {
            let (_dir, path) = write_config("example.yaml", &block);
            let output = check(&path);
            assert!(
                output.status.success(),
                "{doc} example {index} is invalid:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} examples found");
}

#[test]
fn route_path_prefix_tenant_rejected() {
    let config = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
    authentication: none
    tenant_from: { path_prefix: \"/t/{tenant}\" }
";
    let (dir, path) = write_config("route.yaml", config);
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert_eq!(
        lines[0],
        "route.yaml:8:18: routes[0].tenant_from: a route cannot take its tenant from a path prefix, because the prefix is removed before routing; set it at the top level"
    );
}

#[test]
fn inline_secret_never_echoed() {
    let secret = "inline-secret-value-7c1d";
    let config = format!(
        "upstreams:\n  api: {{ url: http://127.0.0.1:1 }}\nauthentication:\n  issuers:\n    - issuer: https://issuer.test\n      audiences: [api]\n      algorithm: HS256\n      secret: {secret}\nroutes:\n  - id: api\n    match: {{ path: /api, methods: [GET] }}\n    upstream: api\n"
    );
    let (dir, path) = write_config("inline.yaml", &config);
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert_eq!(
        lines[0],
        "inline.yaml:8:15: authentication.issuers[0].secret: expected { env: NAME } or { file: PATH }; secrets are not written inline"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(secret), "the secret value was printed: {all}");
}

#[test]
fn private_key_in_inline_jwks_rejected() {
    let config = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
authentication:
  issuers:
    - issuer: https://issuer.test
      audiences: [api]
      jwks:
        keys:
          - { kty: EC, crv: P-256, kid: k1, x: p5qdaOj2Xxy8X_cGBymuYVq2aKl7dERI1yTV0Q7oAek, y: j9LcH_sECdOOGzMTcx0d5j34aSRdoSI3bDgrfpZN1Cg, d: c2VjcmV0LXNjYWxhci1ub3QtcmVhbA }
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
";
    let (dir, path) = write_config("private.yaml", config);
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    assert!(
        lines[0].starts_with(
            "private.yaml:8:13: authentication.issuers[0].jwks: the JWKS contains private"
        ),
        "{lines:?}"
    );
    assert!(
        !lines.join("\n").contains("c2VjcmV0"),
        "the private key was printed"
    );
}

#[test]
fn policy_problems_reported_with_location() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(
        dir.path().join("users.rego"),
        "package users\n\nallow_read if {\n  input.subject ==\n}\n",
    )
    .expect("writing the policy");
    let config = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
policies:
  paths: [.]
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
    authentication: none
";
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).expect("writing the config");
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line.ends_with("users.rego:5:1: policies: expecting expression")),
        "no file:line for the compile error:\n{stderr}"
    );
}

#[test]
fn unknown_policy_rule_suggested() {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(
        dir.path().join("users.rego"),
        "package users\n\ndefault allow_read := false\n",
    )
    .expect("writing the policy");
    let config = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
authentication:
  issuers:
    - { issuer: https://issuer.test, audiences: [api], discovery: true }
policies:
  paths: [.]
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
    require: { policy: data.users.allow_reed }
";
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).expect("writing the config");
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = "gateway.yaml:12:24: routes[0].require.policy: no rule \"data.users.allow_reed\" in the loaded policies; did you mean \"data.users.allow_read\"?";
    assert!(
        stderr.lines().any(|line| line.ends_with(expected)),
        "{stderr}"
    );
}

#[test]
fn policy_test_command_reports_results() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let passing = portcullis()
        .args(["policy", "test"])
        .arg(root.join("examples/users-api/policies"))
        .output()
        .expect("running policy test");
    assert!(
        passing.status.success(),
        "{}",
        String::from_utf8_lossy(&passing.stderr)
    );
    assert!(
        String::from_utf8_lossy(&passing.stdout).starts_with("PASS: "),
        "{}",
        String::from_utf8_lossy(&passing.stdout)
    );

    let failing = portcullis()
        .args(["policy", "test"])
        .arg(root.join("tests/data/policies_failing"))
        .output()
        .expect("running policy test");
    assert_eq!(failing.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(
        stdout.contains("data.demo_test.test_fails: FAIL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("data.demo_test.test_errors: ERROR"),
        "{stdout}"
    );
}

const BROKEN_LIMITS: &str = "\
upstreams:
  api: { url: http://127.0.0.1:1 }
rate_limit_store:
  type: redis
  url: redis://:hunter2-store-password@127.0.0.1:6379
  key_prefix: \"{all}\"
  timout: 50ms
  circuit: { failures: 0, open_for: 5s, max_open_for: 1s }
rate_limits:
  both: { requests: 10, per: 1s, quota: 100, window: day, key: [ip] }
  monthly: { quota: 100, window: fortnight, time_zone: Mars/Olympus, key: [tenant] }
  slots: { concurrent: 0, lease: 1s, key: [client] }
  nothing: { key: [ip] }
routes:
  - id: api
    match: { path: /api, methods: [GET] }
    upstream: api
    authentication: none
    on_store_failure: drop
";

#[test]
fn rate_limit_store_and_policy_problems_reported() {
    let (dir, path) = write_config("limits.yaml", BROKEN_LIMITS);
    let output = check(&path);

    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output, &dir);
    let expected = [
        "limits.yaml:5:8: rate_limit_store.url: the URL carries a password or query parameters; put a password under password: { env: NAME } or { file: PATH }",
        "limits.yaml:6:15: rate_limit_store.key_prefix: expected a key prefix of letters, digits, '-', '_', ':' and '.' (at most 64), without braces",
        "limits.yaml:10:9: rate_limits.both: expected exactly one of requests, quota or concurrent, found requests and quota",
        "limits.yaml:7:3: rate_limit_store.timout: unknown key \"timout\"; did you mean \"timeout\"?",
        "limits.yaml:8:24: rate_limit_store.circuit.failures: expected an integer from 1 to 1000, found \"0\"",
        "limits.yaml:11:34: rate_limits.monthly.window: expected one of hour, day, month, found \"fortnight\"",
        "limits.yaml:11:56: rate_limits.monthly.time_zone: unknown time zone \"Mars/Olympus\": expected an IANA name such as UTC or Europe/Berlin",
        "limits.yaml:12:24: rate_limits.slots.concurrent: expected an integer from 1 to 4294967295, found \"0\"",
        "limits.yaml:12:34: rate_limits.slots.lease: expected a duration from 3s to 1day such as 30s or 5m, found \"1s\"",
        "limits.yaml:13:12: rate_limits.nothing.requests: missing; expected one of requests (a rate), quota (a calendar window) or concurrent (requests in flight)",
        "limits.yaml:19:23: routes[0].on_store_failure: expected one of local, deny, found \"drop\"",
    ];
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "missing line:\n{line}\nin:\n{}",
            lines.join("\n")
        );
    }
    assert_eq!(lines.len(), expected.len() + 1, "{}", lines.join("\n"));
    let all = lines.join("\n");
    assert!(
        !all.contains("hunter2"),
        "the store password was printed: {all}"
    );
}
