//! [`ApiError`]: every failure bff answers with, and [`render`], the one function that writes
//! an error body: OpenAI-shaped JSON `{"error":{"message","type","param","code","request_id"}}`.
//!
//! Handlers return errors; the request-context middleware renders every error response, bff's
//! own and actix's (404, 405, 413, payload errors), through [`render`] with the request id.
//! Caller-caused upstream 4xx keep LiteLLM's words (the caller needs "context length
//! exceeded"); 5xx and dependency failures say only what failed, and the detail goes to the log
//! under the same request id.

use crate::access::AccessError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use bff_auth::AuthError;
use bff_providers::{ErrorKind, InvalidParameter, ProviderError, UnsupportedParameter};
use bff_quota::QuotaError;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::time::Duration;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Authentication or authorization failed (400 unsupported field, 401, 403, 503).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// LiteLLM failed (mapped per kind).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The request body or query is not what the route expects.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The offending field, if one.
        param: Option<String>,
    },
    /// A chat parameter breaks its documented type.
    #[error("invalid parameter {0}")]
    InvalidParameter(#[from] InvalidParameter),
    /// A body field that is neither an OpenAI parameter nor allowed for the caller.
    #[error(transparent)]
    UnsupportedParameter(#[from] UnsupportedParameter),
    /// A usage limit refused the request (429), or could not be checked (503).
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The body is not declared as JSON.
    #[error("send the request body as JSON with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// A feature needs a dependency that is not configured.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// The usage store cannot be read (Redis down); the reports say so rather than guess.
    #[error("the usage store is unavailable: {0}")]
    StoreUnavailable(String),
    /// A dependency bff reads from (Langfuse, Helicone) failed.
    #[error("{dependency} could not be read: {reason}")]
    Dependency {
        /// Which dependency.
        dependency: &'static str,
        /// Why (logged, never shown to the caller).
        reason: String,
    },
}

/// What error bodies need to know of the server (app data of the request-context middleware).
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext {
    /// Largest request body, for the 413 message.
    pub max_body_bytes: usize,
}

/// What an error body says, before the request id is added.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorParts<'a> {
    /// For the caller.
    pub message: Cow<'a, str>,
    /// OpenAI's `type`.
    pub error_type: &'static str,
    /// A stable code.
    pub code: &'static str,
    /// The request field it is about.
    pub param: Option<Cow<'a, str>>,
}

/// Renders an error body: the one place its shape is written.
pub fn render(parts: &ErrorParts<'_>, request_id: &str) -> Value {
    json!({"error": {
        "message": parts.message,
        "type": parts.error_type,
        "param": parts.param,
        "code": parts.code,
        "request_id": request_id,
    }})
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Parameter(error) => Self::UnsupportedParameter(error),
            AccessError::Auth(error) => Self::Auth(error),
        }
    }
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::BadRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// What the body says.
    pub fn parts(&self) -> ErrorParts<'_> {
        match self {
            Self::Auth(error) => auth_parts(error),
            Self::Provider(error) => provider_parts(error),
            Self::BadRequest { message, param } => ErrorParts {
                message: message.into(),
                error_type: "invalid_request_error",
                code: "invalid_request",
                param: param.as_deref().map(Cow::Borrowed),
            },
            Self::InvalidParameter(error) => ErrorParts {
                message: self.to_string().into(),
                error_type: "invalid_request_error",
                code: "invalid_value",
                param: Some(error.param.as_str().into()),
            },
            Self::UnsupportedParameter(error) => ErrorParts {
                message: error.to_string().into(),
                error_type: "invalid_request_error",
                code: "unsupported_parameter",
                param: Some(error.0.as_str().into()),
            },
            Self::Quota(error) => ErrorParts {
                message: error.to_string().into(),
                error_type: match error {
                    QuotaError::RateLimited { .. } => "rate_limit_error",
                    QuotaError::BudgetSpent { .. } => "insufficient_quota",
                    QuotaError::Unavailable(_) => "service_unavailable_error",
                },
                code: match error {
                    QuotaError::RateLimited { .. } => "rate_limit_exceeded",
                    QuotaError::BudgetSpent { .. } => "insufficient_quota",
                    QuotaError::Unavailable(_) => "quota_unavailable",
                },
                param: None,
            },
            Self::UnsupportedMediaType => ErrorParts {
                message: self.to_string().into(),
                error_type: "invalid_request_error",
                code: "unsupported_media_type",
                param: None,
            },
            Self::NotConfigured(message) => ErrorParts {
                message: (*message).into(),
                error_type: "service_unavailable_error",
                code: "not_configured",
                param: None,
            },
            Self::StoreUnavailable(_) => ErrorParts {
                message: "the usage store (Redis) is unavailable; requests are still served and counted, and will show here once it is back".into(),
                error_type: "service_unavailable_error",
                code: "usage_store_unavailable",
                param: None,
            },
            Self::Dependency { dependency, .. } => ErrorParts {
                message: format!("{dependency} could not be read; the server log has the details for this request id").into(),
                error_type: "upstream_error",
                code: "dependency_failed",
                param: None,
            },
        }
    }

    /// Whole seconds to wait before retrying, for 429s: the same number the body says.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Provider(ProviderError {
                kind: ErrorKind::RateLimited { retry_after, .. },
                ..
            }) => Some(bff_quota::retry_seconds(
                retry_after.unwrap_or(Duration::from_secs(1)),
            )),
            Self::Quota(error) => error.retry_after_seconds(),
            _ => None,
        }
    }

    /// Whether the detail must stay in the log: a failure of bff or a dependency, not the
    /// caller's doing.
    pub fn is_server_side(&self) -> bool {
        self.status_code().is_server_error()
    }
}

