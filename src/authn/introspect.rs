//! Token introspection (RFC 7662): sends a token to its issuer's
//! introspection endpoint, checks the response like the claims of a JWT,
//! and caches active results.
//!
//! Authentication uses it for opaque bearer tokens and, for issuers with
//! `jwts: true`, after a JWT has verified. When no usable response
//! arrives, authentication fails closed: the request gets 503 and never
//! reaches the upstream.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use http::{HeaderValue, Uri};
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::admin::metrics::Metrics;
use crate::authn::config::{parse_endpoint, ClientAuthMethod, IntrospectionConfig, IssuerConfig};
use crate::authn::fetch::Fetcher;
use crate::authn::jwk::Algorithm;
use crate::authn::jwt::{self, ClaimRules, Claims, Header, TokenError};
use crate::authn::token_cache::{TokenCache, TokenDigest};
use crate::authn::Identity;

/// Introspection responses larger than this are treated as a provider
/// failure. Real responses are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Minimum interval between two log lines about one issuer's failed
/// introspections. The metric counts every failure.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The reason introspection gave no identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntrospectionError {
    /// No usable response: the provider is unreachable, timed out, returned
    /// a status other than 200, or sent something other than a JSON object.
    /// The text is for logs and contains neither the token nor the secret.
    Unavailable(String),
    /// The provider reports the token as not active (`active` is not the
    /// boolean `true`).
    Inactive,
    /// The token is active but a claim of the response failed a check.
    Token(TokenError),
}

/// The introspection client of one issuer, with its cache of active
/// results.
pub struct Introspector {
    pub issuer: Arc<IssuerConfig>,
    config: IntrospectionConfig,
    rules: ClaimRules,
    /// The endpoint found by discovery, once found.
    discovered: ArcSwapOption<Uri>,
    /// Serialises discovery, so one fetch runs however many requests wait.
    discovery_lock: tokio::sync::Mutex<()>,
    fetcher: Fetcher,
    cache: TokenCache,
    metrics: Arc<Metrics>,
    failures: FailureLog,
}

impl Introspector {
    /// Builds the client of an issuer that has an `introspection` section;
    /// `None` for any other issuer. The cache stores at most `max_entries`.
    pub fn new(
        issuer: Arc<IssuerConfig>,
        fetcher: Fetcher,
        metrics: Arc<Metrics>,
        max_entries: usize,
    ) -> Option<Self> {
        let config = issuer.introspection.clone()?;
        let rules = ClaimRules {
            // `typ` is a JOSE header, which an introspection response lacks.
            required_typ: None,
            ..super::claim_rules(&issuer)
        };
        Some(Introspector {
            cache: TokenCache::new(max_entries, config.cache_max_ttl),
            issuer,
            config,
            rules,
            discovered: ArcSwapOption::empty(),
            discovery_lock: tokio::sync::Mutex::new(()),
            fetcher,
            metrics,
            failures: FailureLog::default(),
        })
    }

    /// Returns whether verified JWTs of this issuer are introspected too.
    pub fn introspects_jwts(&self) -> bool {
        self.config.jwts
    }

    /// Returns the identity of an active token, from the cache or from the
    /// provider. `verified` contains the claims of a JWT that already
    /// verified, which take precedence over the response's (see
    /// [`check_response`]).
    pub async fn introspect(
        &self,
        token: &str,
        verified: Option<&Claims>,
        now: f64,
    ) -> Result<Arc<Identity>, IntrospectionError> {
        let issuer = self.issuer.issuer.as_str();
        let endpoint = self.endpoint().await.inspect_err(|error| {
            self.record_failure(error);
        })?;
        let key = cache_key(&endpoint, token);
        if let Some(identity) = self.cache.get(&key, now) {
            self.metrics.introspection(issuer, "cache_hit");
            return Ok(identity);
        }

        // NOTE: concurrent first uses of one token each send a request; there
        // is no single flight per token.
        let result = self.ask(&endpoint, token).await.and_then(|body| {
            let checked = check_response(&body, &self.rules, verified, now);
            let claims = checked.inspect_err(|error| self.count(error))?;
            self.metrics.introspection(issuer, "active");
            super::identity_from(&self.issuer, claims).map_err(IntrospectionError::Token)
        });
        let identity = Arc::new(result.inspect_err(|error| self.record_failure(error))?);
        self.cache.insert(key, identity.clone(), now);
        Ok(identity)
    }

