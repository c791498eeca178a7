//! The key cache of one issuer: keys fetched by OIDC discovery or from a
//! JWKS URL, kept for the provider's cache lifetime within configured
//! bounds, refetched at most once per cooldown on an unknown `kid` with a
//! single fetch in flight, and kept for a bounded time when the provider
//! is unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::Uri;
use serde::Deserialize;

use crate::admin::metrics::Metrics;
use crate::authn::config::{IssuerConfig, KeySource};
use crate::authn::fetch::{FetchError, Fetcher};
use crate::authn::jwk::{KeySet, VerifyingKey};

/// A set of keys and how long it may be used.
pub struct CachedKeys {
    pub keys: Arc<KeySet>,
    /// Until then the keys are fresh; a background refresh runs before.
    pub fresh_until: Instant,
    /// After this the keys are not used at all (fail closed).
    pub usable_until: Instant,
}

#[derive(Debug)]
pub enum KeysError {
    /// The issuer has no usable keys: never fetched, or stale beyond the
    /// configured bound.
    Unavailable,
}

pub struct IssuerKeys {
    pub config: Arc<IssuerConfig>,
    current: ArcSwapOption<CachedKeys>,
    /// Serialises fetches: one in flight, the others wait for its result.
    fetch_lock: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped after every completed fetch attempt, so a waiter can tell
    /// that a fetch happened while it waited.
    generation: AtomicU64,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl IssuerKeys {
    /// Creates the cache. Static sources (file, inline, secret) are loaded
    /// at once; remote ones are empty until [`IssuerKeys::refresh`].
    pub fn new(
        config: Arc<IssuerConfig>,
        fetcher: Fetcher,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let keys = IssuerKeys {
            config,
            current: ArcSwapOption::empty(),
            fetch_lock: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            fetcher,
            metrics,
        };
        if let Some(set) = keys.static_keys()? {
            let forever = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
            keys.current.store(Some(Arc::new(CachedKeys {
                keys: Arc::new(set),
                fresh_until: forever,
                usable_until: forever,
            })));
        }
        Ok(keys)
    }

    fn static_keys(&self) -> Result<Option<KeySet>, String> {
        let parsed = match &self.config.keys {
            KeySource::JwksFile(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                KeySet::from_jwks_json(&bytes).map_err(|e| e.to_string())?
            }
            KeySource::Inline(json) => {
                KeySet::from_jwks_json(json.as_bytes()).map_err(|e| e.to_string())?
            }
            KeySource::Secret { secret, algorithm } => {
                let key = VerifyingKey::hmac(secret.expose(), *algorithm, None)
                    .map_err(|e| e.to_string())?;
                (KeySet::from_keys(vec![key]), Vec::new())
            }
            // Empty until the token service hands its keys over.
            KeySource::TokenService => (KeySet::from_keys(Vec::new()), Vec::new()),
            KeySource::Discovery | KeySource::JwksUrl(_) => return Ok(None),
        };
        self.log_skipped(&parsed.1);
        Ok(Some(parsed.0))
    }

    /// Starts from the keys another generation fetched for the same issuer,
    /// when both fetch remotely; the background refresh replaces them.
    pub fn seed_from(&self, previous: &IssuerKeys) {
        if self.is_remote() && previous.is_remote() && self.current.load().is_none() {
            self.current.store(previous.current.load_full());
        }
    }

    /// Replaces the keys of the gateway's own token service, which holds
    /// them in memory; like other static keys they never go stale.
    pub fn replace_local_keys(&self, keys: KeySet) {
        let forever = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        self.current.store(Some(Arc::new(CachedKeys {
            keys: Arc::new(keys),
            fresh_until: forever,
            usable_until: forever,
        })));
    }

    pub fn is_remote(&self) -> bool {
        matches!(
            self.config.keys,
            KeySource::Discovery | KeySource::JwksUrl(_)
        )
    }

    /// Returns the keys to verify with now, fresh or stale within bounds.
    pub fn current(&self, now: Instant) -> Result<Arc<KeySet>, KeysError> {
        match &*self.current.load() {
            Some(cached) if now < cached.usable_until => Ok(cached.keys.clone()),
            _ => Err(KeysError::Unavailable),
        }
    }

    pub fn has_usable_keys(&self) -> bool {
        self.current(Instant::now()).is_ok()
    }

    /// When the next background refresh is due.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.current
            .load()
            .as_ref()
            .map(|cached| cached.fresh_until)
    }

