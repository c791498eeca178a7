//! Configuration of routes: which requests are let through to which
//! upstream, and what each requires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use regex::Regex;

use crate::authn::config::AuthnConfig;
use crate::authz::config::PoliciesConfig;
use crate::config::reader::{found, list_items, scalar_text, MapReader};
use crate::config::Declared;
use crate::proxy::config::UpstreamConfig;
use crate::ratelimit::config::{RateLimitPolicy, StoreFailure};
use crate::tenancy::config::TenantFrom;

#[derive(Debug)]
pub struct RouteConfig {
    /// Stable name used in logs, metrics and rate-limit keys.
    pub id: String,
    /// Path pattern on the canonical path: literal segments, `{name}`
    /// parameters and a final `{*name}` catch-all.
    pub path: String,
    pub methods: Vec<Method>,
    pub upstream: Arc<UpstreamConfig>,
    pub authentication: AuthMode,
    pub require: Requirements,
    pub rate_limits: Vec<Arc<RateLimitPolicy>>,
    /// The fallback of the shared limits of this route while the store is down.
    pub on_store_failure: StoreFailure,
    /// Responses get `Cache-Control: no-store`.
    pub sensitive: bool,
    /// Request body limit for this route; the server default when absent.
    pub max_body_bytes: Option<u64>,
    /// The source of this route's tenant, overriding the top-level
    /// `tenant_from` (host or header only).
    pub tenant_from: Option<TenantFrom>,
    /// Masking of the route's responses, when configured.
    pub mask: Option<crate::mask::config::RouteMasking>,
}

/// Whether a route needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is required (the default).
    Required,
    /// No credential is looked at; the route is public. Any
    /// `Authorization` header is still never forwarded with identity.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    All,
    Any,
}

/// The scopes, roles and claims an identity must carry to use a route
/// (tier-1 authorization).
#[derive(Debug, Default)]
pub struct Requirements {
    pub scopes: Vec<String>,
    pub scopes_match: Option<Match>,
    pub roles: Vec<String>,
    pub roles_match: Option<Match>,
    /// Claims that must be present and match a pattern.
    pub claims: Vec<ClaimRequirement>,
    /// Step-up authentication: `acr`, `amr` and maximum age of the
    /// authentication behind the token (RFC 9470).
    pub step_up: crate::authz::step_up::StepUp,
    /// Give the policy the request body parsed as JSON (`input.body`),
    /// read whole within the route's body limit.
    pub policy_body: bool,
    /// Tier 2: the Rego rule that decides, such as
    /// `data.users.allow_delete`, evaluated after the checks above.
    pub policy: Option<String>,
}

