//! JSON Web Keys (RFC 7517) for the JWT authenticator: the signature algorithms
//! Portcullis accepts, verifying keys bound to those algorithms, and the key set
//! loaded from an issuer's JWKS document.
//!
//! Every key is parsed once, when the key set is loaded, so the per-request
//! path only looks keys up and runs the signature check.

use std::fmt;

use ring::{hmac, signature};
use serde_json::{Map, Value};

use crate::authn::jwt::{decode_base64url, parse_json_strict, JsonError};

/// Maximum number of usable keys taken from one JWKS document. Later keys are
/// reported as skipped. It bounds the work for a token without `kid`, which is
/// checked against every key that allows its `alg`.
pub const MAX_JWKS_KEYS: usize = 32;

/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;

/// Largest RSA modulus that ring verifies, in bits.
pub const MAX_RSA_MODULUS_BITS: usize = 8192;

/// A JWS signature algorithm (RFC 7518 section 3, RFC 8037 for `EdDSA`).
///
/// `none` has no variant: an unsigned token cannot be represented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

impl Algorithm {
    /// All supported algorithms, in declaration order.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    /// Parses a JOSE `alg` value. The match is exact and case-sensitive, so
    /// `none` in any casing, `hs256` and `"HS256 "` all return `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Returns the registered JOSE name, such as `RS256`.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// Returns whether this is an RSA algorithm (`RS*` or `PS*`).
    pub fn is_rsa(&self) -> bool {
        self.rsa_parameters().is_some()
    }

    /// Returns whether this is an HMAC algorithm (`HS*`).
    pub fn is_hmac(&self) -> bool {
        self.hmac_algorithm().is_some()
    }

