//! The shared store: rate limits, quotas and concurrency leases counted in
//! Redis, so every instance of a fleet enforces one count.
//!
//! Each decision is one server-side script, loaded once and called by its
//! hash, touching one key; the calls of one request go out together on a
//! multiplexed connection, so a request costs one round trip at most (a
//! rate call can also fill a [reserve](super::reserve)). Every call is
//! bounded by the configured timeout, and a [`Circuit`] stops calling a
//! store that keeps failing. Keys are `<prefix>:<kind>:{<hash>}`: the hash
//! of the key parts hides credentials and identities, and the braces make
//! it the Redis Cluster hash tag, so each limit lives in one slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Script, Value};

use crate::admin::metrics::Metrics;
use crate::ratelimit::circuit::{Admit, Circuit, Transition};
use crate::ratelimit::config::{RedisConfig, RedisEndpoints};

/// One decision to make in the store.
pub enum Call {
    /// GCRA: emission interval in microseconds, burst and cost. An admitted
    /// request takes up to `requested` tokens (at least `cost`), and the
    /// ones beyond its cost fill this instance's reserve.
    Rate {
        key: String,
        interval_us: u64,
        burst: u32,
        cost: u32,
        requested: u32,
    },
    /// Calendar quota: limit, and when the window's count may be dropped.
    Quota {
        key: String,
        limit: u64,
        expire_at: i64,
    },
    /// Concurrency slot.
    Acquire {
        key: String,
        max: u32,
        lease: Duration,
    },
}

/// The store's reply to a [`Call`], in the same order.
pub enum Reply {
    Rate {
        allowed: bool,
        remaining: u64,
        reset_after: Duration,
        retry_after: Option<Duration>,
        /// Tokens granted, the cost included; zero when refused.
        granted: u32,
    },
    Quota {
        allowed: bool,
        used: u64,
    },
    /// `None` when every slot was taken.
    Acquire(Option<SharedLease>),
}

/// Reason the store returned no reply.
#[derive(Debug, Clone, Copy)]
pub enum Unavailable {
    /// The circuit is open; the store is tried again in about this long.
    CircuitOpen(Duration),
    /// The call failed (the circuit counted it).
    Failed(Duration),
}

impl Unavailable {
    /// How long a client refused for it should wait.
    pub fn retry_after(self) -> Duration {
        match self {
            Unavailable::CircuitOpen(wait) | Unavailable::Failed(wait) => {
                wait.max(Duration::from_secs(1))
            }
        }
    }
}

pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<RedisConfig>,
    pool: ArcSwapOption<Vec<Conn>>,
    next: AtomicUsize,
    circuit: Circuit,
    metrics: Arc<Metrics>,
    scripts: Scripts,
    leases: Mutex<HashMap<String, Held>>,
}

struct Scripts {
    rate: Script,
    quota: Script,
    acquire: Script,
    renew: Script,
    refund: Script,
}

/// A lease this instance holds, renewed while its request runs.
struct Held {
    key: String,
    lease: Duration,
    renewed: Instant,
}

/// Pause before retrying a connection that just failed, giving it time to
/// reconnect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(5);

const REFUND: &str =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0";

