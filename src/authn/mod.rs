//! Authentication: turns the credential a request carries into a verified
//! [`Identity`], or rejects the request.
//!
//! Runs after routing. A bearer JWT is verified against the keys of the
//! issuer its `iss` names, which must be a configured issuer. Then it must
//! pass every check of that issuer's rules. Any other bearer token is
//! opaque: it is sent to the introspection endpoint of the one issuer that
//! may have issued it (see [`introspect`]).

pub mod bearer;
pub mod config;
pub mod fetch;
pub mod introspect;
pub mod jwk;
pub mod jwks;
pub mod jwt;
pub mod jwt_sign;
pub mod token_cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::admin::metrics::Metrics;
use crate::authn::config::{AuthnConfig, IssuerConfig};
use crate::authn::introspect::{IntrospectionError, Introspector};
use crate::authn::jwks::IssuerKeys;
use crate::authn::jwt::{ClaimRules, Claims, TokenError};
use crate::authn::token_cache::TokenCache;

/// The verified facts about the caller.
#[derive(Debug)]
pub struct Identity {
    pub issuer: String,
    /// The tenant the issuer belongs to, if any.
    pub tenant: Option<String>,
    /// The token's tenant claim (see `ClaimMapping::tenant`), if present.
    /// An array, object or null is kept as its JSON text, which is never a
    /// tenant id, so such a claim contradicts every tenant.
    pub tenant_claim: Option<String>,
    pub subject: Option<String>,
    /// `azp`, else `client_id`.
    pub client_id: Option<String>,
    /// From the `scope` string claim and the `scp` array claim.
    pub scopes: Vec<String>,
    /// From the issuer's configured roles claim.
    pub roles: Vec<String>,
    /// `exp` in unix seconds.
    pub expires_at: Option<f64>,
    pub claims: Claims,
}

impl Identity {
    /// Returns a claim as text: strings as they are, numbers and booleans
    /// printed, anything else `None`.
    pub fn claim_text(&self, path: &str) -> Option<String> {
        claim_as_text(self.claims.get(path))
    }

    #[cfg(test)]
    pub fn for_tests(issuer: &str) -> Self {
        Identity {
            issuer: issuer.to_string(),
            tenant: None,
            tenant_claim: None,
            subject: None,
            client_id: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            expires_at: None,
            claims: Claims::from_map(Default::default()),
        }
    }
}

/// The reason a request could not be authenticated. Each maps to one
/// response.
#[derive(Debug)]
pub enum AuthnError {
    /// No credential was presented.
    Missing,
    /// The `Authorization` header is not one well-formed Bearer token.
    MalformedHeader,
    /// The token names an issuer that is not configured.
    UnknownIssuer,
    /// The token failed a check.
    Token(TokenError),
    /// The issuer's keys could not be obtained.
    KeysUnavailable,
    /// The issuer's introspection endpoint reports the token as not active
    /// (revoked, expired or never issued).
    Inactive,
    /// The issuer's introspection endpoint gave no usable response.
    IntrospectionUnavailable,
}

impl AuthnError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::Missing => "token_missing",
            AuthnError::MalformedHeader => "authorization_header_malformed",
            AuthnError::UnknownIssuer => "token_issuer_unknown",
            AuthnError::Token(error) => error.reason(),
            AuthnError::KeysUnavailable => "issuer_keys_unavailable",
            AuthnError::Inactive => "token_inactive",
            AuthnError::IntrospectionUnavailable => "introspection_unavailable",
        }
    }
}

/// The authentication stage for one configuration generation.
pub struct Authenticator {
    issuers: HashMap<String, Arc<IssuerKeys>>,
    rules: HashMap<String, ClaimRules>,
    max_token_bytes: usize,
    cache: Option<TokenCache>,
    /// Issuers with introspection, sorted by issuer.
    introspectors: Vec<Arc<Introspector>>,
    metrics: Arc<Metrics>,
}

