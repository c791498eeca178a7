//! Runs the attack catalogue through the verification core (`parse`, `verify`,
//! `validate`) for every asymmetric key type, and checks that the control token
//! from the same context passes, so each rejection is caused by the attack.

use crate::common::attacks;

use std::collections::HashSet;

use attacks::{attack_catalogue, control_token, expected_rules, ForgeContext, MAX_TOKEN_BYTES};
use portcullis::authn::{
    jwk::{Algorithm, KeySet},
    jwt::{self, TokenError},
    jwt_sign::SigningKey,
};

const RSA_PEM: &str = include_str!("../data/keys/rsa2048-pkcs8.pem");
const NOW: i64 = 1_750_000_000;

fn contexts() -> Vec<ForgeContext> {
    let context = |signing_key, alg| {
        ForgeContext::new(
            signing_key,
            alg,
            "trusted-key-1",
            "https://issuer.example/realms/main",
            "orders-api",
            NOW,
            30,
        )
    };
    vec![
        context(
            SigningKey::from_pkcs8_pem(RSA_PEM).unwrap(),
            Algorithm::Rs256,
        ),
        context(
            SigningKey::from_pkcs8_pem(RSA_PEM).unwrap(),
            Algorithm::Ps256,
        ),
        context(
            SigningKey::generate(Algorithm::Es256).unwrap(),
            Algorithm::Es256,
        ),
        context(
            SigningKey::generate(Algorithm::Es384).unwrap(),
            Algorithm::Es384,
        ),
        context(
            SigningKey::generate(Algorithm::EdDsa).unwrap(),
            Algorithm::EdDsa,
        ),
    ]
}

/// Runs the three verification steps as the authenticator will.
fn check(ctx: &ForgeContext, token: &str) -> Result<(), TokenError> {
    let jwks = format!(r#"{{"keys":[{}]}}"#, ctx.public_jwk_json);
    let (keys, skipped) = KeySet::from_jwks_json(jwks.as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");

    let parsed = jwt::parse(token, MAX_TOKEN_BYTES)?;
    let claims = parsed.verify(&keys)?;
    jwt::validate(
        parsed.header(),
        &claims,
        &expected_rules(ctx),
        ctx.now as f64,
    )
}

#[test]
fn control_token_accepted() {
    for ctx in contexts() {
        assert_eq!(check(&ctx, &control_token(&ctx)), Ok(()), "{}", ctx.alg);
    }
}

#[test]
fn every_attack_rejected_with_expected_reason() {
    let mut failures = Vec::new();

    for ctx in contexts() {
        let cases = attack_catalogue(&ctx);
        assert!(cases.len() >= 35, "{}: only {} cases", ctx.alg, cases.len());

        let mut as_expected = 0;
        for case in &cases {
            match check(&ctx, &case.token) {
                Ok(()) => failures.push(format!("{} {}: accepted", ctx.alg, case.name)),
                Err(error) if error.reason() != case.expected_reason => failures.push(format!(
                    "{} {}: rejected as {} ({error}), expected {}",
                    ctx.alg,
                    case.name,
                    error.reason(),
                    case.expected_reason
                )),
                Err(_) => as_expected += 1,
            }
        }
        println!(
            "{}: {as_expected} of {} attack cases rejected with the expected reason",
            ctx.alg,
            cases.len()
        );
    }

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn attack_names_unique_and_described() {
    for ctx in contexts() {
        let cases = attack_catalogue(&ctx);
        let names: HashSet<_> = cases.iter().map(|case| case.name).collect();
        assert_eq!(names.len(), cases.len(), "{}: repeated names", ctx.alg);
        assert!(
            cases.iter().all(|case| !case.description.is_empty()),
            "{}",
            ctx.alg
        );
    }
}

#[test]
fn attack_tokens_fit_an_http_header() {
    let ctx = &contexts()[0];
    for case in attack_catalogue(ctx) {
        let printable = case.token.bytes().all(|byte| (0x20..0x7f).contains(&byte));
        assert!(
            printable,
            "{} contains bytes that cannot go in a header",
            case.name
        );
    }
}
