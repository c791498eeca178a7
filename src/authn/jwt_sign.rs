//! JWS compact signing for the token service's access tokens, the
//! `portcullis token mint` demo command and tests that forge attack tokens.
//!
//! Keys are PKCS#8 (`BEGIN PRIVATE KEY`) RSA, P-256, P-384 or Ed25519 keys, or
//! HMAC secrets. All signing goes through ring.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};

use crate::authn::jwk::Algorithm;
use crate::authn::jwt::BASE64URL;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Failure to load a key or sign a token. Messages never contain key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignError {
    /// The PEM text is not one PKCS#8 `PRIVATE KEY` block. The detail names the problem.
    InvalidPem(&'static str),
    /// The DER is not a PKCS#8 RSA (2048 to 4096 bits), P-256, P-384 or Ed25519 key.
    UnsupportedKey,
    /// The key type cannot sign with the requested algorithm.
    AlgorithmNotAllowedForKey { alg: Algorithm },
    /// `alg` is not one that [`SigningKey::generate`] supports.
    CannotGenerate { alg: Algorithm },
    /// The header or claims passed to [`SigningKey::sign`] is not a JSON object.
    NotAnObject(&'static str),
    /// ring reported a failure while generating a key or signing.
    CryptoFailure,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::InvalidPem(detail) => write!(f, "invalid private key PEM: {detail}"),
            SignError::UnsupportedKey => f.write_str(
                "private key is not a PKCS#8 RSA (2048 to 4096 bits), P-256, P-384 or Ed25519 key",
            ),
            SignError::AlgorithmNotAllowedForKey { alg } => {
                write!(f, "this key type cannot sign with {alg}")
            }
            SignError::CannotGenerate { alg } => {
                write!(
                    f,
                    "cannot generate a key for {alg}; use ES256, ES384 or EdDSA"
                )
            }
            SignError::NotAnObject(what) => write!(f, "{what} is not a JSON object"),
            SignError::CryptoFailure => f.write_str("the cryptographic library failed to sign"),
        }
    }
}

impl std::error::Error for SignError {}

enum KeyKind {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
    EcP384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    /// The secret is kept so that forged tokens can be re-signed; it is never printed.
    Hmac(hmac::Key, Algorithm),
}

