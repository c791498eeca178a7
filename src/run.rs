//! The commands: start the gateway, check a configuration, mint a demo
//! token.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::{Config, ConfigErrors};
use crate::pipeline::{Durable, Gateway, Shared};

/// Loads the configuration from a file, or the embedded default.
pub fn load_config(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    match path {
        Some(path) => crate::config::load(path),
        None => {
            let base = std::env::current_dir().unwrap_or_default();
            crate::config::parse(
                crate::config::EMBEDDED_DEFAULT,
                crate::config::EMBEDDED_NAME,
                &base,
            )
        }
    }
}

/// Reads the key file of the `api_keys` section, as `serve` does at start,
/// so that `check` and `review` report a key file `serve` would reject.
pub fn load_key_file(config: &Config) -> Result<(), String> {
    if let Some(keys) = &config.api_keys {
        if let crate::apikey::config::KeyStore::File(file) = &keys.store {
            crate::apikey::store::load(file)?;
        }
    }
    Ok(())
}

/// Formats `count` and `noun`, in the plural unless `count` is 1.
fn counted(count: usize, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

pub fn check(path: &Path) -> ExitCode {
    match crate::config::load(path) {
        Ok(config) => {
            if let Err(message) = load_key_file(&config) {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
            println!(
                "{}: ok ({}, {}, {})",
                path.display(),
                counted(config.routes.len(), "route"),
                counted(config.upstreams.len(), "upstream"),
                counted(config.authentication.issuers.len(), "issuer")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

pub fn serve(path: Option<PathBuf>, threads: Option<usize>, log: Option<String>) -> ExitCode {
    crate::logging::init(log);
    let config = match load_config(path.as_deref()) {
        Ok(config) => Arc::new(config),
        Err(errors) => {
            for problem in &errors.0 {
                tracing::error!(
                    config.location = problem.location.as_str(),
                    config.path = problem.path.as_str(),
                    problem = problem.message.as_str(),
                    "invalid configuration"
                );
            }
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    crate::logging::configure(&config.logging);
    // One worker thread runs on the lighter single-threaded scheduler: no
    // work stealing and no cross-thread wake-ups.
    let mut runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(count) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(count.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = message.as_str(), "gateway stopped");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// How long start waits for a shared rate-limit store before serving with
/// the routes' fallbacks.
const STORE_CONNECT_WAIT: Duration = Duration::from_secs(2);

async fn run(config: Arc<Config>, path: Option<PathBuf>) -> Result<(), String> {
    let mut durable = Durable::new(&config.rate_limit_store)?;
    durable.audit = open_audit(&config, &durable)?;
    let audit = durable.audit.clone();
    durable.revocations.start();
    let gateway = Gateway::new(config.clone(), &durable, None)?;
    start_issuer_keys(&gateway).await;
    durable.limiter.connect(STORE_CONNECT_WAIT).await;
    let shared = Arc::new(Shared {
        gateway: ArcSwap::from_pointee(gateway),
        metrics: durable.metrics.clone(),
    });
    shared.metrics.config_loaded(1, true);

    let tls = match &config.server.tls {
        Some(tls) => Some(crate::proxy::tls::acceptor(tls, config.server.http2)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.server.address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.server.address))?;
    if let Some(address) = config.admin.address {
        let admin = crate::admin::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address} (admin): {e}"))?;
        tokio::spawn(crate::admin::serve(admin, shared.clone()));
    }
    tracing::info!(
        listen.address = %config.server.address,
        admin.address = config.admin.address.map(|a| a.to_string()),
        tls = config.server.tls.is_some(),
        routes = config.routes.len(),
        "gateway started"
    );

    match path {
        Some(path) => {
            let reloader = Arc::new(crate::reload::Reloader::new(path, shared.clone(), durable));
            tokio::spawn(reloader.clone().on_sighup());
            tokio::spawn(reloader.watch_file());
        }
        None => {
            tokio::spawn(crate::reload::ignore_sighup());
        }
    }

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    crate::proxy::server::serve(listener, shared, &config.server, tls, stopped).await;
    if let Some(trail) = audit {
        trail.close().await;
    }
    tracing::info!("gateway stopped");
    Ok(())
}

/// Opens the audit log when the configuration has one. A log that cannot
/// be opened stops the start whatever the `on_failure` setting, because it
/// is a setup fault to fix, not a passing one.
fn open_audit(
    config: &Config,
    durable: &Durable,
) -> Result<Option<Arc<crate::audit::Trail>>, String> {
    let Some(settings) = &config.audit else {
        return Ok(None);
    };
    let trail = crate::audit::Trail::open(settings, durable.metrics.clone())
        .map_err(|e| format!("cannot open the audit log: {e}"))?;
    Ok(Some(Arc::new(trail)))
}

/// Fetches the keys of every remote issuer that has none yet (bounded by
/// each issuer's fetch timeout), then keeps them fresh in the background
/// for as long as `gateway` lives. An issuer whose keys cannot be fetched
/// leaves readiness false; its tokens get 503 until the keys arrive.
pub async fn start_issuer_keys(gateway: &Gateway) {
    let issuers: Vec<_> = gateway.authenticator.remote_issuers().cloned().collect();
    let first = issuers
        .iter()
        .filter(|keys| !keys.has_usable_keys())
        .map(|keys| {
            let keys = keys.clone();
            async move {
                let _ = keys.refresh().await;
            }
        });
    futures_util::future::join_all(first).await;
    for keys in issuers {
        tokio::spawn(crate::authn::jwks::refresh_loop(Arc::downgrade(&keys)));
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}

/// Runs `portcullis policy test DIR`.
pub fn policy_test(dir: &Path, verbose: bool) -> ExitCode {
    match crate::authz::policy::run_tests(dir) {
        Ok(report) => {
            print!("{}", report.render(verbose));
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "{} problem{} found",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// The claims and key of a `portcullis token mint` request.
pub struct MintRequest {
    pub key: PathBuf,
    pub kid: String,
    pub alg: Option<String>,
    pub issuer: String,
    pub audience: String,
    pub subject: String,
    pub scope: String,
    pub ttl: Duration,
    pub claims: Vec<String>,
}

pub fn mint(request: MintRequest) -> ExitCode {
    match mint_token(&request) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn mint_token(request: &MintRequest) -> Result<String, String> {
    use crate::authn::jwk::Algorithm;
    use crate::authn::jwt_sign::SigningKey;

    let pem = std::fs::read_to_string(&request.key)
        .map_err(|e| format!("cannot read {}: {e}", request.key.display()))?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!(
            "{} is not a usable PKCS#8 private key: {e}",
            request.key.display()
        )
    })?;
    let alg = match &request.alg {
        Some(name) => {
            Algorithm::from_name(name).ok_or_else(|| format!("unsupported algorithm {name:?}"))?
        }
        None => key.default_algorithm(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": request.issuer,
        "aud": request.audience,
        "sub": request.subject,
        "iat": now,
        "exp": now + request.ttl.as_secs(),
        "jti": format!("{:016x}", rand_u64()),
    });
    if !request.scope.is_empty() {
        claims["scope"] = request.scope.clone().into();
    }
    for claim in &request.claims {
        let (name, value) = claim
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=VALUE, found {claim:?}"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        claims[name] = value;
    }
    let header = serde_json::json!({ "alg": alg.name(), "typ": "at+jwt", "kid": request.kid });
    key.sign(alg, &header, &claims)
        .map_err(|e| format!("signing failed: {e}"))
}

/// Returns 16 random hex digits, for decision and request ids.
pub fn random_id() -> String {
    format!("{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    u64::from_le_bytes(bytes)
}
