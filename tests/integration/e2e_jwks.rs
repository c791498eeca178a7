//! The issuer key cache against a real provider: one fetch in flight for
//! an unknown `kid` however many requests wait, at most one per cooldown,
//! and keys that stop being used once they are stale beyond the bound.

use crate::common;

use std::time::Duration;

use common::{
    config_for, eventually, Gateway, KeyFiles, Provider, ProviderOptions, TokenForge, Upstream,
};

async fn fetches(gateway: &Gateway, issuer: &str) -> f64 {
    let metrics = gateway.metrics().await;
    let success = metrics.value(
        "portcullis_jwks_fetches_total",
        &[("issuer", issuer), ("result", "success")],
    );
    let failure = metrics.value(
        "portcullis_jwks_fetches_total",
        &[("issuer", issuer), ("result", "failure")],
    );
    success + failure
}

#[tokio::test]
async fn unknown_kid_refetch_single_flight() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
    let issuer = provider.issuer().to_string();
    let startup_fetches = fetches(&gateway, &issuer).await;
    assert_eq!(startup_fetches, 1.0, "one fetch at startup");

    let strangers = KeyFiles::generate();
    let tokens: Vec<String> = (0..24)
        .map(|i| {
            TokenForge::new(strangers.rs256(), &issuer, "users-api")
                .subject(&format!("user-{i}"))
                .sign()
        })
        .collect();
    let wave = tokens
        .iter()
        .map(|token| gateway.get("/users").bearer(token).send());
    let responses = futures_util::future::join_all(wave).await;

    for response in &responses {
        assert_eq!(response.status(), 401, "{}", response.text());
        assert_eq!(response.json()["reason"], "token_key_not_found");
    }
    assert_eq!(
        fetches(&gateway, &issuer).await,
        startup_fetches + 1.0,
        "24 concurrent unknown kids caused more than one fetch"
    );

    let second_wave = tokens
        .iter()
        .map(|token| gateway.get("/users").bearer(token).send());
    futures_util::future::join_all(second_wave).await;
    assert_eq!(
        fetches(&gateway, &issuer).await,
        startup_fetches + 1.0,
        "a refetch ran within the cooldown"
    );
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test]
async fn stale_keys_fail_closed() {
    let upstream = Upstream::start();
    let mut provider = Provider::start(ProviderOptions::default());
    let bounded =
        "discovery: true\n      jwks_cache: { min_ttl: 1s, max_ttl: 1s, max_stale: 2s }\n";
    let yaml = config_for(&upstream, &[&provider])
        .yaml()
        .replacen("discovery: true\n", bounded, 1);
    let gateway = Gateway::start(&yaml).await;
    let token = provider.forge().subject("reader").sign();
    let response = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(response.status(), 200, "{}", response.text());

    provider.stop();

    // Fresh for 1s, then usable for 2s more while refreshes fail; after
    // that the issuer fails closed.
    eventually(
        "the stale keys are dropped",
        Duration::from_secs(15),
        || async { gateway.get("/users").bearer(&token).send().await.status() == 503 },
    )
    .await;
    let response = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(response.json()["reason"], "issuer_keys_unavailable");
    assert_eq!(gateway.readyz().await.status(), 503);
}
