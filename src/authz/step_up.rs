//! Step-up authentication (RFC 9470): a route may require the token to
//! come from an authentication of a certain strength (`acr`), with certain
//! methods (`amr`, such as `mfa`), or recent enough (`auth_time`). A token
//! that falls short gets 401 `insufficient_user_authentication` with the
//! `acr_values` and `max_age` the client must ask its provider for.

use std::time::Duration;

use crate::authn::Identity;

/// The strength and age a route requires of the authentication behind a
/// token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// Accepted `acr` values; the token's `acr` must be one of them.
    pub acr: Vec<String>,
    /// Methods the token's `amr` must all contain, such as `mfa`.
    pub amr: Vec<String>,
    /// Maximum age of the authentication: `auth_time` must be at most this
    /// long ago.
    pub max_age: Option<Duration>,
}

/// The challenge parameters of a failed step-up check (RFC 9470 section 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    /// Space-separated `acr_values` to request, when `acr` is required.
    pub acr_values: Option<String>,
    /// `max_age` in seconds, when a maximum age is required.
    pub max_age: Option<u64>,
}

impl StepUp {
    pub fn is_empty(&self) -> bool {
        self.acr.is_empty() && self.amr.is_empty() && self.max_age.is_none()
    }

    /// Checks the token's `acr`, `amr` and `auth_time` at `now` (unix
    /// seconds), allowing `skew` for an `auth_time` slightly in the future.
    pub fn check(&self, identity: &Identity, now: f64, skew: Duration) -> Result<(), Insufficient> {
        if self.is_empty() {
            return Ok(());
        }
        let claims = &identity.claims;
        let acr_ok = self.acr.is_empty()
            || claims
                .get("acr")
                .and_then(|v| v.as_str())
                .is_some_and(|acr| self.acr.iter().any(|a| a == acr));
        let amr: Vec<&str> = match claims.get("amr") {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let amr_ok = self.amr.iter().all(|method| amr.contains(&method.as_str()));
        let age_ok = match self.max_age {
            None => true,
            Some(max_age) => match claims.get("auth_time").and_then(|v| v.as_f64()) {
                Some(auth_time) => {
                    let age = now - auth_time;
                    age <= max_age.as_secs_f64() && age >= -skew.as_secs_f64()
                }
                None => false,
            },
        };
        if acr_ok && amr_ok && age_ok {
            return Ok(());
        }
        Err(Insufficient {
            acr_values: (!self.acr.is_empty()).then(|| self.acr.join(" ")),
            max_age: self.max_age.map(|age| age.as_secs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwt::Claims;

    fn identity(claims: serde_json::Value) -> Identity {
        let serde_json::Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        Identity {
            claims: Claims::from_map(map),
            ..Identity::for_tests("https://issuer.test")
        }
    }

    #[test]
    fn step_up_cases() {
        let now = 1_000_000.0;
        let skew = Duration::from_secs(30);
        let mfa_recent = StepUp {
            amr: vec!["mfa".into()],
            max_age: Some(Duration::from_secs(600)),
            ..Default::default()
        };
        let gold = StepUp {
            acr: vec!["gold".into(), "platinum".into()],
            ..Default::default()
        };
        let cases = [
            (
                "mfa 2 minutes ago",
                &mfa_recent,
                serde_json::json!({"amr": ["pwd", "mfa"], "auth_time": now - 120.0}),
                true,
            ),
            (
                "mfa exactly at max age",
                &mfa_recent,
                serde_json::json!({"amr": ["mfa"], "auth_time": now - 600.0}),
                true,
            ),
            (
                "mfa 11 minutes ago",
                &mfa_recent,
                serde_json::json!({"amr": ["mfa"], "auth_time": now - 660.0}),
                false,
            ),
            (
                "no mfa",
                &mfa_recent,
                serde_json::json!({"amr": ["pwd"], "auth_time": now - 10.0}),
                false,
            ),
            (
                "amr as a string",
                &mfa_recent,
                serde_json::json!({"amr": "mfa", "auth_time": now - 10.0}),
                false,
            ),
            (
                "no auth_time",
                &mfa_recent,
                serde_json::json!({"amr": ["mfa"]}),
                false,
            ),
            (
                "auth_time in the future beyond skew",
                &mfa_recent,
                serde_json::json!({"amr": ["mfa"], "auth_time": now + 60.0}),
                false,
            ),
            (
                "acr listed",
                &gold,
                serde_json::json!({"acr": "platinum"}),
                true,
            ),
            (
                "acr not listed",
                &gold,
                serde_json::json!({"acr": "silver"}),
                false,
            ),
            ("acr missing", &gold, serde_json::json!({}), false),
        ];
        for (description, step_up, claims, allowed) in cases {
            assert_eq!(
                step_up.check(&identity(claims), now, skew).is_ok(),
                allowed,
                "{description}"
            );
        }
    }

    #[test]
    fn challenge_names_requirements() {
        let step_up = StepUp {
            acr: vec!["gold".into()],
            max_age: Some(Duration::from_secs(300)),
            ..Default::default()
        };
        let error = step_up
            .check(&identity(serde_json::json!({})), 0.0, Duration::ZERO)
            .unwrap_err();
        assert_eq!(
            error,
            Insufficient {
                acr_values: Some("gold".into()),
                max_age: Some(300)
            }
        );
    }
}
