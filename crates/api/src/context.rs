//! Per-request context and the app-wide request-context middleware.
//!
//! Middleware order, outermost first (each `wrap` in [`crate::Application`] follows it):
//! 1. [`request_context`] — mints the request id (a UUID v7; a caller's `X-Request-Id` is kept
//!    only as `client_request_id`) and the trace id; after the handler: metrics (method
//!    normalised, route pattern or `unmatched`), one log line saying who did what, every error
//!    body rendered by [`crate::error::render`] with the request id, `X-Request-Id`,
//!    `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on every response.
//! 2. CORS (only when `CORS_ALLOWED_ORIGINS` is set), so preflights need no credentials.
//! 3. `Gate::authenticate_requests` (bff-auth) — the one place that decides who is calling:
//!    every route except [`PUBLIC_ROUTES`] requires a valid caller, whose [`Identity`] goes
//!    into the extensions. Each route's `gate.require(permission)` then decides what they may
//!    do (and, for chat, [`bff_auth::Policy::check_request`] the body's models and fields).

use crate::error::{ApiError, ErrorParts, auth_parts, generic_parts, render};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use bff_auth::{AuthError, AuthMethod, Identity, sanitize_label};
use bff_providers::TraceId;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::Instrument as _;

/// Routes reachable without credentials. `/metrics` joins them unless `METRICS_REQUIRE_AUTH`.
/// (`/monitoring` is a static page; everything it shows comes from authenticated routes.)
pub const PUBLIC_ROUTES: [&str; 5] = [
    "/health",
    "/ready",
    "/monitoring",
    "/monitoring.js",
    "/monitoring.css",
];

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's `traceparent`: honoured only when the caller is a trusted backend.
#[derive(Debug, Clone)]
struct IncomingTrace {
    trace_id: TraceId,
    span_id: String,
}

/// Identity of one request, for handlers, logs, LiteLLM and telemetry.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// bff's own id for this request (UUID v7): what LiteLLM, Langfuse and Helicone key on.
    pub request_id: String,
    /// The caller's `X-Request-Id`, sanitised: an attribute, never a key.
    pub client_request_id: Option<String>,
    /// The trace: new, or a trusted backend's (see [`RequestInfo::of`]).
    pub trace_id: TraceId,
    /// The trusted backend's span bff's spans hang under, if any.
    pub parent_span_id: Option<String>,
    incoming: Option<IncomingTrace>,
    /// Monotonic start.
    pub started: Instant,
    /// Wall-clock start.
    pub started_at: SystemTime,
}

impl RequestInfo {
    /// The info stored by [`request_context`] (or a fresh one), with the trace resolved for
    /// the authenticated caller: a service-key caller's `traceparent` is adopted as the parent;
    /// anyone else's is ignored.
    pub fn of(request: &actix_web::HttpRequest) -> Self {
        let extensions = request.extensions();
        let info = extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self::new(None, None));
        info.resolved(extensions.get::<Identity>())
    }

    fn new(client_request_id: Option<&str>, traceparent: Option<&str>) -> Self {
        Self {
            request_id: uuid::Uuid::now_v7().to_string(),
            client_request_id: client_request_id.and_then(sanitize_label),
            trace_id: TraceId::random(),
            parent_span_id: None,
            incoming: traceparent.and_then(incoming_trace),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }

    fn resolved(mut self, identity: Option<&Identity>) -> Self {
        let trusted = identity.is_some_and(|identity| {
            matches!(
                identity.via,
                AuthMethod::Service | AuthMethod::ForwardedJwt | AuthMethod::ForwardedHeaders
            )
        });
        if trusted && let Some(incoming) = self.incoming.take() {
            self.trace_id = incoming.trace_id;
            self.parent_span_id = Some(incoming.span_id);
        }
        self
    }

    /// `started` plus `limit`, or `None` when that is past what the clock can represent.
    pub fn deadline(&self, limit: Duration) -> Option<Instant> {
        self.started.checked_add(limit)
    }
}

fn incoming_trace(header: &str) -> Option<IncomingTrace> {
    let trace_id = TraceId::from_traceparent(header)?;
    let span_id = header.trim().split('-').nth(2)?.to_ascii_lowercase();
    Some(IncomingTrace { trace_id, span_id })
}

/// Time this request spent waiting on LiteLLM (set by the handlers, read for the overhead
/// histogram).
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamWait(pub Duration);

/// The method as a metrics label: a fixed set, whatever a client sends.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
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
    let method = method_label(request.method());
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", request_id = %info.request_id, trace_id = tracing::field::Empty, method, path = %request.path());
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
            .request(&route, method, status.as_u16(), elapsed, upstream.0);
        if let Some(auth) = response
            .response()
            .error()
            .and_then(|error| error.as_error::<AuthError>())
        {
            state.metrics.auth_failure(auth.code());
        }
    }
    log_finished(&response, &span, &route, elapsed, upstream.0);

    let max_body = state.as_ref().map_or(0, |state| state.max_body_bytes);
    let mut response = if status.is_client_error() || status.is_server_error() {
        render_error(response, &info.request_id, max_body)
    } else {
        response.map_into_boxed_body()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&info.request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The one log line per request: who (user, role, credential kind), what, how it went.
fn log_finished<B>(
    response: &ServiceResponse<B>,
    span: &tracing::Span,
    route: &str,
    elapsed: Duration,
    upstream: Duration,
) {
    let extensions = response.request().extensions();
    let identity = extensions.get::<Identity>();
    let info = extensions
        .get::<RequestInfo>()
        .cloned()
        .map(|info| info.resolved(identity));
    if let Some(info) = &info {
        span.record("trace_id", tracing::field::display(&info.trace_id));
    }
    let client_request_id = info.and_then(|info| info.client_request_id);
    let (outcome, error_code) = outcome_of(response);
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            route,
            outcome,
            error_code,
            user_id = identity.map(|identity| identity.user_id.as_str()),
            role = identity.and_then(|identity| identity.role.as_deref()),
            auth = identity.map(|identity| identity.via.as_str()),
            openwebui_auth = identity.and_then(|identity| identity.openwebui_auth_type.as_deref()),
            session_id = identity.and_then(|identity| identity.chat_id.as_deref()),
            client_request_id,
            duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            upstream_ms = u64::try_from(upstream.as_millis()).unwrap_or(u64::MAX),
            "request finished"
        );
    });
}

