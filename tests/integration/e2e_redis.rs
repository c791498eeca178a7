//! Shared rate limits over a real Redis server: limits counted across
//! gateway processes, accuracy under concurrent load, persistence across
//! restarts, calendar quotas, concurrency leases on every exit path, hashed
//! keys, and no Redis traffic for routes without a shared policy.
//!
//! Tests that never stop or pause Redis use the server named by
//! `PORTCULLIS_TEST_REDIS` when it is set, each with its own key prefix.

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

/// Seconds in one day.
const DAY: u64 = 86_400;
/// Offset of Asia/Kolkata from UTC: +05:30 all year, without daylight saving.
const KOLKATA_OFFSET: u64 = 19_800;

/// Returns a token for `subject` (also its client id) with scope `read:users`.
fn token_for(provider: &Provider, subject: &str) -> String {
    provider.forge().subject(subject).sign()
}

/// Sends `count` GETs of `path` one after another and returns the statuses.
async fn statuses(gateway: &Gateway, path: &str, token: &str, count: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        statuses.push(gateway.get(path).bearer(token).send().await.status());
    }
    statuses
}

/// `n` copies of `status` followed by `m` copies of `then`.
fn expected(status: u16, n: usize, then: u16, m: usize) -> Vec<u16> {
    let mut statuses = vec![status; n];
    statuses.extend(std::iter::repeat_n(then, m));
    statuses
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "expected a numeric Retry-After on the {} response, found {:?}",
                response.status(),
                response.header("retry-after")
            )
        })
}

/// Panics unless `key` is `<prefix>:<kind>:{<32 hex>}` (quota keys end with
/// `:<window start>`), so it contains no subject, client id, IP or token
/// text.
fn assert_hashed_key(key: &str, prefix: &str) {
    let pattern = format!(
        r"^{}:(gcra:\{{[0-9a-f]{{32}}\}}|quota:\{{[0-9a-f]{{32}}\}}:[0-9]+|conc:\{{[0-9a-f]{{32}}\}})$",
        regex::escape(prefix)
    );
    let shape = Regex::new(&pattern).expect("the key pattern is valid");
    assert!(
        shape.is_match(key),
        "Redis key {key:?} does not have the hashed shape {pattern}"
    );
}

/// Sums the members of every concurrency set under `prefix`: the leases
/// held now.
fn leases_held(redis: &RedisServer, prefix: &str) -> usize {
    redis
        .keys(&format!("{prefix}:conc:*"))
        .iter()
        .map(|key| redis.sorted_set_members(key).len())
        .sum()
}

async fn wait_for_leases(redis: &RedisServer, prefix: &str, count: usize, state: &str) {
    eventually(state, Duration::from_secs(5), || async {
        leases_held(redis, prefix) == count
    })
    .await;
}

#[tokio::test]
async fn redis_harness_pauses_restarts_and_clusters() {
    let mut server = RedisServer::start();
    assert_eq!(server.cli(&["SET", "probe", "1"]).trim(), "OK");
    assert_eq!(server.keys("*"), vec!["probe".to_string()]);

    server.pause();
    let address = server.address();
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(address).expect("connect to a paused server");
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("set a read timeout");
        stream.write_all(b"PING\r\n").expect("write PING");
        let mut buffer = [0u8; 16];
        stream.read(&mut buffer)
    })
    .await
    .expect("the PING task ends");
    assert!(reply.is_err(), "a paused server answered PING: {reply:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    server.resume();
    assert_eq!(server.cli(&["PING"]).trim(), "PONG");

    server.restart();
    assert!(
        server.keys("*").is_empty(),
        "a restarted server has no keys"
    );
    server.cli(&["SET", "probe", "2"]);
    assert_eq!(server.command_calls().get("set"), Some(&1));
    server.flush();
    assert!(server.keys("*").is_empty(), "FLUSHALL left keys");

    let cluster = RedisCluster::start();
    assert_eq!(cluster.urls().len(), 3);
    for key in ["{a}x", "{b}x", "{c}x"] {
        assert_eq!(cluster.cli(&["SET", key, "1"]).trim(), "OK", "SET {key}");
    }
    assert_eq!(cluster.keys("*").len(), 3);
}

