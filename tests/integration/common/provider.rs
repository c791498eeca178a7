//! The identity provider: `tests/fixtures/oidc/provider.js` (npm
//! oidc-provider) with keys from `oidc/keygen.js`, and forging of tokens
//! with those keys.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Method;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use portcullis::authn::jwk::Algorithm;
use portcullis::authn::jwt_sign::SigningKey;
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use super::client::{RequestBuilder, Response};
use super::credentials::record_credential;
use super::logs::{next_log_name, test_log_dir};
use super::process::{fixtures_dir, wait_with_timeout, Fixture};
use super::unix_now;

/// Bound on one run of `oidc/keygen.js`, which generates an RSA key.
const KEYGEN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a restart on the same port is tried while the port is busy.
const RESTART_ATTEMPTS: u32 = 5;

/// One private key written by `oidc/keygen.js`.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// PKCS#8 PEM private key.
    pub pem_path: PathBuf,
}

/// A key set written by `oidc/keygen.js` into a temporary directory, which
/// is deleted when the value is dropped.
pub struct KeyFiles {
    dir: TempDir,
    pub keys: Vec<KeyFile>,
}

impl KeyFiles {
    /// Generates a fresh RS256, ES256 and EdDSA key set with random kids.
    pub fn generate() -> KeyFiles {
        Self::run_keygen(&[])
    }

    /// Generates a fresh key set whose RS256 key is named `kid`, so that it
    /// collides with another provider's key.
    pub fn generate_reusing_kid(kid: &str) -> KeyFiles {
        Self::run_keygen(&["--reuse-kid", kid])
    }

    fn run_keygen(extra_args: &[&str]) -> KeyFiles {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-e2e-keys-")
            .tempdir()
            .expect("creating a temporary directory");
        let mut child = Command::new("node")
            .arg("oidc/keygen.js")
            .arg(dir.path())
            .args(extra_args)
            .current_dir(fixtures_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node oidc/keygen.js: {e}"));
        let status = wait_with_timeout(&mut child, KEYGEN_TIMEOUT);
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oidc/keygen.js did not finish within {KEYGEN_TIMEOUT:?}");
        };
        let output = child.wait_with_output().expect("collecting keygen output");
        assert!(
            status.success(),
            "oidc/keygen.js failed with {status}: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let keys = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let [kid, alg, pem_path] = fields[..] else {
                    panic!("expected `<kid> <alg> <pem path>` from keygen, found {line:?}");
                };
                KeyFile {
                    kid: kid.to_string(),
                    alg: alg.to_string(),
                    pem_path: PathBuf::from(pem_path),
                }
            })
            .collect();
        KeyFiles { dir, keys }
    }

    /// Returns the private JWKS file for `provider.js --keys`.
    pub fn private_jwks(&self) -> PathBuf {
        self.dir.path().join("private.jwks.json")
    }

    /// Returns the key for `alg` (`RS256`, `ES256` or `EdDSA`).
    pub fn key(&self, alg: &str) -> &KeyFile {
        self.keys
            .iter()
            .find(|key| key.alg == alg)
            .unwrap_or_else(|| panic!("the key set has no {alg} key"))
    }

    /// Returns the RS256 key, which the provider signs with by default.
    pub fn rs256(&self) -> &KeyFile {
        self.key("RS256")
    }
}

/// How to run a provider.
pub struct ProviderOptions {
    /// Algorithm of the key that signs JWT access tokens. Default `RS256`.
    pub signing_alg: &'static str,
    /// `aud` of JWT access tokens. Default `users-api`.
    pub audience: String,
    /// Access token lifetime in seconds. Default 300.
    pub access_token_ttl: u64,
    /// Adds `"tenant_id": <value>` to every token. Default none.
    pub tenant_claim: Option<String>,
    /// Port to listen on. Default: a free one.
    pub port: Option<u16>,
    /// Keys to sign with. Default: a fresh key set.
    pub keys: Option<KeyFiles>,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            signing_alg: "RS256",
            audience: "users-api".to_string(),
            access_token_ttl: 300,
            tenant_claim: None,
            port: None,
            keys: None,
        }
    }
}