    pub(crate) fn rsa_parameters(&self) -> Option<&'static signature::RsaParameters> {
        match self {
            Algorithm::Rs256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::Rs384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::Rs512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::Ps256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::Ps384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::Ps512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            _ => None,
        }
    }

    pub(crate) fn hmac_algorithm(&self) -> Option<hmac::Algorithm> {
        match self {
            Algorithm::Hs256 => Some(hmac::HMAC_SHA256),
            Algorithm::Hs384 => Some(hmac::HMAC_SHA384),
            Algorithm::Hs512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reason a key cannot be used for verification: a JWK that was skipped while
/// loading a JWKS, or an invalid HMAC configuration. Messages name the member
/// or limit involved and never contain key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwkError {
    NotAnObject,
    MissingMember(&'static str),
    /// The member has the wrong JSON type or is not valid base64url.
    InvalidMember(&'static str),
    /// `kty` is `oct`. Shared secrets are configured explicitly, never taken
    /// from a JWKS, because anyone who can read the JWKS could then sign tokens.
    SymmetricKeyNotTrusted,
    UnsupportedKeyType,
    UnsupportedCurve,
    /// `use` is present and is not `sig`.
    NotForSignatures,
    /// `key_ops` is present and does not contain `verify`.
    KeyOpsWithoutVerify,
    /// `alg` names an algorithm that Portcullis does not verify.
    UnsupportedAlgorithm,
    /// `alg` names an algorithm that does not fit the key type or curve.
    AlgorithmNotAllowedForKey,
    RsaModulusTooSmall {
        bits: usize,
    },
    RsaModulusTooLarge {
        bits: usize,
    },
    InvalidRsaModulus,
    InvalidRsaExponent,
    /// The algorithm passed to [`VerifyingKey::hmac`] is not `HS256`, `HS384` or `HS512`.
    NotHmacAlgorithm,
    HmacSecretTooShort {
        alg: Algorithm,
        min_bytes: usize,
        actual_bytes: usize,
    },
    /// The JWKS already contributed [`MAX_JWKS_KEYS`] usable keys.
    TooManyKeys,
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwkError::NotAnObject => f.write_str("key is not a JSON object"),
            JwkError::MissingMember(name) => write!(f, "required member `{name}` is missing"),
            JwkError::InvalidMember(name) => {
                write!(f, "member `{name}` has the wrong JSON type or is not valid base64url")
            }
            JwkError::SymmetricKeyNotTrusted => f.write_str(
                "symmetric `oct` keys are never taken from a JWKS; configure HMAC secrets explicitly",
            ),
            JwkError::UnsupportedKeyType => f.write_str("unsupported `kty`; expected RSA, EC or OKP"),
            JwkError::UnsupportedCurve => {
                f.write_str("unsupported `crv`; expected P-256 or P-384 for EC, Ed25519 for OKP")
            }
            JwkError::NotForSignatures => f.write_str("`use` is not `sig`"),
            JwkError::KeyOpsWithoutVerify => f.write_str("`key_ops` does not contain `verify`"),
            JwkError::UnsupportedAlgorithm => f.write_str("`alg` is not a supported signature algorithm"),
            JwkError::AlgorithmNotAllowedForKey => {
                f.write_str("`alg` does not match the key type or curve")
            }
            JwkError::RsaModulusTooSmall { bits } => write!(
                f,
                "RSA modulus has {bits} bits; at least {MIN_RSA_MODULUS_BITS} are required"
            ),
            JwkError::RsaModulusTooLarge { bits } => write!(
                f,
                "RSA modulus has {bits} bits; at most {MAX_RSA_MODULUS_BITS} are supported"
            ),
            JwkError::InvalidRsaModulus => f.write_str("RSA modulus `n` is even"),
            JwkError::InvalidRsaExponent => {
                f.write_str("RSA exponent `e` must be odd and between 3 and 2^33 - 1")
            }
            JwkError::NotHmacAlgorithm => {
                f.write_str("algorithm for a shared secret must be HS256, HS384 or HS512")
            }
            JwkError::HmacSecretTooShort { alg, min_bytes, actual_bytes } => write!(
                f,
                "HMAC secret has {actual_bytes} bytes; {alg} requires at least {min_bytes}"
            ),
            JwkError::TooManyKeys => {
                write!(f, "the JWKS already has {MAX_JWKS_KEYS} usable keys; later keys are ignored")
            }
        }
    }
}

impl std::error::Error for JwkError {}

/// Public key material, already decoded into the form ring verifies with.
#[derive(Clone)]
enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zero bytes.
    Rsa(signature::RsaPublicKeyComponents<Vec<u8>>),
    /// Uncompressed SEC1 point `04 || x || y` on P-256.
    EcP256(Vec<u8>),
    /// Uncompressed SEC1 point `04 || x || y` on P-384.
    EcP384(Vec<u8>),
    Ed25519([u8; 32]),
    /// A configured shared secret, usable with exactly one HS algorithm.
    Hmac(hmac::Key, Algorithm),
}

impl KeyMaterial {
    fn allows(&self, alg: Algorithm) -> bool {
        match self {
            KeyMaterial::Rsa(_) => alg.is_rsa(),
            KeyMaterial::EcP256(_) => alg == Algorithm::Es256,
            KeyMaterial::EcP384(_) => alg == Algorithm::Es384,
            KeyMaterial::Ed25519(_) => alg == Algorithm::EdDsa,
            KeyMaterial::Hmac(_, configured) => alg == *configured,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::EcP256(_) => "EC P-256",
            KeyMaterial::EcP384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
            KeyMaterial::Hmac(..) => "HMAC",
        }
    }
}

/// A public key or configured HMAC secret that verifies JWS signatures.
///
/// The key is bound to the algorithms its type allows (see [`VerifyingKey::allows`]).
/// `Debug` prints the key type, `kid` and pinned `alg`, never key material.
#[derive(Clone)]
pub struct VerifyingKey {
    /// Key id matched against the token's `kid` header parameter.
    pub kid: Option<String>,
    /// Algorithm pinned by the JWK's `alg` member, if it had one.
    alg: Option<Algorithm>,
    material: KeyMaterial,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("type", &self.material.type_name())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

impl VerifyingKey {
    /// Creates a key from an explicitly configured shared secret.
    ///
    /// The key verifies only `alg`, which must be an HS algorithm. The secret
    /// must be at least as long as the hash output (32, 48 or 64 bytes), as
    /// RFC 7518 section 3.2 requires.
    pub fn hmac(
        secret: &[u8],
        alg: Algorithm,
        kid: Option<String>,
    ) -> Result<VerifyingKey, JwkError> {
        let hmac_alg = alg.hmac_algorithm().ok_or(JwkError::NotHmacAlgorithm)?;

        let min_bytes = hmac_alg.digest_algorithm().output_len();
        if secret.len() < min_bytes {
            return Err(JwkError::HmacSecretTooShort {
                alg,
                min_bytes,
                actual_bytes: secret.len(),
            });
        }

        let material = KeyMaterial::Hmac(hmac::Key::new(hmac_alg, secret), alg);
        Ok(VerifyingKey {
            kid,
            alg: Some(alg),
            material,
        })
    }

