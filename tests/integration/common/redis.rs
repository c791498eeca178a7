//! Redis servers for the shared rate-limit tests: `redis-server` processes
//! on loopback ports, started by the test and killed when dropped, a
//! three-master Redis Cluster, and the YAML that points a gateway at them.
//!
//! Tests that never stop or pause Redis may use the server named by
//! `PORTCULLIS_TEST_REDIS` (see [`RedisServer::shared`]) with a key prefix
//! of their own from [`unique_key_prefix`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::credentials::record_credential;
use super::logs::{next_log_name, test_log_dir};
use super::ports::UnusedPort;
use super::process::wait_with_timeout;

/// Environment variable naming a Redis server that tests may share, such as
/// `redis://127.0.0.1:6390`. `scripts/test-all.sh` sets it.
pub const SHARED_REDIS_VARIABLE: &str = "PORTCULLIS_TEST_REDIS";

/// How long a started server may take to reply to PING.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start is tried when another process took the chosen port.
const START_ATTEMPTS: u32 = 5;
/// Bound on one `redis-cli` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new cluster may take to report `cluster_state:ok`.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A `redis-server` on `127.0.0.1`, started by this test, or the shared
/// server of [`SHARED_REDIS_VARIABLE`]. A started server is killed when the
/// value is dropped.
pub struct RedisServer {
    port: u16,
    /// `None` for the shared server, and after [`RedisServer::kill`].
    child: Option<Child>,
    /// Whether this test started the process, and so may stop, pause and
    /// flush it.
    owned: bool,
    extra_args: Vec<String>,
    /// The working directory of the server (`--dir`), where a cluster node
    /// keeps its `nodes.conf`.
    dir: Option<TempDir>,
    log_path: PathBuf,
    /// The ACL user and password `redis-cli` logs in with, when the server
    /// requires one.
    user: Option<(String, String)>,
}

impl RedisServer {
    /// Starts `redis-server` without persistence on an unused loopback port
    /// and waits until it replies to PING.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Returns the shared server when `PORTCULLIS_TEST_REDIS` names one,
    /// else starts a server of the test's own. Callers must use a key
    /// prefix from [`unique_key_prefix`], because other tests run against
    /// the same shared server at the same time.
    pub fn shared() -> RedisServer {
        let Ok(url) = std::env::var(SHARED_REDIS_VARIABLE) else {
            return Self::start();
        };
        let port = loopback_port_of(&url).unwrap_or_else(|| {
            panic!(
                "{SHARED_REDIS_VARIABLE} must be redis://127.0.0.1:<port>, found {url:?}; \
                 unset it to let each test start its own server"
            )
        });
        let server = RedisServer {
            port,
            child: None,
            owned: false,
            extra_args: Vec::new(),
            dir: None,
            log_path: PathBuf::new(),
            user: None,
        };
        if let Err(error) = ping(port) {
            panic!("the shared Redis server of {SHARED_REDIS_VARIABLE} ({url}) does not reply to PING: {error}");
        }
        server
    }

    /// Starts a server whose default user is disabled, so that every client
    /// must log in as the ACL user `username` with `password`. Records the
    /// password for the log checks.
    pub fn start_with_user(username: &str, password: &str) -> RedisServer {
        record_credential(password);
        let args = [
            "--user".to_string(),
            "default".to_string(),
            "off".to_string(),
            "--user".to_string(),
            username.to_string(),
            "on".to_string(),
            format!(">{password}"),
            "~*".to_string(),
            "&*".to_string(),
            "+@all".to_string(),
        ];
        let mut server = Self::start_with(&args);
        server.user = Some((username.to_string(), password.to_string()));
        server
    }

