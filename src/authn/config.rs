//! Configuration of authentication: the trusted issuers and how their
//! keys are found, and the verified-token cache.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use crate::authn::jwk::Algorithm;
use crate::config::reader::{found, MapReader};
use crate::config::resolve_path;

#[derive(Debug)]
pub struct AuthnConfig {
    pub issuers: Vec<Arc<IssuerConfig>>,
    /// Tokens longer than this are rejected before any parsing. Default 8 KiB.
    pub max_token_bytes: usize,
    pub token_cache: TokenCacheConfig,
    /// Forward the `Authorization` header to the upstream after
    /// verification. Default false: the upstream receives the verified
    /// identity headers instead, and the token cannot leak from its logs.
    pub forward_token: bool,
}

/// The verified-token cache: tokens already verified are not verified
/// again until they expire. Entries are keyed by a SHA-256 of the token.
#[derive(Debug, Clone, Copy)]
pub struct TokenCacheConfig {
    /// Default true.
    pub enabled: bool,
    /// Default 100 000 entries.
    pub max_entries: usize,
    /// An entry lives at most this long, and never beyond the token's `exp`.
    /// Default 5m.
    pub max_ttl: Duration,
}

/// One trusted token issuer (an OIDC provider, or a local key set).
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    pub keys: KeySource,
    /// Algorithms accepted from this issuer. Default: every asymmetric
    /// algorithm its keys allow.
    pub algorithms: Option<Vec<Algorithm>>,
    /// Accepted `typ` header values, such as `at+jwt` (RFC 9068). Default:
    /// any.
    pub token_types: Option<Vec<String>>,
    /// Tolerance for `exp`, `nbf` and `iat`. Default 30s.
    pub clock_skew: Duration,
    pub jwks: JwksCacheConfig,
    /// The claims this issuer's tokens carry scopes, roles, client id and
    /// tenant in.
    pub claims: ClaimMapping,
    /// The tenant this issuer belongs to, when it is declared under
    /// `tenants`. Each issuer belongs to at most one tenant.
    pub tenant: Option<String>,
    /// RFC 7662 token introspection: with it the issuer also accepts opaque
    /// access tokens. Default none.
    pub introspection: Option<IntrospectionConfig>,
}

/// Settings of the requests to an issuer's introspection endpoint
/// (RFC 7662), which reports whether a token is active.
#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The introspection endpoint. `None`: the `introspection_endpoint` of
    /// the issuer's discovery document (only with `discovery: true`).
    pub endpoint: Option<Uri>,
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// The gateway's client secret, from `{ env }` or `{ file }`.
    pub client_secret: Secret,
    /// Client authentication method. Default `client_secret_basic`.
    pub auth_method: ClientAuthMethod,
    /// Bound on one introspection request. Default 2s.
    pub timeout: Duration,
    /// Active results are reused at most this long, and never past the
    /// token's `exp`. Zero disables the cache. Default 60s.
    pub cache_max_ttl: Duration,
    /// Also introspect JWTs that verified, to add claims the JWT lacks (such
    /// as roles) and to see revocation at the provider. Default false.
    pub jwts: bool,
}

/// Client authentication at the introspection endpoint (RFC 6749 section
/// 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the form-urlencoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

/// The claims an identity provider puts scopes, roles, client id and
/// tenant in.
/// Each list is read in order and merged (scopes, roles) or the first
/// present claim wins (client id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claims holding scopes, as a space-separated string or an array.
    /// Default `[scope, scp]`; Auth0 adds `permissions`.
    pub scopes: Vec<String>,
    /// Claims holding roles, such as Keycloak's `realm_access.roles` or
    /// `resource_access.<client>.roles`, Entra's `roles`. Default none.
    pub roles: Vec<String>,
    /// Claims holding the client id. Default `[azp, client_id]`.
    pub client_id: Vec<String>,
    /// Claim holding the tenant id; when a token carries it, it must equal
    /// the issuer's tenant. Default `tenant_id`.
    pub tenant: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            scopes: vec!["scope".into(), "scp".into()],
            roles: Vec::new(),
            client_id: vec!["azp".into(), "client_id".into()],
            tenant: "tenant_id".into(),
        }
    }
}