/// A running OIDC provider whose issuer is `http://127.0.0.1:<port>`.
pub struct Provider {
    fixture: Option<Fixture>,
    pub port: u16,
    pub issuer: String,
    audience: String,
    signing_alg: &'static str,
    access_token_ttl: u64,
    tenant_claim: Option<String>,
    keys: KeyFiles,
    /// Key sets replaced by [`Provider::restart_with_new_keys`], kept so
    /// tests can still forge tokens with a retired key.
    retired_keys: Vec<KeyFiles>,
}

impl Provider {
    pub fn start(options: ProviderOptions) -> Provider {
        let keys = options.keys.unwrap_or_else(KeyFiles::generate);
        let mut provider = Provider {
            fixture: None,
            port: options.port.unwrap_or(0),
            issuer: String::new(),
            audience: options.audience,
            signing_alg: options.signing_alg,
            access_token_ttl: options.access_token_ttl,
            tenant_claim: options.tenant_claim,
            keys,
            retired_keys: Vec::new(),
        };
        // A chosen port may still be closing; a free one never needs a retry.
        let attempts = if provider.port == 0 {
            1
        } else {
            RESTART_ATTEMPTS
        };
        provider
            .launch(attempts)
            .unwrap_or_else(|message| panic!("{message}"));
        provider
    }

