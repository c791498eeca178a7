//! Forged and malformed JWTs for attack tests. [`attack_catalogue`] builds,
//! from one [`ForgeContext`], tokens that a strict verifier must reject, each
//! with the reason code that the verification core gives it. End-to-end
//! suites send the same tokens through the gateway.
//!
//! Every case changes one thing in the control token from [`control_token`],
//! which [`expected_rules`] accepts, so a rejection points at that one change.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::time::Duration;

use portcullis::authn::{jwk::Algorithm, jwt::ClaimRules, jwt_sign::SigningKey};

/// Token size limit that the catalogue assumes, in bytes. The oversized case exceeds it.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The trusted key and the validation settings that forged tokens imitate.
pub struct ForgeContext {
    /// The issuer's real private key. It must be asymmetric (RSA, EC or Ed25519),
    /// because the key confusion cases use its public key as an HMAC secret.
    pub signing_key: SigningKey,
    pub alg: Algorithm,
    pub kid: String,
    pub issuer: String,
    pub audience: String,
    /// The public JWK of `signing_key` with `kid`, as JSON text. The verifier's
    /// JWKS contains exactly this key.
    pub public_jwk_json: String,
    /// Verifier clock, in seconds since the Unix epoch.
    pub now: i64,
    pub leeway_secs: i64,
}

impl ForgeContext {
    /// Creates a context and derives `public_jwk_json` from the key.
    pub fn new(
        signing_key: SigningKey,
        alg: Algorithm,
        kid: &str,
        issuer: &str,
        audience: &str,
        now: i64,
        leeway_secs: i64,
    ) -> ForgeContext {
        let jwk = signing_key
            .public_jwk(Some(kid))
            .expect("the signing key must be asymmetric");
        ForgeContext {
            signing_key,
            alg,
            kid: kid.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            public_jwk_json: jwk.to_string(),
            now,
            leeway_secs,
        }
    }
}

/// One forged token and the reason code the verification core rejects it with.
pub struct AttackCase {
    pub name: &'static str,
    pub description: &'static str,
    pub token: String,
    /// Reason code from `TokenError::reason` for `parse`, `verify` and `validate`
    /// with [`expected_rules`] and [`MAX_TOKEN_BYTES`].
    pub expected_reason: &'static str,
}

/// Returns the validation rules that accept [`control_token`] and reject every case.
pub fn expected_rules(ctx: &ForgeContext) -> ClaimRules {
    ClaimRules {
        issuer: ctx.issuer.clone(),
        audiences: vec![ctx.audience.clone()],
        leeway: Duration::from_secs(ctx.leeway_secs.unsigned_abs()),
        required_typ: Some(vec!["at+jwt".to_owned()]),
        require_exp: true,
        max_iat_age: None,
    }
}

/// Returns a genuine access token that [`expected_rules`] accepts at `ctx.now`.
pub fn control_token(ctx: &ForgeContext) -> String {
    let forge = Forge { ctx };
    forge.sign_json(&forge.header(json!({})), &forge.claims(json!({})))
}

/// Builds every attack case for `ctx`: at least 35, covering `alg` tricks,
/// key confusion, key references, `crit`, signature tampering, time claims,
/// issuer and audience, and encoding.
pub fn attack_catalogue(ctx: &ForgeContext) -> Vec<AttackCase> {
    let forge = Forge { ctx };
    let mut cases = Vec::new();

    alg_none_cases(&forge, &mut cases);
    key_confusion_cases(&forge, &mut cases);
    kid_cases(&forge, &mut cases);
    key_reference_cases(&forge, &mut cases);
    crit_cases(&forge, &mut cases);
    signature_cases(&forge, &mut cases);
    time_cases(&forge, &mut cases);
    issuer_audience_cases(&forge, &mut cases);
    encoding_cases(&forge, &mut cases);
    cases
}

/// Helpers that build tokens derived from the control token.
struct Forge<'a> {
    ctx: &'a ForgeContext,
}

