//! Shared rate limits while Redis fails under load: the server is killed
//! (connections refused) or paused with SIGSTOP (connections hang). `local`
//! routes keep limiting in-process, `deny` routes return 503, no request
//! waits much longer than the store timeout, and limiting returns to Redis
//! when the server is back.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use tokio::sync::watch;

use common::*;

/// The store timeout in the configuration, in milliseconds.
const STORE_TIMEOUT_MS: u64 = 100;
/// What a request may take beyond the store timeout: the upstream, a fresh
/// TCP connection and a debug build on a busy machine.
const DURATION_MARGIN: Duration = Duration::from_millis(400);
/// Pause between two requests of one load client.
const LOAD_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGKILL, then a fresh empty server on the same port.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
}

/// One response of a load client.
#[derive(Debug, Clone)]
struct Sample {
    path: &'static str,
    status: u16,
    reason: Option<String>,
    retry_after: Option<String>,
    duration: Duration,
}

/// Sends GET `path` every [`LOAD_INTERVAL`] until `stop` changes, and
/// records every response with its duration.
fn start_load(
    address: std::net::SocketAddr,
    path: &'static str,
    token: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded even if the test never stops it.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !*stop.borrow() && Instant::now() < deadline {
            let started = Instant::now();
            let response = RequestBuilder::new(address, Method::GET, path)
                .bearer(&token)
                .send()
                .await;
            let sample = Sample {
                path,
                status: response.status(),
                reason: response.reason(),
                retry_after: response.header("retry-after").map(str::to_string),
                duration: started.elapsed(),
            };
            samples.lock().unwrap().push(sample);
            let _ = tokio::time::timeout(LOAD_INTERVAL, stop.changed()).await;
        }
    })
}

async fn gauge(gateway: &Gateway, name: &str) -> f64 {
    gateway.metrics().await.value(name, &[])
}

/// Sends `count` GETs one after another and returns the statuses, each
/// request also checked against the duration bound.
async fn timed_statuses(gateway: &Gateway, path: &str, token: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for index in 0..count {
        let started = Instant::now();
        let response = gateway.get(path).bearer(token).send().await;
        let elapsed = started.elapsed();
        assert!(
            elapsed <= max_duration(),
            "request {index} to {path} took {elapsed:?}, more than {:?}",
            max_duration()
        );
        statuses.push(response.status());
    }
    statuses
}

fn max_duration() -> Duration {
    Duration::from_millis(STORE_TIMEOUT_MS) + DURATION_MARGIN
}

fn expected(status: u16, n: usize, then: u16, m: usize) -> Vec<u16> {
    let mut statuses = vec![status; n];
    statuses.extend(std::iter::repeat_n(then, m));
    statuses
}

