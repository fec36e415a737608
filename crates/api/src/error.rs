//! [`ApiError`]: every failure bff answers with, as OpenAI-shaped JSON
//! `{"error":{"message","type","param","code","request_id"}}`. The request id is added by the
//! request-context middleware, which also rewrites any other error body (actix's own 404,
//! 405, 413, payload errors) into this shape.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use bff_auth::AuthError;
use bff_providers::{ErrorKind, ProviderError};
use serde_json::json;
use std::time::Duration;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Authentication or authorization failed (401/403/503).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// LiteLLM failed (mapped per kind).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The request body is not what the route expects.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending field, if one.
        param: Option<&'static str>,
    },
    /// The caller's role may not use this model.
    #[error("model `{0}` is not allowed for your role")]
    ModelNotAllowed(String),
    /// A feature needs a dependency that is not configured.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// A dependency bff reads from (Langfuse, Helicone) failed.
    #[error("{dependency} could not be read: {reason}")]
    Dependency {
        /// Which dependency.
        dependency: &'static str,
        /// Why.
        reason: String,
    },
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param,
        }
    }

    /// The OpenAI-style `type` and `code`.
    fn type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            Self::Auth(error) => (error.error_type(), error.code()),
            Self::Provider(error) => match &error.kind {
                ErrorKind::BadRequest { .. } => ("invalid_request_error", "upstream_bad_request"),
                ErrorKind::UnknownModel { .. } => ("invalid_request_error", "model_not_found"),
                ErrorKind::RateLimited { .. } => ("rate_limit_error", "rate_limited"),
                ErrorKind::UpstreamTimeout { .. } | ErrorKind::DeadlineExceeded { .. } => {
                    ("timeout_error", "upstream_timeout")
                }
                ErrorKind::AuthRejected { .. } => ("upstream_error", "upstream_auth_rejected"),
                ErrorKind::Unavailable { .. } => {
                    ("service_unavailable_error", "upstream_unavailable")
                }
                _ => ("upstream_error", error.kind.label()),
            },
            Self::BadRequest { .. } => ("invalid_request_error", "invalid_request"),
            Self::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            Self::Dependency { .. } => ("upstream_error", "dependency_failed"),
            Self::NotConfigured(_) => ("service_unavailable_error", "not_configured"),
        }
    }

    /// How long to wait before retrying, for 429s.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Provider(ProviderError {
                kind: ErrorKind::RateLimited { retry_after, .. },
                ..
            }) => Some(retry_after.unwrap_or(Duration::from_secs(1))),
            _ => None,
        }
    }

    /// The message shown to the caller. Upstream messages are LiteLLM's own words (no secrets:
    /// LiteLLM never echoes keys); auth messages never contain the credential.
    fn public_message(&self) -> String {
        match self {
            Self::Provider(error) => match &error.kind {
                ErrorKind::AuthRejected { .. } => {
                    "the model gateway rejected bff's credentials; the operator must check LITELLM_API_KEY".into()
                }
                _ => error.kind.to_string(),
            },
            other => other.to_string(),
        }
    }

    /// The JSON body (without the request id, which the middleware adds).
    pub fn body(&self) -> serde_json::Value {
        let (error_type, code) = self.type_and_code();
        let param = match self {
            Self::BadRequest { param, .. } => param.map(str::to_owned),
            Self::ModelNotAllowed(_) => Some("model".into()),
            _ => None,
        };
        json!({"error": {"message": self.public_message(), "type": error_type, "param": param, "code": code}})
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Auth(error) => error.status_code(),
            Self::Provider(error) => match &error.kind {
                ErrorKind::BadRequest { .. } => StatusCode::BAD_REQUEST,
                ErrorKind::UnknownModel { .. } => StatusCode::NOT_FOUND,
                ErrorKind::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::UpstreamTimeout { .. } | ErrorKind::DeadlineExceeded { .. } => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                ErrorKind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::AuthRejected { .. }
                | ErrorKind::UpstreamFailure { .. }
                | ErrorKind::Protocol { .. }
                | ErrorKind::StreamFailed { .. }
                | ErrorKind::StreamTruncated => StatusCode::BAD_GATEWAY,
            },
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Dependency { .. } => StatusCode::BAD_GATEWAY,
            Self::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = match self {
            // bff-auth renders its own errors (and the WWW-Authenticate header).
            Self::Auth(error) => return error.error_response(),
            _ => HttpResponse::build(self.status_code()),
        };
        if let Some(wait) = self.retry_after() {
            let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.insert_header((header::RETRY_AFTER, value));
            }
        }
        response.json(self.body())
    }
}

/// The OpenAI-style `type` and `code` for a status bff did not produce itself (actix's 404,
/// 405, 413, …), used when normalizing error bodies.
pub(crate) fn generic_error(
    status: StatusCode,
    max_body_bytes: usize,
) -> (String, &'static str, &'static str) {
    match status.as_u16() {
        404 => (
            "no route matches this path".into(),
            "invalid_request_error",
            "not_found",
        ),
        405 => (
            "this route does not accept this method".into(),
            "invalid_request_error",
            "method_not_allowed",
        ),
        413 => (
            format!("the request body is larger than {max_body_bytes} bytes"),
            "invalid_request_error",
            "payload_too_large",
        ),
        400..=499 => (
            status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_lowercase(),
            "invalid_request_error",
            "invalid_request",
        ),
        _ => (
            "internal error; see the server log for this request id".into(),
            "server_error",
            "internal_error",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ErrorKind) -> ApiError {
        ApiError::Provider(ProviderError::new(kind, 1))
    }

    #[test]
    fn provider_errors_map_deliberately() {
        let message = String::from("m");
        let cases = [
            (
                ErrorKind::BadRequest {
                    status: 400,
                    message: message.clone(),
                },
                400,
            ),
            (
                ErrorKind::UnknownModel {
                    status: 400,
                    message: message.clone(),
                },
                404,
            ),
            (
                ErrorKind::RateLimited {
                    message: message.clone(),
                    retry_after: None,
                },
                429,
            ),
            (
                ErrorKind::UpstreamTimeout {
                    status: 408,
                    message: message.clone(),
                },
                504,
            ),
            (
                ErrorKind::DeadlineExceeded {
                    limit: "whole call",
                },
                504,
            ),
            (
                ErrorKind::UpstreamFailure {
                    status: 500,
                    message: message.clone(),
                },
                502,
            ),
            (
                ErrorKind::Unavailable {
                    reason: message.clone(),
                },
                503,
            ),
            (
                ErrorKind::AuthRejected {
                    status: 401,
                    message,
                },
                502,
            ),
        ];
        for (kind, status) in cases {
            assert_eq!(
                provider(kind.clone()).status_code().as_u16(),
                status,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let response = provider(ErrorKind::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(1500)),
        })
        .error_response();
        assert_eq!(response.headers().get("retry-after").unwrap(), "2");
    }

    #[test]
    fn upstream_key_rejection_does_not_blame_the_caller() {
        let error = provider(ErrorKind::AuthRejected {
            status: 401,
            message: "Authentication Error".into(),
        });
        let body = error.body();
        assert_eq!(body["error"]["code"], "upstream_auth_rejected");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("LITELLM_API_KEY")
        );
    }
}
