//! The contents of an issued token: the scopes granted from those requested and
//! those allowed, and the RFC 9068 claims of the JWT access token.

use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

/// Returns whether `scope` is a scope-token of RFC 6749 section 3.3: one or
/// more printable ASCII characters other than space, `"` and `\`.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// The reason requested scopes cannot be granted (`invalid_scope`).
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// A scope is not a valid scope-token.
    Malformed,
    /// The client may not have this scope.
    NotAllowed(String),
}

/// Narrows the requested scopes to the allowed ones. Without a request (or
/// with an empty `scope`) every allowed scope is granted. A requested scope
/// outside the allowed ones fails the whole request, as RFC 6749 section
/// 5.2 (`invalid_scope`) expects, rather than being dropped silently.
pub fn grant_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, ScopeError> {
    let requested = requested.map(str::trim).filter(|text| !text.is_empty());
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };

    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(scope) {
            return Err(ScopeError::Malformed);
        }
        if !allowed.iter().any(|a| a == scope) {
            return Err(ScopeError::NotAllowed(scope.to_string()));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_string());
        }
    }
    Ok(granted)
}

/// The facts an access token is built from.
pub struct TokenFacts<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    /// `sub` and `client_id`: the configured client id, or `pk_<id>` of an
    /// API key.
    pub client_id: &'a str,
    pub tenant: Option<&'a str>,
    pub scopes: &'a [String],
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
}

/// Builds the RFC 9068 claims. `aud` is a string for one audience and an
/// array for several; `scope` is left out when nothing is granted.
pub fn build(facts: &TokenFacts, jti: &str) -> Value {
    let audience = match facts.audiences {
        [one] => Value::String(one.clone()),
        many => many.iter().cloned().collect(),
    };
    let mut claims = json!({
        "iss": facts.issuer,
        "aud": audience,
        "sub": facts.client_id,
        "client_id": facts.client_id,
        "iat": facts.issued_at,
        "exp": facts.expires_at,
        "jti": jti,
    });
    if let Some(tenant) = facts.tenant {
        claims["tenant_id"] = tenant.into();
    }
    if !facts.scopes.is_empty() {
        claims["scope"] = facts.scopes.join(" ").into();
    }
    claims
}

/// Returns a new token id: 128 random bits as 32 hex digits.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scope_narrowing_cases() {
        let allowed = strings(&["read:users", "write:users"]);
        // (description, requested, expected)
        type Case = (
            &'static str,
            Option<&'static str>,
            Result<Vec<String>, ScopeError>,
        );
        let cases: [Case; 8] = [
            (
                "no request gets every allowed scope",
                None,
                Ok(allowed.clone()),
            ),
            (
                "empty request gets every allowed scope",
                Some(""),
                Ok(allowed.clone()),
            ),
            (
                "one allowed scope",
                Some("read:users"),
                Ok(strings(&["read:users"])),
            ),
            (
                "request order kept, repeats dropped",
                Some("write:users read:users write:users"),
                Ok(strings(&["write:users", "read:users"])),
            ),
            (
                "extra spaces ignored",
                Some("  read:users  "),
                Ok(strings(&["read:users"])),
            ),
            (
                "scope outside the allowed ones",
                Some("read:users admin"),
                Err(ScopeError::NotAllowed("admin".into())),
            ),
            (
                "quote is not a scope character",
                Some("read\"users"),
                Err(ScopeError::Malformed),
            ),
            (
                "tab is not a scope character",
                Some("read:users\tx"),
                Err(ScopeError::Malformed),
            ),
        ];
        for (description, requested, expected) in cases {
            assert_eq!(grant_scopes(requested, &allowed), expected, "{description}");
        }
    }

    #[test]
    fn nothing_allowed_grants_nothing() {
        assert_eq!(grant_scopes(None, &[]), Ok(Vec::new()));
        assert_eq!(
            grant_scopes(Some("read:users"), &[]),
            Err(ScopeError::NotAllowed("read:users".into()))
        );
    }

    #[test]
    fn claims_of_a_tenant_client() {
        let audiences = strings(&["users-api"]);
        let scopes = strings(&["read:users", "write:users"]);
        let facts = TokenFacts {
            issuer: "https://gateway.example.test",
            audiences: &audiences,
            client_id: "billing",
            tenant: Some("acme"),
            scopes: &scopes,
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_300,
        };

        let claims = build(&facts, "00112233445566778899aabbccddeeff");

        assert_eq!(
            claims,
            json!({
                "iss": "https://gateway.example.test",
                "aud": "users-api",
                "sub": "billing",
                "client_id": "billing",
                "tenant_id": "acme",
                "scope": "read:users write:users",
                "iat": 1_700_000_000u64,
                "exp": 1_700_000_300u64,
                "jti": "00112233445566778899aabbccddeeff",
            })
        );
    }

    #[test]
    fn claims_without_tenant_or_scope() {
        let audiences = strings(&["users-api", "orders-api"]);
        let facts = TokenFacts {
            issuer: "https://gateway.example.test",
            audiences: &audiences,
            client_id: "pk_0123456789abcdef",
            tenant: None,
            scopes: &[],
            issued_at: 10,
            expires_at: 20,
        };

        let claims = build(&facts, "jti");

        assert_eq!(claims["aud"], json!(["users-api", "orders-api"]));
        assert!(claims.get("tenant_id").is_none());
        assert!(claims.get("scope").is_none());
        assert_eq!(claims["sub"], "pk_0123456789abcdef");
    }

    #[test]
    fn jti_is_128_random_bits() {
        let first = new_jti();
        let second = new_jti();

        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }
}