/// Reads a `claims` mapping; `roles_claim` (a single path) is accepted at
/// issuer level as a shorthand for `claims.roles`.
pub fn read_claim_mapping(map: &MapReader) -> Option<ClaimMapping> {
    let mut mapping = ClaimMapping::default();
    if let Some(roles) = map.string("roles_claim") {
        mapping.roles = vec![roles];
    }
    let Some(claims) = map.map("claims") else {
        return map.get("claims").is_none().then_some(mapping);
    };
    let mut ok = true;
    for (key, field) in [
        ("scopes", &mut mapping.scopes),
        ("roles", &mut mapping.roles),
        ("client_id", &mut mapping.client_id),
    ] {
        match claims.strings(key) {
            Some(list) if !list.is_empty() => *field = list,
            Some(_) => {
                claims.problems.at(
                    claims.get(key).unwrap(),
                    &claims.child_path(key),
                    "expected at least one claim path",
                );
                ok = false;
            }
            None => ok &= claims.get(key).is_none(),
        }
    }
    if let Some(tenant) = claims.string("tenant") {
        mapping.tenant = tenant;
    }
    claims.finish();
    ok.then_some(mapping)
}

/// The source of an issuer's verification keys.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// OIDC discovery at `<issuer>/.well-known/openid-configuration`.
    Discovery,
    JwksUrl(Uri),
    JwksFile(PathBuf),
    /// A JWKS written into the configuration.
    Inline(String),
    /// The gateway's own token service, which sets the keys in-process
    /// (see [`crate::authn::jwks::IssuerKeys::replace_local_keys`]).
    TokenService,
    /// A shared HMAC secret, only with an explicit HS algorithm.
    Secret {
        secret: Secret,
        algorithm: Algorithm,
    },
}

/// JWKS cache bounds for one issuer.
#[derive(Debug, Clone, Copy)]
pub struct JwksCacheConfig {
    /// The provider's `Cache-Control: max-age` is clamped to at least this.
    /// Default 5m.
    pub min_ttl: Duration,
    /// ... and at most this. Default 24h.
    pub max_ttl: Duration,
    /// A token with an unknown `kid` triggers at most one refetch per this
    /// interval. Default 30s.
    pub refetch_cooldown: Duration,
    /// When the provider is unreachable, the last good keys stay in use
    /// this long after they expire; then the issuer fails closed. Default 1h.
    pub max_stale: Duration,
    /// Timeout of one discovery or JWKS request. Default 5s.
    pub fetch_timeout: Duration,
}

