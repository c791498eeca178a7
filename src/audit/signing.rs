//! Ed25519 keys for checkpoint records: the writer signs with a PKCS#8 key,
//! and `audit verify` checks with the public key. Both name the key by its
//! RFC 7638 thumbprint, the `key_id` field.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pemfile::Item;

use crate::token_service::keys::thumbprint;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte
/// key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Problem with a key file. The message names the file, never key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// Description of the problem.
    pub reason: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for KeyError {}

/// Private key that signs checkpoints.
pub struct CheckpointSigner {
    key_pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads an Ed25519 private key from a PKCS#8 PEM file
    /// (`BEGIN PRIVATE KEY`).
    pub fn from_pem_file(path: &Path) -> Result<CheckpointSigner, KeyError> {
        let error = |reason: String| KeyError {
            path: path.to_path_buf(),
            reason,
        };
        let items = read_pem_items(path)?;
        let der = items
            .into_iter()
            .find_map(|item| match item {
                Item::Pkcs8Key(der) => Some(der),
                _ => None,
            })
            .ok_or_else(|| error("expected a PKCS#8 PEM block `BEGIN PRIVATE KEY`".into()))?;

        Self::from_pkcs8_der(der.secret_pkcs8_der())
            .map_err(|_| error("the PKCS#8 key is not a valid Ed25519 key".into()))
    }

    /// Loads an Ed25519 private key from PKCS#8 DER bytes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<CheckpointSigner, ring::error::KeyRejected> {
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)?;
        let key_id = key_id(key_pair.public_key().as_ref());
        Ok(CheckpointSigner { key_pair, key_id })
    }

    /// Returns the key's thumbprint, the `key_id` of its checkpoints.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `message` and returns the base64url signature.
    pub fn sign(&self, message: &[u8]) -> String {
        BASE64URL.encode(self.key_pair.sign(message).as_ref())
    }

    /// Returns the public key as SubjectPublicKeyInfo PEM
    /// (`BEGIN PUBLIC KEY`), the file `audit verify --public-key` reads.
    pub fn public_key_pem(&self) -> String {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key_pair.public_key().as_ref());
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
    }
}

/// Public key that checks checkpoint signatures.
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    public_key: Vec<u8>,
    key_id: String,
}

impl CheckpointVerifier {
    /// Loads an Ed25519 public key from a PEM file: a SubjectPublicKeyInfo
    /// (`BEGIN PUBLIC KEY`), or the PKCS#8 private key itself.
    pub fn from_pem_file(path: &Path) -> Result<CheckpointVerifier, KeyError> {
        let error = |reason: &str| KeyError {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        for item in read_pem_items(path)? {
            match item {
                Item::SubjectPublicKeyInfo(der) => {
                    let der = der.as_ref();
                    return match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
                        Some(key) if key.len() == 32 => Ok(Self::from_raw(key)),
                        _ => Err(error("the public key is not an Ed25519 key")),
                    };
                }
                Item::Pkcs8Key(der) => {
                    return CheckpointSigner::from_pkcs8_der(der.secret_pkcs8_der())
                        .map(|signer| Self::from_raw(signer.key_pair.public_key().as_ref()))
                        .map_err(|_| error("the PKCS#8 key is not a valid Ed25519 key"));
                }
                _ => continue,
            }
        }
        Err(error(
            "expected a PEM block `BEGIN PUBLIC KEY` or `BEGIN PRIVATE KEY`",
        ))
    }

    /// Builds a verifier from the 32 raw bytes of an Ed25519 public key.
    pub fn from_raw(public_key: &[u8]) -> CheckpointVerifier {
        CheckpointVerifier {
            public_key: public_key.to_vec(),
            key_id: key_id(public_key),
        }
    }

    /// Returns the key's thumbprint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Checks a base64url signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let Ok(signature) = BASE64URL.decode(signature) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, &signature)
            .is_ok()
    }
}

/// Returns the RFC 7638 thumbprint of a raw Ed25519 public key.
fn key_id(public_key: &[u8]) -> String {
    let jwk = serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": BASE64URL.encode(public_key),
    });
    thumbprint(&jwk)
}

fn read_pem_items(path: &Path) -> Result<Vec<Item>, KeyError> {
    let error = |reason: String| KeyError {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| error(format!("cannot read the file: {e}")))?;
    rustls_pemfile::read_all(&mut text.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| error("the file is not valid PEM".into()))
}
