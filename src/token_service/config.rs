//! Configuration of the token service: the issuer and audience of the
//! tokens it issues, where its endpoints are, its signing keys and the
//! clients that authenticate with a client secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::authn::config::Secret;
use crate::authn::jwk::Algorithm;
use crate::config::reader::{found, MapReader};
use crate::ratelimit::gcra::Quota;
use crate::tenancy::config::TenantConfig;
use crate::token_service::secret_hash::SecretHash;

/// The `token_service` section: an OAuth 2.0 token endpoint on the gateway
/// for machine clients (client_credentials grant, RFC 6749 section 4.4).
#[derive(Debug)]
pub struct TokenServiceConfig {
    /// `iss` of the issued tokens, an https:// URL (http:// only for
    /// loopback hosts) without query or fragment. The gateway trusts it
    /// like a configured issuer, and it is the base of the endpoint URLs in
    /// the metadata document.
    pub issuer: String,
    /// `aud` of the issued tokens; the gateway accepts its own tokens for
    /// any of them. At least one.
    pub audiences: Vec<String>,
    /// Prefix of the endpoint paths `{prefix}/token`, `{prefix}/jwks.json`
    /// and `{prefix}/introspect`. Default `/oauth2`.
    pub path_prefix: String,
    /// Lifetime of an issued token. Default 5m, at most 1h.
    pub token_ttl: Duration,
    /// Signing algorithm of new keys: ES256 (default) or EdDSA.
    pub algorithm: Algorithm,
    /// The directory of signing keys and their manifest, written by
    /// `portcullis token rotate-keys`. Created with a first key when empty.
    pub keys_dir: PathBuf,
    /// Encrypts new signing keys at rest and decrypts the encrypted ones.
    /// Default none: keys are plain PKCS#8 PEM files.
    pub keys_passphrase: Option<Secret>,
    /// Tolerance for `exp`, `nbf` and `iat` when the gateway verifies its
    /// own tokens, also added to how long a retired key stays published.
    /// Default 30s.
    pub clock_skew: Duration,
    /// Failed client authentications allowed per client IP, at the token
    /// and introspection endpoints. Default 10 per minute.
    pub failed_attempts: Quota,
    /// Clients that authenticate with a client secret.
    pub clients: Vec<Arc<ClientConfig>>,
}

/// A client that authenticates with `client_secret_basic` or
/// `client_secret_post`.
#[derive(Debug)]
pub struct ClientConfig {
    pub client_id: String,
    /// PBKDF2 hash of the client secret, made by
    /// `portcullis token hash-secret`; never the secret itself.
    pub secret_hash: SecretHash,
    /// The tenant the client's tokens belong to (`tenant_id`), if any.
    pub tenant: Option<String>,
    /// The scopes the client may request; a request without `scope` gets
    /// all of them.
    pub scopes: Vec<String>,
}

impl TokenServiceConfig {
    /// Returns the path of the token endpoint.
    pub fn token_path(&self) -> String {
        format!("{}/token", self.path_prefix)
    }

    pub fn jwks_path(&self) -> String {
        format!("{}/jwks.json", self.path_prefix)
    }

    pub fn introspection_path(&self) -> String {
        format!("{}/introspect", self.path_prefix)
    }

    /// Returns the path of the RFC 7009 revocation endpoint.
    pub fn revocation_path(&self) -> String {
        format!("{}/revoke", self.path_prefix)
    }

