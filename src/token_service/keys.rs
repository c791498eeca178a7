//! The token service's signing keys on disk: one PKCS#8 PEM file per key in
//! the keys directory, named by the key's RFC 7638 thumbprint, listed in the
//! manifest (see [`manifest`](super::manifest)).
//!
//! With a keys passphrase, key files are encrypted at rest. The PKCS#8 DER
//! is sealed with AES-256-GCM under a key derived from the passphrase by
//! PBKDF2-HMAC-SHA256: 600,000 iterations, a random 16-byte salt per file
//! and a random 96-bit nonce. The `kid` is the additional authenticated
//! data, so a file cannot be passed off as another key. Such a file is PEM armor
//! labelled `PORTCULLIS ENCRYPTED PRIVATE KEY` around
//! `version (1) || iterations (u32, big-endian) || salt || nonce ||
//! ciphertext || tag`.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};
use serde_json::Value;

use crate::authn::config::Secret;
use crate::authn::jwk::{Algorithm, KeySet, VerifyingKey};
use crate::authn::jwt::BASE64URL;
use crate::authn::jwt_sign::SigningKey;
use crate::token_service::manifest::{self, KeyEntry, Manifest};

/// PBKDF2 iterations of newly encrypted key files; the count is stored in
/// each file, so it can be raised without breaking older files.
const KDF_ITERATIONS: u32 = 600_000;
const SALT_BYTES: usize = 16;
const FORMAT_VERSION: u8 = 1;
const ENCRYPTED_LABEL: &str = "PORTCULLIS ENCRYPTED PRIVATE KEY";

/// A signing key loaded into memory with its manifest entry.
pub struct LoadedKey {
    pub entry: KeyEntry,
    pub algorithm: Algorithm,
    pub signer: SigningKey,
    /// The public JWK with `kid`, `use` and `alg`.
    pub jwk: Value,
}

/// Every key of the manifest, loaded, in `signs_from` order.
pub struct KeySnapshot {
    pub manifest: Manifest,
    pub keys: Vec<Arc<LoadedKey>>,
}

impl KeySnapshot {
    /// Returns the key that signs at `now`.
    pub fn signing_key(&self, now: u64, retention: u64) -> Option<&Arc<LoadedKey>> {
        self.manifest
            .active(now, retention)
            .map(|index| &self.keys[index])
    }

    /// Returns the keys published at `now`: next, active and retiring.
    pub fn published(&self, now: u64, retention: u64) -> Vec<&Arc<LoadedKey>> {
        self.manifest
            .states(now, retention)
            .iter()
            .zip(&self.keys)
            .filter(|(state, _)| state.is_published())
            .map(|(_, key)| key)
            .collect()
    }

    /// Returns the JWKS document of the keys published at `now`.
    pub fn jwks(&self, now: u64, retention: u64) -> Value {
        let keys: Vec<Value> = self
            .published(now, retention)
            .iter()
            .map(|key| key.jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Returns the verification keys published at `now`.
    pub fn key_set(&self, now: u64, retention: u64) -> KeySet {
        let keys = self
            .published(now, retention)
            .iter()
            .filter_map(|key| VerifyingKey::from_jwk(&key.jwk).ok())
            .collect();
        KeySet::from_keys(keys)
    }
}

/// Generates a key for ES256 or EdDSA and returns its PKCS#8 DER.
fn generate_pkcs8(algorithm: Algorithm) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let document = match algorithm {
        Algorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        }
        Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        other => return Err(format!("cannot generate a {other} token signing key")),
    };
    document
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| "the cryptographic library failed to generate a key".to_string())
}

/// Returns the RFC 7638 thumbprint of a public EC or OKP JWK: SHA-256 over
/// the required members in lexicographic order, base64url.
pub fn thumbprint(jwk: &Value) -> String {
    let member = |name: &str| jwk[name].as_str().unwrap_or_default().to_string();
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv"),
            member("x"),
            member("y")
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
            member("crv"),
            member("kty"),
            member("x")
        ),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    BASE64URL.encode(digest.as_ref())
}

/// Builds the published JWK of a signing key.
fn public_jwk(signer: &SigningKey, kid: &str, algorithm: Algorithm) -> Result<Value, String> {
    let mut jwk = signer
        .public_jwk(Some(kid))
        .ok_or("a token signing key must be asymmetric")?;
    jwk["alg"] = algorithm.name().into();
    Ok(jwk)
}