    /// Refetches after a token named a `kid` the cached keys lack. At most
    /// one fetch runs at a time and at most one starts per cooldown; a
    /// caller that waited for another's fetch uses that result. Returns the
    /// keys to retry with, or `None` when nothing new could be had.
    pub async fn refetch_for_unknown_kid(&self) -> Option<Arc<KeySet>> {
        if !self.is_remote() {
            return None;
        }
        let seen_generation = self.generation.load(Ordering::Acquire);
        let mut last_attempt = self.fetch_lock.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return self.current(Instant::now()).ok();
        }
        let cooldown = self.config.jwks.refetch_cooldown;
        if last_attempt.is_some_and(|at| at.elapsed() < cooldown) {
            return None;
        }
        *last_attempt = Some(Instant::now());
        let result = self.fetch_and_store("unknown_kid").await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        result.ok()
    }

    /// Fetches the keys now (at startup and from the refresh task).
    /// It does not start the unknown-`kid` cooldown, so a key rotated in just
    /// after a scheduled fetch is still picked up at once.
    pub async fn refresh(&self) -> Result<(), String> {
        let _serialized = self.fetch_lock.lock().await;
        let result = self.fetch_and_store("scheduled").await;
        self.generation.fetch_add(1, Ordering::AcqRel);
        result.map(|_| ())
    }

    async fn fetch_and_store(&self, cause: &'static str) -> Result<Arc<KeySet>, String> {
        let started = Instant::now();
        let result = self.fetch().await;
        let issuer = self.config.issuer.as_str();
        match result {
            Ok((set, max_age)) => {
                self.metrics.jwks_fetch(issuer, "success");
                let bounds = &self.config.jwks;
                let ttl = max_age
                    .unwrap_or(bounds.min_ttl)
                    .clamp(bounds.min_ttl, bounds.max_ttl);
                let fresh_until = started + ttl;
                let set = Arc::new(set);
                tracing::info!(
                    issuer.url = issuer,
                    jwks.keys = set.len(),
                    jwks.ttl_secs = ttl.as_secs(),
                    fetch.cause = cause,
                    "issuer keys fetched"
                );
                self.current.store(Some(Arc::new(CachedKeys {
                    keys: set.clone(),
                    fresh_until,
                    usable_until: fresh_until + bounds.max_stale,
                })));
                Ok(set)
            }
            Err(error) => {
                self.metrics.jwks_fetch(issuer, "failure");
                let usable = self.has_usable_keys();
                tracing::warn!(issuer.url = issuer, error = %error, fetch.cause = cause, keys.still_usable = usable, "issuer key fetch failed");
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), String> {
        let timeout = self.config.jwks.fetch_timeout;
        let jwks_uri = match &self.config.keys {
            KeySource::JwksUrl(uri) => uri.clone(),
            KeySource::Discovery => self.discover(timeout).await?,
            _ => return Err("this issuer has static keys".into()),
        };
        let document = self
            .fetcher
            .get(&jwks_uri, timeout)
            .await
            .map_err(|e| describe(&jwks_uri, e))?;
        let (set, skipped) = KeySet::from_jwks_json(&document.body)
            .map_err(|e| format!("invalid JWKS at {jwks_uri}: {e}"))?;
        self.log_skipped(&skipped);
        if set.is_empty() {
            return Err(format!(
                "the JWKS at {jwks_uri} holds no usable verification key"
            ));
        }
        Ok((set, document.max_age))
    }

    /// Finds the JWKS URL by OIDC discovery. The document's `issuer` must be
    /// exactly the configured issuer (OpenID Connect Discovery 1.0 §4.3).
    async fn discover(&self, timeout: Duration) -> Result<Uri, String> {
        let issuer = &self.config.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let uri: Uri = url
            .parse()
            .map_err(|_| format!("issuer {issuer:?} does not form a valid discovery URL"))?;
        let document = self
            .fetcher
            .get(&uri, timeout)
            .await
            .map_err(|e| describe(&uri, e))?;
        let discovery: Discovery = serde_json::from_slice(&document.body)
            .map_err(|e| format!("invalid discovery document at {uri}: {e}"))?;
        if &discovery.issuer != issuer {
            return Err(format!(
                "discovery document at {uri} names issuer {:?}, expected {issuer:?}",
                discovery.issuer
            ));
        }
        discovery
            .jwks_uri
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .ok_or_else(|| format!("discovery document at {uri} has an invalid jwks_uri"))
    }

    fn log_skipped(&self, skipped: &[crate::authn::jwk::SkippedKey]) {
        for key in skipped {
            tracing::warn!(issuer.url = self.config.issuer.as_str(), key = %key, "JWKS key skipped");
        }
    }
}

fn describe(uri: &Uri, error: FetchError) -> String {
    format!("GET {uri}: {error}")
}

/// Keeps one issuer's keys fresh: refreshes before they expire, and
/// retries with backoff (1s doubling to 60s) while the provider fails.
/// Ends once the gateway generation that owns the keys is dropped.
pub async fn refresh_loop(keys: std::sync::Weak<IssuerKeys>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = {
            let Some(keys) = keys.upgrade() else { return };
            match keys.next_refresh() {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::ZERO,
            }
        };
        tokio::time::sleep(wait).await;
        let Some(current) = keys.upgrade() else {
            return;
        };
        let result = current.refresh().await;
        drop(current);
        match result {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
