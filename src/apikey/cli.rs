//! `portcullis key`: create, list, rotate and revoke API keys in the key
//! file named by a configuration. A new key is printed once, on standard
//! output, and never stored; everything else goes to standard error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use ring::hmac;

use crate::apikey::config::KeyStore;
use crate::apikey::store::{self, KeyFile, KeyRecord};
use crate::apikey::unix_seconds;
use crate::config::Config;
use crate::feed::Feed;

/// The properties of a key made by `key create`.
pub struct NewKey {
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    pub label: String,
    pub expires_in: Option<Duration>,
}

pub fn create(config_path: &Path, request: NewKey) -> ExitCode {
    if let Err(message) = check_request(&request) {
        return fail(&message);
    }
    run(config_path, |config, file, secret| {
        if let Some(tenant) = &request.tenant {
            if !config.tenants.contains_key(tenant) {
                return Err(format!("no tenant named {tenant:?} in the configuration"));
            }
        }
        let now = unix_seconds();
        let expires_at = request.expires_in.map(|ttl| now + ttl.as_secs().max(1));
        let (key, record) = new_record(
            secret,
            request.tenant,
            request.scopes,
            request.label,
            now,
            expires_at,
        );
        eprintln!("created {}; the key is shown once, below", record.name());
        file.keys.push(record);
        Ok(Some(key))
    })
}

pub fn rotate(config_path: &Path, name: &str, overlap: Duration) -> ExitCode {
    run(config_path, |_, file, secret| {
        let now = unix_seconds();
        let old = find(file, name)?;
        let name = old.name();
        if old.is_revoked(now) || old.is_expired(now) {
            return Err(format!(
                "{name} is revoked or expired; create a new key instead"
            ));
        }
        let (key, record) = new_record(
            secret,
            old.tenant.clone(),
            old.scopes.clone(),
            old.label.clone(),
            now,
            old.expires_at,
        );
        let until = now + overlap.as_secs();
        old.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
        old.rotated_to = Some(record.id.clone());
        eprintln!(
            "rotated {name} to {}; {name} stays valid for {}",
            record.name(),
            humantime::format_duration(overlap)
        );
        file.keys.push(record);
        Ok(Some(key))
    })
}

pub fn revoke(config_path: &Path, name: &str) -> ExitCode {
    run(config_path, |_, file, _| {
        let record = find(file, name)?;
        record.revoked_at.get_or_insert(unix_seconds());
        eprintln!("revoked {}", record.name());
        Ok(None)
    })
}

pub fn list(config_path: &Path, json: bool) -> ExitCode {
    let (keys, _) = match open(config_path) {
        Ok(opened) => opened,
        Err(message) => return fail(&message),
    };
    let file = match load_all(&keys.store) {
        Ok(file) => file,
        Err(message) => return fail(&message),
    };
    // Output that stops being read (`| head`) ends the listing quietly.
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        let listed: Vec<_> = file.keys.iter().map(listing).collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(listed));
        return ExitCode::SUCCESS;
    }
    let now = unix_seconds();
    let _ = writeln!(
        out,
        "{:<20}  {:<8}  {:<12}  {:<24}  label",
        "key", "status", "tenant", "scopes"
    );
    for record in &file.keys {
        let written = writeln!(
            out,
            "{:<20}  {:<8}  {:<12}  {:<24}  {}",
            record.name(),
            status(record, now),
            record.tenant.as_deref().unwrap_or("-"),
            record.scopes.join(" "),
            record.label
        );
        if written.is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn listing(record: &KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "key": record.name(),
        "status": status(record, unix_seconds()),
        "tenant": record.tenant,
        "scopes": record.scopes,
        "label": record.label,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "rotated_to": record.rotated_to.as_ref().map(|id| format!("pk_{id}")),
    })
}

fn status(record: &KeyRecord, now: u64) -> &'static str {
    if record.is_revoked(now) {
        "revoked"
    } else if record.is_expired(now) {
        "expired"
    } else {
        "active"
    }
}

fn new_record(
    secret: &hmac::Key,
    tenant: Option<String>,
    scopes: Vec<String>,
    label: String,
    now: u64,
    expires_at: Option<u64>,
) -> (String, KeyRecord) {
    let (key, id) = store::generate();
    let record = KeyRecord {
        id,
        hash: store::hash(secret, &key),
        tenant,
        scopes,
        label,
        created_at: now,
        expires_at,
        revoked_at: None,
        rotated_to: None,
    };
    (key, record)
}