impl Authenticator {
    pub fn new(
        config: &AuthnConfig,
        fetcher: fetch::Fetcher,
        metrics: Arc<Metrics>,
        previous: Option<&Authenticator>,
    ) -> Result<Self, String> {
        let mut issuers = HashMap::new();
        let mut rules = HashMap::new();
        let mut introspectors = Vec::new();
        for issuer in &config.issuers {
            let max_entries = config.token_cache.max_entries;
            let introspector = Introspector::new(
                issuer.clone(),
                fetcher.clone(),
                metrics.clone(),
                max_entries,
            );
            introspectors.extend(introspector.map(Arc::new));
            let keys = IssuerKeys::new(issuer.clone(), fetcher.clone(), metrics.clone())?;
            if let Some(old) = previous.and_then(|p| p.issuers.get(&issuer.issuer)) {
                keys.seed_from(old);
            }
            issuers.insert(issuer.issuer.clone(), Arc::new(keys));
            rules.insert(issuer.issuer.clone(), claim_rules(issuer));
        }
        let cache = config
            .token_cache
            .enabled
            .then(|| TokenCache::new(config.token_cache.max_entries, config.token_cache.max_ttl));
        introspectors.sort_by(|a, b| a.issuer.issuer.cmp(&b.issuer.issuer));
        Ok(Authenticator {
            issuers,
            rules,
            max_token_bytes: config.max_token_bytes,
            cache,
            introspectors,
            metrics,
        })
    }

    /// Returns the clock skew configured for an issuer (zero if unknown).
    pub fn clock_skew(&self, issuer: &str) -> std::time::Duration {
        self.rules
            .get(issuer)
            .map(|rules| rules.leeway)
            .unwrap_or_default()
    }

    /// The issuers whose keys must be fetched over the network.
    pub fn remote_issuers(&self) -> impl Iterator<Item = &Arc<IssuerKeys>> {
        self.issuers.values().filter(|keys| keys.is_remote())
    }

    /// Returns the key cache of a configured issuer.
    pub fn issuer_keys(&self, issuer: &str) -> Option<&Arc<IssuerKeys>> {
        self.issuers.get(issuer)
    }

    /// Issuers that have no usable keys now (for readiness).
    pub fn issuers_without_keys(&self) -> Vec<&str> {
        let mut list: Vec<&str> = self
            .issuers
            .values()
            .filter(|k| !k.has_usable_keys())
            .map(|k| k.config.issuer.as_str())
            .collect();
        list.sort_unstable();
        list
    }

    /// Verifies the request's bearer token. `tenant` is the tenant the
    /// request addresses, if any: an opaque token is only sent to the
    /// introspection endpoint of that tenant's issuers.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        tenant: Option<&str>,
    ) -> Result<Arc<Identity>, AuthnError> {
        let token = bearer::extract(headers).map_err(|error| match error {
            bearer::BearerError::Missing => AuthnError::Missing,
            bearer::BearerError::Malformed => AuthnError::MalformedHeader,
        })?;
        if token.len() > self.max_token_bytes {
            return Err(AuthnError::Token(TokenError::TooLarge {
                max_bytes: self.max_token_bytes,
            }));
        }
        let now = unix_now();
        // Without any introspecting issuer, an opaque token goes on to JWT
        // parsing, which rejects it as malformed.
        if !introspect::is_compact_jws(token) && !self.introspectors.is_empty() {
            return self.introspect_opaque(token, tenant, now).await;
        }

        let digest = self.cache.as_ref().map(|_| token_cache::digest(token));
        if let (Some(cache), Some(digest)) = (&self.cache, &digest) {
            if let Some(identity) = cache.get(digest, now) {
                self.metrics.token_cache("hit");
                // A token verified earlier is only as good as its issuer's
                // keys: once they are stale beyond the bound, fail closed.
                let keys_usable = self
                    .issuers
                    .get(&identity.issuer)
                    .is_some_and(|keys| keys.has_usable_keys());
                if !keys_usable {
                    return Err(AuthnError::KeysUnavailable);
                }
                return Ok(identity);
            }
            self.metrics.token_cache("miss");
        }

        let identity = Arc::new(self.verify(token, now).await?);
        if let Some(introspector) = self.introspector_of(&identity.issuer) {
            // Not put in the verified-token cache: the introspection cache
            // bounds how long a revocation at the provider goes unnoticed.
            let introspected = introspector.introspect(token, Some(&identity.claims), now);
            return introspected.await.map_err(introspection_error);
        }
        if let (Some(cache), Some(digest)) = (&self.cache, digest) {
            cache.insert(digest, identity.clone(), now);
        }
        Ok(identity)
    }

    /// Returns the introspection client of an issuer with `jwts: true`.
    fn introspector_of(&self, issuer: &str) -> Option<&Arc<Introspector>> {
        self.introspectors
            .iter()
            .find(|i| i.issuer.issuer == issuer && i.introspects_jwts())
    }

    /// Authenticates an opaque token by introspection at the one issuer
    /// that may have issued it; with none or several candidates the token
    /// is sent nowhere.
    async fn introspect_opaque(
        &self,
        token: &str,
        tenant: Option<&str>,
        now: f64,
    ) -> Result<Arc<Identity>, AuthnError> {
        let Some(introspector) = introspect::single_candidate(&self.introspectors, tenant) else {
            tracing::debug!(
                tenant.id = tenant,
                "no single issuer with introspection for an opaque token"
            );
            return Err(AuthnError::UnknownIssuer);
        };
        introspector
            .introspect(token, None, now)
            .await
            .map_err(introspection_error)
    }

    async fn verify(&self, token: &str, now: f64) -> Result<Identity, AuthnError> {
        let unverified = jwt::parse(token, self.max_token_bytes).map_err(AuthnError::Token)?;
        let issuer_name = unverified
            .unverified_issuer()
            .ok_or(AuthnError::UnknownIssuer)?;
        let issuer = self
            .issuers
            .get(issuer_name)
            .ok_or(AuthnError::UnknownIssuer)?;
        let rules = &self.rules[issuer_name];
        let header = unverified.header();
        if let Some(allowed) = &issuer.config.algorithms {
            if !allowed.contains(&header.alg) {
                return Err(AuthnError::Token(TokenError::AlgorithmNotAllowedForKey));
            }
        }

        let keys = issuer
            .current(Instant::now())
            .map_err(|_| AuthnError::KeysUnavailable)?;
        let claims = match unverified.verify(&keys) {
            Err(TokenError::KeyNotFound) => {
                let refreshed = issuer.refetch_for_unknown_kid().await;
                let keys = refreshed.ok_or(AuthnError::Token(TokenError::KeyNotFound))?;
                unverified.verify(&keys)
            }
            other => other,
        }
        .map_err(AuthnError::Token)?;

        jwt::validate(header, &claims, rules, now).map_err(AuthnError::Token)?;
        identity_from(&issuer.config, claims).map_err(AuthnError::Token)
    }
}