impl Forge<'_> {
    /// Control header with `changes` merged in; a `null` change removes the member.
    fn header(&self, changes: Value) -> Value {
        let control = json!({"alg": self.ctx.alg.name(), "typ": "at+jwt", "kid": self.ctx.kid});
        merged(control, changes)
    }

    /// Control claims with `changes` merged in; a `null` change removes the claim.
    fn claims(&self, changes: Value) -> Value {
        let now = self.ctx.now;
        let control = json!({
            "iss": self.ctx.issuer,
            "sub": "user-1234",
            "aud": self.ctx.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "scope": "read write",
            "jti": "attack-catalogue",
        });
        merged(control, changes)
    }

    /// Signs the JSON as given with the real key, keeping the header's `alg` as written.
    fn sign_json(&self, header: &Value, claims: &Value) -> String {
        self.sign_text(&header.to_string(), &claims.to_string())
    }

    fn sign_text(&self, header: &str, payload: &str) -> String {
        self.ctx
            .signing_key
            .sign_raw(self.ctx.alg, header, payload)
            .expect("the real key signs its own alg")
    }

    /// Signs the exact signing input `header_b64.payload_b64` with the real key.
    fn sign_segments(&self, header_b64: &str, payload_b64: &str) -> String {
        let signing_input = format!("{header_b64}.{payload_b64}");
        let signature = self
            .ctx
            .signing_key
            .sign_bytes(self.ctx.alg, signing_input.as_bytes())
            .expect("signing works");
        format!("{signing_input}.{}", b64(&signature))
    }

    /// Returns a key the attacker controls, of the same type as the real key.
    fn attacker_key(&self) -> SigningKey {
        if self.ctx.alg.is_rsa() {
            SigningKey::from_pkcs8_pem(ATTACKER_RSA_PKCS8_PEM).expect("attacker fixture loads")
        } else {
            SigningKey::generate(self.ctx.alg).expect("ring generates EC and Ed25519 keys")
        }
    }

    fn control_segments(&self) -> (String, String, Vec<u8>) {
        let token = control_token(self.ctx);
        let mut segments = token.split('.');
        let header = segments.next().unwrap_or_default().to_owned();
        let payload = segments.next().unwrap_or_default().to_owned();
        let signature = URL_SAFE_NO_PAD
            .decode(segments.next().unwrap_or_default())
            .expect("own signature decodes");
        (header, payload, signature)
    }
}

fn merged(control: Value, changes: Value) -> Value {
    let mut members: Map<String, Value> = control.as_object().cloned().unwrap_or_default();
    for (name, value) in changes.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            members.remove(&name);
        } else {
            members.insert(name, value);
        }
    }
    Value::Object(members)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn case(
    name: &'static str,
    description: &'static str,
    token: String,
    expected_reason: &'static str,
) -> AttackCase {
    AttackCase {
        name,
        description,
        token,
        expected_reason,
    }
}

fn alg_none_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    const VARIANTS: [(&str, &str, &str); 4] = [
        ("none", "alg_none_unsigned", "alg_none_with_signature"),
        (
            "None",
            "alg_none_capitalized_unsigned",
            "alg_none_capitalized_with_signature",
        ),
        (
            "NONE",
            "alg_none_upper_unsigned",
            "alg_none_upper_with_signature",
        ),
        (
            "nOnE",
            "alg_none_mixed_case_unsigned",
            "alg_none_mixed_case_with_signature",
        ),
    ];
    let (_, payload, signature) = forge.control_segments();

    for (alg, unsigned_name, signed_name) in VARIANTS {
        let header = b64(forge.header(json!({"alg": alg})).to_string());
        let unsigned = format!("{header}.{payload}.");
        let with_signature = format!("{header}.{payload}.{}", b64(&signature));

        cases.push(case(
            unsigned_name,
            "unsecured JWT: `alg` none in some casing, empty signature",
            unsigned,
            "token_algorithm_unsupported",
        ));
        cases.push(case(
            signed_name,
            "`alg` none in some casing, with the genuine signature left in place",
            with_signature,
            "token_algorithm_unsupported",
        ));
    }
}

