//! Revocation across a fleet: two gateway processes share one real Redis
//! server, tokens come from the real OpenID Connect provider, and
//! `portcullis token revoke` revokes them. Every instance must refuse a
//! revoked token within a second, even one it verified and cached before,
//! and an instance started later must know earlier revocations.

use crate::common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    config_for, unique_key_prefix, with_store, Gateway, Provider, ProviderOptions, RedisServer,
    StoreConfig, Upstream,
};

/// How soon every instance must refuse a revoked token.
const PROPAGATION: Duration = Duration::from_secs(1);

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWS payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn revoke(config_yaml: &str, args: &[&str]) {
    let output = run_revoke(config_yaml, args);
    assert!(
        output.status.success(),
        "portcullis token revoke {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn run_revoke(config_yaml: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let path = dir.path().join("cli.yaml");
    common::write_command_config(&path, config_yaml);
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["token", "revoke", "-c"])
        .arg(&path)
        .args(args)
        .output()
        .expect("running portcullis token revoke")
}

struct Fleet {
    upstream: Upstream,
    provider: Provider,
    redis: RedisServer,
    yaml: String,
}

impl Fleet {
    fn start() -> Fleet {
        let upstream = Upstream::start();
        let provider = Provider::start(ProviderOptions::default());
        let redis = RedisServer::shared();
        let store = StoreConfig::server(&redis).key_prefix(&unique_key_prefix());
        let yaml = with_store(&config_for(&upstream, &[&provider]).yaml(), &store, &[]);
        Fleet {
            upstream,
            provider,
            redis,
            yaml,
        }
    }

    async fn status(gateway: &Gateway, token: &str) -> (u16, Option<String>) {
        let response = gateway.get("/users").bearer(token).send().await;
        (response.status(), response.reason())
    }

    /// Waits until `gateway` refuses `token` as revoked; returns how long
    /// it took.
    async fn until_refused(gateway: &Gateway, token: &str, started: Instant) -> Duration {
        loop {
            let (status, reason) = Self::status(gateway, token).await;
            if status == 401 {
                assert_eq!(reason.as_deref(), Some("token_revoked"));
                return started.elapsed();
            }
            assert_eq!(status, 200, "before the revocation arrives");
            assert!(
                started.elapsed() < PROPAGATION * 3,
                "the revocation never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn revoked_token_is_refused_by_every_instance_within_a_second() {
    let fleet = Fleet::start();
    let first = Gateway::start(&fleet.yaml).await;
    let second = Gateway::start(&fleet.yaml).await;
    let token = fleet.provider.token("reader", "read:users").await;
    let other = fleet.provider.token("reader", "read:users").await;
    for gateway in [&first, &second] {
        assert_eq!(Fleet::status(gateway, &token).await.0, 200, "cached first");
    }

    let claims = claims(&token);
    let started = Instant::now();
    revoke(
        &fleet.yaml,
        &[
            "--issuer",
            fleet.provider.issuer(),
            "--jti",
            claims["jti"].as_str().expect("jti"),
            "--expires-at",
            &claims["exp"].to_string(),
        ],
    );
    let on_first = Fleet::until_refused(&first, &token, started).await;
    let on_second = Fleet::until_refused(&second, &token, started).await;

    eprintln!("revocation reached the instances in {on_first:?} and {on_second:?}");
    assert!(on_first.max(on_second) <= PROPAGATION);
    assert_eq!(
        Fleet::status(&second, &other).await.0,
        200,
        "another token of the same client still works"
    );
    let late = Gateway::start(&fleet.yaml).await;
    assert_eq!(
        Fleet::status(&late, &token).await,
        (401, Some("token_revoked".into())),
        "an instance started later knows the revocation"
    );
    let stored = fleet.redis.keys("*:revoked:*");
    assert!(
        stored
            .iter()
            .all(|key| !key.contains(claims["jti"].as_str().unwrap())),
        "the jti is stored in clear: {stored:?}"
    );
    let _ = &fleet.upstream;
}

#[tokio::test]
async fn revoked_client_refuses_only_tokens_issued_before() {
    let fleet = Fleet::start();
    let gateway = Gateway::start(&fleet.yaml).await;
    let before = fleet.provider.token("reader", "read:users").await;
    let writer = fleet.provider.token("writer", "read:users").await;

    revoke(
        &fleet.yaml,
        &["--issuer", fleet.provider.issuer(), "--client", "reader"],
    );
    Fleet::until_refused(&gateway, &before, Instant::now()).await;
    // Tokens issued in the second of the revocation are refused too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = fleet.provider.token("reader", "read:users").await;

    assert_eq!(Fleet::status(&gateway, &after).await.0, 200);
    assert_eq!(Fleet::status(&gateway, &writer).await.0, 200);
}

#[tokio::test]
async fn revocations_that_match_nothing_are_refused() {
    let fleet = Fleet::start();
    let issuer = fleet.provider.issuer();
    let now = common::unix_now();
    let cases = [
        (
            "an issuer the configuration does not trust",
            vec![
                "--issuer".to_string(),
                format!("{issuer}/"),
                "--client".into(),
                "reader".into(),
            ],
        ),
        (
            "an expiry in the past",
            vec![
                "--issuer".into(),
                issuer.to_string(),
                "--jti".into(),
                "j1".into(),
                "--expires-at".into(),
                (now - 10).to_string(),
            ],
        ),
        (
            "an expiry centuries away",
            vec![
                "--issuer".into(),
                issuer.to_string(),
                "--jti".into(),
                "j1".into(),
                "--expires-at".into(),
                "99999999999999".into(),
            ],
        ),
    ];

    for (description, args) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run_revoke(&fleet.yaml, &args);
        assert!(!output.status.success(), "{description} was accepted");
    }
}