#[tokio::test]
async fn limit_counts_across_two_gateways() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider]).rate_limit(5, "1m");
    let yaml = with_store(&config.yaml(), &store, &[]);
    let gateways = [Gateway::start(&yaml).await, Gateway::start(&yaml).await];
    let token = token_for(&provider, "shared-subject");

    // Five requests alternate between the gateways, and each gateway
    // continues the count the other left.
    for (index, remaining) in [4, 3, 2, 1, 0].into_iter().enumerate() {
        let gateway = &gateways[index % 2];
        let response = gateway.get("/users").bearer(&token).send().await;
        assert_eq!(
            response.status(),
            200,
            "request {index} on gateway {}: {}",
            index % 2,
            response.text()
        );
        assert_eq!(
            response.header("ratelimit-policy"),
            Some(r#""per-subject";q=5;w=60"#),
            "request {index}"
        );
        let limit = response.header("ratelimit").unwrap_or_default();
        assert!(
            limit.starts_with(&format!(r#""per-subject";r={remaining};t="#)),
            "request {index}: RateLimit {limit}"
        );
    }
    for (index, gateway) in gateways.iter().enumerate() {
        let limited = gateway.get("/users").bearer(&token).send().await;
        assert_eq!(
            limited.status(),
            429,
            "gateway {index} after five requests in all"
        );
        assert_eq!(limited.reason().as_deref(), Some("rate_limited"));
        let seconds = retry_after(&limited);
        assert!(
            (1..=12).contains(&seconds),
            "Retry-After {seconds}: one request is admitted every 12s"
        );
    }
    assert_eq!(
        upstream.count().await,
        5,
        "requests that reached the upstream"
    );

    let keys = redis.keys(&format!("{}:*", store.key_prefix));
    assert_eq!(keys.len(), 1, "one GCRA key for one subject: {keys:?}");
    assert_hashed_key(&keys[0], &store.key_prefix);
    assert!(keys[0].contains(":gcra:"), "{keys:?}");
}

#[tokio::test]
async fn admitted_load_stays_within_rate_across_gateways() {
    let run = admit_under_load(10, 5, Duration::from_millis(5)).await;
    assert_eq!(
        run.reserved, 0.0,
        "a burst of 5 is too small for reserves: every decision is the store's"
    );
}

/// With a limit fast enough for reserves, each gateway spends tokens it
/// took ahead of need, and the two together still stay within the rate.
#[tokio::test]
async fn reserved_tokens_stay_within_rate_across_gateways() {
    let run = admit_under_load(200, 200, Duration::ZERO).await;
    assert!(
        run.reserved > 0.0,
        "no decision was made from reserved tokens"
    );
}

/// What [`admit_under_load`] measured.
struct LoadRun {
    /// Decisions the gateways made from reserved tokens.
    reserved: f64,
}

/// Sends load from 4 clients to each of two gateways sharing one Redis,
/// for 3 s against a limit of `rate` per second with `burst`. Checks that
/// the admitted requests stay within `rate x 1.05 + burst`, that the load
/// was heavy enough to be limited, and that no more than the admitted
/// requests reached the upstream.
async fn admit_under_load(rate: u64, burst: u64, pause: Duration) -> LoadRun {
    const CLIENTS_PER_GATEWAY: usize = 4;
    const LOAD: Duration = Duration::from_secs(3);

    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider]).route(
        "id: accuracy\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [accuracy]",
    );
    let policy =
        format!("accuracy: {{ requests: {rate}, per: 1s, burst: {burst}, key: [subject] }}");
    let yaml = with_store(&config.yaml(), &store, &[&policy]);
    let gateways = [Gateway::start(&yaml).await, Gateway::start(&yaml).await];
    let token = token_for(&provider, "accuracy-subject");

    let admitted = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + LOAD;
    let mut clients = Vec::new();
    for gateway in &gateways {
        for _ in 0..CLIENTS_PER_GATEWAY {
            let address = gateway.address;
            let token = token.clone();
            let (admitted, limited, other) = (admitted.clone(), limited.clone(), other.clone());
            clients.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let response =
                        RequestBuilder::new(address, http::Method::GET, "/faults/headers")
                            .bearer(&token)
                            .send()
                            .await;
                    let counter = match response.status() {
                        200 => &admitted,
                        429 => &limited,
                        _ => &other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(pause).await;
                }
            }));
        }
    }
    for client in clients {
        client.await.expect("a load client ends");
    }
    let elapsed = started.elapsed();

    let admitted = admitted.load(Ordering::Relaxed);
    let limited = limited.load(Ordering::Relaxed);
    let expected_by_rate = rate as f64 * elapsed.as_secs_f64();
    let bound = expected_by_rate * 1.05 + burst as f64;
    let mut reserved = 0.0;
    for gateway in &gateways {
        reserved += gateway
            .metrics()
            .await
            .value("portcullis_rate_limit_reserved_decisions_total", &[]);
    }
    eprintln!(
        "accuracy: {admitted} admitted ({reserved} from reserves), {limited} limited in {:.2}s \
         from {} clients on 2 gateways sharing one Redis; policy {rate}/s burst {burst}; \
         bound {bound:.1}",
        elapsed.as_secs_f64(),
        2 * CLIENTS_PER_GATEWAY
    );
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "responses other than 200 and 429"
    );
    assert!(
        limited > admitted,
        "the load was too light to test the limit: {admitted} admitted, {limited} limited"
    );
    assert!(
        (admitted as f64) <= bound,
        "{admitted} admitted in {elapsed:?}: more than {bound:.1} (rate x 1.05 + burst)"
    );
    assert!(
        (admitted as f64) >= expected_by_rate * 0.8,
        "{admitted} admitted in {elapsed:?}: far below the rate ({expected_by_rate:.1})"
    );
    assert_eq!(
        upstream.count().await,
        admitted,
        "requests that reached the upstream"
    );
    LoadRun { reserved }
}