fn key_confusion_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let key = &forge.ctx.signing_key;
    let jwk_json = forge.ctx.public_jwk_json.clone().into_bytes();
    let public_bytes = key
        .public_key_bytes()
        .expect("the signing key must be asymmetric");
    let pem = key
        .public_key_pem()
        .expect("the signing key must be asymmetric")
        .into_bytes();

    let variants: [(Algorithm, &[u8], &'static str, &'static str); 6] = [
        (
            Algorithm::Hs256,
            &jwk_json,
            "hs256_secret_public_jwk",
            "HS256 with the public JWK JSON text as the HMAC secret",
        ),
        (
            Algorithm::Hs256,
            &public_bytes,
            "hs256_secret_public_key_bytes",
            "HS256 with the raw public key (RSA n, EC point, Ed25519 key) as the secret",
        ),
        (
            Algorithm::Hs256,
            &pem,
            "hs256_secret_public_pem",
            "HS256 with the public key PEM text as the secret",
        ),
        (
            Algorithm::Hs384,
            &jwk_json,
            "hs384_secret_public_jwk",
            "HS384 with the public JWK JSON text as the HMAC secret",
        ),
        (
            Algorithm::Hs384,
            &public_bytes,
            "hs384_secret_public_key_bytes",
            "HS384 with the raw public key as the secret",
        ),
        (
            Algorithm::Hs384,
            &pem,
            "hs384_secret_public_pem",
            "HS384 with the public key PEM text as the secret",
        ),
    ];
    for (alg, secret, name, description) in variants {
        let forger = SigningKey::hmac(secret, alg).expect("HS algorithm");
        let header = forge.header(json!({"alg": alg.name()})).to_string();
        let token = forger
            .sign_raw(alg, &header, &forge.claims(json!({})).to_string())
            .expect("HMAC signs");
        cases.push(case(
            name,
            description,
            token,
            "token_algorithm_not_allowed",
        ));
    }
}

fn kid_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let claims = forge.claims(json!({})).to_string();
    let hmac_token = |kid: &str, secret: &[u8]| {
        let header = forge
            .header(json!({"alg": "HS256", "kid": kid}))
            .to_string();
        SigningKey::hmac(secret, Algorithm::Hs256)
            .and_then(|key| key.sign_raw(Algorithm::Hs256, &header, &claims))
            .expect("HMAC signs")
    };

    cases.push(case(
        "kid_path_traversal",
        "`kid` points at /dev/null through `..` and the token is HS256 with an empty secret",
        hmac_token("../../../../../../../dev/null", b""),
        "token_key_not_found",
    ));
    cases.push(case(
        "kid_sql_injection",
        "`kid` carries SQL that would select an attacker-chosen secret; HS256 with that secret",
        hmac_token("x' UNION SELECT 'attacker-secret' --", b"attacker-secret"),
        "token_key_not_found",
    ));
    cases.push(case(
        "kid_very_long",
        "`kid` of 4000 bytes, signed with the real key",
        forge.sign_json(
            &forge.header(json!({"kid": "A".repeat(4000)})),
            &forge.claims(json!({})),
        ),
        "token_malformed",
    ));
    cases.push(case(
        "kid_number",
        "`kid` is a number, signed with the real key",
        forge.sign_json(
            &forge.header(json!({"kid": 12345})),
            &forge.claims(json!({})),
        ),
        "token_malformed",
    ));
    cases.push(case(
        "kid_object",
        "`kid` is an object (query-operator injection), signed with the real key",
        forge.sign_json(
            &forge.header(json!({"kid": {"$ne": null}})),
            &forge.claims(json!({})),
        ),
        "token_malformed",
    ));

    let attacker = forge.attacker_key();
    let trusted_kid_header = forge.header(json!({})).to_string();
    cases.push(case(
        "kid_of_trusted_key_attacker_signed",
        "`kid` names the trusted key but the attacker's key of the same type signed the token",
        attacker
            .sign_raw(forge.ctx.alg, &trusted_kid_header, &claims)
            .expect("attacker signs"),
        "token_signature_invalid",
    ));
    cases.push(case(
        "kid_unknown_genuine_signature",
        "genuinely signed, but `kid` names a key that is not in the JWKS",
        forge.sign_json(
            &forge.header(json!({"kid": "rotated-out-key"})),
            &forge.claims(json!({})),
        ),
        "token_key_not_found",
    ));
}

