//! Hot reload: a valid configuration takes effect on SIGHUP or on a file
//! change without a restart and without failing requests; an invalid one is
//! rejected with its problems logged while the last good one keeps serving.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{config_for, eventually, Gateway, Provider, ProviderOptions, Upstream};

const LIST_NEEDS_READ: &str = "    match: { path: /users, methods: [GET] }\n    upstream: users\n    require: { scopes: [read:users] }";
const LIST_NEEDS_WRITE: &str = "    match: { path: /users, methods: [GET] }\n    upstream: users\n    require: { scopes: [write:users] }";

fn metric(metrics: &common::Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics.value(name, labels)
}

#[tokio::test]
async fn sighup_applies_valid_config() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let original = config_for(&upstream, &[&provider]).yaml();
    let gateway = Gateway::start(&original).await;
    let reader = provider.token("reader", "read:users").await;
    assert_eq!(
        gateway.get("/users").bearer(&reader).send().await.status(),
        200
    );

    gateway.rewrite_config(&original.replacen(LIST_NEEDS_READ, LIST_NEEDS_WRITE, 1));
    gateway.hangup();

    eventually(
        "the new scope requirement applies",
        Duration::from_secs(10),
        || async { gateway.get("/users").bearer(&reader).send().await.status() == 403 },
    )
    .await;
    let metrics = gateway.metrics().await;
    assert_eq!(metric(&metrics, "portcullis_config_generation", &[]), 2.0);
    assert_eq!(
        metric(&metrics, "portcullis_config_last_reload_success", &[]),
        1.0
    );
    assert!(gateway.logs().contains("configuration reloaded"));
}

#[tokio::test]
async fn file_change_reloads_without_signal() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let original = config_for(&upstream, &[&provider]).yaml();
    let gateway = Gateway::start(&original).await;
    let reader = provider.token("reader", "read:users").await;

    gateway.rewrite_config(&original.replacen(LIST_NEEDS_READ, LIST_NEEDS_WRITE, 1));

    eventually(
        "the file change is picked up",
        Duration::from_secs(10),
        || async { gateway.get("/users").bearer(&reader).send().await.status() == 403 },
    )
    .await;
}

#[tokio::test]
async fn invalid_config_keeps_last_good() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let original = config_for(&upstream, &[&provider]).yaml();
    let gateway = Gateway::start(&original).await;
    let reader = provider.token("reader", "read:users").await;

    gateway.rewrite_config(&original.replacen("upstream: users", "upstream: userz", 1));
    gateway.hangup();

    eventually(
        "the rejected reload is counted",
        Duration::from_secs(10),
        || async {
            let metrics = gateway.metrics().await;
            metric(
                &metrics,
                "portcullis_config_reloads_total",
                &[("result", "failure")],
            ) >= 1.0
        },
    )
    .await;
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric(&metrics, "portcullis_config_last_reload_success", &[]),
        0.0
    );
    assert_eq!(metric(&metrics, "portcullis_config_generation", &[]), 1.0);
    let logs = gateway.logs();
    assert!(logs.contains("configuration reload rejected"), "{logs}");
    assert!(
        logs.contains("no upstream named \\\"userz\\\""),
        "the problem itself was not logged: {logs}"
    );
    assert_eq!(
        gateway.get("/users").bearer(&reader).send().await.status(),
        200,
        "the last good configuration stopped serving"
    );
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let original = config_for(&upstream, &[&provider])
        .rate_limit(1_000_000, "1s")
        .yaml();
    let changed = original.replacen("max_body_bytes: 16KiB", "max_body_bytes: 32KiB", 1);
    let broken = original.replacen("methods: [GET] }", "methods: [FETCH] }", 1);
    let gateway = Arc::new(Gateway::start(&original).await);
    let reader = provider.token("reader", "read:users").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gateway, reader, stop, served, failed) = (
            gateway.clone(),
            reader.clone(),
            stop.clone(),
            served.clone(),
            failed.clone(),
        );
        clients.push(tokio::spawn(async move {
            // Bounded: stops when the reloads are done, or after 2000 requests.
            for _ in 0..2000 {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                match gateway.get("/users").bearer(&reader).try_send().await {
                    Ok(response) if response.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    for round in 0..12 {
        let next = match round % 3 {
            0 => &changed,
            1 => &broken,
            _ => &original,
        };
        gateway.rewrite_config(next);
        gateway.hangup();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.expect("a load task panicked");
    }

    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
    assert!(
        served.load(Ordering::Relaxed) > 100,
        "too little load to mean anything"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metric(
            &metrics,
            "portcullis_config_reloads_total",
            &[("result", "failure")]
        ) >= 4.0
    );
    assert!(
        metric(
            &metrics,
            "portcullis_config_reloads_total",
            &[("result", "success")]
        ) >= 8.0
    );
}