#[derive(Debug)]
pub struct ClaimRequirement {
    /// Dotted claim path.
    pub path: String,
    /// The whole string value must match.
    pub pattern: Regex,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub fn read_routes(
    top: &MapReader,
    declared: &Declared,
    upstreams: Option<&HashMap<String, Arc<UpstreamConfig>>>,
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
    authn: Option<&AuthnConfig>,
    rego: Option<Option<&PoliciesConfig>>,
) -> Option<Vec<RouteConfig>> {
    let Some(items) = top.list("routes") else {
        if top.get("routes").is_none() {
            top.missing(
                "routes",
                "a list of routes; requests that match no route get 404",
            );
        }
        return None;
    };
    let mut routes = Vec::new();
    let mut ok = true;
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let mut router = matchit::Router::new();
    for (path, node) in items {
        let Some(map) = MapReader::open(node, &path, top.problems) else {
            ok = false;
            continue;
        };
        let route = read_route(&map, declared, upstreams, policies, authn, rego);
        if let Some(route) = &route {
            if let Some(line) = seen_ids.insert(route.id.clone(), node.line) {
                map.problems.at(
                    node,
                    &map.child_path("id"),
                    format!(
                        "duplicate route id {:?}; it was first used on line {line}",
                        route.id
                    ),
                );
                ok = false;
            }
            ok &= check_overlap(&map, route, &routes, &mut router);
        }
        map.finish();
        match route {
            Some(route) => routes.push(route),
            None => ok = false,
        }
    }
    ok.then_some(routes)
}

/// Two routes with the same path pattern must not share a method, and a
/// path pattern must be accepted by the router.
fn check_overlap(
    map: &MapReader,
    route: &RouteConfig,
    earlier: &[RouteConfig],
    router: &mut matchit::Router<()>,
) -> bool {
    let node = map.get("match").unwrap_or(map.node);
    for other in earlier.iter().filter(|other| other.path == route.path) {
        if let Some(method) = route.methods.iter().find(|m| other.methods.contains(m)) {
            let message = format!(
                "route {:?} already handles {method} {}",
                other.id, route.path
            );
            map.problems.at(node, &map.child_path("match"), message);
            return false;
        }
    }
    if earlier.iter().any(|other| other.path == route.path) {
        return true;
    }
    if let Err(error) = router.insert(route.path.clone(), ()) {
        map.problems.at(
            node,
            &map.child_path("match.path"),
            format!("path pattern rejected by the router: {error}"),
        );
        return false;
    }
    true
}

fn read_route(
    map: &MapReader,
    declared: &Declared,
    upstreams: Option<&HashMap<String, Arc<UpstreamConfig>>>,
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
    authn: Option<&AuthnConfig>,
    rego: Option<Option<&PoliciesConfig>>,
) -> Option<RouteConfig> {
    let id = map.required_string("id", "a route id such as list-users");
    let matched = read_match(map);
    let upstream = read_upstream_ref(map, &declared.upstreams, upstreams);
    let authentication = match map.choice("authentication", &["required", "none"]) {
        Some("none") => Some(AuthMode::None),
        Some(_) => Some(AuthMode::Required),
        None if map.get("authentication").is_some() => None,
        None => Some(AuthMode::Required),
    };
    let require = read_requirements(map, rego);
    let rate_limits = crate::ratelimit::config::resolve_names(
        map,
        "rate_limits",
        &declared.rate_limits,
        policies,
    );
    let on_store_failure = crate::ratelimit::config::read_store_failure(map);
    let sensitive = map.bool("sensitive").unwrap_or(false);
    let max_body_bytes = map.byte_size("max_body_bytes", 0, 1 << 40);
    let tenant_from = crate::tenancy::config::read_tenant_from(map);
    let mask = crate::mask::config::read_route(map);
    if let Some(Some(TenantFrom::PathPrefix { .. })) = tenant_from {
        let message = "a route cannot take its tenant from a path prefix, because the prefix is removed before routing; set it at the top level";
        map.problems.at(
            map.get("tenant_from").unwrap(),
            &map.child_path("tenant_from"),
            message,
        );
        return None;
    }
    let bad_body = max_body_bytes.is_none() && map.get("max_body_bytes").is_some();

    let (path, methods) = matched?;
    let id = id?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || id.len() > 64
    {
        map.problems.at(
            map.get("id").unwrap(),
            &map.child_path("id"),
            "expected letters, digits, '-' and '_' (at most 64)",
        );
        return None;
    }
    let require = require?;
    let authentication = authentication?;
    // The two problems below are reported but the route is kept, so the
    // checks of duplicate ids and overlapping routes still run on it. The
    // reported problem rejects the configuration anyway.
    if authentication == AuthMode::None && !require.is_empty() {
        let message = "a route with authentication: none cannot require scopes, roles or claims";
        map.problems
            .at(map.node, &map.child_path("require"), message);
    }
    if authentication == AuthMode::Required && authn.is_some_and(|a| a.issuers.is_empty()) {
        let message = "this route requires authentication but no issuer or API key file is configured; add one under authentication.issuers, tenants or api_keys, or set authentication: none";
        map.problems
            .at(map.node, &map.child_path("authentication"), message);
    }
    if bad_body {
        return None;
    }
    Some(RouteConfig {
        id,
        path,
        methods,
        upstream: upstream?,
        authentication,
        require,
        rate_limits: rate_limits?,
        on_store_failure: on_store_failure?,
        sensitive,
        max_body_bytes,
        tenant_from: tenant_from?,
        mask: mask?,
    })
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
            && self.roles.is_empty()
            && self.claims.is_empty()
            && self.policy.is_none()
            && self.step_up.is_empty()
    }
}

