//! End-to-end proxy behaviour: upstream faults, response header policy,
//! body limits, HTTP/2 and graceful shutdown, with the gateway binary in
//! front of the real test upstream.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    config_for, eventually, Gateway, Provider, ProviderOptions, Response, UnusedPort, Upstream,
};
use http::{Method, Version};
use serde_json::json;

/// Asserts a problem details rejection: status and reason.
#[track_caller]
fn assert_rejected(response: &Response, status: u16, reason: &str, case: &str) {
    assert_eq!(
        response.status(),
        status,
        "{case}: status; body {}",
        response.text()
    );
    assert_eq!(response.reason().as_deref(), Some(reason), "{case}: reason");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{case}: content type"
    );
}

#[tokio::test]
async fn closed_upstream_port_gives_502() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let closed = UnusedPort::new();
    let config =
        config_for(&upstream, &[&provider]).upstream_url(&format!("http://{}", closed.address()));
    let gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let response = gateway.get("/users").bearer(&token).send().await;

    assert_rejected(&response, 502, "upstream_unavailable", "connection refused");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.value(
            "portcullis_upstream_errors_total",
            &[("upstream", "users"), ("kind", "connect")]
        ),
        1.0
    );
    assert_eq!(
        metrics.value(
            "portcullis_denials_total",
            &[("reason", "upstream_unavailable")]
        ),
        1.0
    );
}

#[tokio::test]
async fn upstream_dropping_connection_gives_502() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;

    // (description, path)
    let cases = [
        ("socket closed with a FIN and no response", "/faults/reset"),
        ("socket closed with a TCP RST", "/faults/reset?rst=1"),
    ];

    for (index, (description, path)) in cases.into_iter().enumerate() {
        let response = gateway.get(path).bearer(&token).send().await;
        assert_rejected(&response, 502, "upstream_unavailable", description);
        assert_eq!(
            upstream.count().await,
            index as u64 + 1,
            "{description}: the upstream saw the request once"
        );
    }

    let response = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(
        response.status(),
        200,
        "the next request after the faults: {}",
        response.text()
    );
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider]).upstream_response_timeout("300ms");
    let gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let started = Instant::now();
    let response = gateway
        .get("/faults/slow?ms=5000")
        .bearer(&token)
        .send()
        .await;
    let elapsed = started.elapsed();

    assert_rejected(
        &response,
        504,
        "upstream_timeout",
        "5s response, 300ms timeout",
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "the 504 took {elapsed:?}, expected about 300ms"
    );
    assert_eq!(upstream.count().await, 1);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.value("portcullis_upstream_errors_total", &[("kind", "timeout")]),
        1.0
    );

    let fast = gateway
        .get("/faults/slow?ms=10")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(
        fast.status(),
        200,
        "a response within the timeout: {}",
        fast.text()
    );
    assert_eq!(fast.json(), json!({ "slept_ms": 10 }));
}

#[tokio::test]
async fn fingerprint_headers_replaced_by_policy() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;

    for path in ["/faults/headers", "/users"] {
        let response = gateway.get(path).bearer(&token).send().await;
        assert_eq!(response.status(), 200, "{path}: {}", response.text());
        assert_eq!(response.header("server"), None, "{path}: Server");
        assert_eq!(
            response.header("x-powered-by"),
            None,
            "{path}: X-Powered-By"
        );
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}: X-Content-Type-Options"
        );
        assert_eq!(
            response.header("strict-transport-security"),
            None,
            "{path}: HSTS over plain HTTP"
        );
    }

    let rejected = gateway.get("/users").send().await;
    assert_eq!(rejected.status(), 401);
    assert_eq!(
        rejected.header("x-content-type-options"),
        Some("nosniff"),
        "the gateway's own error"
    );
}