/// A private key or shared secret that signs compact JWS tokens.
/// `Debug` prints the key type only.
pub struct SigningKey {
    kind: KeyKind,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("type", &self.key_type())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a PKCS#8 key from PEM text with exactly one `BEGIN PRIVATE KEY`
    /// block. Text around the block is rejected, except surrounding whitespace.
    /// Encrypted keys and the older `BEGIN RSA PRIVATE KEY` and
    /// `BEGIN EC PRIVATE KEY` forms are rejected with a hint to convert them.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, SignError> {
        let der = decode_pem(pem)?;
        SigningKey::from_pkcs8_der(&der)
    }

    /// Loads a DER-encoded PKCS#8 key: RSA, ECDSA on P-256 or P-384, or Ed25519.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, SignError> {
        let rng = SystemRandom::new();

        let kind = if let Ok(key) = RsaKeyPair::from_pkcs8(der) {
            KeyKind::Rsa(key)
        } else if let Ok(key) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            KeyKind::EcP256(key)
        } else if let Ok(key) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
        {
            KeyKind::EcP384(key)
        } else if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            KeyKind::Ed25519(key)
        } else {
            return Err(SignError::UnsupportedKey);
        };
        Ok(SigningKey { kind })
    }

    /// Creates an HMAC key for `alg`, which must be HS256, HS384 or HS512.
    ///
    /// Any secret length is accepted so that tests can forge tokens with weak
    /// secrets. The verifier rejects secrets shorter than the hash output.
    pub fn hmac(secret: &[u8], alg: Algorithm) -> Result<SigningKey, SignError> {
        let hmac_alg = alg
            .hmac_algorithm()
            .ok_or(SignError::AlgorithmNotAllowedForKey { alg })?;
        Ok(SigningKey {
            kind: KeyKind::Hmac(hmac::Key::new(hmac_alg, secret), alg),
        })
    }

    /// Generates a fresh key for ES256, ES384 or EdDSA. ring cannot generate RSA keys.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, SignError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Algorithm::Es384 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            }
            Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
            _ => return Err(SignError::CannotGenerate { alg }),
        };
        let pkcs8 = pkcs8.map_err(|_| SignError::CryptoFailure)?;
        SigningKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Returns a short name of the key type, such as `EC P-256`.
    pub fn key_type(&self) -> &'static str {
        match &self.kind {
            KeyKind::Rsa(_) => "RSA",
            KeyKind::EcP256(_) => "EC P-256",
            KeyKind::EcP384(_) => "EC P-384",
            KeyKind::Ed25519(_) => "OKP Ed25519",
            KeyKind::Hmac(..) => "HMAC",
        }
    }

    /// Returns whether this key can sign with `alg`: RSA with `RS*` and `PS*`,
    /// P-256 with ES256, P-384 with ES384, Ed25519 with EdDSA, and an HMAC key
    /// with the algorithm it was created for.
    pub fn allows(&self, alg: Algorithm) -> bool {
        match &self.kind {
            KeyKind::Rsa(_) => alg.is_rsa(),
            KeyKind::EcP256(_) => alg == Algorithm::Es256,
            KeyKind::EcP384(_) => alg == Algorithm::Es384,
            KeyKind::Ed25519(_) => alg == Algorithm::EdDsa,
            KeyKind::Hmac(_, configured) => alg == *configured,
        }
    }

    /// Returns the usual algorithm for this key: RS256 for RSA, ES256, ES384,
    /// EdDSA, or the HMAC key's algorithm.
    pub fn default_algorithm(&self) -> Algorithm {
        match &self.kind {
            KeyKind::Rsa(_) => Algorithm::Rs256,
            KeyKind::EcP256(_) => Algorithm::Es256,
            KeyKind::EcP384(_) => Algorithm::Es384,
            KeyKind::Ed25519(_) => Algorithm::EdDsa,
            KeyKind::Hmac(_, alg) => *alg,
        }
    }

    /// Signs a JWT. `header` and `claims` must be JSON objects; the header's
    /// `alg` is set to `alg`, replacing any value it had.
    pub fn sign(
        &self,
        alg: Algorithm,
        header: &Value,
        claims: &Value,
    ) -> Result<String, SignError> {
        let mut header = header
            .as_object()
            .ok_or(SignError::NotAnObject("header"))?
            .clone();
        if !claims.is_object() {
            return Err(SignError::NotAnObject("claims"));
        }

        header.insert("alg".to_owned(), Value::String(alg.name().to_owned()));
        let header_json = Value::Object(header).to_string();
        self.sign_raw(alg, &header_json, &claims.to_string())
    }

    /// Signs exactly the given header and payload text, without checking that
    /// either is JSON or that the header's `alg` matches `alg`. Tests use it to
    /// forge tokens with repeated members or unusual headers.
    pub fn sign_raw(
        &self,
        alg: Algorithm,
        header_json: &str,
        payload_json: &str,
    ) -> Result<String, SignError> {
        let mut token = BASE64URL.encode(header_json);
        token.push('.');
        BASE64URL.encode_string(payload_json, &mut token);

        let signature = self.sign_bytes(alg, token.as_bytes())?;
        token.push('.');
        BASE64URL.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Signs `message` with `alg` and returns the JWS signature bytes: PKCS#1
    /// v1.5 or PSS for RSA, fixed-length `r || s` for ECDSA, and the raw tag for HMAC.
    pub fn sign_bytes(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, SignError> {
        if !self.allows(alg) {
            return Err(SignError::AlgorithmNotAllowedForKey { alg });
        }

        let rng = SystemRandom::new();
        match &self.kind {
            KeyKind::Rsa(key) => {
                let encoding =
                    rsa_encoding(alg).ok_or(SignError::AlgorithmNotAllowedForKey { alg })?;
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(encoding, &rng, message, &mut signature)
                    .map_err(|_| SignError::CryptoFailure)?;
                Ok(signature)
            }
            KeyKind::EcP256(key) | KeyKind::EcP384(key) => key
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| SignError::CryptoFailure),
            KeyKind::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
            KeyKind::Hmac(key, _) => Ok(hmac::sign(key, message).as_ref().to_vec()),
        }
    }

    /// Returns the public key as a JWK with `use` `sig` and the given `kid`, or
    /// `None` for an HMAC key, which has no public part. RSA keys get no `alg`,
    /// so the JWK allows every RS and PS algorithm.
    pub fn public_jwk(&self, kid: Option<&str>) -> Option<Value> {
        let mut jwk = match &self.kind {
            KeyKind::Rsa(key) => {
                let components: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
                json!({"kty": "RSA", "n": BASE64URL.encode(&components.n), "e": BASE64URL.encode(&components.e)})
            }
            KeyKind::EcP256(key) => ec_jwk("P-256", key.public_key().as_ref()),
            KeyKind::EcP384(key) => ec_jwk("P-384", key.public_key().as_ref()),
            KeyKind::Ed25519(key) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": BASE64URL.encode(key.public_key().as_ref())})
            }
            KeyKind::Hmac(..) => return None,
        };

        jwk["use"] = json!("sig");
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        Some(jwk)
    }

    /// Returns the raw public key: the RSA modulus `n` (big-endian), the
    /// uncompressed EC point, or the Ed25519 public key. `None` for HMAC.
    pub fn public_key_bytes(&self) -> Option<Vec<u8>> {
        match &self.kind {
            KeyKind::Rsa(key) => {
                let components: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
                Some(components.n)
            }
            KeyKind::EcP256(key) | KeyKind::EcP384(key) => Some(key.public_key().as_ref().to_vec()),
            KeyKind::Ed25519(key) => Some(key.public_key().as_ref().to_vec()),
            KeyKind::Hmac(..) => None,
        }
    }

    /// Returns the public key as a `BEGIN PUBLIC KEY` PEM (X.509
    /// SubjectPublicKeyInfo, RFC 5280), with a final newline. `None` for HMAC.
    pub fn public_key_pem(&self) -> Option<String> {
        let spki = self.subject_public_key_info()?;

        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        let encoded = STANDARD.encode(spki);
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }

    fn subject_public_key_info(&self) -> Option<Vec<u8>> {
        // DER of the AlgorithmIdentifier contents for each key type.
        const RSA_ENCRYPTION: &[u8] = &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        const EC_P256: &[u8] = &[
            0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07,
        ];
        const EC_P384: &[u8] = &[
            0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
            0x00, 0x22,
        ];
        const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

        let (algorithm, public_key): (&[u8], &[u8]) = match &self.kind {
            KeyKind::Rsa(key) => (RSA_ENCRYPTION, key.public().as_ref()),
            KeyKind::EcP256(key) => (EC_P256, key.public_key().as_ref()),
            KeyKind::EcP384(key) => (EC_P384, key.public_key().as_ref()),
            KeyKind::Ed25519(key) => (ED25519, key.public_key().as_ref()),
            KeyKind::Hmac(..) => return None,
        };

        let mut bit_string = vec![0x00];
        bit_string.extend_from_slice(public_key);

        let mut body = der_element(0x30, algorithm);
        body.extend(der_element(0x03, &bit_string));
        Some(der_element(0x30, &body))
    }
}