/// The body of an [`AuthError`].
pub fn auth_parts(error: &AuthError) -> ErrorParts<'_> {
    ErrorParts {
        message: error.to_string().into(),
        error_type: error.error_type(),
        code: error.code(),
        param: error.param().map(Cow::Borrowed),
    }
}

fn provider_parts(error: &ProviderError) -> ErrorParts<'_> {
    let (error_type, code) = match &error.kind {
        ErrorKind::BadRequest { .. } => ("invalid_request_error", "upstream_bad_request"),
        ErrorKind::UnknownModel { .. } => ("invalid_request_error", "model_not_found"),
        ErrorKind::RateLimited { .. } => ("rate_limit_error", "rate_limited"),
        ErrorKind::UpstreamTimeout { .. } | ErrorKind::DeadlineExceeded { .. } => {
            ("timeout_error", "upstream_timeout")
        }
        ErrorKind::AuthRejected { .. } => ("upstream_error", "upstream_auth_rejected"),
        ErrorKind::Unavailable { .. } => ("service_unavailable_error", "upstream_unavailable"),
        _ => ("upstream_error", error.kind.label()),
    };
    let message: Cow<'_, str> = match &error.kind {
        // The caller's own doing: LiteLLM's words help them fix it.
        ErrorKind::BadRequest { message, .. }
        | ErrorKind::UnknownModel { message, .. }
        | ErrorKind::RateLimited { message, .. } => message.into(),
        ErrorKind::AuthRejected { .. } => {
            "the model gateway rejected bff's credentials; the operator must check LITELLM_API_KEY"
                .into()
        }
        ErrorKind::UpstreamTimeout { .. } | ErrorKind::DeadlineExceeded { .. } => {
            "the model did not answer in time".into()
        }
        ErrorKind::Unavailable { .. } => "the model gateway is unavailable".into(),
        _ => "the model gateway failed; the server log has the details for this request id".into(),
    };
    ErrorParts {
        message,
        error_type,
        code,
        param: None,
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
            Self::BadRequest { .. } | Self::InvalidParameter(_) | Self::UnsupportedParameter(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Quota(QuotaError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Dependency { .. } => StatusCode::BAD_GATEWAY,
            Self::NotConfigured(_) | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Status and headers only: the body is rendered by the request-context middleware, which
    /// knows the request id.
    fn error_response(&self) -> HttpResponse {
        let mut response = match self {
            Self::Auth(error) => return error.error_response(),
            _ => HttpResponse::build(self.status_code()),
        };
        if let Some(seconds) = self.retry_after()
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.insert_header((header::RETRY_AFTER, value));
        }
        if let Self::Quota(error) = self
            && let Some(headers) = error.headers()
        {
            for pair in headers.pairs() {
                response.insert_header(pair);
            }
        }
        response.finish()
    }
}

/// The body for a status bff did not produce itself (actix's 404, 405, 413, payload errors).
/// `detail` is actix's own text for a 400, which says what is wrong with the payload.
pub(crate) fn generic_parts(
    status: StatusCode,
    detail: Option<String>,
    max_body_bytes: usize,
) -> ErrorParts<'static> {
    let (message, error_type, code): (String, _, _) = match status.as_u16() {
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
            detail.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_lowercase()
            }),
            "invalid_request_error",
            "invalid_request",
        ),
        _ => (
            "internal error; the server log has the details for this request id".into(),
            "server_error",
            "internal_error",
        ),
    };
    ErrorParts {
        message: message.into(),
        error_type,
        code,
        param: None,
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
    fn server_side_failures_keep_their_detail_out_of_the_body() {
        let secret_detail = "connection refused by 10.0.0.7:4000 (internal host)";
        for kind in [
            ErrorKind::UpstreamFailure {
                status: 500,
                message: secret_detail.into(),
            },
            ErrorKind::Unavailable {
                reason: secret_detail.into(),
            },
            ErrorKind::Protocol {
                reason: secret_detail.into(),
            },
        ] {
            let error = provider(kind);
            assert!(error.is_server_side());
            let body = render(&error.parts(), "req-1").to_string();
            assert!(!body.contains("10.0.0.7"), "{body}");
        }
        let caller = provider(ErrorKind::BadRequest {
            status: 400,
            message: "context length exceeded".into(),
        });
        assert!(!caller.is_server_side());
        assert_eq!(caller.parts().message, "context length exceeded");
        let rendered = render(&caller.parts(), "req-9");
        assert_eq!(rendered["error"]["request_id"], "req-9");
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
        let parts = error.parts();
        assert_eq!(parts.code, "upstream_auth_rejected");
        assert!(parts.message.contains("LITELLM_API_KEY"));
    }
}