    /// Starts `redis-server` with `extra_args` after the default arguments.
    fn start_with(extra_args: &[String]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-redis-")
            .tempdir()
            .expect("creating a temporary directory for redis-server");
        let log_dir = test_log_dir();
        let log_path = log_dir.join(format!("{}.log", next_log_name(&log_dir, "redis")));
        let mut server = RedisServer {
            port: 0,
            child: None,
            owned: true,
            extra_args: extra_args.to_vec(),
            dir: Some(dir),
            log_path,
            user: None,
        };

        for attempt in 1..=START_ATTEMPTS {
            server.port = UnusedPort::new().release();
            match server.launch() {
                Ok(()) => return server,
                Err(message) if message.contains("in use") && attempt < START_ATTEMPTS => continue,
                Err(message) => panic!("{message}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Runs the process on `self.port` and waits until it replies to PING.
    fn launch(&mut self) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let dir = self.dir.as_ref().expect("a started server has a directory");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().expect("duplicating the log file handle"),
            ))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server (install it with `apt-get install -y redis-server`): {e}")
            });
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("the server was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                return Err(format!(
                    "redis-server on port {} exited with {status} while starting; log:\n{log}",
                    self.port
                ));
            }
            let last_error = match ping(self.port) {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?} ({last_error})",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`, as written in a gateway configuration.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Returns whether this test started the server (false for the shared
    /// server).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// Stops the process with SIGSTOP: connections stay open and every
    /// command waits unanswered, as with a hung server.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused process with SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the process with SIGKILL and waits for it. The port then
    /// refuses connections. Every key is lost, because nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty, after
    /// [`RedisServer::kill`] (which it calls first if needed).
    pub fn restart(&mut self) {
        self.assert_owned("restart");
        self.kill();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.launch() {
                Ok(()) => return,
                Err(message) => last_error = message,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "restarting redis-server on port {}: {last_error}",
            self.port
        );
    }

    /// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` and returns its
    /// stdout. Panics when it fails or takes longer than 30 seconds.
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &port]);
        if let Some((username, password)) = &self.user {
            command
                .args(["--user", username, "--no-auth-warning"])
                .env("REDISCLI_AUTH", password);
        }
        command.args(args);
        run_cli(command, &format!("redis-cli -p {port} {}", args.join(" ")))
    }

    /// Deletes every key (FLUSHALL). Only for a server this test started.
    pub fn flush(&self) {
        self.assert_owned("flush");
        let reply = self.cli(&["FLUSHALL"]);
        assert_eq!(reply.trim(), "OK", "FLUSHALL on port {}", self.port);
    }

    /// Returns every key matching the glob `pattern` (`SCAN`), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let output = self.cli(&["--scan", "--pattern", pattern]);
        let keys: BTreeSet<String> = output
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect();
        keys.into_iter().collect()
    }

    /// Returns the members of the sorted set `key` (`ZRANGE key 0 -1`).
    pub fn sorted_set_members(&self, key: &str) -> Vec<String> {
        self.cli(&["ZRANGE", key, "0", "-1"])
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Returns how often each command ran since the server started, from
    /// `INFO commandstats`, by lowercase command name (`evalsha`,
    /// `client|setinfo`).
    pub fn command_calls(&self) -> BTreeMap<String, u64> {
        parse_command_stats(&self.cli(&["INFO", "commandstats"]))
    }

    fn signal(&self, signal: &str) {
        self.assert_owned("signal");
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill {signal} {pid} failed with {status}");
    }

    fn assert_owned(&self, action: &str) {
        assert!(
            self.owned,
            "cannot {action} the shared Redis server of {SHARED_REDIS_VARIABLE}: \
             start one with RedisServer::start() instead"
        );
    }
}

impl Drop for RedisServer {
    /// Kills the process, also when it is paused (SIGKILL ends a stopped
    /// process too).
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters without replicas, each a
/// [`RedisServer`] on its own loopback port, covering all 16384 slots.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// Masters in a [`RedisCluster`]. Three is the fewest that `redis-cli
/// --cluster create` accepts.
const CLUSTER_MASTERS: usize = 3;

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli
    /// --cluster create`, and waits until every node reports
    /// `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let mut used_ports = BTreeSet::new();
        let mut nodes = Vec::new();
        for _ in 0..CLUSTER_MASTERS {
            // The cluster bus port is port + 10000 by default, which can fall
            // in the ephemeral range. An unused port is chosen for it instead.
            let bus_port = unused_port_outside(&used_ports);
            used_ports.insert(bus_port);
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--cluster-port",
                &bus_port.to_string(),
            ]
            .map(str::to_string);
            let node = RedisServer::start_with(&args);
            used_ports.insert(node.port);
            nodes.push(node);
        }

        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let mut command = Command::new("redis-cli");
        command
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_cli(command, "redis-cli --cluster create");

        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            let states: Vec<String> = self
                .nodes
                .iter()
                .map(|node| node.cli(&["CLUSTER", "INFO"]))
                .collect();
            if states.iter().all(|info| info.contains("cluster_state:ok")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {CLUSTER_READY_TIMEOUT:?}: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:<port>` of every master, for `rate_limit_store.cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Returns every key matching `pattern` on any master, sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let keys: BTreeSet<String> = self
            .nodes
            .iter()
            .flat_map(|node| node.keys(pattern))
            .collect();
        keys.into_iter().collect()
    }

    /// Runs `redis-cli -c` (following redirections) against the first
    /// master and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut with_redirects = vec!["-c"];
        with_redirects.extend_from_slice(args);
        self.nodes[0].cli(&with_redirects)
    }
}

/// Returns a fresh key prefix, unique in this test binary and process, so
/// that tests sharing one Redis server never count against each other's
/// keys. It contains only lowercase letters and digits.
pub fn unique_key_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("e2e{}n{serial}", std::process::id())
}

/// The `rate_limit_store` section of a gateway configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `url: ...` for one server, else `cluster: [...]`.
    pub urls: Vec<String>,
    pub cluster: bool,
    pub key_prefix: String,
    pub timeout: Option<String>,
    pub instances: Option<u32>,
    /// `circuit` as a YAML flow mapping, such as `{ failures: 2, open_for: 200ms }`.
    pub circuit: Option<String>,
    pub username: Option<String>,
    /// A file that contains the password, for `password: { file: ... }`.
    pub password_file: Option<PathBuf>,
}

impl StoreConfig {
    /// Returns a store on `server` with a fresh key prefix.
    pub fn server(server: &RedisServer) -> StoreConfig {
        StoreConfig {
            urls: vec![server.url()],
            cluster: false,
            key_prefix: unique_key_prefix(),
            timeout: None,
            instances: None,
            circuit: None,
            username: None,
            password_file: None,
        }
    }