    /// Parses one public JWK (RFC 7517 section 4, RFC 7518 section 6, RFC 8037).
    ///
    /// Accepted: `kty` RSA (modulus of 2048 to 8192 bits), EC on P-256 or
    /// P-384, and OKP Ed25519. `oct` keys are rejected because shared secrets
    /// must be configured with [`VerifyingKey::hmac`]. A key whose `use` is
    /// not `sig`, or whose `key_ops` lacks `verify`, is rejected. Private members
    /// (`d`, `p`, ...) are ignored, as are `x5c`, `x5t` and `x5u`.
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, JwkError> {
        let object = jwk.as_object().ok_or(JwkError::NotAnObject)?;

        let kty = required_str(object, "kty")?;
        let kid = optional_str(object, "kid")?.map(str::to_owned);
        check_use(object)?;
        check_key_ops(object)?;

        let material = match kty {
            "RSA" => rsa_material(object)?,
            "EC" => ec_material(object)?,
            "OKP" => okp_material(object)?,
            "oct" => return Err(JwkError::SymmetricKeyNotTrusted),
            _ => return Err(JwkError::UnsupportedKeyType),
        };

        let alg = pinned_algorithm(object, &material)?;
        Ok(VerifyingKey { kid, alg, material })
    }

    /// Returns whether this key may verify a token signed with `alg`.
    ///
    /// RSA keys allow `RS*` and `PS*`, EC P-256 keys only `ES256`, EC P-384
    /// keys only `ES384`, Ed25519 keys only `EdDSA`, and an HMAC key only the
    /// HS algorithm it was configured with. A key whose JWK had an `alg` member
    /// allows only that algorithm.
    pub fn allows(&self, alg: Algorithm) -> bool {
        let pinned_ok = match self.alg {
            Some(pinned) => pinned == alg,
            None => true,
        };
        pinned_ok && self.material.allows(alg)
    }

    /// Returns the algorithm pinned by the JWK's `alg` member or the HMAC configuration.
    pub fn pinned_algorithm(&self) -> Option<Algorithm> {
        self.alg
    }

    /// Returns a short name of the key type for logs, such as `EC P-256`.
    pub fn key_type(&self) -> &'static str {
        self.material.type_name()
    }

    /// Checks `signature` over `message` with `alg`. Returns `false` when the
    /// key does not allow `alg` (see [`VerifyingKey::allows`]), so a caller
    /// cannot skip the algorithm binding. HMAC tags are compared in constant time.
    pub fn verify_signature(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.allows(alg) {
            return false;
        }

        let result = match (&self.material, alg) {
            (KeyMaterial::Rsa(components), _) => match alg.rsa_parameters() {
                Some(params) => components.verify(params, message, signature),
                None => return false,
            },
            (KeyMaterial::EcP256(point), Algorithm::Es256) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
            }
            (KeyMaterial::EcP384(point), Algorithm::Es384) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
            }
            (KeyMaterial::Ed25519(public), Algorithm::EdDsa) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(message, signature)
            }
            (KeyMaterial::Hmac(key, _), _) => hmac::verify(key, message, signature),
            _ => return false,
        };
        result.is_ok()
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, JwkError> {
    optional_str(object, name)?.ok_or(JwkError::MissingMember(name))
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, JwkError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(JwkError::InvalidMember(name)),
    }
}

fn required_base64url(
    object: &Map<String, Value>,
    name: &'static str,
) -> Result<Vec<u8>, JwkError> {
    let encoded = required_str(object, name)?;
    decode_base64url(encoded).map_err(|_| JwkError::InvalidMember(name))
}