fn rsa_encoding(alg: Algorithm) -> Option<&'static dyn signature::RsaEncoding> {
    match alg {
        Algorithm::Rs256 => Some(&signature::RSA_PKCS1_SHA256),
        Algorithm::Rs384 => Some(&signature::RSA_PKCS1_SHA384),
        Algorithm::Rs512 => Some(&signature::RSA_PKCS1_SHA512),
        Algorithm::Ps256 => Some(&signature::RSA_PSS_SHA256),
        Algorithm::Ps384 => Some(&signature::RSA_PSS_SHA384),
        Algorithm::Ps512 => Some(&signature::RSA_PSS_SHA512),
        _ => None,
    }
}

/// Builds an EC JWK from an uncompressed SEC1 point `04 || x || y`.
fn ec_jwk(crv: &str, point: &[u8]) -> Value {
    let coordinates = &point[1..];
    let (x, y) = coordinates.split_at(coordinates.len() / 2);
    json!({"kty": "EC", "crv": crv, "x": BASE64URL.encode(x), "y": BASE64URL.encode(y)})
}

/// Encodes one DER element with a definite length (X.690 section 8.1.3).
fn der_element(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = len.to_be_bytes();
        let skip = len_bytes.iter().take_while(|byte| **byte == 0).count();
        out.push(0x80 | (len_bytes.len() - skip) as u8);
        out.extend_from_slice(&len_bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// Decodes the single `PRIVATE KEY` block of RFC 7468 section 10: base64 lines
/// between the markers, each line ending in LF or CRLF, nothing else.
fn decode_pem(pem: &str) -> Result<Vec<u8>, SignError> {
    let text = pem.trim();
    if !text.starts_with(PEM_BEGIN) {
        return Err(SignError::InvalidPem(begin_line_problem(text)));
    }
    let Some(body) = text[PEM_BEGIN.len()..].strip_suffix(PEM_END) else {
        return Err(SignError::InvalidPem(
            "the text does not end with `-----END PRIVATE KEY-----`",
        ));
    };

    let mut base64_text = String::with_capacity(body.len());
    for line in body.lines() {
        if line.bytes().any(|byte| byte.is_ascii_whitespace()) {
            return Err(SignError::InvalidPem(
                "a line inside the block contains whitespace",
            ));
        }
        base64_text.push_str(line);
    }

    STANDARD
        .decode(base64_text)
        .map_err(|_| SignError::InvalidPem("the block is not valid base64"))
}

fn begin_line_problem(text: &str) -> &'static str {
    if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        "encrypted keys are not supported; decrypt with `openssl pkcs8 -in key.pem -out plain.pem`"
    } else if text.starts_with("-----BEGIN RSA PRIVATE KEY-----")
        || text.starts_with("-----BEGIN EC PRIVATE KEY-----")
    {
        "expected PKCS#8 `BEGIN PRIVATE KEY`; convert with `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
    } else {
        "the text does not start with `-----BEGIN PRIVATE KEY-----`"
    }
}

