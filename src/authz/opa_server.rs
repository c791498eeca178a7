//! An external OPA server, for teams that run OPA centrally: the rule is
//! evaluated with OPA's data API (`POST /v1/data/<path>` with
//! `{"input": ...}`), with a timeout, and any failure denies
//! (`policy_error`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::authz::policy::{Decision, PolicyFailure};

/// Responses larger than this are a failure.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

pub struct OpaServer {
    base: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl OpaServer {
    /// `base` is the server's URL, such as `http://127.0.0.1:8181`.
    pub fn new(base: &Uri, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        OpaServer {
            base: base.to_string().trim_end_matches('/').to_string(),
            timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Evaluates `rule` (such as `data.users.allow_delete`) for `input`.
    pub async fn evaluate(&self, rule: &str, input: &Value) -> Decision {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.query(rule, input)).await;
        let duration = started.elapsed();
        match result {
            Ok(Ok(value)) => Decision::from_value(value, duration),
            Ok(Err(failure)) => Decision::failed(failure, duration),
            Err(_) => Decision::failed(PolicyFailure::BudgetExceeded, duration),
        }
    }

    async fn query(&self, rule: &str, input: &Value) -> Result<Option<Value>, PolicyFailure> {
        let path = rule.trim_start_matches("data.").replace('.', "/");
        let uri = format!("{}/v1/data/{path}", self.base);
        let body = serde_json::json!({ "input": input }).to_string();
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| PolicyFailure::ServerUnavailable)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| PolicyFailure::ServerUnavailable)?;
        if response.status() != StatusCode::OK {
            return Err(PolicyFailure::ServerUnavailable);
        }
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|_| PolicyFailure::ServerUnavailable)?
            .to_bytes();
        let document: Value =
            serde_json::from_slice(&bytes).map_err(|_| PolicyFailure::ServerUnavailable)?;
        // OPA leaves `result` out when the rule is undefined.
        Ok(document.get("result").cloned())
    }
}