#[tokio::test]
async fn sensitive_route_responses_not_stored() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let writer = provider.token("writer", "read:users write:users").await;

    let created = gateway
        .request(Method::POST, "/users")
        .bearer(&writer)
        .json(&json!({ "name": "Dana Reyes", "email": "dana.reyes@example.com" }))
        .send()
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    assert_eq!(created.json()["id"], 4);
    assert_eq!(
        created.header("cache-control"),
        Some("no-store"),
        "create-user is sensitive"
    );

    let deleted = gateway
        .request(Method::DELETE, "/users/4")
        .bearer(&writer)
        .send()
        .await;
    assert_eq!(deleted.status(), 204, "{}", deleted.text());
    assert_eq!(
        deleted.header("cache-control"),
        Some("no-store"),
        "delete-user is sensitive"
    );

    let listed = gateway.get("/users").bearer(&writer).send().await;
    assert_eq!(listed.status(), 200);
    assert_eq!(
        listed.header("cache-control"),
        None,
        "list-users is not sensitive"
    );
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let writer = provider.token("writer", "read:users write:users").await;
    let chunks = |count: usize, size: usize| vec![Bytes::from(vec![b'a'; size]); count];

    // The declared length alone decides: no body byte is ever sent.
    let declared = gateway
        .request(Method::POST, "/users")
        .bearer(&writer)
        .header("content-type", "application/json")
        .declared_length_only(16 * 1024 + 1)
        .send()
        .await;
    assert_rejected(
        &declared,
        413,
        "body_too_large",
        "Content-Length one byte over 16 KiB",
    );
    assert_eq!(
        upstream.count().await,
        0,
        "a declared oversized body reached the upstream"
    );

    // (description, path, chunks)
    let chunked_cases = [
        (
            "20 KiB in 4 KiB chunks to create-user (16 KiB)",
            "/users",
            chunks(5, 4096),
        ),
        (
            "2 KiB in 256 byte chunks to echo (1 KiB)",
            "/faults/echo",
            chunks(8, 256),
        ),
        (
            "one 1025 byte chunk to echo (1 KiB)",
            "/faults/echo",
            chunks(1, 1025),
        ),
    ];
    for (description, path, body) in chunked_cases {
        let response = gateway
            .request(Method::POST, path)
            .bearer(&writer)
            .header("content-type", "application/octet-stream")
            .chunked_body(body)
            .send()
            .await;
        // The head may reach the upstream before the limit is crossed, so
        // only the response is checked here.
        assert_rejected(&response, 413, "body_too_large", description);
    }

    let within = gateway
        .request(Method::POST, "/faults/echo")
        .bearer(&writer)
        .chunked_body(chunks(4, 256))
        .send()
        .await;
    assert_eq!(
        within.status(),
        200,
        "exactly 1 KiB chunked: {}",
        within.text()
    );
    assert_eq!(within.json()["body_length"], 1024);
    let within = gateway
        .request(Method::POST, "/faults/echo")
        .bearer(&writer)
        .body(vec![b'a'; 1024])
        .send()
        .await;
    assert_eq!(
        within.status(),
        200,
        "exactly 1 KiB with Content-Length: {}",
        within.text()
    );
    assert_eq!(within.json()["body_length"], 1024);
}

#[tokio::test]
async fn h2c_prior_knowledge_served() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let response = gateway
        .get("/users")
        .bearer(&token)
        .header("x-portcullis-subject", "admin")
        .http2()
        .send()
        .await;

    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(response.json().as_array().map(Vec::len), Some(3));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let requests = upstream.requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].raw_values("x-portcullis-subject"), ["reader"]);
    assert_eq!(
        requests[0].raw_values("host"),
        [gateway.address.to_string()],
        "the :authority becomes Host"
    );

    let rejected = gateway.get("/users").http2().send().await;
    assert_eq!(rejected.version, Version::HTTP_2);
    assert_rejected(&rejected, 401, "token_missing", "HTTP/2 without a token");
}

#[tokio::test]
async fn inflight_request_finishes_after_sigterm() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider]).shutdown_grace("10s");
    let mut gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let slow = tokio::spawn(gateway.get("/faults/slow?ms=1500").bearer(&token).send());
    eventually(
        "the slow request reaches the upstream",
        Duration::from_secs(10),
        || async { upstream.count().await == 1 },
    )
    .await;

    let signalled = Instant::now();
    gateway.terminate();
    let response = slow.await.expect("the request task completes");
    assert_eq!(
        response.status(),
        200,
        "the in-flight request: {}",
        response.text()
    );
    assert_eq!(response.json(), json!({ "slept_ms": 1500 }));

    let status = gateway
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("the gateway exits within the 10s grace");
    assert!(status.success(), "the gateway exited with {status}");
    let elapsed = signalled.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "the exit took {elapsed:?} after SIGTERM"
    );
    let logs = gateway.logs();
    assert!(
        logs.contains("shutting down"),
        "no shutdown line in the logs"
    );
    assert!(
        !logs.contains("grace period over"),
        "connections were cut at the end of the grace period"
    );
}

