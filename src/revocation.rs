//! Revocation: credentials refused before their expiry. A revoked token
//! (by `iss` and `jti`) is refused until it expires; a revoked subject or
//! client (by `iss` and `sub` or client id) has every token issued before
//! the revocation refused.
//!
//! Each instance keeps the revocations in memory and checks every verified
//! identity against them, cached tokens included. With a Redis store, a
//! revocation is written to Redis, kept until it no longer matters, and
//! published on a channel every instance subscribes to, so it takes effect
//! everywhere within about a second. An instance that starts, or whose
//! subscription broke, reads every stored revocation again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::authn::Identity;
use crate::feed::{Feed, Follower};
use crate::ratelimit::config::{RedisConfig, RedisEndpoints, StoreConfig};

/// The target of a revocation.
#[derive(Debug, Clone)]
pub enum Target {
    /// One token, until its expiry (Unix seconds).
    Token {
        issuer: String,
        jti: String,
        expires_at: u64,
    },
    /// Every token of a subject issued before now.
    Subject { issuer: String, subject: String },
    /// Every token of a client issued before now.
    Client { issuer: String, client_id: String },
}

/// One stored revocation: tokens issued before `not_before` are refused,
/// and the entry can be forgotten after `until`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    not_before: u64,
    until: u64,
}

/// A revocation as published and stored: the digest of its target and
/// the entry.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    digest: String,
    #[serde(flatten)]
    entry: Entry,
}

/// How long a subject or client revocation is kept: longer than any
/// access token it could apply to is expected to live.
pub const PRINCIPAL_RETENTION: Duration = Duration::from_secs(24 * 3600);

pub struct Revocations {
    inner: Arc<Inner>,
}

struct Inner {
    entries: RwLock<HashMap<String, Entry>>,
    /// False while nothing is revoked, so the common case takes no lock.
    any: AtomicBool,
    shared: Option<Feed>,
}

impl Revocations {
    pub fn new(store: &StoreConfig) -> Result<Self, String> {
        let shared = match store {
            StoreConfig::Redis(config) => shared_feed(config)?,
            StoreConfig::Memory => None,
        };
        Ok(Revocations {
            inner: Arc::new(Inner {
                entries: RwLock::new(HashMap::new()),
                any: AtomicBool::new(false),
                shared,
            }),
        })
    }

    /// Starts following the shared revocations (when there is a shared
    /// store) and forgetting expired ones.
    pub fn start(&self) {
        if let Some(feed) = &self.inner.shared {
            let follower: Arc<dyn Follower> = self.inner.clone();
            feed.follow(Arc::downgrade(&follower));
        }
        tokio::spawn(sweep(Arc::downgrade(&self.inner)));
    }

    /// Returns whether a verified identity was revoked.
    pub fn is_revoked(&self, identity: &Identity) -> bool {
        if !self.inner.any.load(Ordering::Acquire) {
            return false;
        }
        let issued_at = identity
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_f64)
            .map_or(0, |iat| iat.max(0.0) as u64);
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        let refused = |digest: String| {
            entries
                .get(&digest)
                .is_some_and(|entry| issued_at < entry.not_before)
        };

        let jti = identity
            .claims
            .get("jti")
            .and_then(serde_json::Value::as_str);
        let token = jti.is_some_and(|jti| refused(digest("jti", &identity.issuer, jti)));
        let subject = identity
            .subject
            .as_deref()
            .is_some_and(|sub| refused(digest("sub", &identity.issuer, sub)));
        let client = identity
            .client_id
            .as_deref()
            .is_some_and(|id| refused(digest("client", &identity.issuer, id)));
        token || subject || client
    }

    /// Revokes a target here and, with a shared store, everywhere.
    pub async fn revoke(&self, target: &Target, now: u64) -> Result<(), String> {
        let record = record(target, now);
        self.inner.insert(&record);
        if let Some(feed) = &self.inner.shared {
            let text = serde_json::to_string(&record).expect("records serialize");
            feed.publish(&record.digest, &text, Some(record.entry.until))
                .await?;
        }
        Ok(())
    }
}

impl Inner {
    fn insert(&self, record: &Record) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(record.digest.clone()).or_insert(record.entry);
        entry.not_before = entry.not_before.max(record.entry.not_before);
        entry.until = entry.until.max(record.entry.until);
        self.any.store(true, Ordering::Release);
    }
}

/// Builds the record of a revocation made at `now`.
fn record(target: &Target, now: u64) -> Record {
    let retain = now + PRINCIPAL_RETENTION.as_secs();
    let (digest, entry) = match target {
        Target::Token {
            issuer,
            jti,
            expires_at,
        } => (
            digest("jti", issuer, jti),
            Entry {
                not_before: u64::MAX,
                until: *expires_at,
            },
        ),
        Target::Subject { issuer, subject } => (
            digest("sub", issuer, subject),
            Entry {
                not_before: now + 1,
                until: retain,
            },
        ),
        Target::Client { issuer, client_id } => (
            digest("client", issuer, client_id),
            Entry {
                not_before: now + 1,
                until: retain,
            },
        ),
    };
    Record { digest, entry }
}

