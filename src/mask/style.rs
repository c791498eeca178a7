//! Masking styles: how a sensitive value is rewritten once a field path or
//! a detector has selected it.

use std::borrow::Cow;
use std::fmt;

use ring::hmac;

use crate::mask::detect::Detector;

/// Text that replaces a value masked in the `redact` style. It is the same
/// for every value, so the length of the original does not leak.
pub const REDACTED: &str = "[REDACTED]";

/// Prefix of every pseudonym, so readers can tell it from a real value.
pub const PSEUDONYM_PREFIX: &str = "pn_";

/// Number of HMAC bytes kept in a pseudonym (16 hex digits, 64 bits).
const PSEUDONYM_BYTES: usize = 8;

/// Minimum pseudonym key length in bytes, the output size of SHA-256.
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 32;

/// Rewrite applied to a selected value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskStyle {
    /// Replace the value with [`REDACTED`].
    Redact,
    /// Keep at most the first 6 and last 4 digits and only when the value
    /// has at least 13 digits (the shortest card number). Every other digit
    /// and letter becomes `*`, while separators and punctuation stay.
    Pci,
    /// Replace the value with `pn_` and 16 hex digits of HMAC-SHA-256 under
    /// the tenant's pseudonym key: the same value and key give the same
    /// pseudonym. Without a key the value is redacted instead.
    Pseudonym,
}

/// Per-tenant HMAC-SHA-256 key for pseudonyms. `Debug` never prints it.
#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

/// Pseudonym key rejected because it is too short to resist guessing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PseudonymKeyError {
    pub length: usize,
}

impl fmt::Display for PseudonymKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pseudonym key is {} bytes long; expected at least {} random bytes",
            self.length, MIN_PSEUDONYM_KEY_BYTES
        )
    }
}

impl std::error::Error for PseudonymKeyError {}

