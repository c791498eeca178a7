//! A realistic gateway configuration for the end-to-end tests, with the
//! settings tests change as builder methods.

use std::path::Path;

use super::gateway::{ADMIN_ADDRESS, LISTEN_ADDRESS};
use super::provider::Provider;
use super::upstream::Upstream;

/// One trusted issuer in the configuration, found by OIDC discovery.
#[derive(Clone)]
struct Issuer {
    url: String,
    audience: String,
}

/// The `server.tls` section: PEM files and the lowest accepted version.
#[derive(Clone)]
struct Tls {
    certificate: String,
    key: String,
    min_version: Option<String>,
}

/// Builds the YAML of a gateway in front of the users API:
///
/// | route | method and path | requires | notes |
/// | --- | --- | --- | --- |
/// | list-users | GET /users | read:users | per-subject limit |
/// | create-user | POST /users | write:users | per-subject limit, 16 KiB body, sensitive |
/// | get-user | GET /users/{id} | read:users | per-subject limit |
/// | delete-user | DELETE /users/{id} | write:users | per-subject limit, sensitive |
/// | faults | GET /faults/{*fault} | read:users | the upstream's fault endpoints |
/// | echo | POST /faults/echo | read:users | 1 KiB body |
///
/// The per-subject limit is 10 requests per minute unless changed. The
/// identity reaches the upstream in the `x-portcullis-*` headers.
pub struct ConfigBuilder {
    upstream_url: String,
    issuers: Vec<Issuer>,
    rate_limit: (u32, String),
    response_timeout: String,
    shutdown_grace: String,
    token_types: Option<Vec<String>>,
    clock_skew: Option<String>,
    refetch_cooldown: Option<String>,
    tls: Option<Tls>,
    request_header_timeout: Option<String>,
    max_header_bytes: Option<String>,
    extra_routes: Vec<String>,
}

/// Starts a configuration for `upstream` that trusts each provider's
/// issuer and audience.
pub fn config_for(upstream: &Upstream, providers: &[&Provider]) -> ConfigBuilder {
    ConfigBuilder {
        upstream_url: upstream.url(),
        issuers: providers
            .iter()
            .map(|provider| Issuer {
                url: provider.issuer().to_string(),
                audience: "users-api".to_string(),
            })
            .collect(),
        rate_limit: (10, "1m".to_string()),
        response_timeout: "30s".to_string(),
        shutdown_grace: "10s".to_string(),
        token_types: None,
        clock_skew: None,
        refetch_cooldown: None,
        tls: None,
        request_header_timeout: None,
        max_header_bytes: None,
        extra_routes: Vec::new(),
    }
}

impl ConfigBuilder {
    /// Forwards to this URL instead of the upstream's.
    pub fn upstream_url(mut self, url: &str) -> Self {
        self.upstream_url = url.to_string();
        self
    }

    /// Trusts one more issuer, with audience `users-api`, such as one whose
    /// provider is not running yet.
    pub fn issuer(mut self, url: &str) -> Self {
        self.issuers.push(Issuer {
            url: url.to_string(),
            audience: "users-api".to_string(),
        });
        self
    }

    /// Accepts only these `typ` header values from every issuer.
    pub fn token_types(mut self, types: &[&str]) -> Self {
        self.token_types = Some(types.iter().map(|t| t.to_string()).collect());
        self
    }

    /// Sets the per-subject limit on the users routes, such as `(3, "1m")`.
    pub fn rate_limit(mut self, requests: u32, per: &str) -> Self {
        self.rate_limit = (requests, per.to_string());
        self
    }

    /// Sets the time the upstream has to send response headers. Default 30s.
    pub fn upstream_response_timeout(mut self, timeout: &str) -> Self {
        self.response_timeout = timeout.to_string();
        self
    }

    /// Sets the time in-flight requests get after SIGTERM. Default 10s.
    pub fn shutdown_grace(mut self, grace: &str) -> Self {
        self.shutdown_grace = grace.to_string();
        self
    }

    /// Sets the tolerance for `exp`, `nbf` and `iat` of every issuer.
    /// Default: the gateway's (30s).
    pub fn clock_skew(mut self, skew: &str) -> Self {
        self.clock_skew = Some(skew.to_string());
        self
    }

    /// Sets the minimum time between two JWKS refetches for unknown kids.
    /// Default: the gateway's (30s).
    pub fn jwks_refetch_cooldown(mut self, cooldown: &str) -> Self {
        self.refetch_cooldown = Some(cooldown.to_string());
        self
    }

    /// Serves TLS only, with these PEM files (absolute paths) and, when
    /// given, `min_version` (`"1.2"` or `"1.3"`).
    pub fn tls(mut self, certificate: &Path, key: &Path, min_version: Option<&str>) -> Self {
        self.tls = Some(Tls {
            certificate: certificate.display().to_string(),
            key: key.display().to_string(),
            min_version: min_version.map(str::to_string),
        });
        self
    }