#[tokio::test]
async fn limits_and_quotas_survive_gateway_restart() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider]).rate_limit(3, "1m").route(
        "id: quota-route\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [daily]",
    );
    let yaml = with_store(
        &config.yaml(),
        &store,
        &["daily: { quota: 4, window: day, key: [subject] }"],
    );
    let rate_token = token_for(&provider, "restart-rate-subject");
    let quota_token = token_for(&provider, "restart-quota-subject");

    let mut first = Gateway::start(&yaml).await;
    assert_eq!(
        statuses(&first, "/users", &rate_token, 4).await,
        expected(200, 3, 429, 1),
        "GCRA limit of 3 per minute before the restart"
    );
    assert_eq!(
        statuses(&first, "/faults/headers", &quota_token, 5).await,
        expected(200, 4, 429, 1),
        "daily quota of 4 before the restart"
    );
    first.stop().await;
    drop(first);

    let second = Gateway::start(&yaml).await;
    let rate = second.get("/users").bearer(&rate_token).send().await;
    assert_eq!(
        rate.status(),
        429,
        "GCRA limit after the restart: {}",
        rate.text()
    );
    assert_eq!(rate.reason().as_deref(), Some("rate_limited"));
    let quota = second
        .get("/faults/headers")
        .bearer(&quota_token)
        .send()
        .await;
    assert_eq!(
        quota.status(),
        429,
        "daily quota after the restart: {}",
        quota.text()
    );
    assert_eq!(quota.reason().as_deref(), Some("rate_limited"));
    assert_eq!(
        upstream.count().await,
        7,
        "requests that reached the upstream"
    );
}

