//! Authorization checks that read the configuration alone: privileged
//! routes behind a scope that every route requires, and routes a
//! credential of any tenant reaches.

use std::collections::BTreeSet;

use super::checks::{self, FindingExt};
use super::gateway::{Gateway, RouteView};
use super::model::{Finding, Severity, SnippetScope};

/// Path or route id words that mark a privileged function besides DELETE
/// and admin paths: role and permission changes, and refunds.
const PRIVILEGED_WORDS: &[&str] = &["role", "permission", "refund"];
/// Path parameter names that name a tenant.
const TENANT_PARAMETERS: &[&str] = &[
    "tenant",
    "tenantid",
    "tenant_id",
    "org",
    "orgid",
    "org_id",
    "organization",
    "organizationid",
    "organization_id",
];
/// Fewest authenticated routes for a scope they all require to count as
/// one that every caller holds; with fewer, a shared scope is common by
/// chance.
const MIN_ROUTES_FOR_COMMON_SCOPE: usize = 3;

/// Runs the checks of this module.
pub fn run(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let common = common_scopes(gateway);
    for route in &gateway.routes {
        check_common_scope(gateway, route, &common, findings);
        check_tenant_in_path(gateway, route, findings);
    }
    check_unbound_tenants(gateway, findings);
}

/// Whether a route performs a privileged function: a DELETE, a path with
/// an `admin` or `internal` segment, or a role, permission or refund
/// change.
pub fn is_privileged(route: &RouteView) -> bool {
    let deletes = route.methods.iter().any(|m| m == "DELETE");
    let admin_path = route
        .path
        .split('/')
        .any(|segment| segment == "admin" || segment == "internal");
    let haystack = format!("{} {}", route.path, route.id).to_ascii_lowercase();
    let changes = route.methods.iter().any(|m| m != "GET" && m != "HEAD");
    let privileged_change = changes && PRIVILEGED_WORDS.iter().any(|w| haystack.contains(w));
    deletes || admin_path || privileged_change
}

/// Returns the scopes that every authenticated route requires, or an empty
/// set when fewer than `MIN_ROUTES_FOR_COMMON_SCOPE` routes need a
/// credential.
pub fn common_scopes(gateway: &Gateway) -> BTreeSet<String> {
    let authenticated: Vec<&RouteView> = gateway.routes.iter().filter(|r| !r.public).collect();
    if authenticated.len() < MIN_ROUTES_FOR_COMMON_SCOPE {
        return BTreeSet::new();
    }
    let mut common: BTreeSet<String> = authenticated[0].scopes.iter().cloned().collect();
    for route in &authenticated[1..] {
        common.retain(|scope| route.scopes.contains(scope));
    }
    common
}

fn check_common_scope(
    gateway: &Gateway,
    route: &RouteView,
    common: &BTreeSet<String>,
    findings: &mut Vec<Finding>,
) {
    let only_common = !route.scopes.is_empty() && route.scopes.iter().all(|s| common.contains(s));
    let other_guard = !route.roles.is_empty() || route.policy.is_some();
    if route.public || !is_privileged(route) || !only_common || other_guard {
        return;
    }
    findings.push(
        checks::PRIVILEGED_COMMON_SCOPE
            .finding(
                Severity::Medium,
                format!(
                    "route {:?} ({} {}) requires only [{}], which every authenticated route requires too",
                    route.id,
                    route.methods.join(","),
                    route.path,
                    route.scopes.join(", ")
                ),
                "Require a scope or role that only the callers of this function hold, or a policy that checks the caller's right to it.",
            )
            .in_config(gateway.at_route(route, "require"))
            .snippet(
                SnippetScope::Route,
                "require:\n  scopes: [<function>:admin]\n  roles: [admin]",
            ),
    );
}

/// Whether a route has a tenant binding: its own `tenant_from` or the
/// top-level one.
pub fn tenant_bound(gateway: &Gateway, route: &RouteView) -> bool {
    route.tenant_from.is_some() || gateway.get("tenant_from").is_some()
}

/// Returns the path parameters of a route pattern that name a tenant.
fn tenant_parameters(pattern: &str) -> Vec<&str> {
    pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .filter(|name| TENANT_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
        .collect()
}

/// A tenant named in the route's path is compared with nothing: the
/// gateway's binding reads the host, a header or a path prefix removed
/// before routing. Routes without any binding are left to PX-AUTHZ-001,
/// which reports every id-like parameter of theirs.
fn check_tenant_in_path(gateway: &Gateway, route: &RouteView, findings: &mut Vec<Finding>) {
    let names = tenant_parameters(&route.path);
    if route.public || names.is_empty() || route.policy.is_some() || !tenant_bound(gateway, route) {
        return;
    }
    findings.push(
        checks::CROSS_TENANT
            .finding(
                Severity::High,
                format!(
                    "route {:?} ({}) takes the tenant from the path ({}), which the gateway never compares with the credential's tenant",
                    route.id,
                    route.path,
                    names.iter().map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", ")
                ),
                "Address the tenant through tenant_from (a path prefix is removed before routing and compared with the credential's tenant), or add a policy that compares the path's tenant with input.tenant.",
            )
            .in_config(gateway.at_route(route, "match"))
            .snippet(
                SnippetScope::TopLevel,
                &format!(
                    "tenant_from: {{ path_prefix: \"/t/{{tenant}}\" }}\n# then remove {} from the path of route {}, since the prefix is removed before routing",
                    names.iter().map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", "),
                    checks::yaml_scalar(&route.id)
                ),
            ),
    );
}