    /// Returns the path of the RFC 8414 metadata document: the well-known
    /// prefix followed by the issuer's own path, if it has one (section 3.1).
    pub fn metadata_path(&self) -> String {
        let issuer_path = self
            .issuer
            .parse::<http::Uri>()
            .map(|uri| uri.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        format!("/.well-known/oauth-authorization-server{issuer_path}")
    }

    /// Returns every path the token service serves, so routes cannot take
    /// them.
    pub fn paths(&self) -> [String; 5] {
        [
            self.token_path(),
            self.jwks_path(),
            self.introspection_path(),
            self.revocation_path(),
            self.metadata_path(),
        ]
    }

    /// Returns the absolute URL of a path under the issuer.
    pub fn url(&self, path: &str) -> String {
        let origin = self
            .issuer
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| {
                let scheme = uri.scheme_str()?.to_string();
                let authority = uri.authority()?.as_str().to_string();
                Some(format!("{scheme}://{authority}"))
            })
            .unwrap_or_else(|| self.issuer.clone());
        format!("{origin}{path}")
    }
}

const ALGORITHMS: [&str; 2] = ["ES256", "EdDSA"];

/// Reads the optional `token_service` section. `tenants` are the declared
/// tenants when that section was valid, so a client's tenant can be
/// checked. Returns `Some(None)` when the section is absent.
pub fn read(
    top: &MapReader,
    base_dir: &Path,
    tenants: Option<&HashMap<String, Arc<TenantConfig>>>,
) -> Option<Option<TokenServiceConfig>> {
    let Some(map) = top.map("token_service") else {
        return top.get("token_service").is_none().then_some(None);
    };
    let issuer = read_issuer(&map);
    let audiences = read_audiences(&map);
    let path_prefix = read_path_prefix(&map);
    let token_ttl = optional_duration(
        &map,
        "token_ttl",
        Duration::from_secs(1),
        Duration::from_secs(3600),
        Duration::from_secs(300),
    );
    let clock_skew = optional_duration(
        &map,
        "clock_skew",
        Duration::ZERO,
        Duration::from_secs(600),
        Duration::from_secs(30),
    );
    let algorithm = match map.get("algorithm") {
        None => Some(Algorithm::Es256),
        Some(_) => map
            .choice("algorithm", &ALGORITHMS)
            .and_then(Algorithm::from_name),
    };
    let keys_dir = map.required_string(
        "keys_dir",
        "the directory of signing keys, such as token-keys",
    );
    let keys_passphrase = match map.get("keys_passphrase") {
        None => Some(None),
        Some(_) => crate::authn::config::read_secret(&map, "keys_passphrase", base_dir).map(Some),
    };
    let failed_attempts = crate::apikey::config::read_attempts(&map);
    let clients = read_clients(&map, base_dir, tenants);
    map.finish();

    Some(Some(TokenServiceConfig {
        issuer: issuer?,
        audiences: audiences?,
        path_prefix: path_prefix?,
        token_ttl: token_ttl?,
        algorithm: algorithm?,
        keys_dir: crate::config::resolve_path(base_dir, &keys_dir?),
        keys_passphrase: keys_passphrase?,
        clock_skew: clock_skew?,
        failed_attempts: failed_attempts?,
        clients: clients?,
    }))
}

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

fn read_issuer(map: &MapReader) -> Option<String> {
    let text = map.required_string(
        "issuer",
        "the iss of issued tokens, an https:// URL such as https://gateway.example.com",
    )?;
    let acceptable = crate::authn::config::parse_endpoint(&text)
        .ok()
        .filter(|uri| uri.query().is_none() && !text.contains('#'));
    if acceptable.is_none() {
        let message = format!(
            "expected an https:// URL without query or fragment (http:// only for 127.0.0.1, [::1] or localhost), found {}",
            found(map.get("issuer").unwrap())
        );
        map.problems.at(
            map.get("issuer").unwrap(),
            &map.child_path("issuer"),
            message,
        );
        return None;
    }
    Some(text.trim_end_matches('/').to_string())
}

fn read_audiences(map: &MapReader) -> Option<Vec<String>> {
    let Some(node) = map.get("audience") else {
        map.missing("audience", "the aud of issued tokens, such as users-api");
        return None;
    };
    let audiences = map.strings("audience")?;
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        map.problems.at(
            node,
            &map.child_path("audience"),
            "expected at least one non-empty audience",
        );
        return None;
    }
    Some(audiences)
}

