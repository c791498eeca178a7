//! The token service's HTTP endpoints: the token endpoint (RFC 6749
//! section 4.4), introspection (RFC 7662), the JWKS and the authorization
//! server metadata (RFC 8414). OAuth errors are JSON bodies of RFC 6749
//! section 5.2 with fixed descriptions; causes go to the log.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::apikey::{KeyError, KeyRing};
use crate::authn::jwt::{self, ClaimRules};
use crate::pipeline::body::{full, Body};
use crate::pipeline::reject::Rejection;
use crate::revocation::{Revocations, Target};
use crate::token_service::claims::{self, ScopeError, TokenFacts};
use crate::token_service::config::{ClientConfig, TokenServiceConfig};
use crate::token_service::secret_hash::{SecretHash, ITERATIONS};
use crate::token_service::{now, Inner};

/// Largest accepted form body.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Maximum length of a token the introspection endpoint parses.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
const GRANT_TYPE: &str = "client_credentials";
const BASIC_CHALLENGE: &str = "Basic realm=\"portcullis\"";
const API_KEY_CHALLENGE: &str = "ApiKey realm=\"portcullis\"";

/// An OAuth error response (RFC 6749 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthError {
    /// A parameter is missing, repeated or malformed, or the client used
    /// more than one authentication method.
    InvalidRequest(&'static str),
    /// Client authentication failed; carries the `WWW-Authenticate`
    /// challenge of the method the client used.
    InvalidClient {
        challenge: &'static str,
    },
    /// The client's credential cannot be used for a token here.
    InvalidGrant(&'static str),
    UnsupportedGrantType,
    InvalidScope,
    /// The client may not act on this token (RFC 7009 section 2.1).
    UnauthorizedClient(&'static str),
    /// The client IP failed authentication too often; 429 with
    /// `Retry-After`.
    TooManyAttempts(Duration),
    /// A fault in the gateway; logged, never described.
    ServerError,
}

impl OAuthError {
    /// Returns the `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } | OAuthError::TooManyAttempts(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::ServerError => "server_error",
        }
    }

    /// Returns the reason code for logs and metrics: the `error` code, or
    /// `client_attempts_exceeded` for a source that failed too often.
    pub fn reason(&self) -> &'static str {
        match self {
            OAuthError::TooManyAttempts(_) => "client_attempts_exceeded",
            other => other.code(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(description)
            | OAuthError::InvalidGrant(description)
            | OAuthError::UnauthorizedClient(description) => description,
            OAuthError::InvalidClient { .. } => "client authentication failed",
            OAuthError::UnsupportedGrantType => "only the client_credentials grant is supported",
            OAuthError::InvalidScope => {
                "a requested scope is malformed or not allowed for this client"
            }
            OAuthError::TooManyAttempts(_) => {
                "too many failed client authentications from this address; retry after the time in Retry-After"
            }
            OAuthError::ServerError => "the token could not be issued; retry later",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({ "error": self.code(), "error_description": self.description() });
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            OAuthError::InvalidClient { challenge } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            OAuthError::TooManyAttempts(wait) => {
                let value = crate::pipeline::reject::retry_after(wait);
                headers.insert(header::RETRY_AFTER, value);
            }
            _ => {}
        }
        response
    }
}

/// A client whose authentication succeeded.
struct Client {
    id: String,
    tenant: Option<String>,
    allowed_scopes: Vec<String>,
    /// When the client's credential expires (an API key's expiry), in unix
    /// seconds; no token outlives it.
    expires_at: Option<u64>,
    /// Whether the client is an API key, for the issued-token log.
    api_key: bool,
}

/// Rejects a request whose method the endpoint does not serve.
pub(super) fn require_method(parts: &Parts, method: &Method) -> Result<(), Rejection> {
    if parts.method == method {
        return Ok(());
    }
    Err(Rejection::MethodNotAllowed {
        allow: method.to_string(),
    })
}

