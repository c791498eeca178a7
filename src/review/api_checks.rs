//! Checks that compare OpenAPI documents with the gateway's routes, and
//! checks of the documents themselves.

use serde_json::Value;

use super::checks::{self, FindingExt};
use super::gateway::{Gateway, RouteView};
use super::model::{Finding, Severity, SnippetScope};
use super::openapi::{ApiDoc, Operation};
use super::{access_checks, config_checks};

/// Response field names that hold a card number or a security code, and
/// personal data, each with the masking detector that finds such values.
const CARD_FIELDS: &[&str] = &["pan", "cardnumber", "card_number", "primaryaccountnumber"];
const CODE_FIELDS: &[&str] = &[
    "cvv",
    "cvv2",
    "cvc",
    "cvc2",
    "securitycode",
    "security_code",
    "cvn",
];
const PERSONAL_FIELDS: &[(&str, Option<&str>)] = &[
    ("email", Some("email")),
    ("phone", Some("phone")),
    ("phonenumber", Some("phone")),
    ("phone_number", Some("phone")),
    ("iban", Some("iban")),
    ("ssn", None),
    ("dateofbirth", None),
    ("date_of_birth", None),
    ("dob", None),
    ("nationalid", None),
    ("national_id", None),
    ("taxid", None),
    ("tax_id", None),
    ("passportnumber", None),
    ("passport_number", None),
];
/// Query parameter names that carry personal or card data.
const PERSONAL_QUERY: &[&str] = &[
    "email",
    "phone",
    "ssn",
    "pan",
    "card_number",
    "cardnumber",
    "dob",
    "date_of_birth",
    "iban",
    "first_name",
    "last_name",
    "full_name",
    "passport",
    "tax_id",
    "national_id",
];
/// Request body fields only the server or an administrator should set.
const PRIVILEGED_FIELDS: &[&str] = &[
    "role",
    "roles",
    "is_admin",
    "isadmin",
    "admin",
    "permissions",
    "balance",
    "owner_id",
    "ownerid",
    "tenant_id",
    "tenantid",
    "credit_limit",
    "creditlimit",
    "kyc_status",
    "kycstatus",
    "verified",
];
/// Parameter and field names that carry a URL the API may fetch.
const URL_FIELDS: &[&str] = &[
    "url",
    "uri",
    "callback",
    "callback_url",
    "callbackurl",
    "webhook",
    "webhook_url",
    "webhookurl",
    "redirect_uri",
    "redirecturi",
    "return_url",
    "returnurl",
    "image_url",
    "imageurl",
    "notify_url",
    "notifyurl",
];
/// Query parameter names that carry an API key or a token.
const KEY_QUERY: &[&str] = &["api_key", "apikey", "api-key", "key", "access_token"];
/// The `api_keys` section that reads keys from a header, for the findings
/// of keys sent in the query string.
const API_KEY_HEADER_SNIPPET: &str = "api_keys:\n  file: api-keys.json   # written by `portcullis key create`\n  secret: { env: PORTCULLIS_API_KEY_SECRET }   # at least 32 random bytes\n  header: x-api-key";
/// Body fields ending in `_id` or `Id` that do not name another object.
const NON_OBJECT_IDS: &[&str] = &[
    "request_id",
    "requestid",
    "correlation_id",
    "correlationid",
    "trace_id",
    "traceid",
    "idempotency_id",
    "external_id",
    "externalid",
];
/// Error response fields that reveal internals.
const VERBOSE_ERROR_FIELDS: &[&str] = &[
    "stack",
    "stacktrace",
    "stack_trace",
    "trace",
    "traceback",
    "exception",
    "exception_type",
    "exceptiontype",
    "debug",
    "debug_info",
    "debuginfo",
    "sql",
    "sql_state",
    "sqlstate",
    "query_sql",
];
/// Query parameter names that set a page size.
const PAGE_SIZE: &[&str] = &[
    "limit",
    "page_size",
    "pagesize",
    "per_page",
    "perpage",
    "size",
];
/// Words in a server URL that mark a non-production environment.
const NONPROD_WORDS: &[&str] = &[
    "sandbox",
    "staging",
    "stage.",
    "dev.",
    "-dev",
    "test",
    "qa.",
    "uat",
    "localhost",
    "127.0.0.1",
    "internal",
    "preprod",
];

