//! JWT bearer credentials in JWS compact serialization (RFC 7515, RFC 7519):
//! strict parsing, signature verification against a [`KeySet`], and claim
//! validation. The authenticator runs these three steps in that order for
//! every request that presents a JWT.
//!
//! Parsing rejects everything a lenient decoder would reinterpret: padding or
//! non-alphabet bytes in base64url, repeated JSON member names, `crit`, `b64`,
//! and `alg` values other than the supported ones. `jku`, `x5u`, `jwk`, `x5c`
//! and `x5t` are ignored: keys come only from the configured [`KeySet`].

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::authn::jwk::{Algorithm, KeySet, VerifyingKey};

/// Maximum length of a `kid` header value, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// Largest signature accepted, in bytes: an RSA-8192 signature.
const MAX_SIGNATURE_BYTES: usize = 1024;

/// Base64url without padding (RFC 7515 section 2). Decoding rejects padding,
/// whitespace, bytes outside the URL-safe alphabet and non-zero trailing bits,
/// so every byte string has exactly one accepted encoding.
pub const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes strict base64url, see [`BASE64URL`].
pub fn decode_base64url(encoded: &str) -> Result<Vec<u8>, base64::DecodeError> {
    BASE64URL.decode(encoded)
}

/// Reason for which [`parse_json_strict`] rejected a JSON document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, nested deeper than serde_json's limit of 128, or trailing data.
    Syntax { line: usize, column: usize },
    /// Some object, at any depth, repeats a member name.
    DuplicateMember,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax { line, column } => {
                write!(f, "invalid JSON at line {line}, column {column}")
            }
            JsonError::DuplicateMember => f.write_str("an object repeats a member name"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses JSON and rejects any object, at any depth, that repeats a member name
/// after unescaping (so `"sub"` and `"\u0073ub"` count as the same name).
///
/// RFC 7515 section 5.2 and RFC 7519 section 4 let a parser either reject
/// duplicates or keep the last one. Portcullis rejects them, because two
/// parsers that keep different duplicates would see different claims.
pub fn parse_json_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let duplicate_found = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);

    let parsed = StrictValueSeed {
        duplicate_found: &duplicate_found,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));

    parsed.map_err(|error| {
        if duplicate_found.get() {
            JsonError::DuplicateMember
        } else {
            JsonError::Syntax {
                line: error.line(),
                column: error.column(),
            }
        }
    })
}

/// Builds a `serde_json::Value` like its own `Deserialize` impl, except that a
/// repeated member name sets `duplicate_found` and aborts the parse.
#[derive(Clone, Copy)]
struct StrictValueSeed<'a> {
    duplicate_found: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for StrictValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = access.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            if members.contains_key(&name) {
                self.duplicate_found.set(true);
                return Err(de::Error::custom("repeated member name"));
            }
            let value = access.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// Reason for rejecting a token. Each variant is one outcome with a stable
/// [`TokenError::reason`] code. `Display` never contains token bytes, key
/// material or claim values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a well-formed JWS or JWT; the detail names the rule that failed.
    Malformed(&'static str),
    TooLarge {
        max_bytes: usize,
    },
    /// `alg` is not one of the supported algorithms (this includes `none`).
    UnsupportedAlgorithm,
    /// The keys with the token's `kid` do not allow its `alg`, or the key set
    /// has keys but none allows `alg`.
    AlgorithmNotAllowedForKey,
    /// `crit` lists extension parameters; Portcullis understands none.
    UnknownCrit,
    /// No key has the token's `kid`, or the key set is empty. The caller may
    /// refetch the JWKS, rate limited, and verify again.
    KeyNotFound,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    IssuerMismatch,
    AudienceMismatch,
    TypMismatch,
    /// A claim required by the rules is absent; the value is its name.
    MissingClaim(&'static str),
}

impl TokenError {
    /// Returns the stable snake_case code used in responses, audit records,
    /// logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "token_malformed",
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::UnsupportedAlgorithm => "token_algorithm_unsupported",
            TokenError::AlgorithmNotAllowedForKey => "token_algorithm_not_allowed",
            TokenError::UnknownCrit => "token_crit_unsupported",
            TokenError::KeyNotFound => "token_key_not_found",
            TokenError::BadSignature => "token_signature_invalid",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::IssuerMismatch => "token_issuer_mismatch",
            TokenError::AudienceMismatch => "token_audience_mismatch",
            TokenError::TypMismatch => "token_type_mismatch",
            TokenError::MissingClaim(_) => "token_claim_missing",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(detail) => write!(f, "token is malformed: {detail}"),
            TokenError::TooLarge { max_bytes } => {
                write!(f, "token is longer than the limit of {max_bytes} bytes")
            }
            TokenError::UnsupportedAlgorithm => f.write_str("token `alg` is not supported"),
            TokenError::AlgorithmNotAllowedForKey => {
                f.write_str("token `alg` is not allowed for the keys that match its `kid`")
            }
            TokenError::UnknownCrit => {
                f.write_str("token `crit` lists extension parameters that are not supported")
            }
            TokenError::KeyNotFound => f.write_str("no verifying key matches the token `kid`"),
            TokenError::BadSignature => f.write_str("token signature is invalid"),
            TokenError::Expired => f.write_str("token has expired"),
            TokenError::NotYetValid => {
                f.write_str("token is not valid yet (`nbf` is in the future)")
            }
            TokenError::IssuedInFuture => f.write_str("token `iat` is in the future"),
            TokenError::IssuerMismatch => {
                f.write_str("token issuer does not match the configured issuer")
            }
            TokenError::AudienceMismatch => {
                f.write_str("token audience does not match any configured audience")
            }
            TokenError::TypMismatch => {
                f.write_str("token `typ` header does not match the required type")
            }
            TokenError::MissingClaim(name) => write!(f, "token has no `{name}` claim"),
        }
    }
}

impl std::error::Error for TokenError {}

/// The JOSE header members that Portcullis uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    /// Key id, at most [`MAX_KID_BYTES`] bytes.
    pub kid: Option<String>,
    /// Media type of the token, such as `at+jwt` (RFC 9068).
    pub typ: Option<String>,
}

/// A decoded signature, kept inline so that parsing does not allocate for it.
#[derive(Clone)]
struct SignatureBytes {
    bytes: [u8; MAX_SIGNATURE_BYTES],
    len: usize,
}

impl SignatureBytes {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The parts of a compact JWS that signature verification needs. The signing
/// input borrows from the token, so it is not copied.
#[derive(Clone)]
struct SignedParts<'a> {
    header: Header,
    signing_input: &'a str,
    signature: SignatureBytes,
}

impl SignedParts<'_> {
    fn verify_with_set(&self, keys: &KeySet) -> Result<(), TokenError> {
        let alg = self.header.alg;
        let kid = self.header.kid.as_deref();

        let mut tried_any = false;
        for key in keys.candidates(kid, alg) {
            tried_any = true;
            if key.verify_signature(
                alg,
                self.signing_input.as_bytes(),
                self.signature.as_slice(),
            ) {
                return Ok(());
            }
        }

        if tried_any {
            return Err(TokenError::BadSignature);
        }
        Err(no_candidate_error(keys, kid))
    }

    fn verify_with_key(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        let alg = self.header.alg;
        if !key.allows(alg) {
            return Err(TokenError::AlgorithmNotAllowedForKey);
        }

        if key.verify_signature(
            alg,
            self.signing_input.as_bytes(),
            self.signature.as_slice(),
        ) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// Picks the error when no key in the set is a candidate for the token.
fn no_candidate_error(keys: &KeySet, kid: Option<&str>) -> TokenError {
    match kid {
        Some(kid) if keys.contains_kid(kid) => TokenError::AlgorithmNotAllowedForKey,
        Some(_) => TokenError::KeyNotFound,
        None if keys.is_empty() => TokenError::KeyNotFound,
        None => TokenError::AlgorithmNotAllowedForKey,
    }
}

/// A compact JWS whose header and encoding passed [`parse_jws`] and whose
/// payload is any byte string. Nothing in it is trusted until a `verify` call
/// succeeds.
#[derive(Clone)]
pub struct UnverifiedJws<'a> {
    parts: SignedParts<'a>,
    payload: Vec<u8>,
}

