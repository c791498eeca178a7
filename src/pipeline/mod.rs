//! The request pipeline: the ordered stages every request passes through,
//! from the normalized request to the protected response.
//!
//! ```text
//! normalize → route → rate limit (by IP) → authenticate → rate limit → authorize
//!           → forward → mask → protect
//! ```
//!
//! Each stage either enriches the request [`Context`] or ends the request
//! with a [`Rejection`]; [`Rejection::into_response`] is the one place that
//! turns outcomes into responses. Every request, allowed or not, ends with
//! one access log line and one count in the metrics.

mod audit;
pub mod body;
mod mask;
pub mod reject;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::admin::metrics::{Metrics, NO_ROUTE};
use crate::authn::{Authenticator, Identity};
use crate::config::Config;
use crate::normalize::{self, Normalized};
use crate::pipeline::body::{Body, LimitedBody};
use crate::pipeline::reject::Rejection;
use crate::proxy::upstream::{UpstreamError, Upstreams};
use crate::ratelimit::config::RateLimitPolicy;
use crate::ratelimit::{KeyInputs, Limiter, Outcome, Verdict};
use crate::route::config::{AuthMode, RouteConfig};
use crate::route::Router;
use crate::tenancy::config::{TenantConfig, TenantFrom};

/// State shared by every connection: the current gateway (swapped as a
/// whole on reload) and the metrics, which outlive reloads.
pub struct Shared {
    pub gateway: ArcSwap<Gateway>,
    pub metrics: Arc<Metrics>,
}

/// State that outlives configuration reloads, so a reload neither resets
/// rate-limit counters nor loses the metrics.
#[derive(Clone)]
pub struct Durable {
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<Limiter>,
    pub fetcher: crate::authn::fetch::Fetcher,
    pub revocations: Arc<crate::revocation::Revocations>,
    /// The audit log, opened once at start when configured.
    pub audit: Option<Arc<crate::audit::Trail>>,
}

impl Durable {
    /// Builds the lasting state. The rate-limit store is chosen here, once:
    /// a reload that changes it waits for a restart.
    pub fn new(store: &crate::ratelimit::config::StoreConfig) -> Result<Self, String> {
        let metrics = Arc::new(Metrics::new());
        Ok(Durable {
            limiter: Arc::new(Limiter::new(MAX_RATE_LIMIT_KEYS, store, metrics.clone())),
            metrics,
            fetcher: crate::authn::fetch::Fetcher::new(),
            revocations: Arc::new(crate::revocation::Revocations::new(store)?),
            audit: None,
        })
    }
}

/// Facts about the downstream connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Everything built from one configuration generation.
pub struct Gateway {
    pub config: Arc<Config>,
    router: Router,
    pub authenticator: Authenticator,
    api_keys: Option<crate::apikey::KeyRing>,
    /// The gateway's own OAuth token service, when configured.
    token_service: Option<crate::token_service::TokenService>,
    revocations: Arc<crate::revocation::Revocations>,
    limiter: Arc<Limiter>,
    /// Tier-2 decisions of this generation; a reload starts empty.
    decisions: crate::authz::decision_cache::DecisionCache,
    /// Parsed obligations of this generation's decisions.
    obligations: crate::authz::obligations::ObligationCache,
    upstreams: Upstreams,
    normalizer: normalize::Normalizer,
    metrics: Arc<Metrics>,
    /// Route ids and methods as metric labels, built once.
    labels: Labels,
    audit: Option<Arc<crate::audit::Trail>>,
}

struct Labels {
    no_route: Arc<String>,
    /// Tenant ids as labels; `none` when a request has no tenant.
    tenants: std::collections::HashMap<String, Arc<String>>,
    routes: std::collections::HashMap<String, Arc<String>>,
    methods: Vec<(http::Method, Arc<String>)>,
    other_method: Arc<String>,
}

