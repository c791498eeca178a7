//! End-to-end audit trail: the gateway binary writes one record per
//! request decision, `portcullis audit verify` accepts its files, a failing
//! log denies (or serves) as configured, SIGKILL loses no answered
//! request's record, and `audit erase` unlinks a subject.

use crate::common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    config_for, AuditFiles, Gateway, Provider, ProviderOptions, RequestBuilder, Upstream,
};
use http::Method;
use serde_json::Value;

/// A route without authentication, to which the upstream's echo responds 200.
const OPEN_ROUTE: &str =
    "id: open\nmatch: { path: /faults/echo, methods: [GET] }\nupstream: users\nauthentication: none";

/// Asserts that `text` is a lowercase hex HMAC-SHA256.
#[track_caller]
fn assert_pseudonym(text: &Value, case: &str) {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("{case}: subject {text}"));
    assert_eq!(text.len(), 64, "{case}: subject {text}");
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{case}: subject {text}"
    );
}

/// (description, method, path, bearer token, status, reason)
type DecisionCase<'a> = (&'a str, Method, &'a str, Option<&'a str>, u16, &'a str);

#[tokio::test]
async fn each_decision_has_one_record() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let audit = AuditFiles::new();
    let config = config_for(&upstream, &[&provider])
        .rate_limit(3, "1m")
        .yaml();
    let mut gateway = Gateway::start(&(config + &audit.section(""))).await;
    let subject = "user-5f1c@example.com";
    let reader = provider
        .forge()
        .subject(subject)
        .claim("client_id", "web-app".into())
        .sign();

    let cases: Vec<DecisionCase> = vec![
        (
            "allowed",
            Method::GET,
            "/users",
            Some(&reader),
            200,
            "allowed",
        ),
        (
            "no token",
            Method::GET,
            "/users",
            None,
            401,
            "token_missing",
        ),
        (
            "scope missing",
            Method::DELETE,
            "/users/1",
            Some(&reader),
            403,
            "insufficient_scope",
        ),
        (
            "unknown route",
            Method::GET,
            "/nowhere",
            None,
            404,
            "route_not_found",
        ),
    ];
    let mut answered = Vec::new();
    for (description, method, path, token, status, reason) in &cases {
        let mut request = gateway
            .request(method.clone(), path)
            .header("x-request-id", "client-chosen");
        if let Some(token) = token {
            request = request.bearer(token);
        }
        let response = request.send().await;
        assert_eq!(
            response.status(),
            *status,
            "{description}: {}",
            response.text()
        );
        answered.push((*description, response, *status, *reason));
    }
    // The limit allows 3 requests a minute per subject, and the requests
    // above used 2 of them.
    let mut limited = None;
    for _ in 0..5 {
        let response = gateway.get("/users").bearer(&reader).send().await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the per-subject limit answered 429");
    answered.push(("rate limited", limited, 429, "rate_limited"));

    let seen = upstream.requests().await;
    let upstream_id = seen[0]
        .header("x-request-id")
        .expect("x-request-id upstream");
    assert_ne!(upstream_id, "client-chosen", "client id forwarded");
    assert_eq!(Some(upstream_id), answered[0].1.header("x-request-id"));

    gateway.stop().await;
    let text: String = audit
        .files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(!text.contains(subject), "subject in clear in the audit log");
    let logs = gateway.logs();
    for (description, response, status, reason) in &answered {
        let request_id = response.header("x-request-id").expect("x-request-id");
        assert_eq!(request_id.len(), 16, "{description}: {request_id}");
        let records = audit.records_for(request_id);
        assert_eq!(records.len(), 1, "{description}: {records:?}");
        let record = &records[0];
        assert_eq!(record["status"], *status, "{description}");
        assert_eq!(record["reason"], *reason, "{description}");
        let decision = if *status == 200 { "allow" } else { "deny" };
        assert_eq!(record["decision"], decision, "{description}");
        assert!(record["latency_ms"].is_u64(), "{description}: {record}");
        assert!(record["time"].is_string(), "{description}: {record}");
        assert_eq!(record["tenant"], Value::Null, "{description}");
        assert!(
            logs.contains(&format!("\"request.id\":\"{request_id}\"")),
            "{description}: access log line without the request id"
        );
    }

    let by_case = |index: usize| {
        let request_id = answered[index].1.header("x-request-id").unwrap();
        audit.records_for(request_id)[0].clone()
    };
    let allowed = by_case(0);
    assert_eq!(allowed["route"], "list-users");
    assert_eq!(allowed["client_id"], "web-app");
    assert_pseudonym(&allowed["subject"], "allowed");
    assert_eq!(allowed["policy"], Value::Null);
    let missing = by_case(1);
    assert_eq!(missing["subject"], Value::Null);
    assert_eq!(missing["client_id"], Value::Null);
    let forbidden = by_case(2);
    assert_eq!(forbidden["route"], "delete-user");
    assert_eq!(
        forbidden["subject"], allowed["subject"],
        "same subject, same pseudonym"
    );
    let not_found = by_case(3);
    assert_eq!(not_found["route"], "none");
    let limited = by_case(4);
    assert_eq!(limited["policy"], "per-subject");
    assert_eq!(limited["subject"], allowed["subject"]);

    audit.assert_verifies(true);
}