impl Default for JwksCacheConfig {
    fn default() -> Self {
        JwksCacheConfig {
            min_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(24 * 3600),
            refetch_cooldown: Duration::from_secs(30),
            max_stale: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Secret bytes that never appear in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    #[cfg(test)]
    pub fn for_tests(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub fn read(top: &MapReader, base_dir: &Path) -> Option<AuthnConfig> {
    let mut config = AuthnConfig {
        issuers: Vec::new(),
        max_token_bytes: 8 * 1024,
        token_cache: TokenCacheConfig {
            enabled: true,
            max_entries: 100_000,
            max_ttl: Duration::from_secs(300),
        },
        forward_token: false,
    };
    let Some(map) = top.map("authentication") else {
        return top.get("authentication").is_none().then_some(config);
    };
    let mut ok = true;
    config.max_token_bytes = map
        .byte_size("max_token_bytes", 256, 1 << 20)
        .map_or(config.max_token_bytes, |v| v as usize);
    config.forward_token = map.bool("forward_token").unwrap_or(false);
    if let Some(cache) = map.map("token_cache") {
        let c = &mut config.token_cache;
        c.enabled = cache.bool("enabled").unwrap_or(c.enabled);
        c.max_entries = cache
            .integer("max_entries", 1, 100_000_000)
            .map_or(c.max_entries, |v| v as usize);
        c.max_ttl = cache
            .duration(
                "max_ttl",
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )
            .unwrap_or(c.max_ttl);
        cache.finish();
    }
    if let Some(items) = map.list("issuers") {
        for (path, node) in items {
            let Some(issuer_map) = MapReader::open(node, &path, map.problems) else {
                ok = false;
                continue;
            };
            match read_issuer(&issuer_map, base_dir) {
                Some(issuer) => {
                    if config.issuers.iter().any(|i| i.issuer == issuer.issuer) {
                        let message = format!("issuer {:?} is configured twice", issuer.issuer);
                        map.problems
                            .at(node, &issuer_map.child_path("issuer"), message);
                        ok = false;
                    }
                    config.issuers.push(Arc::new(issuer));
                }
                None => ok = false,
            }
            issuer_map.finish();
        }
    }
    map.finish();
    ok.then_some(config)
}

const KEY_SOURCES: [&str; 5] = ["discovery", "jwks_url", "jwks_file", "jwks", "secret"];

pub fn read_issuer(map: &MapReader, base_dir: &Path) -> Option<IssuerConfig> {
    let issuer = map.required_string("issuer", "the exact iss value of the issuer's tokens");
    let audiences = map.strings("audiences");
    if map.get("audiences").is_none() {
        map.missing(
            "audiences",
            "the aud values this gateway accepts, such as [users-api]",
        );
    }
    let keys = read_key_source(map, base_dir);
    let algorithms = read_algorithms(map);
    let token_types = map.strings("token_types");
    let skew = map.duration("clock_skew", Duration::ZERO, Duration::from_secs(600));
    let jwks = read_jwks_cache(map);
    let claims = read_claim_mapping(map);
    let introspection = read_introspection(map, keys.as_ref(), base_dir);
    let failed = (skew.is_none() && map.get("clock_skew").is_some())
        || (token_types.is_none() && map.get("token_types").is_some());

    let issuer = issuer?;
    let audiences = audiences?;
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        map.problems.at(
            map.get("audiences").unwrap(),
            &map.child_path("audiences"),
            "expected at least one non-empty audience",
        );
        return None;
    }
    let keys = keys?;
    let algorithms = algorithms?;
    if let (KeySource::Secret { algorithm, .. }, Some(list)) = (&keys, &algorithms) {
        if list.iter().any(|a| a != algorithm) {
            map.problems.at(
                map.node,
                &map.child_path("algorithms"),
                "an issuer with a secret accepts only the secret's algorithm",
            );
            return None;
        }
    }
    if failed {
        return None;
    }
    Some(IssuerConfig {
        issuer,
        audiences,
        keys,
        algorithms,
        token_types,
        clock_skew: skew.unwrap_or(Duration::from_secs(30)),
        jwks: jwks?,
        claims: claims?,
        tenant: None,
        introspection: introspection?,
    })
}

const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Reads an issuer's optional `introspection` section. `keys` is the
/// issuer's key source when it was valid, so an endpoint left out can be
/// taken from discovery. Returns `Some(None)` when the section is absent.
fn read_introspection(
    map: &MapReader,
    keys: Option<&KeySource>,
    base_dir: &Path,
) -> Option<Option<IntrospectionConfig>> {
    let Some(section) = map.map("introspection") else {
        return map.get("introspection").is_none().then_some(None);
    };
    let endpoint = read_endpoint(&section, keys);
    let client_id = section.required_string("client_id", "the gateway's client id at the provider");
    let client_secret = read_secret(&section, "client_secret", base_dir);
    if section.get("client_secret").is_none() {
        section.missing("client_secret", "{ env: NAME } or { file: PATH }");
    }
    let auth_method = match section.get("auth_method") {
        None => Some(ClientAuthMethod::ClientSecretBasic),
        Some(_) => section
            .choice("auth_method", &AUTH_METHODS)
            .map(|name| match name {
                "client_secret_post" => ClientAuthMethod::ClientSecretPost,
                _ => ClientAuthMethod::ClientSecretBasic,
            }),
    };
    let timeout = optional_duration(
        &section,
        "timeout",
        Duration::from_millis(100),
        Duration::from_secs(60),
        Duration::from_secs(2),
    );
    let cache_max_ttl = optional_duration(
        &section,
        "cache_max_ttl",
        Duration::ZERO,
        Duration::from_secs(24 * 3600),
        Duration::from_secs(60),
    );
    let jwts = match section.get("jwts") {
        None => Some(false),
        Some(_) => section.bool("jwts"),
    };
    section.finish();

    Some(Some(IntrospectionConfig {
        endpoint: endpoint?,
        client_id: client_id?,
        client_secret: client_secret?,
        auth_method: auth_method?,
        timeout: timeout?,
        cache_max_ttl: cache_max_ttl?,
        jwts: jwts?,
    }))
}

/// Reads a duration that has a default; `None` only when it is invalid.
fn optional_duration(
    map: &MapReader,
    key: &'static str,
    min: Duration,
    max: Duration,
    default: Duration,
) -> Option<Duration> {
    match map.get(key) {
        None => Some(default),
        Some(_) => map.duration(key, min, max),
    }
}

/// Reads `introspection.endpoint`: `Some(None)` means "from discovery",
/// allowed only for an issuer with `discovery: true`.
fn read_endpoint(section: &MapReader, keys: Option<&KeySource>) -> Option<Option<Uri>> {
    let Some(node) = section.get("endpoint") else {
        if keys.is_some_and(|keys| !matches!(keys, KeySource::Discovery)) {
            section.missing(
                "endpoint",
                "the introspection endpoint URL; only an issuer with discovery: true can leave it out",
            );
            return None;
        }
        return Some(None);
    };
    let text = section.string("endpoint")?;
    match parse_endpoint(&text) {
        Ok(uri) => Some(Some(uri)),
        Err(expected) => {
            let message = format!("expected {expected}, found {}", found(node));
            section
                .problems
                .at(node, &section.child_path("endpoint"), message);
            None
        }
    }
}

/// Parses an introspection endpoint. The client secret travels with every
/// request, so plain `http://` is accepted only for loopback hosts. Returns
/// what was expected when the URL is not acceptable.
pub fn parse_endpoint(text: &str) -> Result<Uri, &'static str> {
    const EXPECTED: &str = "an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)";
    let uri = text.parse::<Uri>().map_err(|_| EXPECTED)?;
    let host = uri.host().ok_or(EXPECTED)?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if loopback => Ok(uri),
        _ => Err(EXPECTED),
    }
}

fn read_key_source(map: &MapReader, base_dir: &Path) -> Option<KeySource> {
    let given: Vec<&str> = KEY_SOURCES
        .iter()
        .copied()
        .filter(|key| map.get(key).is_some())
        .collect();
    // `algorithm` belongs to `secret`; reading it here marks it known.
    let algorithm_node = map.get("algorithm");
    if given.len() != 1 {
        let message = format!(
            "expected exactly one key source of {}, found {}",
            KEY_SOURCES.join(", "),
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(" and ")
            }
        );
        map.problems.at(map.node, &map.path, message);
        return None;
    }
    if let Some(node) = algorithm_node.filter(|_| given[0] != "secret") {
        map.problems.at(
            node,
            &map.child_path("algorithm"),
            "algorithm is only used with secret; use algorithms to restrict a JWKS",
        );
        return None;
    }
    match given[0] {
        "discovery" => match map.bool("discovery")? {
            true => Some(KeySource::Discovery),
            false => {
                map.problems.at(map.get("discovery").unwrap(), &map.child_path("discovery"), "discovery: false gives no keys; use jwks_url, jwks_file, jwks or secret instead");
                None
            }
        },
        "jwks_url" => {
            let text = map.string("jwks_url")?;
            let uri = text
                .parse::<Uri>()
                .ok()
                .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
            if uri.is_none() {
                let node = map.get("jwks_url").unwrap();
                map.problems.at(
                    node,
                    &map.child_path("jwks_url"),
                    format!("expected an http:// or https:// URL, found {}", found(node)),
                );
            }
            uri.map(KeySource::JwksUrl)
        }
        "jwks_file" => {
            let path = resolve_path(base_dir, &map.string("jwks_file")?);
            match std::fs::read(&path) {
                Ok(bytes) => match crate::authn::jwk::KeySet::from_jwks_json(&bytes) {
                    Ok((set, _)) if !set.is_empty() => Some(KeySource::JwksFile(path)),
                    Ok(_) => {
                        map.problems.at(
                            map.get("jwks_file").unwrap(),
                            &map.child_path("jwks_file"),
                            format!("{} holds no usable verification key", path.display()),
                        );
                        None
                    }
                    Err(error) => {
                        map.problems.at(
                            map.get("jwks_file").unwrap(),
                            &map.child_path("jwks_file"),
                            format!("{} is not a valid JWKS: {error}", path.display()),
                        );
                        None
                    }
                },
                Err(error) => {
                    map.problems.at(
                        map.get("jwks_file").unwrap(),
                        &map.child_path("jwks_file"),
                        format!("cannot read {}: {error}", path.display()),
                    );
                    None
                }
            }
        }
        "jwks" => read_inline_jwks(map),
        _ => read_secret_source(map, base_dir),
    }
}

