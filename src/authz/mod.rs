//! Authorization. Tier 1: the scopes, roles and claims a route requires,
//! checked on every request after authentication and rate limiting.
//! Tier 2 ([`policy`]): a Rego rule, only on routes that name one, with
//! decisions cached ([`decision_cache`]).

pub mod config;
pub mod decision_cache;
pub mod obligations;
pub mod opa_server;
pub mod policy;
pub mod step_up;

use crate::authn::Identity;
use crate::route::config::{Match, Requirements};

/// The reason an authenticated caller may not use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The required scopes, for the `WWW-Authenticate` challenge.
    InsufficientScope {
        required: String,
    },
    MissingRole,
    ClaimMismatch,
    /// The route's Rego rule did not allow the request:
    /// `policy_denied`, or `policy_error` when it failed to evaluate.
    Policy {
        reason: &'static str,
    },
}

impl Denial {
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::MissingRole => "role_missing",
            Denial::ClaimMismatch => "claim_mismatch",
            Denial::Policy { reason } => reason,
        }
    }
}

/// Checks an identity against a route's requirements.
pub fn check(requirements: &Requirements, identity: &Identity) -> Result<(), Denial> {
    let scopes_match = requirements.scopes_match.unwrap_or(Match::All);
    if !satisfied(&requirements.scopes, &identity.scopes, scopes_match) {
        return Err(Denial::InsufficientScope {
            required: requirements.scopes.join(" "),
        });
    }
    let roles_match = requirements.roles_match.unwrap_or(Match::All);
    if !satisfied(&requirements.roles, &identity.roles, roles_match) {
        return Err(Denial::MissingRole);
    }
    for claim in &requirements.claims {
        let matches = identity
            .claim_text(&claim.path)
            .is_some_and(|value| claim.pattern.is_match(&value));
        if !matches {
            return Err(Denial::ClaimMismatch);
        }
    }
    Ok(())
}

fn satisfied(required: &[String], held: &[String], mode: Match) -> bool {
    if required.is_empty() {
        return true;
    }
    match mode {
        Match::All => required.iter().all(|r| held.contains(r)),
        Match::Any => required.iter().any(|r| held.contains(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::config::ClaimRequirement;

    fn identity(scopes: &[&str], roles: &[&str]) -> Identity {
        Identity {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..Identity::for_tests("https://issuer.test")
        }
    }

    fn requirements(scopes: &[&str], mode: Match) -> Requirements {
        Requirements {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            scopes_match: Some(mode),
            ..Default::default()
        }
    }

    #[test]
    fn scope_cases() {
        let cases = [
            (
                "all held",
                &["read:users", "write:users"][..],
                Match::All,
                &["read:users", "write:users", "x"][..],
                true,
            ),
            (
                "one missing of all",
                &["read:users", "write:users"],
                Match::All,
                &["read:users"],
                false,
            ),
            (
                "one of any",
                &["read:users", "write:users"],
                Match::Any,
                &["write:users"],
                true,
            ),
            (
                "none of any",
                &["read:users"],
                Match::Any,
                &["read:user"],
                false,
            ),
            (
                "prefix is not a match",
                &["read:users"],
                Match::All,
                &["read:users:all"],
                false,
            ),
            ("nothing required", &[], Match::All, &[], true),
        ];
        for (description, required, mode, held, allowed) in cases {
            let result = check(&requirements(required, mode), &identity(held, &[]));
            assert_eq!(result.is_ok(), allowed, "{description}");
        }
    }

    #[test]
    fn insufficient_scope_names_required() {
        let result = check(
            &requirements(&["read:users"], Match::All),
            &identity(&[], &[]),
        );
        assert_eq!(
            result,
            Err(Denial::InsufficientScope {
                required: "read:users".into()
            })
        );
    }

    #[test]
    fn missing_role_denied() {
        let req = Requirements {
            roles: vec!["admin".into()],
            ..Default::default()
        };
        assert_eq!(
            check(&req, &identity(&[], &["user"])),
            Err(Denial::MissingRole)
        );
        assert!(check(&req, &identity(&[], &["admin"])).is_ok());
    }

    #[test]
    fn claim_pattern_must_match_whole_value() {
        let req = Requirements {
            claims: vec![ClaimRequirement {
                path: "sub".into(),
                pattern: regex::Regex::new("^(?:user-[0-9]+)$").unwrap(),
            }],
            ..Default::default()
        };
        let mut ok = identity(&[], &[]);
        ok.claims = crate::authn::jwt::Claims::from_map(
            serde_json::from_str(r#"{"sub":"user-12"}"#).unwrap(),
        );
        assert!(check(&req, &ok).is_ok());
        let mut bad = identity(&[], &[]);
        bad.claims = crate::authn::jwt::Claims::from_map(
            serde_json::from_str(r#"{"sub":"user-12x"}"#).unwrap(),
        );
        assert_eq!(check(&req, &bad), Err(Denial::ClaimMismatch));
    }
}
