//! Tier-2 evaluation cost: the example rules of
//! `examples/users-api/policies` evaluated by [`PolicySet::evaluate`] on
//! inputs built by [`build_input`] the way the pipeline builds them, plus
//! the decision cache's hit path.
//!
//! - `cold/<rule>`: the first evaluation after [`PolicySet::load`]. Each
//!   iteration loads a fresh set outside the timed part and times one
//!   evaluation on it. Every evaluation runs on a fresh clone of the
//!   prepared engine, and the clone is dropped afterwards. What `cold`
//!   adds over `warm` is first-use work on the newly loaded set and the
//!   CPU cache state that the load leaves behind.
//! - `warm/<rule>`: the same evaluation repeated on one loaded set.
//! - `input/build_input`: building the input document of one request.
//! - `decision_cache/hit`: what the pipeline does per request when the
//!   decision is cached, that is hashing the input parts the bundle's rules
//!   read into a key and looking it up.
//!
//! Run: `cargo bench --bench policy -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis::authz::decision_cache::{DecisionCache, DecisionKey};
use portcullis::authz::policy::{build_input, PolicySet, RequestFacts, POLICY_ERROR};
use serde_json::{json, Map, Value};

/// The gateway's default evaluation budget (`policies.budget`).
const BUDGET: Duration = Duration::from_millis(10);

const TENANT: &str = "acme";

/// One rule with the request it is benchmarked on and the decision the
/// example policy must reach for that request.
struct Scenario {
    rule: &'static str,
    method: &'static str,
    path: &'static str,
    route_id: &'static str,
    user_id: &'static str,
    subject: &'static str,
    scopes: &'static [&'static str],
    roles: &'static [&'static str],
    expect_allowed: bool,
}

static SCENARIOS: [Scenario; 4] = [
    Scenario {
        rule: "data.users.allow_delete",
        method: "DELETE",
        path: "/users/u-bob",
        route_id: "delete-user",
        user_id: "u-bob",
        subject: "admin-1",
        scopes: &["read:users", "write:users"],
        roles: &["admin"],
        expect_allowed: true,
    },
    Scenario {
        rule: "data.users.allow_read",
        method: "GET",
        path: "/users/u-alice",
        route_id: "get-user",
        user_id: "u-alice",
        subject: "u-alice",
        scopes: &["read:users"],
        roles: &[],
        expect_allowed: true,
    },
    Scenario {
        rule: "data.users.allow_write",
        method: "PUT",
        path: "/users/u-alice",
        route_id: "update-user",
        user_id: "u-alice",
        subject: "u-alice",
        scopes: &["read:users", "write:users"],
        roles: &[],
        expect_allowed: true,
    },
    Scenario {
        rule: "data.users.read_decision",
        method: "GET",
        path: "/users/u-alice",
        route_id: "get-user",
        user_id: "u-alice",
        subject: "u-alice",
        scopes: &["read:users"],
        roles: &[],
        expect_allowed: true,
    },
];

impl Scenario {
    /// Returns the rule name without the `data.users.` prefix, for bench ids.
    fn short_name(&self) -> &'static str {
        self.rule.rsplit('.').next().unwrap_or(self.rule)
    }

    /// Builds the input document as the pipeline would for this request.
    fn input(&self) -> Value {
        Request::new(self).input()
    }
}

/// The request facts of a scenario, owned, so that [`Request::input`] is
/// only the work of [`build_input`].
struct Request<'a> {
    scenario: &'a Scenario,
    headers: HeaderMap,
    claims: Map<String, Value>,
    params: Vec<(String, String)>,
    scopes: Vec<String>,
    roles: Vec<String>,
}