fn read_path_prefix(map: &MapReader) -> Option<String> {
    let Some(node) = map.get("path_prefix") else {
        return Some("/oauth2".to_string());
    };
    let prefix = map.string("path_prefix")?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    let valid = prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && prefix.chars().all(allowed)
        && !prefix
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if !valid {
        let message = format!(
            "expected a path such as /oauth2: starting with /, not ending with /, of letters, digits and -._~ only, found {}",
            found(node)
        );
        map.problems
            .at(node, &map.child_path("path_prefix"), message);
        return None;
    }
    Some(prefix)
}

fn read_clients(
    map: &MapReader,
    base_dir: &Path,
    tenants: Option<&HashMap<String, Arc<TenantConfig>>>,
) -> Option<Vec<Arc<ClientConfig>>> {
    let Some(items) = map.list("clients") else {
        return map.get("clients").is_none().then(Vec::new);
    };
    let mut clients: Vec<Arc<ClientConfig>> = Vec::new();
    let mut ok = true;
    for (path, node) in items {
        let Some(client_map) = MapReader::open(node, &path, map.problems) else {
            ok = false;
            continue;
        };
        match read_client(&client_map, base_dir, tenants) {
            Some(client) if clients.iter().any(|c| c.client_id == client.client_id) => {
                let message = format!("client {:?} is configured twice", client.client_id);
                map.problems
                    .at(node, &client_map.child_path("client_id"), message);
                ok = false;
            }
            Some(client) => clients.push(Arc::new(client)),
            None => ok = false,
        }
        client_map.finish();
    }
    ok.then_some(clients)
}

fn read_client(
    map: &MapReader,
    base_dir: &Path,
    tenants: Option<&HashMap<String, Arc<TenantConfig>>>,
) -> Option<ClientConfig> {
    let client_id = read_client_id(map);
    let secret_hash = read_secret_hash(map, base_dir);
    let tenant = map.string("tenant");
    let scopes = match map.get("scopes") {
        None => Some(Vec::new()),
        Some(_) => map.strings("scopes"),
    };
    if let (Some(tenant), Some(tenants)) = (&tenant, tenants) {
        if !tenants.contains_key(tenant) {
            let message = format!("no tenant named {tenant:?} is declared under tenants");
            map.problems.at(
                map.get("tenant").unwrap(),
                &map.child_path("tenant"),
                message,
            );
            return None;
        }
    }
    let scopes = scopes?;
    if let Some(bad) = scopes
        .iter()
        .find(|s| !crate::token_service::claims::is_scope_token(s))
    {
        let message = format!(
            "expected scope names of printable ASCII without spaces, quotes or backslashes, found {bad:?}"
        );
        map.problems.at(
            map.get("scopes").unwrap(),
            &map.child_path("scopes"),
            message,
        );
        return None;
    }
    Some(ClientConfig {
        client_id: client_id?,
        secret_hash: secret_hash?,
        tenant,
        scopes,
    })
}

fn read_client_id(map: &MapReader) -> Option<String> {
    let client_id = map.required_string("client_id", "the client's id, such as billing")?;
    let printable = |c: char| (' '..='~').contains(&c);
    if client_id.is_empty() || !client_id.chars().all(printable) || client_id.starts_with("pk_") {
        let message = format!(
            "expected a client id of printable ASCII that does not start with pk_ (the prefix of API key subjects), found {}",
            found(map.get("client_id").unwrap())
        );
        map.problems.at(
            map.get("client_id").unwrap(),
            &map.child_path("client_id"),
            message,
        );
        return None;
    }
    Some(client_id)
}

