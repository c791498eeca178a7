//! API keys: long-lived credentials for machine clients, presented as
//! `Authorization: ApiKey <key>` or in a configured header, never in the
//! query string. A valid key becomes an [`Identity`] like a token's, with
//! the key's tenant and scopes, so every later stage treats both alike.
//!
//! Records come from the key file (see [`store`]), which is read again
//! within a second of `portcullis key` changing it, so a revoked key stops
//! working on this instance within about a second. Failed attempts are
//! limited per client IP, so keys cannot be guessed at speed.

pub mod cli;
pub mod config;
pub mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderMap;
use ring::hmac;

use crate::apikey::config::{ApiKeysConfig, KeyStore};
use crate::apikey::store::KeyRecord;
use crate::authn::jwt::Claims;
use crate::authn::Identity;
use crate::feed::{Feed, Follower};
use crate::ratelimit::attempts::Attempts;
use crate::ratelimit::clock::SystemClock;

/// The issuer name of identities that came from an API key.
pub const ISSUER: &str = "urn:portcullis:api-key";

/// How often the key file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reason a presented key was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not shaped like a key, or no key matches.
    Invalid,
    Expired,
    Revoked,
    /// The client IP failed too often; retry after the given time.
    TooManyAttempts(Duration),
    /// The shared store's keys have not been read yet.
    Unavailable,
    /// The request carries more than one credential.
    Ambiguous,
}

impl KeyError {
    pub fn reason(&self) -> &'static str {
        match self {
            KeyError::Invalid => "api_key_invalid",
            KeyError::Expired => "api_key_expired",
            KeyError::Revoked => "api_key_revoked",
            KeyError::TooManyAttempts(_) => "api_key_attempts_exceeded",
            KeyError::Unavailable => "api_keys_unavailable",
            KeyError::Ambiguous => "credentials_ambiguous",
        }
    }
}

/// The source of the records.
enum Source {
    File(PathBuf),
    Shared(Box<Feed>),
}

/// The keys of one configuration generation.
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    /// False until a shared store's records have been read once.
    loaded: AtomicBool,
    secret: hmac::Key,
    header: Option<http::HeaderName>,
    records: ArcSwap<HashMap<String, KeyRecord>>,
    failures: Attempts<SystemClock>,
}

impl KeyRing {
    /// Loads the key file, or prepares to follow the shared store. A
    /// shared store's records already read by `previous` carry over, so a
    /// reload never leaves the keys unknown while they are read again.
    /// Fails when the key file exists but cannot be read.
    pub fn new(config: &ApiKeysConfig, previous: Option<&KeyRing>) -> Result<Self, String> {
        let (source, records, loaded) = match &config.store {
            KeyStore::File(path) => (Source::File(path.clone()), index(store::load(path)?), true),
            KeyStore::Shared(redis) => {
                let known = previous
                    .filter(|p| matches!(p.inner.source, Source::Shared(_)))
                    .filter(|p| p.inner.loaded.load(Ordering::Acquire));
                let records = known.map(|p| (**p.inner.records.load()).clone());
                let loaded = records.is_some();
                let feed = Feed::new(redis, "apikey")?;
                (
                    Source::Shared(Box::new(feed)),
                    records.unwrap_or_default(),
                    loaded,
                )
            }
        };
        Ok(KeyRing {
            inner: Arc::new(Inner {
                source,
                loaded: AtomicBool::new(loaded),
                secret: hmac::Key::new(hmac::HMAC_SHA256, config.secret.expose()),
                header: config.header.clone(),
                records: ArcSwap::from_pointee(records),
                failures: Attempts::new(SystemClock::new(), config.failed_attempts),
            }),
        })
    }

    /// Follows changes to the records (the key file's, or the shared
    /// store's), for as long as this key ring is in use.
    pub fn watch(&self) {
        match &self.inner.source {
            Source::File(_) => {
                tokio::spawn(watch_file(Arc::downgrade(&self.inner)));
            }
            Source::Shared(feed) => {
                let follower: Arc<dyn Follower> = self.inner.clone();
                feed.follow(Arc::downgrade(&follower));
            }
        }
    }

