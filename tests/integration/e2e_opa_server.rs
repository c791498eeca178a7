//! An external OPA server decides a route: the real OPA engine (Go,
//! through the opa-golib-python-bindings wheel) behind a minimal data API
//! server (`tests/fixtures/opa/server.py`). Allowed, denied and undefined
//! decisions come from OPA itself; a stopped server denies with
//! `policy_error` within the configured timeout.
//!
//! The wheel is installed by `scripts/test-all.sh` into `target/opa-py`
//! (or the directory in `PORTCULLIS_OPA_PY`). Without it these tests are
//! skipped with a message, unless `PORTCULLIS_REQUIRE_OPA=1`, which the test
//! command sets so that CI fails instead.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{config_for, Gateway, Provider, ProviderOptions, Upstream};

const POLICY: &str = r#"package demo

import rego.v1

default allow_read := false

allow_read if input.subject == input.route.params.id

allow_read if "read:users:all" in input.scopes
"#;

struct OpaServer {
    child: Child,
    port: u16,
}

impl Drop for OpaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bindings_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_OPA_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/opa-py"));
    if dir.join("opa_bindings").is_dir() {
        return Some(dir);
    }
    let required = std::env::var("PORTCULLIS_REQUIRE_OPA").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "the OPA bindings are not installed in {}; run scripts/test-all.sh",
        dir.display()
    );
    eprintln!(
        "skipped: the OPA bindings are not installed in {} (scripts/test-all.sh installs them)",
        dir.display()
    );
    None
}

fn start_opa(bindings: &PathBuf, policies: &std::path::Path) -> OpaServer {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opa/server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("--policies")
        .arg(policies)
        .env("PYTHONPATH", bindings)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the OPA server fixture");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading READY from the OPA server");
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    OpaServer { child, port }
}

fn opa_config(upstream: &Upstream, provider: &Provider, port: u16) -> String {
    let yaml = config_for(upstream, &[provider]).yaml().replacen(
        "    match: { path: \"/users/{id}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users] }",
        "    match: { path: \"/users/{id}\", methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users], policy: data.demo.allow_read }",
        1,
    );
    assert!(
        yaml.contains("policy: data.demo.allow_read"),
        "the route text changed"
    );
    format!("{yaml}\npolicies:\n  opa: {{ url: \"http://127.0.0.1:{port}\", timeout: 2s }}\n  cache: {{ ttl: 0s }}\n")
}

#[tokio::test]
async fn opa_server_decides_and_fails_closed() {
    let Some(bindings) = bindings_dir() else {
        return;
    };
    let policies = tempfile::tempdir().expect("creating a temp dir");
    std::fs::write(policies.path().join("demo.rego"), POLICY).expect("writing the policy");
    let mut opa = start_opa(&bindings, policies.path());
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&opa_config(&upstream, &provider, opa.port)).await;
    let token = provider.forge().subject("2").scope("read:users").sign();

    let own = gateway.get("/users/2").bearer(&token).send().await;
    assert_eq!(
        own.status(),
        200,
        "OPA allows the own record: {}",
        own.text()
    );
    let other = gateway.get("/users/1").bearer(&token).send().await;
    assert_eq!(other.status(), 403, "{}", other.text());
    assert_eq!(other.json()["reason"], "policy_denied");
    assert_eq!(upstream.count().await, 1);

    let _ = opa.child.kill();
    let _ = opa.child.wait();
    let started = Instant::now();
    let down = gateway.get("/users/2").bearer(&token).send().await;
    assert_eq!(down.status(), 403, "{}", down.text());
    assert_eq!(down.json()["reason"], "policy_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        upstream.count().await,
        1,
        "a request reached the upstream while OPA was down"
    );
}
