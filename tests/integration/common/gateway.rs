//! The gateway under test: the `portcullis` binary built by cargo, started
//! from a configuration on free loopback ports, with its logs in the test's
//! log directory.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use http::Method;

use super::client::{RequestBuilder, Response};
use super::credentials::assert_no_credentials_in;
use super::logs::{next_log_name, test_log_dir};
use super::ports::free_port;

/// Placeholder for the listener address in a configuration given to
/// [`Gateway::start`].
pub const LISTEN_ADDRESS: &str = "${LISTEN_ADDRESS}";
/// Placeholder for the admin address in a configuration given to
/// [`Gateway::start`].
pub const ADMIN_ADDRESS: &str = "${ADMIN_ADDRESS}";

/// How often a start is tried when another process took a chosen port.
const START_ATTEMPTS: u32 = 5;
/// How long the gateway may take to serve `/healthz`. It fetches every
/// issuer's keys first, bounded by each issuer's fetch timeout (5s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Gateway::stop`] waits after SIGTERM before killing. It is
/// longer than the default shutdown grace of the test configuration.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Debug logs of the gateway itself, so the log checks also cover lines
/// that production logs at info would not write.
const LOG_FILTER: &str = "portcullis=debug,info";

pub struct Gateway {
    child: Option<Child>,
    /// The listener clients connect to.
    pub address: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin_address: SocketAddr,
    log_dir: PathBuf,
    log_files: Vec<PathBuf>,
    /// The configuration file the gateway runs with.
    pub config_path: PathBuf,
}

impl Gateway {
    /// Writes `config_yaml` to the test's log directory with
    /// [`LISTEN_ADDRESS`] and [`ADMIN_ADDRESS`] replaced by free loopback
    /// addresses, runs `portcullis serve -c FILE` and waits until the admin
    /// listener returns 200 for `/healthz`. Tries other ports when a chosen one was
    /// taken in the meantime.
    pub async fn start(config_yaml: &str) -> Gateway {
        assert!(
            config_yaml.contains(LISTEN_ADDRESS) && config_yaml.contains(ADMIN_ADDRESS),
            "the configuration must use the {LISTEN_ADDRESS} and {ADMIN_ADDRESS} placeholders"
        );
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(config_yaml).await {
                Ok(gateway) => return gateway,
                Err(StartFailure::PortTaken) if attempt < START_ATTEMPTS => continue,
                Err(StartFailure::PortTaken) => {
                    panic!("the gateway found its ports taken {START_ATTEMPTS} times")
                }
                Err(StartFailure::Failed(message)) => panic!("{message}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    async fn try_start(config_yaml: &str) -> Result<Gateway, StartFailure> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let admin_address = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let config = config_yaml
            .replace(LISTEN_ADDRESS, &address.to_string())
            .replace(ADMIN_ADDRESS, &admin_address.to_string());

        let log_dir = test_log_dir();
        let name = next_log_name(&log_dir, "gateway");
        let config_path = log_dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let stdout_path = log_dir.join(format!("{name}.stdout.log"));
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));

        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--threads", "2", "--log", LOG_FILTER, "-c"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the portcullis binary: {e}"));
        let mut gateway = Gateway {
            child: Some(child),
            address,
            admin_address,
            log_dir,
            log_files: vec![stdout_path, stderr_path],
            config_path,
        };

        gateway.wait_until_healthy().await?;
        Ok(gateway)
    }

    async fn wait_until_healthy(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                self.child = None;
                let logs = self.logs();
                if logs.contains("cannot listen") && logs.contains("in use") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Failed(format!(
                    "the gateway exited with {status} while starting; logs:\n{logs}"
                )));
            }
            let health = RequestBuilder::new(self.admin_address, Method::GET, "/healthz")
                .try_send()
                .await;
            if health.is_ok_and(|response| response.status() == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Failed(format!(
                    "the gateway did not answer /healthz within {START_TIMEOUT:?}; logs:\n{}",
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Replaces the configuration file with `config_yaml`, filling in this
    /// gateway's listener and admin addresses. The gateway notices the
    /// change by itself; [`Gateway::hangup`] makes it reload at once.
    pub fn rewrite_config(&self, config_yaml: &str) {
        let config = config_yaml
            .replace(LISTEN_ADDRESS, &self.address.to_string())
            .replace(ADMIN_ADDRESS, &self.admin_address.to_string());
        let staging = self.config_path.with_extension("yaml.new");
        std::fs::write(&staging, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", staging.display()));
        std::fs::rename(&staging, &self.config_path)
            .unwrap_or_else(|e| panic!("cannot replace {}: {e}", self.config_path.display()));
    }

    /// Sends SIGHUP, which makes the gateway reload its configuration.
    pub fn hangup(&self) {
        let pid = self.pid().expect("the gateway is running");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP {pid} failed");
    }

    /// Starts a GET request to the gateway's listener.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// Starts a request to the gateway's listener.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder::new(self.address, method, path)
    }

    /// `GET /readyz` on the admin listener.
    pub async fn readyz(&self) -> Response {
        RequestBuilder::new(self.admin_address, Method::GET, "/readyz")
            .send()
            .await
    }

    /// `GET /metrics` on the admin listener.
    pub async fn metrics(&self) -> Metrics {
        let response = RequestBuilder::new(self.admin_address, Method::GET, "/metrics")
            .send()
            .await;
        assert_eq!(response.status(), 200, "GET /metrics: {}", response.text());
        Metrics {
            text: response.text(),
        }
    }

    /// Everything the gateway wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.log_files
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Returns the gateway's process id, or `None` once it has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn terminate(&self) {
        let pid = self.pid().expect("the gateway is running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -TERM {pid} failed with {status}");
    }

    /// Waits for the process to exit, for at most `timeout`. Returns its
    /// status, or `None` when it is still running.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self
                .child
                .as_mut()
                .expect("the gateway was started and not yet reaped");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit; kills the process and panics
    /// when it has not exited within 20 seconds.
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        match self.wait_for_exit(STOP_TIMEOUT).await {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "the gateway did not exit within {STOP_TIMEOUT:?} of SIGTERM; logs:\n{}",
                    self.logs()
                );
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    /// Kills the process, then checks that the test's logs hold no
    /// credential (unless the test is already failing).
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            assert_no_credentials_in(&self.log_dir);
        }
    }
}

enum StartFailure {
    /// The listener or admin port was taken before the gateway bound it.
    PortTaken,
    Failed(String),
}

fn create(path: &PathBuf) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

/// The text of `/metrics`.
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    /// Sums the samples of `name` (such as `portcullis_denials_total`)
    /// whose labels include every given label and value. 0 when none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_sample)
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(label, value)| sample.labels.contains(&format!("{label}=\"{value}\"")))
            })
            .map(|sample| sample.value)
            .sum()
    }
}

struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

/// Reads `name{labels} value` or `name value`.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, "", rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Writes `config_yaml` to `path` for the `portcullis` commands (`key`,
/// `token`, `check`), which read the file but never listen: the listener
/// placeholders get fixed addresses nothing is bound to.
pub fn write_command_config(path: &std::path::Path, config_yaml: &str) {
    let yaml = config_yaml
        .replace(LISTEN_ADDRESS, "127.0.0.1:9")
        .replace(ADMIN_ADDRESS, "127.0.0.1:10");
    std::fs::write(path, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
