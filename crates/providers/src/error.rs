//! Typed failures of LiteLLM calls, mapped from what LiteLLM 1.108.7 really answers.
//!
//! LiteLLM's error body is `{"error":{"message","type","param","code"}}` where `code` is the HTTP
//! status **as a string** and `param` may be the string `"None"`; it sometimes answers a bare
//! `500 text/plain Internal Server Error`. Classification therefore branches on the HTTP status
//! and treats `type` as advisory.

use serde_json::Value;
use std::time::Duration;

/// Longest upstream message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 2000;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// LiteLLM or the model provider refused the request as invalid (400, 422, other 4xx).
    #[error("bad request (HTTP {status}): {message}")]
    BadRequest {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// LiteLLM refused bff's key (401/403, or 400 `no_db_connection` for an unknown key).
    #[error("LiteLLM rejected bff's key (HTTP {status}): {message}")]
    AuthRejected {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// The model is not served by LiteLLM.
    #[error("unknown model (HTTP {status}): {message}")]
    UnknownModel {
        /// Upstream status (400 from LiteLLM 1.108.7).
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// Rate limited (429), after LiteLLM's and bff's own retries.
    #[error("rate limited (HTTP 429): {message}")]
    RateLimited {
        /// Upstream message.
        message: String,
        /// How long upstream asked to wait (`retry-after` / `llm_provider-retry-after`).
        retry_after: Option<Duration>,
    },
    /// The model provider timed out behind LiteLLM (408 or 504).
    #[error("upstream timeout (HTTP {status}): {message}")]
    UpstreamTimeout {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// LiteLLM or the model provider failed (5xx).
    #[error("upstream failure (HTTP {status}): {message}")]
    UpstreamFailure {
        /// Upstream status.
        status: u16,
        /// Upstream message.
        message: String,
    },
    /// LiteLLM could not be reached (connection refused, DNS, TLS, reset before an answer).
    #[error("LiteLLM is unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// LiteLLM answered something that is not the protocol (unparseable body or event).
    #[error("unexpected answer from LiteLLM: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// bff's own time limit ran out.
    #[error("no answer from LiteLLM in time: {limit}")]
    DeadlineExceeded {
        /// Which limit: `time to first byte`, `whole call`, `idle stream`, `caller deadline`.
        limit: &'static str,
    },
    /// LiteLLM sent a `data: {"error":…}` event after the stream had started.
    #[error("the stream failed after it started: {message}")]
    StreamFailed {
        /// The event's message.
        message: String,
        /// The event's `code` (a string such as `"500"`), if any.
        code: Option<String>,
    },
    /// The stream ended without `data: [DONE]`.
    #[error("the stream ended before `data: [DONE]` (truncated)")]
    StreamTruncated,
}

impl ErrorKind {
    /// The HTTP status LiteLLM answered, when it answered one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::BadRequest { status, .. }
            | Self::AuthRejected { status, .. }
            | Self::UnknownModel { status, .. }
            | Self::UpstreamTimeout { status, .. }
            | Self::UpstreamFailure { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::UpstreamTimeout { .. }
                | Self::UpstreamFailure { .. }
                | Self::Unavailable { .. }
                | Self::StreamFailed { .. }
                | Self::StreamTruncated
        )
    }

    /// A short, stable label for metrics and telemetry.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::AuthRejected { .. } => "auth_rejected",
            Self::UnknownModel { .. } => "unknown_model",
            Self::RateLimited { .. } => "rate_limited",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamFailure { .. } => "upstream_failure",
            Self::Unavailable { .. } => "unavailable",
            Self::Protocol { .. } => "protocol",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::StreamFailed { .. } => "stream_failed",
            Self::StreamTruncated => "stream_truncated",
        }
    }

    /// Classifies a non-2xx answer from its status, headers and body.
    pub fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let parsed = UpstreamError::parse(body);
        let message = parsed
            .as_ref()
            .map(|error| error.message.clone())
            .unwrap_or_else(|| body_text(status, body));
        let error_type = parsed
            .as_ref()
            .and_then(|error| error.error_type.as_deref());
        match status {
            400 if message.contains("Invalid model name") => Self::UnknownModel { status, message },
            400 if matches!(error_type, Some("no_db_connection" | "auth_error")) => {
                Self::AuthRejected { status, message }
            }
            // LiteLLM answers a forbidden body field (`api_base`, …) through its auth layer.
            401 | 403 if message.contains("not allowed in request body") => {
                Self::BadRequest { status, message }
            }
            401 | 403 => Self::AuthRejected { status, message },
            404 if message.to_ascii_lowercase().contains("model") => {
                Self::UnknownModel { status, message }
            }
            408 | 504 => Self::UpstreamTimeout { status, message },
            429 => Self::RateLimited {
                message,
                retry_after,
            },
            500..=599 => Self::UpstreamFailure { status, message },
            _ => Self::BadRequest { status, message },
        }
    }
}