impl fmt::Debug for UnverifiedJws<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedJws")
            .field("header", &self.parts.header)
            .finish_non_exhaustive()
    }
}

impl<'a> UnverifiedJws<'a> {
    pub fn header(&self) -> &Header {
        &self.parts.header
    }

    /// Verifies the signature with the candidate keys of `keys` (see
    /// [`KeySet::candidates`]) and returns the payload bytes.
    pub fn verify(&self, keys: &KeySet) -> Result<&[u8], TokenError> {
        self.parts.verify_with_set(keys)?;
        Ok(&self.payload)
    }

    /// Verifies the signature with one key, ignoring `kid`, and returns the payload bytes.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<&[u8], TokenError> {
        self.parts.verify_with_key(key)?;
        Ok(&self.payload)
    }
}

/// A JWT that passed [`parse`]: a compact JWS whose payload is a JSON object.
/// Its claims are available only through a successful `verify` call.
#[derive(Clone)]
pub struct UnverifiedToken<'a> {
    parts: SignedParts<'a>,
    claims: Claims,
}

impl fmt::Debug for UnverifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedToken")
            .field("header", &self.parts.header)
            .finish_non_exhaustive()
    }
}

impl<'a> UnverifiedToken<'a> {
    /// Returns the `iss` claim before verification, or `None` when it is absent
    /// or not a string. Use it only to choose which issuer's keys and rules to
    /// verify with; nothing about the token is trusted yet.
    pub fn unverified_issuer(&self) -> Option<&str> {
        self.claims.issuer().ok().flatten()
    }

    pub fn header(&self) -> &Header {
        &self.parts.header
    }

    /// Verifies the signature with the candidate keys of `keys` and returns the
    /// claims, which still need [`validate`].
    ///
    /// Errors: [`TokenError::KeyNotFound`] when no key has the token's `kid`
    /// (or the set is empty), [`TokenError::AlgorithmNotAllowedForKey`] when
    /// keys match but none allows `alg`, [`TokenError::BadSignature`] when
    /// every candidate key failed.
    pub fn verify(&self, keys: &KeySet) -> Result<Claims, TokenError> {
        self.parts.verify_with_set(keys)?;
        Ok(self.claims.clone())
    }

    /// Verifies the signature with one key, ignoring `kid`, and returns the claims.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<Claims, TokenError> {
        self.parts.verify_with_key(key)?;
        Ok(self.claims.clone())
    }
}

/// Parses a compact JWS without interpreting its payload.
///
/// Checks, in order: length at most `max_bytes`; exactly three `.`-separated
/// segments (a five-segment JWE is rejected); a strict base64url header that
/// is a JSON object without repeated member names, with a supported `alg`, no
/// `crit` and no `b64`, a string `kid` of at most [`MAX_KID_BYTES`] bytes and a
/// string `typ`; a strict base64url signature whose length fits `alg`; and a
/// strict base64url payload.
pub fn parse_jws(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge { max_bytes });
    }

    let [header_b64, payload_b64, signature_b64] = split_segments(token)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

    let header = decode_header(header_b64)?;
    let signature = decode_signature(signature_b64, header.alg)?;
    let payload = BASE64URL
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed("payload is not valid unpadded base64url"))?;

    let parts = SignedParts {
        header,
        signing_input,
        signature,
    };
    Ok(UnverifiedJws { parts, payload })
}

/// Parses a JWT: everything [`parse_jws`] checks, and a payload that is a
/// JSON object without repeated member names at any depth.
///
/// The result borrows `token`, which avoids copying the signing input.
pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedToken<'_>, TokenError> {
    let jws = parse_jws(token, max_bytes)?;

    let payload = parse_json_strict(&jws.payload).map_err(|error| match error {
        JsonError::DuplicateMember => TokenError::Malformed("payload repeats a member name"),
        JsonError::Syntax { .. } => TokenError::Malformed("payload is not valid JSON"),
    })?;
    let Value::Object(members) = payload else {
        return Err(TokenError::Malformed("payload is not a JSON object"));
    };

    Ok(UnverifiedToken {
        parts: jws.parts,
        claims: Claims::from_map(members),
    })
}

fn split_segments(token: &str) -> Result<[&str; 3], TokenError> {
    let mut segments = token.split('.');
    let header = segments.next().unwrap_or_default();
    let payload = segments.next();
    let signature = segments.next();
    let extra = segments.count();

    match (payload, signature, extra) {
        (Some(payload), Some(signature), 0) => Ok([header, payload, signature]),
        (Some(_), Some(_), 2) => Err(TokenError::Malformed(
            "token has five segments (JWE); only JWS compact serialization is accepted",
        )),
        _ => Err(TokenError::Malformed(
            "token does not have exactly three segments",
        )),
    }
}

fn decode_header(header_b64: &str) -> Result<Header, TokenError> {
    let bytes = BASE64URL
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed("header is not valid unpadded base64url"))?;

    let header = parse_json_strict(&bytes).map_err(|error| match error {
        JsonError::DuplicateMember => TokenError::Malformed("header repeats a member name"),
        JsonError::Syntax { .. } => TokenError::Malformed("header is not valid JSON"),
    })?;
    let Value::Object(mut members) = header else {
        return Err(TokenError::Malformed("header is not a JSON object"));
    };

    let alg = header_alg(&members)?;
    check_crit(&members)?;
    if members.contains_key("b64") {
        return Err(TokenError::Malformed(
            "header parameter `b64` (RFC 7797) is not supported",
        ));
    }
    let kid = header_kid(&mut members)?;
    let typ = match members.remove("typ") {
        None => None,
        Some(Value::String(typ)) => Some(typ),
        Some(_) => return Err(TokenError::Malformed("header `typ` is not a string")),
    };

    Ok(Header { alg, kid, typ })
}

fn header_alg(members: &Map<String, Value>) -> Result<Algorithm, TokenError> {
    match members.get("alg") {
        None => Err(TokenError::Malformed("header has no `alg`")),
        Some(Value::String(name)) => {
            Algorithm::from_name(name).ok_or(TokenError::UnsupportedAlgorithm)
        }
        Some(_) => Err(TokenError::Malformed("header `alg` is not a string")),
    }
}

/// Rejects any `crit` (RFC 7515 section 4.1.11). A well-formed `crit` is a
/// non-empty array of strings, and since Portcullis implements no extension
/// parameter, every well-formed `crit` names one it does not understand.
fn check_crit(members: &Map<String, Value>) -> Result<(), TokenError> {
    let Some(crit) = members.get("crit") else {
        return Ok(());
    };

    let Value::Array(names) = crit else {
        return Err(TokenError::Malformed("header `crit` is not an array"));
    };
    if names.is_empty() {
        return Err(TokenError::Malformed("header `crit` is an empty array"));
    }
    if !names.iter().all(Value::is_string) {
        return Err(TokenError::Malformed(
            "header `crit` contains a value that is not a string",
        ));
    }
    Err(TokenError::UnknownCrit)
}

