//! Per-request context and the two app-wide middlewares.
//!
//! Middleware order, outermost first (each `wrap` in [`crate::Application`] follows it):
//! 1. [`request_context`] — request id (`X-Request-Id`, sanitised, or a new UUID v7) and trace
//!    id (`traceparent`, or new) into the request extensions and the log span; after the
//!    handler: metrics, one log line, error bodies normalized to OpenAI JSON with the request
//!    id, and `X-Request-Id` on every response.
//! 2. CORS (only when `CORS_ALLOWED_ORIGINS` is set), so preflights need no credentials.
//! 3. [`authenticate`] — every route except [`PUBLIC_ROUTES`] requires a valid caller; the
//!    [`Identity`] goes into the extensions, where each route's `gate.require(permission)`
//!    finds it.

use crate::error::generic_error;
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use bff_auth::{AuthError, Identity, credentials_from_request};
use bff_providers::TraceId;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument as _;

/// Routes reachable without credentials. `/metrics` joins them unless `METRICS_REQUIRE_AUTH`.
/// (`/monitoring` is a static page; everything it shows comes from authenticated routes.)
pub const PUBLIC_ROUTES: [&str; 3] = ["/health", "/ready", "/monitoring"];

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted incoming request id.
const MAX_REQUEST_ID: usize = 128;

/// Identity of one request, for handlers, logs, LiteLLM and telemetry.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Accepted `X-Request-Id` or a new UUID v7.
    pub request_id: String,
    /// Trace id from `traceparent`, or new.
    pub trace_id: TraceId,
    /// Monotonic start.
    pub started: Instant,
    /// Wall-clock start.
    pub started_at: SystemTime,
}

impl RequestInfo {
    /// The info stored by [`request_context`], or a fresh one (handler tests without it).
    pub fn of(request: &actix_web::HttpRequest) -> Self {
        request
            .extensions()
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self::new(None, None))
    }

    fn new(request_id: Option<&str>, traceparent: Option<&str>) -> Self {
        Self {
            request_id: request_id
                .and_then(sanitize_request_id)
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            trace_id: traceparent
                .and_then(TraceId::from_traceparent)
                .unwrap_or_else(TraceId::random),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }
}

/// Time this request spent waiting on LiteLLM (set by the handlers, read for the overhead
/// histogram).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamWait(pub Duration);

/// Keeps `[A-Za-z0-9._:-]`, at most 128 characters; `None` if nothing usable is left.
fn sanitize_request_id(raw: &str) -> Option<String> {
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        .take(MAX_REQUEST_ID)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

fn header_str<'a>(request: &'a ServiceRequest, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// See the module docs (1).
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let info = RequestInfo::new(
        header_str(&request, "x-request-id"),
        header_str(&request, "traceparent"),
    );
    let request_id = info.request_id.clone();
    let method = request.method().to_string();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %request_id, trace_id = %info.trace_id, method = %method, path = %request.path());
    request.extensions_mut().insert(info.clone());

    let response = next.call(request).instrument(span.clone()).await?;
    let status = response.status();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let upstream = response
        .request()
        .extensions()
        .get::<UpstreamWait>()
        .copied()
        .unwrap_or_default();
    let elapsed = info.started.elapsed();
    if let Some(state) = &state {
        state
            .metrics
            .request(&route, &method, status.as_u16(), elapsed, upstream.0);
        if let Some(error) = response.response().error()
            && let Some(auth) = error.as_error::<AuthError>()
        {
            state.metrics.auth_failure(auth.code());
        }
    }
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), route = %route, duration_ms = elapsed.as_millis() as u64, upstream_ms = upstream.0.as_millis() as u64, "request finished");
    });

    let max_body = state.as_ref().map_or(0, |state| state.max_body_bytes);
    let mut response = if status.is_client_error() || status.is_server_error() {
        normalize_error(response.map_into_boxed_body(), &request_id, max_body).await
    } else {
        response.map_into_boxed_body()
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Rewrites an error response into OpenAI JSON carrying the request id, whatever produced it.
async fn normalize_error(
    response: ServiceResponse,
    request_id: &str,
    max_body_bytes: usize,
) -> ServiceResponse<BoxBody> {
    let (request, response) = response.into_parts();
    let status = response.status();
    let headers = response.headers().clone();
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap_or_default();
    // A JSON object body is bff's own answer (an error, or e.g. `/ready`'s report): keep it.
    // Anything else (actix's plain-text 404, 405, 413, payload errors) becomes OpenAI JSON.
    let mut json = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| {
            let (message, error_type, code) = generic_error(status, max_body_bytes);
            let text = String::from_utf8_lossy(&body);
            // actix's own 4xx texts (e.g. payload errors) say what is wrong; keep them.
            let message = if status.as_u16() == 400 && !text.trim().is_empty() {
                text.trim().chars().take(300).collect()
            } else {
                message
            };
            json!({"error": {"message": message, "type": error_type, "param": null, "code": code}})
        });
    if let Some(error) = json.get_mut("error").and_then(Value::as_object_mut) {
        error.insert("request_id".into(), request_id.into());
    }
    let mut rebuilt = HttpResponse::build(status);
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            rebuilt.append_header((name.clone(), value.clone()));
        }
    }
    let rebuilt = rebuilt
        .content_type("application/json")
        .body(json.to_string());
    ServiceResponse::new(request, rebuilt)
}

/// See the module docs (3).
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request.error_response(AuthError::NotConfigured));
    };
    let public = PUBLIC_ROUTES.contains(&request.path())
        || (request.path() == "/metrics" && !state.metrics_require_auth)
        || request.method() == actix_web::http::Method::OPTIONS;
    if !public {
        match state
            .gate
            .authenticate(&credentials_from_request(request.request()))
            .await
        {
            Ok(identity) => {
                request.extensions_mut().insert::<Identity>(identity);
            }
            Err(error) => return Ok(request.error_response(error)),
        }
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sanitised_and_bounded() {
        assert_eq!(
            sanitize_request_id("abc-123_x.y:z").as_deref(),
            Some("abc-123_x.y:z")
        );
        assert_eq!(
            sanitize_request_id("a b\r\nc<script>").as_deref(),
            Some("abcscript")
        );
        assert_eq!(sanitize_request_id("\u{1F600}\n"), None);
        assert_eq!(sanitize_request_id(&"x".repeat(500)).unwrap().len(), 128);
    }
}
