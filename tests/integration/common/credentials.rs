//! The record of every credential the tests create or send, and the check
//! that no log contains one.

use std::path::Path;
use std::sync::Mutex;

use regex::Regex;

use super::logs::read_all_files;

/// Credentials shorter than this are not recorded: they are too short to
/// search for without false matches (such as a deliberately malformed
/// `Bearer x`).
const MIN_RECORDED_LENGTH: usize = 12;

static CREDENTIALS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records a token, secret or `Authorization` value so that log checks look
/// for it.
pub fn record_credential(value: &str) {
    if value.len() < MIN_RECORDED_LENGTH {
        return;
    }
    let mut credentials = CREDENTIALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !credentials.iter().any(|known| known == value) {
        credentials.push(value.to_string());
    }
}

/// Returns every credential recorded so far by this test binary.
pub fn recorded_credentials() -> Vec<String> {
    CREDENTIALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Panics when a file under `dir` contains a recorded credential or any
/// JWT-shaped text. The message names the file and the credential's
/// position, never the credential itself.
pub fn assert_no_credentials_in(dir: &Path) {
    let credentials = recorded_credentials();
    let jwt_shape = Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")
        .expect("the JWT pattern is valid");

    for (path, text) in read_all_files(dir) {
        for (index, credential) in credentials.iter().enumerate() {
            assert!(
                !text.contains(credential.as_str()),
                "{} contains recorded credential #{index} ({} characters)",
                path.display(),
                credential.len()
            );
        }
        if let Some(found) = jwt_shape.find(&text) {
            panic!(
                "{} contains a JWT-shaped value at byte {}",
                path.display(),
                found.start()
            );
        }
    }
}