/// Creates a key file in `dir` and returns its manifest entry; the caller
/// adds the entry to the manifest and saves it.
pub fn create_key(
    dir: &Path,
    algorithm: Algorithm,
    passphrase: Option<&Secret>,
    now: u64,
    signs_from: u64,
) -> Result<KeyEntry, String> {
    let der = generate_pkcs8(algorithm)?;
    let signer = SigningKey::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
    let jwk = signer
        .public_jwk(None)
        .ok_or("a token signing key must be asymmetric")?;
    let entry = KeyEntry {
        kid: thumbprint(&jwk),
        algorithm: algorithm.name().to_string(),
        created_at: now,
        signs_from,
        encrypted: passphrase.is_some(),
    };
    let contents = match passphrase {
        Some(passphrase) => encrypt(&der, &entry.kid, passphrase.expose(), KDF_ITERATIONS)?,
        None => pem("PRIVATE KEY", &der),
    };
    manifest::write_atomically(&dir.join(entry.file_name()), contents.as_bytes())?;
    Ok(entry)
}

/// Loads the key file of a manifest entry.
fn load_key(
    dir: &Path,
    entry: &KeyEntry,
    passphrase: Option<&Secret>,
) -> Result<LoadedKey, String> {
    let path = dir.join(entry.file_name());
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let signer = if text
        .trim_start()
        .starts_with(&format!("-----BEGIN {ENCRYPTED_LABEL}-----"))
    {
        let passphrase = passphrase.ok_or_else(|| {
            format!(
                "{} is encrypted; set token_service.keys_passphrase",
                path.display()
            )
        })?;
        let der = decrypt(&text, &entry.kid, passphrase.expose())
            .map_err(|problem| format!("cannot decrypt {}: {problem}", path.display()))?;
        SigningKey::from_pkcs8_der(&der)
    } else {
        SigningKey::from_pkcs8_pem(&text)
    }
    .map_err(|error| format!("{} is not a usable signing key: {error}", path.display()))?;

    let algorithm = Algorithm::from_name(&entry.algorithm)
        .filter(|alg| matches!(alg, Algorithm::Es256 | Algorithm::EdDsa) && signer.allows(*alg))
        .ok_or_else(|| {
            format!(
                "{} does not hold an {} key",
                path.display(),
                entry.algorithm
            )
        })?;
    let jwk = public_jwk(&signer, &entry.kid, algorithm)?;
    if thumbprint(&jwk) != entry.kid {
        return Err(format!(
            "{} holds a key whose thumbprint is not its kid {}",
            path.display(),
            entry.kid
        ));
    }
    Ok(LoadedKey {
        entry: entry.clone(),
        algorithm,
        signer,
        jwk,
    })
}

/// Loads every key the manifest lists. Keys already in `previous` are
/// reused, so an encrypted key is decrypted once, not on every change of
/// the directory.
pub fn load_all(
    dir: &Path,
    manifest: Manifest,
    passphrase: Option<&Secret>,
    previous: Option<&KeySnapshot>,
) -> Result<KeySnapshot, String> {
    let mut keys = Vec::with_capacity(manifest.keys.len());
    for entry in &manifest.keys {
        let reused = previous
            .and_then(|p| p.keys.iter().find(|k| k.entry == *entry))
            .cloned();
        let key = match reused {
            Some(key) => key,
            None => Arc::new(load_key(dir, entry, passphrase)?),
        };
        keys.push(key);
    }
    Ok(KeySnapshot { manifest, keys })
}

/// Deletes the key file of a removed entry.
pub fn delete_key(dir: &Path, entry: &KeyEntry) -> Result<(), String> {
    let path = dir.join(entry.file_name());
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(format!("cannot delete {}: {error}", path.display())),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let mut text = format!("-----BEGIN {label}-----\n");
    let encoded = STANDARD.encode(der);
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

fn derive_key(passphrase: &[u8], salt: &[u8], iterations: NonZeroU32) -> LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        passphrase,
        &mut key,
    );
    let unbound = UnboundKey::new(&aead::AES_256_GCM, &key).expect("a 32-byte AES-256 key");
    LessSafeKey::new(unbound)
}

fn encrypt(der: &[u8], kid: &str, passphrase: &[u8], iterations: u32) -> Result<String, String> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; aead::NONCE_LEN];
    rng.fill(&mut salt)
        .and_then(|_| rng.fill(&mut nonce))
        .map_err(|_| "the system random source failed")?;
    let iterations = NonZeroU32::new(iterations).ok_or("zero PBKDF2 iterations")?;
    let key = derive_key(passphrase, &salt, iterations);

    let mut sealed = der.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(kid.as_bytes()),
        &mut sealed,
    )
    .map_err(|_| "the cryptographic library failed to encrypt the key")?;

    let mut body = vec![FORMAT_VERSION];
    body.extend_from_slice(&iterations.get().to_be_bytes());
    body.extend_from_slice(&salt);
    body.extend_from_slice(&nonce);
    body.extend_from_slice(&sealed);
    Ok(pem(ENCRYPTED_LABEL, &body))
}

