//! Tenancy: which tenant a request addresses, which tenant its credential
//! belongs to, and the check that they are the same.
//!
//! The addressed tenant is resolved from a path prefix right after
//! normalization, and the prefix is removed before routing. A host or
//! header is read after routing, because a route may choose its own
//! source. The credential's tenant is bound
//! after authentication: by its issuer, each issuer belonging to one
//! tenant, and by the tenant claim when the token carries one. A mismatch
//! is a 403 `tenant_mismatch`, logged at warn for audit.

pub mod config;

use std::collections::HashMap;
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;

use crate::authn::Identity;
use crate::tenancy::config::{TenantConfig, TenantFrom};

/// The reason the tenancy stage rejected a request.
#[derive(Debug, PartialEq, Eq)]
pub enum TenancyError {
    /// The request names no tenant, or one that does not exist. It gets the
    /// same 404 as an unknown route, so tenant ids cannot be probed.
    UnknownTenant,
    /// The credential belongs to another tenant than the one addressed, or
    /// its tenant claim contradicts its issuer's tenant.
    Mismatch,
}

/// Finds the tenant a request addresses. For a path prefix, returns the
/// path with the prefix removed.
pub fn resolve<'a>(
    from: &TenantFrom,
    tenants: &'a HashMap<String, Arc<TenantConfig>>,
    parts: &Parts,
    path: &str,
) -> Result<(&'a Arc<TenantConfig>, Option<String>), TenancyError> {
    let (id, rest) = match from {
        TenantFrom::Host { before, after } => (host_tenant(parts, before, after), None),
        TenantFrom::Header(name) => (header_tenant(parts, name), None),
        TenantFrom::PathPrefix { before } => match path.strip_prefix(before.as_str()) {
            Some(rest) => {
                let (id, remainder) = rest.split_once('/').map_or((rest, ""), |(id, r)| (id, r));
                (Some(id.to_string()), Some(format!("/{remainder}")))
            }
            None => (None, None),
        },
    };
    let tenant = id
        .as_deref()
        .and_then(|id| tenants.get(id))
        .ok_or(TenancyError::UnknownTenant)?;
    Ok((tenant, rest))
}

/// Reads the tenant header. It must appear exactly once, and not also
/// spelled with `_` for `-`, because an upstream that maps `-` to `_`
/// CGI-style reads both spellings under one name and could pick another
/// copy than the one the tenant was resolved from.
fn header_tenant(parts: &Parts, name: &HeaderName) -> Option<String> {
    let folded = name.as_str().replace('_', "-");
    let mut copies = parts
        .headers
        .iter()
        .filter(|(copy, _)| copy.as_str().replace('_', "-") == folded);
    let (copy, value) = copies.next()?;
    if copies.next().is_some() || copy != name {
        return None;
    }
    value.to_str().ok().map(str::to_string)
}

/// Reads the tenant from the host. More than one `Host` line names no
/// tenant, because an upstream that keeps the `Host` may read another line.
fn host_tenant(parts: &Parts, before: &str, after: &str) -> Option<String> {
    let mut lines = parts.headers.get_all(http::header::HOST).iter();
    let host = match (lines.next(), lines.next()) {
        (Some(line), None) => line.to_str().ok()?,
        (None, _) => parts.uri.host()?,
        (Some(_), Some(_)) => return None,
    };
    let host = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let host = host.to_ascii_lowercase();
    let id = host.strip_prefix(before)?.strip_suffix(after)?;
    (!id.is_empty() && !id.contains('.')).then(|| id.to_string())
}

