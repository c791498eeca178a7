//! Finds where an existing log ends when it is opened: the newest file, its
//! last valid record and the length of a torn last line to truncate.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::record::{line_hash, Record, RecordBody, GENESIS_PREV};
use super::{file_index, file_name, AuditError};

/// Bytes read from the end of a file at first when looking for its last
/// lines. Doubled until two line breaks are found.
const TAIL_CHUNK: u64 = 64 * 1024;

/// End of the chain: the file and position the writer continues from.
#[derive(Debug)]
pub(super) struct ChainEnd {
    /// Number of the file to append to.
    pub index: u64,
    /// Length the file keeps. Bytes after it are a torn line.
    pub keep_len: u64,
    /// Bytes after `keep_len`, to truncate.
    pub torn_len: u64,
    /// Seq of the next record.
    pub next_seq: u64,
    /// Hash of the last record, or [`GENESIS_PREV`].
    pub prev: String,
    /// Whether the last record is a checkpoint (or there is none).
    pub sealed: bool,
    /// Name of the next file when the last record is a rotation record, so
    /// the writer must continue there.
    pub rotated_to: Option<String>,
}

/// Last valid record of a file and what follows it.
struct Tail {
    /// The record and its hash, or `None` when the file has no valid line.
    last: Option<(Record, String)>,
    /// Length up to and including the last valid line's newline.
    keep_len: u64,
}

/// Finds the end of the chain in `directory`, which must exist.
pub(super) fn find_chain_end(directory: &Path) -> Result<ChainEnd, AuditError> {
    let Some(index) = newest_index(directory)? else {
        return Ok(fresh_chain(1));
    };
    let path = directory.join(file_name(index));
    let tail = read_tail(&path, true)?;
    let file_len = file_length(&path)?;

    let Some((record, hash)) = tail.last else {
        let mut end = continue_from_previous(directory, index)?;
        end.torn_len = file_len;
        return Ok(end);
    };

    let rotated_to = match &record.body {
        RecordBody::Rotation(rotation) => Some(rotation.next_file.clone()),
        _ => None,
    };
    Ok(ChainEnd {
        index,
        keep_len: tail.keep_len,
        torn_len: file_len - tail.keep_len,
        next_seq: record.seq + 1,
        prev: hash,
        sealed: matches!(record.body, RecordBody::Checkpoint(_)),
        rotated_to,
    })
}

fn fresh_chain(index: u64) -> ChainEnd {
    ChainEnd {
        index,
        keep_len: 0,
        torn_len: 0,
        next_seq: 1,
        prev: GENESIS_PREV.to_string(),
        sealed: true,
        rotated_to: None,
    }
}

/// Continues the chain from the file before `index`, used when file `index`
/// contains no valid record: the previous file must end with a rotation record
/// naming it.
fn continue_from_previous(directory: &Path, index: u64) -> Result<ChainEnd, AuditError> {
    if index == 1 {
        return Ok(fresh_chain(index));
    }
    let previous = directory.join(file_name(index - 1));
    if !previous.exists() {
        return Err(AuditError::Corrupt {
            path: directory.join(file_name(index)),
            reason: format!(
                "the file contains no valid record and {}, where the chain would end, is missing",
                file_name(index - 1)
            ),
        });
    }
    let tail = read_tail(&previous, false)?;
    let corrupt = |reason: String| AuditError::Corrupt {
        path: previous.clone(),
        reason,
    };

    match tail.last {
        Some((record, hash)) => match &record.body {
            RecordBody::Rotation(rotation) if rotation.next_file == file_name(index) => {
                Ok(ChainEnd {
                    index,
                    keep_len: 0,
                    torn_len: 0,
                    next_seq: record.seq + 1,
                    prev: hash,
                    sealed: false,
                    rotated_to: None,
                })
            }
            _ => Err(corrupt(format!(
                "expected its last record to be a rotation to {}",
                file_name(index)
            ))),
        },
        None => Err(corrupt("the file holds no valid record".into())),
    }
}

fn newest_index(directory: &Path) -> Result<Option<u64>, AuditError> {
    let entries = std::fs::read_dir(directory).map_err(|e| AuditError::io("list", directory, e))?;
    let mut newest = None;
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", directory, e))?;
        let name = entry.file_name();
        if let Some(index) = name.to_str().and_then(file_index) {
            newest = newest.max(Some(index));
        }
    }
    Ok(newest)
}

fn file_length(path: &Path) -> Result<u64, AuditError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| AuditError::io("stat", path, e))
}

/// Reads the last valid record of a file. With `allow_torn`, one torn last
/// line (no newline, or not a valid record) is skipped; any other invalid
/// line is an error.
fn read_tail(path: &Path, allow_torn: bool) -> Result<Tail, AuditError> {
    let (start, bytes) = read_last_lines(path)?;
    let corrupt = |reason: String| AuditError::Corrupt {
        path: PathBuf::from(path),
        reason,
    };

    // Lines of the tail, each with its end offset in `bytes` (after the
    // newline when there is one). The first may be partial when the tail
    // does not start at offset 0, but it is never parsed then.
    let mut lines: Vec<(&[u8], usize, bool)> = Vec::new();
    let mut line_start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if *byte == b'\n' {
            lines.push((&bytes[line_start..i], i + 1, true));
            line_start = i + 1;
        }
    }
    if line_start < bytes.len() {
        lines.push((&bytes[line_start..], bytes.len(), false));
    }

    let mut skipped = 0;
    while let Some((line, end, complete)) = lines.pop() {
        let is_whole = !lines.is_empty() || start == 0;
        if !is_whole {
            return Err(corrupt("a line is longer than the tail read".into()));
        }
        if complete {
            if let Some(record) = parse_line(line) {
                return Ok(Tail {
                    last: Some((record, line_hash(line))),
                    keep_len: start + end as u64,
                });
            }
        }
        skipped += 1;
        if !allow_torn || skipped > 1 {
            return Err(corrupt(format!(
                "invalid record {} lines before the end; only a torn last line is recovered",
                skipped - 1
            )));
        }
    }
    Ok(Tail {
        last: None,
        keep_len: 0,
    })
}

/// Parses a line that the writer could have written: a valid record in the
/// exact encoding the writer produces.
pub(super) fn parse_line(line: &[u8]) -> Option<Record> {
    let record: Record = serde_json::from_slice(line).ok()?;
    (record.encode().as_bytes() == line).then_some(record)
}

/// Reads the end of a file containing at least its last two line breaks,
/// or the whole file. Returns the offset of the first byte read.
fn read_last_lines(path: &Path) -> Result<(u64, Vec<u8>), AuditError> {
    let mut file = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let len = file_length(path)?;
    let mut chunk = TAIL_CHUNK;

    loop {
        let start = len.saturating_sub(chunk);
        let mut bytes = Vec::with_capacity((len - start) as usize);
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.by_ref().take(len - start).read_to_end(&mut bytes))
            .map_err(|e| AuditError::io("read", path, e))?;

        let breaks = bytes.iter().filter(|b| **b == b'\n').count();
        if start == 0 || breaks >= 3 {
            return Ok((start, bytes));
        }
        chunk *= 2;
    }
}
