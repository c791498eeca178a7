//! The mask stage, after forward: rewrites personal and payment data in the
//! upstream response. A route's `mask` section applies unless the caller has
//! the route's unmask scope, and a policy decision's obligations apply to
//! every caller. A response that cannot be masked is rejected or, under the
//! route's `on_error: pass` and without obligations, sent unmasked and
//! counted.

use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{Method, Response};

use crate::authz::obligations::Obligations;
use crate::authz::policy::POLICY_ERROR;
use crate::mask::config::{OnError, RouteMasking};
use crate::mask::response::{self, Outcome, Unmaskable};
use crate::mask::PseudonymKey;
use crate::pipeline::body::Body;
use crate::pipeline::reject::Rejection;
use crate::pipeline::{Context, Gateway};
use crate::route::config::RouteConfig;
use crate::tenancy::config::TenantFrom;

impl Gateway {
    /// Checks a policy decision's `obligations` before the request goes
    /// upstream, and returns them parsed unless they mask nothing. Invalid
    /// obligations, or a pseudonym field without a pseudonym key for this
    /// request, deny with 403 `policy_error`.
    pub(super) fn accept_obligations(
        &self,
        context: &Context,
        route: &RouteConfig,
        rule: &str,
        value: Option<&serde_json::Value>,
    ) -> Result<Option<Arc<Obligations>>, Rejection> {
        let Some(value) = value else {
            return Ok(None);
        };
        let tenant = context.tenant.as_ref().map(|t| t.id.as_str());
        let obligations = self.obligations.get_or_parse(value).map_err(|error| {
            tracing::warn!(
                route.id = route.id.as_str(),
                policy.rule = rule,
                tenant.id = tenant,
                reason = POLICY_ERROR,
                error = %error,
                "policy returned invalid obligations"
            );
            policy_error()
        })?;

        if obligations.needs_pseudonym_key() && self.pseudonym_key(context).is_none() {
            tracing::warn!(
                route.id = route.id.as_str(),
                policy.rule = rule,
                tenant.id = tenant,
                reason = POLICY_ERROR,
                "policy obligations need a pseudonym key; set pseudonym_key for the tenant or masking.pseudonym_key"
            );
            return Err(policy_error());
        }
        Ok((!obligations.is_empty()).then_some(obligations))
    }

    /// Masks `response` of `route` for the caller in `context`, under the
    /// route's `mask` section and the decision's obligations, and keeps
    /// shared caches from serving it to another caller.
    pub(super) async fn mask_response(
        &self,
        context: &Context,
        route: &RouteConfig,
        method: &Method,
        response: Response<Body>,
    ) -> Result<Response<Body>, Rejection> {
        let unmask = route
            .mask
            .as_ref()
            .is_some_and(|masking| self.may_unmask(context, masking));
        let combined = context
            .obligations
            .as_ref()
            .map(|obligations| obligations.masking(&route.id, route.mask.as_ref(), unmask));
        let masking = match (&combined, &route.mask) {
            (Some(combined), _) => Some(combined.as_ref()),
            (None, Some(masking)) if !unmask => Some(masking),
            _ => None,
        };

        let mut response = match masking {
            Some(masking) => {
                self.mask_for_caller(context, route, masking, method, response)
                    .await?
            }
            None => response,
        };

        response::protect_cache(response.headers_mut(), &self.vary_headers(route));
        Ok(response)
    }

    async fn mask_for_caller(
        &self,
        context: &Context,
        route: &RouteConfig,
        masking: &RouteMasking,
        method: &Method,
        response: Response<Body>,
    ) -> Result<Response<Body>, Rejection> {
        let mask_context = crate::mask::Context {
            pseudonym_key: self.pseudonym_key(context),
            unmask: false,
        };
        let timeout = route.upstream.response_timeout;
        let outcome = response::mask(masking, method, response, &mask_context, timeout).await;

        let label = self.route_label(route);
        match outcome {
            Ok(Outcome::Masked { response, count }) => {
                self.metrics.masked_values(&label, count);
                Ok(response)
            }
            Ok(Outcome::Untouched(response)) => Ok(response),
            Err(unmaskable) => self.handle_unmaskable(route, masking, &label, unmaskable),
        }
    }

    /// Blocks or passes a response that could not be masked. A body that
    /// failed upstream is never passed, because nothing is left to send.
    fn handle_unmaskable(
        &self,
        route: &RouteConfig,
        masking: &RouteMasking,
        label: &Arc<String>,
        unmaskable: Unmaskable,
    ) -> Result<Response<Body>, Rejection> {
        let reason = unmaskable.failure.reason();
        let passed = masking.on_error == OnError::Pass && unmaskable.response.is_some();
        self.metrics.masking_failure(label, reason, passed);
        tracing::warn!(
            route.id = route.id.as_str(),
            reason,
            on_error = if passed { "pass" } else { "block" },
            "response could not be masked"
        );

        match (unmaskable.failure, unmaskable.response) {
            (_, Some(response)) if passed => Ok(response),
            (response::Failure::UpstreamBodyTimeout, _) => Err(Rejection::UpstreamTimeout),
            (response::Failure::UpstreamBodyFailed, _) => Err(Rejection::UpstreamUnavailable),
            _ => Err(Rejection::ResponseUnmaskable),
        }
    }

    fn may_unmask(&self, context: &Context, masking: &RouteMasking) -> bool {
        let Some(scope) = &masking.unmask_scope else {
            return false;
        };
        context
            .identity
            .as_ref()
            .is_some_and(|identity| identity.scopes.iter().any(|s| s == scope))
    }

    /// Returns the tenant's key for a request with a tenant, else the
    /// top-level key. A tenant never falls back to the top-level key, so
    /// pseudonyms cannot be linked across tenants.
    fn pseudonym_key<'a>(&'a self, context: &'a Context) -> Option<&'a PseudonymKey> {
        match &context.tenant {
            Some(tenant) => tenant.pseudonym_key.as_ref(),
            None => self.config.masking.pseudonym_key.as_ref(),
        }
    }

    /// Returns the request headers that decide whether and how a response is
    /// masked: the credential headers, and the tenant header.
    fn vary_headers(&self, route: &RouteConfig) -> Vec<HeaderName> {
        let mut names = vec![header::AUTHORIZATION];
        if let Some(name) = self
            .config
            .api_keys
            .as_ref()
            .and_then(|keys| keys.header.clone())
        {
            names.push(name);
        }
        if let Some(TenantFrom::Header(name)) = self.tenant_source(route) {
            names.push(name.clone());
        }
        names
    }

    fn route_label(&self, route: &RouteConfig) -> Arc<String> {
        self.labels
            .routes
            .get(&route.id)
            .cloned()
            .unwrap_or_else(|| Arc::new(route.id.clone()))
    }
}

fn policy_error() -> Rejection {
    Rejection::Forbidden(crate::authz::Denial::Policy {
        reason: POLICY_ERROR,
    })
}
