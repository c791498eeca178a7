//! API key records and the file that keeps them.
//!
//! A key reads `pk_<id>_<secret>`: `pk_<id>` is public and names the key
//! in logs, metrics and limits; the secret is 32 random bytes. The store
//! keeps only HMAC-SHA-256 of the whole key under a server secret, so a
//! copy of the file does not let anyone present a key, and cannot be
//! searched offline without the server secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Bytes of randomness in a key's id (16 hex characters).
const ID_BYTES: usize = 8;
/// Bytes of randomness in a key's secret (43 base64url characters).
const SECRET_BYTES: usize = 32;

/// One API key as stored: everything but the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The public part after `pk_`.
    pub id: String,
    /// HMAC-SHA-256 of the whole key, hex.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// The key that replaced this one, after a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
}

impl KeyRecord {
    /// Returns the name a key is known by: `pk_<id>`.
    pub fn name(&self) -> String {
        format!("pk_{}", self.id)
    }

    pub fn is_revoked(&self, now: u64) -> bool {
        self.revoked_at.is_some_and(|at| at <= now)
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The contents of a key file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub keys: Vec<KeyRecord>,
}

/// A key presented by a client, split into its parts.
pub struct Presented<'a> {
    pub id: &'a str,
    pub whole: &'a str,
}

/// Splits `pk_<id>_<secret>`, or `None` when the text is not shaped like a
/// key. Nothing is looked up yet.
pub fn parse(text: &str) -> Option<Presented<'_>> {
    let rest = text.strip_prefix("pk_")?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == ID_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(Presented { id, whole: text })
}

/// Makes a new key: returns the key, shown once, and its id.
pub fn generate() -> (String, String) {
    let random = ring::rand::SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&random, &mut id).expect("the system random source works");
    ring::rand::SecureRandom::fill(&random, &mut secret).expect("the system random source works");
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    (format!("pk_{id}_{secret}"), id)
}

/// Computes the stored hash of a key.
pub fn hash(server_secret: &hmac::Key, key: &str) -> String {
    hex::encode(hmac::sign(server_secret, key.as_bytes()).as_ref())
}

/// Checks a presented key against a record's hash in constant time.
pub fn matches(server_secret: &hmac::Key, key: &str, record: &KeyRecord) -> bool {
    match hex::decode(&record.hash) {
        Ok(tag) => hmac::verify(server_secret, key.as_bytes(), &tag).is_ok(),
        Err(_) => false,
    }
}

/// Reads a key file. A missing file is an empty store.
pub fn load(path: &Path) -> Result<KeyFile, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(KeyFile {
                version: 1,
                keys: Vec::new(),
            })
        }
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let file: KeyFile = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not a valid key file: {error}", path.display()))?;
    if file.version != 1 {
        return Err(format!(
            "{}: expected key file version 1, found {}",
            path.display(),
            file.version
        ));
    }
    check_records(&file.keys).map_err(|message| format!("{}: {message}", path.display()))?;
    Ok(file)
}

/// Rejects records a hand edit could have broken: a repeated id (which
/// record would win is not defined) or an id that is not 16 hex digits.
pub fn check_records(records: &[KeyRecord]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for record in records {
        let well_formed =
            record.id.len() == ID_BYTES * 2 && record.id.bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err("a key id is not 16 hex digits".into());
        }
        if !seen.insert(record.id.as_str()) {
            return Err(format!("key pk_{} appears twice", record.id));
        }
    }
    Ok(())
}

/// Writes a key file atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over the old one, so a reader sees the
/// old or the new contents and never a partial write. The file is
/// readable by its owner only.
pub fn save(path: &Path, file: &KeyFile) -> Result<(), String> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = temporary_path(path);
    let text = serde_json::to_string_pretty(file).expect("key records serialize");
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&temporary)?;
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        out.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(directory)?.sync_all()
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write {}: {error}", path.display())
    })
}

/// Changes a key file under an exclusive lock on `<file>.lock`, so two
/// writers (commands, or a gateway revoking a key) never lose each other's
/// change.
pub fn update<T>(
    path: &Path,
    change: impl FnOnce(&mut KeyFile) -> Result<T, String>,
) -> Result<T, String> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|error| format!("cannot create {}: {error}", lock_path.display()))?;
    lock.lock()
        .map_err(|error| format!("cannot lock {}: {error}", lock_path.display()))?;

    let mut file = load(path)?;
    file.version = 1;
    let outcome = change(&mut file)?;
    save(path, &file)?;
    Ok(outcome)
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_secret() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn generated_keys_parse_and_match_only_their_record() {
        let (key, id) = generate();
        let (other, _) = generate();
        let record = KeyRecord {
            id: id.clone(),
            hash: hash(&server_secret(), &key),
            tenant: None,
            scopes: Vec::new(),
            label: String::new(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            rotated_to: None,
        };

        assert_eq!(parse(&key).map(|p| p.id), Some(id.as_str()));
        assert!(matches(&server_secret(), &key, &record));
        assert!(!matches(&server_secret(), &other, &record));
        let wrong_secret = hmac::Key::new(hmac::HMAC_SHA256, b"another server secret, 32 bytes!");
        assert!(!matches(&wrong_secret, &key, &record));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let (key, _) = generate();
        let cases = [
            ("empty", String::new()),
            ("no prefix", key.trim_start_matches("pk_").to_string()),
            ("short secret", key[..key.len() - 1].to_string()),
            ("long secret", format!("{key}A")),
            (
                "id not hex",
                format!("pk_{}_{}", "z".repeat(16), &key[20..]),
            ),
            ("space in secret", format!("{} ", &key[..key.len() - 1])),
        ];
        for (description, text) in cases {
            assert!(parse(&text).is_none(), "{description}: {text:?}");
        }
    }

    #[test]
    fn save_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut file = load(&path).unwrap();
        assert!(file.keys.is_empty(), "a missing file is an empty store");

        file.keys.push(KeyRecord {
            id: "00112233aabbccdd".into(),
            hash: "00".into(),
            tenant: Some("acme".into()),
            scopes: vec!["read:users".into()],
            label: "ci".into(),
            created_at: 1,
            expires_at: None,
            revoked_at: None,
            rotated_to: None,
        });
        save(&path, &file).unwrap();

        assert_eq!(load(&path).unwrap().keys, file.keys);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