impl<'a> Request<'a> {
    fn new(scenario: &'a Scenario) -> Request<'a> {
        Request {
            scenario,
            headers: request_headers(),
            claims: claims(scenario),
            params: vec![("id".to_string(), scenario.user_id.to_string())],
            scopes: scenario.scopes.iter().map(|s| s.to_string()).collect(),
            roles: scenario.roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn input(&self) -> Value {
        build_input(&RequestFacts {
            method: self.scenario.method,
            path: self.scenario.path,
            route_id: self.scenario.route_id,
            params: &self.params,
            headers: &self.headers,
            query: None,
            claims: Some(&self.claims),
            subject: Some(self.scenario.subject),
            client_id: Some("portal"),
            scopes: &self.scopes,
            roles: &self.roles,
            tenant: Some(TENANT),
            body: None,
        })
    }
}

/// Returns the claims of a Keycloak-style access token with a login 2
/// minutes ago by password and MFA.
fn claims(scenario: &Scenario) -> Map<String, Value> {
    let now = unix_now();
    let claims = json!({
        "iss": "https://sso.acme.example/realms/acme",
        "aud": "users-api",
        "sub": scenario.subject,
        "azp": "portal",
        "client_id": "portal",
        "scope": scenario.scopes.join(" "),
        "iat": now - 60,
        "exp": now + 240,
        "jti": "5f0c8e9a-3b1d-4c2e-9f7a-1d2e3f4a5b6c",
        "tenant_id": TENANT,
        "realm_access": { "roles": scenario.roles },
        "amr": ["pwd", "mfa"],
        "auth_time": now - 120,
    });
    match claims {
        Value::Object(map) => map,
        _ => unreachable!("built from an object literal"),
    }
}

/// Headers of a typical API request as they reach the authorize stage.
/// `authorization` is there, as in the pipeline, and `build_input` leaves
/// it out.
fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    let pairs = [
        ("host", "acme.api.example.com"),
        ("user-agent", "portal/4.2 (+https://portal.acme.example)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("authorization", "Bearer not-a-real-token"),
        ("x-request-id", "01HZX3J9Q6T7V8W9X0Y1Z2A3B4"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    for (name, value) in pairs {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970")
        .as_secs()
}

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/users-api/policies")
}

fn load() -> PolicySet {
    PolicySet::load(&[policies_dir()]).unwrap_or_else(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        panic!(
            "the example policies failed to load:\n{}",
            problems.join("\n")
        )
    })
}

/// Checks that `scenario` reaches its expected decision, so that the bench
/// never measures an error path.
fn assert_decides(set: &PolicySet, scenario: &Scenario, input: &Value) {
    let decision = set.evaluate(scenario.rule, input, BUDGET);
    assert_ne!(
        decision.reason, POLICY_ERROR,
        "{}: {:?}",
        scenario.rule, decision.failure
    );
    assert_eq!(
        decision.allowed, scenario.expect_allowed,
        "{}: {:?}",
        scenario.rule, decision.result
    );
}

fn cold_evaluation(c: &mut Criterion) {
    let mut group = c.benchmark_group("cold");
    // Each iteration loads a set (milliseconds) before the timed
    // evaluation, so linear sampling would need far more than the
    // measurement time. Flat sampling keeps the run bounded.
    group.sampling_mode(SamplingMode::Flat);
    for scenario in &SCENARIOS {
        let input = scenario.input();
        assert_decides(&load(), scenario, &input);
        group.bench_function(scenario.short_name(), |b| {
            b.iter_batched_ref(
                load,
                |set| set.evaluate(scenario.rule, black_box(&input), BUDGET),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn warm_evaluation(c: &mut Criterion) {
    let set = load();
    let mut group = c.benchmark_group("warm");
    for scenario in &SCENARIOS {
        let input = scenario.input();
        assert_decides(&set, scenario, &input);
        group.bench_function(scenario.short_name(), |b| {
            b.iter(|| set.evaluate(scenario.rule, black_box(&input), BUDGET))
        });
    }
    group.finish();
}

fn input_and_cache(c: &mut Criterion) {
    let scenario = &SCENARIOS[0];
    let set = load();
    let input = scenario.input();

    let request = Request::new(scenario);
    c.bench_function("input/build_input", |b| {
        b.iter(|| black_box(&request).input())
    });

    let cache = DecisionCache::new(Duration::from_secs(3600), 10_000);
    let decision = set.evaluate(scenario.rule, &input, BUDGET);
    fn read_paths(set: &PolicySet) -> Option<Vec<&str>> {
        let paths = set.input_paths()?;
        Some(paths.iter().map(String::as_str).collect())
    }
    let paths = read_paths(&set);
    let key = DecisionKey::new(
        set.version(),
        scenario.rule,
        Some(TENANT),
        &input,
        paths.as_deref(),
    );
    cache.insert(key, &decision, Instant::now());
    c.bench_function("decision_cache/hit", |b| {
        b.iter(|| {
            let paths = read_paths(&set);
            let key = DecisionKey::new(
                set.version(),
                scenario.rule,
                Some(TENANT),
                black_box(&input),
                paths.as_deref(),
            );
            let cached = cache.get(&key, Instant::now());
            assert!(cached.is_some(), "the decision is no longer cached");
            cached
        })
    });
}

criterion_group!(benches, cold_evaluation, warm_evaluation, input_and_cache);
criterion_main!(benches);