fn check_use(object: &Map<String, Value>) -> Result<(), JwkError> {
    match optional_str(object, "use")? {
        None | Some("sig") => Ok(()),
        Some(_) => Err(JwkError::NotForSignatures),
    }
}

fn check_key_ops(object: &Map<String, Value>) -> Result<(), JwkError> {
    let Some(ops) = object.get("key_ops") else {
        return Ok(());
    };

    let ops = ops.as_array().ok_or(JwkError::InvalidMember("key_ops"))?;
    let mut has_verify = false;
    for op in ops {
        let op = op.as_str().ok_or(JwkError::InvalidMember("key_ops"))?;
        has_verify |= op == "verify";
    }

    if has_verify {
        Ok(())
    } else {
        Err(JwkError::KeyOpsWithoutVerify)
    }
}

fn pinned_algorithm(
    object: &Map<String, Value>,
    material: &KeyMaterial,
) -> Result<Option<Algorithm>, JwkError> {
    let Some(name) = optional_str(object, "alg")? else {
        return Ok(None);
    };

    let alg = Algorithm::from_name(name).ok_or(JwkError::UnsupportedAlgorithm)?;
    if !material.allows(alg) {
        return Err(JwkError::AlgorithmNotAllowedForKey);
    }
    Ok(Some(alg))
}

fn rsa_material(object: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let n = strip_leading_zeros(required_base64url(object, "n")?);
    let e = strip_leading_zeros(required_base64url(object, "e")?);

    let bits = bit_length(&n);
    if bits < MIN_RSA_MODULUS_BITS {
        return Err(JwkError::RsaModulusTooSmall { bits });
    }
    if bits > MAX_RSA_MODULUS_BITS {
        return Err(JwkError::RsaModulusTooLarge { bits });
    }
    if n.last().is_none_or(|low| low & 1 == 0) {
        return Err(JwkError::InvalidRsaModulus);
    }

    // ring accepts exponents from 3 to 2^33 - 1 and rejects even ones; checking
    // here reports a bad key at load time instead of failing every request.
    if e.len() > 5 || !is_valid_rsa_exponent(&e) {
        return Err(JwkError::InvalidRsaExponent);
    }

    Ok(KeyMaterial::Rsa(signature::RsaPublicKeyComponents { n, e }))
}

fn is_valid_rsa_exponent(e: &[u8]) -> bool {
    let value = e
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    (3..(1u64 << 33)).contains(&value) && value & 1 == 1
}

/// Removes leading zero bytes. RFC 7518 forbids them in `n` and `e`, but some
/// issuers emit a sign byte, and ring needs the minimal form.
fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(minimal_big_endian: &[u8]) -> usize {
    match minimal_big_endian.first() {
        None => 0,
        Some(top) => minimal_big_endian.len() * 8 - top.leading_zeros() as usize,
    }
}

fn ec_material(object: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let coordinate_len = match required_str(object, "crv")? {
        "P-256" => 32,
        "P-384" => 48,
        _ => return Err(JwkError::UnsupportedCurve),
    };

    // RFC 7518 section 6.2.1.2: coordinates are the full field size, so a
    // shorter or longer value is invalid rather than padded.
    let x = required_base64url(object, "x")?;
    let y = required_base64url(object, "y")?;
    if x.len() != coordinate_len {
        return Err(JwkError::InvalidMember("x"));
    }
    if y.len() != coordinate_len {
        return Err(JwkError::InvalidMember("y"));
    }

    // NOTE: ring checks that the point is on the curve only when verifying, so a
    // JWK with an off-curve point loads and then fails every signature check.
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);

    Ok(match coordinate_len {
        32 => KeyMaterial::EcP256(point),
        _ => KeyMaterial::EcP384(point),
    })
}

fn okp_material(object: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    if required_str(object, "crv")? != "Ed25519" {
        return Err(JwkError::UnsupportedCurve);
    }

    let x = required_base64url(object, "x")?;
    let public: [u8; 32] = x.try_into().map_err(|_| JwkError::InvalidMember("x"))?;
    Ok(KeyMaterial::Ed25519(public))
}