    /// Sets the time a client has to send its request head and to finish
    /// the TLS handshake, such as `"1s"`. Default: the gateway's (10s).
    pub fn request_header_timeout(mut self, timeout: &str) -> Self {
        self.request_header_timeout = Some(timeout.to_string());
        self
    }

    /// Sets the limit on the request line plus headers, such as `"64KiB"`.
    /// Default: the gateway's (16 KiB).
    pub fn max_header_bytes(mut self, size: &str) -> Self {
        self.max_header_bytes = Some(size.to_string());
        self
    }

    /// Appends one route, given as the YAML mapping of a list item without
    /// the leading `- `, such as
    /// `"id: any\nmatch: { path: /any, methods: [GET] }\nupstream: users"`.
    /// Its upstream is `users`.
    pub fn route(mut self, route_yaml: &str) -> Self {
        self.extra_routes.push(route_yaml.to_string());
        self
    }

    /// Returns the YAML text, with the listener and admin addresses left as
    /// the placeholders that [`super::Gateway::start`] fills in.
    pub fn yaml(&self) -> String {
        let mut yaml = String::new();
        yaml.push_str(&self.server_yaml());
        yaml.push_str(&format!("admin:\n  address: {ADMIN_ADDRESS}\n\n"));
        yaml.push_str(&format!(
            "upstreams:\n  users:\n    url: \"{}\"\n    timeouts:\n      connect: 2s\n      response: {}\n\n",
            self.upstream_url, self.response_timeout
        ));
        yaml.push_str(&self.authentication_yaml());
        yaml.push_str(IDENTITY_HEADERS);
        let (requests, per) = &self.rate_limit;
        yaml.push_str(&format!("rate_limits:\n  per-subject:\n    requests: {requests}\n    per: {per}\n    key: [subject]\n\n"));
        yaml.push_str(ROUTES);
        for route in &self.extra_routes {
            yaml.push_str("\n  - ");
            yaml.push_str(&route.replace('\n', "\n    "));
            yaml.push('\n');
        }
        yaml
    }

    fn server_yaml(&self) -> String {
        let mut yaml = format!(
            "server:\n  address: {LISTEN_ADDRESS}\n  timeouts:\n    shutdown_grace: {}\n",
            self.shutdown_grace
        );
        if let Some(timeout) = &self.request_header_timeout {
            yaml.push_str(&format!("    request_header: {timeout}\n"));
        }
        if let Some(size) = &self.max_header_bytes {
            yaml.push_str(&format!("  limits:\n    max_header_bytes: {size}\n"));
        }
        if let Some(tls) = &self.tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
                tls.certificate, tls.key
            ));
            if let Some(version) = &tls.min_version {
                yaml.push_str(&format!("    min_version: \"{version}\"\n"));
            }
        }
        yaml.push('\n');
        yaml
    }

    fn authentication_yaml(&self) -> String {
        let mut yaml = String::from("authentication:\n  issuers:\n");
        if self.issuers.is_empty() {
            yaml = String::from("authentication:\n  issuers: []\n");
        }
        for issuer in &self.issuers {
            yaml.push_str(&format!(
                "    - issuer: \"{}\"\n      audiences: [{}]\n      discovery: true\n",
                issuer.url, issuer.audience
            ));
            if let Some(types) = &self.token_types {
                yaml.push_str(&format!("      token_types: [{}]\n", types.join(", ")));
            }
            if let Some(skew) = &self.clock_skew {
                yaml.push_str(&format!("      clock_skew: {skew}\n"));
            }
            if let Some(cooldown) = &self.refetch_cooldown {
                yaml.push_str(&format!(
                    "      jwks_cache:\n        refetch_cooldown: {cooldown}\n"
                ));
            }
        }
        yaml.push('\n');
        yaml
    }
}

const IDENTITY_HEADERS: &str = "\
identity_headers:
  subject: x-portcullis-subject
  client_id: x-portcullis-client-id
  scopes: x-portcullis-scopes
  issuer: x-portcullis-issuer

";

const ROUTES: &str = "\
routes:
  - id: list-users
    match: { path: /users, methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }
    rate_limits: per-subject

  - id: create-user
    match: { path: /users, methods: [POST] }
    upstream: users
    require: { scopes: [write:users] }
    rate_limits: per-subject
    max_body_bytes: 16KiB
    sensitive: true

  - id: get-user
    match: { path: \"/users/{id}\", methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }
    rate_limits: per-subject

  - id: delete-user
    match: { path: \"/users/{id}\", methods: [DELETE] }
    upstream: users
    require: { scopes: [write:users] }
    rate_limits: per-subject
    sensitive: true

  - id: faults
    match: { path: \"/faults/{*fault}\", methods: [GET] }
    upstream: users
    require: { scopes: [read:users] }

  - id: echo
    match: { path: /faults/echo, methods: [POST] }
    upstream: users
    require: { scopes: [read:users] }
    max_body_bytes: 1KiB
";