/// With tenants declared and no top-level `tenant_from`, a route without
/// its own binding serves a credential of any tenant without knowing
/// which tenant the request addresses.
fn check_unbound_tenants(gateway: &Gateway, findings: &mut Vec<Finding>) {
    let Some(tenants) = gateway.get("tenants") else {
        return;
    };
    if gateway.get("tenant_from").is_some() {
        return;
    }
    let unbound: Vec<&str> = gateway
        .routes
        .iter()
        .filter(|r| !r.public && r.tenant_from.is_none())
        .map(|r| r.id.as_str())
        .collect();
    if unbound.is_empty() {
        return;
    }
    findings.push(
        checks::CROSS_TENANT
            .finding(
                Severity::High,
                format!(
                    "tenants are declared but tenant_from is not set, so {} route{} ({}) accept a credential of any tenant without checking which tenant the request addresses",
                    unbound.len(),
                    if unbound.len() == 1 { "" } else { "s" },
                    unbound.join(", ")
                ),
                "Set tenant_from at the top level so every request names its tenant and a credential of another tenant gets 403 tenant_mismatch.",
            )
            .in_config(gateway.at(tenants, "tenants"))
            .snippet(
                SnippetScope::TopLevel,
                "tenant_from: { host: \"{tenant}.api.example.com\" }",
            ),
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn findings(config: &str) -> Vec<Finding> {
        let gateway = Gateway::parse(config, "gw.yaml", Path::new(".")).unwrap();
        let mut found = Vec::new();
        run(&gateway, &mut found);
        found
    }

    fn ids(found: &[Finding]) -> Vec<&str> {
        found.iter().map(|f| f.id.as_str()).collect()
    }

    const SHARED_SCOPE_ROUTES: &str = "routes:\n  - id: list\n    match: { path: /items, methods: [GET] }\n    require: { scopes: [api] }\n  - id: read\n    match: { path: '/items/{id}', methods: [GET] }\n    require: { scopes: [api, items:read] }\n";

    #[test]
    fn privileged_routes_behind_common_scope() {
        let cases = [
            (
                "refund with the common scope only",
                "  - id: refund\n    match: { path: '/payments/{id}/refund', methods: [POST] }\n    require: { scopes: [api] }\n",
                vec!["PX-AUTHZ-004"],
            ),
            (
                "role change with the common scope only",
                "  - id: set-role\n    match: { path: '/users/{id}/roles', methods: [PUT] }\n    require: { scopes: [api] }\n",
                vec!["PX-AUTHZ-004"],
            ),
            (
                "delete with a scope of its own",
                "  - id: delete\n    match: { path: '/items/{id}', methods: [DELETE] }\n    require: { scopes: [api, items:delete] }\n",
                vec![],
            ),
            (
                "admin path with a role",
                "  - id: admin\n    match: { path: /admin/users, methods: [POST] }\n    require: { scopes: [api], roles: [admin] }\n",
                vec![],
            ),
            (
                "reading roles is not privileged",
                "  - id: roles\n    match: { path: /roles, methods: [GET] }\n    require: { scopes: [api] }\n",
                vec![],
            ),
        ];
        for (description, route, expected) in cases {
            let found = findings(&format!("{SHARED_SCOPE_ROUTES}{route}"));
            assert_eq!(ids(&found), expected, "{description}");
        }
    }

    #[test]
    fn common_scope_needs_three_routes() {
        let found = findings(
            "routes:\n  - id: list\n    match: { path: /items, methods: [GET] }\n    require: { scopes: [api] }\n  - id: delete\n    match: { path: '/items/{id}', methods: [DELETE] }\n    require: { scopes: [api] }\n",
        );
        assert!(found.is_empty(), "{:?}", ids(&found));
    }

    #[test]
    fn tenants_without_binding_reported_once() {
        let found = findings(
            "tenants:\n  - id: acme\n  - id: globex\nroutes:\n  - id: a\n    match: { path: /a, methods: [GET] }\n  - id: b\n    match: { path: /b, methods: [GET] }\n    tenant_from: { header: x-tenant-id }\n  - id: login\n    match: { path: /login, methods: [POST] }\n    authentication: none\n",
        );
        assert_eq!(ids(&found), ["PX-AUTHZ-006"]);
        assert!(
            found[0].evidence.contains("1 route (a)"),
            "{}",
            found[0].evidence
        );
        assert_eq!(found[0].config.as_ref().unwrap().key_path, "tenants");
    }

    #[test]
    fn tenant_binding_silences_unbound_tenants() {
        let found = findings(
            "tenants:\n  - id: acme\ntenant_from: { host: '{tenant}.api.example.com' }\nroutes:\n  - id: a\n    match: { path: /a, methods: [GET] }\n",
        );
        assert!(found.is_empty(), "{:?}", ids(&found));
    }

    #[test]
    fn tenant_in_path_reported_when_bound_elsewhere() {
        let cases = [
            (
                "bound by host, tenant in path, no policy",
                "tenant_from: { host: '{tenant}.api.example.com' }\n",
                "",
                true,
            ),
            (
                "bound by host, policy on the route",
                "tenant_from: { host: '{tenant}.api.example.com' }\n",
                "    require: { policy: data.t.allow }\n",
                false,
            ),
            ("no binding at all: left to PX-AUTHZ-001", "", "", false),
        ];
        for (description, top, require, expected) in cases {
            let found = findings(&format!(
                "{top}routes:\n  - id: r\n    match: {{ path: '/orgs/{{orgId}}/users', methods: [GET] }}\n{require}"
            ));
            assert_eq!(
                ids(&found).contains(&"PX-AUTHZ-006"),
                expected,
                "{description}"
            );
        }
    }
}