async fn limits_through_outage(outage: Outage) {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis)
        .timeout(&format!("{STORE_TIMEOUT_MS}ms"))
        .instances(2)
        .circuit("{ failures: 3, open_for: 200ms, max_open_for: 1s }");
    let prefix = store.key_prefix.clone();
    let config = config_for(&upstream, &[&provider])
        .route("id: local-route\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [ten-a-minute]\non_store_failure: local")
        .route("id: deny-route\nmatch: { path: /faults/slow, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [generous]\non_store_failure: deny");
    let yaml = with_store(
        &config.yaml(),
        &store,
        &[
            "ten-a-minute: { requests: 10, per: 1m, key: [subject] }",
            "generous: { requests: 1000, per: 1m, key: [subject] }",
        ],
    );
    let gateway = Gateway::start(&yaml).await;
    let token = |subject: &str| provider.forge().subject(subject).sign();

    // Redis is up: both routes count there.
    assert_eq!(
        timed_statuses(&gateway, "/faults/headers", &token("before"), 2).await,
        vec![200, 200]
    );
    assert_eq!(
        timed_statuses(&gateway, "/faults/slow?ms=0", &token("before"), 1).await,
        vec![200]
    );
    assert_eq!(
        redis.keys(&format!("{prefix}:gcra:*")).len(),
        2,
        "GCRA keys before the outage"
    );
    assert_eq!(gauge(&gateway, "portcullis_rate_limit_store_up").await, 1.0);
    assert_eq!(
        gauge(&gateway, "portcullis_rate_limit_store_circuit_open").await,
        0.0
    );

    let samples = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = watch::channel(false);
    let load = [
        start_load(
            gateway.address,
            "/faults/slow?ms=0",
            token("deny-load"),
            samples.clone(),
            stopped.clone(),
        ),
        start_load(
            gateway.address,
            "/faults/headers",
            token("local-load"),
            samples.clone(),
            stopped.clone(),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;

    match outage {
        Outage::Kill => redis.kill(),
        Outage::Pause => redis.pause(),
    }
    eventually("the circuit opens", Duration::from_secs(10), || async {
        gauge(&gateway, "portcullis_rate_limit_store_circuit_open").await == 1.0
    })
    .await;
    assert_eq!(gauge(&gateway, "portcullis_rate_limit_store_up").await, 0.0);

    // The local fallback allows 10 / 2 instances = 5 per minute.
    assert_eq!(
        timed_statuses(&gateway, "/faults/headers", &token("during"), 8).await,
        expected(200, 5, 429, 3),
        "{outage:?}: a local route during the outage"
    );
    let denied = gateway
        .get("/faults/slow?ms=0")
        .bearer(&token("during"))
        .send()
        .await;
    assert_eq!(
        denied.status(),
        503,
        "{outage:?}: a deny route: {}",
        denied.text()
    );
    assert_eq!(
        denied.reason().as_deref(),
        Some("rate_limit_store_unavailable")
    );
    let retry_after: u64 = denied
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "expected a numeric Retry-After, found {:?}",
                denied.header("retry-after")
            )
        });
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    match outage {
        Outage::Kill => redis.restart(),
        Outage::Pause => redis.resume(),
    }
    eventually("the circuit closes", Duration::from_secs(15), || async {
        let metrics = gateway.metrics().await;
        metrics.value("portcullis_rate_limit_store_circuit_open", &[]) == 0.0
            && metrics.value("portcullis_rate_limit_store_up", &[]) == 1.0
    })
    .await;

    // Limiting is back on Redis: the whole limit of 10, not the local 5,
    // and no request after recovery falls back.
    let errors_at_recovery = store_errors(&gateway).await;
    let after = timed_statuses(&gateway, "/faults/headers", &token("after"), 12).await;
    assert_eq!(
        store_errors(&gateway).await,
        errors_at_recovery,
        "{outage:?}: store errors after the circuit closed (statuses {after:?})"
    );
    assert_eq!(
        after,
        expected(200, 10, 429, 2),
        "{outage:?}: a local route after recovery"
    );
    assert_eq!(
        timed_statuses(&gateway, "/faults/slow?ms=0", &token("after"), 1).await,
        vec![200]
    );
    let keys_after = redis.keys(&format!("{prefix}:gcra:*"));
    assert!(
        keys_after.len() >= 2,
        "{outage:?}: GCRA keys after recovery: {keys_after:?}"
    );
    eventually(
        "the deny load is served again",
        Duration::from_secs(5),
        || async {
            let samples = samples.lock().unwrap();
            let last_deny = samples.iter().rev().find(|s| s.path == "/faults/slow?ms=0");
            last_deny.is_some_and(|s| s.status == 200)
        },
    )
    .await;
    stop.send(true).expect("the load clients listen");
    for client in load {
        client.await.expect("a load client ends");
    }

    let samples = samples.lock().unwrap().clone();
    let slowest = samples.iter().map(|s| s.duration).max().unwrap_or_default();
    eprintln!(
        "{outage:?}: {} load requests, slowest {slowest:?}",
        samples.len()
    );
    for sample in &samples {
        assert!(
            sample.duration <= max_duration(),
            "{outage:?}: a load request took {:?}, more than {:?}: {sample:?}",
            sample.duration,
            max_duration()
        );
        let allowed: &[u16] = match sample.path {
            "/faults/headers" => &[200, 429],
            _ => &[200, 503],
        };
        assert!(
            allowed.contains(&sample.status),
            "{outage:?}: unexpected {sample:?}"
        );
        if sample.status == 503 {
            assert_eq!(
                sample.reason.as_deref(),
                Some("rate_limit_store_unavailable"),
                "{sample:?}"
            );
            assert!(
                sample.retry_after.is_some(),
                "503 without Retry-After: {sample:?}"
            );
        }
    }
    let denied_load = samples.iter().filter(|s| s.status == 503).count();
    assert!(denied_load >= 1, "{outage:?}: the deny load saw no 503");

    let metrics = gateway.metrics().await;
    let kind = match outage {
        Outage::Kill => "connection",
        Outage::Pause => "timeout",
    };
    let errors = metrics.value(
        "portcullis_rate_limit_store_errors_total",
        &[("kind", kind)],
    );
    assert!(
        errors >= 3.0,
        "{outage:?}: {errors} store errors of kind {kind}"
    );
    let logs = gateway.logs();
    assert!(
        logs.contains("rate limit store unavailable"),
        "{outage:?}: no warning in the logs"
    );
    assert!(
        logs.contains("rate limit store recovered"),
        "{outage:?}: no recovery in the logs"
    );
}

#[tokio::test]
async fn killed_store_falls_back_then_recovers() {
    limits_through_outage(Outage::Kill).await;
}

#[tokio::test]
async fn paused_store_falls_back_then_recovers() {
    limits_through_outage(Outage::Pause).await;
}

/// Sums `portcullis_rate_limit_store_errors_total` over every kind.
async fn store_errors(gateway: &Gateway) -> f64 {
    gateway
        .metrics()
        .await
        .value("portcullis_rate_limit_store_errors_total", &[])
}

