//! Configuration of tenants: the client organisations the gateway serves,
//! each with its own identity providers, and how a request names the
//! tenant it addresses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::authn::config::{read_claim_mapping, read_issuer, IssuerConfig};
use crate::config::reader::{found, scalar_text, MapReader};
use crate::config::yaml::Node;
use crate::ratelimit::config::RateLimitPolicy;

#[derive(Debug)]
pub struct TenantConfig {
    /// Letters, digits, `-` and `_`, at most 64; used in hosts, paths,
    /// headers, logs and metric labels.
    pub id: String,
    /// Policies every request of this tenant is counted against.
    pub rate_limits: Vec<Arc<RateLimitPolicy>>,
    /// Static headers sent upstream with every request of this tenant.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Key of the pseudonym masking style for this tenant's responses.
    pub pseudonym_key: Option<crate::mask::PseudonymKey>,
}

/// The part of a request that names the tenant it addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantFrom {
    /// The `Host` (without port) is `<before>{tenant}<after>`, such as
    /// `{tenant}.api.example.com`.
    Host { before: String, after: String },
    /// The path starts with `<before>{tenant}`, such as `/t/{tenant}`; the
    /// prefix is removed before routing and forwarding.
    PathPrefix { before: String },
    /// A request header carries the tenant id.
    Header(HeaderName),
}

/// The tenants and the issuers declared under them.
pub struct Tenants {
    pub tenants: HashMap<String, Arc<TenantConfig>>,
    /// Issuers declared under tenants, bound to their tenant.
    pub issuers: Vec<TenantIssuer>,
}

/// An issuer declared under a tenant, with the position of its URL, so
/// that a problem found when the issuers of all sections are joined can
/// point at it.
pub struct TenantIssuer {
    pub config: IssuerConfig,
    /// The `issuer` value.
    pub node: Node,
    /// Its key path, such as `tenants[1].issuers[0].issuer`.
    pub path: String,
}

pub fn is_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn read_tenants(
    top: &MapReader,
    base_dir: &Path,
    declared_policies: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
) -> Option<Tenants> {
    let mut result = Tenants {
        tenants: HashMap::new(),
        issuers: Vec::new(),
    };
    let Some(items) = top.list("tenants") else {
        return top.get("tenants").is_none().then_some(result);
    };
    let mut ok = true;
    for (path, node) in items {
        let Some(map) = MapReader::open(node, &path, top.problems) else {
            ok = false;
            continue;
        };
        // A tenant whose clients all use API keys or tokens of the
        // gateway's own token service needs no issuer.
        let issuers_required = top.get("api_keys").is_none() && top.get("token_service").is_none();
        ok &= read_tenant(
            &map,
            base_dir,
            declared_policies,
            policies,
            issuers_required,
            &mut result,
        );
        map.finish();
    }
    ok.then_some(result)
}

fn read_tenant(
    map: &MapReader,
    base_dir: &Path,
    declared_policies: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
    issuers_required: bool,
    result: &mut Tenants,
) -> bool {
    let id = map.required_string("id", "a tenant id such as acme");
    let mapping = read_claim_mapping(map);
    let rate_limits =
        crate::ratelimit::config::resolve_names(map, "rate_limits", declared_policies, policies);
    let headers = read_headers(map);
    let pseudonym_key = crate::mask::config::read_pseudonym_key(map, base_dir);
    let mut issuers = Vec::new();
    let mut ok =
        mapping.is_some() && rate_limits.is_some() && headers.is_some() && pseudonym_key.is_some();
    match map.list("issuers") {
        Some(items) if !items.is_empty() => {
            for (path, node) in items {
                let Some(issuer_map) = MapReader::open(node, &path, map.problems) else {
                    ok = false;
                    continue;
                };
                match (read_issuer(&issuer_map, base_dir), issuer_map.get("issuer")) {
                    (Some(config), Some(node)) => issuers.push(TenantIssuer {
                        config,
                        node: node.clone(),
                        path: issuer_map.child_path("issuer"),
                    }),
                    _ => ok = false,
                }
                issuer_map.finish();
            }
        }
        Some(_) => {
            map.problems.at(
                map.get("issuers").unwrap(),
                &map.child_path("issuers"),
                "expected at least one issuer",
            );
            ok = false;
        }
        None if map.get("issuers").is_none() && !issuers_required => {}
        None => {
            if map.get("issuers").is_none() {
                map.missing(
                    "issuers",
                    "the tenant's identity providers, each like an entry of authentication.issuers",
                );
            }
            ok = false;
        }
    }

    let Some(id) = id else { return false };
    if !is_tenant_id(&id) {
        map.problems.at(
            map.get("id").unwrap(),
            &map.child_path("id"),
            "expected letters, digits, '-' and '_' (at most 64)",
        );
        return false;
    }
    if result.tenants.contains_key(&id) {
        map.problems.at(
            map.get("id").unwrap(),
            &map.child_path("id"),
            format!("tenant {id:?} is declared twice"),
        );
        return false;
    }
    if !ok {
        return false;
    }
    // A tenant-level claim mapping applies to every issuer of the tenant
    // that did not set its own.
    let mapping = mapping.unwrap();
    for mut issuer in issuers {
        if issuer.config.claims == Default::default() {
            issuer.config.claims = mapping.clone();
        }
        issuer.config.tenant = Some(id.clone());
        result.issuers.push(issuer);
    }
    let tenant = TenantConfig {
        id: id.clone(),
        rate_limits: rate_limits.unwrap(),
        headers: headers.unwrap(),
        pseudonym_key: pseudonym_key.unwrap(),
    };
    result.tenants.insert(id, Arc::new(tenant));
    true
}

