//! Configuration of API keys: where the records are, the server secret
//! that keys their hashes, where clients present keys, and how fast a
//! source may fail.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;

use std::sync::Arc;

use crate::authn::config::Secret;
use crate::config::reader::MapReader;
use crate::ratelimit::config::{RedisConfig, RedisEndpoints, StoreConfig};
use crate::ratelimit::gcra::Quota;

#[derive(Debug)]
pub struct ApiKeysConfig {
    pub store: KeyStore,
    /// Keys the HMAC of every stored key; at least 32 bytes.
    pub secret: Secret,
    /// A header that carries the bare key, besides `Authorization: ApiKey`.
    pub header: Option<HeaderName>,
    /// Failed key attempts allowed per client IP.
    pub failed_attempts: Quota,
}

/// The store of the key records.
#[derive(Debug)]
pub enum KeyStore {
    /// A JSON file, written by `portcullis key`, reread when it changes.
    File(PathBuf),
    /// The Redis server of `rate_limit_store`, shared by every instance.
    Shared(Arc<RedisConfig>),
}

/// Shortest server secret: as long as the HMAC-SHA-256 output.
const MIN_SECRET_BYTES: usize = 32;

pub fn read(
    top: &MapReader,
    base_dir: &Path,
    rate_limit_store: Option<&StoreConfig>,
) -> Option<Option<ApiKeysConfig>> {
    let Some(map) = top.map("api_keys") else {
        return top.get("api_keys").is_none().then_some(None);
    };
    let store = read_store(&map, base_dir, rate_limit_store);
    let secret = crate::authn::config::read_secret(&map, "secret", base_dir);
    if map.get("secret").is_none() {
        map.missing(
            "secret",
            "{ env: NAME } or { file: PATH } with at least 32 random bytes",
        );
    }
    let header = read_header(&map);
    let failed_attempts = read_attempts(&map);
    map.finish();

    let secret = secret?;
    if secret.expose().len() < MIN_SECRET_BYTES {
        let message = format!("expected a secret of at least {MIN_SECRET_BYTES} bytes");
        map_problem(top, "api_keys.secret", message);
        return None;
    }
    Some(Some(ApiKeysConfig {
        store: store?,
        secret,
        header: header?,
        failed_attempts: failed_attempts?,
    }))
}

fn read_store(
    map: &MapReader,
    base_dir: &Path,
    rate_limit_store: Option<&StoreConfig>,
) -> Option<KeyStore> {
    let kind = match map.get("store") {
        None => "file",
        Some(_) => map.choice("store", &["file", "redis"])?,
    };
    if kind == "file" {
        let file = map.required_string(
            "file",
            "the key file written by portcullis key, such as api-keys.json",
        );
        return Some(KeyStore::File(crate::config::resolve_path(
            base_dir, &file?,
        )));
    }

    if let Some(node) = map.get("file") {
        let message = "a key file is not used with store: redis; remove file";
        map.problems.at(node, &map.child_path("file"), message);
        return None;
    }
    match rate_limit_store? {
        StoreConfig::Redis(config) if matches!(config.endpoints, RedisEndpoints::Single(_)) => {
            Some(KeyStore::Shared(config.clone()))
        }
        _ => {
            let message = "store: redis keeps the keys in the Redis server of rate_limit_store, which must be one server (type: redis with url)";
            let node = map.get("store").unwrap();
            map.problems.at(node, &map.child_path("store"), message);
            None
        }
    }
}

fn map_problem(top: &MapReader, path: &str, message: String) {
    let node = top.get("api_keys").unwrap_or(top.node);
    top.problems.at(node, path, message);
}

fn read_header(map: &MapReader) -> Option<Option<HeaderName>> {
    let Some(name) = map.string("header") else {
        return map.get("header").is_none().then_some(None);
    };
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(header) if header != http::header::AUTHORIZATION => Some(Some(header)),
        _ => {
            let message = "expected a header name other than authorization, such as x-api-key";
            map.problems.at(
                map.get("header").unwrap(),
                &map.child_path("header"),
                message,
            );
            None
        }
    }
}

/// Reads `failed_attempts: { requests, per }` of a section; default 10
/// per minute.
pub(crate) fn read_attempts(map: &MapReader) -> Option<Quota> {
    let default = Quota::new(NonZeroU32::new(10).unwrap(), Duration::from_secs(60)).unwrap();
    let Some(attempts) = map.map("failed_attempts") else {
        return map.get("failed_attempts").is_none().then_some(default);
    };
    let requests = attempts.integer("requests", 1, 1_000_000);
    let per = attempts.duration("per", Duration::from_secs(1), Duration::from_secs(86_400));
    for (key, expected) in [
        ("requests", "failed attempts per period"),
        ("per", "a period such as 1m"),
    ] {
        if attempts.get(key).is_none() {
            attempts.missing(key, expected);
        }
    }
    attempts.finish();
    let quota = Quota::new(NonZeroU32::new(requests? as u32)?, per?);
    quota.ok()
}
