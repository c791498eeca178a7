//! Audit log: the writer, tail recovery, rotation and `audit verify`
//! against real files in temporary directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use portcullis::audit::{
    line_hash, AuditConfig, AuditEvent, AuditLog, CheckpointSigner, CheckpointVerifier, Decision,
    Durability, ManualClock, Record, RecordBody, VerifyFailure, VerifyOptions, VerifySummary,
};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

/// A temporary log directory with a signing key and its public key.
struct Fixture {
    dir: tempfile::TempDir,
    key: PathBuf,
    public_key: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = dir.path().join("audit-key.pem");
        let public_key = dir.path().join("audit-key.pub.pem");
        write_key_pair(&key, &public_key);
        Fixture {
            dir,
            key,
            public_key,
        }
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn config(&self) -> AuditConfig {
        let mut config = AuditConfig::new(self.log_dir(), &self.key);
        config.checkpoint_records = 10.try_into().unwrap();
        config
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.log_dir())
            .expect("log directory")
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        files
    }

    fn first_file(&self) -> PathBuf {
        self.log_dir().join("audit-000001.jsonl")
    }

    fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier::from_pem_file(&self.public_key).expect("public key")
    }

    fn verify(&self, sealed: bool) -> Result<VerifySummary, VerifyFailure> {
        let options = VerifyOptions {
            public_key: Some(self.verifier()),
            require_sealed: sealed,
            allow_partial: false,
        };
        portcullis::audit::verify_files(&self.files(), &options)
    }
}

fn write_key_pair(private_path: &Path, public_path: &Path) {
    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key generation");
    let der = document.as_ref();
    let body = base64_lines(der);
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n");
    std::fs::write(private_path, pem).unwrap();

    let signer = CheckpointSigner::from_pkcs8_der(der).expect("Ed25519 key");
    std::fs::write(public_path, signer.public_key_pem()).unwrap();
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|chunk| format!("{}\n", std::str::from_utf8(chunk).unwrap()))
        .collect()
}

fn event(i: usize) -> AuditEvent {
    let denied = i.is_multiple_of(5);
    AuditEvent {
        request_id: format!("req-{i:06}"),
        tenant: Some("acme".into()),
        route: "users".into(),
        subject: Some(format!("ps_{:016x}", i * 7919)),
        client_id: Some("web".into()),
        decision: if denied {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: if denied { "rate_limited" } else { "allowed" }.into(),
        status: if denied { 429 } else { 200 },
        latency_ms: (i % 37) as u64,
        policy: denied.then(|| "per_client".to_string()),
    }
}

fn clock() -> ManualClock {
    ManualClock::new("2026-01-02T03:04:05Z".parse().unwrap())
}

/// Writes `count` records one after another and closes the log.
async fn write_log(config: AuditConfig, count: usize) {
    let log = AuditLog::open_with_clock(config, Arc::new(clock())).expect("open");
    for i in 0..count {
        log.append(event(i)).await.expect("append");
    }
    log.close().await.expect("close");
}

fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(str::to_string).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn records(path: &Path) -> Vec<Record> {
    read_lines(path)
        .iter()
        .map(|line| serde_json::from_str(line).expect("record"))
        .collect()
}

fn failure_line(result: Result<VerifySummary, VerifyFailure>) -> (usize, String) {
    let failure = result.expect_err("tampering detected");
    (failure.line, failure.problem)
}

#[tokio::test]
async fn clean_log_verifies() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 45).await;

    let summary = fixture.verify(true).expect("clean log verifies");

    assert_eq!(summary.files, 1);
    assert_eq!(summary.requests, 45);
    assert_eq!(
        summary.checkpoints, 5,
        "four every 10 records, one on close"
    );
    assert_eq!(summary.first_seq, 1);
    assert_eq!(summary.last_seq, 50);
    assert_eq!(summary.unsealed, 0);
    assert!(summary.signatures_checked);
}

#[tokio::test]
async fn records_have_the_documented_fields() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 11).await;
    let lines = read_lines(&fixture.first_file());

    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["kind"], "request");
    assert_eq!(first["time"], "2026-01-02T03:04:05.000000Z");
    assert_eq!(first["request_id"], "req-000000");
    assert_eq!(first["decision"], "deny");
    assert_eq!(first["reason"], "rate_limited");

    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["prev"], line_hash(lines[0].as_bytes()));

    let checkpoint: serde_json::Value = serde_json::from_str(&lines[10]).unwrap();
    assert_eq!(checkpoint["kind"], "checkpoint");
    assert_eq!(checkpoint["covers_seq"], 10);
    assert_eq!(checkpoint["covers_hash"], line_hash(lines[9].as_bytes()));
    assert_eq!(checkpoint["key_id"], fixture.verifier().key_id());
}