/// Returns the first and last second (exclusive) of the calendar month
/// that contains `now`, in UTC.
fn utc_month(now: u64) -> (u64, u64) {
    let mut days = now / DAY;
    let mut year = 1970;
    loop {
        let length = if is_leap(year) { 366 } else { 365 };
        if days < length {
            break;
        }
        days -= length;
        year += 1;
    }
    let mut month_start = now / DAY - days;
    for month in 1..=12 {
        let length = match month {
            2 if is_leap(year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        if days < length {
            return (month_start * DAY, (month_start + length) * DAY);
        }
        days -= length;
        month_start += length;
    }
    unreachable!("a day of the year falls in one of twelve months")
}

fn is_leap(year: u64) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// One quota policy of [`quota_reports_calendar_window`].
struct QuotaCase {
    description: &'static str,
    policy: &'static str,
    path: &'static str,
    /// Window start and end in Unix seconds, from the current time.
    window: fn(u64) -> (u64, u64),
}

#[tokio::test]
async fn quota_reports_calendar_window() {
    let cases = [
        QuotaCase {
            description: "hour in UTC",
            policy: "hourly: { quota: 2, window: hour, key: [subject] }",
            path: "/faults/headers",
            window: |now| (now - now % 3600, now - now % 3600 + 3600),
        },
        QuotaCase {
            description: "day in Asia/Kolkata, which starts at 18:30 UTC",
            policy: "daily: { quota: 2, window: day, time_zone: Asia/Kolkata, key: [subject] }",
            path: "/faults/slow",
            window: |now| {
                let local = now + KOLKATA_OFFSET;
                let start = local - local % DAY - KOLKATA_OFFSET;
                (start, start + DAY)
            },
        },
        QuotaCase {
            description: "month in UTC",
            policy: "monthly: { quota: 2, window: month, key: [subject] }",
            path: "/faults/big",
            window: utc_month,
        },
    ];
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let mut config = config_for(&upstream, &[&provider]).rate_limit(100, "1m");
    for case in &cases {
        let name = case
            .policy
            .split(':')
            .next()
            .expect("a policy line has a name");
        config = config.route(&format!(
            "id: {name}-route\nmatch: {{ path: {}, methods: [GET] }}\nupstream: users\nrequire: {{ scopes: [read:users] }}\nrate_limits: [per-subject, {name}]",
            case.path
        ));
    }
    let policies: Vec<&str> = cases.iter().map(|case| case.policy).collect();
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &policies)).await;

    for (index, case) in cases.iter().enumerate() {
        let name = case
            .policy
            .split(':')
            .next()
            .expect("a policy line has a name");
        let description = case.description;
        let token = token_for(&provider, &format!("quota-subject-{index}"));
        let (start, end) = (case.window)(unix_now());
        let path = format!("{}?ms=0&kb=1", case.path);

        for remaining in [1, 0] {
            let response = gateway.get(&path).bearer(&token).send().await;
            assert_eq!(response.status(), 200, "{description}: {}", response.text());
            assert_eq!(
                response.header("ratelimit-policy"),
                Some(
                    format!(
                        r#""per-subject";q=100;w=60, "{name}";q=2;w={}"#,
                        end - start
                    )
                    .as_str()
                ),
                "{description}: RateLimit-Policy"
            );
            let limit = response.header("ratelimit").unwrap_or_default().to_string();
            let quota_item = limit
                .split(", ")
                .find(|item| item.starts_with(&format!("\"{name}\";")))
                .unwrap_or_else(|| panic!("{description}: no {name} item in RateLimit {limit}"));
            let reset: u64 = quota_item
                .strip_prefix(&format!("\"{name}\";r={remaining};t="))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| {
                    panic!("{description}: expected r={remaining} and t in {quota_item:?}")
                });
            let until_end = end - unix_now();
            assert!(
                reset.abs_diff(until_end) <= 2,
                "{description}: t={reset}, but the window ends in {until_end}s"
            );
        }

        let denied = gateway.get(&path).bearer(&token).send().await;
        assert_eq!(
            denied.status(),
            429,
            "{description}: third request: {}",
            denied.text()
        );
        assert_eq!(
            denied.reason().as_deref(),
            Some("rate_limited"),
            "{description}"
        );
        let seconds = retry_after(&denied);
        let until_end = end - unix_now();
        assert!(
            seconds.abs_diff(until_end) <= 2,
            "{description}: Retry-After {seconds}, but the window ends in {until_end}s"
        );

        let keys = redis.keys(&format!("{}:quota:*", store.key_prefix));
        let suffix = format!(":{start}");
        assert!(
            keys.iter().any(|key| key.ends_with(&suffix)),
            "{description}: no quota key for the window starting at {start}: {keys:?}"
        );
    }
    assert_eq!(
        upstream.count().await,
        6,
        "requests that reached the upstream"
    );
}