    /// Counts a response that gave no identity under its metric result.
    fn count(&self, error: &IntrospectionError) {
        let result = match error {
            IntrospectionError::Unavailable(_) => "error",
            IntrospectionError::Inactive => "inactive",
            // The provider reported the token active, but a check failed.
            IntrospectionError::Token(_) => "active",
        };
        self.metrics.introspection(&self.issuer.issuer, result);
    }

    /// Logs a provider failure, at most once per [`FAILURE_LOG_INTERVAL`].
    /// Inactive tokens and failed checks are the client's problem and are
    /// logged with the request's denial.
    fn record_failure(&self, error: &IntrospectionError) {
        let IntrospectionError::Unavailable(detail) = error else {
            return;
        };
        if let Some(suppressed) = self.failures.should_log(Instant::now()) {
            tracing::warn!(
                issuer.url = self.issuer.issuer.as_str(),
                error = detail.as_str(),
                introspection.failures_not_logged = suppressed,
                "token introspection failed"
            );
        }
    }

    /// Sends the introspection request and returns the body of a 200
    /// response.
    async fn ask(&self, endpoint: &Uri, token: &str) -> Result<Vec<u8>, IntrospectionError> {
        let (form, authorization) = request_form(&self.config, token);
        let response = self
            .fetcher
            .post_form(
                endpoint,
                form,
                authorization,
                self.config.timeout,
                MAX_RESPONSE_BYTES,
            )
            .await;
        response.map(|body| body.to_vec()).map_err(|error| {
            self.metrics.introspection(&self.issuer.issuer, "error");
            IntrospectionError::Unavailable(format!("POST {endpoint}: {error}"))
        })
    }

    /// Returns the configured endpoint, or the one named by the issuer's
    /// discovery document (fetched once, and again after a failure).
    async fn endpoint(&self) -> Result<Uri, IntrospectionError> {
        if let Some(endpoint) = &self.config.endpoint {
            return Ok(endpoint.clone());
        }
        if let Some(endpoint) = self.discovered.load_full() {
            return Ok((*endpoint).clone());
        }
        let _serialized = self.discovery_lock.lock().await;
        if let Some(endpoint) = self.discovered.load_full() {
            return Ok((*endpoint).clone());
        }
        let endpoint = self.discover().await.map_err(|detail| {
            self.metrics.introspection(&self.issuer.issuer, "error");
            IntrospectionError::Unavailable(detail)
        })?;
        tracing::info!(
            issuer.url = self.issuer.issuer.as_str(),
            introspection.endpoint = %endpoint,
            "introspection endpoint discovered"
        );
        self.discovered.store(Some(Arc::new(endpoint.clone())));
        Ok(endpoint)
    }