    /// Starts the process on `self.port` (0: any free port), trying up to
    /// `attempts` times while the port is in use.
    fn launch(&mut self, attempts: u32) -> Result<(), String> {
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let dir = test_log_dir();
            let name = next_log_name(&dir, "provider");
            let stderr_path = dir.join(format!("{name}.stderr.log"));
            match Fixture::start("oidc/provider.js", &self.arguments(), stderr_path) {
                Ok((fixture, fields)) => {
                    self.port = fields
                        .first()
                        .and_then(|p| p.parse().ok())
                        .expect("READY <port> <issuer> from provider.js");
                    self.issuer = fields
                        .get(1)
                        .cloned()
                        .expect("READY <port> <issuer> from provider.js");
                    self.fixture = Some(fixture);
                    return Ok(());
                }
                Err(error) => {
                    last_error = format!("{}; stderr:\n{}", error.message, error.stderr);
                    let port_busy = error.stderr.contains("cannot listen")
                        || error.stderr.contains("EADDRINUSE");
                    if !port_busy || attempt == attempts {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        Err(last_error)
    }

    fn arguments(&self) -> Vec<String> {
        let mut args = vec![
            "--port".to_string(),
            self.port.to_string(),
            "--keys".to_string(),
            self.keys.private_jwks().display().to_string(),
            "--signing-alg".to_string(),
            self.signing_alg.to_string(),
            "--audience".to_string(),
            self.audience.clone(),
            "--access-token-ttl".to_string(),
            self.access_token_ttl.to_string(),
        ];
        if let Some(tenant) = &self.tenant_claim {
            args.extend(["--tenant-claim".to_string(), tenant.clone()]);
        }
        args
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Returns the key set the provider signs with now.
    pub fn keys(&self) -> &KeyFiles {
        &self.keys
    }

    /// Returns the key that signs the provider's access tokens.
    pub fn signing_key(&self) -> &KeyFile {
        self.keys.key(self.signing_alg)
    }

    /// Gets a JWT access token for `client` (secret `<client>-secret`) by
    /// the client_credentials grant, for the provider's audience. `scope`
    /// may be empty. Panics unless the provider issues one.
    pub async fn token(&self, client: &str, scope: &str) -> String {
        let response = self.token_response(client, scope).await;
        assert_eq!(
            response.status(),
            200,
            "token request of client {client} for scope {scope:?}: {}",
            response.text()
        );
        let token = response.json()["access_token"]
            .as_str()
            .expect("access_token in the token response")
            .to_string();
        record_credential(&token);
        token
    }

    /// Sends the client_credentials token request and returns the response
    /// as it is.
    pub async fn token_response(&self, client: &str, scope: &str) -> Response {
        let secret = format!("{client}-secret");
        record_credential(&secret);
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{client}:{secret}"),
        );

        let mut form = format!(
            "grant_type=client_credentials&resource={}",
            encode(&self.resource_indicator())
        );
        if !scope.is_empty() {
            form.push_str(&format!("&scope={}", encode(scope)));
        }
        RequestBuilder::new(self.address(), Method::POST, "/token")
            .header("authorization", &format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
    }

    /// Returns the `resource` parameter that requests the provider's JWT
    /// audience.
    fn resource_indicator(&self) -> String {
        if self.audience.contains("://") {
            self.audience.clone()
        } else {
            format!("urn:portcullis:{}", self.audience)
        }
    }

    /// Starts a token signed with the provider's current signing key, with
    /// the provider's issuer and audience, ready to be changed.
    pub fn forge(&self) -> TokenForge {
        TokenForge::new(self.signing_key(), &self.issuer, &self.audience)
    }

    /// Stops the process. Its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut fixture) = self.fixture.take() {
            fixture.stop();
        }
    }

    /// Stops the provider and starts it again on the same port, so with
    /// the same issuer, signing with a freshly generated key set.
    pub fn restart_with_new_keys(&mut self) {
        self.stop();
        let retired = std::mem::replace(&mut self.keys, KeyFiles::generate());
        self.retired_keys.push(retired);
        self.launch(RESTART_ATTEMPTS)
            .unwrap_or_else(|message| panic!("restarting the provider: {message}"));
    }
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// Gives each forged token a distinct `jti`, so none is served from the
/// gateway's verified-token cache by accident.
static FORGED: AtomicU64 = AtomicU64::new(0);

/// A JWT access token built claim by claim and signed with a key file.
/// The defaults look like the provider's tokens: `typ: at+jwt`, the key's
/// `kid`, `sub` and `client_id` `forged-client`, scope `read:users`, issued
/// now and valid for 5 minutes.
pub struct TokenForge {
    key: KeyFile,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl TokenForge {
    pub fn new(key: &KeyFile, issuer: &str, audience: &str) -> TokenForge {
        let now = unix_now();
        let serial = FORGED.fetch_add(1, Ordering::Relaxed);
        let header = json!({ "alg": key.alg, "typ": "at+jwt", "kid": key.kid });
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": "forged-client",
            "client_id": "forged-client",
            "scope": "read:users",
            "iat": now,
            "exp": now + 300,
            "jti": format!("forged-{}-{serial}", std::process::id()),
        });
        TokenForge {
            key: key.clone(),
            header: into_map(header),
            claims: into_map(claims),
        }
    }

    /// Sets `sub` and `client_id`.
    pub fn subject(mut self, subject: &str) -> TokenForge {
        self.claims.insert("sub".into(), subject.into());
        self.claims.insert("client_id".into(), subject.into());
        self
    }

    pub fn scope(mut self, scope: &str) -> TokenForge {
        self.claims.insert("scope".into(), scope.into());
        self
    }

    /// Sets `exp` relative to now, in seconds (negative: in the past).
    pub fn expires_in(mut self, seconds: i64) -> TokenForge {
        let exp = unix_now() as i64 + seconds;
        self.claims.insert("exp".into(), exp.into());
        self
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: Value) -> TokenForge {
        self.claims.insert(name.into(), value);
        self
    }

    /// Sets any JOSE header field, such as `typ` or `kid`.
    pub fn header(mut self, name: &str, value: Value) -> TokenForge {
        self.header.insert(name.into(), value);
        self
    }

    /// Signs the token and records it for the log checks.
    pub fn sign(self) -> String {
        let pem = std::fs::read_to_string(&self.key.pem_path).unwrap_or_else(|e| {
            panic!(
                "cannot read the key file {}: {e}",
                self.key.pem_path.display()
            )
        });
        let signing_key = SigningKey::from_pkcs8_pem(&pem).unwrap_or_else(|e| {
            panic!(
                "{} is not a usable PKCS#8 key: {e}",
                self.key.pem_path.display()
            )
        });
        let alg = Algorithm::from_name(&self.key.alg)
            .unwrap_or_else(|| panic!("unknown algorithm {}", self.key.alg));

        let token = signing_key
            .sign(
                alg,
                &Value::Object(self.header),
                &Value::Object(self.claims),
            )
            .unwrap_or_else(|e| panic!("signing a forged token with {}: {e}", self.key.kid));
        record_credential(&token);
        token
    }
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built from an object literal"),
    }
}
