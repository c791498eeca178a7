//! The token service: an OAuth 2.0 authorization server on the gateway for
//! machine clients. It issues short-lived RFC 9068 JWT access tokens for
//! the client_credentials grant (RFC 6749 section 4.4) to clients that
//! authenticate with a client secret or an API key. It also publishes its
//! JWKS and RFC 8414 metadata, and introspects its own tokens (RFC 7662).
//!
//! Its endpoints are served right after normalization, before routing, so
//! no route can shadow them. For the same reason no route's or global rate
//! limit applies to them, only the limit on failed client authentications. The gateway trusts the service's issuer like
//! a configured one, with the keys taken from memory: [`TokenService::new`]
//! hands them to the authenticator, and a watcher hands over every change
//! of the keys directory within a second.

pub mod claims;
pub mod cli;
pub mod config;
pub mod endpoints;
pub mod keys;
pub mod manifest;
pub mod secret_hash;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::request::Parts;
use http::Response;
use hyper::body::Incoming;

use crate::admin::metrics::Metrics;
use crate::apikey::KeyRing;
use crate::authn::config::{ClaimMapping, IssuerConfig, JwksCacheConfig, KeySource};
use crate::authn::jwk::Algorithm;
use crate::authn::jwks::IssuerKeys;
use crate::authn::Identity;
use crate::pipeline::body::Body;
use crate::pipeline::reject::Rejection;
use crate::ratelimit::attempts::Attempts;
use crate::token_service::config::TokenServiceConfig;
use crate::token_service::keys::KeySnapshot;

/// How often the keys directory is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// The endpoints of the token service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Jwks,
    Introspect,
    Revoke,
    Metadata,
}

/// The token service of one configuration generation.
pub struct TokenService {
    inner: Arc<Inner>,
    /// The endpoints' paths, built once because every request is matched
    /// against them.
    paths: [(String, Endpoint); 5],
}

struct Inner {
    config: Arc<TokenServiceConfig>,
    keys: ArcSwap<KeySnapshot>,
    /// The authenticator's keys of the service's own issuer, updated with
    /// every change of the published keys.
    trusted: Option<Arc<IssuerKeys>>,
    /// Ids of the configured tenants: an API key of a tenant that is no
    /// longer configured gets no token.
    tenants: HashSet<String>,
    attempts: Attempts<crate::ratelimit::clock::SystemClock>,
    metrics: Arc<Metrics>,
}

impl TokenService {
    /// Loads the signing keys (creating a first one when the directory has
    /// none), gives the published ones to `trusted`, and watches the keys
    /// directory for as long as the service is in use.
    pub fn new(
        config: Arc<TokenServiceConfig>,
        tenants: HashSet<String>,
        trusted: Option<Arc<IssuerKeys>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        ensure_first_key(&config)?;
        let snapshot = load_snapshot(&config, None)?;
        let inner = Arc::new(Inner {
            attempts: Attempts::new(
                crate::ratelimit::clock::SystemClock::new(),
                config.failed_attempts,
            ),
            keys: ArcSwap::from_pointee(snapshot),
            trusted,
            tenants,
            metrics,
            config,
        });
        inner.publish(now());
        tokio::spawn(watch_keys(Arc::downgrade(&inner)));

        let config = &inner.config;
        let paths = [
            (config.token_path(), Endpoint::Token),
            (config.jwks_path(), Endpoint::Jwks),
            (config.introspection_path(), Endpoint::Introspect),
            (config.revocation_path(), Endpoint::Revoke),
            (config.metadata_path(), Endpoint::Metadata),
        ];
        Ok(TokenService { inner, paths })
    }

    /// Returns the endpoint a normalized path names, if any.
    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        self.paths
            .iter()
            .find(|(endpoint_path, _)| endpoint_path == path)
            .map(|(_, endpoint)| *endpoint)
    }

    /// Serves one request to an endpoint. OAuth errors are responses;
    /// only a wrong method or an oversized body is a [`Rejection`].
    pub async fn serve(
        &self,
        endpoint: Endpoint,
        parts: &Parts,
        body: Incoming,
        client_ip: IpAddr,
        api_keys: Option<&KeyRing>,
        revocations: &crate::revocation::Revocations,
    ) -> Result<Response<Body>, Rejection> {
        let inner = &self.inner;
        match endpoint {
            Endpoint::Token => {
                endpoints::require_method(parts, &http::Method::POST)?;
                endpoints::token(inner, parts, body, client_ip, api_keys).await
            }
            Endpoint::Introspect => {
                endpoints::require_method(parts, &http::Method::POST)?;
                endpoints::introspect(inner, parts, body, client_ip).await
            }
            Endpoint::Revoke => {
                endpoints::require_method(parts, &http::Method::POST)?;
                endpoints::revoke(inner, parts, body, client_ip, api_keys, revocations).await
            }
            Endpoint::Jwks => {
                endpoints::require_method(parts, &http::Method::GET)?;
                Ok(endpoints::jwks(inner))
            }
            Endpoint::Metadata => {
                endpoints::require_method(parts, &http::Method::GET)?;
                Ok(endpoints::metadata(&inner.config))
            }
        }
    }

    /// Gives an identity from the service's own token the tenant its
    /// `tenant_id` claim names. The service itself wrote that claim from
    /// the client's configuration, so unlike a provider's claim it binds
    /// the token to the tenant. Other identities pass unchanged.
    pub fn bind_tenant(&self, identity: Arc<Identity>) -> Arc<Identity> {
        let own = identity.issuer == self.inner.config.issuer;
        let Some(claimed) = identity.tenant_claim.as_ref().filter(|_| own) else {
            return identity;
        };
        if identity.tenant.is_some() {
            return identity;
        }
        Arc::new(Identity {
            issuer: identity.issuer.clone(),
            tenant: Some(claimed.clone()),
            tenant_claim: Some(claimed.clone()),
            subject: identity.subject.clone(),
            client_id: identity.client_id.clone(),
            scopes: identity.scopes.clone(),
            roles: identity.roles.clone(),
            expires_at: identity.expires_at,
            claims: crate::authn::jwt::Claims::from_map(identity.claims.as_map().clone()),
        })
    }
}