/// A JWK from a JWKS document that was not loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position of the key in the document's `keys` array, from 0.
    pub index: usize,
    /// The key's `kid`, when it had a string one.
    pub kid: Option<String>,
    pub reason: JwkError,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(
                f,
                "key {} (kid {:?}) skipped: {}",
                self.index, kid, self.reason
            ),
            None => write!(f, "key {} (no kid) skipped: {}", self.index, self.reason),
        }
    }
}

/// A JWKS document that could not be used at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksError {
    /// The document is not JSON or repeats a member name in some object.
    InvalidJson(JsonError),
    NotAnObject,
    MissingKeys,
    KeysNotAnArray,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::InvalidJson(error) => write!(f, "JWKS document is invalid: {error}"),
            JwksError::NotAnObject => f.write_str("JWKS document is not a JSON object"),
            JwksError::MissingKeys => f.write_str("JWKS document has no `keys` member"),
            JwksError::KeysNotAnArray => f.write_str("JWKS member `keys` is not an array"),
        }
    }
}

impl std::error::Error for JwksError {}

/// The verifying keys of one issuer, looked up by `kid` and algorithm.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Creates a key set from keys that were configured explicitly. There is
    /// no limit on the number of keys here, unlike [`KeySet::from_jwks_json`].
    pub fn from_keys(keys: Vec<VerifyingKey>) -> KeySet {
        KeySet { keys }
    }

    /// Parses a JWKS document (RFC 7517 section 5).
    ///
    /// The document must be a JSON object with a `keys` array and no repeated
    /// member names. Each key that [`VerifyingKey::from_jwk`] rejects is
    /// returned as a [`SkippedKey`] for the caller to log, and so is every
    /// usable key after the first [`MAX_JWKS_KEYS`]. A document whose keys
    /// are all skipped gives an empty set, not an error.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        let document = parse_json_strict(bytes).map_err(JwksError::InvalidJson)?;
        let object = document.as_object().ok_or(JwksError::NotAnObject)?;
        let entries = object.get("keys").ok_or(JwksError::MissingKeys)?;
        let entries = entries.as_array().ok_or(JwksError::KeysNotAnArray)?;

        let mut keys = Vec::with_capacity(entries.len().min(MAX_JWKS_KEYS));
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let loaded = VerifyingKey::from_jwk(entry).and_then(|key| {
                if keys.len() < MAX_JWKS_KEYS {
                    Ok(key)
                } else {
                    Err(JwkError::TooManyKeys)
                }
            });

            match loaded {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey {
                    index,
                    kid: string_kid(entry),
                    reason,
                }),
            }
        }

        Ok((KeySet { keys }, skipped))
    }

    /// Returns the keys to try for a token with this `kid` and `alg`, in set order.
    ///
    /// With a `kid`, only keys whose `kid` is exactly equal (byte for byte) and
    /// that allow `alg` are returned; keys without a `kid` never match. Without
    /// a `kid`, every key that allows `alg` is returned, so one token can cost
    /// up to [`KeySet::len`] signature checks: at most [`MAX_JWKS_KEYS`] for a
    /// set loaded from a JWKS.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.keys.iter().filter(move |key| {
            let kid_matches = match kid {
                Some(kid) => key.kid.as_deref() == Some(kid),
                None => true,
            };
            kid_matches && key.allows(alg)
        })
    }

    /// Returns whether some key has exactly this `kid`, whatever its algorithm.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Returns the `kid` of every key that has one, in set order.
    pub fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().filter_map(|key| key.kid.as_deref())
    }

    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> + '_ {
        self.keys.iter()
    }
}