/// `POST {prefix}/token`: issues an access token for the client_credentials
/// grant.
pub(super) async fn token(
    inner: &Inner,
    parts: &Parts,
    body: Incoming,
    client_ip: IpAddr,
    api_keys: Option<&KeyRing>,
) -> Result<Response<Body>, Rejection> {
    let form = read_form(parts, body).await?;
    let result = match form {
        Ok(form) => issue(inner, parts, &form, client_ip, api_keys),
        Err(error) => Err(error),
    };
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            inner.metrics.token_request(error.reason());
            tracing::info!(
                reason = error.reason(),
                client.ip = %client_ip,
                "token request denied"
            );
            error.into_response()
        }
    };
    Ok(response)
}

fn issue(
    inner: &Inner,
    parts: &Parts,
    form: &Form,
    client_ip: IpAddr,
    api_keys: Option<&KeyRing>,
) -> Result<Response<Body>, OAuthError> {
    let client = authenticate(inner, parts, form, client_ip, api_keys)?;

    match form.get("grant_type") {
        None => {
            return Err(OAuthError::InvalidRequest(
                "the grant_type parameter is missing",
            ))
        }
        Some(GRANT_TYPE) => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    let scopes =
        claims::grant_scopes(form.get("scope"), &client.allowed_scopes).map_err(|error| {
            if let ScopeError::NotAllowed(scope) = &error {
                tracing::info!(
                    client.id = client.id.as_str(),
                    scope = scope.as_str(),
                    "scope not allowed for the client"
                );
            }
            OAuthError::InvalidScope
        })?;
    if let Some(tenant) = &client.tenant {
        if !inner.tenants.contains(tenant) {
            tracing::warn!(
                client.id = client.id.as_str(),
                tenant.id = tenant.as_str(),
                "client's tenant is not configured"
            );
            return Err(OAuthError::InvalidGrant(
                "the client's tenant is not configured on this gateway",
            ));
        }
    }

    let (token, expires_in, kid, jti) = sign(inner, &client, &scopes)?;
    inner.metrics.token_request("issued");
    tracing::info!(
        client.id = client.id.as_str(),
        client.api_key = client.api_key,
        client.ip = %client_ip,
        tenant.id = client.tenant.as_deref(),
        token.kid = kid.as_str(),
        token.jti = jti.as_str(),
        token.scope = scopes.join(" "),
        token.expires_in = expires_in,
        "token issued"
    );
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if !scopes.is_empty() {
        body["scope"] = scopes.join(" ").into();
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Signs the token; returns it with its lifetime in seconds, `kid` and
/// `jti`.
fn sign(
    inner: &Inner,
    client: &Client,
    scopes: &[String],
) -> Result<(String, u64, String, String), OAuthError> {
    let snapshot = inner.keys.load();
    let now = now();
    let Some(key) = snapshot.signing_key(now, inner.retention()) else {
        tracing::error!(keys.dir = %inner.config.keys_dir.display(), "no token signing key is active");
        return Err(OAuthError::ServerError);
    };
    let mut expires_at = now + inner.config.token_ttl.as_secs().max(1);
    if let Some(limit) = client.expires_at {
        expires_at = expires_at.min(limit);
    }
    if expires_at <= now {
        return Err(OAuthError::InvalidClient {
            challenge: API_KEY_CHALLENGE,
        });
    }

    let jti = claims::new_jti();
    let facts = TokenFacts {
        issuer: &inner.config.issuer,
        audiences: &inner.config.audiences,
        client_id: &client.id,
        tenant: client.tenant.as_deref(),
        scopes,
        issued_at: now,
        expires_at,
    };
    let claims = claims::build(&facts, &jti);
    let header = json!({ "typ": "at+jwt", "kid": key.entry.kid });
    let token = key.signer.sign(key.algorithm, &header, &claims).map_err(|error| {
        tracing::error!(token.kid = key.entry.kid.as_str(), error = %error, "token signing failed");
        OAuthError::ServerError
    })?;
    Ok((token, expires_at - now, key.entry.kid.clone(), jti))
}

/// Authenticates the client by exactly one method: HTTP Basic or form
/// parameters with a configured client's secret, or an API key.
fn authenticate(
    inner: &Inner,
    parts: &Parts,
    form: &Form,
    client_ip: IpAddr,
    api_keys: Option<&KeyRing>,
) -> Result<Client, OAuthError> {
    let basic = parts.headers.get(header::AUTHORIZATION).and_then(|value| {
        let value = value.to_str().ok()?;
        let (scheme, credentials) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("basic")
            .then(|| credentials.trim())
    });
    let api_key =
        match api_keys.and_then(|ring| ring.presented(&parts.headers).map(|key| (ring, key))) {
            Some((_, Err(_))) => {
                return Err(OAuthError::InvalidRequest(
                    "use exactly one client authentication method",
                ))
            }
            Some((ring, Ok(key))) => Some((ring, key)),
            None => None,
        };
    let posted = form.get("client_secret");

    let methods = [basic.is_some(), api_key.is_some(), posted.is_some()];
    match methods.iter().filter(|used| **used).count() {
        0 => Err(OAuthError::InvalidClient {
            challenge: BASIC_CHALLENGE,
        }),
        1 => {
            if let Some((ring, key)) = api_key {
                return authenticate_api_key(ring, key, form, client_ip);
            }
            let (client_id, secret) = match basic {
                Some(credentials) => decode_basic(credentials)?,
                None => {
                    let client_id = form.get("client_id").ok_or(OAuthError::InvalidRequest(
                        "the client_id parameter is missing",
                    ))?;
                    (
                        client_id.to_string(),
                        posted.unwrap_or_default().to_string(),
                    )
                }
            };
            if basic.is_some() && form.get("client_id").is_some_and(|id| id != client_id) {
                return Err(OAuthError::InvalidRequest(
                    "the client_id parameter does not match the authenticated client",
                ));
            }
            let client = verify_secret(inner, &client_id, &secret, client_ip)?;
            Ok(Client {
                id: client.client_id.clone(),
                tenant: client.tenant.clone(),
                allowed_scopes: client.scopes.clone(),
                expires_at: None,
                api_key: false,
            })
        }
        _ => Err(OAuthError::InvalidRequest(
            "use exactly one client authentication method",
        )),
    }
}

fn authenticate_api_key(
    ring: &KeyRing,
    key: &str,
    form: &Form,
    client_ip: IpAddr,
) -> Result<Client, OAuthError> {
    let identity = ring.verify(key, client_ip).map_err(|error| match error {
        KeyError::TooManyAttempts(wait) => OAuthError::TooManyAttempts(wait),
        _ => OAuthError::InvalidClient {
            challenge: API_KEY_CHALLENGE,
        },
    })?;
    let id = identity.subject.clone().unwrap_or_default();
    if form.get("client_id").is_some_and(|claimed| claimed != id) {
        return Err(OAuthError::InvalidRequest(
            "the client_id parameter does not match the authenticated client",
        ));
    }
    Ok(Client {
        id,
        tenant: identity.tenant.clone(),
        allowed_scopes: identity.scopes.clone(),
        expires_at: identity.expires_at.map(|at| at as u64),
        api_key: true,
    })
}

/// Decodes `client_secret_basic` credentials: base64 of the
/// form-urlencoded client id and secret joined by `:` (RFC 6749 section
/// 2.3.1).
fn decode_basic(credentials: &str) -> Result<(String, String), OAuthError> {
    let invalid = OAuthError::InvalidClient {
        challenge: BASIC_CHALLENGE,
    };
    let decoded = STANDARD.decode(credentials).map_err(|_| invalid)?;
    let text = String::from_utf8(decoded).map_err(|_| invalid)?;
    let (id, secret) = text.split_once(':').ok_or(invalid)?;
    let unescape = |part: &str| -> String {
        form_urlencoded::parse(format!("v={part}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

/// Checks a client secret, counting failures against the client IP. An
/// unknown client id costs a hash like a known one, so response times do
/// not reveal which ids exist.
fn verify_secret<'a>(
    inner: &'a Inner,
    client_id: &str,
    secret: &str,
    client_ip: IpAddr,
) -> Result<&'a ClientConfig, OAuthError> {
    if let Some(wait) = inner.attempts.blocked(client_ip) {
        return Err(OAuthError::TooManyAttempts(wait));
    }
    let client = inner
        .config
        .clients
        .iter()
        .find(|client| client.client_id == client_id);
    let verified = match client {
        Some(client) => client.secret_hash.verify(secret.as_bytes()),
        None => {
            let _ = placeholder_hash().verify(secret.as_bytes());
            false
        }
    };
    match client {
        Some(client) if verified => Ok(client.as_ref()),
        _ => {
            inner.attempts.fail(client_ip);
            if let Some(client) = client {
                tracing::info!(client.id = client.client_id.as_str(), client.ip = %client_ip, "client secret mismatch");
            }
            Err(OAuthError::InvalidClient {
                challenge: BASIC_CHALLENGE,
            })
        }
    }
}

fn placeholder_hash() -> &'static SecretHash {
    static HASH: OnceLock<SecretHash> = OnceLock::new();
    HASH.get_or_init(|| SecretHash::create(b"placeholder for unknown clients", ITERATIONS))
}

/// `POST {prefix}/introspect`: whether a token of this service is active,
/// for a configured client authenticated with HTTP Basic. For a client with
/// a tenant, only that tenant's tokens are reported active.
pub(super) async fn introspect(
    inner: &Inner,
    parts: &Parts,
    body: Incoming,
    client_ip: IpAddr,
) -> Result<Response<Body>, Rejection> {
    let form = read_form(parts, body).await?;
    let result = form.and_then(|form| {
        let client = authenticate_introspecting_client(inner, parts, client_ip)?;
        let token = form
            .get("token")
            .ok_or(OAuthError::InvalidRequest("the token parameter is missing"))?;
        Ok(inspect(inner, token, client.tenant.as_deref()))
    });
    match result {
        Ok(answer) => Ok(json_response(StatusCode::OK, &answer)),
        Err(error) => {
            tracing::info!(reason = error.reason(), client.ip = %client_ip, "introspection request denied");
            Ok(error.into_response())
        }
    }
}

fn authenticate_introspecting_client<'a>(
    inner: &'a Inner,
    parts: &Parts,
    client_ip: IpAddr,
) -> Result<&'a ClientConfig, OAuthError> {
    let credentials = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then(|| credentials.trim())
        })
        .ok_or(OAuthError::InvalidClient {
            challenge: BASIC_CHALLENGE,
        })?;
    let (client_id, secret) = decode_basic(credentials)?;
    verify_secret(inner, &client_id, &secret, client_ip)
}

