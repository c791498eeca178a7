//! The append-only writer: a dedicated thread owns the file, collects the
//! records of concurrent requests into batches, writes and syncs each batch
//! once, then resolves every waiting `append`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::config::{AuditConfig, Durability};
use super::record::{
    checkpoint_message, format_time, line_hash, AuditEvent, Checkpoint, Record, RecordBody,
    Recovery, Rotation,
};
use super::recovery::{find_chain_end, ChainEnd};
use super::signing::CheckpointSigner;
use super::{file_name, AuditError, Clock, SystemClock};

/// Maximum real-time wait of the writer thread between checks of the
/// clock, so a [`ManualClock`](super::ManualClock) that a test moves is
/// noticed.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(200);

/// Sender that resolves one waiting `append` or `close`.
type Ack = oneshot::Sender<Result<(), AuditError>>;

/// The waiters of one batch and the batch's result.
type Resolved = (Vec<Ack>, Result<(), AuditError>);

/// Destination of the results of the writer thread's batches.
///
/// Waking a task from a thread outside the Tokio runtime can cost a system
/// call per task: under `--threads 1`, a profile showed one eventfd write
/// per record. With a runtime, the writer sends each batch's waiters once
/// to a task on the runtime, which wakes them from inside it.
enum Resolver {
    /// Send each result from the writer thread.
    Direct,
    /// Send the batch to the task that resolves its waiters.
    Runtime(tokio::sync::mpsc::UnboundedSender<Resolved>),
}

impl Resolver {
    /// Starts the resolving task on the current Tokio runtime, if any.
    fn start() -> Resolver {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Resolver::Direct;
        };
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Resolved>();
        runtime.spawn(async move {
            while let Some((acks, result)) = receiver.recv().await {
                send_all(acks, &result);
            }
        });
        Resolver::Runtime(sender)
    }

    fn resolve(&self, acks: Vec<Ack>, result: Result<(), AuditError>) {
        match self {
            Resolver::Direct => send_all(acks, &result),
            Resolver::Runtime(sender) => {
                // The runtime is shutting down: resolve from here.
                if let Err(unsent) = sender.send((acks, result)) {
                    let (acks, result) = unsent.0;
                    send_all(acks, &result);
                }
            }
        }
    }
}

fn send_all(acks: Vec<Ack>, result: &Result<(), AuditError>) {
    for ack in acks {
        // A waiter that gave up is no longer interested in the result.
        let _ = ack.send(result.clone());
    }
}

enum Command {
    Append(Box<AuditEvent>, Ack),
    Close(Ack),
}

/// Counters of the writer, for metrics and tests.
#[derive(Debug, Default)]
struct Counters {
    records: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
}

/// Snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    /// Request records written.
    pub records: u64,
    /// Batches written, each with one write call per file.
    pub batches: u64,
    /// fsync calls on log files.
    pub fsyncs: u64,
}

/// Handle to an open audit log. Cheap to share behind an `Arc`; every
/// method takes `&self`.
#[derive(Debug)]
pub struct AuditLog {
    sender: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    truncated_bytes: Option<u64>,
}

impl AuditLog {
    /// Opens the log in `config.directory`, recovers a torn tail and starts
    /// the writer thread. Blocks on file I/O, so call it at startup.
    pub fn open(config: AuditConfig) -> Result<AuditLog, AuditError> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// Opens the log like [`AuditLog::open`], reading times from `clock`.
    pub fn open_with_clock(
        config: AuditConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<AuditLog, AuditError> {
        let signer =
            CheckpointSigner::from_pem_file(&config.signing_key).map_err(AuditError::Key)?;
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| AuditError::io("create", &config.directory, e))?;

        let end = find_chain_end(&config.directory)?;
        let counters = Arc::new(Counters::default());
        let mut writer = Writer::resume(config, signer, clock, end, counters.clone())?;
        let truncated_bytes = writer.record_recovery()?;

        let (sender, receiver) = mpsc::channel();
        let resolver = Resolver::start();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                batch_scheduling();
                writer.run(receiver, resolver)
            })
            .map_err(|e| AuditError::io("start writer thread for", PathBuf::new(), e))?;

        Ok(AuditLog {
            sender,
            counters,
            truncated_bytes,
        })
    }

    /// Appends a request record. In [`Durability::Fsync`] mode this resolves
    /// once the record is on disk; in interval mode once it is written to
    /// the operating system. An error means the record may be missing.
    pub async fn append(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Command::Append(Box::new(event), ack))
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }

    /// Writes a final checkpoint, syncs and stops the writer. Appends after
    /// this fail with [`AuditError::Stopped`].
    pub async fn close(&self) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.sender
            .send(Command::Close(ack))
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }

    /// Returns the bytes truncated from a torn tail when the log was opened,
    /// or `None` when the tail was intact.
    pub fn truncated_bytes(&self) -> Option<u64> {
        self.truncated_bytes
    }

    /// Returns the writer's counters.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            records: self.counters.records.load(Ordering::Relaxed),
            batches: self.counters.batches.load(Ordering::Relaxed),
            fsyncs: self.counters.fsyncs.load(Ordering::Relaxed),
        }
    }
}