fn read_secret_hash(map: &MapReader, base_dir: &Path) -> Option<SecretHash> {
    let Some(node) = map.get("secret_hash") else {
        map.missing(
            "secret_hash",
            "{ env: NAME } or { file: PATH } with a hash from portcullis token hash-secret",
        );
        return None;
    };
    let secret = crate::authn::config::read_secret(map, "secret_hash", base_dir)?;
    match SecretHash::parse(secret.expose()) {
        Ok(hash) => Some(hash),
        Err(expected) => {
            // Never show what was found: it may be the plain secret.
            let message =
                format!("expected {expected}; make one with portcullis token hash-secret");
            map.problems
                .at(node, &map.child_path("secret_hash"), message);
            None
        }
    }
}

/// Adds the service's issuer to the trusted issuers, with keys the service
/// sets in-process. Its URL must not be a configured issuer's too.
pub fn trust_issuer(
    top: &MapReader,
    authn: &mut crate::authn::config::AuthnConfig,
    service: &TokenServiceConfig,
) {
    if authn.issuers.iter().any(|i| i.issuer == service.issuer) {
        let node = issuer_node(top).unwrap_or(top.node);
        let message = format!(
            "issuer {:?} is also configured under authentication or tenants; the token service needs an issuer of its own",
            service.issuer
        );
        top.problems.at(node, "token_service.issuer", message);
        return;
    }
    let issuer = crate::token_service::trusted_issuer(service);
    authn.issuers.push(Arc::new(issuer));
}

/// Returns the node of `token_service.issuer`.
fn issuer_node<'a>(top: &MapReader<'a>) -> Option<&'a crate::config::yaml::Node> {
    let crate::config::yaml::Value::Mapping(entries) = &top.get("token_service")?.value else {
        return None;
    };
    entries
        .iter()
        .find(|(key, _)| crate::config::reader::scalar_text(key) == Some("issuer"))
        .map(|(_, value)| value)
}