/// The facts the stages learn about a request as it goes.
struct Context {
    started: Instant,
    /// Random id of this request, sent upstream and downstream.
    request_id: String,
    method: http::Method,
    path: Option<String>,
    client_ip: IpAddr,
    route: Option<Arc<RouteConfig>>,
    identity: Option<Arc<Identity>>,
    /// The addressed tenant, or the credential's once bound.
    tenant: Option<Arc<TenantConfig>>,
    limit: Option<Outcome>,
    /// The policy decision's response obligations, when it had any to
    /// apply.
    obligations: Option<Arc<crate::authz::obligations::Obligations>>,
    /// Whether the policy decision had an `obligations` member, even one
    /// that masks nothing: the response then depends on the caller.
    policy_obligations: bool,
}

/// Maximum rate-limit keys tracked in memory.
const MAX_RATE_LIMIT_KEYS: usize = 100_000;

impl Gateway {
    /// Builds every stage from one configuration. Issuer keys already
    /// fetched by `previous` are reused for the same issuers, so a reload
    /// never leaves an issuer without keys while they are fetched again.
    pub fn new(
        config: Arc<Config>,
        durable: &Durable,
        previous: Option<&Gateway>,
    ) -> Result<Self, String> {
        let metrics = durable.metrics.clone();
        let routes = config.routes.clone();
        let labels = Labels {
            no_route: Arc::new(NO_ROUTE.to_string()),
            tenants: config
                .tenants
                .keys()
                .map(|id| (id.clone(), Arc::new(id.clone())))
                .collect(),
            routes: routes
                .iter()
                .map(|r| (r.id.clone(), Arc::new(r.id.clone())))
                .collect(),
            methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .iter()
                .map(|m| {
                    (
                        http::Method::from_bytes(m.as_bytes()).unwrap(),
                        Arc::new(m.to_string()),
                    )
                })
                .collect(),
            other_method: Arc::new("other".to_string()),
        };
        let mut gateway = Gateway {
            router: Router::new(routes),
            authenticator: Authenticator::new(
                &config.authentication,
                durable.fetcher.clone(),
                metrics.clone(),
                previous.map(|p| &p.authenticator),
            )?,
            api_keys: match &config.api_keys {
                Some(keys) => {
                    let previous = previous.and_then(|p| p.api_keys.as_ref());
                    let ring = crate::apikey::KeyRing::new(keys, previous)?;
                    ring.watch();
                    Some(ring)
                }
                None => None,
            },
            token_service: None,
            revocations: durable.revocations.clone(),
            limiter: durable.limiter.clone(),
            decisions: match &config.policies {
                Some(p) => crate::authz::decision_cache::DecisionCache::new(
                    p.cache_ttl,
                    p.cache_max_entries,
                ),
                None => {
                    crate::authz::decision_cache::DecisionCache::new(std::time::Duration::ZERO, 0)
                }
            },
            obligations: Default::default(),
            upstreams: Upstreams::new(&config.upstreams),
            normalizer: normalize::Normalizer::new(&config)?,
            metrics,
            labels,
            audit: durable.audit.clone(),
            config,
        };
        // Built last: it hands its keys to the authenticator.
        gateway.token_service = crate::token_service::start(
            &gateway.config,
            &gateway.authenticator,
            gateway.metrics.clone(),
        )?;
        Ok(gateway)
    }