/// Returns the introspection response for a token: its claims with
/// `active: true` when it is a valid token of this service (signature by a
/// published key, `typ`, issuer, audience and times), else only
/// `active: false`.
fn inspect(inner: &Inner, token: &str, tenant: Option<&str>) -> Value {
    let inactive = json!({ "active": false });
    let Some(claims) = verified_claims(inner, token) else {
        return inactive;
    };
    let token_tenant = claims.get("tenant_id").and_then(Value::as_str);
    if tenant.is_some() && token_tenant != tenant {
        return inactive;
    }

    let mut answer = json!({ "active": true, "token_type": "Bearer" });
    for name in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "tenant_id",
        "iat",
        "exp",
        "jti",
    ] {
        if let Some(value) = claims.get(name) {
            answer[name] = value.clone();
        }
    }
    answer
}

/// Returns the claims of a valid token of this service: signed by a
/// published key, with the right `typ`, issuer, audience and times.
fn verified_claims(inner: &Inner, token: &str) -> Option<crate::authn::jwt::Claims> {
    let config = &inner.config;
    let unverified = jwt::parse(token, MAX_TOKEN_BYTES).ok()?;
    if unverified.unverified_issuer() != Some(config.issuer.as_str()) {
        return None;
    }
    let now = now();
    let keys = inner.keys.load().key_set(now, inner.retention());
    let claims = unverified.verify(&keys).ok()?;
    let rules = ClaimRules {
        issuer: config.issuer.clone(),
        audiences: config.audiences.clone(),
        leeway: config.clock_skew,
        required_typ: Some(vec!["at+jwt".to_string()]),
        require_exp: true,
        max_iat_age: None,
    };
    jwt::validate(unverified.header(), &claims, &rules, now as f64).ok()?;
    Some(claims)
}