/// Returns the name a revocation is stored under: SHA-256 over the kind,
/// the issuer and the value, so no token id or subject is stored in clear.
fn digest(kind: &str, issuer: &str, value: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [kind, issuer, value] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    hex::encode(&context.finish().as_ref()[..16])
}

fn shared_feed(config: &Arc<RedisConfig>) -> Result<Option<Feed>, String> {
    let RedisEndpoints::Single(_) = &config.endpoints else {
        tracing::warn!(
            "revocations are not shared over a Redis Cluster yet; each instance keeps its own"
        );
        return Ok(None);
    };
    Feed::new(config, "revoked").map(Some)
}

impl Follower for Inner {
    fn record(&self, value: &[u8]) {
        match serde_json::from_slice::<Record>(value) {
            Ok(record) => self.insert(&record),
            Err(_) => tracing::warn!("ignored a malformed shared revocation"),
        }
    }
}

/// Forgets revocations that no longer match any live token, once a minute.
async fn sweep(revocations: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let Some(inner) = revocations.upgrade() else {
            return;
        };
        let now = crate::apikey::unix_seconds();
        let mut entries = inner.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, entry| entry.until > now);
    }
}

/// Longest a token revocation is kept: tokens meant to live longer than
/// a year are not access tokens.
const MAX_TOKEN_RETENTION: u64 = 366 * 24 * 3600;

/// Rejects a revocation that could not match any token, so a typo never
/// reads as success: an issuer the configuration does not trust, or a
/// token whose expiry is past or implausibly far.
fn check_target(config: &crate::config::Config, target: &Target, now: u64) -> Result<(), String> {
    let issuer = match target {
        Target::Token { issuer, .. }
        | Target::Subject { issuer, .. }
        | Target::Client { issuer, .. } => issuer,
    };
    let trusted = config
        .authentication
        .issuers
        .iter()
        .any(|known| &known.issuer == issuer);
    if !trusted {
        return Err(format!(
            "no issuer {issuer:?} in the configuration; expected the exact iss of the tokens"
        ));
    }
    if let Target::Token { expires_at, .. } = target {
        if *expires_at <= now {
            return Err(
                "the token has already expired (--expires-at is in the past); nothing to revoke"
                    .into(),
            );
        }
        if *expires_at > now + MAX_TOKEN_RETENTION {
            return Err(
                "expected --expires-at to be the token's exp, at most a year from now".into(),
            );
        }
    }
    Ok(())
}

/// `portcullis token revoke`: revokes a target in the shared store of a
/// configuration, so every running instance refuses it within a second.
pub fn revoke_command(config_path: &std::path::Path, target: Target) -> std::process::ExitCode {
    let outcome = (|| {
        let config = crate::config::load(config_path).map_err(|errors| errors.to_string())?;
        check_target(&config, &target, crate::apikey::unix_seconds())?;
        if config.rate_limit_store == StoreConfig::Memory {
            return Err("revoking across instances needs rate_limit_store type redis".to_string());
        }
        let revocations = Revocations::new(&config.rate_limit_store)?;
        if revocations.inner.shared.is_none() {
            return Err("revocations cannot be shared over a Redis Cluster yet".to_string());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the async runtime: {error}"))?;
        runtime.block_on(revocations.revoke(&target, crate::apikey::unix_seconds()))
    })();
    match outcome {
        Ok(()) => {
            eprintln!("revoked; running instances refuse it within a second");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwt::Claims;

    fn identity(jti: &str, iat: u64) -> Identity {
        let mut claims = serde_json::Map::new();
        claims.insert("jti".into(), jti.into());
        claims.insert("iat".into(), iat.into());
        Identity {
            subject: Some("alice".into()),
            client_id: Some("billing".into()),
            claims: Claims::from_map(claims),
            ..Identity::for_tests("https://issuer.test")
        }
    }

    fn revoke(revocations: &Revocations, target: Target, now: u64) {
        let revoke = revocations.revoke(&target, now);
        futures_util::FutureExt::now_or_never(revoke)
            .expect("no store to wait for")
            .expect("revoked");
    }

    #[test]
    fn revoked_targets_refuse_only_what_they_name() {
        let issuer = "https://issuer.test".to_string();
        let cases = [
            (
                "one token",
                Target::Token {
                    issuer: issuer.clone(),
                    jti: "t1".into(),
                    expires_at: 2_000,
                },
                [true, false, false],
            ),
            (
                "a subject, tokens issued before",
                Target::Subject {
                    issuer: issuer.clone(),
                    subject: "alice".into(),
                },
                [true, true, false],
            ),
            (
                "a client, tokens issued before",
                Target::Client {
                    issuer: issuer.clone(),
                    client_id: "billing".into(),
                },
                [true, true, false],
            ),
            (
                "another issuer's subject",
                Target::Subject {
                    issuer: "https://other.test".into(),
                    subject: "alice".into(),
                },
                [false, false, false],
            ),
        ];
        for (description, target, expected) in cases {
            let revocations = Revocations::new(&StoreConfig::Memory).unwrap();
            revoke(&revocations, target, 1_000);

            let refused = [
                revocations.is_revoked(&identity("t1", 900)),
                revocations.is_revoked(&identity("t2", 1_000)),
                revocations.is_revoked(&identity("t3", 1_001)),
            ];

            assert_eq!(refused, expected, "{description}");
        }
    }
}
