//! The configuration file: loading, validation with the location of every
//! problem, and the typed result that every stage reads.
//!
//! What the user wrote is read in one pass that collects every problem
//! (`reader`), and is turned into types in which bad values cannot exist.
//! Each stage owns the types of its own section (`proxy::config`,
//! `authn::config`, ...); this module ties them together and checks the
//! references between sections.

pub mod reader;
pub mod yaml;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::config::AdminConfig;
use crate::authn::config::AuthnConfig;
use crate::protect::config::ResponseHeadersConfig;
use crate::proxy::config::{ServerConfig, UpstreamConfig};
use crate::ratelimit::config::{RateLimitPolicy, StoreConfig};
use crate::route::config::RouteConfig;
use crate::tenancy::config::{TenantConfig, TenantFrom};
use crate::upstream_headers::IdentityHeaders;

pub use reader::Problem;
use reader::{MapReader, Problems};

/// The embedded default configuration: the users API example, protected.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/users-api/portcullis.yaml");
/// The name problems in the embedded default are reported under.
pub const EMBEDDED_NAME: &str = "<embedded default>";

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub upstreams: HashMap<String, Arc<UpstreamConfig>>,
    pub authentication: AuthnConfig,
    pub identity_headers: IdentityHeaders,
    pub response_headers: ResponseHeadersConfig,
    /// What is scrubbed from log lines.
    pub logging: crate::logging::LoggingConfig,
    /// API keys, when configured.
    pub api_keys: Option<crate::apikey::config::ApiKeysConfig>,
    /// The store of the rate-limit counts (in-process or Redis).
    pub rate_limit_store: StoreConfig,
    pub rate_limits: HashMap<String, Arc<RateLimitPolicy>>,
    /// Policies applied to every route, before the route's own.
    pub global_rate_limits: Vec<Arc<RateLimitPolicy>>,
    pub routes: Vec<Arc<RouteConfig>>,
    pub tenants: HashMap<String, Arc<TenantConfig>>,
    /// Tier-2 authorization: the Rego bundle, when configured.
    pub policies: Option<crate::authz::config::PoliciesConfig>,
    /// How requests name their tenant, unless a route sets its own.
    pub tenant_from: Option<TenantFrom>,
    /// The gateway's own OAuth token service, when configured.
    pub token_service: Option<Arc<crate::token_service::config::TokenServiceConfig>>,
    /// The audit log, when configured.
    pub audit: Option<crate::audit::AuditSettings>,
    /// Settings shared by the routes that mask responses.
    pub masking: crate::mask::config::MaskingConfig,
    /// The directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
}

/// Every problem found in a configuration, in file order.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Problem>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for problem in &self.0 {
            writeln!(f, "{problem}")?;
        }
        let count = self.0.len();
        write!(
            f,
            "{count} problem{} found",
            if count == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![Problem {
            location: name.clone(),
            path: String::new(),
            message: format!("cannot read the file: {error}"),
        }])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &name, &base_dir)
}

/// Validates configuration text. `name` is used in problem locations and
/// relative paths are resolved against `base_dir`.
pub fn parse(text: &str, name: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let root = yaml::parse(text).map_err(|error| {
        ConfigErrors(vec![Problem {
            location: format!("{name}:{}:{}", error.line, error.column),
            path: String::new(),
            message: format!("invalid YAML: {}", error.message),
        }])
    })?;
    let problems = Problems::new(name);
    let config = MapReader::open(&root, "", &problems).and_then(|top| {
        let config = read_top(&top, base_dir);
        top.finish();
        config
    });
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            let mut list = problems.into_vec();
            if list.is_empty() {
                list.push(Problem {
                    location: name.to_string(),
                    path: String::new(),
                    message: "the configuration is incomplete".into(),
                });
            }
            Err(ConfigErrors(list))
        }
    }
}