fn decrypt(text: &str, kid: &str, passphrase: &[u8]) -> Result<Vec<u8>, &'static str> {
    let begin = format!("-----BEGIN {ENCRYPTED_LABEL}-----");
    let end = format!("-----END {ENCRYPTED_LABEL}-----");
    let inner = text
        .trim()
        .strip_prefix(&begin)
        .and_then(|rest| rest.strip_suffix(&end))
        .ok_or("the PEM armor is incomplete")?;
    let base64_text: String = inner.split_whitespace().collect();
    let body = STANDARD
        .decode(base64_text)
        .map_err(|_| "the PEM body is not valid base64")?;

    let header = 1 + 4 + SALT_BYTES + aead::NONCE_LEN;
    if body.len() <= header + aead::AES_256_GCM.tag_len() || body[0] != FORMAT_VERSION {
        return Err("unknown format version or truncated file");
    }
    let iterations = u32::from_be_bytes(body[1..5].try_into().expect("4 bytes"));
    let iterations = NonZeroU32::new(iterations).ok_or("zero PBKDF2 iterations")?;
    let salt = &body[5..5 + SALT_BYTES];
    let nonce: [u8; aead::NONCE_LEN] = body[5 + SALT_BYTES..header].try_into().expect("12 bytes");
    let key = derive_key(passphrase, salt, iterations);

    let mut sealed = body[header..].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| "wrong passphrase, or the file was changed")?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_key_needs_passphrase_and_kid() {
        let der = generate_pkcs8(Algorithm::Es256).unwrap();
        let text = encrypt(&der, "kid-1", b"passphrase", 1_000).unwrap();

        assert!(text.starts_with("-----BEGIN PORTCULLIS ENCRYPTED PRIVATE KEY-----\n"));
        assert_eq!(decrypt(&text, "kid-1", b"passphrase").unwrap(), der);
        assert!(decrypt(&text, "kid-1", b"other passphrase").is_err());
        assert!(decrypt(&text, "kid-2", b"passphrase").is_err());
    }

    #[test]
    fn created_keys_load_with_thumbprint_kids() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = Secret::for_tests(b"correct horse");
        // (description, algorithm, passphrase)
        let cases = [
            ("plain ES256", Algorithm::Es256, None),
            ("plain EdDSA", Algorithm::EdDsa, None),
            ("encrypted ES256", Algorithm::Es256, Some(&passphrase)),
        ];
        for (description, algorithm, passphrase) in cases {
            let entry = create_key(dir.path(), algorithm, passphrase, 100, 100).unwrap();
            let loaded = load_key(dir.path(), &entry, passphrase).unwrap();

            assert_eq!(loaded.algorithm, algorithm, "{description}");
            assert_eq!(loaded.jwk["kid"], entry.kid.as_str(), "{description}");
            assert_eq!(loaded.jwk["alg"], algorithm.name(), "{description}");
            assert!(
                loaded.jwk.get("d").is_none(),
                "{description}: private part published"
            );
            assert_eq!(entry.encrypted, passphrase.is_some(), "{description}");
        }
    }

    #[test]
    fn encrypted_key_without_passphrase_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = Secret::for_tests(b"correct horse");
        let entry = create_key(dir.path(), Algorithm::Es256, Some(&passphrase), 1, 1).unwrap();

        let error = load_key(dir.path(), &entry, None).err().unwrap();

        assert!(
            error.ends_with("is encrypted; set token_service.keys_passphrase"),
            "{error}"
        );
    }

    #[test]
    fn key_under_another_kid_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let entry = create_key(dir.path(), Algorithm::Es256, None, 1, 1).unwrap();
        let other = create_key(dir.path(), Algorithm::Es256, None, 1, 1).unwrap();
        std::fs::copy(
            dir.path().join(other.file_name()),
            dir.path().join(entry.file_name()),
        )
        .unwrap();

        let error = load_key(dir.path(), &entry, None).err().unwrap();

        assert!(error.contains("whose thumbprint is not its kid"), "{error}");
    }

    #[test]
    fn thumbprint_of_known_ec_key() {
        // The P-256 key of RFC 7517 appendix A.1; the expected value is
        // SHA-256 of the canonical JSON, computed separately with Python's
        // hashlib.
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        });

        assert_eq!(
            thumbprint(&jwk),
            "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
    }
}
