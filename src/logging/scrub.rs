//! Scrubbing of formatted log lines: card numbers and configured detectors
//! anywhere in the line, and configured fields replaced by pseudonyms.

use std::borrow::Cow;
use std::sync::LazyLock;

use ring::rand::{SecureRandom, SystemRandom};

use crate::logging::config::LoggingConfig;
use crate::mask::{Context, Detector, DetectorRule, MaskRules, MaskStyle, Masker, PseudonymKey};

/// Key of the log pseudonyms, new for every process: lines of one run
/// correlate, and nothing outside the process can turn a pseudonym back
/// into the value.
static PROCESS_KEY: LazyLock<PseudonymKey> = LazyLock::new(|| {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .expect("the system random source works");
    PseudonymKey::new(&secret).expect("32 bytes is a valid key length")
});

/// Scrubs formatted log lines.
#[derive(Debug)]
pub struct Scrubber {
    detectors: Masker,
    /// `"name":` of every configured field, as it appears in a JSON line.
    fields: Vec<String>,
}

impl Scrubber {
    pub fn new(config: &LoggingConfig) -> Scrubber {
        let card = std::iter::once(Detector::Card);
        let detectors = card
            .chain(config.detectors.iter().cloned())
            .map(|detector| DetectorRule {
                detector,
                style: MaskStyle::Redact,
            })
            .collect();
        let rules = MaskRules {
            fields: Vec::new(),
            detectors,
        };
        Scrubber {
            detectors: Masker::new(rules),
            fields: config
                .pii_fields
                .iter()
                .map(|name| format!("\"{name}\":"))
                .collect(),
        }
    }

    /// Returns `line` with configured fields pseudonymised and every
    /// detector match redacted. Borrows when there is nothing to change.
    pub fn scrub<'t>(&self, line: &'t str) -> Cow<'t, str> {
        let line = self.pseudonymise_fields(line);

        let context = Context::default();
        match self.detectors.mask_text(&line, &context).text {
            Cow::Borrowed(_) => line,
            Cow::Owned(masked) => Cow::Owned(masked),
        }
    }

    /// Replaces the value of every configured field with its pseudonym,
    /// then every other quoted occurrence of those values in the line, such
    /// as the same subject inside a logged policy input.
    fn pseudonymise_fields<'t>(&self, line: &'t str) -> Cow<'t, str> {
        let mut line = Cow::Borrowed(line);
        let mut replaced = Vec::new();
        for field in &self.fields {
            let mut from = 0;
            while let Some(found) = line[from..].find(field.as_str()) {
                let value_start = from + found + field.len();
                let Some((span, replacement)) = pseudonym_for_value(&line, value_start) else {
                    from = value_start;
                    continue;
                };
                replaced.push((line[span.clone()].to_string(), replacement.clone()));
                line.to_mut().replace_range(span.clone(), &replacement);
                from = span.start + replacement.len();
            }
        }

        for (value, replacement) in replaced {
            for (quoted, pseudonym) in quoted_forms(&value, &replacement) {
                if line.contains(quoted.as_str()) {
                    line = Cow::Owned(line.replace(quoted.as_str(), &pseudonym));
                }
            }
        }
        line
    }
}

/// Returns the ways a JSON value written as `value` appears elsewhere in a
/// line, each with its replacement: as the same JSON string, and as that
/// string inside another JSON string. Numbers and booleans are only found
/// quoted, so digits inside other values are left alone.
fn quoted_forms(value: &str, replacement: &str) -> Vec<(String, String)> {
    let content = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
    let content = content.unwrap_or(value);
    let pseudonym = replacement.trim_matches('"');
    let nested = content.replace('\\', "\\\\").replace('"', "\\\"");
    vec![
        (format!("\"{content}\""), format!("\"{pseudonym}\"")),
        (format!("\\\"{nested}\\\""), format!("\\\"{pseudonym}\\\"")),
    ]
}

/// Finds the JSON value that starts at `start` and returns its byte range
/// and the quoted pseudonym that replaces it. `null` stays as it is.
fn pseudonym_for_value(line: &str, start: usize) -> Option<(std::ops::Range<usize>, String)> {
    let bytes = line.as_bytes();
    let end = if bytes.get(start) == Some(&b'"') {
        string_end(bytes, start + 1)?
    } else {
        let length = bytes[start..]
            .iter()
            .position(|b| matches!(b, b',' | b'}' | b']'))
            .unwrap_or(bytes.len() - start);
        start + length
    };
    let value = &line[start..end];
    if value == "null" {
        return None;
    }
    let pseudonym = format!("\"{}\"", PROCESS_KEY.pseudonym(value));
    Some((start..end, pseudonym))
}