/// Moves the calling thread to `SCHED_BATCH` so that waking it does not
/// preempt a busy request thread on the same core. It then runs when that
/// thread waits or its time slice ends, and collects the records of every
/// request served meanwhile into one batch, so a busy gateway pays one
/// thread switch per batch instead of one per record. Failure only costs
/// those switches, so it is logged and ignored.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread and `param` outlives the
        // call; SCHED_BATCH with priority 0 needs no privilege.
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "audit writer thread kept the default scheduling policy"
            );
        }
    }
}

/// Chain position after the last successful write, restored when a write
/// fails so the file and the chain agree again.
#[derive(Debug, Clone)]
struct Position {
    len: u64,
    next_seq: u64,
    prev: String,
    since_checkpoint: u64,
    last_checkpoint: jiff::Timestamp,
}

/// State owned by the writer thread.
struct Writer {
    config: AuditConfig,
    signer: CheckpointSigner,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    index: u64,
    path: PathBuf,
    file: File,
    /// Encoded lines not yet written to `file`.
    buffer: Vec<u8>,
    /// Position including the lines in `buffer`.
    head: Position,
    /// Position of the bytes written to `file`.
    written: Position,
    /// Truncated bytes of a torn tail and their file, recorded once the
    /// writer starts.
    torn: Option<Recovery>,
    last_sync: jiff::Timestamp,
    /// Time of the current file's first record, for rotation by age.
    file_started: jiff::Timestamp,
    dirty: bool,
    stopped: bool,
}

impl Writer {
    fn resume(
        config: AuditConfig,
        signer: CheckpointSigner,
        clock: Arc<dyn Clock>,
        end: ChainEnd,
        counters: Arc<Counters>,
    ) -> Result<Writer, AuditError> {
        let path = config.directory.join(file_name(end.index));
        let file = open_append(&path)?;
        if end.torn_len > 0 {
            file.set_len(end.keep_len)
                .and_then(|_| file.sync_all())
                .map_err(|e| AuditError::io("truncate", &path, e))?;
        }

        // NOTE: open reads only the tail, so the count of records since the
        // last checkpoint restarts here and the next count-based checkpoint
        // may come up to `checkpoint_records` records late.
        let now = clock.now();
        let file_started = first_record_time(&path).unwrap_or(now);
        let position = Position {
            len: end.keep_len,
            next_seq: end.next_seq,
            prev: end.prev,
            since_checkpoint: u64::from(!end.sealed),
            last_checkpoint: now,
        };
        let mut writer = Writer {
            config,
            signer,
            clock,
            counters,
            index: end.index,
            path,
            file,
            buffer: Vec::new(),
            head: position.clone(),
            written: position,
            torn: (end.torn_len > 0).then(|| Recovery {
                file: file_name(end.index),
                truncated_bytes: end.torn_len,
            }),
            last_sync: now,
            file_started,
            dirty: false,
            stopped: false,
        };

        if let Some(next_file) = end.rotated_to {
            writer.switch_file(&next_file)?;
        }
        Ok(writer)
    }

    /// Appends the `recovery` record for a truncated torn tail and syncs it.
    fn record_recovery(&mut self) -> Result<Option<u64>, AuditError> {
        let Some(recovery) = self.torn.take() else {
            return Ok(None);
        };
        let truncated_bytes = recovery.truncated_bytes;
        self.push(RecordBody::Recovery(recovery));
        self.flush()?;
        self.sync()?;
        Ok(Some(truncated_bytes))
    }