fn header_kid(members: &mut Map<String, Value>) -> Result<Option<String>, TokenError> {
    match members.remove("kid") {
        None => Ok(None),
        Some(Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Ok(Some(kid)),
        Some(Value::String(_)) => Err(TokenError::Malformed(
            "header `kid` is longer than 256 bytes",
        )),
        Some(_) => Err(TokenError::Malformed("header `kid` is not a string")),
    }
}

fn decode_signature(signature_b64: &str, alg: Algorithm) -> Result<SignatureBytes, TokenError> {
    let invalid = TokenError::Malformed("signature is not valid unpadded base64url");

    // Unpadded base64url of MAX_SIGNATURE_BYTES bytes has this many characters;
    // checking first keeps the decode within the inline buffer.
    let max_encoded_len = (MAX_SIGNATURE_BYTES * 4).div_ceil(3);
    if signature_b64.len() > max_encoded_len {
        return Err(TokenError::Malformed(
            "signature does not have the length `alg` requires",
        ));
    }

    let mut signature = SignatureBytes {
        bytes: [0; MAX_SIGNATURE_BYTES],
        len: 0,
    };
    signature.len = BASE64URL
        .decode_slice(signature_b64, &mut signature.bytes)
        .map_err(|_| invalid)?;

    if !signature_length_fits(alg, signature.len) {
        return Err(TokenError::Malformed(
            "signature does not have the length `alg` requires",
        ));
    }
    Ok(signature)
}

/// Returns whether a signature of `len` bytes can be valid for `alg`. ECDSA
/// signatures are `r || s` at the curve size (RFC 7518 section 3.4), not DER.
/// RSA signatures have the modulus length, 256 to 1024 bytes for the accepted
/// key sizes; ring checks the exact length against the key.
fn signature_length_fits(alg: Algorithm, len: usize) -> bool {
    match alg {
        Algorithm::Es256 | Algorithm::EdDsa | Algorithm::Hs512 => len == 64,
        Algorithm::Es384 => len == 96,
        Algorithm::Hs256 => len == 32,
        Algorithm::Hs384 => len == 48,
        Algorithm::Rs256
        | Algorithm::Rs384
        | Algorithm::Rs512
        | Algorithm::Ps256
        | Algorithm::Ps384
        | Algorithm::Ps512 => (256..=MAX_SIGNATURE_BYTES).contains(&len),
    }
}

/// The claims of a verified JWT (RFC 7519 section 4).
///
/// Cloning is cheap because the map is shared. `Debug` prints claim names
/// only, never values.
#[derive(Clone)]
pub struct Claims {
    members: Arc<Map<String, Value>>,
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("names", &self.members.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Claims {
    /// Wraps claims that were verified elsewhere, such as an introspection response.
    pub fn from_map(members: Map<String, Value>) -> Claims {
        Claims {
            members: Arc::new(members),
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.members
    }

    /// Returns `iss`, or `Malformed` when it is not a string.
    pub fn issuer(&self) -> Result<Option<&str>, TokenError> {
        self.optional_string("iss", "`iss` claim is not a string")
    }

    /// Returns `sub`, or `Malformed` when it is not a string.
    pub fn subject(&self) -> Result<Option<&str>, TokenError> {
        self.optional_string("sub", "`sub` claim is not a string")
    }

    /// Returns `aud` as a list: a single string becomes a one-item list. Any
    /// other type, or an array with a non-string item, is `Malformed`.
    pub fn audiences(&self) -> Result<Option<Vec<&str>>, TokenError> {
        const DETAIL: &str = "`aud` claim is not a string or an array of strings";
        match self.members.get("aud") {
            None => Ok(None),
            Some(value) => string_or_strings(value)
                .map(Some)
                .ok_or(TokenError::Malformed(DETAIL)),
        }
    }

    /// Returns `exp` in seconds since the Unix epoch. Fractions are kept; a
    /// string or any other non-number is `Malformed`.
    pub fn expires_at(&self) -> Result<Option<f64>, TokenError> {
        self.numeric_date("exp", "`exp` claim is not a number")
    }

    /// Returns `nbf` in seconds since the Unix epoch, see [`Claims::expires_at`].
    pub fn not_before(&self) -> Result<Option<f64>, TokenError> {
        self.numeric_date("nbf", "`nbf` claim is not a number")
    }

    /// Returns `iat` in seconds since the Unix epoch, see [`Claims::expires_at`].
    pub fn issued_at(&self) -> Result<Option<f64>, TokenError> {
        self.numeric_date("iat", "`iat` claim is not a number")
    }

    /// Looks up a claim by path.
    ///
    /// The whole path is first tried as a top-level name, so namespaced claims
    /// such as `https://example.com/roles` work. Otherwise the path is split on
    /// `.` and followed through nested objects, so `realm_access.roles` reads
    /// `{"realm_access": {"roles": ...}}`. A name that itself contains a dot is
    /// reachable only at the top level.
    pub fn get(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.members.get(path) {
            return Some(value);
        }

        let mut names = path.split('.');
        let mut current = self.members.get(names.next()?)?;
        for name in names {
            current = current.as_object()?.get(name)?;
        }
        Some(current)
    }

    /// Reads a claim (see [`Claims::get`]) that is either a space-separated
    /// string, like `scope` (RFC 8693 section 4.2), or an array of strings.
    /// Empty items of a string are dropped. Any other type is `Malformed`.
    pub fn string_list(&self, path: &str) -> Result<Option<Vec<&str>>, TokenError> {
        const DETAIL: &str = "claim is not a space-separated string or an array of strings";
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(
                text.split(' ').filter(|item| !item.is_empty()).collect(),
            )),
            Some(value @ Value::Array(_)) => string_or_strings(value)
                .map(Some)
                .ok_or(TokenError::Malformed(DETAIL)),
            Some(_) => Err(TokenError::Malformed(DETAIL)),
        }
    }

    fn optional_string(
        &self,
        name: &str,
        detail: &'static str,
    ) -> Result<Option<&str>, TokenError> {
        match self.members.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(TokenError::Malformed(detail)),
        }
    }

    fn numeric_date(&self, name: &str, detail: &'static str) -> Result<Option<f64>, TokenError> {
        match self.members.get(name) {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_f64()
                .map(Some)
                .ok_or(TokenError::Malformed(detail)),
            Some(_) => Err(TokenError::Malformed(detail)),
        }
    }
}

fn string_or_strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(text) => Some(vec![text.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Requirements that [`validate`] checks on a verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRules {
    /// Expected `iss`, compared byte for byte: no case folding, no trailing
    /// slash normalization.
    pub issuer: String,
    /// Accepted audiences; a token passes when its `aud` contains at least one.
    /// An empty list matches no token. Configuration validation rejects an
    /// empty list, so this only keeps a bypassed check failing closed.
    pub audiences: Vec<String>,
    /// Tolerated clock difference with the issuer, applied to `exp`, `nbf`,
    /// `iat` and `max_iat_age`.
    pub leeway: Duration,
    /// Accepted `typ` header values, such as `at+jwt`. `None` skips the check.
    /// With `Some`, a token without `typ` is rejected, and an empty list
    /// rejects every token.
    pub required_typ: Option<Vec<String>>,
    /// Reject tokens without `exp`.
    pub require_exp: bool,
    /// Maximum age measured from `iat`. With `Some`, `iat` is required.
    pub max_iat_age: Option<Duration>,
}

/// Checks a verified token's header and claims against `rules` at time
/// `now_unix_secs` (seconds since the Unix epoch).
///
/// Checks run in this order and the first failure is returned: `typ`, `iss`,
/// `aud`, `exp`, `nbf`, `iat`, then `max_iat_age`. With `leeway` L:
/// - `exp`: rejected when `now >= exp + L`, so a token is still accepted at
///   `now == exp + L - ε` and expired at exactly `exp + L` (RFC 7519 4.1.4:
///   "on or after").
/// - `nbf`: rejected when `nbf > now + L`; `nbf == now + L` is accepted.
/// - `iat`: rejected as issued in the future when `iat > now + L`;
///   `iat == now + L` is accepted.
/// - `max_iat_age` A: rejected as expired when `now >= iat + A + L`.
pub fn validate(
    header: &Header,
    claims: &Claims,
    rules: &ClaimRules,
    now_unix_secs: f64,
) -> Result<(), TokenError> {
    check_typ(header, rules)?;
    check_issuer(claims, rules)?;
    check_audience(claims, rules)?;
    check_times(claims, rules, now_unix_secs)
}

fn check_typ(header: &Header, rules: &ClaimRules) -> Result<(), TokenError> {
    let Some(accepted) = &rules.required_typ else {
        return Ok(());
    };

    let typ = header.typ.as_deref().ok_or(TokenError::TypMismatch)?;
    if accepted
        .iter()
        .any(|expected| media_types_equal(typ, expected))
    {
        Ok(())
    } else {
        Err(TokenError::TypMismatch)
    }
}

/// Compares two `typ` values as RFC 7515 section 4.1.9 describes: case-insensitive,
/// and a value without `/` means `application/` followed by that value, so
/// `at+jwt` equals `application/AT+JWT`.
fn media_types_equal(left: &str, right: &str) -> bool {
    short_media_type(left).eq_ignore_ascii_case(short_media_type(right))
}

/// Drops the `application/` prefix when what remains has no `/`, giving the
/// short form that RFC 7515 recommends.
fn short_media_type(value: &str) -> &str {
    const PREFIX: &[u8] = b"application/";
    let bytes = value.as_bytes();
    if bytes.len() > PREFIX.len() && bytes[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        let rest = &value[PREFIX.len()..];
        if !rest.contains('/') {
            return rest;
        }
    }
    value
}

fn check_issuer(claims: &Claims, rules: &ClaimRules) -> Result<(), TokenError> {
    let issuer = claims.issuer()?.ok_or(TokenError::MissingClaim("iss"))?;
    if issuer.as_bytes() == rules.issuer.as_bytes() {
        Ok(())
    } else {
        Err(TokenError::IssuerMismatch)
    }
}

fn check_audience(claims: &Claims, rules: &ClaimRules) -> Result<(), TokenError> {
    const DETAIL: &str = "`aud` claim is not a string or an array of strings";
    let accepts = |audience: &str| rules.audiences.iter().any(|accepted| accepted == audience);

    let matched = match claims.as_map().get("aud") {
        None => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(audience)) => accepts(audience),
        Some(Value::Array(items)) => {
            let mut matched = false;
            for item in items {
                let audience = item.as_str().ok_or(TokenError::Malformed(DETAIL))?;
                matched |= accepts(audience);
            }
            matched
        }
        Some(_) => return Err(TokenError::Malformed(DETAIL)),
    };

    if matched {
        Ok(())
    } else {
        Err(TokenError::AudienceMismatch)
    }
}

fn check_times(claims: &Claims, rules: &ClaimRules, now: f64) -> Result<(), TokenError> {
    let leeway = rules.leeway.as_secs_f64();

    match claims.expires_at()? {
        Some(exp) if now >= exp + leeway => return Err(TokenError::Expired),
        Some(_) => {}
        None if rules.require_exp => return Err(TokenError::MissingClaim("exp")),
        None => {}
    }

    if let Some(nbf) = claims.not_before()? {
        if nbf > now + leeway {
            return Err(TokenError::NotYetValid);
        }
    }

    let issued_at = claims.issued_at()?;
    if let Some(iat) = issued_at {
        if iat > now + leeway {
            return Err(TokenError::IssuedInFuture);
        }
    }

    if let Some(max_age) = rules.max_iat_age {
        let iat = issued_at.ok_or(TokenError::MissingClaim("iat"))?;
        if now >= iat + max_age.as_secs_f64() + leeway {
            return Err(TokenError::Expired);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwt_sign::{fixtures, SigningKey};
    use serde_json::json;

    const MAX: usize = 8192;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hs256() -> SigningKey {
        SigningKey::hmac(SECRET, Algorithm::Hs256).unwrap()
    }

    fn hs256_keys() -> KeySet {
        KeySet::from_keys(vec![VerifyingKey::hmac(
            SECRET,
            Algorithm::Hs256,
            Some("k1".into()),
        )
        .unwrap()])
    }

    fn rsa() -> SigningKey {
        SigningKey::from_pkcs8_pem(fixtures::RSA_2048_PKCS8_PEM).unwrap()
    }

    fn rsa_keys() -> KeySet {
        let jwk = rsa().public_jwk(Some("k1")).unwrap();
        KeySet::from_keys(vec![VerifyingKey::from_jwk(&jwk).unwrap()])
    }

    /// Signs the header and payload text exactly as given with the HS256 test secret.
    fn raw(header: &str, payload: &str) -> String {
        hs256().sign_raw(Algorithm::Hs256, header, payload).unwrap()
    }

    /// Builds a token from already-encoded segments, signing the exact signing input.
    fn from_segments(header_b64: &str, payload_b64: &str) -> String {
        let signing_input = format!("{header_b64}.{payload_b64}");
        let signature = hs256()
            .sign_bytes(Algorithm::Hs256, signing_input.as_bytes())
            .unwrap();
        format!("{signing_input}.{}", BASE64URL.encode(signature))
    }

    fn b64(text: &str) -> String {
        BASE64URL.encode(text)
    }

    const HEADER: &str = r#"{"alg":"HS256","kid":"k1"}"#;
    const PAYLOAD: &str = r#"{"sub":"alice"}"#;

    fn parse_error(token: &str) -> TokenError {
        parse(token, MAX).unwrap_err()
    }

    #[test]
    fn well_formed_token_parses_and_verifies() {
        let token = raw(HEADER, PAYLOAD);
        let parsed = parse(&token, MAX).unwrap();
        assert_eq!(
            parsed.header(),
            &Header {
                alg: Algorithm::Hs256,
                kid: Some("k1".into()),
                typ: None
            }
        );
        let claims = parsed.verify(&hs256_keys()).unwrap();
        assert_eq!(claims.subject().unwrap(), Some("alice"));
    }

    #[test]
    fn unverified_issuer_before_verification() {
        let token = raw(HEADER, r#"{"iss":"https://issuer.example"}"#);
        let parsed = parse(&token, MAX).unwrap();
        assert_eq!(parsed.unverified_issuer(), Some("https://issuer.example"));

        let numeric = raw(HEADER, r#"{"iss":7}"#);
        assert_eq!(parse(&numeric, MAX).unwrap().unverified_issuer(), None);
        assert_eq!(
            parse(&raw(HEADER, PAYLOAD), MAX)
                .unwrap()
                .unverified_issuer(),
            None
        );
    }

    #[test]
    fn size_limit_boundary() {
        let token = raw(HEADER, PAYLOAD);
        assert!(parse(&token, token.len()).is_ok(), "exactly at the limit");
        assert_eq!(
            parse(&token, token.len() - 1).unwrap_err(),
            TokenError::TooLarge {
                max_bytes: token.len() - 1
            }
        );
    }

    #[test]
    fn segment_count_must_be_three() {
        let token = raw(HEADER, PAYLOAD);
        let cases = [
            (String::new(), "empty string"),
            (token.replacen('.', "", 1), "two segments"),
            (format!("{token}."), "four segments, last empty"),
            (format!("{token}.{token}"), "six segments"),
            ("..".to_owned(), "three empty segments"),
        ];
        for (token, description) in cases {
            assert!(
                matches!(parse_error(&token), TokenError::Malformed(_)),
                "{description}"
            );
        }
        let jwe = format!("{}.a.b.c.d", b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#));
        assert_eq!(
            parse_error(&jwe),
            TokenError::Malformed(
                "token has five segments (JWE); only JWS compact serialization is accepted"
            )
        );
    }

    #[test]
    fn base64url_must_be_strict() {
        let header = b64(HEADER);
        let payload = b64(r#"{"sub":"alice?>"}"#);
        let standard =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(r#"{"sub":"alice?>"}"#);
        assert_ne!(
            standard, payload,
            "the payload must contain a URL-safe character"
        );

        let bad_header = TokenError::Malformed("header is not valid unpadded base64url");
        let bad_payload = TokenError::Malformed("payload is not valid unpadded base64url");
        let cases = [
            (
                from_segments(&format!("{header}="), &payload),
                &bad_header,
                "padding on the header",
            ),
            (
                from_segments(&header, &format!("{payload}=")),
                &bad_payload,
                "padding on the payload",
            ),
            (
                from_segments(&header, &standard),
                &bad_payload,
                "standard alphabet in the payload",
            ),
            (
                from_segments(&format!(" {header}"), &payload),
                &bad_header,
                "leading space",
            ),
            (
                from_segments(&header, &format!("{}\n{}", &payload[..4], &payload[4..])),
                &bad_payload,
                "line break",
            ),
            (
                from_segments(&header, "AB"),
                &bad_payload,
                "non-zero trailing bits",
            ),
            (
                from_segments(&header, "A"),
                &bad_payload,
                "impossible length",
            ),
            (
                from_segments(&header, &format!("{payload}*")),
                &bad_payload,
                "byte outside the alphabet",
            ),
        ];
        for (token, expected, description) in cases {
            assert_eq!(&parse_error(&token), expected, "{description}");
        }

        let token = from_segments(&header, &payload);
        assert_eq!(
            parse_error(&format!("{token}=")),
            TokenError::Malformed("signature is not valid unpadded base64url"),
            "padded signature"
        );
        assert!(parse(&token, MAX).is_ok(), "control without changes");
    }

    #[test]
    fn repeated_member_names_rejected() {
        let cases = [
            (
                r#"{"alg":"HS256","alg":"HS256"}"#,
                PAYLOAD,
                "header repeats a member name",
                "same alg twice",
            ),
            (
                r#"{"alg":"none","alg":"HS256"}"#,
                PAYLOAD,
                "header repeats a member name",
                "none then HS256",
            ),
            (
                r#"{"alg":"HS256","jwk":{"kty":"oct","kty":"RSA"}}"#,
                PAYLOAD,
                "header repeats a member name",
                "nested in header",
            ),
            (
                HEADER,
                r#"{"sub":"alice","sub":"admin"}"#,
                "payload repeats a member name",
                "two sub",
            ),
            (
                HEADER,
                r#"{"sub":"alice","\u0073ub":"admin"}"#,
                "payload repeats a member name",
                "escaped name",
            ),
            (
                HEADER,
                r#"{"a":[{"b":1,"b":2}]}"#,
                "payload repeats a member name",
                "inside an array",
            ),
            (
                HEADER,
                r#"{"realm_access":{"roles":[],"roles":["admin"]}}"#,
                "payload repeats a member name",
                "nested object",
            ),
        ];
        for (header, payload, detail, description) in cases {
            assert_eq!(
                parse_error(&raw(header, payload)),
                TokenError::Malformed(detail),
                "{description}"
            );
        }
    }

    #[test]
    fn header_and_payload_must_be_objects() {
        let cases = [
            (r#"["HS256"]"#, PAYLOAD, "header is not a JSON object"),
            ("", PAYLOAD, "header is not valid JSON"),
            (r#"{"alg":"HS256"} x"#, PAYLOAD, "header is not valid JSON"),
            (HEADER, "[]", "payload is not a JSON object"),
            (HEADER, r#""sub""#, "payload is not a JSON object"),
            (HEADER, "", "payload is not valid JSON"),
            (HEADER, "{\"sub\":\"a\"", "payload is not valid JSON"),
        ];
        for (header, payload, detail) in cases {
            assert_eq!(
                parse_error(&raw(header, payload)),
                TokenError::Malformed(detail),
                "{header} {payload}"
            );
        }
    }

    #[test]
    fn json_nesting_limit_enforced() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            parse_json_strict(deep.as_bytes()),
            Err(JsonError::Syntax { .. })
        ));
        let shallow = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(parse_json_strict(shallow.as_bytes()).is_ok());
    }

    #[test]
    fn alg_must_be_supported() {
        let cases = [
            (
                r#"{"alg":"none"}"#,
                TokenError::UnsupportedAlgorithm,
                "none",
            ),
            (
                r#"{"alg":"None"}"#,
                TokenError::UnsupportedAlgorithm,
                "None",
            ),
            (
                r#"{"alg":"NONE"}"#,
                TokenError::UnsupportedAlgorithm,
                "NONE",
            ),
            (
                r#"{"alg":"nOnE"}"#,
                TokenError::UnsupportedAlgorithm,
                "nOnE",
            ),
            (
                r#"{"alg":"hs256"}"#,
                TokenError::UnsupportedAlgorithm,
                "lower case",
            ),
            (
                r#"{"alg":"HS256 "}"#,
                TokenError::UnsupportedAlgorithm,
                "trailing space",
            ),
            (
                r#"{"alg":"ES512"}"#,
                TokenError::UnsupportedAlgorithm,
                "ES512",
            ),
            (
                r#"{"typ":"JWT"}"#,
                TokenError::Malformed("header has no `alg`"),
                "missing alg",
            ),
            (
                r#"{"alg":null}"#,
                TokenError::Malformed("header `alg` is not a string"),
                "null alg",
            ),
            (
                r#"{"alg":["HS256"]}"#,
                TokenError::Malformed("header `alg` is not a string"),
                "array alg",
            ),
        ];
        for (header, expected, description) in cases {
            assert_eq!(
                parse_error(&raw(header, PAYLOAD)),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn crit_and_b64_rejected() {
        let cases = [
            (
                r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
                TokenError::UnknownCrit,
                "unknown parameter",
            ),
            (
                r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
                TokenError::UnknownCrit,
                "b64 listed in crit",
            ),
            (
                r#"{"alg":"HS256","crit":[]}"#,
                TokenError::Malformed("header `crit` is an empty array"),
                "empty crit",
            ),
            (
                r#"{"alg":"HS256","crit":"exp"}"#,
                TokenError::Malformed("header `crit` is not an array"),
                "string crit",
            ),
            (
                r#"{"alg":"HS256","crit":[1]}"#,
                TokenError::Malformed("header `crit` contains a value that is not a string"),
                "numeric item",
            ),
            (
                r#"{"alg":"HS256","b64":false}"#,
                TokenError::Malformed("header parameter `b64` (RFC 7797) is not supported"),
                "b64 without crit",
            ),
        ];
        for (header, expected, description) in cases {
            assert_eq!(
                parse_error(&raw(header, PAYLOAD)),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn key_reference_parameters_ignored() {
        let attacker =
            SigningKey::hmac(b"attacker-secret-attacker-secret-", Algorithm::Hs256).unwrap();
        let header = r#"{"alg":"HS256","kid":"k1","jku":"http://127.0.0.1:1/jwks","x5u":"http://127.0.0.1:1/x",
            "jwk":{"kty":"oct","k":"YXR0YWNrZXItc2VjcmV0LWF0dGFja2VyLXNlY3JldC0"},"x5c":["AAAA"],"x5t":"AAAA"}"#;

        let forged = attacker
            .sign_raw(Algorithm::Hs256, header, PAYLOAD)
            .unwrap();
        assert_eq!(
            parse(&forged, MAX)
                .unwrap()
                .verify(&hs256_keys())
                .unwrap_err(),
            TokenError::BadSignature
        );

        let genuine = raw(header, PAYLOAD);
        assert!(
            parse(&genuine, MAX).unwrap().verify(&hs256_keys()).is_ok(),
            "same header, configured key"
        );
    }

    #[test]
    fn kid_length_boundary() {
        let at_limit = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(MAX_KID_BYTES));
        let over_limit = format!(
            r#"{{"alg":"HS256","kid":"{}"}}"#,
            "k".repeat(MAX_KID_BYTES + 1)
        );

        assert!(parse(&raw(&at_limit, PAYLOAD), MAX).is_ok());
        assert_eq!(
            parse_error(&raw(&over_limit, PAYLOAD)),
            TokenError::Malformed("header `kid` is longer than 256 bytes")
        );
    }

    #[test]
    fn header_member_types_checked() {
        let cases = [
            (r#"{"alg":"HS256","kid":1}"#, "header `kid` is not a string"),
            (
                r#"{"alg":"HS256","kid":["k1"]}"#,
                "header `kid` is not a string",
            ),
            (
                r#"{"alg":"HS256","kid":null}"#,
                "header `kid` is not a string",
            ),
            (r#"{"alg":"HS256","typ":1}"#, "header `typ` is not a string"),
        ];
        for (header, detail) in cases {
            assert_eq!(
                parse_error(&raw(header, PAYLOAD)),
                TokenError::Malformed(detail),
                "{header}"
            );
        }
    }

    #[test]
    fn signature_length_checked_per_algorithm() {
        let cases = [
            (Algorithm::Es256, 64),
            (Algorithm::Es384, 96),
            (Algorithm::EdDsa, 64),
            (Algorithm::Hs256, 32),
            (Algorithm::Hs384, 48),
            (Algorithm::Hs512, 64),
            (Algorithm::Rs256, 256),
        ];
        let payload = b64(PAYLOAD);
        let wrong_length =
            TokenError::Malformed("signature does not have the length `alg` requires");
        for (alg, len) in cases {
            let header = b64(&format!(r#"{{"alg":"{alg}"}}"#));
            let token_with =
                |n: usize| format!("{header}.{payload}.{}", BASE64URL.encode(vec![1u8; n]));

            assert!(
                parse(&token_with(len), MAX).is_ok(),
                "{alg} with {len} bytes"
            );
            assert_eq!(
                parse_error(&token_with(len - 1)),
                wrong_length,
                "{alg} short"
            );
            if !alg.is_rsa() {
                assert_eq!(
                    parse_error(&token_with(len + 1)),
                    wrong_length,
                    "{alg} long"
                );
            }
        }
        let rsa_header = b64(r#"{"alg":"RS256"}"#);
        let rsa_token =
            |n: usize| format!("{rsa_header}.{payload}.{}", BASE64URL.encode(vec![1u8; n]));
        assert!(
            parse(&rsa_token(MAX_SIGNATURE_BYTES), MAX).is_ok(),
            "RSA-8192 signature"
        );
        assert_eq!(
            parse_error(&rsa_token(MAX_SIGNATURE_BYTES + 1)),
            wrong_length,
            "RSA over 1024 bytes"
        );
        assert_eq!(parse_error(&rsa_token(0)), wrong_length, "empty signature");
    }

    #[test]
    fn hmac_key_never_verifies_rsa_token() {
        let token = rsa()
            .sign(Algorithm::Rs256, &json!({"kid": "k1"}), &json!({}))
            .unwrap();
        let parsed = parse(&token, MAX).unwrap();
        let hmac_key = VerifyingKey::hmac(SECRET, Algorithm::Hs256, Some("k1".into())).unwrap();

        assert_eq!(
            parsed.verify(&hs256_keys()).unwrap_err(),
            TokenError::AlgorithmNotAllowedForKey
        );
        assert_eq!(
            parsed.verify_with(&hmac_key).unwrap_err(),
            TokenError::AlgorithmNotAllowedForKey
        );
        assert!(
            parsed.verify(&rsa_keys()).is_ok(),
            "control with the RSA key"
        );
    }

    #[test]
    fn rsa_key_never_verifies_hmac_token() {
        let public_key_as_secret = rsa().public_key_bytes().unwrap();
        let forger = SigningKey::hmac(&public_key_as_secret, Algorithm::Hs256).unwrap();
        let token = forger
            .sign(Algorithm::Hs256, &json!({"kid": "k1"}), &json!({}))
            .unwrap();
        let parsed = parse(&token, MAX).unwrap();
        let rsa_key = rsa_keys().iter().next().unwrap().clone();

        assert_eq!(
            parsed.verify(&rsa_keys()).unwrap_err(),
            TokenError::AlgorithmNotAllowedForKey
        );
        assert_eq!(
            parsed.verify_with(&rsa_key).unwrap_err(),
            TokenError::AlgorithmNotAllowedForKey
        );
        assert!(
            !rsa_key.verify_signature(Algorithm::Hs256, b"x", &[0; 32]),
            "direct call is bound too"
        );
    }

    #[test]
    fn key_lookup_outcomes() {
        let keys = hs256_keys();
        let verify = |header: &str| {
            parse(&raw(header, PAYLOAD), MAX)
                .unwrap()
                .verify(&keys)
                .map(|_| ())
        };

        assert_eq!(verify(r#"{"alg":"HS256","kid":"k1"}"#), Ok(()));
        assert_eq!(
            verify(r#"{"alg":"HS256"}"#),
            Ok(()),
            "no kid tries every HS256 key"
        );
        assert_eq!(
            verify(r#"{"alg":"HS256","kid":"k2"}"#),
            Err(TokenError::KeyNotFound)
        );
        assert_eq!(
            verify(r#"{"alg":"HS256","kid":"K1"}"#),
            Err(TokenError::KeyNotFound),
            "kid is case-sensitive"
        );

        let empty = KeySet::default();
        let token = raw(r#"{"alg":"HS256"}"#, PAYLOAD);
        assert_eq!(
            parse(&token, MAX).unwrap().verify(&empty).unwrap_err(),
            TokenError::KeyNotFound
        );
    }

    #[test]
    fn kid_matching_key_with_other_algorithm() {
        let signer = SigningKey::hmac(SECRET, Algorithm::Hs384).unwrap();
        let token = signer
            .sign(Algorithm::Hs384, &json!({"kid": "k1"}), &json!({}))
            .unwrap();
        assert_eq!(
            parse(&token, MAX)
                .unwrap()
                .verify(&hs256_keys())
                .unwrap_err(),
            TokenError::AlgorithmNotAllowedForKey
        );
    }

    #[test]
    fn several_keys_without_kid() {
        let other = VerifyingKey::hmac(&[9; 32], Algorithm::Hs256, None).unwrap();
        let right = VerifyingKey::hmac(SECRET, Algorithm::Hs256, None).unwrap();
        let token = raw(r#"{"alg":"HS256"}"#, PAYLOAD);
        let parsed = parse(&token, MAX).unwrap();

        assert!(parsed
            .verify(&KeySet::from_keys(vec![other.clone(), right]))
            .is_ok());
        assert_eq!(
            parsed.verify(&KeySet::from_keys(vec![other])).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn tampering_breaks_signature() {
        let token = raw(HEADER, PAYLOAD);
        let [header, _, signature]: [&str; 3] =
            token.split('.').collect::<Vec<_>>().try_into().unwrap();

        let other_payload = format!("{header}.{}.{signature}", b64(r#"{"sub":"admin"}"#));
        let mut flipped = BASE64URL.decode(signature).unwrap();
        flipped[0] ^= 1;
        let other_signature = format!("{header}.{}.{}", b64(PAYLOAD), BASE64URL.encode(flipped));

        for token in [other_payload, other_signature] {
            assert_eq!(
                parse(&token, MAX)
                    .unwrap()
                    .verify(&hs256_keys())
                    .unwrap_err(),
                TokenError::BadSignature
            );
        }
    }

    #[test]
    fn ecdsa_zero_signature_rejected() {
        let signer = SigningKey::generate(Algorithm::Es256).unwrap();
        let key = VerifyingKey::from_jwk(&signer.public_jwk(None).unwrap()).unwrap();
        let token = signer
            .sign(Algorithm::Es256, &json!({}), &json!({}))
            .unwrap();
        let signing_input = token.rsplit_once('.').unwrap().0;
        let zero = format!("{signing_input}.{}", BASE64URL.encode([0u8; 64]));

        assert!(
            parse(&token, MAX).unwrap().verify_with(&key).is_ok(),
            "control"
        );
        assert_eq!(
            parse(&zero, MAX).unwrap().verify_with(&key).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn jws_layer_accepts_any_payload_bytes() {
        let signing_input = format!("{}.{}", b64(HEADER), BASE64URL.encode([0xff, 0x00]));
        let signature = hs256()
            .sign_bytes(Algorithm::Hs256, signing_input.as_bytes())
            .unwrap();
        let token = format!("{signing_input}.{}", BASE64URL.encode(signature));

        let jws = parse_jws(&token, MAX).unwrap();
        assert_eq!(jws.verify(&hs256_keys()).unwrap(), &[0xff, 0x00]);
        assert_eq!(
            parse_error(&token),
            TokenError::Malformed("payload is not valid JSON")
        );
    }

    fn claims(value: Value) -> Claims {
        Claims::from_map(value.as_object().unwrap().clone())
    }

    #[test]
    fn audience_accessor_forms() {
        assert_eq!(
            claims(json!({"aud": "a"})).audiences().unwrap(),
            Some(vec!["a"])
        );
        assert_eq!(
            claims(json!({"aud": ["a", "b"]})).audiences().unwrap(),
            Some(vec!["a", "b"])
        );
        assert_eq!(claims(json!({})).audiences().unwrap(), None);
        for malformed in [
            json!({"aud": 1}),
            json!({"aud": ["a", 1]}),
            json!({"aud": {"a": 1}}),
            json!({"aud": null}),
        ] {
            assert!(matches!(
                claims(malformed).audiences(),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn numeric_date_accessors() {
        let parsed = claims(json!({"exp": 1700000000.5, "nbf": 1700000000, "iat": -1}));
        assert_eq!(parsed.expires_at().unwrap(), Some(1700000000.5));
        assert_eq!(parsed.not_before().unwrap(), Some(1700000000.0));
        assert_eq!(parsed.issued_at().unwrap(), Some(-1.0));

        let strings = claims(json!({"exp": "1700000000", "nbf": null, "iat": true}));
        assert_eq!(
            strings.expires_at().unwrap_err(),
            TokenError::Malformed("`exp` claim is not a number")
        );
        assert_eq!(
            strings.not_before().unwrap_err(),
            TokenError::Malformed("`nbf` claim is not a number")
        );
        assert_eq!(
            strings.issued_at().unwrap_err(),
            TokenError::Malformed("`iat` claim is not a number")
        );
    }

    #[test]
    fn string_claim_accessors_reject_other_types() {
        let parsed = claims(json!({"iss": 1, "sub": ["a"]}));
        assert_eq!(
            parsed.issuer().unwrap_err(),
            TokenError::Malformed("`iss` claim is not a string")
        );
        assert_eq!(
            parsed.subject().unwrap_err(),
            TokenError::Malformed("`sub` claim is not a string")
        );
    }

    #[test]
    fn claim_paths() {
        let parsed = claims(json!({
            "realm_access": {"roles": ["admin"]},
            "https://example.com/roles": ["editor"],
            "a": {"b": {"c": 1}},
            "text": "x",
        }));
        assert_eq!(parsed.get("realm_access.roles"), Some(&json!(["admin"])));
        assert_eq!(
            parsed.get("https://example.com/roles"),
            Some(&json!(["editor"]))
        );
        assert_eq!(parsed.get("a.b.c"), Some(&json!(1)));
        assert_eq!(parsed.get("a.x"), None);
        assert_eq!(parsed.get("text.more"), None);
        assert_eq!(parsed.get("missing"), None);
    }

    #[test]
    fn string_list_forms() {
        let parsed = claims(json!({
            "scope": "read  write ",
            "roles": ["a", "b"],
            "bad": [1],
            "number": 3,
            "nested": {"scp": "x y"},
        }));
        assert_eq!(
            parsed.string_list("scope").unwrap(),
            Some(vec!["read", "write"])
        );
        assert_eq!(parsed.string_list("roles").unwrap(), Some(vec!["a", "b"]));
        assert_eq!(
            parsed.string_list("nested.scp").unwrap(),
            Some(vec!["x", "y"])
        );
        assert_eq!(parsed.string_list("missing").unwrap(), None);
        assert!(matches!(
            parsed.string_list("bad"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            parsed.string_list("number"),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn claims_debug_shows_names_only() {
        let printed = format!("{:?}", claims(json!({"sub": "alice-secret-subject"})));
        assert!(printed.contains("sub"), "{printed}");
        assert!(!printed.contains("alice-secret-subject"), "{printed}");
    }

    const NOW: f64 = 1_700_000_000.0;
    const LEEWAY: f64 = 30.0;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://issuer.example".into(),
            audiences: vec!["api".into(), "other-api".into()],
            leeway: Duration::from_secs(30),
            required_typ: None,
            require_exp: true,
            max_iat_age: None,
        }
    }

    fn header(typ: Option<&str>) -> Header {
        Header {
            alg: Algorithm::Hs256,
            kid: None,
            typ: typ.map(str::to_owned),
        }
    }

    /// Claims that pass `rules()` at `NOW`, with `changes` merged in (null removes a claim).
    fn valid_claims(changes: Value) -> Claims {
        let mut members =
            json!({"iss": "https://issuer.example", "aud": "api", "exp": NOW + 300.0})
                .as_object()
                .unwrap()
                .clone();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                members.remove(name);
            } else {
                members.insert(name.clone(), value.clone());
            }
        }
        Claims::from_map(members)
    }

    fn check(changes: Value) -> Result<(), TokenError> {
        validate(&header(None), &valid_claims(changes), &rules(), NOW)
    }

    #[test]
    fn expiry_boundary() {
        assert_eq!(
            check(json!({"exp": NOW - LEEWAY + 1.0})),
            Ok(()),
            "one second inside the leeway"
        );
        assert_eq!(
            check(json!({"exp": NOW - LEEWAY + 0.001})),
            Ok(()),
            "a millisecond inside the leeway"
        );
        assert_eq!(
            check(json!({"exp": NOW - LEEWAY})),
            Err(TokenError::Expired),
            "exactly exp + leeway"
        );
        assert_eq!(
            check(json!({"exp": NOW - LEEWAY - 1.0})),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn missing_exp_depends_on_rule() {
        assert_eq!(
            check(json!({"exp": null})),
            Err(TokenError::MissingClaim("exp"))
        );
        let optional = ClaimRules {
            require_exp: false,
            ..rules()
        };
        assert_eq!(
            validate(
                &header(None),
                &valid_claims(json!({"exp": null})),
                &optional,
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn not_before_boundary() {
        assert_eq!(
            check(json!({"nbf": NOW + LEEWAY})),
            Ok(()),
            "exactly now + leeway"
        );
        assert_eq!(
            check(json!({"nbf": NOW + LEEWAY + 0.5})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check(json!({"nbf": NOW + LEEWAY + 1.0})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(check(json!({"nbf": NOW - 1000.0})), Ok(()));
    }

    #[test]
    fn issued_at_boundary() {
        assert_eq!(
            check(json!({"iat": NOW + LEEWAY})),
            Ok(()),
            "exactly now + leeway"
        );
        assert_eq!(
            check(json!({"iat": NOW + LEEWAY + 1.0})),
            Err(TokenError::IssuedInFuture)
        );
        assert_eq!(check(json!({"iat": NOW})), Ok(()));
    }

    #[test]
    fn max_iat_age_boundary() {
        let aged = ClaimRules {
            max_iat_age: Some(Duration::from_secs(600)),
            ..rules()
        };
        let at = |iat: Value| {
            validate(
                &header(None),
                &valid_claims(json!({"iat": iat})),
                &aged,
                NOW,
            )
        };

        assert_eq!(
            at(json!(NOW - 600.0 - LEEWAY + 1.0)),
            Ok(()),
            "one second before the limit"
        );
        assert_eq!(
            at(json!(NOW - 600.0 - LEEWAY)),
            Err(TokenError::Expired),
            "exactly at the limit"
        );
        assert_eq!(at(Value::Null), Err(TokenError::MissingClaim("iat")));
    }

    #[test]
    fn time_claims_must_be_numbers() {
        assert!(matches!(
            check(json!({"exp": "1900000000"})),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            check(json!({"nbf": "0"})),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            check(json!({"iat": [1]})),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(check(json!({})), Ok(()));
        assert_eq!(
            check(json!({"iss": "https://issuer.example/"})),
            Err(TokenError::IssuerMismatch)
        );
        assert_eq!(
            check(json!({"iss": "https://ISSUER.example"})),
            Err(TokenError::IssuerMismatch)
        );
        assert_eq!(
            check(json!({"iss": "https://issuer.example "})),
            Err(TokenError::IssuerMismatch)
        );
        assert_eq!(
            check(json!({"iss": null})),
            Err(TokenError::MissingClaim("iss"))
        );
        assert!(matches!(
            check(json!({"iss": ["https://issuer.example"]})),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn audience_must_intersect() {
        assert_eq!(check(json!({"aud": "other-api"})), Ok(()));
        assert_eq!(
            check(json!({"aud": ["web", "api"]})),
            Ok(()),
            "one of several matches"
        );
        assert_eq!(
            check(json!({"aud": "web"})),
            Err(TokenError::AudienceMismatch)
        );
        assert_eq!(
            check(json!({"aud": ["web", "API"]})),
            Err(TokenError::AudienceMismatch),
            "case differs"
        );
        assert_eq!(check(json!({"aud": []})), Err(TokenError::AudienceMismatch));
        assert_eq!(
            check(json!({"aud": null})),
            Err(TokenError::MissingClaim("aud"))
        );
        assert!(matches!(
            check(json!({"aud": ["api", 1]})),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            check(json!({"aud": 1})),
            Err(TokenError::Malformed(_))
        ));

        let none_configured = ClaimRules {
            audiences: vec![],
            ..rules()
        };
        assert_eq!(
            validate(
                &header(None),
                &valid_claims(json!({})),
                &none_configured,
                NOW
            ),
            Err(TokenError::AudienceMismatch),
            "an empty configured list matches nothing"
        );
    }

    #[test]
    fn typ_comparison_rules() {
        let typed = |accepted: &[&str], typ: Option<&str>| {
            let rules = ClaimRules {
                required_typ: Some(accepted.iter().map(|value| value.to_string()).collect()),
                ..rules()
            };
            validate(&header(typ), &valid_claims(json!({})), &rules, NOW)
        };

        assert_eq!(typed(&["at+jwt"], Some("at+jwt")), Ok(()));
        assert_eq!(
            typed(&["at+jwt"], Some("AT+JWT")),
            Ok(()),
            "case-insensitive"
        );
        assert_eq!(
            typed(&["at+jwt"], Some("application/at+jwt")),
            Ok(()),
            "prefix on the token"
        );
        assert_eq!(
            typed(&["application/at+jwt"], Some("at+jwt")),
            Ok(()),
            "prefix in the rule"
        );
        assert_eq!(typed(&["at+jwt"], Some("Application/At+Jwt")), Ok(()));
        assert_eq!(
            typed(&["JWT", "at+jwt"], Some("jwt")),
            Ok(()),
            "any listed value"
        );
        assert_eq!(
            typed(&["at+jwt"], Some("JWT")),
            Err(TokenError::TypMismatch)
        );
        assert_eq!(
            typed(&["at+jwt"], Some("text/at+jwt")),
            Err(TokenError::TypMismatch),
            "other media type"
        );
        assert_eq!(
            typed(&["at+jwt"], Some("application/application/at+jwt")),
            Err(TokenError::TypMismatch)
        );
        assert_eq!(
            typed(&["at+jwt"], Some("application/")),
            Err(TokenError::TypMismatch)
        );
        assert_eq!(
            typed(&["at+jwt"], None),
            Err(TokenError::TypMismatch),
            "missing typ"
        );
        assert_eq!(
            typed(&[], Some("at+jwt")),
            Err(TokenError::TypMismatch),
            "empty list"
        );
        assert_eq!(
            validate(&header(None), &valid_claims(json!({})), &rules(), NOW),
            Ok(()),
            "no rule"
        );
    }

    #[test]
    fn reason_codes_are_stable() {
        let cases = [
            (TokenError::Malformed("x"), "token_malformed"),
            (TokenError::TooLarge { max_bytes: 1 }, "token_too_large"),
            (
                TokenError::UnsupportedAlgorithm,
                "token_algorithm_unsupported",
            ),
            (
                TokenError::AlgorithmNotAllowedForKey,
                "token_algorithm_not_allowed",
            ),
            (TokenError::UnknownCrit, "token_crit_unsupported"),
            (TokenError::KeyNotFound, "token_key_not_found"),
            (TokenError::BadSignature, "token_signature_invalid"),
            (TokenError::Expired, "token_expired"),
            (TokenError::NotYetValid, "token_not_yet_valid"),
            (TokenError::IssuedInFuture, "token_issued_in_future"),
            (TokenError::IssuerMismatch, "token_issuer_mismatch"),
            (TokenError::AudienceMismatch, "token_audience_mismatch"),
            (TokenError::TypMismatch, "token_type_mismatch"),
            (TokenError::MissingClaim("exp"), "token_claim_missing"),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error:?}");
        }
    }

    #[test]
    fn error_display_omits_token_content() {
        let marker = "attacker-marker-value";
        let header = format!(r#"{{"alg":"HS256","kid":"{marker}"}}"#);
        let payload = format!(r#"{{"sub":"{marker}","sub":"{marker}"}}"#);
        let error = parse_error(&raw(&header, &payload));
        assert!(!error.to_string().contains(marker), "{error}");
        assert!(!format!("{error:?}").contains(marker), "{error:?}");
    }
}