/// Runs the document checks over every document.
pub fn run(gateway: &Gateway, docs: &[ApiDoc]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for doc in docs {
        check_servers(doc, &mut findings);
        check_key_schemes(doc, &mut findings);
        check_error_schemas(doc, &mut findings);
        for operation in &doc.operations {
            let routes = matching_routes(gateway, doc, operation);
            check_operation(gateway, doc, operation, &routes, &mut findings);
        }
    }
    for route in &gateway.routes {
        check_route_documented(gateway, docs, route, &mut findings);
    }
    findings
}

fn check_operation(
    gateway: &Gateway,
    doc: &ApiDoc,
    operation: &Operation,
    routes: &[&RouteView],
    findings: &mut Vec<Finding>,
) {
    let location = doc.at(&operation.pointer, Some(operation));
    let name = describe(operation);
    if routes.is_empty() {
        findings.push(
            checks::UNROUTED_OPERATION
                .finding(
                    Severity::Medium,
                    format!("{name} is documented but no route serves it"),
                    "Add a route for it, or remove it from the document when it is retired.",
                )
                .in_api(location.clone()),
        );
    }
    let body_ids = body_object_ids(doc, operation);
    for route in routes {
        check_scopes(gateway, operation, route, &location, findings);
        check_masking(gateway, doc, operation, route, findings);
        check_body_ids(gateway, doc, operation, route, &body_ids, findings);
        if operation.deprecated {
            findings.push(
                checks::DEPRECATED_ROUTED
                    .finding(
                        Severity::Medium,
                        format!("{name} is deprecated but route {:?} still serves it", route.id),
                        "Remove the method from the route once clients have moved, or set a removal date.",
                    )
                    .in_api(location.clone())
                    .in_config(gateway.at_route(route, "match")),
            );
        }
    }
    check_query(doc, operation, findings);
    check_request_body(doc, operation, findings);
}

/// Describes an operation as `METHOD /path (operationId)`.
fn describe(operation: &Operation) -> String {
    let id = operation
        .operation_id
        .as_ref()
        .map_or(String::new(), |id| format!(" ({id})"));
    format!(
        "{} {}{id}",
        operation.method.to_ascii_uppercase(),
        operation.path
    )
}

/// Returns the routes that serve an operation: same method (GET also
/// serves HEAD) and a path pattern that matches the documented path, with
/// or without the path of the document's servers.
pub fn matching_routes<'g>(
    gateway: &'g Gateway,
    doc: &ApiDoc,
    operation: &Operation,
) -> Vec<&'g RouteView> {
    let method = operation.method.to_ascii_uppercase();
    let prefixes = server_prefixes(doc);
    gateway
        .routes
        .iter()
        .filter(|route| {
            route.methods.contains(&method)
                || (method == "HEAD" && route.methods.iter().any(|m| m == "GET"))
        })
        .filter(|route| {
            prefixes
                .iter()
                .any(|prefix| path_matches(&route.path, &format!("{prefix}{}", operation.path)))
        })
        .collect()
}

/// Returns the base paths of the document's servers, and the empty path.
fn server_prefixes(doc: &ApiDoc) -> Vec<String> {
    let mut prefixes = vec![String::new()];
    if let Some(Value::Array(servers)) = doc.root.get("servers") {
        for url in servers.iter().filter_map(|s| s.get("url")?.as_str()) {
            let path = match url.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
                None => url,
            };
            let path = path.trim_end_matches('/');
            if !path.is_empty() && !prefixes.iter().any(|p| p == path) {
                prefixes.push(path.to_string());
            }
        }
    }
    prefixes
}

/// Returns whether a route pattern matches a documented path template. Parameters
/// match parameters whatever their names; a final `{*rest}` matches any
/// remaining segments.
pub fn path_matches(pattern: &str, documented: &str) -> bool {
    let route: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let doc: Vec<&str> = documented.trim_end_matches('/').split('/').collect();
    for (i, segment) in route.iter().enumerate() {
        if segment.starts_with("{*") {
            return doc.len() > i;
        }
        let Some(other) = doc.get(i) else {
            return false;
        };
        let both_params = segment.starts_with('{') && other.starts_with('{');
        if !both_params && segment != other {
            return false;
        }
    }
    route.len() == doc.len()
}