/// Finds a key by its name (`pk_<id>`, or the bare id). The whole key is
/// accepted too, but only its public part is ever printed back.
fn find<'f>(file: &'f mut KeyFile, name: &str) -> Result<&'f mut KeyRecord, String> {
    let rest = name.strip_prefix("pk_").unwrap_or(name);
    let id = rest.split('_').next().unwrap_or_default();
    let printable: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    file.keys
        .iter_mut()
        .find(|record| record.id == id)
        .ok_or_else(|| format!("no key named pk_{printable} in the key store"))
}

/// Checks what `key create` was asked for: scopes that are scope tokens
/// (RFC 6749 section 3.3: printable ASCII without space, `"` or `\`), so
/// one scope can never read as two upstream, a printable label, and a
/// lifetime of at least a second.
fn check_request(request: &NewKey) -> Result<(), String> {
    for scope in &request.scopes {
        let token = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !token {
            return Err(format!(
                "invalid scope {scope:?}: expected one scope token (printable ASCII, no space, quote or backslash); repeat --scope for several"
            ));
        }
    }
    if request.label.chars().any(char::is_control) {
        return Err("invalid label: expected printable text without control characters".into());
    }
    if request
        .expires_in
        .is_some_and(|ttl| ttl < Duration::from_secs(1))
    {
        return Err("invalid --expires-in: expected a lifetime of at least 1s".into());
    }
    Ok(())
}

/// Applies one change to the key store, then prints the new key. The
/// key file is changed under an exclusive lock, so two commands never lose
/// each other's change there.
fn run(config_path: &Path, change: impl Change) -> ExitCode {
    match apply(config_path, change) {
        Ok(Some(key)) => {
            println!("{key}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// A change to the key file; returns the new key to print, if any.
trait Change: FnOnce(&Config, &mut KeyFile, &hmac::Key) -> Result<Option<String>, String> {}

impl<F> Change for F where
    F: FnOnce(&Config, &mut KeyFile, &hmac::Key) -> Result<Option<String>, String>
{
}

fn apply(config_path: &Path, change: impl Change) -> Result<Option<String>, String> {
    let (keys, config) = open(config_path)?;
    let secret = hmac::Key::new(hmac::HMAC_SHA256, keys.secret.expose());
    match &keys.store {
        KeyStore::File(path) => store::update(path, |file| change(&config, file, &secret)),
        KeyStore::Shared(redis) => {
            // NOTE: two commands changing the same key at once can lose
            // one change; the file store locks, this store does not yet.
            let mut file = load_all(&keys.store)?;
            let before = file.keys.clone();
            let key = change(&config, &mut file, &secret)?;
            let feed = Feed::new(redis, "apikey")?;
            let changed = file.keys.iter().filter(|record| !before.contains(record));
            let records: Vec<KeyRecord> = changed.cloned().collect();
            block_on(async {
                for record in &records {
                    let text = serde_json::to_string(record).expect("records serialize");
                    feed.publish(&record.id, &text, None).await?;
                }
                Ok::<(), String>(())
            })??;
            Ok(key)
        }
    }
}

/// Reads every record of a store.
fn load_all(store: &KeyStore) -> Result<KeyFile, String> {
    match store {
        KeyStore::File(path) => store::load(path),
        KeyStore::Shared(redis) => {
            let feed = Feed::new(redis, "apikey")?;
            let values = block_on(feed.all())??;
            let keys = values
                .iter()
                .map(|text| serde_json::from_str::<KeyRecord>(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("a shared API key record is malformed: {error}"))?;
            Ok(KeyFile { version: 1, keys })
        }
    }
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    Ok(runtime.block_on(work))
}

/// Loads the configuration and its `api_keys` section.
fn open(config_path: &Path) -> Result<(crate::apikey::config::ApiKeysConfig, Config), String> {
    let mut config = crate::config::load(config_path).map_err(|errors| errors.to_string())?;
    let keys = config.api_keys.take().ok_or_else(|| {
        format!(
            "{}: no api_keys section; add one with a file (or store: redis) and a secret",
            config_path.display()
        )
    })?;
    Ok((keys, config))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