/// Returns the index just past the quote that closes the JSON string whose
/// content starts at `from`.
fn string_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut index = from;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(pii_fields: &[&str]) -> Scrubber {
        let config = LoggingConfig {
            pii_fields: pii_fields.iter().map(|f| f.to_string()).collect(),
            ..LoggingConfig::default()
        };
        Scrubber::new(&config)
    }

    #[test]
    fn scrubs_cards_and_emails_anywhere_in_a_line() {
        // (description, line, text that must be gone)
        let cases = [
            (
                "card in a path",
                r#"{"url.path":"/pay/4111111111111111"}"#,
                "4111111111111111",
            ),
            (
                "card with dashes",
                r#"{"message":"x 4111-1111-1111-1111 y"}"#,
                "4111-1111-1111-1111",
            ),
            (
                "card with spaces",
                r#"{"error":"bad 5500 0000 0000 0004"}"#,
                "5500 0000 0000 0004",
            ),
            (
                "email in a subject",
                r#"{"identity.subject":"ann@example.com"}"#,
                "ann@example.com",
            ),
        ];
        let scrubber = scrubber(&[]);
        for (description, line, secret) in cases {
            let scrubbed = scrubber.scrub(line);
            assert!(!scrubbed.contains(secret), "{description}: {scrubbed}");
            assert!(scrubbed.contains("[REDACTED]"), "{description}: {scrubbed}");
            serde_json::from_str::<serde_json::Value>(&scrubbed)
                .unwrap_or_else(|e| panic!("{description}: not JSON any more ({e}): {scrubbed}"));
        }
    }

    #[test]
    fn leaves_lines_without_matches_borrowed() {
        let line = r#"{"message":"request served","order":"1234567890123456","http.status":200}"#;

        let scrubbed = scrubber(&[]).scrub(line);

        assert!(matches!(scrubbed, Cow::Borrowed(_)), "{scrubbed}");
    }

    #[test]
    fn pseudonymises_configured_fields() {
        let scrubber = scrubber(&["identity.subject", "client.ip"]);
        let line = r#"{"identity.subject":"user \"7\"","client.ip":"10.0.0.7","n":1}"#;

        let first = scrubber.scrub(line);
        let second = scrubber.scrub(line);

        assert!(!first.contains("user"), "{first}");
        assert!(!first.contains("10.0.0.7"), "{first}");
        assert_eq!(first, second, "pseudonyms are stable within a process");
        let parsed: serde_json::Value = serde_json::from_str(&first).unwrap();
        let subject = parsed["identity.subject"].as_str().unwrap();
        assert!(subject.starts_with("pn_"), "{subject}");
        assert_eq!(parsed["n"], 1);
    }

    #[test]
    fn keeps_null_fields_and_unconfigured_fields() {
        let scrubber = scrubber(&["identity.subject"]);
        let line = r#"{"identity.subject":null,"tenant.id":"acme"}"#;

        assert_eq!(scrubber.scrub(line), line);
    }

    #[test]
    fn pseudonymises_every_occurrence_of_a_field() {
        let scrubber = scrubber(&["client.ip"]);
        let line = r#"{"client.ip":"10.0.0.1","nested":{"client.ip":"10.0.0.2"}}"#;

        let scrubbed = scrubber.scrub(line);

        assert!(!scrubbed.contains("10.0.0"), "{scrubbed}");
    }

    #[test]
    fn pseudonymises_the_same_value_elsewhere_in_the_line() {
        let scrubber = scrubber(&["identity.subject"]);
        let line = r#"{"record":"{\"sub\":\"u-77\",\"n\":\"u-770\"}","other":"u-77","identity.subject":"u-77"}"#;

        let scrubbed = scrubber.scrub(line);

        assert!(!scrubbed.contains("\"u-77\""), "{scrubbed}");
        assert!(!scrubbed.contains("\\\"u-77\\\""), "{scrubbed}");
        assert!(
            scrubbed.contains("u-770"),
            "a longer value is kept: {scrubbed}"
        );
        serde_json::from_str::<serde_json::Value>(&scrubbed).expect("still JSON");
    }
}
