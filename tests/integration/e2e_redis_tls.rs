//! The shared rate-limit store over TLS with a password: a real
//! `redis-server` on loopback with `--tls-port` and `--requirepass`, a
//! private CA made by the `openssl` CLI, and the gateway counting through
//! it. A wrong password must leave the route fail closed, never unlimited.
//!
//! Every test is skipped, with a message, when `openssl` or `redis-server`
//! is not installed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{record_credential, Gateway, UnusedPort, Upstream, ADMIN_ADDRESS, LISTEN_ADDRESS};
use tempfile::TempDir;

const PASSWORD: &str = "store-password-4b1e9c0a77";

/// A CA and a server certificate it signed, for 127.0.0.1.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn generate() -> Option<Pki> {
        for tool in ["openssl", "redis-server", "redis-cli"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            if !found {
                println!("skipped: {tool} is not installed");
                return None;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-redis-tls-")
            .tempdir()
            .expect("creating a temporary directory");
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Portcullis test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        pki.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            pki.path("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writing the extensions file");
        pki.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("running openssl");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `redis-server` with TLS only (no plain port) and a password; killed on
/// drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    async fn start(pki: &Pki) -> TlsRedis {
        let port = UnusedPort::new().release();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(pki.path("server.pem"))
            .arg("--tls-key-file")
            .arg(pki.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(pki.path("ca.pem"))
            .args(["--requirepass", PASSWORD])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let redis = TlsRedis { child, port };
        let answers = || redis.cli(pki, &["ping"]).trim() == "PONG";
        common::eventually(
            "redis-server answers over TLS",
            Duration::from_secs(10),
            || {
                let up = answers();
                async move { up }
            },
        )
        .await;
        redis
    }

    fn cli(&self, pki: &Pki, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--tls"])
            .arg("--cacert")
            .arg(pki.path("ca.pem"))
            .args(["--no-auth-warning", "-a", PASSWORD])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(upstream: &Upstream, port: u16, ca: &Path, password_file: &Path) -> String {
    format!(
        "\
server:
  address: {LISTEN_ADDRESS}
admin:
  address: {ADMIN_ADDRESS}
upstreams:
  api: {{ url: {upstream} }}
rate_limit_store:
  type: redis
  url: rediss://127.0.0.1:{port}
  ca: {ca}
  password: {{ file: {password_file} }}
  timeout: 200ms
rate_limits:
  per-ip: {{ requests: 2, per: 1m, key: [ip] }}
routes:
  - id: api
    match: {{ path: /users, methods: [GET] }}
    upstream: api
    authentication: none
    rate_limits: per-ip
    on_store_failure: deny
",
        upstream = upstream.url(),
        ca = ca.display(),
        password_file = password_file.display(),
    )
}

#[tokio::test]
async fn limits_are_counted_in_redis_over_tls_with_a_password() {
    let Some(pki) = Pki::generate() else {
        return;
    };
    record_credential(PASSWORD);
    let redis = TlsRedis::start(&pki).await;
    let upstream = Upstream::start();
    let password_file = pki.path("password");
    std::fs::write(&password_file, PASSWORD).expect("writing the password file");
    let gateway = Gateway::start(&config(
        &upstream,
        redis.port,
        &pki.path("ca.pem"),
        &password_file,
    ))
    .await;

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(gateway.get("/users").send().await.status());
    }

    assert_eq!(statuses, [200, 200, 429]);
    let keys = redis.cli(&pki, &["--scan", "--pattern", "portcullis:gcra:*"]);
    assert_eq!(keys.lines().count(), 1, "keys in Redis: {keys:?}");
    assert_eq!(upstream.count().await, 2);
}

#[tokio::test]
async fn wrong_password_fails_closed() {
    let Some(pki) = Pki::generate() else {
        return;
    };
    record_credential(PASSWORD);
    let redis = TlsRedis::start(&pki).await;
    let upstream = Upstream::start();
    let password_file = pki.path("wrong-password");
    std::fs::write(&password_file, "not-the-store-password-91").expect("writing the file");
    let gateway = Gateway::start(&config(
        &upstream,
        redis.port,
        &pki.path("ca.pem"),
        &password_file,
    ))
    .await;

    let response = gateway.get("/users").send().await;

    assert_eq!(response.status(), 503);
    assert_eq!(
        response.reason().as_deref(),
        Some("rate_limit_store_unavailable")
    );
    assert!(response.header("retry-after").is_some());
    assert_eq!(
        upstream.count().await,
        0,
        "the request reached the upstream"
    );
    let keys = redis.cli(&pki, &["--scan"]);
    assert_eq!(
        keys.trim(),
        "",
        "nothing may be written without the password"
    );
}