    /// Serves one request end to end. Every outcome, a rejection included,
    /// becomes a response.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        connection: Connection,
    ) -> Response<Body> {
        let request_id = crate::run::random_id();
        request.headers_mut().remove(audit::REQUEST_ID);
        let mut context = Context {
            started: Instant::now(),
            request_id,
            method: request.method().clone(),
            path: None,
            client_ip: connection.peer.ip().to_canonical(),
            route: None,
            identity: None,
            tenant: None,
            limit: None,
            obligations: None,
            policy_obligations: false,
        };
        let (response, verdict) = match self.run(&mut context, request, connection).await {
            Ok(response) => (response, audit::Verdict::allowed()),
            Err(rejection) => {
                let verdict = audit::Verdict::rejected(&rejection);
                let reason = rejection.reason();
                self.metrics.denial(reason);
                let missing = matches!(
                    rejection,
                    Rejection::Unauthenticated(crate::authn::AuthnError::Missing)
                );
                let mut response = rejection.into_response();
                // A client without a credential learns every scheme it may use.
                if missing && self.api_keys.is_some() {
                    response.headers_mut().append(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("ApiKey realm=\"portcullis\""),
                    );
                }
                (response, verdict)
            }
        };
        let response = self.protect(&context, response, connection);
        let (response, reason) = self.audit(&context, response, verdict, connection).await;
        self.record(&context, &response, reason);
        let leases = context
            .limit
            .as_mut()
            .map(|outcome| std::mem::take(&mut outcome.leases))
            .unwrap_or_default();
        response.map(|body| crate::pipeline::body::holding(body, leases))
    }

    async fn run(
        &self,
        context: &mut Context,
        request: Request<Incoming>,
        connection: Connection,
    ) -> Result<Response<Body>, Rejection> {
        let (mut parts, body) = request.into_parts();

        let mut normalized = self.normalizer.normalize(&mut parts, connection)?;
        context.client_ip = normalized.client_ip;
        context.path = Some(normalized.path.clone());
        self.audit_admit()?;

        // The token service's endpoints come before tenants and routes.
        if let Some(service) = &self.token_service {
            if let Some(endpoint) = service.endpoint(&normalized.path) {
                let api_keys = self.api_keys.as_ref();
                let client_ip = context.client_ip;
                return service
                    .serve(
                        endpoint,
                        &parts,
                        body,
                        client_ip,
                        api_keys,
                        &self.revocations,
                    )
                    .await;
            }
        }

        if let Some(from @ TenantFrom::PathPrefix { .. }) = &self.config.tenant_from {
            self.resolve_tenant(from, context, &parts, &mut normalized)?;
        }

        let matched =
            self.router
                .find(&parts.method, &normalized.path)
                .map_err(|error| match error {
                    crate::route::RouteError::NotFound => Rejection::NotFound,
                    crate::route::RouteError::MethodNotAllowed { allow } => {
                        Rejection::MethodNotAllowed { allow }
                    }
                })?;
        let route = matched.route;
        let params = matched.params;
        context.route = Some(route.clone());
        if let Some(from) = self
            .tenant_source(&route)
            .filter(|from| !matches!(from, TenantFrom::PathPrefix { .. }))
        {
            self.resolve_tenant(from, context, &parts, &mut normalized)?;
        }
        let body_limit = route
            .max_body_bytes
            .unwrap_or(self.config.server.limits.max_body_bytes);
        check_declared_length(&parts, body_limit)?;

        if route.authentication == AuthMode::Required {
            let tenant_known = context.tenant.is_some();
            let stage = LimitStage::BeforeAuthentication { tenant_known };
            self.limit(context, &route, stage).await?;
            let identity = self.authenticate(context, &parts).await?;
            self.bind_tenant(context, &identity, &route)?;
            context.identity = Some(identity);
            let stage = LimitStage::AfterAuthentication { tenant_known };
            self.limit(context, &route, stage).await?;
        } else {
            self.limit(context, &route, LimitStage::All).await?;
        }

        if let Some(identity) = &context.identity {
            crate::authz::check(&route.require, identity).map_err(Rejection::Forbidden)?;
            let skew = self.authenticator.clock_skew(&identity.issuer);
            let step_up = route
                .require
                .step_up
                .check(identity, crate::authn::unix_now(), skew);
            step_up.map_err(Rejection::StepUpRequired)?;
        }
        let mut body = RequestBody::Streaming(body);
        if let Some(rule) = &route.require.policy {
            let json = if route.require.policy_body {
                let bytes = buffer_body(body, body_limit).await?;
                let json = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                body = RequestBody::Buffered(bytes);
                json
            } else {
                None
            };
            self.decide(context, &parts, &route, &params, rule, json.as_ref())
                .await?;
        }

        audit::set_request_id(&mut parts.headers, &context.request_id);
        self.forward(context, parts, body, &route, normalized, body_limit)
            .await
    }

    /// Verifies the request's credential: an API key when it presents one
    /// and keys are configured, else a bearer token.
    async fn authenticate(
        &self,
        context: &Context,
        parts: &Parts,
    ) -> Result<Arc<Identity>, Rejection> {
        if let Some(ring) = &self.api_keys {
            if let Some(key) = ring.presented(&parts.headers) {
                let key = key.map_err(Rejection::ApiKey)?;
                return ring
                    .verify(key, context.client_ip)
                    .map_err(Rejection::ApiKey);
            }
        }
        let tenant = context.tenant.as_deref().map(|t| t.id.as_str());
        let identity = self
            .authenticator
            .authenticate(&parts.headers, tenant)
            .await
            .map_err(Rejection::Unauthenticated)?;
        let identity = match &self.token_service {
            Some(service) => service.bind_tenant(identity),
            None => identity,
        };
        // Checked after the token cache too, so a revocation also ends
        // tokens verified before it.
        if self.revocations.is_revoked(&identity) {
            return Err(Rejection::Revoked);
        }
        Ok(identity)
    }

    /// Finds the tenant the request addresses. An unknown or missing tenant
    /// gets the same 404 as an unknown route.
    fn resolve_tenant(
        &self,
        from: &TenantFrom,
        context: &mut Context,
        parts: &Parts,
        normalized: &mut Normalized,
    ) -> Result<(), Rejection> {
        let (tenant, rest) =
            crate::tenancy::resolve(from, &self.config.tenants, parts, &normalized.path)
                .map_err(|_| Rejection::NotFound)?;
        context.tenant = Some(tenant.clone());
        if let Some(rest) = rest {
            normalized.path = rest;
            context.path = Some(normalized.path.clone());
        }
        Ok(())
    }

    /// Tier 2: evaluates the route's Rego rule (or reuses a cached decision
    /// for the same bundle, rule, tenant and input) and writes one
    /// decision log record.
    async fn decide(
        &self,
        context: &mut Context,
        parts: &Parts,
        route: &RouteConfig,
        params: &[(String, String)],
        rule: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(), Rejection> {
        let Some(policies) = &self.config.policies else {
            // Validation rejects a policy rule without a policies section.
            tracing::error!(
                route.id = route.id.as_str(),
                policy.rule = rule,
                "route names a policy but none are loaded"
            );
            return Err(Rejection::Internal);
        };
        let identity = context.identity.as_deref();
        let no_list: &[String] = &[];
        let facts = crate::authz::policy::RequestFacts {
            method: parts.method.as_str(),
            path: context.path.as_deref().unwrap_or("/"),
            route_id: &route.id,
            params,
            headers: &parts.headers,
            query: parts.uri.query(),
            claims: identity.map(|i| i.claims.as_map()),
            subject: identity.and_then(|i| i.subject.as_deref()),
            client_id: identity.and_then(|i| i.client_id.as_deref()),
            scopes: identity.map_or(no_list, |i| i.scopes.as_slice()),
            roles: identity.map_or(no_list, |i| i.roles.as_slice()),
            tenant: context.tenant.as_ref().map(|t| t.id.as_str()),
            body,
        };
        let input = crate::authz::policy::build_input(&facts);

        let version = policies.version.as_str();
        // Only the parts the bundle's rules read go into the key, so a
        // header no rule reads does not defeat the cache.
        let read_paths: Option<Vec<&str>> = policies
            .set
            .as_ref()
            .and_then(|set| set.input_paths())
            .map(|paths| paths.iter().map(String::as_str).collect());
        let key = crate::authz::decision_cache::DecisionKey::new(
            version,
            rule,
            facts.tenant,
            &input,
            read_paths.as_deref(),
        );
        let now = Instant::now();
        let (decision, cached) = match self.decisions.get(&key, now) {
            Some(decision) => (decision, true),
            None => {
                let decision = match (&policies.set, &policies.server) {
                    (Some(set), _) => set.evaluate(rule, &input, policies.budget),
                    (None, Some(server)) => server.evaluate(rule, &input).await,
                    (None, None) => crate::authz::policy::Decision::failed(
                        crate::authz::policy::PolicyFailure::RuleNotFound,
                        Default::default(),
                    ),
                };
                self.decisions.insert(key, &decision, now);
                (decision, false)
            }
        };

        let logged = policies.decision_log.include_input.then(|| {
            policies
                .decision_log
                .record(&input, decision.result.as_ref())
                .to_string()
        });
        tracing::info!(
            target: "decision_log",
            decision_id = %crate::run::random_id(),
            record = logged.as_deref(),
            policy.rule = rule,
            policy.bundle = version,
            decision.allowed = decision.allowed,
            reason = decision.reason,
            failure = decision.failure.as_ref().map(|f| f.detail()),
            duration_us = decision.duration.as_micros() as u64,
            cached,
            route.id = route.id.as_str(),
            tenant.id = facts.tenant,
            identity.subject = facts.subject,
            "policy decision"
        );
        if decision.allowed {
            let obligations =
                self.accept_obligations(context, route, rule, decision.obligations.as_ref())?;
            context.obligations = obligations;
            context.policy_obligations = decision.obligations.is_some();
            return Ok(());
        }
        let reason = decision.reason;
        Err(Rejection::Forbidden(crate::authz::Denial::Policy {
            reason,
        }))
    }

    /// Returns how a route's requests name their tenant: the route's own
    /// setting, else the top-level one.
    fn tenant_source<'a>(&'a self, route: &'a RouteConfig) -> Option<&'a TenantFrom> {
        route
            .tenant_from
            .as_ref()
            .or(self.config.tenant_from.as_ref())
    }

    /// Checks that the credential belongs to the addressed tenant, and that
    /// its tenant claim agrees with its issuer's tenant.
    fn bind_tenant(
        &self,
        context: &mut Context,
        identity: &Identity,
        route: &RouteConfig,
    ) -> Result<(), Rejection> {
        let addressed = self.tenant_source(route).and(context.tenant.as_deref());
        if crate::tenancy::bind(identity, addressed).is_err() {
            tracing::warn!(
                route.id = route.id.as_str(),
                tenant.addressed = addressed.map(|t| t.id.as_str()),
                tenant.credential = identity.tenant.as_deref(),
                tenant.claimed = identity.tenant_claim.as_deref(),
                issuer.url = identity.issuer.as_str(),
                identity.subject = identity.subject.as_deref(),
                client.ip = %context.client_ip,
                reason = "tenant_mismatch",
                "credential used outside its tenant"
            );
            return Err(Rejection::TenantMismatch);
        }
        if context.tenant.is_none() {
            context.tenant = identity
                .tenant
                .as_ref()
                .and_then(|id| self.config.tenants.get(id))
                .cloned();
        }
        Ok(())
    }

    /// Counts the request against the rate-limit policies of `stage`, and
    /// adds the outcome to that of an earlier stage.
    async fn limit(
        &self,
        context: &mut Context,
        route: &RouteConfig,
        stage: LimitStage,
    ) -> Result<(), Rejection> {
        let tenant_policies = context
            .tenant
            .as_ref()
            .map(|t| t.rate_limits.as_slice())
            .unwrap_or_default();
        // A tenant found only from the credential had none of its policies
        // counted before authentication.
        let tenant_stage = match stage {
            LimitStage::AfterAuthentication {
                tenant_known: false,
            } => LimitStage::All,
            other => other,
        };
        let policies: Vec<_> = self
            .config
            .global_rate_limits
            .iter()
            .filter(|policy| stage.includes(policy))
            .chain(tenant_policies.iter().filter(|p| tenant_stage.includes(p)))
            .chain(route.rate_limits.iter().filter(|p| stage.includes(p)))
            .collect();
        if policies.is_empty() {
            return Ok(());
        }
        let inputs = KeyInputs {
            client_ip: context.client_ip,
            identity: context.identity.as_deref(),
            route_id: &route.id,
            tenant: context.tenant.as_ref().map(|t| t.id.as_str()),
        };
        let checked = self
            .limiter
            .check(&policies, &inputs, route.on_store_failure)
            .await;
        let Some(mut outcome) = checked else {
            return Ok(());
        };
        if let Some(earlier) = context.limit.take() {
            outcome = self.limiter.combine(earlier, outcome, &inputs);
        }
        let verdict = outcome.verdict;
        context.limit = Some(outcome);
        match verdict {
            Verdict::Admitted => Ok(()),
            Verdict::Limited { retry_after } => Err(Rejection::RateLimited { retry_after }),
            Verdict::Concurrency => Err(Rejection::ConcurrencyLimited),
            Verdict::StoreUnavailable { retry_after } => {
                Err(Rejection::LimitStoreUnavailable { retry_after })
            }
        }
    }

    async fn forward(
        &self,
        context: &Context,
        mut parts: Parts,
        body: RequestBody,
        route: &RouteConfig,
        normalized: Normalized,
        body_limit: u64,
    ) -> Result<Response<Body>, Rejection> {
        if let Some(tenant) = &context.tenant {
            for (name, value) in &tenant.headers {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(identity) = &context.identity {
            self.config
                .identity_headers
                .insert(&mut parts.headers, identity);
            let api_key = identity.issuer == crate::apikey::ISSUER;
            if api_key || !self.config.authentication.forward_token {
                parts.headers.remove(header::AUTHORIZATION);
            }
        }
        // An API key is a credential of the gateway, never of the upstream.
        if let Some(name) = self
            .config
            .api_keys
            .as_ref()
            .and_then(|k| k.header.as_ref())
        {
            parts.headers.remove(name);
        }
        parts.headers.insert(
            header::HeaderName::from_static("x-forwarded-for"),
            normalized.forwarded_for,
        );
        let proto = if normalized.tls { "https" } else { "http" };
        parts.headers.insert(
            header::HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(proto),
        );

        let masked = route.mask.is_some() || context.obligations.is_some();
        if masked {
            crate::mask::response::prepare_request(&mut parts.headers);
        }
        let method = parts.method.clone();

        let exceeded = Arc::new(AtomicBool::new(false));
        let read_failed = Arc::new(AtomicBool::new(false));
        let body = match body {
            RequestBody::Streaming(body) => {
                let limited =
                    LimitedBody::new(body, body_limit, exceeded.clone(), read_failed.clone());
                http_body_util::BodyExt::boxed(limited)
            }
            RequestBody::Buffered(bytes) => crate::pipeline::body::full(bytes),
        };
        let version = parts.version;
        let result = self
            .upstreams
            .send(&route.upstream, parts, &normalized.path, body)
            .await;
        match result {
            // The client hears its own protocol version, whatever the
            // upstream spoke (an HTTP/1.0 upstream must not downgrade it).
            Ok(mut response) => {
                *response.version_mut() = version;
                if masked || context.policy_obligations {
                    self.mask_response(context, route, &method, response).await
                } else {
                    Ok(response)
                }
            }
            Err(_) if exceeded.load(Ordering::Acquire) => Err(Rejection::PayloadTooLarge),
            // The client's body failed, not the upstream: reject it as the
            // client's error and keep it out of the upstream error metrics.
            Err(_) if read_failed.load(Ordering::Acquire) => Err(Rejection::BadRequest {
                reason: "request_invalid_body",
            }),
            Err(error) => Err(self.upstream_rejection(route, error)),
        }
    }

    fn upstream_rejection(&self, route: &RouteConfig, error: UpstreamError) -> Rejection {
        let upstream = &route.upstream.name;
        let label = Arc::new(upstream.clone());
        self.metrics.upstream_error(&label, error.kind());
        tracing::warn!(upstream.name = upstream.as_str(), route.id = route.id.as_str(), error = %error, "upstream request failed");
        match error {
            UpstreamError::Timeout => Rejection::UpstreamTimeout,
            _ => Rejection::UpstreamUnavailable,
        }
    }

    /// Applies the response header policy and the RateLimit fields.
    fn protect(
        &self,
        context: &Context,
        mut response: Response<Body>,
        connection: Connection,
    ) -> Response<Body> {
        let sensitive = context.route.as_ref().is_some_and(|r| r.sensitive);
        crate::protect::apply(
            &self.config.response_headers,
            response.headers_mut(),
            connection.tls,
            sensitive,
        );
        if let Some(outcome) = &context.limit {
            crate::ratelimit::headers::apply_all(response.headers_mut(), &outcome.header_items());
        }
        response
    }

    /// Writes the access log line and counts the request.
    fn record(&self, context: &Context, response: &Response<Body>, reason: Option<&'static str>) {
        let elapsed = context.started.elapsed();
        let route_label = context
            .route
            .as_ref()
            .and_then(|r| self.labels.routes.get(&r.id))
            .unwrap_or(&self.labels.no_route);
        let method_label = self
            .labels
            .methods
            .iter()
            .find(|(m, _)| *m == context.method)
            .map_or(&self.labels.other_method, |(_, label)| label);
        let tenant_label = context
            .tenant
            .as_ref()
            .and_then(|t| self.labels.tenants.get(&t.id))
            .unwrap_or(&self.labels.no_route);
        let status = response.status().as_u16();
        self.metrics.request(
            route_label,
            tenant_label,
            method_label,
            status,
            elapsed.as_secs_f64(),
        );
        if !self.config.server.access_log {
            return;
        }
        let subject = context.identity.as_ref().and_then(|i| i.subject.as_deref());
        let tenant = context.tenant.as_ref().map(|t| t.id.as_str());
        let route_id = context.route.as_ref().map(|r| r.id.as_str());
        let path = context.path.as_deref();
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if reason.is_some() {
            tracing::info!(request.id = context.request_id.as_str(), http.method = %context.method, route.id = route_id, url.path = path, http.status = status, duration_ms, client.ip = %context.client_ip, tenant.id = tenant, identity.subject = subject, reason, "request denied");
        } else {
            tracing::info!(request.id = context.request_id.as_str(), http.method = %context.method, route.id = route_id, url.path = path, http.status = status, duration_ms, client.ip = %context.client_ip, tenant.id = tenant, identity.subject = subject, "request served");
        }
    }
}

/// A request body as it goes upstream: streamed, or already read because
/// a policy needed it.
enum RequestBody {
    Streaming(Incoming),
    Buffered(bytes::Bytes),
}

/// Reads a whole request body for a policy that reads it, within the
/// route's limit (413 over it, 400 when the client's body breaks off).
async fn buffer_body(body: RequestBody, limit: u64) -> Result<bytes::Bytes, Rejection> {
    let body = match body {
        RequestBody::Streaming(body) => body,
        RequestBody::Buffered(bytes) => return Ok(bytes),
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Rejection::PayloadTooLarge)
        }
        Err(_) => Err(Rejection::BadRequest {
            reason: "request_invalid_body",
        }),
    }
}

/// Rejects a request whose declared `Content-Length` is over the limit
/// before any byte is forwarded. Chunked bodies are counted as they stream.
fn check_declared_length(parts: &Parts, limit: u64) -> Result<(), Rejection> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(Rejection::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// Point of the pipeline at which rate-limit policies are checked. On a
/// route that requires authentication, the policies keyed by client IP
/// alone are checked before it and the others after it (see
/// [`RateLimitPolicy::before_authentication`]).
///
/// `tenant_known` is true when the tenant was found before authentication.
/// Only then are its policies, and policies keyed by tenant, counted
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LimitStage {
    BeforeAuthentication { tenant_known: bool },
    AfterAuthentication { tenant_known: bool },
    All,
}

impl LimitStage {
    fn includes(self, policy: &RateLimitPolicy) -> bool {
        match self {
            LimitStage::BeforeAuthentication { tenant_known } => {
                policy.before_authentication(tenant_known)
            }
            LimitStage::AfterAuthentication { tenant_known } => {
                !policy.before_authentication(tenant_known)
            }
            LimitStage::All => true,
        }
    }
}
