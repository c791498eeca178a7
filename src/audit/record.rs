//! Audit record types and their exact line encoding. A line is the compact
//! JSON that serde_json writes for [`Record`], and its hash is SHA-256 over
//! those bytes without the trailing newline.

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// `prev` of the first record of a chain: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Sequence number, from 1, continuous across rotated files.
    pub seq: u64,
    /// RFC 3339 UTC time the writer created the record, in microseconds.
    pub time: String,
    /// Hex SHA-256 of the previous line, or [`GENESIS_PREV`] for seq 1.
    pub prev: String,
    /// The `kind` field and the fields of that kind.
    #[serde(flatten)]
    pub body: RecordBody,
}

/// Record content, tagged by its `kind` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordBody {
    /// One request decision.
    Request(AuditEvent),
    /// A signature over the chain up to the previous record.
    Checkpoint(Checkpoint),
    /// A torn tail was truncated when the log was opened.
    Recovery(Recovery),
    /// The file is full. The chain continues in `next_file`.
    Rotation(Rotation),
}

impl RecordBody {
    /// Returns the `kind` field value.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordBody::Request(_) => "request",
            RecordBody::Checkpoint(_) => "checkpoint",
            RecordBody::Recovery(_) => "recovery",
            RecordBody::Rotation(_) => "rotation",
        }
    }
}

/// Outcome of the gateway's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request was forwarded upstream.
    Allow,
    /// The gateway rejected the request with an error status.
    Deny,
}

/// The fields of a `request` record: one request decision, with no personal
/// data in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Request id, as sent upstream and in the access log.
    pub request_id: String,
    /// Tenant id, when the route is tenant-scoped.
    pub tenant: Option<String>,
    /// Route id.
    pub route: String,
    /// Keyed pseudonym of the subject (HMAC per tenant), never the subject
    /// itself. The caller computes it.
    pub subject: Option<String>,
    /// Client id of the credential, when it carries one.
    pub client_id: Option<String>,
    /// Whether the request was allowed.
    pub decision: Decision,
    /// Stable snake_case reason code of the decision.
    pub reason: String,
    /// HTTP status sent downstream.
    pub status: u16,
    /// Time from receiving the request to sending the response head, in
    /// milliseconds.
    pub latency_ms: u64,
    /// Policy or limit that decided, when one did.
    pub policy: Option<String>,
}

/// The fields of a `checkpoint` record. The signature is Ed25519 over
/// [`checkpoint_message`], which binds every field of the record except the
/// signature itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Seq of the last record the checkpoint covers, which is the record
    /// right before it.
    pub covers_seq: u64,
    /// Hex SHA-256 of that record's line.
    pub covers_hash: String,
    /// RFC 7638 thumbprint of the Ed25519 public key that signed.
    pub key_id: String,
    /// Base64url Ed25519 signature, without padding.
    pub signature: String,
}

/// The fields of a `recovery` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Name of the file whose tail was truncated.
    pub file: String,
    /// Number of bytes removed from its end.
    pub truncated_bytes: u64,
}

/// The fields of a `rotation` record, the last record of a full file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Name of the file that continues the chain, in the same directory.
    pub next_file: String,
}

impl Record {
    /// Encodes the record as its line, without the newline.
    pub fn encode(&self) -> String {
        // serde_json fails only on non-string map keys or failing Serialize
        // impls, and these derived types have neither.
        serde_json::to_string(self).expect("audit record serializes to JSON")
    }
}

/// Returns the hex SHA-256 of a line's bytes, without its newline.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(digest(&SHA256, line))
}

/// Builds the bytes a checkpoint signature covers. The fixed prefix keeps a
/// checkpoint signature from being valid for any other use of the key.
pub fn checkpoint_message(seq: u64, time: &str, prev: &str, checkpoint: &Checkpoint) -> Vec<u8> {
    format!(
        "portcullis audit checkpoint v1\nseq={seq}\ntime={time}\nprev={prev}\ncovers_seq={}\ncovers_hash={}\nkey_id={}\n",
        checkpoint.covers_seq, checkpoint.covers_hash, checkpoint.key_id
    )
    .into_bytes()
}

/// Formats a timestamp as RFC 3339 UTC with microseconds, the `time` field.
pub fn format_time(time: jiff::Timestamp) -> String {
    format!("{time:.6}")
}