fn read_headers(map: &MapReader) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let Some(headers) = map.map("headers") else {
        return map.get("headers").is_none().then(Vec::new);
    };
    let mut list = Vec::new();
    let mut ok = true;
    for (name, key, value) in headers.named_entries() {
        let header = HeaderName::from_bytes(name.as_bytes());
        let text = scalar_text(value).map(HeaderValue::from_str);
        match (header, text) {
            (Ok(header), Some(Ok(value))) => list.push((header, value)),
            (Err(_), _) => {
                headers.problems.at(
                    key,
                    &headers.child_path(&name),
                    "expected a valid header name",
                );
                ok = false;
            }
            _ => {
                headers.problems.at(
                    value,
                    &headers.child_path(&name),
                    format!("expected a header value, found {}", found(value)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(list)
}

const SOURCES: [&str; 3] = ["host", "path_prefix", "header"];

/// Reads `tenant_from` under `map` (top level or a route). `None` inside
/// means the key is absent.
pub fn read_tenant_from(map: &MapReader) -> Option<Option<TenantFrom>> {
    let Some(source) = map.map("tenant_from") else {
        return map.get("tenant_from").is_none().then_some(None);
    };
    let given: Vec<&str> = SOURCES
        .iter()
        .copied()
        .filter(|key| source.get(key).is_some())
        .collect();
    let result = if given.len() != 1 {
        let message = format!(
            "expected exactly one of host, path_prefix or header, found {}",
            if given.is_empty() {
                "none".into()
            } else {
                given.join(" and ")
            }
        );
        source.problems.at(source.node, &source.path, message);
        None
    } else {
        read_source(&source, given[0])
    };
    source.finish();
    result.map(Some)
}

fn read_source(source: &MapReader, kind: &'static str) -> Option<TenantFrom> {
    let text = source.string(kind)?;
    let node = source.get(kind).unwrap();
    let path = source.child_path(kind);
    if kind == "header" {
        return match HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(TenantFrom::Header(name)),
            Err(_) => {
                source.problems.at(
                    node,
                    &path,
                    format!("expected a header name, found {}", found(node)),
                );
                None
            }
        };
    }
    let Some((before, after)) = text.split_once("{tenant}") else {
        source.problems.at(
            node,
            &path,
            format!(
                "expected a pattern containing {{tenant}}, found {}",
                found(node)
            ),
        );
        return None;
    };
    if kind == "host" {
        return Some(TenantFrom::Host {
            before: before.to_ascii_lowercase(),
            after: after.to_ascii_lowercase(),
        });
    }
    let valid = before.starts_with('/') && before.ends_with('/') && after.is_empty();
    if !valid {
        let message = format!("expected a path prefix that starts and ends with / and ends with {{tenant}}, such as /t/{{tenant}}, found {}", found(node));
        source.problems.at(node, &path, message);
        return None;
    }
    Some(TenantFrom::PathPrefix {
        before: before.to_string(),
    })
}
