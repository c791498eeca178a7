//! The findings of a review and the report that contains them. Every renderer
//! reads these types only, so the JSON, Markdown, SARIF and HTML outputs
//! always agree.

use serde::Serialize;

/// How much a finding matters. Ordered from least to most severe, so
/// `severity >= fail_on` selects the findings that fail a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, most severe first, as reports list them.
    pub const DESCENDING: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses `critical`, `high`, `medium` or `low`.
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::DESCENDING
            .into_iter()
            .find(|severity| severity.as_str() == text)
    }
}

/// A place in the gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigLocation {
    pub file: String,
    /// 1-based line; 0 when the finding is about a key that is absent.
    pub line: usize,
    pub column: usize,
    /// Key path such as `routes[2].rate_limits`.
    pub key_path: String,
}

/// A place in an OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiLocation {
    pub file: String,
    /// 1-based line of the node, when the document was YAML or JSON that
    /// kept positions; 0 when unknown.
    pub line: usize,
    /// JSON Pointer (RFC 6901) of the node in the document.
    pub pointer: String,
    /// The API's `info.title`.
    pub api: String,
    /// The templated path, such as `/accounts/{accountId}`, when the
    /// finding is about an operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Upper-case HTTP method of the operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
}

/// One gap found by a check.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The check's stable id, such as `PX-AUTH-001`.
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// What was found, in one or two sentences, naming the route or
    /// operation. Never contains a secret value.
    pub evidence: String,
    /// A short excerpt of the configuration or document as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openapi: Option<ApiLocation>,
    pub why: String,
    pub fix: String,
    /// A configuration snippet that makes the gateway enforce the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_snippet: Option<String>,
    /// Where `fix_snippet` goes, set with it. Reports leave it out because
    /// the finding's configuration location already shows the place.
    #[serde(skip)]
    pub fix_snippet_scope: Option<SnippetScope>,
    /// Control ids from the catalogue, such as `owasp-api:API1`.
    pub mappings: Vec<String>,
}

impl Finding {
    /// Names the API the finding belongs to, for grouping: the document's
    /// title, else `Gateway configuration`.
    pub fn api_name(&self) -> &str {
        self.openapi
            .as_ref()
            .map_or("Gateway configuration", |location| location.api.as_str())
    }

    /// Formats the primary location as `file:line` (or the file alone).
    pub fn location_text(&self) -> String {
        if let Some(api) = &self.openapi {
            let operation = match (&api.method, &api.path) {
                (Some(method), Some(path)) => format!(" {method} {path}"),
                _ => String::new(),
            };
            let line = if api.line > 0 {
                format!(":{}", api.line)
            } else {
                String::new()
            };
            return format!("{}{line}{operation}", api.file);
        }
        match &self.config {
            Some(config) if config.line > 0 => {
                format!(
                    "{}:{}:{} {}",
                    config.file, config.line, config.column, config.key_path
                )
            }
            Some(config) => format!("{} {}", config.file, config.key_path),
            None => String::new(),
        }
    }
}

/// The part of the configuration a fix snippet is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnippetScope {
    /// The top level of the file. A `routes` list in such a snippet names
    /// existing routes by id and lists only the keys to set on them.
    TopLevel,
    /// The route that the finding's configuration location names.
    Route,
    /// The issuer that the finding's configuration location names.
    Issuer,
}

/// How far the configuration shows that a control is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// The gateway enforces what the control asks of it, on every route it
    /// applies to. Parts of the control outside the gateway remain open.
    Supported,
    /// Enforced on some routes or for part of the control only.
    Partial,
    /// Nothing in the configuration shows it.
    NotEvidenced,
    /// No gateway setting can provide it, such as how long logs are kept;
    /// the operator must show it with other evidence.
    OutsideGateway,
}

impl Support {
    pub fn as_str(self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::Partial => "partial",
            Support::NotEvidenced => "not evidenced",
            Support::OutsideGateway => "outside the gateway",
        }
    }
}

/// One entry of the "controls in place" section.
#[derive(Debug, Clone, Serialize)]
pub struct ControlEvidence {
    /// Control ids from the catalogue this evidence speaks to.
    pub controls: Vec<String>,
    pub topic: String,
    pub support: Support,
    /// Evidence from the configuration, and what it leaves open.
    pub evidence: String,
}

/// A check that could not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedCheck {
    pub id: String,
    pub reason: String,
}

/// The inputs a review read.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub config: String,
    pub openapi: Vec<ApiInput>,
}

/// One OpenAPI document that was read, fully or in part.
#[derive(Debug, Clone, Serialize)]
pub struct ApiInput {
    pub file: String,
    pub title: String,
    /// The document's `openapi` field, such as `3.1.0`.
    pub version: String,
    pub operations: usize,
}

/// The whole review.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub inputs: Inputs,
    pub findings: Vec<Finding>,
    pub controls_in_place: Vec<ControlEvidence>,
    pub skipped_checks: Vec<SkippedCheck>,
    /// Limits of this review that a reader must know, such as a document
    /// that was read only in part.
    pub notes: Vec<String>,
}

impl Report {
    /// Counts the findings of one severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    }

    /// Sorts findings by severity (most severe first), then id, then
    /// location, so every output lists them in the same stable order.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.location_text().cmp(&b.location_text()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_puts_critical_highest() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium);
        assert!(Severity::Medium > Severity::Low);
    }

    #[test]
    fn severity_parses_its_own_names() {
        for severity in Severity::DESCENDING {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
        }
        assert_eq!(Severity::parse("info"), None);
    }
}