impl PseudonymKey {
    /// Builds a key from secret bytes, at least [`MIN_PSEUDONYM_KEY_BYTES`]
    /// long.
    pub fn new(secret: &[u8]) -> Result<PseudonymKey, PseudonymKeyError> {
        if secret.len() < MIN_PSEUDONYM_KEY_BYTES {
            return Err(PseudonymKeyError {
                length: secret.len(),
            });
        }
        Ok(PseudonymKey(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// Computes the pseudonym of `value`.
    pub fn pseudonym(&self, value: &str) -> String {
        let tag = hmac::sign(&self.0, value.as_bytes());
        let mut digits = [0u8; 2 * PSEUDONYM_BYTES];
        // Cannot fail: the buffer has room for exactly two digits per byte.
        let _ = hex::encode_to_slice(&tag.as_ref()[..PSEUDONYM_BYTES], &mut digits);

        let mut pseudonym = String::with_capacity(PSEUDONYM_PREFIX.len() + digits.len());
        pseudonym.push_str(PSEUDONYM_PREFIX);
        pseudonym.extend(digits.iter().map(|&digit| char::from(digit)));
        pseudonym
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// Rewrites `value` in `style`. `detector` names what found the value, so
/// that pseudonyms ignore formatting: the same card with or without spaces
/// gets the same pseudonym.
pub fn apply(
    style: MaskStyle,
    value: &str,
    detector: Option<&Detector>,
    key: Option<&PseudonymKey>,
) -> String {
    match (style, key) {
        (MaskStyle::Redact, _) | (MaskStyle::Pseudonym, None) => REDACTED.to_owned(),
        (MaskStyle::Pci, _) => truncate_pan(value),
        (MaskStyle::Pseudonym, Some(key)) => key.pseudonym(&canonical(value, detector)),
    }
}

fn truncate_pan(value: &str) -> String {
    let digit_count = value.chars().filter(char::is_ascii_digit).count();
    let (keep_first, keep_last) = if digit_count >= 13 { (6, 4) } else { (0, 0) };

    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                let kept = seen <= keep_first || seen > digit_count - keep_last;
                if kept {
                    c
                } else {
                    '*'
                }
            } else if c.is_alphanumeric() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// Returns the form of a detected value that pseudonyms are computed from.
fn canonical<'v>(value: &'v str, detector: Option<&Detector>) -> Cow<'v, str> {
    match detector {
        Some(Detector::Card) => value.chars().filter(char::is_ascii_digit).collect(),
        Some(Detector::Phone) => value
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect(),
        Some(Detector::Iban) => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        Some(Detector::Email) => Cow::Owned(value.to_lowercase()),
        Some(Detector::Pattern(_)) | None => Cow::Borrowed(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &[u8] = b"tenant-a-pseudonym-key-0123456789";
    const KEY_B: &[u8] = b"tenant-b-pseudonym-key-0123456789";

    #[test]
    fn pci_keeps_first_six_last_four() {
        let cases = [
            ("16 digits unbroken", "4111111111111111", "411111******1111"),
            ("spaces kept", "4111 1111 1111 1111", "4111 11** **** 1111"),
            ("dashes kept", "5500-0000-0000-0004", "5500-00**-****-0004"),
            ("amex 15 digits", "378282246310005", "378282*****0005"),
            ("13 digits", "4222222222222", "422222***2222"),
            ("19 digits", "4000000000000000006", "400000*********0006"),
            ("short value fully hidden", "123456789", "*********"),
            ("letters hidden", "ab-1234", "**-****"),
        ];

        for (description, value, expected) in cases {
            assert_eq!(
                apply(MaskStyle::Pci, value, Some(&Detector::Card), None),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn redact_hides_length() {
        for value in ["a", "4111111111111111", "a much longer secret value"] {
            assert_eq!(apply(MaskStyle::Redact, value, None, None), REDACTED);
        }
    }

    #[test]
    fn pseudonym_stable_per_tenant() {
        let key_a = PseudonymKey::new(KEY_A).unwrap();
        let key_b = PseudonymKey::new(KEY_B).unwrap();
        let pseudonym = |key, value| apply(MaskStyle::Pseudonym, value, None, Some(key));

        let first = pseudonym(&key_a, "alice@example.com");

        // HMAC-SHA-256 of the value under the key, computed with Python's
        // hmac module: the first 8 bytes in lowercase hex.
        assert_eq!(first, "pn_26f2ae456af956d8");
        assert_eq!(pseudonym(&key_a, "alice@example.com"), first);
        assert_ne!(pseudonym(&key_a, "bob@example.com"), first);
        assert_ne!(pseudonym(&key_b, "alice@example.com"), first);
    }

    #[test]
    fn pseudonym_ignores_formatting() {
        let key = PseudonymKey::new(KEY_A).unwrap();
        let cases = [
            (
                "card separators",
                Detector::Card,
                "4111 1111 1111 1111",
                "4111111111111111",
            ),
            (
                "phone separators",
                Detector::Phone,
                "+44 20 7946 0958",
                "+442079460958",
            ),
            (
                "iban groups and case",
                Detector::Iban,
                "de89 3704 0044 0532 0130 00",
                "DE89370400440532013000",
            ),
            (
                "email case",
                Detector::Email,
                "Alice@Example.COM",
                "alice@example.com",
            ),
        ];

        for (description, detector, formatted, plain) in cases {
            let masked = |value| apply(MaskStyle::Pseudonym, value, Some(&detector), Some(&key));
            assert_eq!(masked(formatted), masked(plain), "{description}");
        }
    }

    #[test]
    fn pseudonym_without_key_redacts() {
        assert_eq!(apply(MaskStyle::Pseudonym, "alice", None, None), REDACTED);
    }

    #[test]
    fn short_pseudonym_key_rejected() {
        let error = PseudonymKey::new(b"too short").unwrap_err();

        assert_eq!(error.length, 9);
        assert_eq!(
            error.to_string(),
            "pseudonym key is 9 bytes long; expected at least 32 random bytes"
        );
    }

    #[test]
    fn pseudonym_key_debug_redacted() {
        let key = PseudonymKey::new(KEY_A).unwrap();

        assert_eq!(format!("{key:?}"), "PseudonymKey(<redacted>)");
    }
}