#[tokio::test]
async fn keys_never_contain_credentials() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider]).route(
        "id: keyed\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [by-subject, by-client, by-ip, by-all, quota-by-client]",
    );
    let policies = [
        "by-subject: { requests: 100, per: 1m, key: [subject] }",
        "by-client: { requests: 100, per: 1m, key: [client] }",
        "by-ip: { requests: 100, per: 1m, key: [ip] }",
        "by-all: { requests: 100, per: 1m, key: [subject, client, ip] }",
        "quota-by-client: { quota: 100, window: day, key: [client] }",
    ];
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &policies)).await;
    let subject = "visible-subject-4242";
    let client = "visible-client-7373";
    let token = provider
        .forge()
        .subject(subject)
        .claim("client_id", client.into())
        .sign();

    assert_eq!(
        statuses(&gateway, "/faults/headers", &token, 2).await,
        vec![200, 200]
    );

    let keys = redis.keys(&format!("{}:*", store.key_prefix));
    let gcra = keys.iter().filter(|key| key.contains(":gcra:")).count();
    let quota = keys.iter().filter(|key| key.contains(":quota:")).count();
    assert_eq!(gcra, 4, "one GCRA key per rate policy: {keys:?}");
    assert_eq!(quota, 1, "one quota key: {keys:?}");
    for key in &keys {
        assert_hashed_key(key, &store.key_prefix);
        for raw in [subject, client, "127.0.0.1", token.as_str()] {
            assert!(
                !key.contains(raw),
                "Redis key {key:?} contains raw key text"
            );
        }
    }
}

#[tokio::test]
async fn unshared_routes_make_no_redis_call() {
    // Command statistics count every client, so this test needs a server
    // of its own.
    let redis = RedisServer::start();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider])
        .rate_limit(100, "1m")
        .route(
            "id: in-process\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [in-process]",
        );
    let yaml = with_store(
        &config.yaml(),
        &store,
        &["in-process: { requests: 5, per: 1m, key: [subject], shared: false }"],
    );
    let gateway = Gateway::start(&yaml).await;
    let token = token_for(&provider, "unshared-subject");

    // One shared decision first, so that connecting and loading scripts
    // are over before counting.
    assert_eq!(statuses(&gateway, "/users", &token, 1).await, vec![200]);
    let calls_before = counted_calls(&redis);

    assert_eq!(
        statuses(&gateway, "/faults/headers", &token, 8).await,
        expected(200, 5, 429, 3),
        "the in-process policy still limits"
    );
    assert_eq!(
        statuses(&gateway, "/faults/slow?ms=0", &token, 5).await,
        vec![200; 5],
        "a route without a policy"
    );
    let calls_after = counted_calls(&redis);
    assert_eq!(
        calls_after, calls_before,
        "Redis commands during requests to routes without a shared policy"
    );

    assert_eq!(statuses(&gateway, "/users", &token, 1).await, vec![200]);
    let calls_shared = counted_calls(&redis);
    assert!(
        calls_shared > calls_after,
        "a shared decision made no Redis call ({calls_shared} commands before and after)"
    );
}

/// Counts the commands Redis ran, without the `INFO` of the check itself
/// and `PING`, which a connection health check may send at any time.
fn counted_calls(redis: &RedisServer) -> u64 {
    redis
        .command_calls()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "info" | "ping"))
        .map(|(_, calls)| calls)
        .sum()
}

/// Returns the configuration of the concurrency tests: each upstream fault endpoint
/// under one concurrency policy of two leases per subject, and
/// `/faults/headers` also under a rate of one request a minute.
fn concurrency_config(upstream: &Upstream, provider: &Provider, store: &StoreConfig) -> String {
    let mut config = config_for(upstream, &[provider]).route(
        "id: conc-rate\nmatch: { path: /faults/headers, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [two-at-once, once-a-minute]",
    );
    for (id, path) in [
        ("slow", "/faults/slow"),
        ("reset", "/faults/reset"),
        ("big", "/faults/big"),
    ] {
        config = config.route(&format!(
            "id: conc-{id}\nmatch: {{ path: {path}, methods: [GET] }}\nupstream: users\nrequire: {{ scopes: [read:users] }}\nrate_limits: [two-at-once]"
        ));
    }
    with_store(
        &config.yaml(),
        store,
        &[
            "two-at-once: { concurrent: 2, key: [subject], lease: 30s }",
            "once-a-minute: { requests: 1, per: 1m, key: [subject] }",
        ],
    )
}