/// Fixed test keys, generated with `openssl genpkey` for this test suite only.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const RSA_2048_PKCS8_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDNBgyorKZrAIHa\n",
        "ZemmRp3q5X6ru713b8jOAzvN8cEiMozI3aOnZUtqZcGhP2D1BVOy7cAWnMGSJaWb\n",
        "6Ao/20XYcQZXe2bims3bdCDz0a+P8BBtDMyuMdwkADxskbFTdfrMXZHa7iRvKui2\n",
        "fenT9QCvGqic6F9bD4BgRLZuDrQe+sbHNpkjFI7/3vw4cuihYmk5OUovNBewgDQL\n",
        "/nK11EAVtd8etdBYkWeKfmYqcFDZ4W1Hs+uXVz/sWSUeXXDFw1dip18meGoBn19X\n",
        "wuAMRBaXQ7Yits2NQf8YjB9MDDFojLOeveOSGxDQjZdTroY4y8jsVyVS58oMY4PK\n",
        "NEEbvOfvAgMBAAECggEAM24pDscAmCbwbBDUo9ljE+Gt/PaDeMqZ3NQC1I6onCOC\n",
        "HYE75GoMmQwdno1/jPdhH6l0XjfEdxzqhkmXCJ3Az6LKrHdQP9gFe9+NxJv9JmZa\n",
        "OIDVd30adA17GuERUpZt64YtaHYEvb5N0jmTxo/XNBXD5liEUxt4YK3b9Y/Kr1pW\n",
        "PMqB1w2+NvYsmRqK8f5KpIJ6n3MAatYM3aETILdshs0lqX7PM+qesbTLLwWldbvN\n",
        "zah46+0y/RKPRvxbD8V8d9asuKwEt3koTGw4enW9ic9BP4i+x4JtqHsGx9oSjAEe\n",
        "IdkHAepD9ttXvEda49C5gEmoQ1J66F+EmtinSc+ngQKBgQDpgTspmGWgg7I/ivK7\n",
        "CAMWWFDsS1ISV95XVp3uJivZICstuTdf8xCt0YYHsJ8IPi3N/2F79rx6/tbVpm4M\n",
        "q9BUObQG/YzCbN2rfSXes7RwXapM45PkaQpBsx+9Q9FrKSGcfSuvDzeIkW5VrImv\n",
        "jZsvd7Fq4d24x0DQknFzZSpjmQKBgQDgxmgV8tV3sUyyeVFGcX1GINvsP5tDyqQ7\n",
        "0251VdDOoe0pYe+qh7t73cozUFJF0KBCFAcXPFoB7wrGqXWGi02i59+3GHcYBGiC\n",
        "zzTo00th9yBm5gjmpWHj2CVDN63X95tEbhKguG+WLnCgFgdztRl4bX9Z0aqL7mTl\n",
        "Ymh0OwLcxwKBgDB6OfQqxX6LmOgEStx1j16GO1azVHimcWykeOlGV3gea5h0iYCM\n",
        "D/xmMXNLQdkOP6gyyuRXl03ZtnRotxQ+X2P9Dtkcrqp2u5asxr3zhRSG/aI05TFY\n",
        "dV6qd35to/6hbW71taoEeL0LpGJ5DaS6u2shaF4OQl/oThZ/MLqKWECRAoGBAI5v\n",
        "C5wE8iJTtq9N0yPZXLHotpPBRqkxqtrCQzeVNqkJ0RgtGEsuka6PP8c+ebQF3Nei\n",
        "i0+9Dag2CtUSowesFHlLh+clWKpeeL+TgAqdgiJFEEJEOJW3bQ2NdSdgDAhTvg8h\n",
        "1SoFVaiMKxA2hWhb9RTsBgwroW/klAkLT/d/QXQXAoGARQhjms9pZuKDG1usGmtb\n",
        "D1goG/rE+cngZjAPKj3qRPWWdl3ZjoPMWzHJsJrR6/abAUv5xI8gX9xQcX8Bs+CA\n",
        "zYvE8pXYTy05KI0aIbreMjfJZp4yybI9zikGsWd1EuasHZ3YsNXYmW0+iHTzaqhl\n",
        "MJAtUwj1xettUU9vEQx1Mig=\n",
        "-----END PRIVATE KEY-----\n",
    );

    pub const P256_PKCS8_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKt5T5PegUGKWFvxb\n",
        "UmSu5BS1pCn9a6A1t3SkTwtYomyhRANCAATqZ5CdKb0n2OvUInAdftojQphZA+AY\n",
        "B47sn+eNqnUEsml5h1k8NdB92pgGeEULowSvYLZuQAVAAaqwgPsbADnA\n",
        "-----END PRIVATE KEY-----\n",
    );

    pub const P384_PKCS8_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDDHQyMJOpuraD4+6MwO\n",
        "OQLHmlRFKnDMQrjOeZNEIlmPGpkSz5/q89h254QnejowjQihZANiAAQ1lgm1kCAd\n",
        "qQQzTCyPpRRVWHv0mxwu7zGG3VQKGXCSCIPWl4tgs99UVsucyEzG9T/oOLnFVsxO\n",
        "v+wr7bzV9NWaBnKO9q2czGNASd9EQ5FSqmnyOO2jBiv8rJlEQUQLnSQ=\n",
        "-----END PRIVATE KEY-----\n",
    );

    pub const ED25519_PKCS8_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MC4CAQAwBQYDK2VwBCIEIC5FYXIUN+jvysc7tJJ3v6nrLm+Uqth3SPTbeCNseoGu\n",
        "-----END PRIVATE KEY-----\n",
    );

    /// Too small for ring, which signs only with RSA keys of 2048 bits or more.
    pub const RSA_1024_PKCS8_PEM: &str = concat!(
        "-----BEGIN PRIVATE KEY-----\n",
        "MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAKdZM1lnWDpNv9Yw\n",
        "rd4yueuTay05yZLfaCgY03gWowh394aMjBs/f3Sw1KnLYqFZDmXrCI70D2/1DBJh\n",
        "1/hTWf0b8OjVIpLLmU97yttpja65oimwYxmOUsQnCFrTmTaU4EiB8dMOzznsGsNJ\n",
        "jpZu7Xvh8rRmB2APkf4tWuSWl+4rAgMBAAECgYBUxA4KfxpljfRZ3hZzsmYSOX3U\n",
        "Tq0XxCnSBaE39t9l7r5mXNKrCqLYzKkryGWRLLbqUP7oyh73qrwOo5jto+q0RGRQ\n",
        "JVWtRrJKWgnW52y0iOFAbQct7jX1xbbHyH5JfXeNBgXrsYDkfKcJVWS1hLv6oPCN\n",
        "pK7cTnHTv3Z3NEgBQQJBANtpXR8Woy+8/ZgZj4PwxHIhx4TqIdlqIAHC22viB6Mq\n",
        "jeoj/crRv9XghNttPOa4Htg4uqfxGS5elQUauOqnX8MCQQDDQUWdI5NXoVUIhcOS\n",
        "6jfg3AUl9DWy18SZaBDS7JB8DRGR0+10QuX6YFMgEkYePLW/RJUcGuV0WxgUxOKS\n",
        "3fl5AkBkReff8FmN1KJU48GZ++vbeSKU1Oe5U+3iwCnFSRxSbn1C90Xibi9s0FoH\n",
        "agn+K0E1cd+kJuRqM6GJHqhJ3Uo/AkEAwxUI/5qW0TwA4JX9NGFNWR2bCzO3HyvT\n",
        "Ys6F2KfBKCBKiJ/spHdencz14JpBcl6H3EUikcURsjJ9meqo0cJ0SQJBAKnrzOx+\n",
        "OXetfEwF2cmOP0BVfbxJP7wM3xGrZI59OdQ+pgZN4UxjlD7MduqhAqcAiC+NUkaL\n",
        "8lMoenMCzBZoiVY=\n",
        "-----END PRIVATE KEY-----\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwk::{KeySet, VerifyingKey};
    use crate::authn::jwt;

    fn rsa_key() -> SigningKey {
        SigningKey::from_pkcs8_pem(fixtures::RSA_2048_PKCS8_PEM).unwrap()
    }

    fn verifying_key(signer: &SigningKey) -> VerifyingKey {
        VerifyingKey::from_jwk(&signer.public_jwk(Some("k1")).unwrap()).unwrap()
    }

    fn signed(signer: &SigningKey, alg: Algorithm) -> String {
        signer
            .sign(alg, &json!({"kid": "k1"}), &json!({"sub": "alice"}))
            .unwrap()
    }

    #[test]
    fn every_key_type_signs_tokens_that_verify() {
        let cases = [
            (rsa_key(), Algorithm::Rs256),
            (rsa_key(), Algorithm::Rs384),
            (rsa_key(), Algorithm::Rs512),
            (rsa_key(), Algorithm::Ps256),
            (rsa_key(), Algorithm::Ps384),
            (rsa_key(), Algorithm::Ps512),
            (
                SigningKey::generate(Algorithm::Es256).unwrap(),
                Algorithm::Es256,
            ),
            (
                SigningKey::generate(Algorithm::Es384).unwrap(),
                Algorithm::Es384,
            ),
            (
                SigningKey::generate(Algorithm::EdDsa).unwrap(),
                Algorithm::EdDsa,
            ),
        ];
        for (signer, alg) in cases {
            let keys = KeySet::from_keys(vec![verifying_key(&signer)]);
            let token = signed(&signer, alg);
            let claims = jwt::parse(&token, 8192).unwrap().verify(&keys);
            assert!(claims.is_ok(), "{alg}: {claims:?}");
        }
    }

    #[test]
    fn openssl_pkcs8_keys_load_as_their_type() {
        let cases = [
            (fixtures::RSA_2048_PKCS8_PEM, "RSA", Algorithm::Rs256),
            (fixtures::P256_PKCS8_PEM, "EC P-256", Algorithm::Es256),
            (fixtures::P384_PKCS8_PEM, "EC P-384", Algorithm::Es384),
            (fixtures::ED25519_PKCS8_PEM, "OKP Ed25519", Algorithm::EdDsa),
        ];
        for (pem, key_type, alg) in cases {
            let signer = SigningKey::from_pkcs8_pem(pem).unwrap();
            assert_eq!(signer.key_type(), key_type);
            assert_eq!(signer.default_algorithm(), alg);
        }
        assert_eq!(
            SigningKey::from_pkcs8_pem(fixtures::RSA_1024_PKCS8_PEM).unwrap_err(),
            SignError::UnsupportedKey
        );
    }

    #[test]
    fn hmac_key_signs_tokens_that_verify() {
        let secret = [5u8; 64];
        for alg in [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512] {
            let signer = SigningKey::hmac(&secret, alg).unwrap();
            let key = VerifyingKey::hmac(&secret, alg, Some("k1".into())).unwrap();
            let token = signed(&signer, alg);
            assert!(
                jwt::parse(&token, 8192).unwrap().verify_with(&key).is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn signing_rejects_algorithm_of_other_key_type() {
        let signer = rsa_key();
        let error = signer.sign_bytes(Algorithm::Es256, b"x").unwrap_err();
        assert_eq!(
            error,
            SignError::AlgorithmNotAllowedForKey {
                alg: Algorithm::Es256
            }
        );
        assert!(SigningKey::hmac(b"secret", Algorithm::Rs256).is_err());
    }

    #[test]
    fn sign_sets_header_alg() {
        let signer = SigningKey::hmac(&[1; 32], Algorithm::Hs256).unwrap();
        let token = signer
            .sign(
                Algorithm::Hs256,
                &json!({"alg": "none", "typ": "JWT"}),
                &json!({}),
            )
            .unwrap();
        let header = jwt::parse(&token, 8192).unwrap().header().clone();
        assert_eq!(header.alg, Algorithm::Hs256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
    }

    #[test]
    fn sign_rejects_non_object_claims() {
        let signer = SigningKey::hmac(&[1; 32], Algorithm::Hs256).unwrap();
        let error = signer
            .sign(Algorithm::Hs256, &json!({}), &json!("text"))
            .unwrap_err();
        assert_eq!(error, SignError::NotAnObject("claims"));
    }

    #[test]
    fn public_jwk_has_expected_members() {
        let rsa = rsa_key().public_jwk(Some("r")).unwrap();
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(rsa["kid"], "r");
        assert_eq!(
            jwt::decode_base64url(rsa["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );

        let ec = SigningKey::generate(Algorithm::Es384)
            .unwrap()
            .public_jwk(None)
            .unwrap();
        assert_eq!(ec["crv"], "P-384");
        assert_eq!(
            jwt::decode_base64url(ec["x"].as_str().unwrap())
                .unwrap()
                .len(),
            48
        );
        assert!(ec.get("kid").is_none());

        assert!(SigningKey::hmac(&[1; 32], Algorithm::Hs256)
            .unwrap()
            .public_jwk(None)
            .is_none());
    }

    #[test]
    fn public_key_pem_wraps_spki() {
        let pem = rsa_key().public_key_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));

        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        // SEQUENCE, two length bytes, then the rsaEncryption AlgorithmIdentifier.
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x22]);
        assert_eq!(&der[4..6], &[0x30, 0x0d]);

        let ed = SigningKey::generate(Algorithm::EdDsa)
            .unwrap()
            .subject_public_key_info()
            .unwrap();
        assert_eq!(ed.len(), 44, "Ed25519 SPKI is always 44 bytes");
    }

    #[test]
    fn pem_parser_is_strict() {
        let good = fixtures::RSA_2048_PKCS8_PEM;
        let crlf = good.replace('\n', "\r\n");
        assert!(
            SigningKey::from_pkcs8_pem(&crlf).is_ok(),
            "CRLF line endings"
        );

        let cases = [
            (format!("junk\n{good}"), "text before the block"),
            (
                good.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
                "PKCS#1 form",
            ),
            (
                good.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
                "encrypted form",
            ),
            (good.replacen("\n", "\n ", 2), "space inside the block"),
            (
                good.trim_end()
                    .trim_end_matches("-----END PRIVATE KEY-----")
                    .to_owned(),
                "no end marker",
            ),
            (good.replacen("M", "*", 1), "non-base64 byte"),
        ];
        for (pem, description) in cases {
            assert!(
                matches!(
                    SigningKey::from_pkcs8_pem(&pem),
                    Err(SignError::InvalidPem(_))
                ),
                "{description}"
            );
        }
    }

    #[test]
    fn debug_output_omits_key_material() {
        let signer =
            SigningKey::hmac(b"very-secret-value-0123456789abcdef", Algorithm::Hs256).unwrap();
        let printed = format!("{signer:?}");
        assert!(printed.contains("HMAC"), "{printed}");
        assert!(!printed.contains("very-secret"), "{printed}");
    }
}
