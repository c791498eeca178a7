//! Audit stage, around the others: every request gets a random request id
//! (sent upstream and downstream as `x-request-id`), and once the response
//! head is known, one audit record of its decision. Under `on_failure:
//! deny` a request whose record fails becomes 503 `audit_unavailable`.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Response;

use super::{Connection, Context, Gateway};
use crate::audit::{Decision, Entry};
use crate::pipeline::body::Body;
use crate::pipeline::reject::Rejection;

/// Header of the request id, upstream and in the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Decision facts of a request, taken from its rejection before the
/// rejection becomes a response.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verdict {
    /// Reason code of a rejection; `None` for a forwarded request.
    pub reason: Option<&'static str>,
    decision: Decision,
    decided_by: DecidedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecidedBy {
    /// No policy or limit: authentication, routing or the upstream.
    Other,
    /// A rate limit or quota.
    Limit,
    /// The route's Rego rule.
    Policy,
}

impl Verdict {
    pub(super) fn allowed() -> Verdict {
        Verdict {
            reason: None,
            decision: Decision::Allow,
            decided_by: DecidedBy::Policy,
        }
    }

    pub(super) fn rejected(rejection: &Rejection) -> Verdict {
        let (decision, decided_by) = match rejection {
            // The gateway allowed these; the upstream failed.
            Rejection::UpstreamUnavailable | Rejection::UpstreamTimeout => {
                (Decision::Allow, DecidedBy::Policy)
            }
            Rejection::RateLimited { .. } => (Decision::Deny, DecidedBy::Limit),
            Rejection::Forbidden(crate::authz::Denial::Policy { .. }) => {
                (Decision::Deny, DecidedBy::Policy)
            }
            _ => (Decision::Deny, DecidedBy::Other),
        };
        Verdict {
            reason: Some(rejection.reason()),
            decision,
            decided_by,
        }
    }
}

/// Sets the request id on a request going upstream. The client's own value
/// is removed when the request arrives, so policies never see it and a
/// client cannot give its request another request's id. The gateway's id is
/// set only here, after the policy decision, because an id in every policy
/// input would make each input unique and defeat the decision cache.
pub(super) fn set_request_id(headers: &mut HeaderMap, request_id: &str) {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
}

impl Gateway {
    /// Rejects a request before any stage with a side effect while the
    /// audit log is failing under `on_failure: deny`.
    pub(super) fn audit_admit(&self) -> Result<(), Rejection> {
        match &self.audit {
            Some(trail) => trail.admit().map_err(|_| Rejection::AuditUnavailable),
            None => Ok(()),
        }
    }

    /// Writes the request's audit record and adds `x-request-id` to the
    /// response. Returns the response to send (503 when the record failed
    /// under `deny`) and its reason code.
    pub(super) async fn audit(
        &self,
        context: &Context,
        response: Response<Body>,
        verdict: Verdict,
        connection: Connection,
    ) -> (Response<Body>, Option<&'static str>) {
        let (mut response, reason) = match &self.audit {
            Some(trail) => {
                let entry = self.audit_entry(context, &response, verdict);
                match trail.record(entry).await {
                    Ok(()) => (response, verdict.reason),
                    Err(_) => {
                        let rejection = Rejection::AuditUnavailable;
                        let reason = rejection.reason();
                        self.metrics.denial(reason);
                        let response = self.protect(context, rejection.into_response(), connection);
                        (response, Some(reason))
                    }
                }
            }
            None => (response, verdict.reason),
        };
        if let Ok(value) = HeaderValue::from_str(&context.request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        (response, reason)
    }

    fn audit_entry<'a>(
        &self,
        context: &'a Context,
        response: &Response<Body>,
        verdict: Verdict,
    ) -> Entry<'a> {
        let identity = context.identity.as_deref();
        let route = context.route.as_deref();
        let policy = match verdict.decided_by {
            DecidedBy::Limit => context.limit.as_ref().and_then(|outcome| {
                let report = outcome.reports.iter().find(|r| !r.decision.allowed)?;
                Some(report.policy.name.as_str())
            }),
            DecidedBy::Policy => route.and_then(|r| r.require.policy.as_deref()),
            DecidedBy::Other => None,
        };
        Entry {
            request_id: &context.request_id,
            tenant: context.tenant.as_ref().map(|t| t.id.as_str()),
            route: route.map(|r| r.id.as_str()),
            subject: identity.and_then(|i| i.subject.as_deref()),
            client_id: identity.and_then(|i| i.client_id.as_deref()),
            decision: verdict.decision,
            reason: verdict.reason.unwrap_or("allowed"),
            status: response.status().as_u16(),
            latency: context.started.elapsed(),
            policy,
        }
    }
}