/// Writes an HTTP/1.1 GET with a bearer token and returns the open
/// connection without reading the response.
async fn open_request(gateway: &Gateway, path: &str, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.address)
        .await
        .expect("connect to the gateway");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        gateway.address
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("write the request head");
    stream
}

#[tokio::test]
async fn concurrency_limit_rejects_third_request() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let prefix = store.key_prefix.clone();
    let gateway = Gateway::start(&concurrency_config(&upstream, &provider, &store)).await;
    let token = token_for(&provider, "concurrent-subject");

    let in_flight: Vec<_> = (0..2)
        .map(|_| tokio::spawn(gateway.get("/faults/slow?ms=1500").bearer(&token).send()))
        .collect();
    wait_for_leases(&redis, &prefix, 2, "two leases are held").await;
    let keys = redis.keys(&format!("{prefix}:*"));
    assert_eq!(keys.len(), 1, "one concurrency set: {keys:?}");
    assert_hashed_key(&keys[0], &prefix);

    let third = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
    assert_eq!(
        third.status(),
        429,
        "a third request in flight: {}",
        third.text()
    );
    assert_eq!(third.reason().as_deref(), Some("concurrency_limited"));
    assert_eq!(third.header("retry-after"), Some("1"));
    let other = token_for(&provider, "another-subject");
    let separate = gateway.get("/faults/slow?ms=0").bearer(&other).send().await;
    assert_eq!(
        separate.status(),
        200,
        "another subject has leases of its own"
    );

    for request in in_flight {
        let response = request.await.expect("the slow request task ends");
        assert_eq!(
            response.status(),
            200,
            "a slow request: {}",
            response.text()
        );
    }
    assert_eq!(
        leases_held(&redis, &prefix),
        0,
        "leases after both completed"
    );
    let after = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
    assert_eq!(
        after.status(),
        200,
        "after the two completed: {}",
        after.text()
    );
}

#[tokio::test]
async fn concurrency_leases_released_on_every_exit() {
    let redis = RedisServer::shared();
    let mut upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let prefix = store.key_prefix.clone();
    let gateway = Gateway::start(&concurrency_config(&upstream, &provider, &store)).await;
    let token = token_for(&provider, "lease-subject");
    let unscoped = provider
        .forge()
        .subject("lease-subject")
        .scope("openid")
        .sign();

    // Each exit path runs twice, as often as the limit allows, so a leaked
    // lease also shows as a 429 for the request after it.
    for round in 0..2 {
        // Normal completion, observed while the request runs.
        let slow = tokio::spawn(gateway.get("/faults/slow?ms=800").bearer(&token).send());
        wait_for_leases(&redis, &prefix, 1, "a lease is held during a request").await;
        let response = slow.await.expect("the slow request task ends");
        assert_eq!(response.status(), 200, "round {round}: completed request");
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of a completed request is released",
        )
        .await;

        // The client closes the connection before the response head.
        let stream = open_request(&gateway, "/faults/slow?ms=20000", &token).await;
        wait_for_leases(
            &redis,
            &prefix,
            1,
            "a lease is held for the aborted request",
        )
        .await;
        drop(stream);
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of an aborted request is released",
        )
        .await;

        // The client closes the connection while the body streams.
        let mut stream = open_request(&gateway, "/faults/big?kb=1048576", &token).await;
        let mut head = [0u8; 1024];
        let read = stream
            .read(&mut head)
            .await
            .expect("read the response start");
        assert!(
            String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 200"),
            "round {round}: a streamed body starts with 200"
        );
        wait_for_leases(&redis, &prefix, 1, "a lease is held while the body streams").await;
        drop(stream);
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of an abandoned body is released",
        )
        .await;

        // The upstream closes the socket without a response.
        let reset = gateway.get("/faults/reset").bearer(&token).send().await;
        assert_eq!(
            reset.status(),
            502,
            "round {round}: upstream reset: {}",
            reset.text()
        );
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of an upstream error is released",
        )
        .await;

        // Authorization rejects the request after the lease was acquired.
        let forbidden = gateway
            .get("/faults/slow?ms=0")
            .bearer(&unscoped)
            .send()
            .await;
        assert_eq!(
            forbidden.status(),
            403,
            "round {round}: no read:users scope"
        );
        assert_eq!(forbidden.reason().as_deref(), Some("insufficient_scope"));
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of a forbidden request is released",
        )
        .await;
    }

    // Another policy of the route rejects the request in the same decision
    // that took the lease.
    for (attempt, status) in [200, 429, 429].into_iter().enumerate() {
        let response = gateway.get("/faults/headers").bearer(&token).send().await;
        assert_eq!(
            response.status(),
            status,
            "attempt {attempt} under a rate of one a minute: {}",
            response.text()
        );
        wait_for_leases(
            &redis,
            &prefix,
            0,
            "the lease of a rate-limited request is released",
        )
        .await;
    }

    upstream.stop();
    for attempt in 0..2 {
        let response = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
        assert_eq!(
            response.status(),
            502,
            "attempt {attempt} with the upstream stopped: {}",
            response.text()
        );
    }
    wait_for_leases(
        &redis,
        &prefix,
        0,
        "leases of requests to a stopped upstream are released",
    )
    .await;

    let last = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
    assert_ne!(
        last.status(),
        429,
        "a request after every exit path was limited, so a lease leaked: {}",
        last.text()
    );
}

