//! The shared end-to-end harness: real processes on loopback, driven from
//! the test.
//!
//! - [`Upstream`]: the Express test upstream (`tests/fixtures/upstream.js`),
//!   which counts and records every request it receives.
//! - [`Provider`]: a real OpenID Connect provider (`tests/fixtures/oidc`)
//!   that issues client_credentials JWT access tokens, plus its key files so
//!   tests can forge tokens with [`TokenForge`].
//! - [`Gateway`]: the `portcullis` binary, started from a YAML
//!   configuration, usually one built by [`config_for`].
//!
//! A test reads like this:
//!
//! ```ignore
//! let upstream = Upstream::start();
//! let provider = Provider::start(ProviderOptions::default());
//! let gateway = Gateway::start(&config_for(&upstream, &[&provider]).yaml()).await;
//! let token = provider.token("reader", "read:users").await;
//!
//! let response = gateway.get("/users").bearer(&token).send().await;
//!
//! assert_eq!(response.status(), 200);
//! assert_eq!(upstream.count().await, 1);
//! ```
//!
//! Every process is killed when its value is dropped, also when a test
//! panics. Every wait has a deadline. Each test writes its process logs to
//! `target/e2e-logs/<test binary>/<test name>/`, which is kept after the run.
//! Every credential a test creates or sends is recorded, and a gateway's
//! logs are checked for all of them when it is dropped.

#![allow(dead_code, unused_imports)]

pub mod attacks;
mod audit;
mod client;
mod config;
mod credentials;
mod gateway;
mod logs;
mod ports;
mod process;
mod provider;
mod redis;
pub mod tenants;
mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

pub use audit::AuditFiles;
pub use client::{send_raw, RequestBuilder, Response};
pub use config::{config_for, ConfigBuilder};
pub use credentials::{assert_no_credentials_in, record_credential, recorded_credentials};
pub use gateway::{write_command_config, Gateway, Metrics, ADMIN_ADDRESS, LISTEN_ADDRESS};
pub use logs::{e2e_logs_root, suite_log_dir, test_log_dir};
pub use ports::UnusedPort;
pub use provider::{KeyFile, KeyFiles, Provider, ProviderOptions, TokenForge};
pub use redis::{
    unique_key_prefix, with_store, RedisCluster, RedisServer, StoreConfig, SHARED_REDIS_VARIABLE,
};
pub use upstream::{RecordedRequest, Upstream};

/// How often [`eventually`] checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Checks `condition` until it returns true, and panics naming the awaited
/// `state` when `timeout` passes first.
pub async fn eventually<F, Fut>(state: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {state}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_secs()
}