/// Reads every section, then the references between them. Returns `None`
/// when any section failed; the reasons are in `top.problems`.
fn read_top(top: &MapReader, base_dir: &Path) -> Option<Config> {
    let server = crate::proxy::config::read_server(top, base_dir);
    let admin = crate::admin::config::read(top);
    let upstreams = crate::proxy::config::read_upstreams(top);
    let mut authentication = crate::authn::config::read(top, base_dir);
    let identity_headers = crate::upstream_headers::read(top);
    let response_headers = crate::protect::config::read(top);
    let logging = crate::logging::config::read(top);
    let rate_limit_store = crate::ratelimit::config::read_store(top, base_dir);
    let api_keys = crate::apikey::config::read(top, base_dir, rate_limit_store.as_ref());
    let rate_limits = crate::ratelimit::config::read_policies(top, rate_limit_store.as_ref());
    let global_rate_limits = crate::ratelimit::config::read_global(
        top,
        &declared_names(top, "rate_limits"),
        rate_limits.as_ref(),
    );
    let tenants = crate::tenancy::config::read_tenants(
        top,
        base_dir,
        &declared_names(top, "rate_limits"),
        rate_limits.as_ref(),
    );
    let tenant_from = crate::tenancy::config::read_tenant_from(top);
    if let (Some(authn), Some(tenants)) = (authentication.as_mut(), tenants.as_ref()) {
        bind_tenant_issuers(top, authn, tenants);
    }
    let tenant_ids = tenants.as_ref().map(|t| &t.tenants);
    let token_service = crate::token_service::config::read(top, base_dir, tenant_ids);
    if let (Some(authn), Some(Some(service))) = (authentication.as_mut(), token_service.as_ref()) {
        crate::token_service::config::trust_issuer(top, authn, service);
    }
    let policies = crate::authz::config::read(top, base_dir);
    let audit = crate::audit::read_config(top, base_dir);
    let declared = Declared {
        upstreams: declared_names(top, "upstreams"),
        rate_limits: declared_names(top, "rate_limits"),
    };
    let routes = crate::route::config::read_routes(
        top,
        &declared,
        upstreams.as_ref(),
        rate_limits.as_ref(),
        // API keys are a credential too: with them, no issuer is needed.
        authentication
            .as_ref()
            .filter(|_| top.get("api_keys").is_none()),
        policies.as_ref().map(|p| p.as_ref()),
    );
    if let (Some(Some(service)), Some(routes)) = (token_service.as_ref(), routes.as_ref()) {
        crate::token_service::config::check_route_paths(top, service, routes);
    }
    let masking = crate::mask::config::read(top, base_dir);
    if let (Some(routes), Some(tenants), Some(masking), Some(from)) = (
        routes.as_ref(),
        tenants.as_ref(),
        masking.as_ref(),
        tenant_from.as_ref(),
    ) {
        let tenants = tenants.tenants.values().map(|tenant| tenant.as_ref());
        crate::mask::config::check_pseudonym_keys(top, routes, tenants, masking, from.as_ref());
    }

    Some(Config {
        server: server?,
        admin: admin?,
        upstreams: upstreams?,
        authentication: authentication?,
        identity_headers: identity_headers?,
        response_headers: response_headers?,
        logging: logging?,
        rate_limit_store: rate_limit_store?,
        api_keys: api_keys?,
        rate_limits: rate_limits?,
        global_rate_limits: global_rate_limits?,
        routes: routes?.into_iter().map(Arc::new).collect(),
        tenants: tenants?.tenants,
        policies: policies?,
        tenant_from: tenant_from?,
        token_service: token_service?.map(Arc::new),
        audit: audit?,
        masking: masking?,
        base_dir: base_dir.to_path_buf(),
    })
}

/// Adds the issuers declared under tenants to the trusted issuers. An
/// issuer URL may appear once in the whole file, so it belongs to exactly
/// one tenant (or to none).
fn bind_tenant_issuers(
    top: &MapReader,
    authn: &mut AuthnConfig,
    tenants: &crate::tenancy::config::Tenants,
) {
    for declared in &tenants.issuers {
        let issuer = &declared.config;
        let owner = authn
            .issuers
            .iter()
            .find(|existing| existing.issuer == issuer.issuer);
        if let Some(existing) = owner {
            let first = existing
                .tenant
                .as_deref()
                .map_or("authentication.issuers".to_string(), |t| {
                    format!("tenant {t:?}")
                });
            let message = format!(
                "issuer {:?} of tenant {:?} is already bound to {first}; an issuer belongs to exactly one tenant",
                issuer.issuer,
                issuer.tenant.as_deref().unwrap_or_default()
            );
            top.problems.at(&declared.node, &declared.path, message);
            continue;
        }
        authn.issuers.push(Arc::new(issuer.clone()));
    }
}

/// Names declared in the sections other sections refer to, known even when
/// an entry itself is invalid, so a reference to it is not reported twice.
pub struct Declared {
    pub upstreams: Vec<String>,
    pub rate_limits: Vec<String>,
}

fn declared_names(top: &MapReader, key: &'static str) -> Vec<String> {
    match top.get(key).map(|node| &node.value) {
        Some(yaml::Value::Mapping(entries)) => entries
            .iter()
            .filter_map(|(k, _)| reader::scalar_text(k).map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Resolves a path from the file against the file's directory.
pub fn resolve_path(base_dir: &Path, written: &str) -> PathBuf {
    let path = Path::new(written);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}
