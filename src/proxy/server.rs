//! The accept loop and per-connection serving, with the idle timeout and
//! graceful shutdown that drains in-flight requests within a bound.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::pipeline::{Connection, Shared};
use crate::proxy::config::ServerConfig;

/// Minimum time between two warnings that the connection limit is reached.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Serves connections until `shutdown` turns true, then stops accepting,
/// lets in-flight requests finish for up to `shutdown_grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    server: &ServerConfig,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(server));
    let open = Arc::new(AtomicUsize::new(0));
    let idle_timeout = server.timeouts.idle;
    let header_timeout = server.timeouts.request_header;
    let slots = Arc::new(Semaphore::new(server.limits.max_connections));
    let mut warned_full: Option<Instant> = None;

    loop {
        // At the limit, new connections wait in the kernel's accept queue
        // until an open one ends.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                    tracing::warn!(
                        connections.max = server.limits.max_connections,
                        "connection limit reached; new connections wait until one closes"
                    );
                    warned_full = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = shutdown.changed() => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually file descriptors ran out; back off instead of spinning.
                tracing::warn!(error = %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            tls: tls.is_some(),
        };
        let (shared, builder, open, tls, shutdown) = (
            shared.clone(),
            builder.clone(),
            open.clone(),
            tls.clone(),
            shutdown.clone(),
        );
        open.fetch_add(1, Ordering::Relaxed);
        let open_gauge = shared.metrics.connections_open().clone();
        open_gauge.inc();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => {
                    serve_connection(
                        stream,
                        connection,
                        shared,
                        &builder,
                        idle_timeout,
                        header_timeout,
                        shutdown,
                    )
                    .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(
                                stream,
                                connection,
                                shared,
                                &builder,
                                idle_timeout,
                                header_timeout,
                                shutdown,
                            )
                            .await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(client.ip = %peer.ip(), error = %error, "TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(client.ip = %peer.ip(), "TLS handshake timed out")
                        }
                    }
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
            open_gauge.dec();
        });
    }

    drain(&open, server.timeouts.shutdown_grace).await;
}

/// Waits until every connection has closed or the grace period is over.
async fn drain(open: &AtomicUsize, grace: Duration) {
    let deadline = Instant::now() + grace;
    tracing::info!(
        connections.open = open.load(Ordering::Relaxed),
        grace_secs = grace.as_secs_f64(),
        "draining connections"
    );
    while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            connections.open = left,
            "grace period over; closing remaining connections"
        );
    }
}

fn http_builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.timeouts.request_header)
        .max_buf_size(server.limits.max_header_bytes.max(8192))
        .max_headers(server.limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(server.limits.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if !server.http2 {
        builder = builder.http1_only();
    }
    builder
}

async fn serve_connection<IO>(
    stream: IO,
    connection: Connection,
    shared: Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        service_fn(move |request| {
            let shared = shared.clone();
            let guard = InFlight::new(activity.clone(), shared.metrics.in_flight().clone());
            async move {
                let gateway = shared.gateway.load_full();
                let response = gateway.handle(request, connection).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut idle_check =
        tokio::time::interval(idle_timeout.div_f64(4.0).max(Duration::from_millis(10)));
    // hyper's header timeout starts with the first byte of an HTTP/1
    // request. The HTTP version detection before it, and an HTTP/2
    // connection's frames, have no such bound, so a client could hold the
    // connection for `idle_timeout` or longer without ever sending a
    // request. A connection must deliver its first request within the
    // header timeout.
    let mut first_request = pin!(tokio::time::sleep(header_timeout));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(client.ip = %connection.peer.ip(), error = %error, "connection ended with an error");
                }
                return;
            }
            _ = first_request.as_mut(), if !activity.requested.load(Ordering::Relaxed) => {
                if !activity.requested.load(Ordering::Relaxed) {
                    tracing::debug!(client.ip = %connection.peer.ip(), "connection closed: no request within the header timeout");
                    return;
                }
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for() >= idle_timeout && activity.in_flight.load(Ordering::Acquire) == 0 {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = shutdown.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// When a connection last moved bytes, and how many requests it serves now.
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
    in_flight: AtomicUsize,
    /// A request has reached the gateway's service on this connection.
    requested: AtomicBool,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requested: AtomicBool::new(false),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_millis.load(Ordering::Relaxed)))
    }
}

/// Counts one request as in flight, on its connection and in the
/// `portcullis_requests_in_flight` gauge, until it is dropped.
struct InFlight {
    activity: Arc<Activity>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl InFlight {
    fn new(activity: Arc<Activity>, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        activity.requested.store(true, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        InFlight { activity, gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
        self.activity.touch();
    }
}

/// A stream that records when bytes last moved.
struct Tracked<IO> {
    inner: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[allow(dead_code)]
fn assert_send<F: Future + Send>(_: F) {}