fn key_reference_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let attacker = forge.attacker_key();
    let attacker_jwk = attacker
        .public_jwk(Some("attacker-key"))
        .expect("attacker key is asymmetric");
    let attacker_spki = attacker
        .public_key_pem()
        .expect("attacker key is asymmetric");
    let claims = forge.claims(json!({})).to_string();
    let attacker_token = |changes: Value| {
        let header = forge.header(changes).to_string();
        attacker
            .sign_raw(forge.ctx.alg, &header, &claims)
            .expect("attacker signs")
    };

    cases.push(case(
        "jku_attacker_jwks",
        "`jku` points at an attacker JWKS holding the signing key, `kid` names that key",
        attacker_token(
            json!({"jku": "http://127.0.0.1:9/attacker/jwks.json", "kid": "attacker-key"}),
        ),
        "token_key_not_found",
    ));
    cases.push(case(
        "jku_with_trusted_kid",
        "`jku` points at an attacker JWKS, `kid` names the trusted key",
        attacker_token(json!({"jku": "http://127.0.0.1:9/attacker/jwks.json"})),
        "token_signature_invalid",
    ));
    cases.push(case(
        "x5u_attacker_certificate",
        "`x5u` points at an attacker certificate URL, `kid` names the attacker key",
        attacker_token(
            json!({"x5u": "http://127.0.0.1:9/attacker/cert.pem", "kid": "attacker-key"}),
        ),
        "token_key_not_found",
    ));
    cases.push(case(
        "embedded_jwk_trusted_kid",
        "attacker public key embedded as `jwk`, `kid` names the trusted key",
        attacker_token(json!({"jwk": attacker_jwk})),
        "token_signature_invalid",
    ));
    cases.push(case(
        "embedded_jwk_no_kid",
        "attacker public key embedded as `jwk` and no `kid`, so every trusted key is tried",
        attacker_token(json!({"jwk": attacker_jwk, "kid": null})),
        "token_signature_invalid",
    ));
    let spki_body: String = attacker_spki
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    cases.push(case(
        "x5c_attacker_key",
        "`x5c` carries the attacker's public key (SPKI, not a real certificate)",
        attacker_token(json!({"x5c": [spki_body]})),
        "token_signature_invalid",
    ));
}

fn crit_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let claims = forge.claims(json!({}));
    cases.push(case(
        "crit_unknown_extension",
        "`crit` lists an extension parameter that the verifier does not implement",
        forge.sign_json(
            &forge.header(json!({"crit": ["urn:example:ext"], "urn:example:ext": true})),
            &claims,
        ),
        "token_crit_unsupported",
    ));
    cases.push(case(
        "crit_empty",
        "`crit` is an empty array, which RFC 7515 forbids",
        forge.sign_json(&forge.header(json!({"crit": []})), &claims),
        "token_malformed",
    ));

    // RFC 7797 signs the payload unencoded. The token still carries the
    // base64url payload so that it has three segments.
    let header_b64 = b64(forge
        .header(json!({"b64": false, "crit": ["b64"]}))
        .to_string());
    let unencoded_input = format!("{header_b64}.{claims}");
    let signature = forge
        .ctx
        .signing_key
        .sign_bytes(forge.ctx.alg, unencoded_input.as_bytes())
        .expect("signing works");
    cases.push(case(
        "b64_false_with_crit",
        "RFC 7797 unencoded payload: `b64` false listed in `crit`, signature over the raw JSON",
        format!(
            "{header_b64}.{}.{}",
            b64(claims.to_string()),
            b64(&signature)
        ),
        "token_crit_unsupported",
    ));
    cases.push(case(
        "b64_false_without_crit",
        "`b64` false without `crit`, otherwise genuine",
        forge.sign_json(&forge.header(json!({"b64": false})), &claims),
        "token_malformed",
    ));
}

/// Order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Order of the P-384 group, big-endian.
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// Order L of the Ed25519 group, little-endian as in signatures (RFC 8032).
const ED25519_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

fn signature_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let (header, payload, signature) = forge.control_segments();
    let with_signature = |bytes: &[u8]| format!("{header}.{payload}.{}", b64(bytes));

    cases.push(case(
        "signature_all_zero",
        "signature of the right length with every byte zero (ECDSA r = s = 0, RSA s = 0)",
        with_signature(&vec![0; signature.len()]),
        "token_signature_invalid",
    ));
    cases.push(case(
        "signature_group_order",
        "ECDSA r = s = n; RSA s = n (the modulus); Ed25519 S replaced by S + L",
        with_signature(&order_signature(forge, &signature)),
        "token_signature_invalid",
    ));

    let mut flipped = signature.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 0x01;
    }
    cases.push(case(
        "signature_bit_flipped",
        "genuine signature with its last bit flipped",
        with_signature(&flipped),
        "token_signature_invalid",
    ));

    let truncated = &signature[..signature.len() - 1];
    let reason = if forge.ctx.alg.is_rsa() && truncated.len() >= 256 {
        "token_signature_invalid"
    } else {
        "token_malformed"
    };
    cases.push(case(
        "signature_truncated",
        "genuine signature with its last byte removed",
        with_signature(truncated),
        reason,
    ));
}