/// Members of a JWK that belong to the private key.
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn read_inline_jwks(map: &MapReader) -> Option<KeySource> {
    let node = map.get("jwks").unwrap();
    let json = yaml_to_json(node);
    let private = json["keys"].as_array().is_some_and(|keys| {
        keys.iter().any(|key| {
            PRIVATE_JWK_MEMBERS
                .iter()
                .any(|member| key.get(member).is_some())
        })
    });
    if private {
        let message = "the JWKS contains private or symmetric key material (d, p, q, k, ...); publish only public keys here";
        map.problems.at(node, &map.child_path("jwks"), message);
        return None;
    }
    let text = json.to_string();
    match crate::authn::jwk::KeySet::from_jwks_json(text.as_bytes()) {
        Ok((set, _)) if !set.is_empty() => Some(KeySource::Inline(text)),
        Ok(_) => {
            map.problems.at(
                node,
                &map.child_path("jwks"),
                "the JWKS holds no usable verification key",
            );
            None
        }
        Err(error) => {
            map.problems.at(
                node,
                &map.child_path("jwks"),
                format!("not a valid JWKS: {error}"),
            );
            None
        }
    }
}

fn read_secret_source(map: &MapReader, base_dir: &Path) -> Option<KeySource> {
    let algorithm = match map.choice("algorithm", &["HS256", "HS384", "HS512"]) {
        Some(name) => Algorithm::from_name(name),
        None => {
            if map.get("algorithm").is_none() {
                map.missing("algorithm", "HS256, HS384 or HS512 (required with secret)");
            }
            None
        }
    };
    let secret = read_secret(map, "secret", base_dir)?;
    let algorithm = algorithm?;
    if let Err(error) = crate::authn::jwk::VerifyingKey::hmac(secret.expose(), algorithm, None) {
        map.problems.at(
            map.get("secret").unwrap(),
            &map.child_path("secret"),
            format!("unusable secret: {error}"),
        );
        return None;
    }
    Some(KeySource::Secret { secret, algorithm })
}