/// Starts a gateway on `audit` with 1 KiB files, sends one request, then
/// replaces the log directory with a plain file, so the rotation that
/// the next records trigger cannot create the next file (ENOTDIR).
///
/// The fault is simulated this way because `chmod` does not stop writes
/// when the tests run as root, and mounting a small tmpfs to fill up needs
/// mount privileges a test run cannot assume. The write fails for real
/// either way, because the operating system rejects the file it needs.
async fn gateway_with_failing_log(
    upstream: &Upstream,
    provider: &Provider,
    audit: &AuditFiles,
    on_failure: &str,
) -> Gateway {
    let extra = format!("on_failure: {on_failure}\nrotate: {{ max_bytes: 1KiB }}");
    let config =
        config_for(upstream, &[provider]).route(OPEN_ROUTE).yaml() + &audit.section(&extra);
    let gateway = Gateway::start(&config).await;
    let first = gateway.get("/faults/echo").send().await;
    assert_eq!(first.status(), 200, "{}", first.text());

    let moved = audit.log_dir().with_extension("moved");
    std::fs::rename(audit.log_dir(), &moved).unwrap();
    std::fs::write(audit.log_dir(), b"not a directory").unwrap();
    gateway
}

#[tokio::test]
async fn failing_log_denies_before_upstream() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let audit = AuditFiles::new();
    let gateway = gateway_with_failing_log(&upstream, &provider, &audit, "deny").await;

    let mut failed = None;
    for _ in 0..20 {
        let response = gateway.get("/faults/echo").send().await;
        if response.status() != 200 {
            failed = Some(response);
            break;
        }
    }
    let failed = failed.expect("a request failed once the log could not rotate");
    assert_eq!(failed.status(), 503, "{}", failed.text());
    assert_eq!(failed.reason().as_deref(), Some("audit_unavailable"));
    assert!(failed.header("x-request-id").is_some());

    let reached = upstream.count().await;
    for attempt in 0..3 {
        let response = gateway.get("/faults/echo").send().await;
        assert_eq!(response.status(), 503, "attempt {attempt}");
        assert_eq!(
            response.reason().as_deref(),
            Some("audit_unavailable"),
            "attempt {attempt}"
        );
    }
    assert_eq!(
        upstream.count().await,
        reached,
        "upstream reached while the log failed"
    );

    let metrics = gateway.metrics().await;
    let failures = metrics.value(
        "portcullis_audit_append_failures_total",
        &[("on_failure", "deny")],
    );
    assert!(failures >= 4.0, "failures counted: {failures}");
    assert!(gateway.logs().contains("audit record not written"));
}

#[tokio::test]
async fn failing_log_serves_under_allow() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let audit = AuditFiles::new();
    let gateway = gateway_with_failing_log(&upstream, &provider, &audit, "allow").await;

    for attempt in 0..10 {
        let response = gateway.get("/faults/echo").send().await;
        assert_eq!(
            response.status(),
            200,
            "attempt {attempt}: {}",
            response.text()
        );
    }

    assert_eq!(upstream.count().await, 11);
    let metrics = gateway.metrics().await;
    let failures = metrics.value(
        "portcullis_audit_append_failures_total",
        &[("on_failure", "allow")],
    );
    assert!(failures >= 1.0, "failures counted: {failures}");
    assert!(gateway.logs().contains("audit record not written"));
}