#[tokio::test]
async fn circuit_opens_after_failures_and_backs_off() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis)
        .timeout(&format!("{STORE_TIMEOUT_MS}ms"))
        .circuit("{ failures: 3, open_for: 1s, max_open_for: 4s }");
    let config = config_for(&upstream, &[&provider]).rate_limit(1000, "1m");
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &[])).await;
    let token = provider.forge().subject("circuit-subject").sign();
    let send = || async {
        let response = gateway.get("/users").bearer(&token).send().await;
        assert_eq!(
            response.status(),
            200,
            "a local fallback request: {}",
            response.text()
        );
    };

    send().await;
    assert_eq!(
        store_errors(&gateway).await,
        0.0,
        "errors while Redis is up"
    );
    redis.kill();

    // (failed calls so far, whether the circuit is open)
    for (errors, open) in [(1.0, 0.0), (2.0, 0.0), (3.0, 1.0)] {
        send().await;
        assert_eq!(store_errors(&gateway).await, errors, "store errors");
        assert_eq!(
            gauge(&gateway, "portcullis_rate_limit_store_circuit_open").await,
            open,
            "circuit after {errors} failed calls"
        );
    }
    let opened_at = Instant::now();
    for _ in 0..3 {
        send().await;
    }
    assert_eq!(
        store_errors(&gateway).await,
        3.0,
        "calls while the circuit is open"
    );
    assert!(
        opened_at.elapsed() < Duration::from_millis(900),
        "the requests while open took too long to tell anything: {:?}",
        opened_at.elapsed()
    );

    // After open_for (1s) one probe runs, fails, and doubles the wait to 2s.
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(opened_at.elapsed())).await;
    send().await;
    let probed_at = Instant::now();
    assert_eq!(store_errors(&gateway).await, 4.0, "the first probe");
    send().await;
    assert_eq!(
        store_errors(&gateway).await,
        4.0,
        "right after the failed probe"
    );
    tokio::time::sleep(Duration::from_millis(1200).saturating_sub(probed_at.elapsed())).await;
    send().await;
    assert_eq!(
        store_errors(&gateway).await,
        4.0,
        "1.2s after a failed probe, when the wait has doubled to 2s"
    );
    assert_eq!(
        gauge(&gateway, "portcullis_rate_limit_store_circuit_open").await,
        1.0
    );

    redis.restart();
    eventually(
        "a probe closes the circuit",
        Duration::from_secs(15),
        || async {
            send().await;
            gauge(&gateway, "portcullis_rate_limit_store_circuit_open").await == 0.0
        },
    )
    .await;
    assert_eq!(gauge(&gateway, "portcullis_rate_limit_store_up").await, 1.0);
    assert!(
        !redis
            .keys(&format!("{}:gcra:*", store.key_prefix))
            .is_empty(),
        "no GCRA key in the restarted Redis"
    );
    let logs = gateway.logs();
    assert_eq!(
        logs.matches("rate limit store unavailable").count(),
        1,
        "one warning for one outage"
    );
    assert!(
        logs.contains("rate limit store recovered"),
        "no recovery in the logs"
    );
}

#[tokio::test]
async fn gateway_starts_while_store_is_down() {
    let mut redis = RedisServer::start();
    redis.kill();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis).timeout(&format!("{STORE_TIMEOUT_MS}ms"));
    let prefix = store.key_prefix.clone();
    let config = config_for(&upstream, &[&provider])
        .rate_limit(3, "1m")
        .route("id: deny-route\nmatch: { path: /faults/slow, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [per-subject]\non_store_failure: deny");
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &[])).await;
    let token = provider.forge().subject("early-subject").sign();

    let denied = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
    assert_eq!(
        denied.status(),
        503,
        "a deny route before Redis runs: {}",
        denied.text()
    );
    assert_eq!(
        denied.reason().as_deref(),
        Some("rate_limit_store_unavailable")
    );
    let local = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(
        local.status(),
        200,
        "a local route before Redis runs: {}",
        local.text()
    );
    assert_eq!(gauge(&gateway, "portcullis_rate_limit_store_up").await, 0.0);

    redis.restart();
    eventually(
        "the deny route is served",
        Duration::from_secs(20),
        || async {
            let response = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
            response.status() == 200
        },
    )
    .await;
    assert_eq!(gauge(&gateway, "portcullis_rate_limit_store_up").await, 1.0);
    let fresh = provider.forge().subject("late-subject").sign();
    assert_eq!(
        timed_statuses(&gateway, "/faults/slow?ms=0", &fresh, 4).await,
        expected(200, 3, 429, 1),
        "the shared limit once Redis runs"
    );
    assert_eq!(
        redis.keys(&format!("{prefix}:gcra:*")).len(),
        2,
        "GCRA keys of both subjects"
    );
}
