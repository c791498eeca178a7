//! Tenants for the end-to-end tests: a gateway configuration in which each
//! tenant owns the issuer of its own [`Provider`], and requests addressed
//! to a tenant the way `tenant_from` reads them.

use http::Method;

use super::client::RequestBuilder;
use super::gateway::{Gateway, ADMIN_ADDRESS, LISTEN_ADDRESS};
use super::provider::Provider;
use super::upstream::Upstream;

/// Domain of the tenant hosts: tenant `acme` is `acme.api.example.test`.
pub const TENANT_DOMAIN: &str = "api.example.test";
/// Header that names the tenant when the source is [`TenantSource::Header`].
pub const TENANT_HEADER: &str = "x-tenant-id";

/// How requests name their tenant, as `tenant_from` configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// `Host: <tenant>.api.example.test`.
    Host,
    /// A path prefix: `/t/<tenant>/users` reaches the upstream as `/users`.
    PathPrefix,
    /// The header `x-tenant-id: <tenant>`.
    Header,
}

impl TenantSource {
    fn yaml(self) -> String {
        match self {
            TenantSource::Host => {
                format!("tenant_from: {{ host: \"{{tenant}}.{TENANT_DOMAIN}\" }}\n\n")
            }
            TenantSource::PathPrefix => {
                "tenant_from: { path_prefix: \"/t/{tenant}\" }\n\n".to_string()
            }
            TenantSource::Header => format!("tenant_from: {{ header: {TENANT_HEADER} }}\n\n"),
        }
    }

    /// Starts a request to `path` of `tenant` on `gateway`, naming the tenant
    /// the way this source reads it.
    pub fn request(
        self,
        gateway: &Gateway,
        method: Method,
        tenant: &str,
        path: &str,
    ) -> RequestBuilder {
        match self {
            TenantSource::Host => gateway
                .request(method, path)
                .header("host", &tenant_host(tenant)),
            TenantSource::PathPrefix => gateway.request(method, &format!("/t/{tenant}{path}")),
            TenantSource::Header => gateway.request(method, path).header(TENANT_HEADER, tenant),
        }
    }
}

/// Returns the host name of `tenant`, such as `acme.api.example.test`.
pub fn tenant_host(tenant: &str) -> String {
    format!("{tenant}.{TENANT_DOMAIN}")
}

/// One entry of `tenants`.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub id: String,
    /// Issuer URLs, each found by OIDC discovery, with audience `users-api`.
    pub issuers: Vec<String>,
    /// The `claims` mapping as a YAML flow mapping, such as
    /// `{ roles: [realm_access.roles] }`. Default: the gateway's.
    pub claims: Option<String>,
    /// Names of policies declared with [`TenantsConfig::policy`].
    pub rate_limits: Vec<String>,
    /// Static headers sent upstream with the tenant's requests.
    pub headers: Vec<(String, String)>,
}