/// LiteLLM's error object, read leniently.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UpstreamError {
    pub(crate) message: String,
    pub(crate) error_type: Option<String>,
    pub(crate) code: Option<String>,
}

impl UpstreamError {
    /// Reads `{"error":{…}}` (or FastAPI's `{"detail":…}`) from a body.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        Self::from_value(&serde_json::from_slice::<Value>(body).ok()?)
    }

    /// Reads `{"error":{…}}` (or `{"detail":…}`) from a parsed value.
    pub(crate) fn from_value(value: &Value) -> Option<Self> {
        if let Some(detail) = value.get("detail") {
            return Some(Self {
                message: truncate(&text_of(detail)),
                error_type: None,
                code: None,
            });
        }
        let error = value.get("error")?;
        if let Value::String(message) = error {
            return Some(Self {
                message: truncate(message),
                error_type: None,
                code: None,
            });
        }
        Some(Self {
            message: truncate(&error.get("message").map(text_of).unwrap_or_default()),
            error_type: error.get("type").and_then(Value::as_str).map(str::to_owned),
            // `code` is a string in LiteLLM ("500"), a number elsewhere.
            code: error.get("code").and_then(|code| match code {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            }),
        })
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn body_text(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        truncate(text)
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    kept.push('…');
    kept
}

/// A failed call: what went wrong, how many attempts were made, and LiteLLM's call id if any.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct ProviderError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// HTTP attempts made (1 when nothing was retried; 0 when nothing was sent).
    pub attempts: u32,
    /// `x-litellm-call-id` of the last answer, when there was one.
    pub call_id: Option<String>,
}

impl ProviderError {
    /// An error with no call id.
    pub fn new(kind: ErrorKind, attempts: u32) -> Self {
        Self {
            kind,
            attempts,
            call_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_error_body_with_string_code_and_none_param() {
        let body = br#"{"error":{"message":"Authentication Error, No api key passed in.","type":"auth_error","param":"None","code":"401"}}"#;
        let parsed = UpstreamError::parse(body).unwrap();
        assert_eq!(parsed.code.as_deref(), Some("401"));
        assert_eq!(
            ErrorKind::from_response(401, None, body),
            ErrorKind::AuthRejected {
                status: 401,
                message: "Authentication Error, No api key passed in.".into()
            }
        );
    }

    #[test]
    fn a_forbidden_body_field_is_the_callers_error_not_a_key_problem() {
        let body = br#"{"error":{"message":"Authentication Error, Rejected Request: api_base is not allowed in request body. Enable with `general_settings::allow_client_side_credentials` on proxy config.yaml.","type":"auth_error","param":"None","code":"401"}}"#;
        assert!(matches!(
            ErrorKind::from_response(401, None, body),
            ErrorKind::BadRequest { status: 401, message } if message.contains("api_base")
        ));
    }

    #[test]
    fn numeric_codes_and_fastapi_detail_are_read_too() {
        let parsed = UpstreamError::parse(br#"{"error":{"message":"m","code":429}}"#).unwrap();
        assert_eq!(parsed.code.as_deref(), Some("429"));
        let parsed = UpstreamError::parse(br#"{"detail":"Not Found"}"#).unwrap();
        assert_eq!(parsed.message, "Not Found");
    }

    #[test]
    fn non_json_500_keeps_the_text() {
        assert_eq!(
            ErrorKind::from_response(500, None, b"Internal Server Error"),
            ErrorKind::UpstreamFailure {
                status: 500,
                message: "Internal Server Error".into()
            }
        );
        assert!(matches!(
            ErrorKind::from_response(502, None, b""),
            ErrorKind::UpstreamFailure { status: 502, message } if message.contains("empty body")
        ));
    }

    #[test]
    fn huge_messages_are_truncated() {
        let body = "x".repeat(10_000);
        let ErrorKind::UpstreamFailure { message, .. } =
            ErrorKind::from_response(500, None, body.as_bytes())
        else {
            panic!("expected an upstream failure");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn retryability_and_labels() {
        let timeout = ErrorKind::from_response(408, None, b"{}");
        assert_eq!(timeout.label(), "upstream_timeout");
        assert!(timeout.is_retryable());
        let bad = ErrorKind::from_response(422, None, b"{}");
        assert_eq!((bad.label(), bad.is_retryable()), ("bad_request", false));
        assert_eq!(bad.upstream_status(), Some(422));
        assert_eq!(ErrorKind::StreamTruncated.upstream_status(), None);
    }
}
