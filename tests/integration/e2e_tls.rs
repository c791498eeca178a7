//! End-to-end TLS on the listener: the gateway binary with `server.tls`, a
//! throwaway self-signed certificate made by the `openssl` CLI for each
//! test, and clients that speak TLS through rustls or `openssl s_client`.
//!
//! Checked: HTTP/1.1 and HTTP/2 (ALPN `h2`) over TLS with HSTS, refusal of
//! TLS 1.0 and 1.1, `min_version: "1.3"`, plain HTTP sent to the TLS port,
//! and a client that never finishes its handshake.
//!
//! Every test is skipped, with a message, when `openssl` is not installed.

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{config_for, eventually, Gateway, Provider, ProviderOptions, Upstream};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The certificate's only DNS name, which clients verify.
const SERVER_NAME: &str = "localhost";
/// `response_headers.hsts` by default.
const HSTS: &str = "max-age=31536000";
/// Bound on one TLS exchange, from connect to the last body byte.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one `openssl` run.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(15);
/// `server.timeouts.request_header` in the tests that measure it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Slack over [`HEADER_TIMEOUT`] for a loaded machine.
const TIMEOUT_SLACK: Duration = Duration::from_millis(2500);

/// A self-signed P-256 certificate for `localhost` and 127.0.0.1, with its
/// key, in a temporary directory deleted on drop.
struct Certificate {
    _dir: TempDir,
    certificate: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certificate {
    /// Runs `openssl req -x509`. Returns `None`, after printing why, when
    /// the `openssl` CLI is not installed.
    fn generate() -> Option<Certificate> {
        if Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            println!("skipped: the openssl CLI is not installed, and the TLS tests need it to make a certificate");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-tls-")
            .tempdir()
            .expect("creating a temporary directory");
        let certificate = dir.path().join("certificate.pem");
        let key = dir.path().join("key.pem");
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
            .args([
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl req: {e}"));
        assert!(
            output.status.success(),
            "openssl req failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );

        let pem = std::fs::read(&certificate)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", certificate.display()));
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .expect("openssl wrote a CERTIFICATE block")
            .expect("the certificate PEM is valid");
        Some(Certificate {
            _dir: dir,
            certificate,
            key,
            der,
        })
    }
}

/// The gateway on TLS in front of the upstream, and a token it accepts.
struct Setup {
    upstream: Upstream,
    _provider: Provider,
    gateway: Gateway,
    certificate: Certificate,
    token: String,
}

/// Starts a TLS gateway with `min_version` (default 1.2) and a 1 s
/// `request_header` timeout, or returns `None` without openssl.
async fn start(min_version: Option<&str>) -> Option<Setup> {
    let certificate = Certificate::generate()?;
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let config = config_for(&upstream, &[&provider])
        .tls(&certificate.certificate, &certificate.key, min_version)
        .request_header_timeout(&format!("{}ms", HEADER_TIMEOUT.as_millis()));
    let gateway = Gateway::start(&config.yaml()).await;
    let token = provider.token("reader", "read:users").await;
    Some(Setup {
        upstream,
        _provider: provider,
        gateway,
        certificate,
        token,
    })
}

/// Builds a client configuration that trusts exactly `certificate` and
/// offers `versions` and the ALPN protocols `alpn`.
fn client_config(
    certificate: &Certificate,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(certificate.der.clone())
        .expect("the self-signed certificate is a usable trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}

/// Connects and completes the TLS handshake, or returns why it failed.
async fn handshake(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, String> {
    let connect = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "the TLS handshake did not finish within {EXCHANGE_TIMEOUT:?}"
            ))
        })
}

/// A whole response over TLS.
struct TlsResponse {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl TlsResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Sends `GET path` on an established TLS stream, with HTTP/2 when ALPN
/// chose `h2` and HTTP/1.1 otherwise, and reads the whole response.
async fn get(
    stream: TlsStream<TcpStream>,
    address: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> TlsResponse {
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let uri = if http2 {
        format!("https://{SERVER_NAME}:{}{path}", address.port())
    } else {
        path.to_string()
    };
    let mut request = Request::builder().method(Method::GET).uri(uri);
    if !http2 {
        request = request.header("host", format!("{SERVER_NAME}:{}", address.port()));
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("the request parts are valid");

    let exchange = async {
        let io = TokioIo::new(stream);
        let response = if http2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("HTTP/2 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        .unwrap_or_else(|e| panic!("GET {path} over TLS failed: {e}"));
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading the body of GET {path}: {e}"))
            .to_bytes();
        TlsResponse {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} over TLS took longer than {EXCHANGE_TIMEOUT:?}"))
}

#[tokio::test]
async fn https_http1_served_with_hsts() {
    let Some(setup) = start(None).await else {
        return;
    };
    let address = setup.gateway.address;
    let config = client_config(&setup.certificate, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);

    let stream = handshake(address, config.clone())
        .await
        .expect("a TLS 1.3 client with ALPN http/1.1 is accepted");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3),
        "negotiated version"
    );
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "negotiated ALPN"
    );
    let response = get(stream, address, "/users", Some(&setup.token)).await;

    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.version, Version::HTTP_11);
    assert_eq!(response.header("strict-transport-security"), Some(HSTS));
    let requests = setup.upstream.requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].raw_values("x-forwarded-proto"),
        ["https"],
        "the upstream learns the client used TLS"
    );

    // The gateway's own rejections carry HSTS too.
    let stream = handshake(address, config)
        .await
        .expect("a second TLS connection");
    let rejected = get(stream, address, "/users", None).await;
    assert_eq!(rejected.status, 401);
    assert_eq!(
        rejected.header("strict-transport-security"),
        Some(HSTS),
        "HSTS on a 401"
    );
}

#[tokio::test]
async fn alpn_h2_negotiates_http2() {
    let Some(setup) = start(None).await else {
        return;
    };
    let address = setup.gateway.address;
    let config = client_config(
        &setup.certificate,
        rustls::DEFAULT_VERSIONS,
        &[b"h2", b"http/1.1"],
    );

    let stream = handshake(address, config)
        .await
        .expect("a client offering h2 is accepted");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the server picks h2 when offered first"
    );
    let response = get(stream, address, "/users", Some(&setup.token)).await;

    assert_eq!(response.version, Version::HTTP_2);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("strict-transport-security"), Some(HSTS));
    let requests = setup.upstream.requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url, "/users");
    assert_eq!(requests[0].raw_values("x-forwarded-proto"), ["https"]);
}

