//! Measures the per-request cost of JWT verification: `parse`, `verify` and
//! `validate` together, and `parse` alone, for the common algorithms.
//!
//! Run with `cargo run --release --example verify_cost`. Each measurement runs
//! for about one second after a short warm-up, on one thread.

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis::authn::{
    jwk::{Algorithm, KeySet, VerifyingKey},
    jwt,
    jwt_sign::SigningKey,
};
use serde_json::json;

const RSA_PEM: &str = include_str!("../tests/data/keys/rsa2048-pkcs8.pem");
const NOW: i64 = 1_750_000_000;
const RUN_TIME: Duration = Duration::from_secs(1);

fn main() {
    let cases = [
        (
            "RS256, RSA-2048",
            SigningKey::from_pkcs8_pem(RSA_PEM).unwrap(),
            Algorithm::Rs256,
        ),
        (
            "PS256, RSA-2048",
            SigningKey::from_pkcs8_pem(RSA_PEM).unwrap(),
            Algorithm::Ps256,
        ),
        (
            "ES256, P-256",
            SigningKey::generate(Algorithm::Es256).unwrap(),
            Algorithm::Es256,
        ),
        (
            "ES384, P-384",
            SigningKey::generate(Algorithm::Es384).unwrap(),
            Algorithm::Es384,
        ),
        (
            "EdDSA, Ed25519",
            SigningKey::generate(Algorithm::EdDsa).unwrap(),
            Algorithm::EdDsa,
        ),
        (
            "HS256",
            SigningKey::hmac(&[7; 32], Algorithm::Hs256).unwrap(),
            Algorithm::Hs256,
        ),
    ];

    println!(
        "{:<18} {:>16} {:>14} {:>10}",
        "algorithm", "full verify µs", "parse only µs", "token B"
    );
    for (label, signer, alg) in cases {
        let keys = key_set(&signer, alg);
        let token = typical_token(&signer, alg);
        let rules = jwt::ClaimRules {
            issuer: "https://issuer.example/realms/main".into(),
            audiences: vec!["orders-api".into()],
            leeway: Duration::from_secs(30),
            required_typ: Some(vec!["at+jwt".into()]),
            require_exp: true,
            max_iat_age: None,
        };

        let full = micros_per_call(|| {
            let parsed = jwt::parse(black_box(&token), 8192).unwrap();
            let claims = parsed.verify(&keys).unwrap();
            jwt::validate(parsed.header(), &claims, &rules, NOW as f64).unwrap();
        });
        let parse_only = micros_per_call(|| {
            black_box(jwt::parse(black_box(&token), 8192).unwrap());
        });
        println!(
            "{label:<18} {full:>16.2} {parse_only:>14.2} {:>10}",
            token.len()
        );
    }
}

fn key_set(signer: &SigningKey, alg: Algorithm) -> KeySet {
    let key = match signer.public_jwk(Some("k1")) {
        Some(jwk) => VerifyingKey::from_jwk(&jwk).unwrap(),
        None => VerifyingKey::hmac(&[7; 32], alg, Some("k1".into())).unwrap(),
    };
    KeySet::from_keys(vec![key])
}

/// Signs an access token shaped like a Keycloak one: 14 claims, nested roles.
fn typical_token(signer: &SigningKey, alg: Algorithm) -> String {
    let header = json!({"typ": "at+jwt", "kid": "k1"});
    let claims = json!({
        "iss": "https://issuer.example/realms/main",
        "sub": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "aud": ["orders-api", "account"],
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "4f1c2f0e-8a1b-4c7d-9a3e-2b5c6d7e8f90",
        "azp": "web-frontend",
        "scope": "openid profile orders:read orders:write",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "customer"]},
        "resource_access": {"orders-api": {"roles": ["reader", "writer"]}},
        "tenant": "acme",
        "preferred_username": "alice",
        "email_verified": true,
    });
    signer.sign(alg, &header, &claims).unwrap()
}

fn micros_per_call(mut call: impl FnMut()) -> f64 {
    for _ in 0..200 {
        call();
    }

    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < RUN_TIME {
        for _ in 0..50 {
            call();
        }
        calls += 50;
    }
    start.elapsed().as_secs_f64() * 1e6 / calls as f64
}