#[tokio::test]
async fn in_flight_gauge_counts_slow_request() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway =
        std::sync::Arc::new(Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await);
    let token = provider.token("reader", "read:users").await;

    let slow = {
        let (gateway, token) = (gateway.clone(), token.clone());
        tokio::spawn(async move {
            gateway
                .get("/faults/slow?ms=1500")
                .bearer(&token)
                .send()
                .await
                .status()
        })
    };
    eventually(
        "the slow request is counted in flight",
        std::time::Duration::from_secs(5),
        || async {
            gateway
                .metrics()
                .await
                .value("portcullis_requests_in_flight", &[])
                == 1.0
        },
    )
    .await;

    assert_eq!(slow.await.expect("the request task panicked"), 200);
    let after = gateway
        .metrics()
        .await
        .value("portcullis_requests_in_flight", &[]);
    assert_eq!(after, 0.0, "the gauge did not return to zero");
}

#[tokio::test]
async fn http10_upstream_does_not_downgrade_the_client() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    // A minimal HTTP/1.0 server: the Express fixture speaks HTTP/1.1 only.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let address = listener.local_addr().expect("the bound address");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for _ in 0..4 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let reply =
                b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]";
            let _ = socket.write_all(reply).await;
        }
    });
    let config = config_for(&upstream, &[&provider]).upstream_url(&format!("http://{address}"));
    let gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;

    let response = gateway.get("/users").bearer(&token).send().await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.version, Version::HTTP_11);
    assert_eq!(response.text(), "[]");
}

#[tokio::test]
async fn card_numbers_in_urls_are_refused_before_any_log() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let token = provider.token("reader", "read:users").await;
    // Test card numbers from the card schemes' public test ranges.
    let cases = [
        ("bare in the query", "/users?card=4111111111111111"),
        (
            "grouped with dashes in the path",
            "/users/4111-1111-1111-1111",
        ),
        (
            "spaces encoded in the query",
            "/users?pan=5555%205555%205555%204444",
        ),
        ("plus signs as spaces", "/users?pan=3782+822463+10005"),
    ];

    for (description, path) in cases {
        let response = gateway.get(path).bearer(&token).send().await;
        assert_eq!(response.status(), 400, "{description}");
        assert_eq!(
            response.reason().as_deref(),
            Some("pan_in_url"),
            "{description}"
        );
    }
    let not_cards = [
        ("a timestamp", "/users?since=20261204123000"),
        ("a Luhn-invalid number", "/users?order=4111111111111112"),
    ];
    for (description, path) in not_cards {
        let response = gateway.get(path).bearer(&token).send().await;
        assert_eq!(response.status(), 200, "{description}");
    }

    assert_eq!(upstream.count().await, 2, "only the two clean requests");
    let logs = gateway.logs();
    let planted = [
        "4111111111111111",
        "4111-1111-1111-1111",
        "5555%205555%205555%204444",
        "5555 5555 5555 4444",
        "3782+822463+10005",
    ];
    for number in planted {
        assert!(!logs.contains(number), "{number} reached the logs");
    }
}

#[tokio::test]
async fn card_check_in_urls_can_be_turned_off() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = config_for(&upstream, &[&provider]).yaml().replacen(
        "server:\n",
        "server:\n  reject_pan_in_url: false\n",
        1,
    );
    assert!(yaml.contains("reject_pan_in_url: false"), "{yaml}");
    let gateway = Gateway::start(&yaml).await;
    let token = provider.token("reader", "read:users").await;

    let response = gateway
        .get("/users?order=4111111111111111")
        .bearer(&token)
        .send()
        .await;

    assert_eq!(response.status(), 200);
}