#[tokio::test]
async fn legacy_tls_versions_rejected() {
    let Some(setup) = start(None).await else {
        return;
    };
    let address = setup.gateway.address;

    let control = s_client(address, "-tls1_2").await;
    assert!(
        control.established,
        "the openssl client failed even with TLS 1.2, so its rejections below prove nothing:\n{}",
        control.output
    );

    // (description, s_client flag)
    let cases = [("TLS 1.1", "-tls1_1"), ("TLS 1.0", "-tls1")];
    for (description, flag) in cases {
        let failures_before = handshake_failures(&setup.gateway);
        let run = s_client(address, flag).await;
        assert!(
            !run.established,
            "{description} was accepted:\n{}",
            run.output
        );
        assert!(
            !run.success,
            "openssl s_client {flag} exited successfully:\n{}",
            run.output
        );
        // The gateway logged the failed handshake, so the rejection came from
        // the server and not from the local OpenSSL configuration.
        eventually(
            &format!("the gateway logs the failed {description} handshake"),
            Duration::from_secs(5),
            || async { handshake_failures(&setup.gateway) > failures_before },
        )
        .await;
    }
    assert_eq!(setup.upstream.count().await, 0);
}

#[tokio::test]
async fn min_version_13_rejects_tls12() {
    let Some(setup) = start(Some("1.3")).await else {
        return;
    };
    let address = setup.gateway.address;

    let tls12_only = client_config(
        &setup.certificate,
        &[&rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let tls12_handshake = handshake(address, tls12_only).await;
    assert!(
        tls12_handshake.is_err(),
        "a TLS 1.2-only client completed a handshake"
    );
    let openssl = s_client(address, "-tls1_2").await;
    assert!(
        !openssl.established,
        "openssl with TLS 1.2 was accepted:\n{}",
        openssl.output
    );

    let tls13_only = client_config(
        &setup.certificate,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    );
    let stream = handshake(address, tls13_only)
        .await
        .expect("a TLS 1.3 client is accepted");
    let response = get(stream, address, "/users", Some(&setup.token)).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(setup.upstream.count().await, 1);
}

#[tokio::test]
async fn plain_http_to_tls_port_closed() {
    let Some(setup) = start(None).await else {
        return;
    };
    let address = setup.gateway.address;
    let request = format!(
        "GET /users HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\r\n",
        setup.token
    );

    let started = Instant::now();
    let (received, closed) =
        read_until_closed(address, request.as_bytes(), HEADER_TIMEOUT + TIMEOUT_SLACK).await;

    assert!(
        closed,
        "the connection stayed open for {:?}",
        started.elapsed()
    );
    assert!(
        !received.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP response: {}",
        String::from_utf8_lossy(&received)
    );
    assert_eq!(
        setup.upstream.count().await,
        0,
        "plain HTTP reached the upstream"
    );

    // The gateway still serves TLS clients.
    let config = client_config(&setup.certificate, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let stream = handshake(address, config)
        .await
        .expect("a TLS client after the plain one");
    let response = get(stream, address, "/users", Some(&setup.token)).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

#[tokio::test]
async fn stalled_handshake_closed_after_header_timeout() {
    let Some(setup) = start(None).await else {
        return;
    };
    let address = setup.gateway.address;

    // (description, bytes sent before stalling)
    let cases: [(&str, &[u8]); 2] = [
        ("nothing sent after connecting", b""),
        ("half a TLS record header", &[0x16, 0x03, 0x01]),
    ];
    for (description, sent) in cases {
        let started = Instant::now();
        let (received, closed) =
            read_until_closed(address, sent, HEADER_TIMEOUT + TIMEOUT_SLACK).await;
        let elapsed = started.elapsed();

        assert!(closed, "{description}: still open after {elapsed:?}");
        assert!(
            received.is_empty(),
            "{description}: the server sent {} bytes",
            received.len()
        );
        assert!(
            elapsed >= HEADER_TIMEOUT - Duration::from_millis(100),
            "{description}: closed after {elapsed:?}, before the timeout"
        );
    }

    let config = client_config(&setup.certificate, rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
    let stream = handshake(address, config)
        .await
        .expect("a TLS client after the stalled ones");
    let response = get(stream, address, "/users", Some(&setup.token)).await;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// Writes `bytes` (possibly none), then reads until the server closes the
/// connection or `limit` passes. Returns what was read and whether it closed.
async fn read_until_closed(address: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut stream = TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    if !bytes.is_empty() {
        stream
            .write_all(bytes)
            .await
            .unwrap_or_else(|e| panic!("writing to {address}: {e}"));
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (received, true),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => return (received, false),
        }
    }
}

/// Counts the gateway's debug lines about failed TLS handshakes.
fn handshake_failures(gateway: &Gateway) -> usize {
    gateway.logs().matches("TLS handshake failed").count()
}

/// What one `openssl s_client` run showed.
struct SClientRun {
    success: bool,
    /// The handshake completed (`-brief` prints `CONNECTION ESTABLISHED`).
    established: bool,
    output: String,
}

/// Runs `openssl s_client` with a version flag against `address`, with
/// stdin closed so it leaves after the handshake, killed after
/// [`OPENSSL_TIMEOUT`]. `@SECLEVEL=0` keeps a system OpenSSL configuration
/// from forbidding the old versions on the client side, so that a rejection
/// is the server's.
async fn s_client(address: SocketAddr, version_flag: &str) -> SClientRun {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-brief",
            "-connect",
            &address.to_string(),
            "-servername",
            SERVER_NAME,
            version_flag,
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl s_client: {e}"));

    let deadline = Instant::now() + OPENSSL_TIMEOUT;
    while child
        .try_wait()
        .expect("polling openssl s_client")
        .is_none()
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("openssl s_client {version_flag} did not exit within {OPENSSL_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = child
        .wait_with_output()
        .expect("collecting the openssl output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    SClientRun {
        success: output.status.success(),
        established: text.contains("CONNECTION ESTABLISHED"),
        output: text,
    }
}
