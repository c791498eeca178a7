//! The admin listener: liveness, readiness and Prometheus metrics. It only
//! reads gateway state and is meant for loopback or a private network.

pub mod config;
pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::pipeline::body::{full, Body};
use crate::pipeline::Shared;

/// Serves the admin endpoints until the process exits.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(error = %error, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, request)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

fn answer(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readiness(shared),
        "/metrics" => {
            let mut response = Response::new(full(Bytes::from(shared.metrics.render())));
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Ready when every issuer has usable keys. The body lists the issuers
/// that do not, so an operator sees which provider is at fault.
fn readiness(shared: &Shared) -> Response<Body> {
    let gateway = shared.gateway.load();
    let missing = gateway.authenticator.issuers_without_keys();
    if missing.is_empty() {
        return json(StatusCode::OK, serde_json::json!({ "ready": true }));
    }
    json(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "ready": false, "issuers_without_keys": missing }),
    )
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
