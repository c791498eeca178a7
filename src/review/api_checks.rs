//! Checks that compare OpenAPI documents with the gateway's routes, and
//! checks of the documents themselves.

use serde_json::Value;

use super::checks::{self, FindingExt};
use super::config_checks;
use super::gateway::{Gateway, RouteView};
use super::model::{Finding, Severity};
use super::openapi::{ApiDoc, Operation};

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
    for route in routes {
        check_scopes(gateway, operation, route, &location, findings);
        check_masking(gateway, doc, operation, route, findings);
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
                .snippet("authentication: required\nrequire:\n  scopes: [<documented scopes>]"),
        );
    }
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
            .snippet(&format!("require:\n  scopes: [{}]", first.join(", "))),
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
        .snippet("mask:\n  fields:\n    - { path: $..number, style: pci }\n    - { path: $..cvv, style: redact }\n  detectors: [card, email]");
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
}
