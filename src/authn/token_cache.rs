//! The verified-token cache: a token already verified is not verified
//! again until it expires. Entries are keyed by the SHA-256 of the token,
//! never the token itself, and memory is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::authn::Identity;

const SHARDS: usize = 16;

pub type TokenDigest = [u8; 32];

/// Computes the cache key of a token.
pub fn digest(token: &str) -> TokenDigest {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

struct Entry {
    identity: Arc<Identity>,
    /// Unix seconds after which the entry is not used.
    valid_until: f64,
}

pub struct TokenCache {
    shards: Vec<Mutex<HashMap<TokenDigest, Entry>>>,
    per_shard: usize,
    max_ttl_secs: f64,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_ttl: std::time::Duration) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            max_ttl_secs: max_ttl.as_secs_f64(),
        }
    }

    fn shard(&self, key: &TokenDigest) -> &Mutex<HashMap<TokenDigest, Entry>> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// Returns the identity of a token verified earlier, if its entry is
    /// still valid at `now` (unix seconds).
    pub fn get(&self, key: &TokenDigest, now: f64) -> Option<Arc<Identity>> {
        let mut shard = self.shard(key).lock().unwrap();
        let entry = shard.get(key)?;
        if now < entry.valid_until {
            return Some(entry.identity.clone());
        }
        shard.remove(key);
        None
    }

    /// Stores a verified identity until its token's `exp` or the cache's
    /// maximum lifetime, whichever comes first.
    pub fn insert(&self, key: TokenDigest, identity: Arc<Identity>, now: f64) {
        let valid_until = identity
            .expires_at
            .unwrap_or(f64::MAX)
            .min(now + self.max_ttl_secs);
        if valid_until <= now {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap();
        if shard.len() >= self.per_shard {
            shard.retain(|_, entry| entry.valid_until > now);
        }
        if shard.len() >= self.per_shard {
            // Still full of live entries: drop about half. A dropped token
            // is only verified again, so this never admits anything.
            let victims: Vec<TokenDigest> =
                shard.keys().take(self.per_shard / 2 + 1).copied().collect();
            for victim in victims {
                shard.remove(&victim);
            }
        }
        shard.insert(
            key,
            Entry {
                identity,
                valid_until,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn identity(expires_at: f64) -> Arc<Identity> {
        Arc::new(Identity {
            expires_at: Some(expires_at),
            ..Identity::for_tests("https://issuer.test")
        })
    }

    #[test]
    fn entry_expires_at_token_exp() {
        let cache = TokenCache::new(100, Duration::from_secs(300));
        let key = digest("token-a");
        cache.insert(key, identity(1000.0), 900.0);
        assert!(cache.get(&key, 999.0).is_some());
        assert!(cache.get(&key, 1000.0).is_none());
    }

    #[test]
    fn entry_expires_at_max_ttl() {
        let cache = TokenCache::new(100, Duration::from_secs(10));
        let key = digest("token-b");
        cache.insert(key, identity(10_000.0), 100.0);
        assert!(cache.get(&key, 109.0).is_some());
        assert!(cache.get(&key, 110.0).is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let cache = TokenCache::new(1000, Duration::from_secs(300));
        for i in 0..100_000 {
            cache.insert(digest(&format!("token-{i}")), identity(10_000.0), 0.0);
        }
        assert!(cache.len() <= 1000 + SHARDS, "{} entries", cache.len());
    }

    #[test]
    fn expired_token_never_cached() {
        let cache = TokenCache::new(10, Duration::from_secs(300));
        let key = digest("token-c");
        cache.insert(key, identity(50.0), 60.0);
        assert!(cache.get(&key, 60.0).is_none());
    }
}