    fn run(mut self, receiver: mpsc::Receiver<Command>, resolver: Resolver) {
        loop {
            let command = match receiver.recv_timeout(self.idle_wait()) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => {
                    self.on_idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.seal();
                    return;
                }
            };

            let mut batch = Vec::new();
            let mut close = None;
            match command {
                Command::Append(event, ack) => batch.push((event, ack)),
                Command::Close(ack) => close = Some(ack),
            }
            while close.is_none() && batch.len() < self.config.max_batch.get() {
                match receiver.try_recv() {
                    Ok(Command::Append(event, ack)) => batch.push((event, ack)),
                    Ok(Command::Close(ack)) => close = Some(ack),
                    Err(_) => break,
                }
            }

            if !batch.is_empty() {
                self.write_batch(batch, &resolver);
            }
            if let Some(ack) = close {
                let _ = ack.send(self.seal());
                return;
            }
        }
    }

    /// Writes a batch, syncs it in fsync mode, then sends the result to each
    /// waiter.
    fn write_batch(&mut self, batch: Vec<(Box<AuditEvent>, Ack)>, resolver: &Resolver) {
        let result = self.try_write_batch(batch.iter().map(|(event, _)| event.as_ref()));
        if result.is_ok() {
            self.counters
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        let acks = batch.into_iter().map(|(_, ack)| ack).collect();
        resolver.resolve(acks, result);
    }

    fn try_write_batch<'a>(
        &mut self,
        events: impl Iterator<Item = &'a AuditEvent>,
    ) -> Result<(), AuditError> {
        if self.stopped {
            return Err(AuditError::Stopped);
        }
        for event in events {
            if self.file_age_due() {
                self.rotate()?;
            }
            self.push(RecordBody::Request(event.clone()));
            self.after_record()?;
        }
        self.flush()?;
        self.counters.batches.fetch_add(1, Ordering::Relaxed);

        match self.config.durability {
            Durability::Fsync => self.sync(),
            Durability::Interval(interval) => self.sync_if_due(interval),
        }
    }

    /// Adds a checkpoint or rotates the file when one is due after a record.
    fn after_record(&mut self) -> Result<(), AuditError> {
        if self.checkpoint_due() {
            self.push_checkpoint();
        }
        if self.written.len + self.buffer.len() as u64 >= self.config.max_file_bytes.get() {
            self.rotate()?;
        }
        Ok(())
    }

    /// Returns whether the current file contains records and is older than
    /// `rotate_every`.
    fn file_age_due(&self) -> bool {
        let Some(every) = self.config.rotate_every else {
            return false;
        };
        let empty = self.written.len == 0 && self.buffer.is_empty();
        let age = self.clock.now().duration_since(self.file_started);
        !empty && age.unsigned_abs() >= every && !age.is_negative()
    }

    fn checkpoint_due(&self) -> bool {
        let since = self.head.since_checkpoint;
        let elapsed = self.clock.now().duration_since(self.head.last_checkpoint);
        since >= self.config.checkpoint_records.get()
            || (since > 0 && elapsed.unsigned_abs() >= self.config.checkpoint_interval)
    }

    /// Encodes the next record into the buffer and advances the head.
    fn push(&mut self, body: RecordBody) {
        let is_checkpoint = matches!(body, RecordBody::Checkpoint(_));
        self.note_file_start();
        let record = Record {
            seq: self.head.next_seq,
            time: format_time(self.clock.now()),
            prev: self.head.prev.clone(),
            body,
        };
        let line = record.encode();

        self.head.prev = line_hash(line.as_bytes());
        self.head.next_seq += 1;
        self.head.since_checkpoint = if is_checkpoint {
            0
        } else {
            self.head.since_checkpoint + 1
        };
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
    }

    /// Takes the time of a record that starts an empty file as the file's
    /// start, for rotation by age.
    fn note_file_start(&mut self) {
        if self.written.len == 0 && self.buffer.is_empty() {
            self.file_started = self.clock.now();
        }
    }

    /// Adds a signed checkpoint covering the record before it.
    fn push_checkpoint(&mut self) {
        self.note_file_start();
        let now = self.clock.now();
        let seq = self.head.next_seq;
        let time = format_time(now);
        let mut checkpoint = Checkpoint {
            covers_seq: seq - 1,
            covers_hash: self.head.prev.clone(),
            key_id: self.signer.key_id().to_string(),
            signature: String::new(),
        };
        let message = checkpoint_message(seq, &time, &self.head.prev, &checkpoint);
        checkpoint.signature = self.signer.sign(&message);

        let record = Record {
            seq,
            time,
            prev: self.head.prev.clone(),
            body: RecordBody::Checkpoint(checkpoint),
        };
        let line = record.encode();
        self.head.prev = line_hash(line.as_bytes());
        self.head.next_seq += 1;
        self.head.since_checkpoint = 0;
        self.head.last_checkpoint = now;
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
    }

    /// Closes the full file with a checkpoint and a rotation record, syncs
    /// it and continues in the next file.
    fn rotate(&mut self) -> Result<(), AuditError> {
        if self.head.since_checkpoint > 0 {
            self.push_checkpoint();
        }
        let next_file = file_name(self.index + 1);
        self.push(RecordBody::Rotation(Rotation {
            next_file: next_file.clone(),
        }));
        self.flush()?;
        self.sync()?;
        self.switch_file(&next_file)
            .inspect_err(|_| self.stopped = true)
    }

    fn switch_file(&mut self, next_file: &str) -> Result<(), AuditError> {
        let path = self.config.directory.join(next_file);
        let file = open_append(&path)?;
        sync_directory(&self.config.directory)?;

        self.index += 1;
        self.path = path;
        self.file = file;
        self.head.len = 0;
        self.written.len = 0;
        Ok(())
    }

    /// Writes the buffer. On failure, truncates the file back to the last
    /// written position and rewinds the chain to it.
    fn flush(&mut self) -> Result<(), AuditError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        match self.file.write_all(&self.buffer) {
            Ok(()) => {
                self.head.len = self.written.len + self.buffer.len() as u64;
                self.written = self.head.clone();
                self.buffer.clear();
                self.dirty = true;
                Ok(())
            }
            Err(error) => {
                let error = AuditError::io("write", &self.path, error);
                self.rewind();
                Err(error)
            }
        }
    }

    fn rewind(&mut self) {
        self.buffer.clear();
        self.head = self.written.clone();
        if let Err(error) = self.file.set_len(self.written.len) {
            tracing::error!(
                audit.file = %self.path.display(),
                error = %error,
                "audit log truncation after a failed write failed; the writer stops"
            );
            self.stopped = true;
        }
    }

    fn sync(&mut self) -> Result<(), AuditError> {
        if !self.dirty {
            return Ok(());
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        match self.file.sync_data() {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = self.clock.now();
                Ok(())
            }
            Err(error) => {
                // After a failed fsync the kernel may have dropped the dirty
                // pages, so nothing written since the last sync is known to
                // be on disk. Only a fresh open, which rereads the file, can
                // continue the chain safely.
                self.stopped = true;
                Err(AuditError::io("fsync", &self.path, error))
            }
        }
    }

    fn sync_if_due(&mut self, interval: Duration) -> Result<(), AuditError> {
        let elapsed = self.clock.now().duration_since(self.last_sync);
        if elapsed.unsigned_abs() >= interval {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// Writes a time-based checkpoint and the interval fsync when due.
    fn on_idle(&mut self) {
        if self.stopped {
            return;
        }
        let result = (|| {
            if self.checkpoint_due() {
                self.push_checkpoint();
                self.flush()?;
            }
            match self.config.durability {
                Durability::Fsync => self.sync(),
                Durability::Interval(interval) => self.sync_if_due(interval),
            }
        })();
        if let Err(error) = result {
            tracing::error!(error = %error, "audit log background write failed");
        }
    }

    fn idle_wait(&self) -> Duration {
        let now = self.clock.now();
        let mut wait = MAX_IDLE_WAIT;
        if self.head.since_checkpoint > 0 {
            let due = self.config.checkpoint_interval;
            let elapsed = now.duration_since(self.head.last_checkpoint).unsigned_abs();
            wait = wait.min(due.saturating_sub(elapsed));
        }
        if let (Durability::Interval(interval), true) = (self.config.durability, self.dirty) {
            let elapsed = now.duration_since(self.last_sync).unsigned_abs();
            wait = wait.min(interval.saturating_sub(elapsed));
        }
        wait.max(Duration::from_millis(1))
    }

    /// Adds a final checkpoint when records are not covered yet, and syncs.
    fn seal(&mut self) -> Result<(), AuditError> {
        if self.stopped {
            return Err(AuditError::Stopped);
        }
        if self.head.since_checkpoint > 0 {
            self.push_checkpoint();
        }
        self.flush()?;
        let result = self.sync();
        self.stopped = true;
        result
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| AuditError::io("open", path, e))
}

/// Reads the `time` of a file's first record, for the age of a file the
/// writer continues. `None` when the file is empty or its first line is not
/// a record.
fn first_record_time(path: &Path) -> Option<jiff::Timestamp> {
    use std::io::BufRead;

    let file = File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).ok()?;
    let record: Record = serde_json::from_str(line.trim_end()).ok()?;
    record.time.parse().ok()
}

fn sync_directory(directory: &Path) -> Result<(), AuditError> {
    File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| AuditError::io("fsync directory", directory, e))
}