/// Replaces the first occurrence of `from` in a line.
fn edit(lines: &mut [String], line: usize, from: &str, to: &str) {
    let text = &mut lines[line - 1];
    assert!(text.contains(from), "line {line} contains {from}: {text}");
    *text = text.replacen(from, to, 1);
}

/// Builds a request record that fits the chain at `line`, with the right
/// seq and prev.
fn forged_record(lines: &[String], line: usize) -> String {
    let before: Record = serde_json::from_str(&lines[line - 2]).unwrap();
    let record = Record {
        seq: before.seq + 1,
        time: before.time.clone(),
        prev: line_hash(lines[line - 2].as_bytes()),
        body: RecordBody::Request(event(999)),
    };
    record.encode()
}

type Tamper = fn(&mut Vec<String>);

#[tokio::test]
async fn every_tamper_kind_is_pinpointed() {
    // Lines 1-10 are requests, 11 is a checkpoint, and so on; 55 is the
    // closing checkpoint.
    let cases: &[(&str, Tamper, usize)] = &[
        (
            "status of a request edited",
            |l| edit(l, 20, "\"status\":200", "\"status\":201"),
            20,
        ),
        ("reason edited", |l| edit(l, 20, "allowed", "allowex"), 20),
        (
            "prev of a request edited",
            |l| {
                let c = if l[19].contains("\"prev\":\"0") {
                    "1"
                } else {
                    "0"
                };
                let start = l[19].find("\"prev\":\"").unwrap() + 8;
                l[19].replace_range(start..start + 1, c);
            },
            20,
        ),
        (
            "whitespace added",
            |l| edit(l, 20, "\"status\":", "\"status\": "),
            20,
        ),
        ("field removed", |l| edit(l, 20, ",\"policy\":null", ""), 20),
        (
            "line deleted",
            |l| {
                l.remove(19);
            },
            20,
        ),
        (
            "forged line inserted",
            |l| {
                let forged = forged_record(l, 20);
                l.insert(19, forged);
            },
            20,
        ),
        (
            "line duplicated",
            |l| {
                let copy = l[18].clone();
                l.insert(19, copy);
            },
            20,
        ),
        ("two lines swapped", |l| l.swap(19, 20), 20),
        (
            "checkpoint signature changed",
            |l| {
                let start = l[10].find("\"signature\":\"").unwrap() + 13;
                let c = if &l[10][start..start + 1] == "A" {
                    "B"
                } else {
                    "A"
                };
                l[10].replace_range(start..start + 1, c);
            },
            11,
        ),
        (
            "checkpoint time changed",
            |l| edit(l, 11, "2026-01-02", "2026-01-03"),
            11,
        ),
        (
            "checkpoint covers_seq changed",
            |l| edit(l, 11, "\"covers_seq\":10", "\"covers_seq\":9"),
            11,
        ),
        (
            "last request before the final checkpoint edited",
            |l| edit(l, 54, "\"route\":\"users\"", "\"route\":\"admin\""),
            54,
        ),
        (
            "final checkpoint removed",
            |l| {
                l.pop();
            },
            54,
        ),
        ("several final lines removed", |l| l.truncate(50), 50),
    ];

    let fixture = Fixture::new();
    write_log(fixture.config(), 50).await;
    let path = fixture.first_file();
    let original = read_lines(&path);
    assert_eq!(original.len(), 55);

    for (description, tamper, expected_line) in cases {
        let mut lines = original.clone();
        tamper(&mut lines);
        write_lines(&path, &lines);

        let (line, problem) = failure_line(fixture.verify(true));
        assert_eq!(line, *expected_line, "{description}: {problem}");
    }
}

#[tokio::test]
async fn truncation_mid_line_is_a_torn_line() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 50).await;
    let path = fixture.first_file();
    let bytes = std::fs::read(&path).unwrap();
    let line_30_start: usize = read_lines(&path)[..29].iter().map(|l| l.len() + 1).sum();

    std::fs::write(&path, &bytes[..line_30_start + 17]).unwrap();

    let (line, problem) = failure_line(fixture.verify(false));
    assert_eq!(line, 30);
    assert!(problem.contains("torn line"), "{problem}");
}

