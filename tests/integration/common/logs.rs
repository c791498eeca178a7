//! Per-test log directories under `target/e2e-logs`, kept after the run so
//! the logs can be read and scanned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Per directory, how many logs of each process kind were opened in it.
/// A directory is emptied the first time this process uses it, so it only
/// contains logs of the latest run.
static OPENED: Mutex<Option<HashMap<PathBuf, HashMap<String, u32>>>> = Mutex::new(None);

/// `target/e2e-logs`, next to the target directory's `tmp`.
pub fn e2e_logs_root() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("e2e-logs")
}

/// Returns the log directory of this test binary:
/// `target/e2e-logs/<test binary>/`.
pub fn suite_log_dir() -> PathBuf {
    e2e_logs_root().join(env!("CARGO_CRATE_NAME"))
}

/// Returns the log directory of the running test:
/// `target/e2e-logs/<test binary>/<test name>/`.
///
/// The test name is the name libtest gives the test's thread, also with
/// `--test-threads=1` (checked with Rust 1.95).
/// NOTE: a harness that runs tests on unnamed threads would put them all in
/// `unnamed/`, and their logs would then mix.
pub fn test_log_dir() -> PathBuf {
    let thread = std::thread::current();
    let test_name = thread.name().unwrap_or("unnamed").replace("::", ".");
    suite_log_dir().join(test_name)
}

/// Returns a fresh base name such as `gateway-2` for a process of `kind`
/// in `dir`, creating (and on first use emptying) the directory.
pub fn next_log_name(dir: &Path, kind: &str) -> String {
    let mut opened = OPENED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let opened = opened.get_or_insert_with(HashMap::new);

    if !opened.contains_key(dir) {
        if dir.exists() {
            std::fs::remove_dir_all(dir).unwrap_or_else(|e| {
                panic!("cannot empty the log directory {}: {e}", dir.display())
            });
        }
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create the log directory {}: {e}", dir.display()));
    }

    let counters = opened.entry(dir.to_path_buf()).or_default();
    let counter = counters.entry(kind.to_string()).or_insert(0);
    *counter += 1;
    format!("{kind}-{counter}")
}

/// Reads every file under `dir`, recursively, as text (lossy UTF-8).
pub fn read_all_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(read_all_files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    files
}
