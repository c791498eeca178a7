//! The `logging` section: what is scrubbed from log lines.
//!
//! ```yaml
//! logging:
//!   detectors: [email, phone, iban]   # card numbers are always scrubbed
//!   pii_fields: [identity.subject, client.ip]
//! ```

use crate::config::reader::{did_you_mean, found, scalar_text, MapReader};
use crate::mask::Detector;

/// Log fields that may carry personal data, which `pii_fields` may name.
/// A name outside this list would match nothing, so it is refused.
pub const PII_FIELDS: &[&str] = &["client.id", "client.ip", "identity.subject", "url.path"];

/// Detectors `detectors` may name. `card` is accepted but always on.
const DETECTORS: &[&str] = &["card", "email", "phone", "iban"];

/// Scrubbing rules for log lines.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// Detectors run over every line, besides card numbers, which are always
    /// scrubbed. Matches are replaced by `[REDACTED]`. Default: email.
    pub detectors: Vec<Detector>,
    /// Log fields whose values are replaced by a pseudonym that is stable
    /// for the life of the process, so lines of one caller still correlate.
    /// Default: none.
    pub pii_fields: Vec<String>,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            detectors: vec![Detector::Email],
            pii_fields: Vec::new(),
        }
    }
}

/// Reads the `logging` section, or the defaults when it is absent.
pub fn read(top: &MapReader) -> Option<LoggingConfig> {
    let mut config = LoggingConfig::default();
    let Some(map) = top.map("logging") else {
        return top.get("logging").is_none().then_some(config);
    };

    let mut ok = true;
    if let Some(items) = map.list("detectors") {
        config.detectors.clear();
        for (path, node) in items {
            match scalar_text(node).and_then(detector) {
                Some(Some(detector)) => config.detectors.push(detector),
                Some(None) => {}
                None => {
                    map.problems
                        .at(node, &path, unknown("a detector", node, DETECTORS));
                    ok = false;
                }
            }
        }
    }

    if let Some(items) = map.list("pii_fields") {
        for (path, node) in items {
            match scalar_text(node).filter(|name| PII_FIELDS.contains(name)) {
                Some(name) => config.pii_fields.push(name.to_string()),
                None => {
                    map.problems
                        .at(node, &path, unknown("a log field", node, PII_FIELDS));
                    ok = false;
                }
            }
        }
    }

    map.finish();
    ok.then_some(config)
}

/// Returns the detector a name stands for: `Some(None)` for `card`, which
/// needs no entry because it is always on.
fn detector(name: &str) -> Option<Option<Detector>> {
    match name {
        "card" => Some(None),
        "email" => Some(Some(Detector::Email)),
        "phone" => Some(Some(Detector::Phone)),
        "iban" => Some(Some(Detector::Iban)),
        _ => None,
    }
}

fn unknown(what: &str, node: &crate::config::yaml::Node, allowed: &[&str]) -> String {
    let mut message = format!(
        "expected {what}, one of {}, found {}",
        allowed.join(", "),
        found(node)
    );
    let suggestion = scalar_text(node).and_then(|t| did_you_mean(t, allowed.iter().copied()));
    if let Some(suggestion) = suggestion {
        message.push_str(&format!("; did you mean {suggestion:?}?"));
    }
    message
}