#[tokio::test]
async fn truncation_at_line_end_needs_sealed() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 50).await;
    let path = fixture.first_file();
    let lines = read_lines(&path);

    write_lines(&path, &lines[..30]);

    let summary = fixture
        .verify(false)
        .expect("an unsealed tail alone is valid");
    assert_eq!(
        summary.unsealed, 8,
        "lines 23 to 30 follow the checkpoint in line 22"
    );
    let (line, problem) = failure_line(fixture.verify(true));
    assert_eq!(line, 30);
    assert!(problem.contains("after the last checkpoint"), "{problem}");
}

#[tokio::test]
async fn checkpoints_from_another_key_are_rejected() {
    let fixture = Fixture::new();
    let other = Fixture::new();
    write_log(fixture.config(), 20).await;

    let options = VerifyOptions {
        public_key: Some(other.verifier()),
        ..VerifyOptions::default()
    };
    let failure = portcullis::audit::verify_files(&fixture.files(), &options).unwrap_err();

    assert_eq!(failure.line, 11);
    assert!(failure.problem.contains("key_id"), "{}", failure.problem);
}

#[tokio::test]
async fn chain_must_start_at_seq_one_unless_partial() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 30).await;
    let path = fixture.first_file();
    let lines = read_lines(&path);
    write_lines(&path, &lines[11..]);

    let (line, problem) = failure_line(fixture.verify(false));
    assert_eq!(line, 1);
    assert!(problem.contains("starts at seq 12"), "{problem}");

    let options = VerifyOptions {
        public_key: Some(fixture.verifier()),
        allow_partial: true,
        ..VerifyOptions::default()
    };
    let summary = portcullis::audit::verify_files(&fixture.files(), &options).unwrap();
    assert_eq!(summary.first_seq, 12);
}

/// Small deterministic generator (SplitMix64) so a failing edit can be
/// reproduced from the printed seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[tokio::test]
async fn random_single_byte_edits_are_pinpointed() {
    const EDITS: usize = 200;
    const SEED: u64 = 0x5eed_a0d1;

    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.checkpoint_records = 100.try_into().unwrap();
    write_log(config, 3000).await;
    let path = fixture.first_file();
    let original = std::fs::read(&path).unwrap();
    let mut random = SplitMix(SEED);

    for round in 0..EDITS {
        let index = random.below(original.len());
        let old = original[index];
        let new = loop {
            let candidate = random.below(256) as u8;
            if candidate != old {
                break candidate;
            }
        };
        let mut bytes = original.clone();
        bytes[index] = new;
        std::fs::write(&path, &bytes).unwrap();

        let edited_line = original[..index].iter().filter(|b| **b == b'\n').count() + 1;
        let result = fixture.verify(true);
        let context = format!(
            "seed {SEED:#x} round {round}: byte {index} (line {edited_line}) {old:#04x} -> {new:#04x}"
        );
        let failure = result.expect_err(&context);
        assert_eq!(failure.line, edited_line, "{context}: {}", failure.problem);
    }
}

#[tokio::test]
async fn torn_tail_is_truncated_and_recorded() {
    let cases: &[(&str, &[u8])] = &[
        (
            "fragment without newline",
            b"{\"seq\":12,\"time\":\"2026-01",
        ),
        ("invalid line with newline", b"{\"seq\":12,\"ti\n"),
        ("zero bytes after a crash", &[0; 300]),
    ];

    for (description, torn) in cases {
        let fixture = Fixture::new();
        write_log(fixture.config(), 10).await;
        let path = fixture.first_file();
        let mut bytes = std::fs::read(&path).unwrap();
        let intact_len = bytes.len();
        bytes.extend_from_slice(torn);
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            fixture.verify(false).is_err(),
            "{description}: torn tail detected"
        );

        let log = AuditLog::open_with_clock(fixture.config(), Arc::new(clock())).unwrap();
        assert_eq!(
            log.truncated_bytes(),
            Some(torn.len() as u64),
            "{description}"
        );
        log.append(event(10)).await.unwrap();
        log.close().await.unwrap();

        let written = std::fs::read(&path).unwrap();
        assert_eq!(
            &written[..intact_len],
            &bytes[..intact_len],
            "{description}"
        );
        let records = records(&path);
        let RecordBody::Recovery(recovery) = &records[11].body else {
            panic!("{description}: record 12 is {:?}", records[11]);
        };
        assert_eq!(recovery.truncated_bytes, torn.len() as u64, "{description}");
        assert_eq!(recovery.file, "audit-000001.jsonl", "{description}");
        let summary = fixture.verify(true).expect(description);
        assert_eq!(summary.recoveries, 1, "{description}");
        assert_eq!(summary.requests, 11, "{description}");
    }
}