/// `POST {prefix}/revoke` (RFC 7009): revokes an access token of this
/// service for the client it was issued to, or an API key presented by
/// itself. A token that is not valid here needs no revocation and gets 200
/// like a revoked one (RFC 7009 section 2.2).
pub(super) async fn revoke(
    inner: &Inner,
    parts: &Parts,
    body: Incoming,
    client_ip: IpAddr,
    api_keys: Option<&KeyRing>,
    revocations: &Revocations,
) -> Result<Response<Body>, Rejection> {
    let form = read_form(parts, body).await?;
    let outcome = match form {
        Ok(form) => revoke_token(inner, parts, &form, client_ip, api_keys, revocations).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => {
            inner.metrics.token_request("revoked");
            Ok(json_response(StatusCode::OK, &json!({})))
        }
        Err(error) => {
            inner.metrics.token_request(error.reason());
            tracing::info!(reason = error.reason(), client.ip = %client_ip, "revocation request denied");
            Ok(error.into_response())
        }
    }
}

async fn revoke_token(
    inner: &Inner,
    parts: &Parts,
    form: &Form,
    client_ip: IpAddr,
    api_keys: Option<&KeyRing>,
    revocations: &Revocations,
) -> Result<(), OAuthError> {
    let client = authenticate(inner, parts, form, client_ip, api_keys)?;
    let token = form
        .get("token")
        .ok_or(OAuthError::InvalidRequest("the token parameter is missing"))?;

    if let Some(presented) = crate::apikey::store::parse(token) {
        let own_key = client.api_key && client.id == format!("pk_{}", presented.id);
        let ring = api_keys
            .filter(|_| own_key)
            .ok_or(OAuthError::UnauthorizedClient(
                "an API key can be revoked only by presenting it",
            ))?;
        return ring.revoke(presented.id).await.map_err(|error| {
            tracing::error!(error = error.as_str(), "API key revocation failed");
            OAuthError::ServerError
        });
    }

    let Some(claims) = verified_claims(inner, token) else {
        return Ok(());
    };
    if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(OAuthError::UnauthorizedClient(
            "the token was issued to another client",
        ));
    }
    let (Some(jti), Some(expires_at)) = (
        claims.get("jti").and_then(Value::as_str),
        claims.get("exp").and_then(Value::as_u64),
    ) else {
        return Ok(());
    };
    let target = Target::Token {
        issuer: inner.config.issuer.clone(),
        jti: jti.to_string(),
        expires_at,
    };
    revocations.revoke(&target, now()).await.map_err(|error| {
        tracing::error!(error = error.as_str(), "token revocation failed");
        OAuthError::ServerError
    })?;
    tracing::info!(client.id = client.id.as_str(), "token revoked");
    Ok(())
}