impl RedisStore {
    /// Prepares the store; [`connect`](Self::connect) opens the connections.
    pub fn new(config: Arc<RedisConfig>, metrics: Arc<Metrics>) -> Self {
        let circuit = Circuit::new(config.circuit);
        RedisStore {
            inner: Arc::new(Inner {
                config,
                pool: ArcSwapOption::empty(),
                next: AtomicUsize::new(0),
                circuit,
                metrics,
                scripts: Scripts {
                    rate: Script::new(include_str!("scripts/gcra.lua")),
                    quota: Script::new(include_str!("scripts/quota.lua")),
                    acquire: Script::new(include_str!("scripts/acquire.lua")),
                    renew: Script::new(include_str!("scripts/renew.lua")),
                    refund: Script::new(REFUND),
                },
                leases: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts connecting in the background, retrying with backoff until it
    /// succeeds, and waits up to `within` for the first connection. A store
    /// that is down at start does not stop the gateway: requests take their
    /// route's fallback until it responds.
    pub async fn connect(&self, within: Duration) {
        let (done, mut connected) = tokio::sync::watch::channel(false);
        tokio::spawn(connect_loop(Arc::downgrade(&self.inner), done));
        tokio::spawn(renew_loop(Arc::downgrade(&self.inner)));
        let _ = tokio::time::timeout(within, connected.wait_for(|up| *up)).await;
    }

    pub fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    /// Makes every decision of one request. Either every call gets a reply
    /// or none does: on a failure, leases taken by the calls that did succeed
    /// are given back.
    pub async fn run(&self, calls: Vec<Call>) -> Result<Vec<Reply>, Unavailable> {
        let inner = &self.inner;
        let probe = match inner.circuit.admit(Instant::now()) {
            Admit::Skip(wait) => return Err(Unavailable::CircuitOpen(wait)),
            Admit::Probe => true,
            Admit::Call => false,
        };
        let deadline = tokio::time::Instant::now() + inner.config.timeout;
        let mut results = self.attempt(&calls, deadline).await;
        // After the server comes back, a pooled connection that has not
        // noticed yet fails once and reconnects in the background: try
        // the others, then again after a moment, within the deadline.
        let mut tries = 1;
        while matches!(results, Err("connection")) && tokio::time::Instant::now() < deadline {
            if tries >= inner.pool_size() {
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
            // A retry cut short by the deadline still failed for want of
            // a connection.
            results = match self.attempt(&calls, deadline).await {
                Err("timeout") => Err("connection"),
                other => other,
            };
            tries += 1;
        }
        let replies = results.map_err(|kind| self.failed(kind, probe))?;

        if let Some(Transition::Closed) = inner.circuit.success() {
            tracing::info!("rate limit store recovered");
        }
        inner.metrics.store_state(true, false);
        Ok(replies)
    }

    /// Sends every call on one connection of the pool. Either every call
    /// gets a reply or the kind of the first failure is returned; leases taken
    /// by calls that succeeded are then dropped, which gives them back.
    async fn attempt(
        &self,
        calls: &[Call],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Reply>, &'static str> {
        let inner = &self.inner;
        let conn = inner.connection().ok_or("connection")?;
        // Most routes have one shared policy: await its call alone,
        // without the bookkeeping of joining several.
        let results = match calls {
            [call] => {
                let single = inner.call(conn, call);
                vec![tokio::time::timeout_at(deadline, single)
                    .await
                    .map_err(|_| "timeout")?]
            }
            _ => {
                let pending = calls.iter().map(|call| inner.call(conn.clone(), call));
                let joined = futures_util::future::join_all(pending);
                tokio::time::timeout_at(deadline, joined)
                    .await
                    .map_err(|_| "timeout")?
            }
        };
        if let Some(error) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(error_kind(error));
        }
        Ok(results.into_iter().map(|r| r.unwrap()).collect())
    }

    /// Gives back a quota request that another limit then refused. Runs in
    /// the background; a refund lost to an outage only makes the quota
    /// stricter.
    pub fn refund(&self, key: String) {
        let inner = self.inner.clone();
        let Some(mut conn) = inner.connection() else {
            return;
        };
        tokio::spawn(async move {
            let invocation = inner.scripts.refund.key(key);
            let refund = invocation.invoke_async::<i64>(&mut conn);
            let _ = tokio::time::timeout(inner.config.timeout, refund).await;
        });
    }

    fn failed(&self, kind: &'static str, probe: bool) -> Unavailable {
        let inner = &self.inner;
        inner.metrics.store_error(kind);
        let now = Instant::now();
        if let Some(Transition::Opened) = inner.circuit.failure(now) {
            tracing::warn!(
                error.kind = kind,
                "rate limit store unavailable; routes fall back to their on_store_failure setting"
            );
        }
        let open = inner.circuit.is_open();
        inner.metrics.store_state(false, open);
        let wait = if open || probe {
            inner.config.circuit.open_for
        } else {
            inner.config.timeout
        };
        Unavailable::Failed(wait)
    }
}

impl Inner {
    fn pool_size(&self) -> usize {
        self.pool.load().as_ref().map_or(0, |pool| pool.len())
    }

    fn connection(&self) -> Option<Conn> {
        let pool = self.pool.load();
        let pool = pool.as_ref()?;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        Some(pool[index].clone())
    }

    async fn call(self: &Arc<Self>, mut conn: Conn, call: &Call) -> RedisResult<Reply> {
        match call {
            Call::Rate {
                key,
                interval_us,
                burst,
                cost,
                requested,
            } => {
                let mut invocation = self.scripts.rate.key(key);
                invocation
                    .arg(*interval_us)
                    .arg(*burst)
                    .arg(*cost)
                    .arg(*requested);
                let reply: (i64, i64, i64, i64, i64) = invocation.invoke_async(&mut conn).await?;
                Ok(Reply::Rate {
                    allowed: reply.0 == 1,
                    remaining: reply.1.max(0) as u64,
                    reset_after: micros(reply.2),
                    retry_after: (reply.3 >= 0).then(|| micros(reply.3)),
                    granted: u32::try_from(reply.4.max(0)).unwrap_or(u32::MAX),
                })
            }
            Call::Quota {
                key,
                limit,
                expire_at,
            } => {
                let mut invocation = self.scripts.quota.key(key);
                invocation.arg(*limit).arg(*expire_at);
                let (allowed, used): (i64, i64) = invocation.invoke_async(&mut conn).await?;
                Ok(Reply::Quota {
                    allowed: allowed == 1,
                    used: used.max(0) as u64,
                })
            }
            Call::Acquire { key, max, lease } => {
                let id = crate::run::random_id();
                let mut invocation = self.scripts.acquire.key(key);
                invocation.arg(*max).arg(lease.as_millis() as u64).arg(&id);
                let taken: i64 = invocation.invoke_async(&mut conn).await?;
                if taken != 1 {
                    return Ok(Reply::Acquire(None));
                }
                Ok(Reply::Acquire(Some(self.hold(key.clone(), id, *lease))))
            }
        }
    }

    fn hold(self: &Arc<Self>, key: String, id: String, lease: Duration) -> SharedLease {
        let held = Held {
            key,
            lease,
            renewed: Instant::now(),
        };
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), held);
        SharedLease {
            store: Arc::downgrade(self),
            id,
        }
    }

    fn release(self: Arc<Self>, id: String) {
        let held = self
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let (Some(held), Some(mut conn)) = (held, self.connection()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A release lost to an outage frees itself when the lease expires.
        runtime.spawn(async move {
            let mut command = redis::cmd("ZREM");
            command.arg(&held.key).arg(&id);
            let release = command.query_async::<i64>(&mut conn);
            let _ = tokio::time::timeout(self.config.timeout, release).await;
        });
    }

    /// Extends every lease due for renewal: held for a third of its length
    /// since it was last extended.
    async fn renew_due(&self) {
        let now = Instant::now();
        let mut due: HashMap<(String, Duration), Vec<String>> = HashMap::new();
        {
            let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, held) in leases.iter_mut() {
                if now.duration_since(held.renewed) >= held.lease / 3 {
                    held.renewed = now;
                    due.entry((held.key.clone(), held.lease))
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        let Some(conn) = self.connection() else {
            return;
        };
        let renewals = due.into_iter().map(|((key, lease), ids)| {
            let mut conn = conn.clone();
            let mut invocation = self.scripts.renew.key(key);
            invocation.arg(lease.as_millis() as u64).arg(ids);
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        });
        let _ = tokio::time::timeout(
            self.config.timeout * 4,
            futures_util::future::join_all(renewals),
        )
        .await;
    }
}

/// A concurrency slot held in the store, given back when dropped.
pub struct SharedLease {
    store: Weak<Inner>,
    id: String,
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            store.release(std::mem::take(&mut self.id));
        }
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(value.max(0) as u64)
}

fn error_kind(error: &redis::RedisError) -> &'static str {
    if error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
    {
        "connection"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_io_error() {
        "connection"
    } else {
        "script"
    }
}

/// Connects every connection of the pool, retrying with backoff until it
/// succeeds or the store is dropped.
async fn connect_loop(store: Weak<Inner>, done: tokio::sync::watch::Sender<bool>) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(inner) = store.upgrade() else {
            return;
        };
        match open_pool(&inner.config).await {
            Ok(pool) => {
                load_scripts(&inner, &pool).await;
                inner.pool.store(Some(Arc::new(pool)));
                inner.metrics.store_state(true, inner.circuit.is_open());
                tracing::info!(
                    connections = inner.config.connections,
                    "connected to the rate limit store"
                );
                let _ = done.send(true);
                return;
            }
            Err(error) => {
                inner.metrics.store_state(false, inner.circuit.is_open());
                tracing::warn!(
                    error.kind = error_kind(&error),
                    retry_in_ms = wait.as_millis() as u64,
                    "cannot connect to the rate limit store; routes fall back to their on_store_failure setting"
                );
            }
        }
        let max = inner.config.circuit.max_open_for;
        drop(inner);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(max);
    }
}

async fn renew_loop(store: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        inner.renew_due().await;
    }
}

/// Loads the scripts, so the first decisions already call them by hash.
async fn load_scripts(inner: &Inner, pool: &[Conn]) {
    let Some(conn) = pool.first() else {
        return;
    };
    let scripts = &inner.scripts;
    for script in [
        &scripts.rate,
        &scripts.quota,
        &scripts.acquire,
        &scripts.renew,
        &scripts.refund,
    ] {
        let mut conn = conn.clone();
        let _ = tokio::time::timeout(inner.config.timeout * 10, script.load_async(&mut conn)).await;
    }
}

async fn open_pool(config: &RedisConfig) -> RedisResult<Vec<Conn>> {
    let connect_timeout = config.timeout.max(Duration::from_secs(1));
    match &config.endpoints {
        RedisEndpoints::Single(url) => {
            let info = with_credentials(url, config)?;
            let client = match &config.ca {
                Some(ca) => redis::Client::build_with_tls(info, certificates(ca))?,
                None => redis::Client::open(info)?,
            };
            let settings = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                // Every call is bounded by the store's own deadline, which
                // covers the retries too; a second timer per call would
                // only cost.
                .set_response_timeout(None)
                .set_number_of_retries(1);
            let mut pool = Vec::with_capacity(config.connections);
            for _ in 0..config.connections {
                let manager = client
                    .get_connection_manager_with_config(settings.clone())
                    .await?;
                pool.push(Conn::Single(manager));
            }
            Ok(pool)
        }
        RedisEndpoints::Cluster(nodes) => {
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(connect_timeout)
                .response_timeout(config.timeout)
                .retries(1);
            if let Some(username) = &config.username {
                builder = builder.username(username);
            }
            if let Some(password) = &config.password {
                builder = builder.password(String::from_utf8_lossy(password.expose()));
            }
            if let Some(ca) = &config.ca {
                builder = builder.certs(certificates(ca));
            }
            let cluster = builder.build()?.get_async_connection().await?;
            Ok(vec![Conn::Cluster(cluster)])
        }
    }
}

/// Builds a client for one server of the store (TLS and credentials applied),
/// for uses beside the rate limits, such as the revocation channel.
pub fn client(config: &RedisConfig) -> RedisResult<redis::Client> {
    let url = config.endpoints.urls().first().ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis URL"))
    })?;
    let info = with_credentials(url, config)?;
    match &config.ca {
        Some(ca) => redis::Client::build_with_tls(info, certificates(ca)),
        None => redis::Client::open(info),
    }
}

fn certificates(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

fn with_credentials(url: &str, config: &RedisConfig) -> RedisResult<redis::ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(String::from_utf8_lossy(password.expose()));
    }
    Ok(info.set_redis_settings(settings))
}

/// A connection of the pool: a single server's, or a cluster's (which
/// routes each call to the node that owns its key).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