/// How a request ended, as the log line says it: `ok`, `streaming` (a stream started; its end
/// is logged by the stream), or `error` with the error code.
fn outcome_of<B>(response: &ServiceResponse<B>) -> (&'static str, Option<&'static str>) {
    let status = response.status();
    if let Some(error) = response.response().error() {
        let code = error
            .as_error::<ApiError>()
            .map(|api| api.parts().code)
            .or_else(|| error.as_error::<AuthError>().map(AuthError::code))
            .unwrap_or("http_error");
        return ("error", Some(code));
    }
    if status.is_client_error() || status.is_server_error() {
        return ("error", Some("http_error"));
    }
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"));
    (if streaming { "streaming" } else { "ok" }, None)
}

/// Replaces an error response's body with OpenAI JSON carrying the request id, whatever
/// produced it; keeps its status and headers (`Retry-After`, `WWW-Authenticate`, …).
fn render_error(
    response: ServiceResponse<impl MessageBody + 'static>,
    request_id: &str,
    max_body_bytes: usize,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let parts = match response.response().error() {
        Some(error) => error_parts(error, status, request_id, max_body_bytes),
        // A JSON answer bff built on purpose (e.g. `/ready`'s report) stays as it is.
        None if is_json(response.headers()) => return response.map_into_boxed_body(),
        None => generic_parts(status, None, max_body_bytes),
    };
    let body = render(&parts, request_id).to_string();
    let (request, response) = response.into_parts();
    let mut rebuilt = HttpResponse::build(status);
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            rebuilt.append_header((name.clone(), value.clone()));
        }
    }
    let rebuilt = rebuilt.content_type("application/json").body(body);
    ServiceResponse::new(request, rebuilt)
}

/// What the body of an error says; server-side details go to the log instead.
fn error_parts(
    error: &Error,
    status: StatusCode,
    request_id: &str,
    max_body_bytes: usize,
) -> ErrorParts<'static> {
    if let Some(api) = error.as_error::<ApiError>() {
        if api.is_server_side() {
            tracing::warn!(request_id, status = status.as_u16(), error = %api, "request failed");
        }
        return into_owned(api.parts());
    }
    if let Some(auth) = error.as_error::<AuthError>() {
        if status.is_server_error() {
            tracing::warn!(request_id, status = status.as_u16(), error = ?auth, "request failed");
        }
        return into_owned(auth_parts(auth));
    }
    // actix's own errors (payload, query, JSON): their text says what is wrong with the input.
    let detail = status
        .is_client_error()
        .then(|| error.to_string().chars().take(300).collect());
    generic_parts(status, detail, max_body_bytes)
}

fn into_owned(parts: ErrorParts<'_>) -> ErrorParts<'static> {
    ErrorParts {
        message: parts.message.into_owned().into(),
        error_type: parts.error_type,
        code: parts.code,
        param: parts.param.map(|param| param.into_owned().into()),
    }
}

fn is_json(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_become_a_fixed_set_of_labels() {
        for (method, label) in [
            ("GET", "GET"),
            ("POST", "POST"),
            ("PUT", "other"),
            ("XYZZY", "other"),
            (&"A".repeat(200), "other"),
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_label(&method), label);
        }
    }

    #[test]
    fn a_traceparent_is_adopted_from_trusted_backends_only() {
        let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let caller = |via| Identity::new("u", None, via);
        let info = RequestInfo::new(Some("client-1"), Some(header));
        let user = info.clone().resolved(Some(&caller(AuthMethod::Session)));
        assert_ne!(user.trace_id.as_str(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(user.parent_span_id, None);
        let service = info.clone().resolved(Some(&caller(AuthMethod::Service)));
        assert_eq!(
            service.trace_id.as_str(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(service.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        // The request id is always bff's own.
        assert_ne!(info.request_id, "client-1");
        assert_eq!(info.client_request_id.as_deref(), Some("client-1"));
    }

    #[test]
    fn the_log_line_says_how_a_request_ended() {
        use actix_web::test::TestRequest;
        let ok = TestRequest::default().to_srv_response(HttpResponse::Ok().finish());
        assert_eq!(outcome_of(&ok), ("ok", None));
        let stream = TestRequest::default().to_srv_response(
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .finish(),
        );
        assert_eq!(outcome_of(&stream), ("streaming", None));
        let failed = |error: actix_web::Error| {
            ServiceResponse::new(
                TestRequest::default().to_http_request(),
                HttpResponse::from_error(error),
            )
        };
        let refused = failed(ApiError::UnsupportedMediaType.into());
        assert_eq!(
            outcome_of(&refused),
            ("error", Some("unsupported_media_type"))
        );
        let denied = failed(AuthError::CookieNotAccepted.into());
        assert_eq!(outcome_of(&denied), ("error", Some("cookie_not_accepted")));
    }
}
