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
    method: Arc<String>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<String>,
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
    token_cache: Family<ResultLabels, Counter>,
    in_flight: Gauge,
}

/// Label used for requests that matched no route.
pub const NO_ROUTE: &str = "none";

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route, method and status", requests.clone());
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("request_duration_seconds", "Time from request headers to response headers, by route", duration.clone());
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register("denials", "Requests the gateway answered with an error, by reason code", denials.clone());
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register("upstream_errors", "Failed upstream exchanges, by upstream and kind (connect, timeout, protocol)", upstream_errors.clone());
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register("jwks_fetches", "Discovery and JWKS fetches, by issuer and result", jwks_fetches.clone());
        let token_cache = Family::<ResultLabels, Counter>::default();
        registry.register("token_cache_lookups", "Verified-token cache lookups, by result (hit, miss)", token_cache.clone());
        let in_flight = Gauge::default();
        registry.register("requests_in_flight", "Requests being served", in_flight.clone());
        Metrics { registry, requests, duration, denials, upstream_errors, jwks_fetches, token_cache, in_flight }
    }

    pub fn request(&self, route: &Arc<String>, method: &Arc<String>, status: u16, seconds: f64) {
        let labels = RequestLabels { route: route.clone(), method: method.clone(), status };
        self.requests.get_or_create(&labels).inc();
        self.duration.get_or_create(&RouteLabels { route: route.clone() }).observe(seconds);
    }

    pub fn denial(&self, reason: &'static str) {
        self.denials.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn upstream_error(&self, upstream: &Arc<String>, kind: &'static str) {
        self.upstream_errors.get_or_create(&UpstreamLabels { upstream: upstream.clone(), kind }).inc();
    }

    pub fn jwks_fetch(&self, issuer: &str, result: &'static str) {
        self.jwks_fetches.get_or_create(&FetchLabels { issuer: issuer.to_string(), result }).inc();
    }

    pub fn token_cache(&self, result: &'static str) {
        self.token_cache.get_or_create(&ResultLabels { result }).inc();
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
