//! Audit files of a gateway under test: a fresh Ed25519 signing key, the
//! `audit` configuration section, the records the gateway wrote, and the
//! `portcullis audit verify` and `audit erase` commands run on them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use portcullis::audit::CheckpointSigner;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::Value;

/// A temporary directory with a signing key, its public key, the log
/// directory and the pseudonym key directory.
pub struct AuditFiles {
    dir: tempfile::TempDir,
    /// The private key (PKCS#8 PEM) the gateway signs checkpoints with.
    pub key: PathBuf,
    /// Its public key (SPKI PEM), for `audit verify --public-key`.
    pub public_key: PathBuf,
}

impl AuditFiles {
    pub fn new() -> AuditFiles {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = dir.path().join("audit-key.pem");
        let public_key = dir.path().join("audit-key.pub.pem");
        write_key_pair(&key, &public_key);
        AuditFiles {
            dir,
            key,
            public_key,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn pseudonyms_dir(&self) -> PathBuf {
        self.dir.path().join("pseudonyms")
    }

    /// Returns the `audit` section, with `extra` (lines such as
    /// `on_failure: allow`) indented into it.
    pub fn section(&self, extra: &str) -> String {
        let mut yaml = format!(
            "\naudit:\n  directory: \"{}\"\n  signing_key: \"{}\"\n  pseudonyms: {{ directory: \"{}\" }}\n",
            self.log_dir().display(),
            self.key.display(),
            self.pseudonyms_dir().display()
        );
        for line in extra.lines() {
            yaml.push_str("  ");
            yaml.push_str(line);
            yaml.push('\n');
        }
        yaml
    }

    /// Returns the log files in chain order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.log_dir())
            .expect("the audit log directory exists")
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        files
    }

    /// Returns every record of every file, in order, as JSON.
    pub fn records(&self) -> Vec<Value> {
        self.files()
            .iter()
            .flat_map(|file| {
                let text = std::fs::read_to_string(file).unwrap();
                text.lines()
                    .map(|line| {
                        serde_json::from_str(line)
                            .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()))
                    })
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    /// Returns the `request` records with this request id.
    pub fn records_for(&self, request_id: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["kind"] == "request" && r["request_id"] == request_id)
            .collect()
    }

    /// Runs `portcullis audit verify --public-key PUB [--sealed] FILES`.
    pub fn verify(&self, sealed: bool) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(["audit", "verify", "--public-key"]);
        command.arg(&self.public_key);
        if sealed {
            command.arg("--sealed");
        }
        command
            .args(self.files())
            .output()
            .expect("running portcullis audit verify")
    }

    /// Asserts that `audit verify` accepts the files.
    #[track_caller]
    pub fn assert_verifies(&self, sealed: bool) {
        let output = self.verify(sealed);
        assert!(
            output.status.success(),
            "audit verify failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs `portcullis audit erase --pseudonyms DIR --tenant T [--subject S]`.
    pub fn erase(&self, tenant: &str, subject: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(["audit", "erase", "--pseudonyms"]);
        command
            .arg(self.pseudonyms_dir())
            .args(["--tenant", tenant]);
        if let Some(subject) = subject {
            command.args(["--subject", subject]);
        }
        command.output().expect("running portcullis audit erase")
    }
}

/// Writes a new Ed25519 key as PKCS#8 PEM and its public key as SPKI PEM.
pub fn write_key_pair(private_path: &Path, public_path: &Path) {
    use base64::Engine as _;

    let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key generation");
    let der = document.as_ref();
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let body: String = text
        .as_bytes()
        .chunks(64)
        .map(|chunk| format!("{}\n", std::str::from_utf8(chunk).unwrap()))
        .collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n");
    std::fs::write(private_path, pem).unwrap();

    let signer = CheckpointSigner::from_pkcs8_der(der).expect("Ed25519 key");
    std::fs::write(public_path, signer.public_key_pem()).unwrap();
}