#[tokio::test]
async fn reopening_an_intact_log_continues_the_chain() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 7).await;
    write_log(fixture.config(), 7).await;

    let summary = fixture.verify(true).unwrap();

    assert_eq!(summary.requests, 14);
    assert_eq!(summary.recoveries, 0);
}

#[tokio::test]
async fn damage_before_the_last_line_stops_open() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 10).await;
    let path = fixture.first_file();
    let mut lines = read_lines(&path);
    let last = lines.len() - 1;
    lines[last].push_str("garbage");
    lines.push("{\"torn".into());
    write_lines(&path, &lines);

    let error = AuditLog::open(fixture.config()).unwrap_err();

    assert!(error.to_string().contains("is damaged"), "{error}");
}

#[tokio::test]
async fn rotation_continues_the_chain_across_files() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.max_file_bytes = 4000.try_into().unwrap();
    write_log(config.clone(), 60).await;
    write_log(config, 20).await;

    let files = fixture.files();
    assert!(files.len() >= 4, "{} files", files.len());
    let summary = fixture.verify(true).expect("rotated log verifies");
    assert_eq!(summary.requests, 80);
    assert_eq!(summary.rotations as usize, files.len() - 1);

    let mut next_seq = 1;
    for (index, file) in files.iter().enumerate() {
        let records = records(file);
        assert_eq!(records[0].seq, next_seq, "{} continues seq", file.display());
        next_seq = records.last().unwrap().seq + 1;
        if index + 1 < files.len() {
            let RecordBody::Rotation(rotation) = &records.last().unwrap().body else {
                panic!("{} ends with a rotation record", file.display());
            };
            assert_eq!(
                rotation.next_file,
                files[index + 1].file_name().unwrap().to_str().unwrap()
            );
            let before = &records[records.len() - 2];
            assert!(
                matches!(before.body, RecordBody::Checkpoint(_)),
                "checkpoint before rotation"
            );
        }
    }

    let mut reversed = files.clone();
    reversed.swap(1, 2);
    let options = VerifyOptions {
        public_key: Some(fixture.verifier()),
        ..VerifyOptions::default()
    };
    let failure = portcullis::audit::verify_files(&reversed, &options).unwrap_err();
    assert_eq!(failure.line, 1);
    assert!(
        failure.problem.contains("chain order"),
        "{}",
        failure.problem
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_records_every_concurrent_append() {
    const TASKS: usize = 64;
    const PER_TASK: usize = 50;

    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.checkpoint_records = 500.try_into().unwrap();
    let log = Arc::new(AuditLog::open(config).unwrap());

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                log.append(event(task * PER_TASK + i))
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = log.stats();
    log.close().await.unwrap();

    let total = TASKS * PER_TASK;
    assert_eq!(stats.records, total as u64);
    assert!(
        stats.fsyncs < stats.records,
        "records share fsyncs: {} fsyncs for {} records",
        stats.fsyncs,
        stats.records
    );
    let summary = fixture.verify(true).expect("log verifies");
    assert_eq!(summary.requests, total as u64);

    let mut ids: Vec<String> = records(&fixture.first_file())
        .into_iter()
        .filter_map(|record| match record.body {
            RecordBody::Request(event) => Some(event.request_id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "every append has exactly one record");
}

#[tokio::test]
async fn checkpoint_follows_interval_without_sleeping() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.checkpoint_records = 1000.try_into().unwrap();
    config.checkpoint_interval = Duration::from_secs(60);
    let clock = clock();
    let log = AuditLog::open_with_clock(config, Arc::new(clock.clone())).unwrap();

    for i in 0..3 {
        log.append(event(i)).await.unwrap();
    }
    clock.advance(Duration::from_secs(61));
    log.append(event(3)).await.unwrap();

    let records = records(&fixture.first_file());
    let kinds: Vec<&str> = records.iter().map(|r| r.body.kind()).collect();
    assert_eq!(
        kinds,
        ["request", "request", "request", "request", "checkpoint"]
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn interval_durability_writes_before_fsync() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.durability = Durability::Interval(Duration::from_secs(3600));
    let log = AuditLog::open_with_clock(config, Arc::new(clock())).unwrap();

    for i in 0..5 {
        log.append(event(i)).await.unwrap();
    }
    assert_eq!(
        records(&fixture.first_file()).len(),
        5,
        "written to the file"
    );
    assert_eq!(log.stats().fsyncs, 0, "no fsync before the interval");
    log.close().await.unwrap();

    assert_eq!(log.stats().fsyncs, 1);
    fixture.verify(true).expect("log verifies");
}

#[tokio::test]
async fn append_after_close_fails() {
    let fixture = Fixture::new();
    let log = AuditLog::open(fixture.config()).unwrap();
    log.close().await.unwrap();

    let error = log.append(event(0)).await.unwrap_err();

    assert!(error.to_string().contains("stopped"), "{error}");
}

#[tokio::test]
async fn verify_command_reports_first_bad_line() {
    let fixture = Fixture::new();
    write_log(fixture.config(), 30).await;
    let path = fixture.first_file();
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["audit", "verify"])
            .arg(&path)
            .arg("--public-key")
            .arg(&fixture.public_key)
            .output()
            .expect("run portcullis")
    };

    let clean = run();
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{stdout}");
    assert!(stdout.contains("ok: 1 files, 33 records"), "{stdout}");

    let mut lines = read_lines(&path);
    lines.remove(14);
    write_lines(&path, &lines);
    let tampered = run();
    let stderr = String::from_utf8_lossy(&tampered.stderr);
    assert_eq!(tampered.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("audit-000001.jsonl:15: seq is 16, expected 15"),
        "{stderr}"
    );
}

#[tokio::test]
async fn reopen_after_rotation_record_creates_next_file() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.max_file_bytes = 4000.try_into().unwrap();
    write_log(config.clone(), 30).await;
    let files = fixture.files();
    let last = files.last().unwrap().clone();
    let before_last = &files[files.len() - 2];
    let rotation_seq = records(before_last).last().unwrap().seq;
    std::fs::remove_file(&last).unwrap();

    write_log(config, 5).await;

    assert_eq!(fixture.files().last().unwrap(), &last);
    assert_eq!(records(&last)[0].seq, rotation_seq + 1);
    fixture
        .verify(true)
        .expect("chain continues in the recreated file");
}

