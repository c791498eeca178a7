//! Settings of the audit log writer.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

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
#[derive(Debug, Clone)]
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
    // TODO: rotation by age is not implemented; files rotate by size only.
    pub max_file_bytes: NonZeroU64,
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
            max_batch: NonZeroUsize::new(1024).expect("nonzero"),
        }
    }
}