    /// Returns a store on every master of `cluster` with a fresh key prefix.
    pub fn cluster(cluster: &RedisCluster) -> StoreConfig {
        StoreConfig {
            urls: cluster.urls(),
            cluster: true,
            ..StoreConfig::server(&cluster.nodes[0])
        }
    }

    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = prefix.to_string();
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = Some(timeout.to_string());
        self
    }

    pub fn instances(mut self, instances: u32) -> Self {
        self.instances = Some(instances);
        self
    }

    pub fn circuit(mut self, circuit: &str) -> Self {
        self.circuit = Some(circuit.to_string());
        self
    }

    /// Sets the ACL user and the file that contains its password.
    pub fn login(mut self, username: &str, password_file: &std::path::Path) -> Self {
        self.username = Some(username.to_string());
        self.password_file = Some(password_file.to_path_buf());
        self
    }

    /// Returns the `rate_limit_store:` section, ending with a blank line.
    pub fn yaml(&self) -> String {
        let mut yaml = String::from("rate_limit_store:\n  type: redis\n");
        if self.cluster {
            yaml.push_str(&format!("  cluster: [{}]\n", self.urls.join(", ")));
        } else {
            yaml.push_str(&format!("  url: {}\n", self.urls[0]));
        }
        yaml.push_str(&format!("  key_prefix: {}\n", self.key_prefix));
        if let Some(timeout) = &self.timeout {
            yaml.push_str(&format!("  timeout: {timeout}\n"));
        }
        if let Some(instances) = self.instances {
            yaml.push_str(&format!("  instances: {instances}\n"));
        }
        if let Some(circuit) = &self.circuit {
            yaml.push_str(&format!("  circuit: {circuit}\n"));
        }
        if let Some(username) = &self.username {
            yaml.push_str(&format!("  username: {username}\n"));
        }
        if let Some(path) = &self.password_file {
            yaml.push_str(&format!("  password: {{ file: \"{}\" }}\n", path.display()));
        }
        yaml.push('\n');
        yaml
    }
}

/// Adds `store` and the rate-limit `policies` to the YAML of a
/// [`super::ConfigBuilder`]. Each policy is a `name: { ... }` line
/// indented by two spaces, placed under `rate_limits:` before the
/// builder's `per-subject` policy.
pub fn with_store(config_yaml: &str, store: &StoreConfig, policies: &[&str]) -> String {
    const SECTION: &str = "rate_limits:\n";
    let position = config_yaml
        .find(SECTION)
        .expect("the builder's YAML has a rate_limits section");
    let mut yaml = String::with_capacity(config_yaml.len() + 512);
    yaml.push_str(&store.yaml());
    yaml.push_str(&config_yaml[..position + SECTION.len()]);
    for policy in policies {
        yaml.push_str("  ");
        yaml.push_str(policy);
        yaml.push('\n');
    }
    yaml.push_str(&config_yaml[position + SECTION.len()..]);
    yaml
}

/// Returns the port of `redis://127.0.0.1:<port>` (optionally followed by
/// `/<db>`), or `None` for any other URL.
fn loopback_port_of(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("redis://127.0.0.1:")?;
    let port = rest.split('/').next()?;
    port.parse().ok()
}

/// Returns an unused port that is not in `used_ports`.
fn unused_port_outside(used_ports: &BTreeSet<u16>) -> u16 {
    for _ in 0..20 {
        let port = UnusedPort::new().release();
        if !used_ports.contains(&port) {
            return port;
        }
    }
    panic!("UnusedPort returned only ports already in use: {used_ports:?}");
}

/// Sends `PING` over a fresh connection and expects `+PONG`, or the
/// `-NOAUTH` error of a server that requires a login.
fn ping(port: u16) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_millis(500);
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("setting socket timeouts: {e}"))?;
    stream
        .write_all(b"PING\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = [0u8; 64];
    let read = stream.read(&mut reply).map_err(|e| format!("read: {e}"))?;
    let reply = String::from_utf8_lossy(&reply[..read]);
    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
        Ok(())
    } else {
        Err(format!("expected +PONG, found {:?}", reply.trim_end()))
    }
}

/// Runs a `redis-cli` command with a deadline, and returns its stdout.
/// stdout is read on a helper thread, so a large reply cannot fill the
/// pipe and stall the wait.
fn run_cli(mut command: Command, description: &str) -> String {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout_reader = std::thread::spawn(move || read_all(stdout));
    let stderr_reader = std::thread::spawn(move || read_all(stderr));

    let Some(status) = wait_with_timeout(&mut child, CLI_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{description} did not finish within {CLI_TIMEOUT:?}");
    };
    let output = Output {
        status,
        stdout: stdout_reader.join().unwrap_or_default(),
        stderr: stderr_reader.join().unwrap_or_default(),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{description} failed with {}: {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = reader.read_to_end(&mut bytes);
    bytes
}

/// Reads `cmdstat_<name>:calls=<n>,...` lines.
fn parse_command_stats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| line.trim().strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}
