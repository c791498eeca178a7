//! `portcullis audit verify`: checks that audit files form one unbroken,
//! unmodified chain and reports the first bad line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::record::{checkpoint_message, line_hash, Record, RecordBody, GENESIS_PREV};
use super::recovery::parse_line;
use super::signing::CheckpointVerifier;

/// Checks `verify_files` makes beyond an unbroken chain.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Key whose signatures checkpoints must carry. Without it, checkpoint
    /// signatures are not checked, and anyone able to rewrite the files can
    /// rebuild a consistent chain.
    pub public_key: Option<CheckpointVerifier>,
    /// Require every record to be covered by a checkpoint, as in a log
    /// closed cleanly. This detects lines removed from the end.
    pub require_sealed: bool,
    /// Accept a chain whose first record has a seq above 1, as when older
    /// files were deleted. The first record's `prev` is then not checked.
    pub allow_partial: bool,
}

/// Counts of a log that verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Files read.
    pub files: usize,
    /// Records of each kind.
    pub requests: u64,
    /// Checkpoint records.
    pub checkpoints: u64,
    /// Recovery records.
    pub recoveries: u64,
    /// Rotation records.
    pub rotations: u64,
    /// Seq of the first record, or 0 for an empty log.
    pub first_seq: u64,
    /// Seq of the last record, or 0 for an empty log.
    pub last_seq: u64,
    /// Records after the last checkpoint, not counting a final rotation
    /// record. No signature covers them yet.
    pub unsealed: u64,
    /// Whether checkpoint signatures were checked with a public key.
    pub signatures_checked: bool,
}

impl VerifySummary {
    /// Returns the number of records of all kinds.
    pub fn records(&self) -> u64 {
        self.requests + self.checkpoints + self.recoveries + self.rotations
    }
}

/// The first bad line found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The file.
    pub file: PathBuf,
    /// Line number in the file, from 1. 0 when the file cannot be read.
    pub line: usize,
    /// Description of the problem.
    pub problem: String,
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
    }
}

impl std::error::Error for VerifyFailure {}

/// Position of a line across the files.
#[derive(Debug, Clone)]
struct Location {
    file: usize,
    line: usize,
}

/// The last two records seen, for checking the next one.
struct Previous {
    seq: u64,
    hash: String,
    location: Location,
    /// Hash of the record before, to recognise an inserted line.
    hash_before: Option<String>,
}

struct Verifier<'a> {
    paths: &'a [PathBuf],
    options: &'a VerifyOptions,
    summary: VerifySummary,
    previous: Option<Previous>,
    /// File the last rotation record names, while no record followed it.
    rotated_to: Option<String>,
    last_is_rotation: bool,
}

/// Verifies the files as one chain, in the order given.
pub fn verify_files(
    paths: &[PathBuf],
    options: &VerifyOptions,
) -> Result<VerifySummary, VerifyFailure> {
    let mut verifier = Verifier {
        paths,
        options,
        summary: VerifySummary {
            signatures_checked: options.public_key.is_some(),
            ..VerifySummary::default()
        },
        previous: None,
        rotated_to: None,
        last_is_rotation: false,
    };

    for (index, path) in paths.iter().enumerate() {
        // NOTE: each file is read whole into memory, which bounds the file
        // size verify can handle by the memory available.
        let bytes = std::fs::read(path).map_err(|e| VerifyFailure {
            file: path.clone(),
            line: 0,
            problem: format!("cannot read the file: {e}"),
        })?;
        verifier.check_file(index, &bytes)?;
        verifier.summary.files += 1;
    }
    verifier.check_sealed()?;
    Ok(verifier.summary)
}

