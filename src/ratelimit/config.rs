//! Configuration of rate-limit policies (how many requests, per what
//! period or calendar window, or how many at once, counted per which key)
//! and of the store that counts them.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::authn::config::Secret;
use crate::config::reader::{found, scalar_text, MapReader};
use crate::ratelimit::gcra::Quota;
use crate::ratelimit::window::{CalendarWindow, WindowQuota};

/// One part of a rate-limit key. A request is counted under the
/// combination of all parts of a policy's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client IP (after trusted proxies), IPv6 grouped by prefix.
    Ip,
    /// The token's `sub`.
    Subject,
    /// The client id (`azp`, else `client_id`).
    Client,
    /// The route id.
    Route,
    /// The tenant the request belongs to.
    Tenant,
    /// A claim value, by dotted path.
    Claim(String),
}

/// A named rate-limit policy.
#[derive(Debug)]
pub struct RateLimitPolicy {
    pub name: String,
    pub limit: Limit,
    pub key: Vec<KeyPart>,
    /// Counted in the shared store, so every instance sees one count.
    /// False keeps the policy in-process even when a shared store is set.
    pub shared: bool,
}

impl RateLimitPolicy {
    /// Returns whether the policy is checked before authentication: its key
    /// has the client IP and no part that comes from the credential. Such
    /// a policy counts requests whose credential is missing or invalid too,
    /// so a flood of forged tokens from one address ends in 429 instead of
    /// a signature check each. Policies keyed only by route or tenant wait
    /// for authentication, so that clients without a valid credential
    /// cannot use up a budget that other clients share.
    ///
    /// `tenant_known` is true when the request's tenant is known before
    /// authentication. When it comes only from the credential, a key with
    /// `tenant` waits too, or every tenant would share the address's bucket.
    pub fn before_authentication(&self, tenant_known: bool) -> bool {
        let from_credential = |part: &KeyPart| match part {
            KeyPart::Subject | KeyPart::Client | KeyPart::Claim(_) => true,
            KeyPart::Tenant => !tenant_known,
            KeyPart::Ip | KeyPart::Route => false,
        };
        self.key.contains(&KeyPart::Ip) && !self.key.iter().any(from_credential)
    }
}

/// The kind of limit a policy sets.
#[derive(Debug)]
pub enum Limit {
    /// A sustained rate with a burst (GCRA).
    Rate(Quota),
    /// A number of requests per calendar hour, day or month.
    Window(WindowQuota),
    /// A number of requests in flight at once.
    Concurrent {
        max: NonZeroU32,
        /// How long a lease outlives an instance that stopped renewing it.
        lease: Duration,
    },
}

/// The store that keeps the policies' counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// In this process only (the default).
    Memory,
    /// In Redis, shared by every instance that uses the same server.
    Redis(Arc<RedisConfig>),
}

/// A Redis store. Its connection settings take effect at start; a reload
/// that changes them is reported and waits for a restart.
#[derive(Debug, PartialEq, Eq)]
pub struct RedisConfig {
    pub endpoints: RedisEndpoints,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM certificates of the CAs that sign the servers' certificates
    /// (`rediss://`); the system's roots when absent.
    pub ca: Option<Vec<u8>>,
    /// Every key starts with it, so several fleets can share one server.
    pub key_prefix: String,
    /// Bound on each call, connection included.
    pub timeout: Duration,
    /// Multiplexed connections in the pool (single node).
    pub connections: usize,
    /// Instances that share the limits; while the store is unavailable,
    /// each one enforces its share of every limit.
    pub instances: u32,
    /// Maximum time a rate limit token taken ahead of need may wait in
    /// this instance's reserve; zero turns reserves off.
    pub reserve_for: Duration,
    pub circuit: CircuitConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisEndpoints {
    /// One server, `redis://` or `rediss://` (TLS).
    Single(String),
    /// The seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

impl RedisEndpoints {
    pub fn urls(&self) -> &[String] {
        match self {
            RedisEndpoints::Single(url) => std::slice::from_ref(url),
            RedisEndpoints::Cluster(nodes) => nodes.as_slice(),
        }
    }
}

/// When the store counts as unavailable, and how soon it is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failed calls that open the circuit.
    pub failures: u32,
    /// First wait before a probe; doubles after each failed probe.
    pub open_for: Duration,
    pub max_open_for: Duration,
}

/// A route's choice for its shared limits while the store is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailure {
    /// Limit in-process, each limit divided by the instance count.
    #[default]
    Local,
    /// Refuse with 503.
    Deny,
}

