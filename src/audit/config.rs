//! Settings of the audit log writer, and the `audit` section of the
//! gateway configuration that holds them.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::reader::{found, MapReader};
use crate::config::yaml::Value;

/// When the writer forces records to disk with fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Group commit: the writer takes every record waiting, writes them,
    /// calls fsync once and only then lets each `append` return. A record
    /// whose `append` returned survives a crash of the process or host.
    #[default]
    Fsync,
    /// `append` returns once the record is written to the operating system,
    /// and the writer calls fsync when this much time has passed since the
    /// last one. A host crash (not a process crash) loses up to this much.
    Interval(Duration),
}

/// Settings of an [`AuditLog`](super::AuditLog).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Directory of the log files, named `audit-000001.jsonl`,
    /// `audit-000002.jsonl` and so on. Created if missing.
    pub directory: PathBuf,
    /// Ed25519 private key in a PKCS#8 PEM file, which signs checkpoints.
    pub signing_key: PathBuf,
    /// When records reach the disk. Default: [`Durability::Fsync`].
    pub durability: Durability,
    /// A checkpoint follows after this many records. Default: 1000.
    pub checkpoint_records: NonZeroU64,
    /// A checkpoint follows the first record written once this much time
    /// has passed since the last checkpoint. Default: 60 s.
    pub checkpoint_interval: Duration,
    /// A file that reaches this size, in bytes, is closed with a rotation
    /// record and the chain continues in the next file. A file ends larger
    /// by at most one record plus the checkpoint and rotation records. Default: 64 MiB.
    pub max_file_bytes: NonZeroU64,
    /// A file whose first record is this old is closed like a full one
    /// before the next record is written, so that record starts the next
    /// file. An idle log keeps its file open until a record arrives.
    /// Default: `None`, files rotate by size only.
    pub rotate_every: Option<Duration>,
    /// Maximum records written under one fsync. Default: 1024.
    pub max_batch: NonZeroUsize,
}

impl AuditConfig {
    /// Returns the defaults for a log in `directory` signed with the key in
    /// `signing_key`.
    pub fn new(directory: impl Into<PathBuf>, signing_key: impl Into<PathBuf>) -> AuditConfig {
        AuditConfig {
            directory: directory.into(),
            signing_key: signing_key.into(),
            durability: Durability::Fsync,
            checkpoint_records: NonZeroU64::new(1000).expect("nonzero"),
            checkpoint_interval: Duration::from_secs(60),
            max_file_bytes: NonZeroU64::new(64 * 1024 * 1024).expect("nonzero"),
            rotate_every: None,
            max_batch: NonZeroUsize::new(1024).expect("nonzero"),
        }
    }
}

/// What the gateway does with a request whose audit record cannot be
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// Answer 503 with reason `audit_unavailable`, and reject new requests
    /// before they are forwarded while the log is failing. Default.
    #[default]
    Deny,
    /// Serve the request unrecorded, count it in
    /// `portcullis_audit_append_failures_total` and log a warning.
    Allow,
}

impl OnFailure {
    /// Returns the configuration word, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Deny => "deny",
            OnFailure::Allow => "allow",
        }
    }
}

/// The `audit` section: the log writer, the failure policy and the
/// pseudonym keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Settings of the log writer (`directory`, `signing_key`,
    /// `durability`, `checkpoint_records`, `checkpoint_interval`,
    /// `rotate`).
    pub log: AuditConfig,
    /// What happens to a request whose record cannot be written. Default:
    /// [`OnFailure::Deny`].
    pub on_failure: OnFailure,
    /// Directory of the pseudonym keys (`pseudonyms.directory`). Required,
    /// and kept apart from the log files so that erasing a key never
    /// touches the log and copies of the log carry no keys.
    pub pseudonyms: PathBuf,
}