impl Verifier<'_> {
    fn fail(&self, location: &Location, problem: String) -> VerifyFailure {
        VerifyFailure {
            file: self.paths[location.file].clone(),
            line: location.line,
            problem,
        }
    }

    fn check_file(&mut self, file: usize, bytes: &[u8]) -> Result<(), VerifyFailure> {
        let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
        if file > 0 {
            self.check_file_start(file)?;
        }

        for (i, raw) in lines.iter().enumerate() {
            let location = Location { file, line: i + 1 };
            let Some(line) = raw.strip_suffix(b"\n") else {
                return Err(self.fail(
                    &location,
                    "torn line: no newline at the end of the file, so a write was interrupted \
                     (opening the log for writing truncates it)"
                        .into(),
                ));
            };
            let next = lines.get(i + 1).and_then(|l| l.strip_suffix(b"\n"));
            self.check_line(location, line, next)?;
        }
        Ok(())
    }

    /// Checks that the previous file ended with a rotation to this one.
    fn check_file_start(&mut self, file: usize) -> Result<(), VerifyFailure> {
        let name = self.paths[file]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let location = Location { file, line: 1 };
        match self.rotated_to.take() {
            Some(next_file) if next_file == name => Ok(()),
            Some(next_file) => Err(self.fail(
                &location,
                format!(
                    "the previous file rotates to {next_file}, but the next file given is {name}; \
                     give the files in chain order"
                ),
            )),
            None if self.previous.is_none() => Ok(()),
            None => Err(self.fail(
                &location,
                "the previous file does not end with a rotation record, so this file does not \
                 continue its chain"
                    .into(),
            )),
        }
    }

    fn check_line(
        &mut self,
        location: Location,
        line: &[u8],
        next: Option<&[u8]>,
    ) -> Result<(), VerifyFailure> {
        let record = self.parse(&location, line)?;
        let hash = line_hash(line);
        if self.previous.as_ref().is_some_and(|p| p.hash == hash) {
            return Err(self.fail(&location, "line repeats the previous line".into()));
        }

        if self.rotated_to.is_some() {
            return Err(self.fail(
                &location,
                "record after a rotation record; a rotation record must end its file".into(),
            ));
        }
        self.check_seq(&location, &record)?;
        if let RecordBody::Checkpoint(_) = record.body {
            self.check_checkpoint(&location, &record)?;
        }
        self.check_prev(&location, &record, next)?;

        self.count(&record);
        self.previous = Some(Previous {
            seq: record.seq,
            hash,
            location,
            hash_before: self.previous.as_ref().map(|p| p.hash.clone()),
        });
        Ok(())
    }

    fn parse(&self, location: &Location, line: &[u8]) -> Result<Record, VerifyFailure> {
        let record: Record = serde_json::from_slice(line)
            .map_err(|e| self.fail(location, format!("invalid record: {e}")))?;
        if record.encode().as_bytes() != line {
            return Err(self.fail(
                location,
                "record is not in the exact encoding the writer produces, so it was changed".into(),
            ));
        }
        if record.time.parse::<jiff::Timestamp>().is_err() || !record.time.ends_with('Z') {
            return Err(self.fail(
                location,
                format!("time {:?} is not an RFC 3339 UTC time", record.time),
            ));
        }
        if !is_hex_hash(&record.prev) {
            return Err(self.fail(location, "prev is not 64 lowercase hex digits".into()));
        }
        Ok(record)
    }

    fn check_seq(&self, location: &Location, record: &Record) -> Result<(), VerifyFailure> {
        let Some(previous) = &self.previous else {
            return self.check_first(location, record);
        };
        let expected = previous.seq + 1;
        if record.seq == expected {
            return Ok(());
        }

        // A line inserted with a plausible seq and prev shows only here: this
        // line repeats the inserted line's seq and chains to the line before it.
        let continues_before = previous.hash_before.as_deref() == Some(record.prev.as_str());
        if record.seq == previous.seq && continues_before {
            let inserted = previous.location.clone();
            return Err(self.fail(
                &inserted,
                format!(
                    "line was inserted: the next line repeats seq {} and continues the chain \
                     from the line before this one",
                    record.seq
                ),
            ));
        }
        let problem = if record.seq > expected {
            format!(
                "seq is {}, expected {expected}: records are missing before this line, or lines \
                 are out of order",
                record.seq
            )
        } else {
            format!(
                "seq is {}, expected {expected}: the line is repeated or out of order",
                record.seq
            )
        };
        Err(self.fail(location, problem))
    }

    fn check_first(&self, location: &Location, record: &Record) -> Result<(), VerifyFailure> {
        if record.seq == 1 && record.prev == GENESIS_PREV {
            return Ok(());
        }
        if record.seq == 1 {
            return Err(self.fail(location, "seq 1 must have a prev of 64 zeros".into()));
        }
        if self.options.allow_partial {
            return Ok(());
        }
        Err(self.fail(
            location,
            format!(
                "the chain starts at seq {}, expected 1; give the earlier files too, or allow a \
                 partial chain (--partial) when older files were deleted",
                record.seq
            ),
        ))
    }

    fn check_checkpoint(&self, location: &Location, record: &Record) -> Result<(), VerifyFailure> {
        let RecordBody::Checkpoint(checkpoint) = &record.body else {
            return Ok(());
        };
        if checkpoint.covers_seq + 1 != record.seq || checkpoint.covers_hash != record.prev {
            return Err(self.fail(
                location,
                format!(
                    "checkpoint covers seq {} with hash {}, but the record before it is seq {} \
                     with hash {}",
                    checkpoint.covers_seq,
                    checkpoint.covers_hash,
                    record.seq.saturating_sub(1),
                    record.prev
                ),
            ));
        }

        let Some(key) = &self.options.public_key else {
            return Ok(());
        };
        if checkpoint.key_id != key.key_id() {
            return Err(self.fail(
                location,
                format!(
                    "checkpoint key_id {} is not the given public key, whose key_id is {}",
                    checkpoint.key_id,
                    key.key_id()
                ),
            ));
        }
        let message = checkpoint_message(record.seq, &record.time, &record.prev, checkpoint);
        if !key.verify(&message, &checkpoint.signature) {
            return Err(self.fail(location, "checkpoint signature is invalid".into()));
        }
        Ok(())
    }

    /// Checks `prev` against the previous line's hash. On a mismatch, the
    /// next line shows which of the two lines changed: if it still chains
    /// to this line, the previous line changed.
    fn check_prev(
        &self,
        location: &Location,
        record: &Record,
        next: Option<&[u8]>,
    ) -> Result<(), VerifyFailure> {
        let Some(previous) = &self.previous else {
            return Ok(());
        };
        if record.prev == previous.hash {
            return Ok(());
        }

        let this_hash = {
            let line = record.encode();
            line_hash(line.as_bytes())
        };
        let next_chains_here = next
            .and_then(parse_line)
            .is_none_or(|next| next.prev == this_hash);
        if next_chains_here {
            return Err(self.fail(
                &previous.location,
                "line was changed: its hash does not match the prev of the next line".into(),
            ));
        }
        Err(self.fail(
            location,
            "line was changed: its prev does not match the hash of the previous line, and the \
             next line's prev does not match its hash"
                .into(),
        ))
    }

    fn count(&mut self, record: &Record) {
        let summary = &mut self.summary;
        if summary.first_seq == 0 {
            summary.first_seq = record.seq;
        }
        summary.last_seq = record.seq;
        self.last_is_rotation = false;

        match &record.body {
            RecordBody::Request(_) => {
                summary.requests += 1;
                summary.unsealed += 1;
            }
            RecordBody::Checkpoint(_) => {
                summary.checkpoints += 1;
                summary.unsealed = 0;
            }
            RecordBody::Recovery(_) => {
                summary.recoveries += 1;
                summary.unsealed += 1;
            }
            RecordBody::Rotation(rotation) => {
                summary.rotations += 1;
                self.rotated_to = Some(rotation.next_file.clone());
                self.last_is_rotation = true;
            }
        }
    }

    fn check_sealed(&self) -> Result<(), VerifyFailure> {
        if !self.options.require_sealed || self.summary.unsealed == 0 {
            return Ok(());
        }
        let Some(previous) = &self.previous else {
            return Ok(());
        };
        Err(self.fail(
            &previous.location,
            format!(
                "the log ends with {} records after the last checkpoint, so lines may have been \
                 removed from the end; a log closed cleanly ends with a checkpoint",
                self.summary.unsealed
            ),
        ))
    }
}

