//! Hot reload: on SIGHUP or when the configuration file changes, the file
//! is validated and, if valid, a new gateway generation replaces the old one
//! atomically. In-flight requests finish on the generation they started
//! on. A file that fails validation is rejected with every problem logged,
//! and the last good configuration keeps serving.
//!
//! The listener (`server.address`, `tls`, `http2`, timeouts and limits) and
//! the admin address are bound at startup. A change to them is logged, and
//! it takes effect only after a restart.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::pipeline::{Durable, Gateway, Shared};

/// How often the file's modification time and size are checked.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub struct Reloader {
    path: PathBuf,
    shared: Arc<Shared>,
    durable: Durable,
    generation: AtomicU64,
    /// Serialises reloads from the signal and the file watcher.
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(path: PathBuf, shared: Arc<Shared>, durable: Durable) -> Self {
        Reloader {
            path,
            shared,
            durable,
            generation: AtomicU64::new(1),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads on every SIGHUP.
    pub async fn on_sighup(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(error = %error, "cannot install a SIGHUP handler; reload on signal disabled");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            self.reload("sighup").await;
        }
    }

    /// Reloads when the file's modification time or size changes.
    pub async fn watch_file(self: Arc<Self>) {
        let mut last = self.fingerprint();
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let current = self.fingerprint();
            if current != last && current.is_some() {
                last = current;
                self.reload("file_changed").await;
            }
        }
    }

    fn fingerprint(&self) -> Option<(SystemTime, u64)> {
        let metadata = std::fs::metadata(&self.path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    }

    /// Validates the file and, when valid, swaps in a new generation.
    pub async fn reload(&self, cause: &'static str) {
        let _serialized = self.lock.lock().await;
        let config = match crate::config::load(&self.path) {
            Ok(config) => Arc::new(config),
            Err(errors) => {
                for problem in &errors.0 {
                    tracing::error!(
                        config.location = problem.location.as_str(),
                        config.path = problem.path.as_str(),
                        problem = problem.message.as_str(),
                        "invalid configuration"
                    );
                }
                tracing::error!(
                    reload.cause = cause,
                    problems = errors.0.len(),
                    "configuration reload rejected; the last good configuration keeps serving"
                );
                self.durable.metrics.config_reload_failed();
                return;
            }
        };

        let previous = self.shared.gateway.load_full();
        warn_about_restart_only_changes(&previous.config, &config);
        let gateway = match Gateway::new(config, &self.durable, Some(&previous)) {
            Ok(gateway) => gateway,
            Err(error) => {
                tracing::error!(
                    reload.cause = cause,
                    error = error.as_str(),
                    "configuration reload failed; the last good configuration keeps serving"
                );
                self.durable.metrics.config_reload_failed();
                return;
            }
        };
        crate::run::start_issuer_keys(&gateway).await;
        crate::logging::configure(&gateway.config.logging);
        self.shared.gateway.store(Arc::new(gateway));

        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.durable.metrics.config_loaded(generation, false);
        tracing::info!(
            reload.cause = cause,
            config.generation = generation,
            "configuration reloaded"
        );
    }
}

/// Keeps SIGHUP from terminating a gateway that runs the embedded default
/// configuration, which has no file to reload.
pub async fn ignore_sighup() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::warn!("SIGHUP ignored: the embedded default configuration has no file to reload");
    }
}

fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    let listener_changed = old.server.address != new.server.address
        || old
            .server
            .tls
            .as_ref()
            .map(|t| (&t.certificate, &t.key, t.min_version_13))
            != new
                .server
                .tls
                .as_ref()
                .map(|t| (&t.certificate, &t.key, t.min_version_13))
        || old.server.http2 != new.server.http2
        || old.admin.address != new.admin.address
        || format!("{:?}{:?}", old.server.timeouts, old.server.limits)
            != format!("{:?}{:?}", new.server.timeouts, new.server.limits);
    if listener_changed {
        tracing::warn!("listener, TLS, timeout, limit or admin settings changed; they take effect after a restart");
    }
    if old.audit != new.audit {
        tracing::warn!("audit settings changed; the audit log keeps its settings from the start until a restart");
    }
    if old.rate_limit_store != new.rate_limit_store {
        tracing::warn!("rate_limit_store changed; the new store takes effect after a restart");
    }
}