/// Checks that the credential's tenant agrees with its tenant claim and
/// with the addressed tenant (when the request addresses one).
pub fn bind(identity: &Identity, addressed: Option<&TenantConfig>) -> Result<(), TenancyError> {
    if let (Some(claimed), Some(bound)) =
        (identity.tenant_claim.as_deref(), identity.tenant.as_deref())
    {
        if claimed != bound {
            return Err(TenancyError::Mismatch);
        }
    }
    match addressed {
        Some(tenant) if identity.tenant.as_deref() != Some(tenant.id.as_str()) => {
            Err(TenancyError::Mismatch)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> HashMap<String, Arc<TenantConfig>> {
        ["acme", "globex"]
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    Arc::new(TenantConfig {
                        id: id.to_string(),
                        rate_limits: Vec::new(),
                        headers: Vec::new(),
                        pseudonym_key: None,
                    }),
                )
            })
            .collect()
    }

    fn parts(host: &str, header: Option<&str>) -> Parts {
        let mut builder = http::Request::get("/users").header("host", host);
        if let Some(value) = header {
            builder = builder.header("x-tenant", value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_resolution_cases() {
        let from = TenantFrom::Host {
            before: String::new(),
            after: ".api.example.com".into(),
        };
        let cases = [
            ("tenant subdomain", "acme.api.example.com", Some("acme")),
            ("port is ignored", "acme.api.example.com:8443", Some("acme")),
            (
                "case-insensitive host",
                "GLOBEX.api.example.com",
                Some("globex"),
            ),
            ("unknown tenant", "initech.api.example.com", None),
            ("nested subdomain", "x.acme.api.example.com", None),
            ("other domain", "acme.api.example.org", None),
            ("bare domain", "api.example.com", None),
        ];
        let tenants = tenants();
        for (description, host, expected) in cases {
            let result = resolve(&from, &tenants, &parts(host, None), "/users");
            assert_eq!(
                result.ok().map(|(t, _)| t.id.as_str()),
                expected,
                "{description}"
            );
        }
    }

    #[test]
    fn path_prefix_is_removed() {
        let from = TenantFrom::PathPrefix {
            before: "/t/".into(),
        };
        let tenants = tenants();
        let (tenant, rest) =
            resolve(&from, &tenants, &parts("gw", None), "/t/acme/users/1").unwrap();
        assert_eq!(tenant.id, "acme");
        assert_eq!(rest.as_deref(), Some("/users/1"));
        let (_, rest) = resolve(&from, &tenants, &parts("gw", None), "/t/acme").unwrap();
        assert_eq!(rest.as_deref(), Some("/"));
        assert_eq!(
            resolve(&from, &tenants, &parts("gw", None), "/users").unwrap_err(),
            TenancyError::UnknownTenant
        );
        assert_eq!(
            resolve(&from, &tenants, &parts("gw", None), "/t/initech/users").unwrap_err(),
            TenancyError::UnknownTenant
        );
    }

    #[test]
    fn header_resolution() {
        let from = TenantFrom::Header(http::HeaderName::from_static("x-tenant"));
        let tenants = tenants();
        assert_eq!(
            resolve(&from, &tenants, &parts("gw", Some("globex")), "/users")
                .unwrap()
                .0
                .id,
            "globex"
        );
        assert!(resolve(&from, &tenants, &parts("gw", None), "/users").is_err());
    }

    #[test]
    fn ambiguous_address_names_no_tenant() {
        let host = TenantFrom::Host {
            before: String::new(),
            after: ".api.example.com".into(),
        };
        let header = TenantFrom::Header(http::HeaderName::from_static("x-tenant"));
        // (description, tenant source, request headers)
        type Case<'a> = (&'a str, &'a TenantFrom, &'a [(&'a str, &'a str)]);
        let cases: [Case; 5] = [
            (
                "two Host lines",
                &host,
                &[
                    ("host", "acme.api.example.com"),
                    ("host", "globex.api.example.com"),
                ],
            ),
            (
                "two equal Host lines",
                &host,
                &[
                    ("host", "acme.api.example.com"),
                    ("host", "acme.api.example.com"),
                ],
            ),
            (
                "tenant header twice",
                &header,
                &[("x-tenant", "acme"), ("x-tenant", "globex")],
            ),
            (
                "tenant header and its _ spelling",
                &header,
                &[("x-tenant", "acme"), ("x_tenant", "globex")],
            ),
            ("only the _ spelling", &header, &[("x_tenant", "acme")]),
        ];
        let tenants = tenants();
        for (description, from, headers) in cases {
            let mut builder = http::Request::get("/users");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            let parts = builder.body(()).unwrap().into_parts().0;
            let result = resolve(from, &tenants, &parts, "/users");
            assert_eq!(
                result.err(),
                Some(TenancyError::UnknownTenant),
                "{description}"
            );
        }
    }

    #[test]
    fn binding_cases() {
        let tenants = tenants();
        let identity = |tenant: Option<&str>, claim: Option<&str>| Identity {
            tenant: tenant.map(str::to_string),
            tenant_claim: claim.map(str::to_string),
            ..Identity::for_tests("https://issuer.test")
        };
        let acme = tenants["acme"].as_ref();
        let cases = [
            ("own tenant", identity(Some("acme"), None), Some(acme), true),
            (
                "own tenant with agreeing claim",
                identity(Some("acme"), Some("acme")),
                Some(acme),
                true,
            ),
            (
                "claim names another tenant",
                identity(Some("acme"), Some("globex")),
                Some(acme),
                false,
            ),
            (
                "issuer of another tenant",
                identity(Some("globex"), None),
                Some(acme),
                false,
            ),
            (
                "issuer bound to no tenant",
                identity(None, Some("acme")),
                Some(acme),
                false,
            ),
            (
                "nothing addressed, claim disagrees",
                identity(Some("acme"), Some("globex")),
                None,
                false,
            ),
            (
                "nothing addressed",
                identity(Some("acme"), None),
                None,
                true,
            ),
        ];
        for (description, identity, addressed, allowed) in cases {
            assert_eq!(bind(&identity, addressed).is_ok(), allowed, "{description}");
        }
    }
}