/// Builds a signature whose scalars equal the group order, which a verifier
/// that skips the range check would treat like zero (or, for Ed25519, like the
/// genuine S).
fn order_signature(forge: &Forge, genuine: &[u8]) -> Vec<u8> {
    match forge.ctx.alg {
        Algorithm::Es256 => [P256_ORDER, P256_ORDER].concat(),
        Algorithm::Es384 => [P384_ORDER, P384_ORDER].concat(),
        Algorithm::EdDsa => {
            let mut forged = genuine[..32].to_vec();
            forged.extend(add_little_endian(&genuine[32..], &ED25519_ORDER));
            forged
        }
        _ => forge
            .ctx
            .signing_key
            .public_key_bytes()
            .expect("RSA modulus"),
    }
}

/// Adds two 32-byte little-endian numbers; S < L < 2^253, so the sum fits.
fn add_little_endian(left: &[u8], right: &[u8; 32]) -> Vec<u8> {
    let mut carry = 0u16;
    left.iter()
        .zip(right)
        .map(|(a, b)| {
            let sum = u16::from(*a) + u16::from(*b) + carry;
            carry = sum >> 8;
            sum as u8
        })
        .collect()
}

fn time_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let now = forge.ctx.now;
    let leeway = forge.ctx.leeway_secs;
    let signed = |changes: Value| forge.sign_json(&forge.header(json!({})), &forge.claims(changes));

    cases.push(case(
        "expired_past_leeway",
        "`exp` = now - leeway - 1",
        signed(json!({"exp": now - leeway - 1, "iat": now - 600, "nbf": now - 600})),
        "token_expired",
    ));
    cases.push(case(
        "expired_at_leeway_boundary",
        "`exp` = now - leeway, the first expired second",
        signed(json!({"exp": now - leeway, "iat": now - 600, "nbf": now - 600})),
        "token_expired",
    ));
    cases.push(case(
        "not_yet_valid_past_leeway",
        "`nbf` = now + leeway + 1",
        signed(json!({"nbf": now + leeway + 1})),
        "token_not_yet_valid",
    ));
    cases.push(case(
        "issued_in_future",
        "`iat` = now + leeway + 1",
        signed(json!({"iat": now + leeway + 1})),
        "token_issued_in_future",
    ));
    cases.push(case(
        "exp_missing",
        "no `exp` claim, so the token never expires",
        signed(json!({"exp": null})),
        "token_claim_missing",
    ));
    cases.push(case(
        "exp_numeric_string",
        "`exp` is a string of digits instead of a number",
        signed(json!({"exp": (now + 300).to_string()})),
        "token_malformed",
    ));
}

fn issuer_audience_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let signed = |changes: Value| forge.sign_json(&forge.header(json!({})), &forge.claims(changes));
    let issuer = &forge.ctx.issuer;
    let slash_variant = match issuer.strip_suffix('/') {
        Some(trimmed) => trimmed.to_owned(),
        None => format!("{issuer}/"),
    };

    cases.push(case(
        "issuer_wrong",
        "`iss` names another issuer",
        signed(json!({"iss": "https://attacker.example"})),
        "token_issuer_mismatch",
    ));
    cases.push(case(
        "issuer_missing",
        "no `iss` claim",
        signed(json!({"iss": null})),
        "token_claim_missing",
    ));
    cases.push(case(
        "issuer_trailing_slash",
        "`iss` differs from the configured issuer only by a trailing slash",
        signed(json!({"iss": slash_variant})),
        "token_issuer_mismatch",
    ));
    cases.push(case(
        "audience_wrong",
        "`aud` names another API",
        signed(json!({"aud": ["https://other-api.example"]})),
        "token_audience_mismatch",
    ));
    cases.push(case(
        "audience_missing",
        "no `aud` claim",
        signed(json!({"aud": null})),
        "token_claim_missing",
    ));

    let id_token_claims = forge.claims(json!({
        "aud": "spa-client-id",
        "scope": null,
        "nonce": "n-0S6_WzA2Mj",
        "auth_time": forge.ctx.now - 60,
        "email": "user@example.com",
    }));
    cases.push(case(
        "id_token_shaped",
        "OpenID Connect ID token: `typ` JWT, `aud` is a client id, `nonce`, no `scope`",
        forge.sign_json(&forge.header(json!({"typ": "JWT"})), &id_token_claims),
        "token_type_mismatch",
    ));
}

