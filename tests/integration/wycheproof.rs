//! Runs the Wycheproof JSON Web Signature vectors (tests/data/wycheproof, from
//! C2SP/wycheproof `testvectors_v1`, Apache-2.0) against the JWS layer of the
//! verifier: `parse_jws` and `UnverifiedJws::verify`. Wycheproof payloads are
//! arbitrary bytes rather than JWT claims, so claim parsing is not involved.

use serde_json::{json, Value};

use portcullis::authn::{
    jwk::{Algorithm, JwkError, KeySet, VerifyingKey},
    jwt::{decode_base64url, parse_jws},
};

const VECTORS: &str = include_str!("../data/wycheproof/json_web_signature_test.json");

/// Larger than every vector, so the size limit never decides a case.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Expected tallies for the vector file at Wycheproof commit dac1dd4.
const ACCEPTED_VALID: usize = 40;
const REJECTED_INVALID: usize = 348;

/// Cases labelled `valid` that Portcullis rejects on purpose, with the rule that rejects each.
const VALID_BUT_REJECTED_BY_DESIGN: &[(u64, &str)] = &[
    (
        346,
        "the JWK pins `alg` to PS256 but the token is PS384; a pinned key allows only its `alg`",
    ),
    (
        350,
        "the JWK pins `alg` to PS256 but the token is PS384; a pinned key allows only its `alg`",
    ),
    (
        372,
        "`?` inside the header segment; strict base64url rejects bytes outside the alphabet",
    ),
    (
        373,
        "`?` inside the payload segment; strict base64url rejects bytes outside the alphabet",
    ),
];

/// Cases labelled `invalid` whose `jws` is byte-identical to a case labelled
/// `valid` (the second number) in the same group; no verifier can satisfy both
/// labels. The vectors meant padded base64url but the padding is missing from
/// the data. The test checks that the bytes are still identical, and the verifier
/// accepts them like the valid case. Padding itself is rejected, see
/// `base64url_must_be_strict` in the `jwt` unit tests.
const CONTRADICTORY_LABELS: &[(u64, u64)] = &[(367, 357), (370, 357)];

/// Builds the verifier's key set for a group, or returns why the group's key is unusable.
fn group_keys(group: &Value) -> Result<KeySet, JwkError> {
    if let Some(public) = group.get("public") {
        let document = json!({ "keys": [public] }).to_string();
        let (keys, skipped) =
            KeySet::from_jwks_json(document.as_bytes()).expect("JWKS document parses");
        return match skipped.into_iter().next() {
            Some(skipped) => Err(skipped.reason),
            None => Ok(keys),
        };
    }

    // Groups without a public key carry a shared `oct` secret, which is only
    // usable when configured explicitly.
    let private = &group["private"];
    assert_eq!(
        private["kty"], "oct",
        "a group without a public key has an oct key"
    );
    let secret = decode_base64url(private["k"].as_str().unwrap()).unwrap();
    let alg = Algorithm::from_name(private["alg"].as_str().unwrap())
        .ok_or(JwkError::UnsupportedAlgorithm)?;
    let kid = private["kid"].as_str().map(str::to_owned);
    let key = VerifyingKey::hmac(&secret, alg, kid)?;
    Ok(KeySet::from_keys(vec![key]))
}

#[derive(Default, Debug)]
struct Tally {
    groups: usize,
    cases: usize,
    accepted_valid: usize,
    rejected_invalid: usize,
    valid_rejected_by_design: usize,
    contradictory_labels: usize,
    unsupported_groups: usize,
    unsupported_group_cases: usize,
    json_serialization_cases: usize,
    problems: Vec<String>,
}