fn check_route_documented(
    gateway: &Gateway,
    docs: &[ApiDoc],
    route: &RouteView,
    findings: &mut Vec<Finding>,
) {
    let matched: Vec<(&ApiDoc, &Operation)> = docs
        .iter()
        .flat_map(|doc| doc.operations.iter().map(move |op| (doc, op)))
        .filter(|(doc, op)| {
            matching_routes(gateway, doc, op)
                .iter()
                .any(|r| r.line == route.line)
        })
        .collect();
    if route.public {
        check_public_route(gateway, route, &matched, findings);
    }
    let undocumented: Vec<&str> = route
        .methods
        .iter()
        .filter(|method| {
            !matched
                .iter()
                .any(|(_, op)| op.method.eq_ignore_ascii_case(method))
        })
        .map(String::as_str)
        .collect();
    if undocumented.is_empty() {
        return;
    }
    findings.push(
        checks::UNDOCUMENTED_ROUTE
            .finding(
                Severity::Medium,
                format!(
                    "route {:?} serves {} {} which no given document describes",
                    route.id,
                    undocumented.join(","),
                    route.path
                ),
                "Document the operation, or narrow the route's path and methods to what is documented.",
            )
            .in_config(gateway.at_route(route, "match")),
    );
}

/// Judges a public route by its documented operations: fine when they are
/// all documented as public, high when one of them declares security.
fn check_public_route(
    gateway: &Gateway,
    route: &RouteView,
    matched: &[(&ApiDoc, &Operation)],
    findings: &mut Vec<Finding>,
) {
    if matched.is_empty() {
        findings.push(config_checks::public_route(gateway, route));
        return;
    }
    for (doc, operation) in matched.iter().filter(|(_, op)| !op.security.is_empty()) {
        findings.push(
            checks::PUBLIC_ROUTE
                .finding(
                    Severity::High,
                    format!(
                        "route {:?} sets authentication: none, but {} declares security {}",
                        route.id,
                        describe(operation),
                        scheme_names(operation)
                    ),
                    "Require a credential on the route, with the scopes the document declares.",
                )
                .in_config(gateway.at_route(route, "authentication"))
                .in_api(doc.at(&operation.pointer, Some(operation)))
                .snippet(SnippetScope::Route, &required_scopes_snippet(operation)),
        );
    }
}

/// Builds a route snippet that requires a credential with the scopes of
/// the operation's first security requirement, if it names any.
fn required_scopes_snippet(operation: &Operation) -> String {
    let scopes = requirement_scopes(operation);
    if scopes.is_empty() {
        return "authentication: required".to_string();
    }
    format!(
        "authentication: required\nrequire:\n  scopes: [{}]",
        scopes.join(", ")
    )
}

