//! The test upstream: `tests/fixtures/upstream.js`, the example users API
//! with request recording and fault endpoints.

use std::net::{Ipv4Addr, SocketAddr};

use http::Method;
use serde::Deserialize;

use super::client::RequestBuilder;
use super::logs::{next_log_name, test_log_dir};
use super::process::Fixture;

pub struct Upstream {
    fixture: Fixture,
    pub port: u16,
}

/// One request as the upstream received it.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as received.
    pub url: String,
    /// Node's `req.headers`: lowercase names, some repeated headers joined.
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// Every header line as received, as (name, value).
    pub raw_headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Returns the value Node parsed for a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.as_str())
    }

    /// Returns the value of every raw header line named `name`, ignoring
    /// case.
    pub fn raw_values(&self, name: &str) -> Vec<&str> {
        self.raw_headers
            .iter()
            .filter(|(raw_name, _)| raw_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// Returns the header names as received, in lowercase.
    pub fn header_names(&self) -> Vec<String> {
        self.raw_headers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect()
    }
}

#[derive(Deserialize)]
struct Recording {
    count: u64,
    requests: Vec<RecordedRequest>,
}

impl Upstream {
    /// Starts the upstream on a free port and waits until it listens.
    pub fn start() -> Upstream {
        let dir = test_log_dir();
        let name = next_log_name(&dir, "upstream");
        let stderr_path = dir.join(format!("{name}.stderr.log"));
        let args = ["--port".to_string(), "0".to_string()];
        let (fixture, fields) = Fixture::start("upstream.js", &args, stderr_path)
            .unwrap_or_else(|e| panic!("{}; stderr:\n{}", e.message, e.stderr));
        let port = fields
            .first()
            .and_then(|p| p.parse().ok())
            .expect("READY <port> from upstream.js");
        Upstream { fixture, port }
    }

    /// `http://127.0.0.1:<port>`, as written in a gateway configuration.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Returns the requests received since the last reset, oldest first
    /// (the last 200 at most).
    pub async fn requests(&self) -> Vec<RecordedRequest> {
        self.recording().await.requests
    }

    /// Returns the number of requests received since the last reset.
    pub async fn count(&self) -> u64 {
        self.recording().await.count
    }

    /// Forgets the count and the recorded requests.
    pub async fn reset(&self) {
        let response = RequestBuilder::new(self.address(), Method::POST, "/__upstream/reset")
            .send()
            .await;
        assert_eq!(
            response.status(),
            204,
            "POST /__upstream/reset: {}",
            response.text()
        );
    }

    /// Stops the upstream: its port then refuses connections.
    pub fn stop(&mut self) {
        self.fixture.stop();
    }

    async fn recording(&self) -> Recording {
        let response = RequestBuilder::new(self.address(), Method::GET, "/__upstream/requests")
            .send()
            .await;
        assert_eq!(
            response.status(),
            200,
            "GET /__upstream/requests: {}",
            response.text()
        );
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|e| panic!("invalid /__upstream/requests body: {e}"))
    }
}