/// Reads a secret given as `{ env: NAME }` or `{ file: PATH }`. Messages
/// never include the secret's value.
pub fn read_secret(map: &MapReader, key: &'static str, base_dir: &Path) -> Option<Secret> {
    let node = map.get(key)?;
    let path = map.child_path(key);
    if !matches!(node.value, crate::config::yaml::Value::Mapping(_)) {
        // Never describe what was found: it may be the secret itself.
        let message = "expected { env: NAME } or { file: PATH }; secrets are not written inline";
        map.problems.at(node, &path, message);
        return None;
    }
    let source = MapReader::open(node, &path, map.problems)?;
    let env = source.string("env");
    let file = source.string("file");
    source.finish();
    let bytes = match (env, file) {
        (Some(name), None) => match std::env::var(&name) {
            Ok(value) if !value.is_empty() => value.into_bytes(),
            _ => {
                map.problems.at(
                    node,
                    &path,
                    format!("environment variable {name} is not set or empty"),
                );
                return None;
            }
        },
        (None, Some(file)) => match std::fs::read(resolve_path(base_dir, &file)) {
            Ok(bytes) if !bytes.is_empty() => {
                let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                trimmed.to_vec()
            }
            Ok(_) => {
                map.problems
                    .at(node, &path, format!("secret file {file} is empty"));
                return None;
            }
            Err(error) => {
                map.problems.at(
                    node,
                    &path,
                    format!("cannot read secret file {file}: {error}"),
                );
                return None;
            }
        },
        _ => {
            map.problems.at(node, &path, "expected exactly one of { env: NAME } or { file: PATH }; secrets are not written inline");
            return None;
        }
    };
    Some(Secret(bytes))
}