/// `GET {prefix}/jwks.json`: the published public keys. Verifiers may
/// cache it for half a token lifetime, so one that honours `max-age`
/// fetches a next key before the default publish delay ends.
pub(super) fn jwks(inner: &Inner) -> Response<Body> {
    let document = inner.keys.load().jwks(now(), inner.retention());
    let mut response = json_response(StatusCode::OK, &document);
    let max_age = inner.config.token_ttl.as_secs() / 2;
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata.
pub(super) fn metadata(config: &TokenServiceConfig) -> Response<Body> {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in config.clients.iter().flat_map(|c| c.scopes.iter()) {
        if !scopes.contains(&scope.as_str()) {
            scopes.push(scope);
        }
    }
    let document = json!({
        "issuer": config.issuer,
        "token_endpoint": config.url(&config.token_path()),
        "jwks_uri": config.url(&config.jwks_path()),
        "introspection_endpoint": config.url(&config.introspection_path()),
        "revocation_endpoint": config.url(&config.revocation_path()),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": scopes,
    });
    let mut response = json_response(StatusCode::OK, &document);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Builds a JSON response that caches must not store (RFC 6749 section
/// 5.1).
fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The parameters of a form body; [`parse_form`] rejects repeats.
pub(super) struct Form {
    parameters: Vec<(String, String)>,
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Reads an `application/x-www-form-urlencoded` body. Parameters in the
/// query string are refused, so secrets never travel in a URL, and so is a
/// repeated parameter (RFC 6749 section 3.2).
async fn read_form(parts: &Parts, body: Incoming) -> Result<Result<Form, OAuthError>, Rejection> {
    if parts.uri.query().is_some() {
        return Ok(Err(OAuthError::InvalidRequest(
            "parameters in the query string are not accepted; send them in the form body",
        )));
    }
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Ok(Err(OAuthError::InvalidRequest(
            "expected an application/x-www-form-urlencoded body",
        )));
    }
    let limited = http_body_util::Limited::new(body, MAX_FORM_BYTES);
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(Rejection::PayloadTooLarge)
        }
        Err(_) => {
            return Err(Rejection::BadRequest {
                reason: "request_invalid_body",
            })
        }
    };
    Ok(parse_form(&bytes))
}

fn parse_form(bytes: &[u8]) -> Result<Form, OAuthError> {
    let mut parameters: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        if parameters.iter().any(|(seen, _)| *seen == key) {
            return Err(OAuthError::InvalidRequest("a parameter is repeated"));
        }
        parameters.push((key.into_owned(), value.into_owned()));
    }
    Ok(Form { parameters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // (description, client id:secret before base64, expected id, expected secret)
        let cases = [
            ("plain", "billing:s3cret", "billing", "s3cret"),
            (
                "escaped colon in the id",
                "bill%3Aing:s3cret",
                "bill:ing",
                "s3cret",
            ),
            ("colon in the secret", "billing:a:b", "billing", "a:b"),
            ("plus is a space", "billing:a+b", "billing", "a b"),
        ];
        for (description, raw, id, secret) in cases {
            let decoded = decode_basic(&STANDARD.encode(raw)).unwrap();
            assert_eq!(
                decoded,
                (id.to_string(), secret.to_string()),
                "{description}"
            );
        }
        assert!(decode_basic("not base64!").is_err());
        assert!(decode_basic(&STANDARD.encode("no-colon")).is_err());
    }

    #[test]
    fn repeated_form_parameter_rejected() {
        let error = parse_form(b"grant_type=client_credentials&scope=a&scope=b")
            .err()
            .unwrap();

        assert_eq!(error, OAuthError::InvalidRequest("a parameter is repeated"));
    }

    #[tokio::test]
    async fn oauth_error_bodies() {
        use http_body_util::BodyExt;
        // (description, error, status, challenge, body)
        let cases = [
            (
                "wrong secret",
                OAuthError::InvalidClient {
                    challenge: BASIC_CHALLENGE,
                },
                401,
                Some(BASIC_CHALLENGE),
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            ),
            (
                "scope outside the allowed ones",
                OAuthError::InvalidScope,
                400,
                None,
                r#"{"error":"invalid_scope","error_description":"a requested scope is malformed or not allowed for this client"}"#,
            ),
        ];
        for (description, error, status, challenge, body) in cases {
            let response = error.into_response();
            assert_eq!(response.status(), status, "{description}");
            assert_eq!(
                response.headers()["cache-control"],
                "no-store",
                "{description}"
            );
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                challenge,
                "{description}"
            );
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(bytes, body.as_bytes(), "{description}");
        }
    }
}