/// One year as humantime counts it (365.25 days), so messages print "1year".
const MAX_PERIOD: Duration = Duration::from_secs(31_557_600);

const KEY_PARTS: &[&str] = &["ip", "subject", "client", "route", "tenant", "claim:<path>"];

/// Reads `rate_limits`. Policies are shared by default when `store` is a
/// shared one.
pub fn read_policies(
    top: &MapReader,
    store: Option<&StoreConfig>,
) -> Option<HashMap<String, Arc<RateLimitPolicy>>> {
    let mut policies = HashMap::new();
    let Some(section) = top.map("rate_limits") else {
        return top.get("rate_limits").is_none().then_some(policies);
    };
    let mut ok = true;
    for (name, key_node, node) in section.named_entries() {
        let path = section.child_path(&name);
        if !is_policy_name(&name) {
            let message = "expected a policy name of letters, digits, '-' and '_' (at most 64)";
            section.problems.at(key_node, &path, message);
            ok = false;
        }
        let Some(map) = MapReader::open(node, &path, section.problems) else {
            ok = false;
            continue;
        };
        match read_policy(&map, &name, store) {
            Some(policy) => {
                policies.insert(name, Arc::new(policy));
            }
            None => ok = false,
        }
        map.finish();
    }
    ok.then_some(policies)
}

/// Policy names go into the `RateLimit` header as structured-field strings
/// and into metric labels, so they are kept to a safe alphabet.
fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest burst window of a shared rate: the store's script computes in
/// microseconds on Lua numbers, exact below 2^53, and the clock already
/// reads about 1.8 x 10^15.
const MAX_SHARED_BURST_WINDOW: Duration = Duration::from_secs(100 * 31_557_600);

const LIMIT_KINDS: [&str; 3] = ["requests", "quota", "concurrent"];

fn read_policy(
    map: &MapReader,
    name: &str,
    store: Option<&StoreConfig>,
) -> Option<RateLimitPolicy> {
    let kinds: Vec<&str> = LIMIT_KINDS
        .into_iter()
        .filter(|kind| map.get(kind).is_some())
        .collect();
    let limit = match kinds.as_slice() {
        ["requests"] => read_rate(map).map(Limit::Rate),
        ["quota"] => read_window(map).map(Limit::Window),
        ["concurrent"] => read_concurrent(map),
        [] => {
            map.missing(
                "requests",
                "one of requests (a rate), quota (a calendar window) or concurrent (requests in flight)",
            );
            None
        }
        _ => {
            // The other keys of each kind are known, just not together.
            for key in ["per", "burst", "window", "time_zone", "lease"] {
                map.get(key);
            }
            let message = format!(
                "expected exactly one of requests, quota or concurrent, found {}",
                kinds.join(" and ")
            );
            map.problems.at(map.node, &map.path, message);
            None
        }
    };
    let key = read_key(map);
    let shared = read_shared(map, store);
    if let (Some(Limit::Rate(quota)), Some(true)) = (&limit, shared) {
        if quota.burst_window() > MAX_SHARED_BURST_WINDOW {
            let message = "a shared rate's burst must refill within 100 years (burst x per / requests); lower the burst or shorten the period";
            map.problems.at(map.node, &map.path, message);
            return None;
        }
    }

    Some(RateLimitPolicy {
        name: name.to_string(),
        limit: limit?,
        key: key?,
        shared: shared?,
    })
}

fn read_rate(map: &MapReader) -> Option<Quota> {
    let requests = map.integer("requests", 1, u32::MAX as u64);
    let period = map.duration("per", Duration::from_millis(1), MAX_PERIOD);
    if map.get("per").is_none() {
        map.missing("per", "a period such as 1s, 1m or 1h");
    }
    let burst = map.integer("burst", 1, u32::MAX as u64);
    let failed_burst = burst.is_none() && map.get("burst").is_some();

    let requests = NonZeroU32::new(requests? as u32)?;
    let burst = burst
        .map(|b| NonZeroU32::new(b as u32).unwrap())
        .unwrap_or(requests);
    let quota = match Quota::with_burst(requests, period?, burst) {
        Ok(quota) => quota,
        Err(error) => {
            map.problems
                .at(map.node, &map.path, format!("invalid quota: {error}"));
            return None;
        }
    };
    (!failed_burst).then_some(quota)
}

