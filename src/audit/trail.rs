//! The gateway's side of the audit log: opened once at start, it turns each
//! request decision into a record with a pseudonymised subject, appends it,
//! and applies `on_failure` when the record cannot be written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{AuditSettings, OnFailure};
use super::pseudonym::Pseudonyms;
use super::{AuditError, AuditEvent, AuditLog, Decision};
use crate::admin::metrics::Metrics;

/// Minimum time between two warnings about failing appends. The failures
/// in between are counted in the next warning and always in the metrics.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// `route` of a record for a request that matched no route.
pub const NO_ROUTE: &str = crate::admin::metrics::NO_ROUTE;

/// The open audit log of a running gateway. Shared by every configuration
/// generation: a reload does not reopen it.
pub struct Trail {
    log: AuditLog,
    pseudonyms: Arc<Pseudonyms>,
    settings: AuditSettings,
    metrics: Arc<Metrics>,
    /// Whether the last append failed. Cleared by the next append that
    /// succeeds.
    failing: AtomicBool,
    /// Failures not yet reported in a warning.
    unreported: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// Facts of one request decision, as the pipeline collected them.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub tenant: Option<&'a str>,
    /// Route id, `None` when no route matched.
    pub route: Option<&'a str>,
    /// The identity's subject in clear. Only its pseudonym is written.
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub decision: Decision,
    pub reason: &'a str,
    pub status: u16,
    pub latency: Duration,
    /// Policy or limit that decided, when one did.
    pub policy: Option<&'a str>,
}

/// Failure to write a request's record under `on_failure: deny`. The
/// request gets 503 `audit_unavailable` in place of its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Trail {
    /// Opens the log, recovering a torn tail. Blocks on file I/O, so call
    /// it at startup.
    pub fn open(settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<Trail, AuditError> {
        let log = AuditLog::open(settings.log.clone())?;
        if let Some(bytes) = log.truncated_bytes() {
            tracing::warn!(
                audit.directory = %settings.log.directory.display(),
                truncated_bytes = bytes,
                "audit log ended in a torn record; it was truncated and a recovery record written"
            );
        }
        tracing::info!(
            audit.directory = %settings.log.directory.display(),
            audit.on_failure = settings.on_failure.as_str(),
            "audit log opened"
        );
        Ok(Trail {
            log,
            pseudonyms: Arc::new(Pseudonyms::new(&settings.pseudonyms)),
            settings: settings.clone(),
            metrics,
            failing: AtomicBool::new(false),
            unreported: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// Returns the settings the log was opened with.
    pub fn settings(&self) -> &AuditSettings {
        &self.settings
    }

    /// Checks, before a request is forwarded, that its record can be
    /// expected to be written: under `deny`, a request is rejected while
    /// the last append failed, so no upstream side effect goes unrecorded.
    /// The record of that rejection is the next try, and clears the state
    /// when it succeeds.
    pub fn admit(&self) -> Result<(), Unavailable> {
        let deny = self.settings.on_failure == OnFailure::Deny;
        if deny && self.failing.load(Ordering::Acquire) {
            return Err(Unavailable);
        }
        Ok(())
    }

    /// Writes the record of one decision. In fsync mode this returns once
    /// the record is on disk, sharing the fsync with concurrent requests.
    pub async fn record(&self, entry: Entry<'_>) -> Result<(), Unavailable> {
        let subject = match entry.subject {
            Some(subject) => match self.pseudonym(entry.tenant, subject).await {
                Ok(pseudonym) => Some(pseudonym),
                Err(error) => return self.failed(&entry, &error),
            },
            None => None,
        };
        let event = AuditEvent {
            request_id: entry.request_id.to_string(),
            tenant: entry.tenant.map(str::to_string),
            route: entry.route.unwrap_or(NO_ROUTE).to_string(),
            subject,
            client_id: entry.client_id.map(str::to_string),
            decision: entry.decision,
            reason: entry.reason.to_string(),
            status: entry.status,
            latency_ms: u64::try_from(entry.latency.as_millis()).unwrap_or(u64::MAX),
            policy: entry.policy.map(str::to_string),
        };

        let started = Instant::now();
        let result = self.log.append(event).await;
        self.metrics
            .audit_append(started.elapsed().as_secs_f64(), result.is_ok());
        match result {
            Ok(()) => {
                self.failing.store(false, Ordering::Release);
                Ok(())
            }
            Err(error) => self.failed(&entry, &error),
        }
    }

    /// Writes the final checkpoint and stops the writer.
    pub async fn close(&self) {
        match self.log.close().await {
            Ok(()) => tracing::info!(
                audit.directory = %self.settings.log.directory.display(),
                "audit log closed with a final checkpoint"
            ),
            Err(error) => tracing::error!(
                audit.directory = %self.settings.log.directory.display(),
                error = %error,
                "audit log close failed; the next start recovers the log"
            ),
        }
    }

    async fn pseudonym(&self, tenant: Option<&str>, subject: &str) -> Result<String, String> {
        if let Some(pseudonym) = self.pseudonyms.cached(tenant, subject) {
            return Ok(pseudonym);
        }
        let pseudonyms = self.pseudonyms.clone();
        let tenant = tenant.map(str::to_string);
        let subject = subject.to_string();
        let created =
            tokio::task::spawn_blocking(move || pseudonyms.pseudonym(tenant.as_deref(), &subject))
                .await;
        match created {
            Ok(Ok(pseudonym)) => Ok(pseudonym),
            Ok(Err(error)) => Err(format!(
                "pseudonym key in {} failed: {error}",
                self.settings.pseudonyms.display()
            )),
            Err(error) => Err(format!("pseudonym task failed: {error}")),
        }
    }

    /// Counts a failed record, logs it (rate limited) and applies
    /// `on_failure`.
    fn failed(&self, entry: &Entry<'_>, error: &dyn std::fmt::Display) -> Result<(), Unavailable> {
        self.failing.store(true, Ordering::Release);
        let on_failure = self.settings.on_failure;
        self.metrics.audit_failure(on_failure.as_str());
        let unreported = self.unreported.fetch_add(1, Ordering::AcqRel) + 1;
        if self.warning_due() {
            self.unreported.fetch_sub(unreported, Ordering::AcqRel);
            tracing::warn!(
                audit.on_failure = on_failure.as_str(),
                request.id = entry.request_id,
                failures = unreported,
                error = %error,
                "audit record not written"
            );
        }
        match on_failure {
            OnFailure::Deny => Err(Unavailable),
            OnFailure::Allow => Ok(()),
        }
    }

    fn warning_due(&self) -> bool {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }
}