/// Total requests of the crash test, across every task and gateway.
const CRASH_LOAD_REQUESTS: usize = 400;
/// Concurrent clients of the crash test.
const CRASH_LOAD_TASKS: usize = 6;
/// Times the gateway is killed with SIGKILL during the load.
const CRASH_KILLS: usize = 3;
/// Responses each gateway of the crash test sends before it is killed.
const CRASH_ANSWERS_PER_RUN: usize = 60;
/// Bound on the whole load, whatever happens.
const CRASH_LOAD_TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_gateway_keeps_every_answered_record() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let audit = AuditFiles::new();
    let config = config_for(&upstream, &[&provider]).route(OPEN_ROUTE).yaml()
        + &audit.section("checkpoint_records: 50");
    let mut gateway = Gateway::start(&config).await;

    let address = Arc::new(Mutex::new(Some(gateway.address)));
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + CRASH_LOAD_TIMEOUT;
    let tasks: Vec<_> = (0..CRASH_LOAD_TASKS)
        .map(|_| {
            let (address, answered, sent) = (address.clone(), answered.clone(), sent.clone());
            tokio::spawn(async move {
                load(address, answered, sent, deadline).await;
            })
        })
        .collect();

    for kill in 1..=CRASH_KILLS {
        // Each gateway answers a share of the load before it is killed,
        // with every client task in the middle of a request.
        let target = answered.lock().unwrap().len() + CRASH_ANSWERS_PER_RUN;
        while answered.lock().unwrap().len() < target {
            assert!(Instant::now() < deadline, "load stalled before kill {kill}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        *address.lock().unwrap() = None;
        drop(gateway); // SIGKILL
        gateway = Gateway::start(&config).await;
        *address.lock().unwrap() = Some(gateway.address);
    }
    for task in tasks {
        task.await.unwrap();
    }
    gateway.stop().await;
    // One more start recovers any torn tail of the last run; a clean stop
    // seals the log.
    let mut last = Gateway::start(&config).await;
    last.stop().await;

    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= CRASH_LOAD_REQUESTS / 2,
        "only {} answered",
        answered.len()
    );
    let recorded: HashSet<String> = audit
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "request")
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} answered requests without a record: {missing:?}",
        missing.len()
    );
    audit.assert_verifies(true);
}

/// Sends requests to whichever gateway is running until the shared count
/// reaches [`CRASH_LOAD_REQUESTS`] or `deadline` passes, and keeps the
/// request id of every answer.
async fn load(
    address: Arc<Mutex<Option<SocketAddr>>>,
    answered: Arc<Mutex<Vec<String>>>,
    sent: Arc<std::sync::atomic::AtomicUsize>,
    deadline: Instant,
) {
    while Instant::now() < deadline {
        let Some(target) = *address.lock().unwrap() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= CRASH_LOAD_REQUESTS {
            return;
        }
        let result = RequestBuilder::new(target, Method::GET, "/faults/echo")
            .try_send()
            .await;
        if let Ok(response) = result {
            assert_eq!(response.status(), 200, "{}", response.text());
            let id = response.header("x-request-id").expect("x-request-id");
            answered.lock().unwrap().push(id.to_string());
        }
    }
}

#[tokio::test]
async fn erased_subject_gets_new_pseudonym() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let audit = AuditFiles::new();
    let config = config_for(&upstream, &[&provider]).yaml() + &audit.section("");
    let mut gateway = Gateway::start(&config).await;
    let erased = "user-to-erase";
    let kept = "user-to-keep";
    let token = |subject: &str| provider.forge().subject(subject).sign();
    let pseudonym_of = |response: &common::Response| {
        let id = response.header("x-request-id").unwrap();
        audit.records_for(id)[0]["subject"].clone()
    };

    let before = gateway.get("/users").bearer(&token(erased)).send().await;
    let kept_before = gateway.get("/users").bearer(&token(kept)).send().await;
    let output = audit.erase("_default", Some(erased));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A running gateway checks a cached subject key at most once a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = gateway.get("/users").bearer(&token(erased)).send().await;
    let kept_after = gateway.get("/users").bearer(&token(kept)).send().await;
    gateway.stop().await;

    for response in [&before, &kept_before, &after, &kept_after] {
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        !printed.contains(erased),
        "erase printed the subject: {printed}"
    );
    assert_pseudonym(&pseudonym_of(&before), "before erasure");
    assert_ne!(
        pseudonym_of(&before),
        pseudonym_of(&after),
        "erased subject keeps its pseudonym"
    );
    assert_eq!(
        pseudonym_of(&kept_before),
        pseudonym_of(&kept_after),
        "other subject changed"
    );
    audit.assert_verifies(true);
}

#[tokio::test]
async fn invalid_audit_section_reported_by_check() {
    let upstream = Upstream::start();
    let audit = AuditFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad-key.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let section = format!(
        "\naudit:\n  directory: \"{}\"\n  signing_key: \"{}\"\n  durability: sometimes\n  on_failure: alow\n  rotate: {{ every: soon }}\n",
        audit.log_dir().display(),
        bad_key.display()
    );
    let path = dir.path().join("portcullis.yaml");
    common::write_command_config(&path, &(config_for(&upstream, &[]).yaml() + &section));

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();

    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    // (description, expected fragment)
    let expected = [
        ("durability word", "audit.durability: expected fsync or a mapping such as { interval: 1s }, found \"sometimes\""),
        ("on_failure typo", "audit.on_failure: expected one of deny, allow, found \"alow\"; did you mean \"allow\"?"),
        ("rotation age", "audit.rotate.every: expected a duration"),
        ("pseudonyms missing", "audit.pseudonyms: missing"),
        ("signing key", "audit.signing_key: cannot load the audit signing key"),
    ];
    for (description, fragment) in expected {
        assert!(errors.contains(fragment), "{description}: {errors}");
    }
    assert!(!errors.contains("c2VjcmV0"), "key bytes echoed: {errors}");
}