fn read_match(map: &MapReader) -> Option<(String, Vec<Method>)> {
    let Some(matcher) = map.map("match") else {
        if map.get("match").is_none() {
            map.missing("match", "{ path: /users, methods: [GET] }");
        }
        return None;
    };
    let path = matcher.required_string("path", "a path pattern such as /users/{id}");
    let path = path.filter(|p| {
        let valid = p.starts_with('/') && !p.contains("//") && !p.split('/').any(|s| s == "." || s == "..") && !p.contains(['?', '#', '%', '\\']);
        if !valid {
            let node = matcher.get("path").unwrap();
            let message = format!("expected a canonical path pattern starting with / (no //, dot segments, %, ? or #), found {}", found(node));
            matcher.problems.at(node, &matcher.child_path("path"), message);
        }
        valid
    });
    let methods = read_methods(&matcher);
    matcher.finish();
    Some((path?, methods?))
}

fn read_methods(matcher: &MapReader) -> Option<Vec<Method>> {
    let Some(node) = matcher.get("methods") else {
        matcher.missing("methods", "a list of HTTP methods such as [GET, POST]");
        return None;
    };
    let items = list_items(node, &matcher.child_path("methods"), matcher.problems)?;
    let mut methods = Vec::new();
    let mut ok = true;
    for (path, item) in items {
        match scalar_text(item).filter(|m| METHODS.contains(m)) {
            Some(method) => methods.push(Method::from_bytes(method.as_bytes()).unwrap()),
            None => {
                let message = format!(
                    "expected one of {}, found {}",
                    METHODS.join(", "),
                    found(item)
                );
                matcher.problems.at(item, &path, message);
                ok = false;
            }
        }
    }
    if methods.is_empty() && ok {
        matcher.problems.at(
            node,
            &matcher.child_path("methods"),
            "expected at least one method",
        );
        ok = false;
    }
    ok.then_some(methods)
}

fn read_upstream_ref(
    map: &MapReader,
    declared: &[String],
    upstreams: Option<&HashMap<String, Arc<UpstreamConfig>>>,
) -> Option<Arc<UpstreamConfig>> {
    let name = map.required_string("upstream", "the name of an entry in upstreams")?;
    if !declared.contains(&name) {
        let node = map.get("upstream").unwrap();
        let mut message = format!("no upstream named {name:?} in upstreams");
        if let Some(s) =
            crate::config::reader::did_you_mean(&name, declared.iter().map(String::as_str))
        {
            message.push_str(&format!("; did you mean {s:?}?"));
        }
        map.problems.at(node, &map.child_path("upstream"), message);
        return None;
    }
    // A declared upstream missing here was invalid and is reported already.
    upstreams?.get(&name).cloned()
}

/// Reads `require.acr`, `require.amr` and `require.max_age`.
fn read_step_up(require: &MapReader) -> Option<crate::authz::step_up::StepUp> {
    let acr = require.strings("acr");
    let amr = require.strings("amr");
    let max_age = require.duration(
        "max_age",
        Duration::from_secs(1),
        Duration::from_secs(366 * 24 * 3600),
    );
    let failed = (acr.is_none() && require.get("acr").is_some())
        || (amr.is_none() && require.get("amr").is_some())
        || (max_age.is_none() && require.get("max_age").is_some());
    if failed {
        return None;
    }
    Some(crate::authz::step_up::StepUp {
        acr: acr.unwrap_or_default(),
        amr: amr.unwrap_or_default(),
        max_age,
    })
}

