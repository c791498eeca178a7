//! Prometheus metrics. Every label has a bounded set of values: route ids,
//! upstream names and issuers come from the configuration, reasons and
//! statuses from fixed lists in the code.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<String>,
    tenant: Arc<String>,
    method: Arc<String>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReasonLabels {
    route: Arc<String>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: Arc<String>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    issuer: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    denials: Family<ReasonLabels, Counter>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    jwks_fetches: Family<FetchLabels, Counter>,
    introspections: Family<FetchLabels, Counter>,
    token_cache: Family<ResultLabels, Counter>,
    token_requests: Family<ResultLabels, Counter>,
    in_flight: Gauge,
    connections_open: Gauge,
    generation: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge,
    store_up: Gauge,
    store_circuit_open: Gauge,
    store_errors: Family<KindLabels, Counter>,
    store_fallbacks: Family<ResultLabels, Counter>,
    store_reserved: Counter,
    audit_records: Counter,
    audit_failures: Family<OnFailureLabels, Counter>,
    audit_append_duration: Histogram,
    masked_values: Family<RouteLabels, Counter>,
    masking_failures: Family<RouteReasonLabels, Counter>,
    masking_passes: Family<RouteReasonLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OnFailureLabels {
    on_failure: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Label used for requests that matched no route.
pub const NO_ROUTE: &str = "none";

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, tenant, method and status",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Time from request headers to response headers, by route",
            duration.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "denials",
            "Requests the gateway answered with an error, by reason code",
            denials.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream exchanges, by upstream and kind (connect, timeout, protocol)",
            upstream_errors.clone(),
        );
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "Discovery and JWKS fetches, by issuer and result",
            jwks_fetches.clone(),
        );
        let introspections = Family::<FetchLabels, Counter>::default();
        registry.register(
            "introspections",
            "Token introspections, by issuer and result (active, inactive, error, cache_hit)",
            introspections.clone(),
        );
        let token_cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "token_cache_lookups",
            "Verified-token cache lookups, by result (hit, miss)",
            token_cache.clone(),
        );
        let token_requests = Family::<ResultLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Requests to the token service's token endpoint, by result (issued, or the reason of the OAuth error)",
            token_requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open on the public listener",
            connections_open.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Configuration generation serving requests (1 at startup, +1 per successful reload)",
            generation.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (success, failure)",
            reloads.clone(),
        );
        let last_reload_success = Gauge::default();
        registry.register(
            "config_last_reload_success",
            "1 when the last reload (or the startup load) succeeded, 0 when it was rejected",
            last_reload_success.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "rate_limit_store_up",
            "1 while the shared rate-limit store answers (also 1 for the in-process store), 0 while it does not",
            store_up.clone(),
        );
        store_up.set(1);
        let store_circuit_open = Gauge::default();
        registry.register(
            "rate_limit_store_circuit_open",
            "1 while the circuit in front of the shared rate-limit store is open",
            store_circuit_open.clone(),
        );
        let store_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "rate_limit_store_errors",
            "Failed calls to the shared rate-limit store, by kind (timeout, connection, script)",
            store_errors.clone(),
        );
        let store_fallbacks = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rate_limit_store_fallbacks",
            "Requests limited without the shared store, by what the route did (local, deny)",
            store_fallbacks.clone(),
        );
        let store_reserved = Counter::default();
        registry.register(
            "rate_limit_reserved_decisions",
            "Shared rate limit decisions made from tokens this instance reserved, without a store call",
            store_reserved.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records",
            "Request records the audit log confirmed written (durable in fsync mode)",
            audit_records.clone(),
        );
        let audit_failures = Family::<OnFailureLabels, Counter>::default();
        registry.register(
            "audit_append_failures",
            "Requests whose audit record could not be written, by on_failure (deny: answered 503, allow: served unrecorded)",
            audit_failures.clone(),
        );
        let audit_append_duration = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        registry.register(
            "audit_append_duration_seconds",
            "Time a request waited for its audit record to be written, including the shared fsync of its batch",
            audit_append_duration.clone(),
        );
        let masked_values = Family::<RouteLabels, Counter>::default();
        registry.register(
            "masked_values",
            "Strings, numbers and booleans masked in responses, by route",
            masked_values.clone(),
        );
        let masking_failures = Family::<RouteReasonLabels, Counter>::default();
        registry.register(
            "masking_failures",
            "Responses that could not be masked, by route and reason (body_too_large, invalid_json, ...)",
            masking_failures.clone(),
        );
        let masking_passes = Family::<RouteReasonLabels, Counter>::default();
        registry.register(
            "masking_passes",
            "Responses sent unmasked under on_error: pass, by route and reason",
            masking_passes.clone(),
        );
        Metrics {
            registry,
            audit_records,
            audit_failures,
            audit_append_duration,
            masked_values,
            masking_failures,
            masking_passes,
            store_up,
            store_circuit_open,
            store_errors,
            store_fallbacks,
            store_reserved,
            requests,
            duration,
            denials,
            upstream_errors,
            jwks_fetches,
            introspections,
            token_cache,
            token_requests,
            in_flight,
            connections_open,
            generation,
            reloads,
            last_reload_success,
        }
    }

    pub fn request(
        &self,
        route: &Arc<String>,
        tenant: &Arc<String>,
        method: &Arc<String>,
        status: u16,
        seconds: f64,
    ) {
        let labels = RequestLabels {
            route: route.clone(),
            tenant: tenant.clone(),
            method: method.clone(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(seconds);
    }

    pub fn denial(&self, reason: &'static str) {
        self.denials.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn upstream_error(&self, upstream: &Arc<String>, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
                kind,
            })
            .inc();
    }

    pub fn jwks_fetch(&self, issuer: &str, result: &'static str) {
        self.jwks_fetches
            .get_or_create(&FetchLabels {
                issuer: issuer.to_string(),
                result,
            })
            .inc();
    }

    /// Counts one introspection: `active` or `inactive` as the provider
    /// reported, `error` when it gave no usable response, `cache_hit` when a
    /// cached active result was used instead.
    pub fn introspection(&self, issuer: &str, result: &'static str) {
        self.introspections
            .get_or_create(&FetchLabels {
                issuer: issuer.to_string(),
                result,
            })
            .inc();
    }

    pub fn token_cache(&self, result: &'static str) {
        self.token_cache
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts one token request: `issued`, or the reason it was refused
    /// (`invalid_client`, `invalid_scope`, `client_attempts_exceeded`, ...).
    pub fn token_request(&self, result: &'static str) {
        self.token_requests
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Records a configuration that now serves: generation `generation`,
    /// from startup or from a reload.
    pub fn config_loaded(&self, generation: u64, startup: bool) {
        self.generation.set(generation as i64);
        self.last_reload_success.set(1);
        if !startup {
            self.reloads
                .get_or_create(&ResultLabels { result: "success" })
                .inc();
        }
    }

    pub fn config_reload_failed(&self) {
        self.last_reload_success.set(0);
        self.reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .inc();
    }

    pub fn store_state(&self, up: bool, circuit_open: bool) {
        self.store_up.set(i64::from(up));
        self.store_circuit_open.set(i64::from(circuit_open));
    }

    pub fn store_error(&self, kind: &'static str) {
        self.store_errors.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn store_fallback(&self, result: &'static str) {
        self.store_fallbacks
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn store_reserved(&self) {
        self.store_reserved.inc();
    }

    /// Counts one audit append and how long it waited.
    pub fn audit_append(&self, seconds: f64, written: bool) {
        self.audit_append_duration.observe(seconds);
        if written {
            self.audit_records.inc();
        }
    }

    /// Counts a request whose audit record could not be written.
    pub fn audit_failure(&self, on_failure: &'static str) {
        self.audit_failures
            .get_or_create(&OnFailureLabels { on_failure })
            .inc();
    }

    /// Counts `count` values masked in one response of `route`.
    pub fn masked_values(&self, route: &Arc<String>, count: usize) {
        self.masked_values
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .inc_by(count as u64);
    }

    /// Counts one response of `route` that could not be masked, and, when
    /// `passed`, was sent unmasked under `on_error: pass`.
    pub fn masking_failure(&self, route: &Arc<String>, reason: &'static str, passed: bool) {
        let labels = RouteReasonLabels {
            route: route.clone(),
            reason,
        };
        self.masking_failures.get_or_create(&labels).inc();
        if passed {
            self.masking_passes.get_or_create(&labels).inc();
        }
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
