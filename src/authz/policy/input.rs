//! The input document of a policy evaluation for one request.

use http::HeaderMap;
use serde_json::{Map, Value};

/// Request headers never copied into the input, because they carry
/// credentials.
const WITHHELD_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The facts about one request that [`build_input`] turns into the input
/// document, in plain types so the caller needs none of this module's.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Such as `DELETE`.
    pub method: &'a str,
    /// The canonical path, percent-encoded as forwarded upstream.
    pub path: &'a str,
    pub route_id: &'a str,
    /// Path parameters captured by the route pattern, decoded.
    pub params: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// The verified token's claims.
    pub claims: Option<&'a Map<String, Value>>,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub scopes: &'a [String],
    /// Roles read from the issuer's configured roles claim.
    pub roles: &'a [String],
    pub tenant: Option<&'a str>,
    /// The parsed JSON body, only for routes that opt in.
    pub body: Option<&'a Value>,
}

/// Builds the input document, shaped like this (members whose fact is
/// absent are left out, so `not input.subject` holds when there is none):
///
/// ```json
/// {
///   "method": "DELETE",
///   "path": "/tenants/acme/users/u%201",
///   "segments": ["tenants", "acme", "users", "u 1"],
///   "route": {"id": "users-delete", "params": {"tenant": "acme", "id": "u 1"}},
///   "headers": {"x-request-id": "r-1", "accept": "a, b"},
///   "query": {"expand": ["roles", "groups"]},
///   "token": {"sub": "alice", "amr": ["pwd", "mfa"], "auth_time": 1767225600},
///   "subject": "alice",
///   "client_id": "portal",
///   "scopes": ["read:users", "write:users"],
///   "roles": ["admin"],
///   "tenant": "acme",
///   "body": {"name": "Alice"}
/// }
/// ```
///
/// `segments` are the path's segments, percent-decoded. Header names are
/// lowercase, repeated headers are joined with `", "`, and values that are
/// not UTF-8 are left out, as are `authorization`, `proxy-authorization`
/// and `cookie`. Query values are form-decoded (`+` is a space) and listed
/// in order per name.
pub fn build_input(facts: &RequestFacts<'_>) -> Value {
    let mut input = Map::new();
    input.insert("method".into(), facts.method.into());
    input.insert("path".into(), facts.path.into());
    input.insert("segments".into(), segments(facts.path));
    input.insert("route".into(), route(facts.route_id, facts.params));
    input.insert("headers".into(), headers(facts.headers));
    input.insert("query".into(), query(facts.query.unwrap_or_default()));

    if let Some(claims) = facts.claims {
        input.insert("token".into(), Value::Object(claims.clone()));
    }
    if let Some(subject) = facts.subject {
        input.insert("subject".into(), subject.into());
    }
    if let Some(client_id) = facts.client_id {
        input.insert("client_id".into(), client_id.into());
    }
    input.insert("scopes".into(), facts.scopes.into());
    input.insert("roles".into(), facts.roles.into());
    if let Some(tenant) = facts.tenant {
        input.insert("tenant".into(), tenant.into());
    }
    if let Some(body) = facts.body {
        input.insert("body".into(), body.clone());
    }
    Value::Object(input)
}

fn segments(path: &str) -> Value {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| Value::String(percent_decode(segment, false)))
        .collect()
}

fn route(id: &str, params: &[(String, String)]) -> Value {
    let params: Map<String, Value> = params
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    serde_json::json!({ "id": id, "params": params })
}

fn headers(headers: &HeaderMap) -> Value {
    let mut members = Map::new();
    for name in headers.keys() {
        if WITHHELD_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let values: Option<Vec<&str>> = headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().ok())
            .collect();
        if let Some(values) = values {
            members.insert(name.as_str().to_string(), values.join(", ").into());
        }
    }
    Value::Object(members)
}

fn query(text: &str) -> Value {
    let mut members = Map::new();
    for pair in text.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name, true);
        let value = Value::String(percent_decode(value, true));
        let entry = members
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(value);
        }
    }
    Value::Object(members)
}

/// Decodes `%XX` escapes (and `+` as a space in form encoding). A `%` not
/// followed by two hex digits stays as it is; invalid UTF-8 becomes U+FFFD.
// NOTE: hand-written because the module may depend only on std, http,
// serde_json, ring and regorus; the gateway's `percent-encoding` would do.
fn percent_decode(text: &str, form: bool) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, byte) {
            (Some(value), _) => {
                decoded.push(value);
                index += 3;
            }
            (None, b'+') if form => {
                decoded.push(b' ');
                index += 1;
            }
            (None, other) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