/// Reads `require.policy`: a rule that must exist in the loaded bundle.
/// `rego` is `None` when the `policies` section itself was invalid.
fn read_policy_rule(
    require: &MapReader,
    rego: Option<Option<&PoliciesConfig>>,
) -> Option<Option<String>> {
    let Some(rule) = require.string("policy") else {
        return require.get("policy").is_none().then_some(None);
    };
    let node = require.get("policy").unwrap();
    let path = require.child_path("policy");
    let rego = rego?;
    let Some(rego) = rego else {
        require.problems.at(
            node,
            &path,
            "a route names a policy rule but no policies are configured; add a policies section",
        );
        return None;
    };
    let rule = if rule.starts_with("data.") {
        rule
    } else {
        format!("data.{rule}")
    };
    // Rules on an external OPA server cannot be listed; a missing one denies.
    let Some(set) = &rego.set else {
        return Some(Some(rule));
    };
    if !set.has_rule(&rule) {
        let rules: Vec<String> = set.rules().map(|r| r.to_string()).collect();
        let mut message = format!("no rule {rule:?} in the loaded policies");
        if let Some(s) =
            crate::config::reader::did_you_mean(&rule, rules.iter().map(String::as_str))
        {
            message.push_str(&format!("; did you mean {s:?}?"));
        }
        require.problems.at(node, &path, message);
        return None;
    }
    Some(Some(rule))
}

fn read_requirements(
    map: &MapReader,
    rego: Option<Option<&PoliciesConfig>>,
) -> Option<Requirements> {
    let Some(require) = map.map("require") else {
        return map.get("require").is_none().then(Requirements::default);
    };
    let mut ok = true;
    let scopes = require.strings("scopes");
    ok &= scopes.is_some() || require.get("scopes").is_none();
    let roles = require.strings("roles");
    ok &= roles.is_some() || require.get("roles").is_none();
    let read_match = |key| match require.choice(key, &["all", "any"]) {
        Some("any") => Some(Match::Any),
        Some(_) => Some(Match::All),
        None => None,
    };
    let scopes_match = read_match("scopes_match");
    let roles_match = read_match("roles_match");
    let mut claims = Vec::new();
    if let Some(claim_map) = require.map("claims") {
        for (name, _, node) in claim_map.named_entries() {
            let path = claim_map.child_path(&name);
            let Some(spec) = MapReader::open(node, &path, claim_map.problems) else {
                ok = false;
                continue;
            };
            let pattern =
                spec.required_string("pattern", "a regular expression the whole value must match");
            match pattern.map(|p| Regex::new(&format!("^(?:{p})$"))) {
                Some(Ok(pattern)) => claims.push(ClaimRequirement {
                    path: name.clone(),
                    pattern,
                }),
                Some(Err(error)) => {
                    let node = spec.get("pattern").unwrap();
                    spec.problems.at(
                        node,
                        &spec.child_path("pattern"),
                        format!("invalid regular expression: {error}"),
                    );
                    ok = false;
                }
                None => ok = false,
            }
            spec.finish();
        }
    }
    let policy = read_policy_rule(&require, rego);
    ok &= policy.is_some() || require.get("policy").is_none();
    let step_up = read_step_up(&require);
    ok &= step_up.is_some();
    let policy_body = require.bool("policy_body").unwrap_or(false);
    if policy_body && require.get("policy").is_none() {
        require.problems.at(
            require.get("policy_body").unwrap(),
            &require.child_path("policy_body"),
            "policy_body needs a policy rule to read the body",
        );
        ok = false;
    }
    require.finish();
    ok.then(|| Requirements {
        scopes: scopes.unwrap_or_default(),
        scopes_match,
        roles: roles.unwrap_or_default(),
        roles_match,
        claims,
        policy: policy.flatten(),
        step_up: step_up.unwrap_or_default(),
        policy_body,
    })
}