/// Returns the request ids in a file, in order.
fn request_ids(path: &Path) -> Vec<String> {
    records(path)
        .into_iter()
        .filter_map(|record| match record.body {
            RecordBody::Request(event) => Some(event.request_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn rotation_by_age_starts_next_file() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.rotate_every = Some(Duration::from_secs(3600));
    let clock = clock();
    let log = AuditLog::open_with_clock(config.clone(), Arc::new(clock.clone())).expect("open");

    for i in 0..3 {
        log.append(event(i)).await.expect("append");
    }
    clock.advance(Duration::from_secs(3599));
    log.append(event(3)).await.expect("append before the hour");
    clock.advance(Duration::from_secs(1));
    log.append(event(4)).await.expect("append at the hour");
    log.append(event(5)).await.expect("append after rotation");
    log.close().await.expect("close");

    let files = fixture.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        request_ids(&files[0]),
        ["req-000000", "req-000001", "req-000002", "req-000003"]
    );
    assert_eq!(request_ids(&files[1]), ["req-000004", "req-000005"]);
    let last = records(&files[0]).pop().unwrap();
    assert!(matches!(last.body, RecordBody::Rotation(_)), "{last:?}");
    fixture.verify(true).expect("rotated log verifies");
}

#[tokio::test]
async fn reopened_file_keeps_its_age() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.rotate_every = Some(Duration::from_secs(3600));
    let clock = clock();
    let log = AuditLog::open_with_clock(config.clone(), Arc::new(clock.clone())).expect("open");
    log.append(event(0)).await.expect("append");
    log.close().await.expect("close");

    // The age counts from the file's first record, not from the reopen.
    clock.advance(Duration::from_secs(2 * 3600));
    let log = AuditLog::open_with_clock(config, Arc::new(clock.clone())).expect("reopen");
    log.append(event(1)).await.expect("append");
    log.close().await.expect("close");

    let files = fixture.files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(request_ids(&files[0]), ["req-000000"]);
    assert_eq!(request_ids(&files[1]), ["req-000001"]);
    fixture.verify(true).expect("rotated log verifies");
}

#[tokio::test]
async fn idle_empty_file_is_not_rotated() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.rotate_every = Some(Duration::from_secs(60));
    let clock = clock();
    let log = AuditLog::open_with_clock(config, Arc::new(clock.clone())).expect("open");

    clock.advance(Duration::from_secs(600));
    log.append(event(0)).await.expect("append");
    log.close().await.expect("close");

    assert_eq!(fixture.files().len(), 1);
    fixture.verify(true).expect("log verifies");
}