fn read_window(map: &MapReader) -> Option<WindowQuota> {
    // Counts stay exact in the store's Lua numbers (below 2^53).
    let limit = map.integer("quota", 1, 1_000_000_000_000_000);
    let window = match map.choice("window", &["hour", "day", "month"]) {
        Some("hour") => Some(CalendarWindow::Hour),
        Some("day") => Some(CalendarWindow::Day),
        Some(_) => Some(CalendarWindow::Month),
        None => {
            if map.get("window").is_none() {
                map.missing("window", "one of hour, day or month");
            }
            None
        }
    };
    let zone_name = map.string("time_zone").unwrap_or_else(|| "UTC".into());
    let time_zone = match jiff::tz::TimeZone::get(&zone_name) {
        Ok(zone) => Some(zone),
        Err(_) => {
            let node = map.get("time_zone").unwrap_or(map.node);
            let message = format!(
                "unknown time zone {zone_name:?}: expected an IANA name such as UTC or Europe/Berlin"
            );
            map.problems.at(node, &map.child_path("time_zone"), message);
            None
        }
    };
    Some(WindowQuota::new(limit?, window?, time_zone?, zone_name))
}

/// Shortest lease: a lease is renewed every third of its length, and the
/// renewal runs once a second.
const MIN_LEASE: Duration = Duration::from_secs(3);

fn read_concurrent(map: &MapReader) -> Option<Limit> {
    let max = map.integer("concurrent", 1, u32::MAX as u64);
    let lease = match map.get("lease") {
        Some(_) => map.duration("lease", MIN_LEASE, Duration::from_secs(24 * 3600)),
        None => Some(Duration::from_secs(30)),
    };
    Some(Limit::Concurrent {
        max: NonZeroU32::new(max? as u32)?,
        lease: lease?,
    })
}

fn read_shared(map: &MapReader, store: Option<&StoreConfig>) -> Option<bool> {
    let shared_store = matches!(store, Some(StoreConfig::Redis(_)));
    match map.get("shared") {
        None => Some(shared_store),
        Some(node) => {
            let shared = map.bool("shared")?;
            if shared && store == Some(&StoreConfig::Memory) {
                let message =
                    "shared: true needs a shared store: set rate_limit_store.type to redis";
                map.problems.at(node, &map.child_path("shared"), message);
                return None;
            }
            Some(shared)
        }
    }
}

fn read_key(map: &MapReader) -> Option<Vec<KeyPart>> {
    let Some(items) = map.list("key") else {
        if map.get("key").is_none() {
            map.missing(
                "key",
                "a list of key parts from ip, subject, client, route, tenant, claim:<path>",
            );
        }
        return None;
    };
    let mut parts = Vec::new();
    let mut ok = true;
    for (path, node) in &items {
        let part = match scalar_text(node) {
            Some("ip") => Some(KeyPart::Ip),
            Some("subject") => Some(KeyPart::Subject),
            Some("client") => Some(KeyPart::Client),
            Some("route") => Some(KeyPart::Route),
            Some("tenant") => Some(KeyPart::Tenant),
            Some(text) => text
                .strip_prefix("claim:")
                .filter(|p| !p.is_empty())
                .map(|p| KeyPart::Claim(p.to_string())),
            None => None,
        };
        match part {
            Some(part) => parts.push(part),
            None => {
                let mut message = format!(
                    "expected one of {}, found {}",
                    KEY_PARTS.join(", "),
                    found(node)
                );
                if let Some(s) = scalar_text(node)
                    .and_then(|t| crate::config::reader::did_you_mean(t, KEY_PARTS.iter().copied()))
                {
                    message.push_str(&format!("; did you mean {s:?}?"));
                }
                map.problems.at(node, path, message);
                ok = false;
            }
        }
    }
    if items.is_empty() {
        map.problems.at(
            map.get("key").unwrap(),
            &map.child_path("key"),
            "expected at least one key part",
        );
        ok = false;
    }
    ok.then_some(parts)
}

/// Reads `global_rate_limits`: names of policies applied to every route.
pub fn read_global(
    top: &MapReader,
    declared: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
) -> Option<Vec<Arc<RateLimitPolicy>>> {
    resolve_names(top, "global_rate_limits", declared, policies)
}

