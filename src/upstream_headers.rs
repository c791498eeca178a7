//! The verified identity the gateway passes to the upstream as request
//! headers, and the list of header names a client must never be able to set.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authn::Identity;
use crate::config::reader::{found, scalar_text, MapReader};

/// Names of the identity headers sent upstream.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Incoming headers starting with this prefix are removed. Default
    /// `x-portcullis-`.
    pub prefix: String,
    pub subject: HeaderName,
    pub client_id: HeaderName,
    pub scopes: HeaderName,
    pub issuer: HeaderName,
    /// The verified tenant id.
    pub tenant: HeaderName,
    /// Extra headers taken from claims: header name and dotted claim path.
    pub claims: Vec<(HeaderName, String)>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            prefix: "x-portcullis-".into(),
            subject: HeaderName::from_static("x-portcullis-subject"),
            client_id: HeaderName::from_static("x-portcullis-client-id"),
            scopes: HeaderName::from_static("x-portcullis-scopes"),
            issuer: HeaderName::from_static("x-portcullis-issuer"),
            tenant: HeaderName::from_static("x-portcullis-tenant"),
            claims: Vec::new(),
        }
    }
}

impl IdentityHeaders {
    /// Returns every header name the gateway sets for the upstream. Incoming
    /// copies are removed, so a client can never spoof them.
    pub fn owned_names(&self) -> Vec<HeaderName> {
        let mut names = vec![
            self.subject.clone(),
            self.client_id.clone(),
            self.scopes.clone(),
            self.issuer.clone(),
            self.tenant.clone(),
        ];
        names.extend(self.claims.iter().map(|(name, _)| name.clone()));
        names
    }

    /// Adds the identity to an upstream request. Values that are not valid
    /// header text are left out rather than altered.
    pub fn insert(&self, headers: &mut HeaderMap, identity: &Identity) {
        put(headers, &self.subject, identity.subject.as_deref());
        put(headers, &self.client_id, identity.client_id.as_deref());
        put(headers, &self.issuer, Some(&identity.issuer));
        put(headers, &self.tenant, identity.tenant.as_deref());
        if !identity.scopes.is_empty() {
            put(headers, &self.scopes, Some(&identity.scopes.join(" ")));
        }
        for (name, claim) in &self.claims {
            put(headers, name, identity.claim_text(claim).as_deref());
        }
    }
}

fn put(headers: &mut HeaderMap, name: &HeaderName, value: Option<&str>) {
    if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name.clone(), value);
    }
}

pub fn read(top: &MapReader) -> Option<IdentityHeaders> {
    let mut config = IdentityHeaders::default();
    let Some(map) = top.map("identity_headers") else {
        return top.get("identity_headers").is_none().then_some(config);
    };
    let mut ok = true;
    if let Some(prefix) = map.string("prefix") {
        config.prefix = prefix.to_ascii_lowercase();
        let name =
            |suffix: &str| HeaderName::from_bytes(format!("{}{suffix}", config.prefix).as_bytes());
        match (
            name("subject"),
            name("client-id"),
            name("scopes"),
            name("issuer"),
            name("tenant"),
        ) {
            (Ok(subject), Ok(client_id), Ok(scopes), Ok(issuer), Ok(tenant)) => {
                (
                    config.subject,
                    config.client_id,
                    config.scopes,
                    config.issuer,
                    config.tenant,
                ) = (subject, client_id, scopes, issuer, tenant);
            }
            _ => {
                let node = map.get("prefix").unwrap();
                map.problems.at(
                    node,
                    &map.child_path("prefix"),
                    format!(
                        "expected a header name prefix such as x-portcullis-, found {}",
                        found(node)
                    ),
                );
                ok = false;
            }
        }
    }
    for (key, field) in [
        ("subject", 0),
        ("client_id", 1),
        ("scopes", 2),
        ("issuer", 3),
        ("tenant", 4),
    ] {
        let Some(node) = map.get(key) else { continue };
        match scalar_text(node).and_then(|t| HeaderName::from_bytes(t.as_bytes()).ok()) {
            Some(name) => match field {
                0 => config.subject = name,
                1 => config.client_id = name,
                2 => config.scopes = name,
                3 => config.issuer = name,
                _ => config.tenant = name,
            },
            None => {
                map.problems.at(
                    node,
                    &map.child_path(key),
                    format!("expected a header name, found {}", found(node)),
                );
                ok = false;
            }
        }
    }
    if let Some(claims) = map.map("claims") {
        for (name, key, value) in claims.named_entries() {
            let header = HeaderName::from_bytes(name.as_bytes());
            match (header, scalar_text(value)) {
                (Ok(header), Some(claim)) if !claim.is_empty() => {
                    config.claims.push((header, claim.to_string()))
                }
                (Err(_), _) => {
                    claims
                        .problems
                        .at(key, &claims.child_path(&name), "expected a header name");
                    ok = false;
                }
                _ => {
                    claims.problems.at(
                        value,
                        &claims.child_path(&name),
                        format!(
                            "expected a claim path such as tenant_id, found {}",
                            found(value)
                        ),
                    );
                    ok = false;
                }
            }
        }
    }
    map.finish();
    ok.then_some(config)
}