fn read_algorithms(map: &MapReader) -> Option<Option<Vec<Algorithm>>> {
    let Some(node) = map.get("algorithms") else {
        return Some(None);
    };
    let names = map.strings("algorithms")?;
    let mut list = Vec::new();
    for name in names {
        match Algorithm::from_name(&name) {
            Some(algorithm) => list.push(algorithm),
            None => {
                let message = format!("unsupported algorithm {name:?}; expected RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384 or HS512");
                map.problems
                    .at(node, &map.child_path("algorithms"), message);
                return None;
            }
        }
    }
    if list.is_empty() {
        map.problems.at(
            node,
            &map.child_path("algorithms"),
            "expected at least one algorithm",
        );
        return None;
    }
    Some(Some(list))
}

fn read_jwks_cache(map: &MapReader) -> Option<JwksCacheConfig> {
    let mut config = JwksCacheConfig::default();
    let Some(cache) = map.map("jwks_cache") else {
        return map.get("jwks_cache").is_none().then_some(config);
    };
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));
    config.min_ttl = cache
        .duration("min_ttl", min, max)
        .unwrap_or(config.min_ttl);
    config.max_ttl = cache
        .duration("max_ttl", min, max)
        .unwrap_or(config.max_ttl);
    config.refetch_cooldown = cache
        .duration("refetch_cooldown", Duration::ZERO, max)
        .unwrap_or(config.refetch_cooldown);
    config.max_stale = cache
        .duration("max_stale", Duration::ZERO, max)
        .unwrap_or(config.max_stale);
    config.fetch_timeout = cache
        .duration(
            "fetch_timeout",
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .unwrap_or(config.fetch_timeout);
    if config.min_ttl > config.max_ttl {
        cache.problems.at(
            cache.node,
            &cache.child_path("min_ttl"),
            "min_ttl must not exceed max_ttl",
        );
        cache.finish();
        return None;
    }
    cache.finish();
    Some(config)
}