    /// Returns the key the request presents, if it presents one.
    /// A request that carries credentials in more than one way (two
    /// `Authorization` headers, two key headers, or a key header beside any
    /// `Authorization`) gets [`KeyError::Ambiguous`]: which one counts
    /// must never depend on the reader.
    pub fn presented<'h>(&self, headers: &'h HeaderMap) -> Option<Result<&'h str, KeyError>> {
        let authorizations = headers.get_all(http::header::AUTHORIZATION);
        let key_headers = match &self.inner.header {
            Some(name) => headers.get_all(name).iter().count(),
            None => 0,
        };
        let authorization_count = authorizations.iter().count();
        let from_authorization = authorizations
            .iter()
            .next()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, key) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("apikey").then(|| key.trim())
            });
        if from_authorization.is_none() && key_headers == 0 {
            return None;
        }
        if authorization_count + key_headers > 1 {
            return Some(Err(KeyError::Ambiguous));
        }
        let from_header = || {
            let name = self.inner.header.as_ref()?;
            headers.get(name)?.to_str().ok().map(str::trim)
        };
        from_authorization.or_else(from_header).map(Ok)
    }

    /// Verifies a presented key for a client.
    pub fn verify(&self, key: &str, client_ip: IpAddr) -> Result<Arc<Identity>, KeyError> {
        let inner = &self.inner;
        if !inner.loaded.load(Ordering::Acquire) {
            return Err(KeyError::Unavailable);
        }
        if let Some(wait) = inner.failures.blocked(client_ip) {
            return Err(KeyError::TooManyAttempts(wait));
        }

        let result = self.check(key, unix_seconds());
        if result.is_err() {
            inner.failures.fail(client_ip);
        }
        result
    }

    /// Revokes a key in its store, and here at once.
    pub async fn revoke(&self, id: &str) -> Result<(), String> {
        let now = unix_seconds();
        match &self.inner.source {
            Source::File(path) => {
                let (path, owned) = (path.clone(), id.to_string());
                let revoke = move || {
                    store::update(&path, |file| {
                        let record = file.keys.iter_mut().find(|r| r.id == owned);
                        let record = record.ok_or("no such key in the key file")?;
                        record.revoked_at.get_or_insert(now);
                        Ok(())
                    })
                };
                tokio::task::spawn_blocking(revoke)
                    .await
                    .map_err(|error| format!("the key file update failed: {error}"))??;
            }
            Source::Shared(feed) => {
                let text = feed
                    .get(id)
                    .await?
                    .ok_or("no such key in the shared store")?;
                let mut record: KeyRecord = serde_json::from_str(&text)
                    .map_err(|error| format!("a shared API key record is malformed: {error}"))?;
                record.revoked_at.get_or_insert(now);
                let text = serde_json::to_string(&record).expect("records serialize");
                feed.publish(id, &text, None).await?;
            }
        }
        self.inner.records.rcu(|records| {
            let mut records = (**records).clone();
            if let Some(record) = records.get_mut(id) {
                record.revoked_at.get_or_insert(now);
            }
            records
        });
        Ok(())
    }

    fn check(&self, key: &str, now: u64) -> Result<Arc<Identity>, KeyError> {
        let presented = store::parse(key).ok_or(KeyError::Invalid)?;
        let records = self.inner.records.load();
        let record = records.get(presented.id).ok_or(KeyError::Invalid)?;
        if !store::matches(&self.inner.secret, presented.whole, record) {
            return Err(KeyError::Invalid);
        }
        if record.is_revoked(now) {
            return Err(KeyError::Revoked);
        }
        if record.is_expired(now) {
            return Err(KeyError::Expired);
        }
        Ok(Arc::new(identity(record)))
    }
}

fn identity(record: &KeyRecord) -> Identity {
    let name = record.name();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), name.clone().into());
    claims.insert("client_id".into(), name.clone().into());
    claims.insert("scope".into(), record.scopes.join(" ").into());
    if let Some(tenant) = &record.tenant {
        claims.insert("tenant_id".into(), tenant.clone().into());
    }
    if let Some(expires_at) = record.expires_at {
        claims.insert("exp".into(), expires_at.into());
    }
    Identity {
        issuer: ISSUER.to_string(),
        tenant: record.tenant.clone(),
        tenant_claim: None,
        subject: Some(name.clone()),
        client_id: Some(name),
        scopes: record.scopes.clone(),
        roles: Vec::new(),
        expires_at: record.expires_at.map(|at| at as f64),
        claims: Claims::from_map(claims),
    }
}

fn index(file: store::KeyFile) -> HashMap<String, KeyRecord> {
    file.keys
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect()
}

pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Follower for Inner {
    fn record(&self, value: &[u8]) {
        let Ok(record) = serde_json::from_slice::<KeyRecord>(value) else {
            tracing::warn!("ignored a malformed shared API key record");
            return;
        };
        self.records.rcu(|records| {
            let mut records = (**records).clone();
            records.insert(record.id.clone(), record.clone());
            records
        });
    }

    fn loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }
}

async fn watch_file(ring: Weak<Inner>) {
    let fingerprint = |path: &PathBuf| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    };
    let path = match ring.upgrade().as_deref().map(|inner| &inner.source) {
        Some(Source::File(path)) => path.clone(),
        _ => return,
    };
    let mut last = fingerprint(&path);
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(inner) = ring.upgrade() else {
            return;
        };
        let current = fingerprint(&path);
        if current == last {
            continue;
        }
        last = current;
        match store::load(&path) {
            Ok(file) => {
                let count = file.keys.len();
                inner.records.store(Arc::new(index(file)));
                tracing::info!(keys = count, "API key file reloaded");
            }
            Err(error) => tracing::error!(
                error = error.as_str(),
                "API key file rejected; the keys loaded before keep working"
            ),
        }
    }
}
