//! Connection timeouts and limits against the running gateway: an idle
//! keep-alive connection is closed, a client that never finishes its
//! request headers (slowloris) is cut off after the header timeout, and so
//! is a client that connects and sends nothing. Connections beyond the
//! configured maximum wait until an open one closes.

use crate::common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{config_for, Gateway, Provider, ProviderOptions, Upstream};

/// Adds server timeouts to a configuration built by `config_for`.
fn with_timeouts(yaml: String, request_header: &str, idle: &str) -> String {
    yaml.replacen(
        "  timeouts:\n    shutdown_grace:",
        &format!("  timeouts:\n    request_header: {request_header}\n    idle: {idle}\n    shutdown_grace:"),
        1,
    )
}

/// Reads until the peer closes the connection; returns the time it took,
/// or `None` when it stayed open past `limit`.
async fn time_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn idle_connection_closed() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = with_timeouts(config_for(&upstream, &[&provider]).yaml(), "5s", "1s");
    let gateway = Gateway::start(&yaml).await;

    let mut stream = TcpStream::connect(gateway.address)
        .await
        .expect("connecting");
    stream
        .write_all(b"GET /users HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("writing");
    let mut response = vec![0u8; 1024];
    let read = stream
        .read(&mut response)
        .await
        .expect("reading the response");
    assert!(
        response[..read].starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&response[..read])
    );

    let closed_after = time_until_closed(&mut stream, Duration::from_secs(6)).await;
    let closed_after = closed_after.expect("the idle connection was not closed within 6s");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed too early: {closed_after:?}"
    );
}

#[tokio::test]
async fn connection_without_request_cut_off() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = with_timeouts(config_for(&upstream, &[&provider]).yaml(), "1s", "60s");
    let gateway = Gateway::start(&yaml).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let empty_settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];

    // The connection idles for up to 60s between requests, but a first
    // request must arrive within the header timeout.
    // (description, bytes sent before going quiet)
    let cases: [(&str, Vec<u8>); 3] = [
        ("nothing", Vec::new()),
        ("first byte of the HTTP/2 preface", b"P".to_vec()),
        (
            "HTTP/2 preface and SETTINGS",
            [&preface[..], &empty_settings[..]].concat(),
        ),
    ];
    for (description, bytes) in cases {
        let mut stream = TcpStream::connect(gateway.address)
            .await
            .expect("connecting");
        stream.write_all(&bytes).await.expect("writing");

        let closed_after = time_until_closed(&mut stream, Duration::from_secs(5)).await;
        let closed_after =
            closed_after.unwrap_or_else(|| panic!("{description}: still open after 5s"));
        assert!(
            closed_after >= Duration::from_millis(900),
            "{description}: closed before the header timeout: {closed_after:?}"
        );
    }
}

#[tokio::test]
async fn slow_headers_cut_off() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = with_timeouts(config_for(&upstream, &[&provider]).yaml(), "1s", "60s");
    let gateway = Gateway::start(&yaml).await;

    let mut stream = TcpStream::connect(gateway.address)
        .await
        .expect("connecting");
    stream
        .write_all(b"GET /users HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .expect("writing");
    // Keep sending a byte now and then without ever ending the headers.
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        closed,
        "a request whose headers never end was kept open for 5s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off only after {:?}",
        started.elapsed()
    );
    assert_eq!(upstream.count().await, 0);
}

/// Sends one request on `stream` and returns the status line of the
/// response, or `None` when none arrived within `limit`.
async fn status_line(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream
        .write_all(b"GET /users HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .expect("writing");
    let mut response = vec![0u8; 4096];
    let read = tokio::time::timeout(limit, stream.read(&mut response))
        .await
        .ok()?
        .expect("reading");
    let text = String::from_utf8_lossy(&response[..read]);
    text.lines().next().map(str::to_string)
}

#[tokio::test]
async fn connections_beyond_limit_wait() {
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let yaml = config_for(&upstream, &[&provider]).yaml().replacen(
        "  timeouts:\n",
        "  limits:\n    max_connections: 2\n  timeouts:\n",
        1,
    );
    let gateway = Gateway::start(&yaml).await;
    let served = Some("HTTP/1.1 401 Unauthorized".to_string());

    let mut first = TcpStream::connect(gateway.address)
        .await
        .expect("connecting");
    let mut second = TcpStream::connect(gateway.address)
        .await
        .expect("connecting");
    assert_eq!(
        status_line(&mut first, Duration::from_secs(5)).await,
        served
    );
    assert_eq!(
        status_line(&mut second, Duration::from_secs(5)).await,
        served
    );

    // The kernel completes the handshake, but the gateway does not accept
    // the third connection while two are open.
    let mut third = TcpStream::connect(gateway.address)
        .await
        .expect("connecting");
    let waiting = status_line(&mut third, Duration::from_millis(500)).await;
    assert_eq!(waiting, None, "a third connection was served");
    let open = gateway
        .metrics()
        .await
        .value("portcullis_connections_open", &[]);
    assert_eq!(open, 2.0, "open connections while the third waits");

    drop(first);
    let mut response = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut response))
        .await
        .expect("the third connection was not served after the first closed")
        .expect("reading");
    let text = String::from_utf8_lossy(&response[..read]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
}