fn string_kid(entry: &Value) -> Option<String> {
    entry.get("kid").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwt::BASE64URL;
    use base64::Engine;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        BASE64URL.encode(bytes)
    }

    /// Returns an odd modulus of `bits` bits. It is not a real RSA key, but the
    /// loader only checks size and parity.
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xffu8; bits.div_ceil(8)];
        let spare = n.len() * 8 - bits;
        n[0] >>= spare;
        n
    }

    fn rsa_jwk(bits: usize) -> Value {
        json!({"kty": "RSA", "kid": "r1", "n": b64(&modulus(bits)), "e": "AQAB"})
    }

    fn ec_jwk(crv: &str, len: usize) -> Value {
        json!({"kty": "EC", "crv": crv, "kid": "e1", "x": b64(&vec![1; len]), "y": b64(&vec![2; len])})
    }

    fn okp_jwk() -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "o1", "x": b64(&[3; 32])})
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg), "{alg}");
        }
    }

    #[test]
    fn algorithm_names_are_exact() {
        let rejected = [
            "none", "None", "NONE", "nOnE", "", "hs256", "HS256 ", " RS256", "ES512", "RS1",
            "EDDSA",
        ];
        for name in rejected {
            assert_eq!(Algorithm::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn rsa_key_allows_only_rsa_algorithms() {
        let key = VerifyingKey::from_jwk(&rsa_jwk(2048)).unwrap();
        for alg in Algorithm::ALL {
            assert_eq!(key.allows(alg), alg.is_rsa(), "{alg}");
        }
    }

    #[test]
    fn ec_and_okp_keys_allow_one_algorithm() {
        let cases = [
            (ec_jwk("P-256", 32), Algorithm::Es256),
            (ec_jwk("P-384", 48), Algorithm::Es384),
            (okp_jwk(), Algorithm::EdDsa),
        ];
        for (jwk, only) in cases {
            let key = VerifyingKey::from_jwk(&jwk).unwrap();
            for alg in Algorithm::ALL {
                assert_eq!(
                    key.allows(alg),
                    alg == only,
                    "{} with {alg}",
                    key.key_type()
                );
            }
        }
    }

    #[test]
    fn hmac_key_allows_only_configured_algorithm() {
        let key = VerifyingKey::hmac(&[7; 48], Algorithm::Hs384, None).unwrap();
        for alg in Algorithm::ALL {
            assert_eq!(key.allows(alg), alg == Algorithm::Hs384, "{alg}");
        }
    }

    #[test]
    fn jwk_alg_pins_key_to_one_algorithm() {
        let mut jwk = rsa_jwk(2048);
        jwk["alg"] = json!("PS256");
        let key = VerifyingKey::from_jwk(&jwk).unwrap();

        assert!(key.allows(Algorithm::Ps256));
        assert!(!key.allows(Algorithm::Rs256));
        assert!(!key.allows(Algorithm::Ps384));
        assert_eq!(key.pinned_algorithm(), Some(Algorithm::Ps256));
    }

    #[test]
    fn hmac_secret_length_boundaries() {
        let cases = [
            (Algorithm::Hs256, 32),
            (Algorithm::Hs384, 48),
            (Algorithm::Hs512, 64),
        ];
        for (alg, min) in cases {
            assert!(
                VerifyingKey::hmac(&vec![1; min], alg, None).is_ok(),
                "{alg} at {min} bytes"
            );
            assert_eq!(
                VerifyingKey::hmac(&vec![1; min - 1], alg, None).unwrap_err(),
                JwkError::HmacSecretTooShort {
                    alg,
                    min_bytes: min,
                    actual_bytes: min - 1
                },
            );
        }
    }

    #[test]
    fn hmac_rejects_asymmetric_algorithm() {
        let error = VerifyingKey::hmac(&[1; 64], Algorithm::Rs256, None).unwrap_err();
        assert_eq!(error, JwkError::NotHmacAlgorithm);
    }

    #[test]
    fn rsa_modulus_size_boundaries() {
        assert!(VerifyingKey::from_jwk(&rsa_jwk(2048)).is_ok());
        assert!(VerifyingKey::from_jwk(&rsa_jwk(8192)).is_ok());
        assert_eq!(
            VerifyingKey::from_jwk(&rsa_jwk(2047)).unwrap_err(),
            JwkError::RsaModulusTooSmall { bits: 2047 }
        );
        assert_eq!(
            VerifyingKey::from_jwk(&rsa_jwk(8193)).unwrap_err(),
            JwkError::RsaModulusTooLarge { bits: 8193 }
        );
    }

    #[test]
    fn rsa_modulus_leading_zero_is_stripped() {
        let mut n = vec![0u8];
        n.extend(modulus(2048));
        let jwk = json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"});
        assert!(VerifyingKey::from_jwk(&jwk).is_ok());
    }

    #[test]
    fn rsa_exponent_rules() {
        let cases = [
            ("AQAB", true, "65537"),
            ("Aw", true, "3"),
            ("AQ", false, "1 is too small"),
            ("Ag", false, "even"),
            ("AQAAAAE", true, "2^32 + 1 is below the 2^33 limit"),
            ("AgAAAAE", false, "2^33 + 1 is too large"),
            ("AQAAAAAB", false, "six bytes"),
        ];
        for (e, ok, description) in cases {
            let jwk = json!({"kty": "RSA", "n": b64(&modulus(2048)), "e": e});
            assert_eq!(VerifyingKey::from_jwk(&jwk).is_ok(), ok, "{description}");
        }
    }

    #[test]
    fn jwk_rejections_name_the_reason() {
        let mut wrong_use = rsa_jwk(2048);
        wrong_use["use"] = json!("enc");
        let mut ops_without_verify = rsa_jwk(2048);
        ops_without_verify["key_ops"] = json!(["encrypt", "sign"]);
        let mut alg_for_other_type = ec_jwk("P-256", 32);
        alg_for_other_type["alg"] = json!("ES384");
        let mut unknown_alg = rsa_jwk(2048);
        unknown_alg["alg"] = json!("RSA-OAEP");
        let mut numeric_kid = rsa_jwk(2048);
        numeric_kid["kid"] = json!(7);

        let cases = [
            (json!([]), JwkError::NotAnObject, "array instead of object"),
            (
                json!({"n": "AQAB"}),
                JwkError::MissingMember("kty"),
                "no kty",
            ),
            (
                json!({"kty": "oct", "k": b64(&[0; 32])}),
                JwkError::SymmetricKeyNotTrusted,
                "oct key",
            ),
            (
                json!({"kty": "DSA"}),
                JwkError::UnsupportedKeyType,
                "unknown kty",
            ),
            (ec_jwk("P-521", 66), JwkError::UnsupportedCurve, "P-521"),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])}),
                JwkError::UnsupportedCurve,
                "X25519",
            ),
            (
                ec_jwk("P-256", 31),
                JwkError::InvalidMember("x"),
                "short coordinate",
            ),
            (
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 31])}),
                JwkError::InvalidMember("x"),
                "short Ed25519 key",
            ),
            (
                json!({"kty": "RSA", "n": "AQAB=", "e": "AQAB"}),
                JwkError::InvalidMember("n"),
                "padded base64",
            ),
            (
                json!({"kty": "RSA", "e": "AQAB"}),
                JwkError::MissingMember("n"),
                "no modulus",
            ),
            (wrong_use, JwkError::NotForSignatures, "use enc"),
            (
                ops_without_verify,
                JwkError::KeyOpsWithoutVerify,
                "key_ops without verify",
            ),
            (
                alg_for_other_type,
                JwkError::AlgorithmNotAllowedForKey,
                "ES384 on a P-256 key",
            ),
            (
                unknown_alg,
                JwkError::UnsupportedAlgorithm,
                "encryption alg",
            ),
            (numeric_kid, JwkError::InvalidMember("kid"), "numeric kid"),
        ];
        for (jwk, expected, description) in cases {
            assert_eq!(
                VerifyingKey::from_jwk(&jwk).unwrap_err(),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn private_members_are_ignored() {
        let mut jwk = ec_jwk("P-256", 32);
        jwk["d"] = json!(b64(&[9; 32]));
        jwk["key_ops"] = json!(["sign", "verify"]);
        assert!(VerifyingKey::from_jwk(&jwk).is_ok());
    }

    #[test]
    fn jwks_skips_unusable_keys_and_reports_them() {
        let document = json!({"keys": [
            rsa_jwk(2048),
            {"kty": "oct", "kid": "shared", "k": b64(&[0; 32])},
            rsa_jwk(1024),
            ec_jwk("P-256", 32),
        ]});
        let (set, skipped) = KeySet::from_jwks_json(document.to_string().as_bytes()).unwrap();

        assert_eq!(set.len(), 2);
        assert_eq!(set.kids().collect::<Vec<_>>(), ["r1", "e1"]);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].index, 1);
        assert_eq!(skipped[0].kid.as_deref(), Some("shared"));
        assert_eq!(skipped[0].reason, JwkError::SymmetricKeyNotTrusted);
        assert_eq!(skipped[1].index, 2);
        assert_eq!(
            skipped[1].reason,
            JwkError::RsaModulusTooSmall { bits: 1024 }
        );
    }

    #[test]
    fn jwks_key_limit_skips_extra_keys() {
        let keys: Vec<Value> = (0..MAX_JWKS_KEYS + 2).map(|_| okp_jwk()).collect();
        let document = json!({ "keys": keys }).to_string();
        let (set, skipped) = KeySet::from_jwks_json(document.as_bytes()).unwrap();

        assert_eq!(set.len(), MAX_JWKS_KEYS);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped[0].index, MAX_JWKS_KEYS);
        assert_eq!(skipped[0].reason, JwkError::TooManyKeys);
    }

    #[test]
    fn jwks_document_errors() {
        let cases: [(&[u8], JwksError, &str); 5] = [
            (b"[]", JwksError::NotAnObject, "array"),
            (b"{}", JwksError::MissingKeys, "no keys"),
            (
                b"{\"keys\": {}}",
                JwksError::KeysNotAnArray,
                "keys is an object",
            ),
            (
                b"{\"keys\": [], \"keys\": []}",
                JwksError::InvalidJson(JsonError::DuplicateMember),
                "repeated keys member",
            ),
            (
                b"{\"keys\": [{\"kty\": \"OKP\", \"kty\": \"RSA\"}]}",
                JwksError::InvalidJson(JsonError::DuplicateMember),
                "repeated member inside a key",
            ),
        ];
        for (bytes, expected, description) in cases {
            assert_eq!(
                KeySet::from_jwks_json(bytes).unwrap_err(),
                expected,
                "{description}"
            );
        }
        assert!(matches!(
            KeySet::from_jwks_json(b"{\"keys\": [").unwrap_err(),
            JwksError::InvalidJson(JsonError::Syntax { .. })
        ));
    }

    #[test]
    fn candidates_match_kid_and_alg() {
        let mut other_ec = ec_jwk("P-256", 32);
        other_ec["kid"] = json!("e2");
        let mut no_kid = ec_jwk("P-256", 32);
        no_kid.as_object_mut().unwrap().remove("kid");
        let document = json!({"keys": [rsa_jwk(2048), ec_jwk("P-256", 32), other_ec, no_kid]});
        let (set, _) = KeySet::from_jwks_json(document.to_string().as_bytes()).unwrap();

        let kids = |kid: Option<&str>, alg| -> Vec<Option<String>> {
            set.candidates(kid, alg)
                .map(|key| key.kid.clone())
                .collect()
        };
        assert_eq!(kids(Some("e1"), Algorithm::Es256), [Some("e1".to_owned())]);
        assert!(
            kids(Some("e1"), Algorithm::Rs256).is_empty(),
            "kid of an EC key with RS256"
        );
        assert!(
            kids(Some("E1"), Algorithm::Es256).is_empty(),
            "kid differs in case"
        );
        assert!(
            kids(Some("r1"), Algorithm::Hs256).is_empty(),
            "RSA key with HS256"
        );
        assert_eq!(
            kids(None, Algorithm::Es256).len(),
            3,
            "every P-256 key without a kid"
        );
        assert_eq!(kids(None, Algorithm::Ps512), [Some("r1".to_owned())]);
        assert!(set.contains_kid("e2"));
        assert!(!set.contains_kid("missing"));
    }

    #[test]
    fn debug_output_omits_secret() {
        let key = VerifyingKey::hmac(
            b"0123456789abcdef0123456789abcdef",
            Algorithm::Hs256,
            Some("k".into()),
        )
        .unwrap();
        let printed = format!("{key:?}");
        assert!(printed.contains("HMAC"), "{printed}");
        assert!(!printed.contains("0123456789"), "{printed}");
    }
}