/// Resolves a list of policy names (or a single name) under `key`. A name
/// that is declared but whose policy is invalid was already reported.
pub fn resolve_names(
    map: &MapReader,
    key: &'static str,
    declared: &[String],
    policies: Option<&HashMap<String, Arc<RateLimitPolicy>>>,
) -> Option<Vec<Arc<RateLimitPolicy>>> {
    let Some(node) = map.get(key) else {
        return Some(Vec::new());
    };
    let names = map.strings(key)?;
    let mut resolved = Vec::new();
    let mut ok = true;
    for name in names {
        if !declared.contains(&name) {
            let mut message = format!("no rate-limit policy named {name:?} in rate_limits");
            if let Some(s) =
                crate::config::reader::did_you_mean(&name, declared.iter().map(String::as_str))
            {
                message.push_str(&format!("; did you mean {s:?}?"));
            }
            map.problems.at(node, &map.child_path(key), message);
            ok = false;
            continue;
        }
        match policies.and_then(|p| p.get(&name)) {
            Some(policy) => resolved.push(policy.clone()),
            None => ok = false,
        }
    }
    ok.then_some(resolved)
}

/// Reads `rate_limit_store`; the in-process store when it is absent.
pub fn read_store(top: &MapReader, base_dir: &Path) -> Option<StoreConfig> {
    let Some(map) = top.map("rate_limit_store") else {
        return top
            .get("rate_limit_store")
            .is_none()
            .then_some(StoreConfig::Memory);
    };
    let store = match map.choice("type", &["memory", "redis"]) {
        Some("memory") => Some(StoreConfig::Memory),
        Some(_) => read_redis(&map, base_dir).map(|redis| StoreConfig::Redis(Arc::new(redis))),
        None => {
            if map.get("type").is_none() {
                map.missing("type", "memory or redis");
            }
            None
        }
    };
    map.finish();
    store
}

fn read_redis(map: &MapReader, base_dir: &Path) -> Option<RedisConfig> {
    let endpoints = read_endpoints(map);
    let username = map.string("username");
    let password = crate::authn::config::read_secret(map, "password", base_dir);
    let failed_password = password.is_none() && map.get("password").is_some();
    let ca = read_ca(map, base_dir);
    let key_prefix = map
        .string("key_prefix")
        .unwrap_or_else(|| "portcullis".into());
    let bad_prefix = !is_key_prefix(&key_prefix);
    if bad_prefix {
        let node = map.get("key_prefix").unwrap_or(map.node);
        let message = "expected a key prefix of letters, digits, '-', '_', ':' and '.' (at most 64), without braces";
        map.problems
            .at(node, &map.child_path("key_prefix"), message);
    }
    let timeout = optional(map, "timeout", Duration::from_millis(50), |m, k| {
        m.duration(k, Duration::from_millis(1), Duration::from_secs(10))
    });
    let connections = optional(map, "connections", 2, |m, k| m.integer(k, 1, 64));
    let instances = optional(map, "instances", 1, |m, k| m.integer(k, 1, 10_000));
    let reserve_for = optional(map, "reserve_for", Duration::from_millis(50), |m, k| {
        m.duration(k, Duration::ZERO, Duration::from_secs(1))
    });
    let circuit = read_circuit(map);
    if failed_password || bad_prefix {
        return None;
    }
    let endpoints = endpoints?;
    let ca = ca?;
    if ca.is_some()
        && !endpoints
            .urls()
            .iter()
            .all(|url| url.starts_with("rediss://"))
    {
        let message = "a CA is only used with TLS: write the URLs as rediss://";
        map.problems
            .at(map.get("ca").unwrap(), &map.child_path("ca"), message);
        return None;
    }
    Some(RedisConfig {
        endpoints,
        username,
        password,
        ca,
        key_prefix,
        timeout: timeout?,
        connections: connections? as usize,
        instances: instances? as u32,
        reserve_for: reserve_for?,
        circuit: circuit?,
    })
}

