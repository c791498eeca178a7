//! Tamper-evident audit log: one record per request decision, appended to a
//! hash chain with signed checkpoints. The pipeline hands each decision to
//! [`AuditLog::append`]; `portcullis audit verify` checks the files.
//!
//! # Format
//!
//! JSON Lines, one [`Record`] per line. Every record has `seq` (from 1,
//! continuous across files), `time` (RFC 3339 UTC), `prev` (hex SHA-256 of
//! the exact bytes of the previous line without its newline, 64 zeros for
//! seq 1) and `kind`:
//!
//! - `request`: one decision ([`AuditEvent`]).
//! - `checkpoint`: an Ed25519 signature over the seq and hash of the record
//!   before it, so it covers the whole chain up to there. `key_id` is the
//!   RFC 7638 thumbprint of the public key.
//! - `recovery`: written after opening a log whose last line was torn.
//! - `rotation`: the last record of a full file, naming the next file, whose
//!   first record continues `seq` and `prev`.
//!
//! Changing, deleting, inserting or reordering a line breaks `seq` or the
//! `prev` of the line after it. Records after the last checkpoint are not
//! signed yet: anyone able to write the file can change or drop them unseen, so
//! the writer adds a checkpoint every `checkpoint_records` records, after
//! `checkpoint_interval`, before each rotation and on [`AuditLog::close`].
//!
//! # Durability
//!
//! With [`Durability::Fsync`] (the default) `append` returns only after the
//! record is on disk: a crash loses no record whose `append` returned. The
//! writer groups all records waiting into one write and one fsync, so
//! concurrent requests share the cost. With [`Durability::Interval`]
//! `append` returns once the record is handed to the operating system: a
//! process crash loses nothing, but a host crash or power loss loses the
//! records of up to one interval.
//!
//! When a write fails, `append` returns an error for every record in that
//! batch and the writer truncates the file back to its last durable length,
//! so later appends can succeed once the cause is gone. When fsync fails the
//! state of the file is unknown, so the writer stops and every later
//! `append` fails until the log is opened again.
//!
//! # Recovery
//!
//! [`AuditLog::open`] continues the newest file in the directory. Its last
//! line is torn when a crash interrupted a write: there is no newline at the
//! end, or the line is not a valid record. The writer truncates that line
//! away and appends a `recovery` record with the number of bytes removed.
//! The chain continues, and the loss is itself recorded. A torn line is never a
//! record whose `append` returned in fsync mode. Any other invalid line
//! makes `open` fail: that is damage for a person to inspect, not a crash.

mod config;
mod pseudonym;
mod record;
mod recovery;
mod signing;
mod trail;
mod verify;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use config::{read as read_config, AuditConfig, AuditSettings, Durability, OnFailure};
pub use pseudonym::{erase, erase_command, Erased, Pseudonyms, DEFAULT_TENANT};
pub use record::{
    checkpoint_message, line_hash, AuditEvent, Checkpoint, Decision, Record, RecordBody, Recovery,
    Rotation, GENESIS_PREV,
};
pub use signing::{CheckpointSigner, CheckpointVerifier, KeyError};
pub use trail::{Entry, Trail, Unavailable};
pub use verify::{verify_command, verify_files, VerifyFailure, VerifyOptions, VerifySummary};
pub use writer::{AuditLog, AuditStats};

/// Wall-clock time source for record times and checkpoint intervals. Tests
/// use [`ManualClock`] so that no test sleeps.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current time.
    fn now(&self) -> jiff::Timestamp;
}

/// Production clock: the system time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Test clock that moves only when a test advances it. Clones share one
/// time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    time: Arc<Mutex<jiff::Timestamp>>,
}

impl ManualClock {
    /// Creates a clock that reads `start`.
    pub fn new(start: jiff::Timestamp) -> ManualClock {
        ManualClock {
            time: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `step`.
    pub fn advance(&self, step: std::time::Duration) {
        let mut time = self.time.lock().unwrap_or_else(|e| e.into_inner());
        let step = jiff::SignedDuration::try_from(step).unwrap_or(jiff::SignedDuration::MAX);
        *time = time.saturating_add(step).unwrap_or(*time);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> jiff::Timestamp {
        *self.time.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Failure of the audit log. `append` errors mean the record is not durable
/// and the request must not be served as if it were recorded.
#[derive(Debug, Clone)]
pub enum AuditError {
    /// A file operation failed.
    Io {
        /// Operation that failed, such as "write" or "fsync".
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<std::io::Error>,
    },
    /// The signing key could not be loaded.
    Key(KeyError),
    /// An existing file is damaged beyond a torn last line.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Description of the damage.
        reason: String,
    },
    /// An earlier fsync failed, so the writer stopped. Open the log again to
    /// recover.
    Stopped,
}

impl AuditError {
    fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            operation,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Io {
                operation,
                path,
                source,
            } => write!(
                f,
                "audit log {operation} failed on {}: {source}",
                path.display()
            ),
            AuditError::Key(error) => write!(f, "audit signing key invalid: {error}"),
            AuditError::Corrupt { path, reason } => {
                write!(f, "audit log {} is damaged: {reason}", path.display())
            }
            AuditError::Stopped => write!(
                f,
                "audit log writer stopped after an fsync failure; restart to recover the log"
            ),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::Io { source, .. } => Some(source.as_ref()),
            AuditError::Key(error) => Some(error),
            _ => None,
        }
    }
}

/// Returns the file name of log file number `index`.
fn file_name(index: u64) -> String {
    format!("audit-{index:06}.jsonl")
}

/// Returns the number of a log file name, or `None` for other names.
fn file_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