impl Inner {
    fn retention(&self) -> u64 {
        manifest::retention(self.config.token_ttl, self.config.clock_skew)
    }

    /// Hands the keys published at `now` to the authenticator.
    fn publish(&self, now: u64) {
        if let Some(trusted) = &self.trusted {
            let set = self.keys.load().key_set(now, self.retention());
            trusted.replace_local_keys(set);
        }
    }

    fn published_kids(&self, now: u64) -> Vec<String> {
        let snapshot = self.keys.load();
        let published = snapshot.published(now, self.retention());
        published.iter().map(|key| key.entry.kid.clone()).collect()
    }
}

/// Starts the token service of a configuration generation, if configured,
/// trusted through `authenticator`'s entry for its issuer.
pub fn start(
    config: &crate::config::Config,
    authenticator: &crate::authn::Authenticator,
    metrics: Arc<Metrics>,
) -> Result<Option<TokenService>, String> {
    let Some(service) = &config.token_service else {
        return Ok(None);
    };
    let trusted = authenticator.issuer_keys(&service.issuer).cloned();
    let tenants = config.tenants.keys().cloned().collect();
    TokenService::new(service.clone(), tenants, trusted, metrics).map(Some)
}

/// Returns the issuer entry through which the authenticator trusts the
/// service's tokens: `typ` `at+jwt`, the configured audiences and skew,
/// and keys set in-process.
pub fn trusted_issuer(config: &TokenServiceConfig) -> IssuerConfig {
    IssuerConfig {
        issuer: config.issuer.clone(),
        audiences: config.audiences.clone(),
        keys: KeySource::TokenService,
        algorithms: Some(vec![Algorithm::Es256, Algorithm::EdDsa]),
        token_types: Some(vec!["at+jwt".to_string()]),
        clock_skew: config.clock_skew,
        jwks: JwksCacheConfig::default(),
        claims: ClaimMapping::default(),
        tenant: None,
        introspection: None,
    }
}

/// Creates the first signing key when the keys directory has no manifest
/// or an empty one.
fn ensure_first_key(config: &TokenServiceConfig) -> Result<(), String> {
    // NOTE: not locked against other processes. Gateways that share an
    // empty keys directory and start at the same moment may each write a
    // first key, and only the last manifest written survives. Run
    // `rotate-keys` once before starting a fleet.
    let dir = &config.keys_dir;
    if manifest::load(dir)?.is_some_and(|m| !m.keys.is_empty()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let now = now();
    let passphrase = config.keys_passphrase.as_ref();
    let entry = keys::create_key(dir, config.algorithm, passphrase, now, now)?;
    let mut list = manifest::Manifest::default();
    list.keys.push(entry.clone());
    manifest::save(dir, &list)?;
    tracing::info!(
        token.kid = entry.kid.as_str(),
        token.algorithm = entry.algorithm.as_str(),
        keys.dir = %dir.display(),
        keys.encrypted = entry.encrypted,
        "token signing key created"
    );
    Ok(())
}

fn load_snapshot(
    config: &TokenServiceConfig,
    previous: Option<&KeySnapshot>,
) -> Result<KeySnapshot, String> {
    let dir = &config.keys_dir;
    let list = manifest::load(dir)?
        .ok_or_else(|| format!("{} has no key manifest", manifest::path(dir).display()))?;
    keys::load_all(dir, list, config.keys_passphrase.as_ref(), previous)
}

/// Identifies a version of the manifest file: a rename gives a new inode,
/// so an atomic replace is seen even within the same second.
fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some((metadata.modified().ok()?, metadata.len(), inode))
}

/// Reloads the keys when the manifest changes, and republishes them when
/// time moves a key in or out of the published set.
async fn watch_keys(service: Weak<Inner>) {
    let manifest_path = match service.upgrade() {
        Some(inner) => manifest::path(&inner.config.keys_dir),
        None => return,
    };
    let mut last_file = fingerprint(&manifest_path);
    let mut last_published = service
        .upgrade()
        .map(|inner| inner.published_kids(now()))
        .unwrap_or_default();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        let current_file = fingerprint(&manifest_path);
        if current_file != last_file {
            last_file = current_file;
            reload(&inner);
        }
        let now = now();
        let published = inner.published_kids(now);
        if published != last_published {
            inner.publish(now);
            tracing::info!(
                token.kids = published.join(" "),
                "token signing keys published"
            );
            last_published = published;
        }
    }
}

fn reload(inner: &Inner) {
    let previous = inner.keys.load_full();
    match load_snapshot(&inner.config, Some(&previous)) {
        Ok(snapshot) => {
            let count = snapshot.keys.len();
            inner.keys.store(Arc::new(snapshot));
            tracing::info!(keys = count, "token signing keys reloaded");
        }
        Err(error) => tracing::error!(
            error = error.as_str(),
            "token signing keys rejected; the keys loaded before keep working"
        ),
    }
}

/// Unix seconds now.
fn now() -> u64 {
    crate::apikey::unix_seconds()
}