/// Reads the optional top-level `audit` section. Returns `None` when it is
/// invalid (the problems are reported), `Some(None)` when it is absent.
pub fn read(top: &MapReader, base_dir: &Path) -> Option<Option<AuditSettings>> {
    let Some(map) = top.map("audit") else {
        return top.get("audit").is_none().then_some(None);
    };
    let directory = map.required_string("directory", "the directory of the audit log files");
    let signing_key = map.required_string(
        "signing_key",
        "the file of the Ed25519 private key (PKCS#8 PEM) that signs checkpoints",
    );
    let durability = read_durability(&map);
    let checkpoint_records = optional(&map, "checkpoint_records", |m, k| {
        m.integer(k, 1, 100_000_000)
    });
    let checkpoint_interval = optional(&map, "checkpoint_interval", |m, k| {
        m.duration(k, Duration::from_secs(1), Duration::from_secs(24 * 3600))
    });
    let rotate = read_rotate(&map);
    let on_failure = optional(&map, "on_failure", |m, k| m.choice(k, &["deny", "allow"]));
    let pseudonyms = read_pseudonyms(&map, base_dir);

    let directory = directory.map(|d| crate::config::resolve_path(base_dir, &d));
    let signing_key = signing_key.map(|k| crate::config::resolve_path(base_dir, &k));
    let key_loads = signing_key
        .as_deref()
        .is_some_and(|path| check_key(&map, path));
    let distinct = match (&directory, &pseudonyms) {
        (Some(log), Some(keys)) => check_distinct(&map, log, keys),
        _ => false,
    };
    map.finish();

    let mut log = AuditConfig::new(directory?, signing_key?);
    log.durability = durability?.unwrap_or_default();
    if let Some(records) = checkpoint_records? {
        log.checkpoint_records = NonZeroU64::new(records)?;
    }
    if let Some(interval) = checkpoint_interval? {
        log.checkpoint_interval = interval;
    }
    let (max_bytes, every) = rotate?;
    if let Some(max_bytes) = max_bytes {
        log.max_file_bytes = NonZeroU64::new(max_bytes)?;
    }
    log.rotate_every = every;
    let on_failure = match on_failure? {
        Some("allow") => OnFailure::Allow,
        _ => OnFailure::Deny,
    };
    if !key_loads || !distinct {
        return None;
    }
    Some(Some(AuditSettings {
        log,
        on_failure,
        pseudonyms: pseudonyms?,
    }))
}

/// Reads an optional key: `Some(None)` when absent, `None` when present
/// but invalid.
fn optional<T>(
    map: &MapReader,
    key: &'static str,
    read: impl FnOnce(&MapReader, &'static str) -> Option<T>,
) -> Option<Option<T>> {
    match read(map, key) {
        Some(value) => Some(Some(value)),
        None => map.get(key).is_none().then_some(None),
    }
}

/// Reads `durability`: `fsync`, or a mapping `{ interval: 1s }`.
fn read_durability(map: &MapReader) -> Option<Option<Durability>> {
    let Some(node) = map.get("durability") else {
        return Some(None);
    };
    let path = map.child_path("durability");
    if let Value::Mapping(_) = node.value {
        let inner = MapReader::open(node, &path, map.problems)?;
        let interval = inner.duration(
            "interval",
            Duration::from_millis(1),
            Duration::from_secs(3600),
        );
        if interval.is_none() && inner.get("interval").is_none() {
            inner.missing("interval", "the time between two fsyncs, such as 1s");
        }
        inner.finish();
        return Some(Some(Durability::Interval(interval?)));
    }
    if crate::config::reader::scalar_text(node) == Some("fsync") {
        return Some(Some(Durability::Fsync));
    }
    let message = format!(
        "expected fsync or a mapping such as {{ interval: 1s }}, found {}",
        found(node)
    );
    map.problems.at(node, &path, message);
    None
}

/// Reads `rotate: { max_bytes, every }`, both optional.
fn read_rotate(map: &MapReader) -> Option<(Option<u64>, Option<Duration>)> {
    let Some(rotate) = map.map("rotate") else {
        return map.get("rotate").is_none().then_some((None, None));
    };
    let max_bytes = optional(&rotate, "max_bytes", |m, k| m.byte_size(k, 1024, 1 << 40));
    let every = optional(&rotate, "every", |m, k| {
        m.duration(
            k,
            Duration::from_secs(1),
            Duration::from_secs(366 * 24 * 3600),
        )
    });
    rotate.finish();
    Some((max_bytes?, every?))
}

/// Reads `pseudonyms: { directory }`, which is required.
fn read_pseudonyms(map: &MapReader, base_dir: &Path) -> Option<PathBuf> {
    let Some(pseudonyms) = map.map("pseudonyms") else {
        if map.get("pseudonyms").is_none() {
            map.missing(
                "pseudonyms",
                "a mapping with the directory of the pseudonym keys, such as { directory: /var/lib/portcullis/pseudonyms }",
            );
        }
        return None;
    };
    let directory = pseudonyms.required_string("directory", "the directory of the pseudonym keys");
    pseudonyms.finish();
    Some(crate::config::resolve_path(base_dir, &directory?))
}

/// Loads the signing key as the gateway will, so `portcullis check`
/// reports a missing or invalid key. The message names the file, never
/// key bytes.
fn check_key(map: &MapReader, path: &Path) -> bool {
    match super::CheckpointSigner::from_pem_file(path) {
        Ok(_) => true,
        Err(error) => {
            let node = map.get("signing_key").unwrap_or(map.node);
            let message = format!("cannot load the audit signing key: {error}");
            map.problems
                .at(node, &map.child_path("signing_key"), message);
            false
        }
    }
}

fn check_distinct(map: &MapReader, log: &Path, keys: &Path) -> bool {
    if log != keys {
        return true;
    }
    let node = map.get("pseudonyms").unwrap_or(map.node);
    let message = "the pseudonym keys need their own directory, apart from the log files, so that erasing a key never touches the log";
    map.problems
        .at(node, &map.child_path("pseudonyms.directory"), message);
    false
}