#[test]
fn wycheproof_json_web_signature_vectors() {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    let all_cases: Vec<&Value> = vectors["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["tests"].as_array().unwrap())
        .collect();
    let jws_of = |id: u64| {
        all_cases
            .iter()
            .find(|case| case["tcId"] == id)
            .map(|case| &case["jws"])
    };
    let mut tally = Tally::default();

    for group in vectors["testGroups"].as_array().unwrap() {
        tally.groups += 1;
        let keys = group_keys(group);
        if keys.is_err() {
            tally.unsupported_groups += 1;
        }

        for case in group["tests"].as_array().unwrap() {
            let id = case["tcId"].as_u64().unwrap();
            if let Some((_, twin)) = CONTRADICTORY_LABELS
                .iter()
                .find(|(listed, _)| *listed == id)
            {
                assert_eq!(
                    Some(&case["jws"]),
                    jws_of(*twin),
                    "tcId {id} no longer equals tcId {twin}"
                );
                tally.cases += 1;
                tally.contradictory_labels += 1;
                continue;
            }
            run_case(case, keys.as_ref().ok(), &mut tally);
        }
    }

    println!("{tally:#?}");
    assert!(
        tally.problems.is_empty(),
        "{} cases went wrong:\n{}",
        tally.problems.len(),
        tally.problems.join("\n")
    );

    assert_eq!(tally.groups, 23);
    assert_eq!(tally.cases, 401);
    assert_eq!(tally.accepted_valid, ACCEPTED_VALID);
    assert_eq!(tally.rejected_invalid, REJECTED_INVALID);
    assert_eq!(
        tally.valid_rejected_by_design,
        VALID_BUT_REJECTED_BY_DESIGN.len()
    );
    assert_eq!(tally.contradictory_labels, CONTRADICTORY_LABELS.len());
    assert_eq!(tally.unsupported_groups, 6);
    assert_eq!(tally.unsupported_group_cases, 6);
    assert_eq!(tally.json_serialization_cases, 1);
    assert_eq!(
        tally.accepted_valid
            + tally.rejected_invalid
            + tally.valid_rejected_by_design
            + tally.contradictory_labels
            + tally.unsupported_group_cases
            + tally.json_serialization_cases,
        tally.cases,
        "every case is counted exactly once"
    );
}

fn run_case(case: &Value, keys: Option<&KeySet>, tally: &mut Tally) {
    tally.cases += 1;
    let id = case["tcId"].as_u64().unwrap();
    let label = format!(
        "tcId {id} ({})",
        case["comment"].as_str().unwrap_or_default()
    );
    let expected_valid = case["result"] == "valid";
    let token = case["jws"].as_str().unwrap();

    // JSON serialization (RFC 7515 section 7.2) is not supported because bearer
    // tokens are always compact. The parser must still reject the text.
    let json_serialized = case["flags"]
        .as_array()
        .is_some_and(|flags| flags.iter().any(|flag| flag == "JsonSerialization"));
    if json_serialized {
        tally.json_serialization_cases += 1;
        if parse_jws(token, MAX_TOKEN_BYTES).is_ok() {
            tally
                .problems
                .push(format!("{label}: JSON serialization was parsed"));
        }
        return;
    }

    let Some(keys) = keys else {
        tally.unsupported_group_cases += 1;
        let empty = KeySet::default();
        if parse_jws(token, MAX_TOKEN_BYTES)
            .and_then(|jws| jws.verify(&empty).map(|_| ()))
            .is_ok()
        {
            tally
                .problems
                .push(format!("{label}: accepted without a usable key"));
        }
        return;
    };

    let outcome = parse_jws(token, MAX_TOKEN_BYTES).and_then(|jws| jws.verify(keys).map(|_| ()));
    let by_design = VALID_BUT_REJECTED_BY_DESIGN
        .iter()
        .any(|(listed, _)| *listed == id);

    match (expected_valid, by_design, outcome) {
        (true, false, Ok(())) => tally.accepted_valid += 1,
        (true, true, Err(_)) => tally.valid_rejected_by_design += 1,
        (false, false, Err(_)) => tally.rejected_invalid += 1,
        (true, false, Err(error)) => tally
            .problems
            .push(format!("{label}: valid case rejected: {error}")),
        (true, true, Ok(())) => tally.problems.push(format!(
            "{label}: listed as rejected by design but accepted"
        )),
        (false, _, Ok(())) => tally
            .problems
            .push(format!("{label}: invalid case accepted")),
        (false, true, Err(_)) => tally
            .problems
            .push(format!("{label}: listed as valid but labelled invalid")),
    }
}