/// `concurrent` leases per subject, each renewed every second and lost 3
/// seconds after its gateway stops renewing it.
fn short_lease_config(
    upstream: &Upstream,
    provider: &Provider,
    store: &StoreConfig,
    concurrent: u32,
) -> String {
    let config = config_for(upstream, &[provider]).route(
        "id: conc-slow\nmatch: { path: /faults/slow, methods: [GET] }\nupstream: users\nrequire: { scopes: [read:users] }\nrate_limits: [short-lease]",
    );
    let policy = format!("short-lease: {{ concurrent: {concurrent}, key: [subject], lease: 3s }}");
    with_store(&config.yaml(), store, &[&policy])
}

#[tokio::test]
async fn long_request_keeps_renewed_lease() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let prefix = store.key_prefix.clone();
    let gateway = Gateway::start(&short_lease_config(&upstream, &provider, &store, 1)).await;
    let token = token_for(&provider, "renewed-subject");

    let long = tokio::spawn(gateway.get("/faults/slow?ms=6000").bearer(&token).send());
    wait_for_leases(&redis, &prefix, 1, "the long request holds a lease").await;
    tokio::time::sleep(Duration::from_millis(4500)).await;

    assert_eq!(
        leases_held(&redis, &prefix),
        1,
        "the lease 4.5s into a request, past its 3s length"
    );
    let second = gateway.get("/faults/slow?ms=0").bearer(&token).send().await;
    assert_eq!(
        second.status(),
        429,
        "a second request while the renewed lease is held: {}",
        second.text()
    );
    assert_eq!(second.reason().as_deref(), Some("concurrency_limited"));

    let response = long.await.expect("the long request task ends");
    assert_eq!(
        response.status(),
        200,
        "the long request: {}",
        response.text()
    );
    wait_for_leases(
        &redis,
        &prefix,
        0,
        "the lease is released after the long request",
    )
    .await;
}