fn introspection_error(error: IntrospectionError) -> AuthnError {
    match error {
        IntrospectionError::Unavailable(_) => AuthnError::IntrospectionUnavailable,
        IntrospectionError::Inactive => AuthnError::Inactive,
        IntrospectionError::Token(error) => AuthnError::Token(error),
    }
}

fn claim_rules(issuer: &IssuerConfig) -> ClaimRules {
    ClaimRules {
        issuer: issuer.issuer.clone(),
        audiences: issuer.audiences.clone(),
        leeway: issuer.clock_skew,
        required_typ: issuer.token_types.clone(),
        require_exp: true,
        max_iat_age: None,
    }
}

fn identity_from(issuer: &IssuerConfig, claims: Claims) -> Result<Identity, TokenError> {
    let mapping = &issuer.claims;
    let scopes = merged_list(&claims, &mapping.scopes)?;
    let roles = merged_list(&claims, &mapping.roles)?;
    let client_id = mapping.client_id.iter().find_map(|path| {
        claims
            .get(path)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    });
    Ok(Identity {
        issuer: issuer.issuer.clone(),
        tenant: issuer.tenant.clone(),
        tenant_claim: claims.get(&mapping.tenant).map(tenant_claim_text),
        subject: claims.subject()?.map(str::to_string),
        client_id,
        scopes,
        roles,
        expires_at: claims.expires_at()?,
        claims,
    })
}

/// Reads several list claims (space-separated strings or arrays) into one
/// list without duplicates, in claim order.
fn merged_list(claims: &Claims, paths: &[String]) -> Result<Vec<String>, TokenError> {
    let mut merged: Vec<String> = Vec::new();
    for path in paths {
        for item in claims.string_list(path)?.unwrap_or_default() {
            if !merged.iter().any(|held| held == item) {
                merged.push(item.to_string());
            }
        }
    }
    Ok(merged)
}

fn tenant_claim_text(value: &serde_json::Value) -> String {
    claim_as_text(Some(value)).unwrap_or_else(|| value.to_string())
}

fn claim_as_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(value) => Some(value.to_string()),
        _ => None,
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
