//! Every way the gateway can end a request itself, and the one function
//! that turns each into a response: an RFC 9457 problem details body with
//! a stable reason code, plus the challenge or retry headers the standards
//! ask for. Causes stay in the logs; the client gets a fixed short text.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::authn::AuthnError;
use crate::authz::Denial;
use crate::pipeline::body::{full, Body};

/// A request the gateway ends without a successful upstream response.
#[derive(Debug)]
pub enum Rejection {
    /// Malformed or ambiguous request (framing, path); the connection is
    /// closed after the response.
    BadRequest {
        reason: &'static str,
    },
    NotFound,
    MethodNotAllowed {
        allow: String,
    },
    PayloadTooLarge,
    Unauthenticated(AuthnError),
    /// The credential verified, but it was revoked.
    Revoked,
    /// The presented API key was not accepted.
    ApiKey(crate::apikey::KeyError),
    Forbidden(Denial),
    /// The credential belongs to another tenant than the one addressed.
    TenantMismatch,
    /// The authentication behind the token is too weak or too old for the
    /// route (RFC 9470).
    StepUpRequired(crate::authz::step_up::Insufficient),
    RateLimited {
        retry_after: Duration,
    },
    /// Every concurrency slot of the caller's key is taken.
    ConcurrencyLimited,
    /// The shared rate-limit store is unavailable and the route denies
    /// rather than limit locally.
    LimitStoreUnavailable {
        retry_after: Duration,
    },
    UpstreamUnavailable,
    UpstreamTimeout,
    /// The request's audit record could not be written and the audit log
    /// denies on failure.
    AuditUnavailable,
    /// The upstream response could not be masked on a route whose
    /// `mask.on_error` is `block`.
    ResponseUnmaskable,
    /// A fault inside the gateway; details are logged, never sent.
    Internal,
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::BadRequest { reason } => reason,
            Rejection::NotFound => "route_not_found",
            Rejection::MethodNotAllowed { .. } => "method_not_allowed",
            Rejection::PayloadTooLarge => "body_too_large",
            Rejection::Unauthenticated(error) => error.reason(),
            Rejection::ApiKey(error) => error.reason(),
            Rejection::Revoked => "token_revoked",
            Rejection::Forbidden(denial) => denial.reason(),
            Rejection::TenantMismatch => "tenant_mismatch",
            Rejection::StepUpRequired(_) => "insufficient_user_authentication",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::ConcurrencyLimited => "concurrency_limited",
            Rejection::LimitStoreUnavailable { .. } => "rate_limit_store_unavailable",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
            Rejection::AuditUnavailable => "audit_unavailable",
            Rejection::ResponseUnmaskable => "response_unmaskable",
            Rejection::Internal => "internal_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Unauthenticated(
                AuthnError::KeysUnavailable | AuthnError::IntrospectionUnavailable,
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Unauthenticated(_) | Rejection::StepUpRequired(_) => {
                StatusCode::UNAUTHORIZED
            }
            Rejection::ApiKey(crate::apikey::KeyError::TooManyAttempts(_)) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Rejection::ApiKey(crate::apikey::KeyError::Unavailable) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Rejection::ApiKey(crate::apikey::KeyError::Ambiguous) => StatusCode::BAD_REQUEST,
            Rejection::ApiKey(_) | Rejection::Revoked => StatusCode::UNAUTHORIZED,
            Rejection::Forbidden(_) | Rejection::TenantMismatch => StatusCode::FORBIDDEN,
            Rejection::RateLimited { .. } | Rejection::ConcurrencyLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Rejection::LimitStoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::UpstreamUnavailable | Rejection::ResponseUnmaskable => {
                StatusCode::BAD_GATEWAY
            }
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the fixed text sent as `detail`, which never depends on the
    /// request.
    fn detail(&self) -> &'static str {
        match self {
            Rejection::BadRequest { .. } => "the request is malformed or ambiguous",
            Rejection::NotFound => "no route matches this path",
            Rejection::MethodNotAllowed { .. } => "the route does not allow this method",
            Rejection::PayloadTooLarge => "the request body exceeds the route's limit",
            Rejection::Unauthenticated(AuthnError::Missing) => "a bearer token is required",
            Rejection::Unauthenticated(AuthnError::MalformedHeader) => {
                "the Authorization header is not a single Bearer token"
            }
            Rejection::Unauthenticated(AuthnError::KeysUnavailable) => {
                "the token issuer's keys are unavailable; retry later"
            }
            Rejection::Unauthenticated(AuthnError::IntrospectionUnavailable) => {
                "the token issuer's introspection endpoint is unavailable; retry later"
            }
            Rejection::Unauthenticated(_) => "the access token is invalid",
            Rejection::ApiKey(crate::apikey::KeyError::TooManyAttempts(_)) => {
                "too many failed API key attempts from this address; retry after the time in Retry-After"
            }
            Rejection::ApiKey(crate::apikey::KeyError::Unavailable) => {
                "the API keys are not loaded yet; retry later"
            }
            Rejection::ApiKey(crate::apikey::KeyError::Ambiguous) => {
                "send one credential: one Authorization header or one API key header"
            }
            Rejection::ApiKey(_) => "the API key is invalid, expired or revoked",
            Rejection::Revoked => "the access token was revoked",
            Rejection::Forbidden(Denial::InsufficientScope { .. }) => {
                "the access token lacks a required scope"
            }
            Rejection::Forbidden(Denial::Policy { .. }) => {
                "the route's policy does not allow this request"
            }
            Rejection::Forbidden(_) => "the caller may not use this route",
            Rejection::TenantMismatch => "the credential belongs to another tenant",
            Rejection::StepUpRequired(_) => "a stronger or more recent authentication is required",
            Rejection::RateLimited { .. } => {
                "rate limit exceeded; retry after the time in Retry-After"
            }
            Rejection::ConcurrencyLimited => {
                "too many requests of this caller are in progress; retry after the time in Retry-After"
            }
            Rejection::LimitStoreUnavailable { .. } => {
                "the rate limit store is unavailable; retry after the time in Retry-After"
            }
            Rejection::UpstreamUnavailable => "the upstream service failed to respond",
            Rejection::UpstreamTimeout => "the upstream service timed out",
            Rejection::AuditUnavailable => {
                "the request could not be recorded in the audit log; retry later"
            }
            Rejection::ResponseUnmaskable => {
                "the upstream response could not be masked for this caller"
            }
            Rejection::Internal => "",
        }
    }

    /// Builds the response the client receives.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        if matches!(self, Rejection::Internal) {
            let mut response = Response::new(full(Bytes::from_static(b"internal server error\n")));
            *response.status_mut() = status;
            let plain = HeaderValue::from_static("text/plain; charset=utf-8");
            response.headers_mut().insert(header::CONTENT_TYPE, plain);
            return response;
        }
        let body = serde_json::json!({
            "type": format!("urn:portcullis:reason:{}", self.reason()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.detail(),
            "reason": self.reason(),
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.add_standard_headers(headers);
        response
    }

    fn add_standard_headers(&self, headers: &mut http::HeaderMap) {
        match self {
            Rejection::BadRequest { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Rejection::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Rejection::Unauthenticated(error) => {
                headers.insert(header::WWW_AUTHENTICATE, challenge(error));
                if matches!(
                    error,
                    AuthnError::KeysUnavailable | AuthnError::IntrospectionUnavailable
                ) {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                }
            }
            Rejection::ApiKey(crate::apikey::KeyError::Unavailable) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Rejection::ApiKey(crate::apikey::KeyError::TooManyAttempts(wait)) => {
                headers.insert(header::RETRY_AFTER, retry_after(*wait));
            }
            Rejection::Revoked => {
                let challenge = "Bearer realm=\"portcullis\", error=\"invalid_token\"";
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            Rejection::ApiKey(_) => {
                let challenge = HeaderValue::from_static("ApiKey realm=\"portcullis\"");
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
            Rejection::StepUpRequired(insufficient) => {
                let mut value = String::from("Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\"");
                if let Some(acr_values) = &insufficient.acr_values {
                    value.push_str(&format!(", acr_values=\"{acr_values}\""));
                }
                if let Some(max_age) = insufficient.max_age {
                    value.push_str(&format!(", max_age={max_age}"));
                }
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Rejection::Forbidden(Denial::InsufficientScope { required }) => {
                let value = format!("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{required}\"");
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Rejection::RateLimited { retry_after: wait }
            | Rejection::LimitStoreUnavailable { retry_after: wait } => {
                headers.insert(header::RETRY_AFTER, retry_after(*wait));
            }
            Rejection::ConcurrencyLimited => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
    }
}

/// Builds a `Retry-After` value: whole seconds, rounded up, at least 1.
pub fn retry_after(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

/// Builds the `WWW-Authenticate` challenge of RFC 6750 section 3. A
/// request with no credential gets no error code (section 3.1).
fn challenge(error: &AuthnError) -> HeaderValue {
    HeaderValue::from_static(match error {
        AuthnError::Missing
        | AuthnError::KeysUnavailable
        | AuthnError::IntrospectionUnavailable => "Bearer realm=\"portcullis\"",
        AuthnError::MalformedHeader => "Bearer realm=\"portcullis\", error=\"invalid_request\"",
        _ => "Bearer realm=\"portcullis\", error=\"invalid_token\"",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::jwt::TokenError;
    use http_body_util::BodyExt;

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn expired_token_problem_body() {
        let response =
            Rejection::Unauthenticated(AuthnError::Token(TokenError::Expired)).into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"portcullis\", error=\"invalid_token\""
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(
            body_text(response).await,
            r#"{"detail":"the access token is invalid","reason":"token_expired","status":401,"title":"Unauthorized","type":"urn:portcullis:reason:token_expired"}"#
        );
    }

    #[tokio::test]
    async fn missing_scope_challenge_names_scope() {
        let denial = Denial::InsufficientScope {
            required: "read:users".into(),
        };
        let response = Rejection::Forbidden(denial).into_response();
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"read:users\""
        );
    }

    #[tokio::test]
    async fn rate_limited_rounds_retry_after_up() {
        let response = Rejection::RateLimited {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "2");
    }

    #[tokio::test]
    async fn step_up_challenge_names_requirements() {
        let insufficient = crate::authz::step_up::Insufficient {
            acr_values: Some("gold platinum".into()),
            max_age: Some(600),
        };
        let response = Rejection::StepUpRequired(insufficient).into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"gold platinum\", max_age=600"
        );
    }

    #[tokio::test]
    async fn introspection_outage_is_retryable() {
        let response =
            Rejection::Unauthenticated(AuthnError::IntrospectionUnavailable).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "5");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"portcullis\""
        );
        assert_eq!(
            body_text(response).await,
            r#"{"detail":"the token issuer's introspection endpoint is unavailable; retry later","reason":"introspection_unavailable","status":503,"title":"Service Unavailable","type":"urn:portcullis:reason:introspection_unavailable"}"#
        );
    }

    #[tokio::test]
    async fn inactive_token_is_invalid_token() {
        let response = Rejection::Unauthenticated(AuthnError::Inactive).into_response();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"portcullis\", error=\"invalid_token\""
        );
        assert!(response.headers().get("retry-after").is_none());
    }

    #[tokio::test]
    async fn unmaskable_response_is_bad_gateway() {
        let response = Rejection::ResponseUnmaskable.into_response();
        assert_eq!(response.status(), 502);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(
            body_text(response).await,
            r#"{"detail":"the upstream response could not be masked for this caller","reason":"response_unmaskable","status":502,"title":"Bad Gateway","type":"urn:portcullis:reason:response_unmaskable"}"#
        );
    }

    #[tokio::test]
    async fn internal_error_is_plain() {
        let response = Rejection::Internal.into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(body_text(response).await, "internal server error\n");
    }
}