    /// Reads `introspection_endpoint` from the issuer's discovery document,
    /// whose `issuer` must be exactly the configured issuer.
    async fn discover(&self) -> Result<Uri, String> {
        let issuer = &self.issuer.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("issuer {issuer:?} does not form a valid discovery URL"))?;
        let document = self
            .fetcher
            .get(&uri, self.config.timeout)
            .await
            .map_err(|error| format!("GET {uri}: {error}"))?;
        let discovery: Discovery = serde_json::from_slice(&document.body)
            .map_err(|error| format!("invalid discovery document at {uri}: {error}"))?;
        if &discovery.issuer != issuer {
            return Err(format!(
                "discovery document at {uri} names issuer {:?}, expected {issuer:?}",
                discovery.issuer
            ));
        }
        let endpoint = discovery.introspection_endpoint.ok_or_else(|| {
            format!("discovery document at {uri} has no introspection_endpoint; configure introspection.endpoint")
        })?;
        parse_endpoint(&endpoint).map_err(|expected| {
            format!("discovery document at {uri} has introspection_endpoint {endpoint:?}; expected {expected}")
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    introspection_endpoint: Option<String>,
}

/// Computes the cache key of a token at an endpoint: SHA-256 over the
/// endpoint, a NUL byte (which no URI contains) and the token.
pub fn cache_key(endpoint: &Uri, token: &str) -> TokenDigest {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(endpoint.to_string().as_bytes());
    context.update(&[0]);
    context.update(token.as_bytes());
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Characters that the `application/x-www-form-urlencoded` serializer
/// leaves as they are: ASCII letters, digits and `*-._`. A space becomes
/// `+` (see [`form_encode`]).
const FORM_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// Encodes bytes as an `application/x-www-form-urlencoded` value.
fn form_encode(bytes: &[u8]) -> String {
    percent_encode(bytes, FORM_ENCODE_SET)
        .to_string()
        .replace("%20", "+")
}

/// Builds the request body and, for `client_secret_basic`, the
/// `Authorization` value. RFC 6749 section 2.3.1 form-urlencodes the client
/// id and secret before they are joined and base64-encoded.
fn request_form(config: &IntrospectionConfig, token: &str) -> (String, Option<HeaderValue>) {
    let mut form = format!(
        "token={}&token_type_hint=access_token",
        form_encode(token.as_bytes())
    );
    let client_id = form_encode(config.client_id.as_bytes());
    let secret = form_encode(config.client_secret.expose());
    match config.auth_method {
        ClientAuthMethod::ClientSecretBasic => {
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
            let value = HeaderValue::from_str(&format!("Basic {credentials}"))
                .expect("base64 is a valid header value");
            (form, Some(value))
        }
        ClientAuthMethod::ClientSecretPost => {
            form.push_str(&format!("&client_id={client_id}&client_secret={secret}"));
            (form, None)
        }
    }
}

/// The header given to [`jwt::validate`]. It reads only `typ`, which is
/// not checked for introspection responses.
const NO_HEADER: Header = Header {
    alg: Algorithm::Es256,
    kid: None,
    typ: None,
};

/// Checks an introspection response body and returns the token's claims.
///
/// The response must be a JSON object whose `active` is the boolean
/// `true`. When present, `token_type` must not be `refresh_token` and `iss`
/// must be the issuer. The claims of a verified JWT (`verified`) are then
/// laid over the response, so the response only adds claims the JWT lacks.
/// Last, the claims pass the JWT rules: `aud` must contain an accepted
/// audience, and `exp` is required. `exp` must be in the future, `nbf` and
/// `iat` not, each with the issuer's clock skew.
pub fn check_response(
    body: &[u8],
    rules: &ClaimRules,
    verified: Option<&Claims>,
    now: f64,
) -> Result<Claims, IntrospectionError> {
    let members = response_object(body)?;
    if members.get("active") != Some(&Value::Bool(true)) {
        return Err(IntrospectionError::Inactive);
    }
    let mut claims = members;
    claims.remove("active");

    match claims.get("token_type") {
        None => {}
        Some(Value::String(kind)) if kind != "refresh_token" => {}
        Some(Value::String(_)) => return Err(IntrospectionError::Token(TokenError::TypMismatch)),
        Some(_) => {
            let detail = "`token_type` of the introspection response is not a string";
            return Err(IntrospectionError::Token(TokenError::Malformed(detail)));
        }
    }
    match claims.get("iss") {
        None => {
            claims.insert("iss".into(), rules.issuer.clone().into());
        }
        Some(Value::String(issuer)) if issuer.as_bytes() == rules.issuer.as_bytes() => {}
        Some(Value::String(_)) => {
            return Err(IntrospectionError::Token(TokenError::IssuerMismatch));
        }
        Some(_) => {
            let detail = "`iss` claim is not a string";
            return Err(IntrospectionError::Token(TokenError::Malformed(detail)));
        }
    }

    if let Some(verified) = verified {
        for (name, value) in verified.as_map() {
            claims.insert(name.clone(), value.clone());
        }
    }
    let claims = Claims::from_map(claims);
    jwt::validate(&NO_HEADER, &claims, rules, now).map_err(IntrospectionError::Token)?;
    Ok(claims)
}

/// Parses the body as one JSON object. Anything else means the provider
/// gave no usable response.
fn response_object(body: &[u8]) -> Result<Map<String, Value>, IntrospectionError> {
    match jwt::parse_json_strict(body) {
        Ok(Value::Object(members)) => Ok(members),
        Ok(_) => Err(IntrospectionError::Unavailable(
            "the introspection response is not a JSON object".into(),
        )),
        Err(error) => Err(IntrospectionError::Unavailable(format!(
            "the introspection response is not valid JSON: {error}"
        ))),
    }
}

/// Tells whether a bearer token is a JWS in compact serialization: three
/// dot-separated parts. Anything else is treated as an opaque token.
pub fn is_compact_jws(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Picks the one issuer that may receive an opaque token: among `issuers`
/// (the issuers with introspection), those of the addressed tenant when a
/// tenant is addressed. `None` unless exactly one remains, because sending
/// a token to a provider that did not issue it would disclose it.
pub fn single_candidate<'a>(
    issuers: &'a [Arc<Introspector>],
    tenant: Option<&str>,
) -> Option<&'a Arc<Introspector>> {
    let mut candidates = issuers.iter().filter(|introspector| {
        tenant.is_none_or(|t| introspector.issuer.tenant.as_deref() == Some(t))
    });
    match (candidates.next(), candidates.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Rate limit of one issuer's failure log lines.
#[derive(Default)]
struct FailureLog {
    last_logged: Mutex<Option<Instant>>,
    not_logged: AtomicU64,
}

impl FailureLog {
    /// Returns the number of failures not logged since the last line when
    /// this one should be logged, else counts it and returns `None`.
    fn should_log(&self, now: Instant) -> Option<u64> {
        let mut last = self.last_logged.lock().unwrap();
        if last.is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL) {
            self.not_logged.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.not_logged.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::config::Secret;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.test";
    const NOW: f64 = 1_000_000.0;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: ISSUER.into(),
            audiences: vec!["users-api".into()],
            leeway: Duration::from_secs(30),
            required_typ: None,
            require_exp: true,
            max_iat_age: None,
        }
    }

    /// Builds an active response that passes every check.
    fn active() -> Map<String, Value> {
        let answer = json!({
            "active": true,
            "iss": ISSUER,
            "aud": "users-api",
            "client_id": "opaque",
            "scope": "read:users",
            "token_type": "Bearer",
            "iat": NOW - 10.0,
            "exp": NOW + 300.0,
        });
        answer.as_object().unwrap().clone()
    }

    fn with(changes: Value) -> Vec<u8> {
        let mut answer = active();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                answer.remove(name);
            } else {
                answer.insert(name.clone(), value.clone());
            }
        }
        Value::Object(answer).to_string().into_bytes()
    }

    #[test]
    fn response_validation_table() {
        use IntrospectionError::{Inactive, Token};
        let unavailable = |e: &Result<Claims, IntrospectionError>| {
            matches!(e, Err(IntrospectionError::Unavailable(_)))
        };
        // (description, response body, expected outcome; Ok(()) = accepted)
        let cases: Vec<(&str, Vec<u8>, Result<(), IntrospectionError>)> = vec![
            ("complete active answer", with(json!({})), Ok(())),
            (
                "active false",
                with(json!({"active": false})),
                Err(Inactive),
            ),
            (
                "only active false",
                br#"{"active":false}"#.to_vec(),
                Err(Inactive),
            ),
            (
                "active as the string true",
                with(json!({"active": "true"})),
                Err(Inactive),
            ),
            (
                "active as the number 1",
                with(json!({"active": 1})),
                Err(Inactive),
            ),
            (
                "active missing",
                with(json!({"active": null})),
                Err(Inactive),
            ),
            (
                "exp missing",
                with(json!({"exp": null})),
                Err(Token(TokenError::MissingClaim("exp"))),
            ),
            (
                "exp beyond the skew in the past",
                with(json!({"exp": NOW - 31.0})),
                Err(Token(TokenError::Expired)),
            ),
            (
                "exp within the skew",
                with(json!({"exp": NOW - 29.0})),
                Ok(()),
            ),
            (
                "exp as a string",
                with(json!({"exp": "9999999999"})),
                Err(Token(TokenError::Malformed("`exp` claim is not a number"))),
            ),
            (
                "nbf beyond the skew in the future",
                with(json!({"nbf": NOW + 31.0})),
                Err(Token(TokenError::NotYetValid)),
            ),
            ("nbf now", with(json!({"nbf": NOW})), Ok(())),
            (
                "iat beyond the skew in the future",
                with(json!({"iat": NOW + 31.0})),
                Err(Token(TokenError::IssuedInFuture)),
            ),
            (
                "iss of another issuer",
                with(json!({"iss": "https://other.example.test"})),
                Err(Token(TokenError::IssuerMismatch)),
            ),
            (
                "iss with a trailing slash",
                with(json!({"iss": format!("{ISSUER}/")})),
                Err(Token(TokenError::IssuerMismatch)),
            ),
            ("iss absent", with(json!({"iss": null})), Ok(())),
            (
                "aud missing",
                with(json!({"aud": null})),
                Err(Token(TokenError::MissingClaim("aud"))),
            ),
            (
                "aud of another API",
                with(json!({"aud": "other-api"})),
                Err(Token(TokenError::AudienceMismatch)),
            ),
            (
                "aud array containing the API",
                with(json!({"aud": ["other-api", "users-api"]})),
                Ok(()),
            ),
            (
                "aud array without the API",
                with(json!({"aud": ["other-api"]})),
                Err(Token(TokenError::AudienceMismatch)),
            ),
            (
                "token_type refresh_token",
                with(json!({"token_type": "refresh_token"})),
                Err(Token(TokenError::TypMismatch)),
            ),
            (
                "token_type absent",
                with(json!({"token_type": null})),
                Ok(()),
            ),
        ];
        for (description, body, expected) in cases {
            let result = check_response(&body, &rules(), None, NOW);
            assert!(!unavailable(&result), "{description}: {result:?}");
            assert_eq!(result.map(|_| ()), expected, "{description}");
        }
    }

    #[test]
    fn unusable_answers_are_unavailable() {
        // (description, response body)
        let cases: [(&str, &[u8]); 5] = [
            ("HTML error page", b"<html>bad gateway</html>"),
            ("JSON array", br#"[{"active":true}]"#),
            ("JSON string", br#""active""#),
            ("empty body", b""),
            ("repeated member", br#"{"active":false,"active":true}"#),
        ];
        for (description, body) in cases {
            let result = check_response(body, &rules(), None, NOW);
            assert!(
                matches!(result, Err(IntrospectionError::Unavailable(_))),
                "{description}: {result:?}"
            );
        }
    }

    #[test]
    fn active_answer_claims_kept_without_active() {
        let claims = check_response(&with(json!({"iss": null})), &rules(), None, NOW).unwrap();
        assert!(claims.get("active").is_none());
        assert_eq!(claims.issuer().unwrap(), Some(ISSUER));
        assert_eq!(claims.get("scope"), Some(&json!("read:users")));
    }

    #[test]
    fn verified_jwt_claims_take_precedence() {
        let jwt = json!({
            "iss": ISSUER,
            "aud": "users-api",
            "sub": "alice",
            "exp": NOW + 60.0,
        });
        let jwt = Claims::from_map(jwt.as_object().unwrap().clone());
        let answer = with(json!({
            "sub": "mallory",
            "aud": null,
            "realm_access": {"roles": ["admin"]},
        }));

        let claims = check_response(&answer, &rules(), Some(&jwt), NOW).unwrap();

        assert_eq!(claims.subject().unwrap(), Some("alice"));
        assert_eq!(claims.expires_at().unwrap(), Some(NOW + 60.0));
        assert_eq!(claims.get("realm_access.roles"), Some(&json!(["admin"])));
    }

    #[test]
    fn inactive_answer_refuses_verified_jwt() {
        let jwt = json!({"iss": ISSUER, "aud": "users-api", "exp": NOW + 60.0});
        let jwt = Claims::from_map(jwt.as_object().unwrap().clone());
        let result = check_response(br#"{"active":false}"#, &rules(), Some(&jwt), NOW);
        assert_eq!(result.map(|_| ()), Err(IntrospectionError::Inactive));
    }

    fn introspection(auth_method: ClientAuthMethod, secret: &[u8]) -> IntrospectionConfig {
        IntrospectionConfig {
            endpoint: None,
            client_id: "gate way:1".into(),
            client_secret: Secret::for_tests(secret),
            auth_method,
            timeout: Duration::from_secs(2),
            cache_max_ttl: Duration::from_secs(60),
            jwts: false,
        }
    }

    #[test]
    fn basic_credentials_form_urlencoded_first() {
        let config = introspection(ClientAuthMethod::ClientSecretBasic, b"p@ss+w/rd %");
        let (form, authorization) = request_form(&config, "abc+/=");

        assert_eq!(form, "token=abc%2B%2F%3D&token_type_hint=access_token");
        let value = authorization.unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"gate+way%3A1:p%40ss%2Bw%2Frd+%25");
    }

    #[test]
    fn post_credentials_in_body() {
        let config = introspection(ClientAuthMethod::ClientSecretPost, b"s&cret");
        let (form, authorization) = request_form(&config, "tok");

        assert!(authorization.is_none());
        assert_eq!(
            form,
            "token=tok&token_type_hint=access_token&client_id=gate+way%3A1&client_secret=s%26cret"
        );
    }

    #[test]
    fn cache_key_depends_on_endpoint_and_token() {
        let first: Uri = "https://idp.example.test/introspect".parse().unwrap();
        let second: Uri = "https://other.example.test/introspect".parse().unwrap();
        let key = cache_key(&first, "token-a");

        assert_eq!(key, cache_key(&first, "token-a"));
        assert_ne!(key, cache_key(&second, "token-a"));
        assert_ne!(key, cache_key(&first, "token-b"));
        assert_ne!(key, crate::authn::token_cache::digest("token-a"));
    }

    /// Builds the introspection clients of a configuration with one global
    /// issuer and the tenants `acme` (one issuer) and `globex` (two).
    fn tenant_introspectors() -> Vec<Arc<Introspector>> {
        std::env::set_var("PORTCULLIS_TEST_CANDIDATE_SECRET", "candidate-secret");
        // One list item of issuers, its dash at `indent`.
        let issuer = |url: &str, indent: &str| {
            format!(
                "{indent}- issuer: {url}
{indent}  audiences: [users-api]
{indent}  discovery: true
{indent}  introspection:
{indent}    client_id: gateway
{indent}    client_secret: {{ env: PORTCULLIS_TEST_CANDIDATE_SECRET }}
"
            )
        };
        let text = format!(
            "upstreams:
  users: {{ url: \"http://127.0.0.1:3000\" }}
routes:
  - id: list-users
    match: {{ path: /users, methods: [GET] }}
    upstream: users
tenant_from: {{ header: x-tenant-id }}
authentication:
  issuers:
{}tenants:
  - id: acme
    issuers:
{}  - id: globex
    issuers:
{}{}",
            issuer("https://global.example.test", "    "),
            issuer("https://acme.example.test", "      "),
            issuer("https://globex-1.example.test", "      "),
            issuer("https://globex-2.example.test", "      "),
        );
        let config = crate::config::parse(&text, "gateway.yaml", std::path::Path::new("/"))
            .unwrap_or_else(|errors| {
                panic!(
                    "{}",
                    errors
                        .0
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
        let fetcher = Fetcher::new();
        let metrics = Arc::new(Metrics::new());
        let mut list: Vec<Arc<Introspector>> = config
            .authentication
            .issuers
            .iter()
            .filter_map(|issuer| {
                Introspector::new(issuer.clone(), fetcher.clone(), metrics.clone(), 10)
            })
            .map(Arc::new)
            .collect();
        list.sort_by(|a, b| a.issuer.issuer.cmp(&b.issuer.issuer));
        list
    }

    #[test]
    fn opaque_token_goes_to_single_candidate_only() {
        let introspectors = tenant_introspectors();
        assert_eq!(introspectors.len(), 4);
        let chosen =
            |tenant| single_candidate(&introspectors, tenant).map(|i| i.issuer.issuer.as_str());

        // (description, addressed tenant, chosen issuer)
        let cases = [
            (
                "tenant with one issuer",
                Some("acme"),
                Some("https://acme.example.test"),
            ),
            ("tenant with two issuers", Some("globex"), None),
            ("tenant without issuers", Some("initech"), None),
            ("no tenant, four issuers", None, None),
        ];
        for (description, tenant, expected) in cases {
            assert_eq!(chosen(tenant), expected, "{description}");
        }
        let global = introspectors
            .iter()
            .find(|i| i.issuer.tenant.is_none())
            .unwrap();
        let global_only = [global.clone()];
        assert_eq!(
            single_candidate(&global_only, None).map(|i| i.issuer.issuer.as_str()),
            Some("https://global.example.test"),
            "no tenant, one issuer"
        );
        assert!(
            single_candidate(&global_only, Some("acme")).is_none(),
            "a global issuer is no candidate for a tenant's request"
        );
    }

    #[test]
    fn compact_jws_detection() {
        // (description, token, is a compact JWS)
        let cases = [
            ("three parts", "aaa.bbb.ccc", true),
            (
                "opaque base64url",
                "as55iQr85y1ryfiGDhP7Mebd79r4t5Pk40g6ZDb3kLk",
                false,
            ),
            ("two parts", "aaa.bbb", false),
            ("five parts, a JWE", "a.b.c.d.e", false),
            ("three empty parts", "..", true),
        ];
        for (description, token, expected) in cases {
            assert_eq!(is_compact_jws(token), expected, "{description}");
        }
    }
}