fn is_hex_hash(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Runs `portcullis audit verify`: prints the counts and returns success,
/// or prints the first bad line and returns failure.
pub fn verify_command(
    files: &[PathBuf],
    public_key: Option<&Path>,
    require_sealed: bool,
    allow_partial: bool,
) -> ExitCode {
    let public_key = match public_key
        .map(CheckpointVerifier::from_pem_file)
        .transpose()
    {
        Ok(key) => key,
        Err(error) => {
            eprintln!("error: cannot load the public key: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = VerifyOptions {
        public_key,
        require_sealed,
        allow_partial,
    };

    match verify_files(files, &options) {
        Ok(summary) => {
            print_summary(&summary, &options);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn print_summary(summary: &VerifySummary, options: &VerifyOptions) {
    println!(
        "ok: {} files, {} records (seq {} to {}): {} request, {} checkpoint, {} recovery, {} rotation",
        summary.files,
        summary.records(),
        summary.first_seq,
        summary.last_seq,
        summary.requests,
        summary.checkpoints,
        summary.recoveries,
        summary.rotations,
    );
    match &options.public_key {
        Some(key) => println!(
            "checkpoint signatures verified with key_id {}",
            key.key_id()
        ),
        None => {
            println!("warning: checkpoint signatures not checked; pass --public-key to check them")
        }
    }
    if summary.unsealed > 0 {
        println!(
            "note: the last {} records are not covered by a checkpoint yet",
            summary.unsealed
        );
    }
}