fn encoding_cases(forge: &Forge, cases: &mut Vec<AttackCase>) {
    let header = forge.header(json!({})).to_string();
    let header_b64 = b64(&header);
    let claims = forge.claims(json!({}));
    let claims_text = claims.to_string();
    let body = claims_text.trim_start_matches('{');

    cases.push(case(
        "oversized",
        "genuinely signed token longer than 8 KiB",
        forge.sign_json(
            &forge.header(json!({})),
            &forge.claims(json!({"padding": "A".repeat(MAX_TOKEN_BYTES)})),
        ),
        "token_too_large",
    ));
    cases.push(case(
        "duplicate_sub",
        "payload repeats `sub`; a last-wins parser sees `admin`",
        forge.sign_text(&header, &format!(r#"{{"sub":"admin",{body}"#)),
        "token_malformed",
    ));
    cases.push(case(
        "duplicate_scope",
        "payload repeats `scope` with broader scopes",
        forge.sign_text(&header, &format!(r#"{{"scope":"admin",{body}"#)),
        "token_malformed",
    ));
    let header_body = header.trim_start_matches('{');
    cases.push(case(
        "duplicate_alg",
        "header repeats `alg`: HS256 first, the real algorithm last",
        forge.sign_text(&format!(r#"{{"alg":"HS256",{header_body}"#), &claims_text),
        "token_malformed",
    ));

    cases.push(case(
        "base64_padded",
        "payload segment with `=` padding, signed over the padded text",
        padded_token(forge),
        "token_malformed",
    ));
    cases.push(case(
        "base64_standard_alphabet",
        "payload segment in the `+` and `/` alphabet, signed over that text",
        standard_alphabet_token(forge),
        "token_malformed",
    ));
    let payload_b64 = b64(&claims_text);
    let (front, back) = payload_b64.split_at(payload_b64.len() / 2);
    cases.push(case(
        "base64_whitespace",
        "a space inside the payload segment, signed over that text",
        forge.sign_segments(&header_b64, &format!("{front} {back}")),
        "token_malformed",
    ));

    let jwe_header =
        b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": forge.ctx.kid}).to_string());
    cases.push(case(
        "jwe_five_segments",
        "JWE compact serialization (five segments)",
        format!("{jwe_header}.AAAA.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"),
        "token_malformed",
    ));
    cases.push(case(
        "empty_segments",
        "three empty segments",
        "..".to_owned(),
        "token_malformed",
    ));
    cases.push(case(
        "empty_payload",
        "empty payload segment, signed",
        forge.sign_segments(&header_b64, ""),
        "token_malformed",
    ));
    cases.push(case(
        "payload_not_object",
        "payload is a JSON array, signed",
        forge.sign_text(&header, r#"["user-1234"]"#),
        "token_malformed",
    ));
}

/// Pads a payload whose base64url length is not a multiple of 4. The claims
/// grow by one character until padding is needed.
fn padded_token(forge: &Forge) -> String {
    let header_b64 = b64(forge.header(json!({})).to_string());
    let mut filler = String::new();
    loop {
        let payload = b64(forge.claims(json!({"note": filler})).to_string());
        let missing = (4 - payload.len() % 4) % 4;
        if missing > 0 {
            return forge.sign_segments(&header_b64, &format!("{payload}{}", "=".repeat(missing)));
        }
        filler.push('x');
    }
}

/// Encodes the payload with the standard alphabet. The claims grow until the
/// encoding contains `+` or `/`, so it differs from base64url.
fn standard_alphabet_token(forge: &Forge) -> String {
    let header_b64 = b64(forge.header(json!({})).to_string());
    let mut filler = String::from("?>~");
    loop {
        let payload = STANDARD_NO_PAD.encode(forge.claims(json!({"note": filler})).to_string());
        if payload.contains(['+', '/']) {
            return forge.sign_segments(&header_b64, &payload);
        }
        filler.push('?');
    }
}

/// RSA key that plays the attacker in RSA contexts, generated with `openssl
/// genpkey` for these tests only. ring cannot generate RSA keys at run time.
const ATTACKER_RSA_PKCS8_PEM: &str = concat!(
    "-----BEGIN PRIVATE KEY-----\n",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC900MXxkfwmwA9\n",
    "+Hx+VLAd/PJuXctmgP+pNNFI4V6QsmMdbDj6JQJJq1uHbeuraEQKkOdRRmdqkcLS\n",
    "aTE5MHG9QsU4T5YYAwhswDK+Nmo1VXPX7byMIF0zFpSejjJQU+L4t8HInIp1MOT8\n",
    "QHkqOG8DzmuJy1hryiCLDtwE7gkqQYliIuXYkiHN4N5BAB/+C/gvavv5JyaOx19w\n",
    "xCHvACaSwZU6r75tdfxGRVGIBCAcgDlobLnujA0B4v8ULPsb8xvGst0rI1xjNIp5\n",
    "1DjhKPJ1xHeEdqCRkpAFrDnVlnpSxvrFQpVBYdMgh8ars0UtMnOBDSpRACMh6sBD\n",
    "FVVNygSrAgMBAAECggEAJujafFGS5nFHK+y2zAhc71Ctesz0B+dSQGNIsNktUpiW\n",
    "M24/AZs7bFFZGhoAcCqXo9jO6Xx2b0RAfHO+eLwC3GoG1gOOPw7EF9KPtCigPZ1t\n",
    "+OlMuCZcJEAxJ4z7KDcBs7yq1o2r3divXztx+qMFsnCJ331Uewe8AvUBSWtnaocY\n",
    "rufMMg3prgHDlvSYUcKKW/kVoGh7VWJTvlq+UIInCSMO2uBN9rWlAKzWv/ODoxe4\n",
    "pD9LX0q9l4D/H1NAFsm4ExH7ybTf1TrFr5uu7HzycLeojwi8C/Gb9JWqPDXREI7p\n",
    "v12yOidWCOI5gEyvwzoSiQECyZ+CkP/SGuGrfIBoCQKBgQDy76Ecg6emH4VOsB5B\n",
    "jl4oR5kEEougm+oIjb8rkLOH4MYTT/+JEMkwoeDBJwOqPEdSXJFh2K+VagIT0Xox\n",
    "V8JUwP7h7Oof0SAoMEiKSgWdol11vzooB1PpK4N1a4Vg9sGmYN3c3GQTsjlmQITA\n",
    "WGxN+BbNOrCxA0rmnolykt9KowKBgQDICHwRRin0/SijnAvMWDQfV/1jMOEkjUAg\n",
    "qqi27GDPTcBRLh4t0LNRgqVs47oGUxvugfZ4Hkg8XCccyHrUUrhjdE7NRjvgDqbz\n",
    "oGPfJNjbzV521TqVK2VZPVG225ZeKDI4w5Lpi4D9Fcg/TpVWvmxpmsUkz0yEVnj9\n",
    "xUpVKcXGWQKBgBU09/J+R69HxyJUW3/LhsqrXV8uo0O0+Jwgi5SpABMXexMKg7sa\n",
    "XQXCy9Twq/A7bNpyvDo3aTR42Y+TVMBj8dHmOxnLzbBTWCRJ+rsftRfKqa/yrof6\n",
    "A8gyBTrF1RHe2I7Gm/eAwbe6cipL7YrA7UttIchunCgHqo0xP7xht95TAoGAREvh\n",
    "UGSMXsEw5uuYe6SB51G7iepedIRlqMGb6Ri71QvO5ejBFRN0phfdM1htY0ts9foZ\n",
    "lNmCAFnWYNVyWpwDqLFFVoDsYIugJP5WGxIRmLp9zkTvQ48Vg2qUQ8KljHBc9VSR\n",
    "DHw9BiwxuquyAXPyv/u/49mDXovHs51wy7L/e8ECgYEA0GN7i3JsVIibpjMj4rMJ\n",
    "+U2+EwQHzrQjyuu+n+Xr0mc2EYaLFtgOHxLw+DY2Zjmn426/jsJTXwvYuj3vutdo\n",
    "gXg21rFav/Obos4owIn01HzmSDZ1Tkl8J1xZhUtmQdpMNeCH9efyQA6eKGVc4gjy\n",
    "TjN6ET7QR/WkEVOvo5RtfMk=\n",
    "-----END PRIVATE KEY-----\n",
);