/// Converts a YAML node to JSON, keeping quoted scalars as strings and
/// reading plain scalars as numbers or booleans where they look like one.
pub fn yaml_to_json(node: &crate::config::yaml::Node) -> serde_json::Value {
    use crate::config::yaml::Value;
    match &node.value {
        Value::Scalar { text, quoted: true } => serde_json::Value::String(text.clone()),
        Value::Scalar { .. } if node.is_null() => serde_json::Value::Null,
        Value::Scalar { text, .. } => match text.as_str() {
            "true" => true.into(),
            "false" => false.into(),
            _ => text
                .parse::<i64>()
                .map(Into::into)
                .unwrap_or_else(|_| text.clone().into()),
        },
        Value::Sequence(items) => items.iter().map(yaml_to_json).collect(),
        Value::Mapping(entries) => entries
            .iter()
            .map(|(k, v)| {
                (
                    crate::config::reader::scalar_text(k)
                        .unwrap_or_default()
                        .to_string(),
                    yaml_to_json(v),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const ISSUER_HEAD: &str = "\
upstreams:
  users: { url: \"http://127.0.0.1:3000\" }
routes:
  - id: list-users
    match: { path: /users, methods: [GET] }
    upstream: users
authentication:
  issuers:
    - issuer: https://idp.example.test
      audiences: [users-api]
";

    /// Parses a configuration whose one issuer ends with `issuer_tail`
    /// (keys indented by six spaces) and returns its problems as text.
    fn problems(issuer_tail: &str) -> Vec<String> {
        let text = format!("{ISSUER_HEAD}{issuer_tail}");
        match crate::config::parse(&text, "gateway.yaml", Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn introspection_section_read_with_defaults() {
        std::env::set_var("PORTCULLIS_TEST_INTROSPECTION_SECRET", "s3cret-value");
        let text = format!(
            "{ISSUER_HEAD}      discovery: true
      introspection:
        client_id: gateway
        client_secret: {{ env: PORTCULLIS_TEST_INTROSPECTION_SECRET }}
"
        );
        let config = crate::config::parse(&text, "gateway.yaml", Path::new("/")).unwrap();
        let issuer = &config.authentication.issuers[0];
        let introspection = issuer.introspection.as_ref().unwrap();

        assert!(introspection.endpoint.is_none());
        assert_eq!(introspection.client_id, "gateway");
        assert_eq!(introspection.client_secret.expose(), b"s3cret-value");
        assert_eq!(
            introspection.auth_method,
            super::ClientAuthMethod::ClientSecretBasic
        );
        assert_eq!(introspection.timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            introspection.cache_max_ttl,
            std::time::Duration::from_secs(60)
        );
        assert!(!introspection.jwts);
    }

    #[test]
    fn introspection_problems_reported_at_their_keys() {
        // (description, issuer keys, expected problem)
        let cases = [
            (
                "misspelled key",
                "      discovery: true
      introspection:
        client_id: gateway
        client_secret: { file: secret.txt }
        cache_max_tll: 10s
",
                "gateway.yaml:15:9: authentication.issuers[0].introspection.cache_max_tll: unknown key \"cache_max_tll\"; did you mean \"cache_max_ttl\"?",
            ),
            (
                "inline secret",
                "      discovery: true
      introspection:
        client_id: gateway
        client_secret: gateway-secret-inline
",
                "gateway.yaml:14:24: authentication.issuers[0].introspection.client_secret: expected { env: NAME } or { file: PATH }; secrets are not written inline",
            ),
            (
                "no endpoint without discovery",
                "      jwks_url: https://idp.example.test/jwks
      introspection:
        client_id: gateway
        client_secret: { env: PORTCULLIS_TEST_UNSET_SECRET }
",
                "gateway.yaml:13:18: authentication.issuers[0].introspection.endpoint: missing; expected the introspection endpoint URL; only an issuer with discovery: true can leave it out",
            ),
            (
                "plain http to a remote host",
                "      discovery: true
      introspection:
        endpoint: http://idp.example.test/introspect
        client_id: gateway
        client_secret: { env: PORTCULLIS_TEST_UNSET_SECRET }
",
                "gateway.yaml:13:19: authentication.issuers[0].introspection.endpoint: expected an https:// URL (http:// only for 127.0.0.1, [::1] or localhost), found \"http://idp.example.test/introspect\"",
            ),
            (
                "unknown auth method",
                "      discovery: true
      introspection:
        client_id: gateway
        client_secret: { env: PORTCULLIS_TEST_UNSET_SECRET }
        auth_method: client_secret_jwt
",
                "gateway.yaml:15:22: authentication.issuers[0].introspection.auth_method: expected one of client_secret_basic, client_secret_post, found \"client_secret_jwt\"; did you mean \"client_secret_post\"?",
            ),
            (
                "client id missing",
                "      discovery: true
      introspection:
        client_secret: { env: PORTCULLIS_TEST_UNSET_SECRET }
",
                "gateway.yaml:13:22: authentication.issuers[0].introspection.client_id: missing; expected the gateway's client id at the provider",
            ),
        ];
        for (description, tail, expected) in cases {
            let found = problems(tail);
            assert!(
                found.iter().any(|line| line == expected),
                "{description}: expected\n{expected}\nin\n{}",
                found.join("\n")
            );
            assert!(
                found
                    .iter()
                    .all(|line| !line.contains("gateway-secret-inline")),
                "{description}: a problem echoes the secret"
            );
        }
    }

    #[test]
    fn loopback_http_endpoint_accepted() {
        // (endpoint, accepted)
        let cases = [
            ("http://127.0.0.1:8443/introspect", true),
            ("http://[::1]:8443/introspect", true),
            ("http://localhost/introspect", true),
            ("https://idp.example.test/introspect", true),
            ("http://10.0.0.5/introspect", false),
            ("ftp://127.0.0.1/introspect", false),
            ("/introspect", false),
        ];
        for (endpoint, accepted) in cases {
            assert_eq!(
                super::parse_endpoint(endpoint).is_ok(),
                accepted,
                "{endpoint}"
            );
        }
    }
}
