//! What the HTTP sinks share: one client, and classifying answers into [`ExportError`].

use crate::error::TelemetryError;
use crate::sink::ExportError;
use std::time::Duration;

/// Longest piece of a refusal body kept in an error.
const MAX_REASON_CHARS: usize = 300;

/// A client with a whole-request timeout; built once per sink.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, TelemetryError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| TelemetryError::InvalidConfig {
            what: "HTTP client",
            reason: error.to_string(),
        })
}

/// A transport failure: retryable when the request never left (no connection), ambiguous when
/// it may have arrived (a timeout or a failure after connecting).
pub(crate) fn transport(sink: &str, error: &reqwest::Error) -> ExportError {
    if error.is_connect() {
        return ExportError::Retryable {
            reason: format!("{sink}: cannot connect"),
            retry_after: None,
        };
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "the request failed after it was sent"
    };
    ExportError::Ambiguous {
        reason: format!("{sink}: {what}; the destination may have taken it"),
    }
}

/// Classifies a non-2xx answer: 504 (a gateway gave up waiting: the destination may have taken
/// it) is ambiguous; 408, 429 and other 5xx are retryable; other 4xx are refusals.
pub(crate) fn status_error(
    sink: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ExportError {
    let text: String = String::from_utf8_lossy(body)
        .trim()
        .chars()
        .take(MAX_REASON_CHARS)
        .collect();
    let reason = format!("{sink} answered HTTP {status}: {text}");
    if status == 504 {
        ExportError::Ambiguous { reason }
    } else if status == 408 || status == 429 || status >= 500 {
        ExportError::Retryable {
            reason,
            retry_after,
        }
    } else {
        ExportError::Rejected { reason }
    }
}

/// `Retry-After` in seconds (HTTP dates are not used by these services).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds.min(MAX_RETRY_AFTER_SECONDS)).ok())
}

/// The longest wait a `Retry-After` header is read as (a day); larger values are clamped.
const MAX_RETRY_AFTER_SECONDS: f64 = 86_400.0;