/// Reports routes on the token service's paths. The service serves them
/// before routing, so such a route would never be reached.
pub fn check_route_paths(
    top: &MapReader,
    service: &TokenServiceConfig,
    routes: &[crate::route::config::RouteConfig],
) {
    let paths = service.paths();
    for route in routes {
        if paths.contains(&route.path) {
            let message = format!(
                "route {:?} uses {}, which the token service serves; choose another path or token_service.path_prefix",
                route.id, route.path
            );
            top.problems.global("routes", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const HEAD: &str = "\
upstreams:
  users: { url: \"http://127.0.0.1:3000\" }
tenants:
  - id: acme
routes:
  - id: list-users
    match: { path: /users, methods: [GET] }
    upstream: users
token_service:
  issuer: https://gateway.example.test
  audience: users-api
  keys_dir: token-keys
";

    /// Parses a configuration whose token service ends with `tail` (keys
    /// indented by two spaces) and returns its problems as text.
    fn problems(tail: &str) -> Vec<String> {
        let text = format!("{HEAD}{tail}");
        match crate::config::parse(&text, "gateway.yaml", Path::new("/nonexistent")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn section_read_with_defaults_and_issuer_trusted() {
        std::env::set_var(
            "PORTCULLIS_TEST_BILLING_HASH",
            "$pbkdf2-sha256$i=10000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        let text = format!(
            "{HEAD}  clients:
    - client_id: billing
      secret_hash: {{ env: PORTCULLIS_TEST_BILLING_HASH }}
      tenant: acme
      scopes: [read:users]
"
        );
        let config = crate::config::parse(&text, "gateway.yaml", Path::new("/etc/gw")).unwrap();
        let service = config.token_service.as_ref().unwrap();

        assert_eq!(service.path_prefix, "/oauth2");
        assert_eq!(service.token_ttl, std::time::Duration::from_secs(300));
        assert_eq!(service.clock_skew, std::time::Duration::from_secs(30));
        assert_eq!(service.algorithm, crate::authn::jwk::Algorithm::Es256);
        assert_eq!(service.keys_dir, Path::new("/etc/gw/token-keys"));
        assert_eq!(service.clients[0].tenant.as_deref(), Some("acme"));
        assert_eq!(
            service.metadata_path(),
            "/.well-known/oauth-authorization-server"
        );
        let trusted = config
            .authentication
            .issuers
            .iter()
            .find(|i| i.issuer == "https://gateway.example.test")
            .expect("the service's issuer is trusted");
        assert_eq!(trusted.audiences, vec!["users-api".to_string()]);
        assert_eq!(trusted.token_types, Some(vec!["at+jwt".to_string()]));
    }

    #[test]
    fn problems_reported_at_their_keys() {
        // (description, token service keys, expected problem)
        let cases = [
            (
                "misspelled key",
                "  token_tll: 5m\n",
                "gateway.yaml:13:3: token_service.token_tll: unknown key \"token_tll\"; did you mean \"token_ttl\"?",
            ),
            (
                "lifetime over an hour",
                "  token_ttl: 2h\n",
                "gateway.yaml:13:14: token_service.token_ttl: expected a duration from 1s to 1h such as 30s or 5m, found \"2h\"",
            ),
            (
                "unsupported algorithm",
                "  algorithm: RS256\n",
                "gateway.yaml:13:14: token_service.algorithm: expected one of ES256, EdDSA, found \"RS256\"; did you mean \"ES256\"?",
            ),
            (
                "inline secret hash",
                "  clients:\n    - client_id: billing\n      secret_hash: plain-client-secret-value\n",
                "gateway.yaml:15:20: token_service.clients[0].secret_hash: expected { env: NAME } or { file: PATH }; secrets are not written inline",
            ),
            (
                "unknown tenant",
                "  clients:\n    - client_id: billing\n      secret_hash: { env: PORTCULLIS_TEST_UNSET }\n      tenant: initech\n",
                "gateway.yaml:16:15: token_service.clients[0].tenant: no tenant named \"initech\" is declared under tenants",
            ),
            (
                "prefix with a trailing slash",
                "  path_prefix: /oauth2/\n",
                "gateway.yaml:13:16: token_service.path_prefix: expected a path such as /oauth2: starting with /, not ending with /, of letters, digits and -._~ only, found \"/oauth2/\"",
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
                    .all(|line| !line.contains("plain-client-secret-value")),
                "{description}: a problem echoes the secret"
            );
        }
    }

    #[test]
    fn hash_file_with_a_plain_secret_not_echoed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("billing.hash"),
            "plain-client-secret-value\n",
        )
        .unwrap();
        let text = format!(
            "{HEAD}  clients:\n    - client_id: billing\n      secret_hash: {{ file: billing.hash }}\n"
        );

        let errors = crate::config::parse(&text, "gateway.yaml", dir.path()).unwrap_err();

        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        let expected = "gateway.yaml:15:20: token_service.clients[0].secret_hash: expected a hash of the form $pbkdf2-sha256$i=<iterations>$<salt>$<hash>; make one with portcullis token hash-secret";
        assert!(lines.iter().any(|line| line == expected), "{lines:?}");
        assert!(lines
            .iter()
            .all(|line| !line.contains("plain-client-secret-value")));
    }

    #[test]
    fn route_on_a_token_service_path_rejected() {
        let text = HEAD.replace("path: /users,", "path: /oauth2/token,");

        let errors = crate::config::parse(&text, "gateway.yaml", Path::new("/")).unwrap_err();

        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec!["gateway.yaml: routes: route \"list-users\" uses /oauth2/token, which the token service serves; choose another path or token_service.path_prefix"]
        );
    }

    #[test]
    fn issuer_shared_with_authentication_rejected() {
        let text = format!(
            "{HEAD}authentication:
  issuers:
    - issuer: https://gateway.example.test
      audiences: [users-api]
      jwks_url: https://gateway.example.test/oauth2/jwks.json
"
        );

        let errors = crate::config::parse(&text, "gateway.yaml", Path::new("/")).unwrap_err();

        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec!["gateway.yaml:10:11: token_service.issuer: issuer \"https://gateway.example.test\" is also configured under authentication or tenants; the token service needs an issuer of its own"]
        );
    }
}