/// Reads an optional key: its default when absent, `None` when invalid.
fn optional<T>(
    map: &MapReader,
    key: &'static str,
    default: T,
    read: impl FnOnce(&MapReader, &'static str) -> Option<T>,
) -> Option<T> {
    match map.get(key) {
        None => Some(default),
        Some(_) => read(map, key),
    }
}

fn read_endpoints(map: &MapReader) -> Option<RedisEndpoints> {
    let url = map.string("url");
    let cluster = map.strings("cluster");
    let endpoints = match (url, cluster) {
        (Some(url), None) => RedisEndpoints::Single(url),
        (None, Some(nodes)) if !nodes.is_empty() => RedisEndpoints::Cluster(nodes),
        (None, None) if map.get("url").is_none() && map.get("cluster").is_none() => {
            map.missing(
                "url",
                "a Redis URL such as redis://127.0.0.1:6379, or cluster: a list of node URLs",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            let message = "expected one of url (one server) or cluster (node URLs), not both";
            map.problems.at(map.node, &map.path, message);
            return None;
        }
        _ => {
            let node = map.get("cluster").or(map.get("url")).unwrap_or(map.node);
            map.problems
                .at(node, &map.path, "expected a Redis URL or a list of them");
            return None;
        }
    };
    let urls = endpoints.urls();
    let key = match endpoints {
        RedisEndpoints::Single(_) => "url",
        RedisEndpoints::Cluster(_) => "cluster",
    };
    let mut ok = true;
    for url in urls {
        if let Err(message) = check_redis_url(url) {
            let node = map.get(key).unwrap_or(map.node);
            map.problems.at(node, &map.child_path(key), message);
            ok = false;
        }
    }
    ok.then_some(endpoints)
}

/// Checks a Redis URL without ever echoing it, since a mistaken one may
/// carry a password.
fn check_redis_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo;

    let scheme_ok = url.starts_with("redis://") || url.starts_with("rediss://");
    let info = match url.into_connection_info() {
        Ok(info) if scheme_ok => info,
        _ => {
            return Err(
                "expected a URL such as redis://127.0.0.1:6379/0 or rediss://host:6380 (TLS)"
                    .into(),
            )
        }
    };
    if info.redis_settings().password().is_some() || url.contains('?') {
        return Err(
            "the URL carries a password or query parameters; put a password under password: { env: NAME } or { file: PATH }"
                .into(),
        );
    }
    Ok(())
}

/// Reads `ca`: a PEM file with at least one certificate. `Some(None)` when
/// absent.
fn read_ca(map: &MapReader, base_dir: &Path) -> Option<Option<Vec<u8>>> {
    let Some(file) = map.string("ca") else {
        return map.get("ca").is_none().then_some(None);
    };
    let node = map.get("ca").unwrap();
    let path = crate::config::resolve_path(base_dir, &file);
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(error) => {
            let message = format!("cannot read the CA file {file}: {error}");
            map.problems.at(node, &map.child_path("ca"), message);
            return None;
        }
    };
    let mut reader = pem.as_slice();
    let certificates = rustls_pemfile::certs(&mut reader).filter(Result::is_ok);
    if certificates.count() == 0 {
        let message = format!("expected PEM certificates in {file}, found none");
        map.problems.at(node, &map.child_path("ca"), message);
        return None;
    }
    Some(Some(pem))
}

fn read_circuit(map: &MapReader) -> Option<CircuitConfig> {
    let defaults = CircuitConfig {
        failures: 3,
        open_for: Duration::from_millis(500),
        max_open_for: Duration::from_secs(10),
    };
    let Some(circuit) = map.map("circuit") else {
        return map.get("circuit").is_none().then_some(defaults);
    };
    let range = (Duration::from_millis(10), Duration::from_secs(600));
    let failures = optional(&circuit, "failures", defaults.failures, |m, k| {
        m.integer(k, 1, 1000).map(|n| n as u32)
    });
    let open_for = optional(&circuit, "open_for", defaults.open_for, |m, k| {
        m.duration(k, range.0, range.1)
    });
    let max_open_for = optional(&circuit, "max_open_for", defaults.max_open_for, |m, k| {
        m.duration(k, range.0, range.1)
    });
    let config = CircuitConfig {
        failures: failures?,
        open_for: open_for?,
        max_open_for: max_open_for?,
    };
    if config.max_open_for < config.open_for {
        let message = "expected max_open_for at least as long as open_for";
        circuit.problems.at(circuit.node, &circuit.path, message);
        return None;
    }
    circuit.finish();
    Some(config)
}

/// Key prefixes stay out of the hash tag: a brace would move every key to
/// one cluster slot.
fn is_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b))
}

/// Reads a route's `on_store_failure`.
pub fn read_store_failure(map: &MapReader) -> Option<StoreFailure> {
    match map.choice("on_store_failure", &["local", "deny"]) {
        Some("deny") => Some(StoreFailure::Deny),
        Some(_) => Some(StoreFailure::Local),
        None => map
            .get("on_store_failure")
            .is_none()
            .then_some(StoreFailure::Local),
    }
}