#[tokio::test]
async fn lease_of_killed_gateway_expires() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let prefix = store.key_prefix.clone();
    let yaml = short_lease_config(&upstream, &provider, &store, 2);
    let doomed = Gateway::start(&yaml).await;
    let survivor = Gateway::start(&yaml).await;
    let token = token_for(&provider, "orphaned-subject");

    // The survivor's long request keeps renewing the set while the doomed
    // gateway's lease must expire on its own.
    let long = tokio::spawn(survivor.get("/faults/slow?ms=9000").bearer(&token).send());
    wait_for_leases(&redis, &prefix, 1, "the survivor holds a lease").await;
    let orphaned = tokio::spawn(
        doomed
            .get("/faults/slow?ms=20000")
            .bearer(&token)
            .try_send(),
    );
    wait_for_leases(&redis, &prefix, 2, "the doomed gateway holds a lease").await;
    // Dropping a gateway kills it with SIGKILL, so it cannot give the lease back.
    drop(doomed);
    let killed_at = Instant::now();
    let _ = orphaned.await;

    let blocked = survivor
        .get("/faults/slow?ms=0")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(
        blocked.status(),
        429,
        "the survivor while the orphaned lease lasts: {}",
        blocked.text()
    );
    assert_eq!(blocked.reason().as_deref(), Some("concurrency_limited"));

    let mut admitted = None;
    while killed_at.elapsed() < Duration::from_secs(8) {
        let response = survivor
            .get("/faults/slow?ms=0")
            .bearer(&token)
            .send()
            .await;
        if response.status() == 200 {
            admitted = Some(killed_at.elapsed());
            break;
        }
        assert_eq!(response.status(), 429, "while waiting: {}", response.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admitted = admitted.expect("the orphaned lease did not expire within 8s of the kill");
    assert!(
        admitted <= Duration::from_millis(3500),
        "the orphaned lease outlived its 3s length: admitted {admitted:?} after the kill"
    );
    wait_for_leases(
        &redis,
        &prefix,
        1,
        "only the survivor's long request holds a lease",
    )
    .await;

    let response = long.await.expect("the long request task ends");
    assert_eq!(
        response.status(),
        200,
        "the survivor's long request: {}",
        response.text()
    );
}

#[tokio::test]
async fn acl_user_logs_in_with_password_file() {
    let password = "acl-password-5b1e7c0d93";
    let redis = RedisServer::start_with_user("portcullis", password);
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let secrets = tempfile::tempdir().expect("a temporary directory");
    let right = secrets.path().join("right.secret");
    let wrong = secrets.path().join("wrong.secret");
    std::fs::write(&right, password).expect("write the password file");
    std::fs::write(&wrong, "wrong-password-8c2f44e1").expect("write the password file");
    record_credential("wrong-password-8c2f44e1");
    let config = config_for(&upstream, &[&provider]).rate_limit(3, "1m");

    let store = StoreConfig::server(&redis).login("portcullis", &right);
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &[])).await;
    let token = token_for(&provider, "acl-subject");
    assert_eq!(
        statuses(&gateway, "/users", &token, 4).await,
        expected(200, 3, 429, 1)
    );
    assert_eq!(
        redis.keys(&format!("{}:gcra:*", store.key_prefix)).len(),
        1,
        "the GCRA key written as the ACL user"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(metrics.value("portcullis_rate_limit_store_up", &[]), 1.0);

    let refused = StoreConfig::server(&redis).login("portcullis", &wrong);
    let locked_out = Gateway::start(&with_store(&config.yaml(), &refused, &[])).await;
    let other = token_for(&provider, "locked-out-subject");
    let response = locked_out.get("/users").bearer(&other).send().await;
    assert_eq!(
        response.status(),
        200,
        "the local fallback: {}",
        response.text()
    );
    let metrics = locked_out.metrics().await;
    assert_eq!(
        metrics.value("portcullis_rate_limit_store_up", &[]),
        0.0,
        "a store whose login fails"
    );
    assert!(
        redis.keys(&format!("{}:*", refused.key_prefix)).is_empty(),
        "keys written with a wrong password"
    );
}

#[tokio::test]
async fn wrong_type_key_counts_script_error() {
    let redis = RedisServer::shared();
    let upstream = Upstream::start();
    let provider = Provider::start(ProviderOptions::default());
    let store = StoreConfig::server(&redis);
    let config = config_for(&upstream, &[&provider]).rate_limit(3, "1m");
    let gateway = Gateway::start(&with_store(&config.yaml(), &store, &[])).await;
    let token = token_for(&provider, "wrong-type-subject");

    assert_eq!(statuses(&gateway, "/users", &token, 1).await, vec![200]);
    let keys = redis.keys(&format!("{}:gcra:*", store.key_prefix));
    assert_eq!(keys.len(), 1, "{keys:?}");
    redis.cli(&["DEL", &keys[0]]);
    redis.cli(&["RPUSH", &keys[0], "not-a-rate"]);

    let response = gateway.get("/users").bearer(&token).send().await;
    assert_eq!(
        response.status(),
        200,
        "a failed script falls back to the local limit: {}",
        response.text()
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metrics.value(
            "portcullis_rate_limit_store_errors_total",
            &[("kind", "script")]
        ),
        1.0,
        "script errors"
    );
    assert_eq!(
        metrics.value("portcullis_rate_limit_store_errors_total", &[]),
        1.0,
        "store errors of every kind"
    );
    assert_eq!(
        redis.cli(&["TYPE", &keys[0]]).trim(),
        "list",
        "the script changed the key"
    );
}