/// Returns the scopes of an operation's first security requirement, as
/// YAML scalars and without repeats.
fn requirement_scopes(operation: &Operation) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for (_, names) in operation.security.first().into_iter().flatten() {
        for scope in names.iter().map(|name| checks::yaml_scalar(name)) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

fn scheme_names(operation: &Operation) -> String {
    let names: Vec<&str> = operation
        .security
        .iter()
        .flatten()
        .map(|(scheme, _)| scheme.as_str())
        .collect();
    names.join(", ")
}

/// The document's scopes are stronger when every alternative requirement
/// contains a scope the route does not require.
fn check_scopes(
    gateway: &Gateway,
    operation: &Operation,
    route: &RouteView,
    location: &super::model::ApiLocation,
    findings: &mut Vec<Finding>,
) {
    if route.public || operation.security.is_empty() {
        return;
    }
    let missing: Vec<Vec<&str>> = operation
        .security
        .iter()
        .map(|requirement| {
            requirement
                .iter()
                .flat_map(|(_, scopes)| scopes.iter())
                .filter(|scope| !route.scopes.contains(scope))
                .map(String::as_str)
                .collect()
        })
        .collect();
    if missing.iter().any(Vec::is_empty) {
        return;
    }
    let mut first = missing[0].clone();
    first.dedup();
    let policy_note = match &route.policy {
        Some(policy) => {
            format!("; the route's policy {policy} may check them, which this review cannot see")
        }
        None => String::new(),
    };
    findings.push(
        checks::SCOPES_WEAKER
            .finding(
                Severity::High,
                format!(
                    "{} declares scope {} but route {:?} requires [{}]{policy_note}",
                    describe(operation),
                    first.join(", "),
                    route.id,
                    route.scopes.join(", ")
                ),
                "Require the documented scopes on the route.",
            )
            .in_api(location.clone())
            .in_config(gateway.at_route(route, "require"))
            .snippet(
                SnippetScope::Route,
                &format!(
                    "require:\n  scopes: [{}]",
                    requirement_scopes(operation).join(", ")
                ),
            ),
    );
}

/// Classifies a response field: its severity and the masking detector
/// that would find its values.
fn sensitive_field(name: &str, pointer: &str) -> Option<(Severity, Option<&'static str>)> {
    let lower = name.to_ascii_lowercase();
    if CODE_FIELDS.contains(&lower.as_str()) {
        return Some((Severity::Critical, None));
    }
    let card_number = lower == "number" && pointer.to_ascii_lowercase().contains("card");
    if CARD_FIELDS.contains(&lower.as_str()) || card_number {
        return Some((Severity::Critical, Some("card")));
    }
    PERSONAL_FIELDS
        .iter()
        .find(|(field, _)| *field == lower)
        .map(|(_, detector)| (Severity::High, *detector))
}

fn check_masking(
    gateway: &Gateway,
    doc: &ApiDoc,
    operation: &Operation,
    route: &RouteView,
    findings: &mut Vec<Finding>,
) {
    let mut exposed: Vec<(String, String, Severity)> = Vec::new();
    for (schema, pointer) in &operation.response_schemas {
        doc.walk_properties(schema, pointer, &mut |name, _, property_pointer| {
            let Some((severity, detector)) = sensitive_field(name, property_pointer) else {
                return;
            };
            if route
                .mask
                .as_ref()
                .is_some_and(|mask| mask.covers(name, detector))
            {
                return;
            }
            if !exposed
                .iter()
                .any(|(n, p, _)| n == name && p == property_pointer)
            {
                exposed.push((name.to_string(), property_pointer.to_string(), severity));
            }
        });
    }
    // The most severe field first: its pointer becomes the location.
    exposed.sort_by_key(|field| std::cmp::Reverse(field.2));
    let Some(severity) = exposed.first().map(|(_, _, s)| *s) else {
        return;
    };
    let names: Vec<&str> = exposed.iter().map(|(n, _, _)| n.as_str()).collect();
    let excerpt: Vec<String> = exposed
        .iter()
        .map(|(n, p, _)| format!("{n}: {p}"))
        .collect();
    let mut finding = checks::SENSITIVE_RESPONSE
        .finding(
            severity,
            format!(
                "{} returns {} and route {:?} has no masking rule for {}",
                describe(operation),
                names.join(", "),
                route.id,
                if names.len() == 1 { "it" } else { "them" }
            ),
            "Mask the fields on the route (card numbers truncated to first six and last four digits, security codes never returned), or remove them from the response.",
        )
        .in_api(doc.at(&exposed[0].1, Some(operation)))
        .in_config(gateway.at_route(route, "mask"))
        .snippet(
            SnippetScope::Route,
            "mask:\n  fields:\n    - { path: $..number, style: pci }\n    - { path: $..cvv, style: redact }\n  detectors:\n    - { type: card, style: pci }\n    - { type: email }",
        );
    finding.excerpt = Some(excerpt.join("\n"));
    findings.push(finding);
}

fn check_query(doc: &ApiDoc, operation: &Operation, findings: &mut Vec<Finding>) {
    for parameter in &operation.parameters {
        let lower = parameter.name.to_ascii_lowercase();
        let location = doc.at(&parameter.pointer, Some(operation));
        if parameter.location == "query" && PERSONAL_QUERY.contains(&lower.as_str()) {
            findings.push(
                checks::PII_IN_QUERY
                    .finding(
                        Severity::Medium,
                        format!("{} takes {:?} in the query string", describe(operation), parameter.name),
                        "Move the value into the request body (a POST search) or replace it with an opaque id.",
                    )
                    .in_api(location.clone()),
            );
        }
        if parameter.location == "query" && KEY_QUERY.contains(&lower.as_str()) {
            findings.push(
                checks::API_KEY_IN_QUERY
                    .finding(
                        Severity::Medium,
                        format!(
                            "{} takes {:?} in the query string",
                            describe(operation),
                            parameter.name
                        ),
                        "Send keys and tokens in a header (Authorization: ApiKey or Bearer, or api_keys.header) and remove the query parameter from the document.",
                    )
                    .in_api(location.clone())
                    .snippet(SnippetScope::TopLevel, API_KEY_HEADER_SNIPPET),
            );
        }
        if parameter.location == "query"
            && PAGE_SIZE.contains(&lower.as_str())
            && parameter.schema.get("maximum").is_none()
        {
            findings.push(
                checks::UNBOUNDED_PAGE
                    .finding(
                        Severity::Low,
                        format!(
                            "{} has page size {:?} without a maximum",
                            describe(operation),
                            parameter.name
                        ),
                        "Declare and enforce a maximum page size in the API.",
                    )
                    .in_api(location.clone()),
            );
        }
        if is_url_field(&parameter.name, &parameter.schema) {
            findings.push(ssrf(operation, &parameter.name, location));
        }
    }
}

fn is_url_field(name: &str, schema: &Value) -> bool {
    let format = schema.get("format").and_then(Value::as_str);
    URL_FIELDS.contains(&name.to_ascii_lowercase().as_str())
        || matches!(format, Some("uri" | "url"))
}

fn ssrf(operation: &Operation, field: &str, location: super::model::ApiLocation) -> Finding {
    checks::SSRF.finding(
        Severity::Medium,
        format!("{} accepts a URL in {field:?}", describe(operation)),
        "Have the API fetch only destinations from an allow-list, resolve and check addresses before connecting, and refuse private and link-local ranges.",
    )
    .in_api(location)
}

fn check_request_body(doc: &ApiDoc, operation: &Operation, findings: &mut Vec<Finding>) {
    let Some((schema, pointer)) = &operation.request_schema else {
        return;
    };
    let mut privileged = Vec::new();
    let mut urls = Vec::new();
    doc.walk_properties(schema, pointer, &mut |name, property, property_pointer| {
        let read_only = property.get("readOnly") == Some(&Value::Bool(true));
        if PRIVILEGED_FIELDS.contains(&name.to_ascii_lowercase().as_str()) && !read_only {
            privileged.push((name.to_string(), property_pointer.to_string()));
        }
        if is_url_field(name, property) {
            urls.push((name.to_string(), property_pointer.to_string()));
        }
    });
    if let Some((_, first)) = privileged.first() {
        let names: Vec<&str> = privileged.iter().map(|(n, _)| n.as_str()).collect();
        findings.push(
            checks::MASS_ASSIGNMENT
                .finding(
                    Severity::Medium,
                    format!("{} accepts {} in its request body", describe(operation), names.join(", ")),
                    "Mark server-owned fields readOnly and have the API ignore them on input, or split the privileged change into its own operation with its own scope.",
                )
                .in_api(doc.at(first, Some(operation))),
        );
    }
    for (name, field_pointer) in urls {
        findings.push(ssrf(
            operation,
            &name,
            doc.at(&field_pointer, Some(operation)),
        ));
    }
}

fn check_servers(doc: &ApiDoc, findings: &mut Vec<Finding>) {
    let Some(Value::Array(servers)) = doc.root.get("servers") else {
        return;
    };
    for (i, server) in servers.iter().enumerate() {
        let Some(url) = server.get("url").and_then(Value::as_str) else {
            continue;
        };
        let lower = url.to_ascii_lowercase();
        let word = NONPROD_WORDS.iter().find(|word| lower.contains(*word));
        let plain = lower.starts_with("http://");
        if word.is_none() && !plain {
            continue;
        }
        let reason = match word {
            Some(word) => format!(
                "it names a non-production environment ({})",
                word.trim_matches(['.', '-'])
            ),
            None => "it uses plain http".to_string(),
        };
        findings.push(
            checks::NONPROD_SERVER
                .finding(
                    Severity::Medium,
                    format!("{} lists server {url} and {reason}", doc.title),
                    "Publish only the production servers; keep test environments in an internal copy of the document.",
                )
                .in_api(doc.at(&format!("/servers/{i}"), None)),
        );
    }
}

/// Reports `apiKey` security schemes that send the key in the query
/// string.
fn check_key_schemes(doc: &ApiDoc, findings: &mut Vec<Finding>) {
    let Some(Value::Object(schemes)) = doc.root.pointer("/components/securitySchemes") else {
        return;
    };
    for (name, scheme) in schemes {
        let pointer = format!(
            "/components/securitySchemes/{}",
            super::openapi::escape(name)
        );
        let Some((scheme, pointer)) = doc.resolve(scheme, &pointer) else {
            continue;
        };
        let api_key = scheme.get("type").and_then(Value::as_str) == Some("apiKey");
        if !api_key || scheme.get("in").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let parameter = scheme.get("name").and_then(Value::as_str).unwrap_or("?");
        findings.push(
            checks::API_KEY_IN_QUERY
                .finding(
                    Severity::Medium,
                    format!(
                        "{} declares security scheme {name:?}: an API key in query parameter {parameter:?}",
                        doc.title
                    ),
                    "Declare the key in a header (in: header) and configure the gateway to read it there; the gateway never reads keys from the query string.",
                )
                .in_api(doc.at(&pointer, None))
                .snippet(SnippetScope::TopLevel, API_KEY_HEADER_SNIPPET),
        );
    }
}

/// Returns the request body fields that name other objects by id: names
/// ending in `_id` or `Id`, and `id` inside a nested object. Server-owned
/// ids such as `owner_id` are left to PX-DATA-004.
fn body_object_ids(doc: &ApiDoc, operation: &Operation) -> Vec<(String, String)> {
    let Some((schema, pointer)) = &operation.request_schema else {
        return Vec::new();
    };
    let top = doc
        .resolve(schema, pointer)
        .map(|(_, resolved)| format!("{resolved}/properties/"))
        .unwrap_or_default();
    let mut found = Vec::new();
    doc.walk_properties(schema, pointer, &mut |name, property, property_pointer| {
        let lower = name.to_ascii_lowercase();
        let read_only = property.get("readOnly") == Some(&Value::Bool(true));
        let suffixed = lower.ends_with("_id") || (name.len() > 2 && name.ends_with("Id"));
        let top_level = property_pointer
            .strip_prefix(&top)
            .is_some_and(|rest| !rest.contains('/'));
        let nested_id = lower == "id" && !top_level;
        let excluded =
            PRIVILEGED_FIELDS.contains(&lower.as_str()) || NON_OBJECT_IDS.contains(&lower.as_str());
        if (suffixed || nested_id) && !read_only && !excluded {
            found.push((name.to_string(), property_pointer.to_string()));
        }
    });
    found
}

fn check_body_ids(
    gateway: &Gateway,
    doc: &ApiDoc,
    operation: &Operation,
    route: &RouteView,
    ids: &[(String, String)],
    findings: &mut Vec<Finding>,
) {
    let Some((_, first)) = ids.first() else {
        return;
    };
    if route.public || route.policy.is_some() || access_checks::tenant_bound(gateway, route) {
        return;
    }
    let names: Vec<&str> = ids.iter().map(|(name, _)| name.as_str()).collect();
    findings.push(
        checks::BODY_OBJECT_ID
            .finding(
                Severity::High,
                format!(
                    "{} takes {} in its request body, and route {:?} has no require.policy and no tenant binding",
                    describe(operation),
                    names.join(", "),
                    route.id
                ),
                "Add a policy that checks the caller owns every object the body names, or bind the route to the caller's tenant.",
            )
            .in_api(doc.at(first, Some(operation)))
            .in_config(gateway.at_route(route, "require"))
            .snippet(
                SnippetScope::Route,
                "require:\n  policy: data.payments.owns_body_objects   # compares the ids in input.body with input.subject\n  policy_body: true   # gives the policy the request body",
            ),
    );
}

/// Field names with their JSON Pointers.
type NamedFields = Vec<(String, String)>;

/// Returns the fields of an operation's error responses that reveal
/// internals, with their pointers.
fn verbose_fields(doc: &ApiDoc, operation: &Operation) -> NamedFields {
    let mut found: Vec<(String, String)> = Vec::new();
    for (schema, pointer) in &operation.error_schemas {
        doc.walk_properties(schema, pointer, &mut |name, _, property_pointer| {
            let verbose = VERBOSE_ERROR_FIELDS.contains(&name.to_ascii_lowercase().as_str());
            if verbose && !found.iter().any(|(_, p)| p == property_pointer) {
                found.push((name.to_string(), property_pointer.to_string()));
            }
        });
    }
    found
}

/// Reports verbose error schemas once per schema: operations sharing one
/// error schema give one finding, located at the first of them.
fn check_error_schemas(doc: &ApiDoc, findings: &mut Vec<Finding>) {
    let mut groups: Vec<(NamedFields, Vec<&Operation>)> = Vec::new();
    for operation in &doc.operations {
        let fields = verbose_fields(doc, operation);
        if fields.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(known, _)| *known == fields) {
            Some((_, operations)) => operations.push(operation),
            None => groups.push((fields, vec![operation])),
        }
    }
    for (fields, operations) in groups {
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        let others = match operations.len() - 1 {
            0 => String::new(),
            1 => "; 1 other operation shares them".to_string(),
            n => format!("; {n} other operations share them"),
        };
        let mut finding = checks::VERBOSE_ERRORS
            .finding(
                Severity::Medium,
                format!(
                    "{} documents error responses with {}{others}",
                    describe(operations[0]),
                    names.join(", ")
                ),
                "Return RFC 9457 problem details with a fixed title and a correlation id; keep stack traces, exception names and SQL in the server's logs.",
            )
            .in_api(doc.at(&fields[0].1, Some(operations[0])));
        let excerpt: Vec<String> = fields.iter().map(|(n, p)| format!("{n}: {p}")).collect();
        finding.excerpt = Some(excerpt.join("\n"));
        findings.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_match_templates() {
        let cases = [
            ("same literal path", "/cards", "/cards", true),
            (
                "parameters of other names",
                "/cards/{id}",
                "/cards/{cardId}",
                true,
            ),
            (
                "literal against parameter",
                "/cards/list",
                "/cards/{cardId}",
                false,
            ),
            (
                "catch-all takes the rest",
                "/v1/{*rest}",
                "/v1/cards/{cardId}",
                true,
            ),
            ("catch-all needs a segment", "/v1/{*rest}", "/v1", false),
            ("longer document path", "/cards", "/cards/{cardId}", false),
            ("trailing slash ignored", "/cards/", "/cards", true),
        ];
        for (description, pattern, documented, expected) in cases {
            assert_eq!(path_matches(pattern, documented), expected, "{description}");
        }
    }

    #[test]
    fn card_number_detected_only_under_card() {
        assert_eq!(
            sensitive_field("number", "/components/schemas/Card/properties/number").map(|s| s.0),
            Some(Severity::Critical)
        );
        assert_eq!(
            sensitive_field("number", "/components/schemas/Invoice/properties/number"),
            None
        );
        assert_eq!(
            sensitive_field("cvv", "/x").map(|s| s.0),
            Some(Severity::Critical)
        );
        assert_eq!(
            sensitive_field("email", "/x"),
            Some((Severity::High, Some("email")))
        );
    }

    const GATEWAY: &str = "routes:\n  - id: transfer\n    match: { path: /transfers, methods: [POST] }\n    require: { scopes: [t] }\n  - id: owned\n    match: { path: /owned, methods: [POST] }\n    require: { scopes: [t], policy: data.t.owns }\n";

    /// Runs the document checks on one document against `GATEWAY` with
    /// `top` prepended, and returns id, evidence and pointer per finding.
    fn review(top: &str, document: &str) -> Vec<(String, String, String)> {
        let gateway = Gateway::parse(
            &format!("{top}{GATEWAY}"),
            "gw.yaml",
            std::path::Path::new("."),
        )
        .unwrap();
        let doc = ApiDoc::parse(
            &format!("openapi: 3.0.3\ninfo: {{ title: T, version: '1' }}\n{document}"),
            "api.yaml",
        )
        .unwrap();
        run(&gateway, &[doc])
            .into_iter()
            .map(|f| {
                let pointer = f.openapi.map(|o| o.pointer).unwrap_or_default();
                (f.id, f.evidence, pointer)
            })
            .collect()
    }

    fn only(found: &[(String, String, String)], id: &str) -> Vec<(String, String, String)> {
        found.iter().filter(|f| f.0 == id).cloned().collect()
    }

    const TRANSFER_BODY: &str = "paths:\n  /transfers:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: { $ref: '#/components/schemas/Transfer' }\n      responses: { '201': { description: ok } }\n  /owned:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema: { $ref: '#/components/schemas/Transfer' }\n      responses: { '201': { description: ok } }\ncomponents:\n  schemas:\n    Transfer:\n      type: object\n      properties:\n        id: { type: string }\n        fromAccountId: { type: string }\n        beneficiary: { type: object, properties: { id: { type: string } } }\n        request_id: { type: string }\n        owner_id: { type: string }\n        created_by_id: { type: string, readOnly: true }\n";

    #[test]
    fn body_object_ids_need_policy_or_tenant() {
        let found = only(&review("", TRANSFER_BODY), "PX-AUTHZ-005");
        assert_eq!(
            found.len(),
            1,
            "only the route without a policy: {found:#?}"
        );
        assert_eq!(
            found[0].1,
            "POST /transfers takes id, fromAccountId in its request body, and route \"transfer\" has no require.policy and no tenant binding"
        );
        assert_eq!(
            found[0].2,
            "/components/schemas/Transfer/properties/beneficiary/properties/id"
        );
        let bound = review("tenant_from: { header: x-tenant-id }\n", TRANSFER_BODY);
        assert!(
            only(&bound, "PX-AUTHZ-005").is_empty(),
            "a tenant binding counts"
        );
    }

    #[test]
    fn api_keys_in_query_reported() {
        let document = "paths:\n  /transfers:\n    post:\n      parameters:\n        - { name: api_key, in: query, schema: { type: string } }\n        - { name: keyword, in: query, schema: { type: string } }\n      responses: { '201': { description: ok } }\ncomponents:\n  securitySchemes:\n    legacy: { type: apiKey, in: query, name: apikey }\n    header: { type: apiKey, in: header, name: x-api-key }\n    bearer: { type: http, scheme: bearer }\n";
        let found = only(&review("", document), "PX-AUTH-007");
        let pointers: Vec<&str> = found.iter().map(|f| f.2.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/components/securitySchemes/legacy",
                "/paths/~1transfers/post/parameters/0"
            ]
        );
    }

    #[test]
    fn verbose_error_schema_reported_once() {
        let document = "paths:\n  /transfers:\n    post:\n      responses:\n        '201': { description: ok }\n        '500': { $ref: '#/components/responses/Failure' }\n  /owned:\n    post:\n      responses:\n        '201': { description: ok, content: { application/json: { schema: { type: object, properties: { trace: { type: string } } } } } }\n        default: { $ref: '#/components/responses/Failure' }\ncomponents:\n  responses:\n    Failure:\n      description: failed\n      content:\n        application/json:\n          schema:\n            type: object\n            properties:\n              title: { type: string }\n              stackTrace: { type: string }\n              sql: { type: string }\n";
        let found = only(&review("", document), "PX-DATA-006");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            found[0].1,
            "POST /owned documents error responses with sql, stackTrace; 1 other operation shares them"
        );
        let problem_details = document
            .replace("stackTrace", "detail")
            .replace("sql", "instance");
        assert!(only(&review("", &problem_details), "PX-DATA-006").is_empty());
    }
}
