//! Child processes of a test: the Node fixtures and their READY protocol,
//! and bounded waits for exit.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a fixture may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fixture may take to exit after its stdin closes.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/fixtures` in the source tree.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A running Node fixture. It exits when its stdin closes, so the pipe is
/// held for its lifetime; dropping the value kills it.
pub struct Fixture {
    child: Child,
    stdin: Option<ChildStdin>,
    pub stderr_path: PathBuf,
}

/// Why a fixture did not start.
pub struct StartError {
    pub message: String,
    pub stderr: String,
}

impl Fixture {
    /// Runs `node <script> <args>` from `tests/fixtures` with stderr written
    /// to `stderr_path`, and returns it with the fields of its READY line
    /// (the words after `READY`).
    pub fn start(
        script: &str,
        args: &[String],
        stderr_path: PathBuf,
    ) -> Result<(Fixture, Vec<String>), StartError> {
        assert_node_modules_installed();
        let stderr = File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(fixtures_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node {script} (is Node.js 20+ installed?): {e}")
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut fixture = Fixture {
            child,
            stdin,
            stderr_path,
        };

        match read_ready_line(stdout) {
            Ok(fields) => Ok((fixture, fields)),
            Err(message) => {
                fixture.kill();
                let stderr = std::fs::read_to_string(&fixture.stderr_path).unwrap_or_default();
                Err(StartError {
                    message: format!("node {script}: {message}"),
                    stderr,
                })
            }
        }
    }

    /// Closes stdin, which makes the fixture exit, and waits for it. Kills
    /// it when it has not exited in time.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        if wait_with_timeout(&mut self.child, STOP_TIMEOUT).is_none() {
            self.kill();
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Panics with the install command when the fixtures' npm dependencies are
/// missing, which would otherwise surface as a Node import error.
pub fn assert_node_modules_installed() {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        fixtures_dir(),
        manifest_dir.join("examples").join("users-api"),
    ] {
        assert!(
            dir.join("node_modules").is_dir(),
            "{} has no node_modules: run `npm ci` in tests/fixtures and in examples/users-api",
            dir.display()
        );
    }
}

/// Reads the first stdout line on a helper thread, so that the wait is
/// bounded. The thread keeps draining stdout until the process exits.
fn read_ready_line(stdout: std::process::ChildStdout) -> Result<Vec<String>, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = sender.send(first);
        for _ in lines {}
    });

    let line = match receiver.recv_timeout(READY_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        Ok(Some(Err(error))) => return Err(format!("reading stdout failed: {error}")),
        Ok(None) => return Err("exited before printing READY".into()),
        Err(_) => return Err(format!("printed no READY line within {READY_TIMEOUT:?}")),
    };
    let mut words = line.split(' ').map(str::to_string);
    match words.next().as_deref() {
        Some("READY") => Ok(words.collect()),
        _ => Err(format!("expected a READY line first, found {line:?}")),
    }
}

/// Waits for `child` to exit, polling, for at most `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