impl TenantSpec {
    /// Starts a tenant that owns `provider`'s issuer.
    pub fn new(id: &str, provider: &Provider) -> TenantSpec {
        TenantSpec {
            id: id.to_string(),
            issuers: vec![provider.issuer().to_string()],
            claims: None,
            rate_limits: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn claims(mut self, flow_mapping: &str) -> TenantSpec {
        self.claims = Some(flow_mapping.to_string());
        self
    }

    pub fn rate_limit(mut self, policy: &str) -> TenantSpec {
        self.rate_limits.push(policy.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> TenantSpec {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn yaml(&self) -> String {
        let mut yaml = format!("  - id: {}\n    issuers:\n", self.id);
        for issuer in &self.issuers {
            yaml.push_str(&format!("      - issuer: \"{issuer}\"\n        audiences: [users-api]\n        discovery: true\n"));
        }
        if let Some(claims) = &self.claims {
            yaml.push_str(&format!("    claims: {claims}\n"));
        }
        if !self.rate_limits.is_empty() {
            yaml.push_str(&format!(
                "    rate_limits: [{}]\n",
                self.rate_limits.join(", ")
            ));
        }
        if !self.headers.is_empty() {
            let headers: Vec<String> = self
                .headers
                .iter()
                .map(|(name, value)| format!("{name}: \"{value}\""))
                .collect();
            yaml.push_str(&format!("    headers: {{ {} }}\n", headers.join(", ")));
        }
        yaml
    }
}

/// Builds the YAML of a gateway in front of the users API that serves
/// tenants and trusts no issuer outside them:
///
/// | route | method and path | requires | limit |
/// | --- | --- | --- | --- |
/// | list-users | GET /users | read:users | per-subject |
/// | get-user | GET /users/{id} | read:users | per-subject |
/// | create-user | POST /users | write:users | per-subject |
/// | delete-user | DELETE /users/{id} | write:users | per-subject |
/// | admin-echo | GET /faults/echo | role admin | none |
///
/// The per-subject policy (key `[subject]`) allows 1000 requests per minute
/// unless changed. Identity headers have their default `x-portcullis-`
/// names.
pub struct TenantsConfig {
    upstream_url: String,
    source: TenantSource,
    subject_limit: (u64, String),
    policies: Vec<(String, String)>,
    tenants: Vec<TenantSpec>,
}

/// Starts a configuration for `upstream` whose requests name their tenant
/// the way `source` reads it.
pub fn tenants_config(upstream: &Upstream, source: TenantSource) -> TenantsConfig {
    TenantsConfig {
        upstream_url: upstream.url(),
        source,
        subject_limit: (1000, "1m".to_string()),
        policies: Vec::new(),
        tenants: Vec::new(),
    }
}

impl TenantsConfig {
    pub fn tenant(mut self, tenant: TenantSpec) -> TenantsConfig {
        self.tenants.push(tenant);
        self
    }

    /// Declares a rate-limit policy, given as a YAML flow mapping such as
    /// `{ requests: 3, per: 1m, key: [tenant] }`.
    pub fn policy(mut self, name: &str, flow_mapping: &str) -> TenantsConfig {
        self.policies
            .push((name.to_string(), flow_mapping.to_string()));
        self
    }

    /// Sets the per-subject limit of the users routes, such as `(3, "1m")`.
    pub fn subject_limit(mut self, requests: u64, per: &str) -> TenantsConfig {
        self.subject_limit = (requests, per.to_string());
        self
    }

    /// Returns the YAML text, with the listener and admin addresses left as
    /// the placeholders that [`Gateway::start`] fills in.
    pub fn yaml(&self) -> String {
        let mut yaml = format!(
            "server:\n  address: {LISTEN_ADDRESS}\n\nadmin:\n  address: {ADMIN_ADDRESS}\n\n"
        );
        yaml.push_str(&format!(
            "upstreams:\n  users:\n    url: \"{}\"\n    timeouts:\n      connect: 2s\n      response: 30s\n\n",
            self.upstream_url
        ));
        yaml.push_str(&self.source.yaml());

        let (requests, per) = &self.subject_limit;
        yaml.push_str(&format!(
            "rate_limits:\n  per-subject: {{ requests: {requests}, per: {per}, key: [subject] }}\n"
        ));
        for (name, policy) in &self.policies {
            yaml.push_str(&format!("  {name}: {policy}\n"));
        }

        yaml.push_str("\ntenants:\n");
        for tenant in &self.tenants {
            yaml.push_str(&tenant.yaml());
        }
        yaml.push('\n');
        yaml.push_str(ROUTES);
        yaml
    }
}

const ROUTES: &str = "\
routes:
  - id: list-users
    match: { path: /users, methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }
    rate_limits: per-subject

  - id: get-user
    match: { path: \"/users/{id}\", methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }
    rate_limits: per-subject

  - id: create-user
    match: { path: /users, methods: [POST] }
    upstream: users
    require: { scopes: [write:users] }
    rate_limits: per-subject

  - id: delete-user
    match: { path: \"/users/{id}\", methods: [DELETE] }
    upstream: users
    require: { scopes: [write:users] }
    rate_limits: per-subject

  - id: admin-echo
    match: { path: /faults/echo, methods: [GET] }
    upstream: users
    require: { roles: [admin] }
";
