//! Per-request context and the app-wide request-context middleware.
//!
//! Middleware order, outermost first (each `wrap` in [`crate::Application`] follows it):
//! 1. [`request_context`] — mints the request id (a UUID v7; a caller's `X-Request-Id` is kept
//!    only as `client_request_id`) and the trace id, and starts the request's exchange draft
//!    ([`crate::exchange`]); after the handler: finishes the exchange (unless a stream will),
//!    renders every error body through [`crate::error::render`] with the request id, and sets
//!    `X-Request-Id`, `X-Content-Type-Options: nosniff` and `Cache-Control: no-store` on every
//!    response.
//! 2. CORS (only when `CORS_ALLOWED_ORIGINS` is set), so preflights need no credentials.
//! 3. `Gate::authenticate_requests` (bff-auth) — the one place that decides who is calling:
//!    every route except [`PUBLIC_ROUTES`] requires a valid caller, whose [`Identity`] goes
//!    into the extensions. Each route's `gate.require(permission)` then decides what they may
//!    do (and, for chat, [`crate::access::AccessPolicy::check_chat`] the body's models and
//!    fields).

use crate::error::{ApiError, ErrorContext, ErrorParts, auth_parts, generic_parts, render};
use crate::exchange::{AbandonGuard, Ending, ExchangeHandle, Failure, Hub};
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
pub const PUBLIC_ROUTES: [&str; 6] = [
    "/health",
    "/ready",
    "/monitoring",
    "/monitoring.js",
    "/monitoring.css",
    "/monitoring.svg",
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
    let (Some(hub), Some(errors)) = (
        request.app_data::<web::Data<Hub>>().cloned(),
        request.app_data::<web::Data<ErrorContext>>().cloned(),
    ) else {
        return Err(actix_web::error::ErrorInternalServerError(
            "bff is not wired",
        ));
    };
    let exchange = ExchangeHandle::start(hub.into_inner(), info.request_id.clone(), method);
    let guard = AbandonGuard(exchange.clone());
    let span = tracing::info_span!("request", request_id = %info.request_id, method, path = %request.path());
    request.extensions_mut().insert(info.clone());
    request.extensions_mut().insert(exchange.clone());

    let response = match next.call(request).instrument(span).await {
        Ok(response) => response,
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            exchange.responded(status, None);
            exchange.finish(Ending::Failed, None);
            std::mem::forget(guard);
            return Err(error);
        }
    };
    let status = response.status();
    answered(&exchange, &response, status);
    if !exchange.is_streaming() {
        let ending = if status.is_client_error() || status.is_server_error() {
            Ending::Failed
        } else {
            Ending::Answered
        };
        exchange.finish(ending, None);
    }
    // Answered: from here a stream, or nobody, owns the end.
    std::mem::forget(guard);

    let mut response = if status.is_client_error() || status.is_server_error() {
        render_error(response, &info.request_id, errors.max_body_bytes)
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

/// Tells the exchange how the request was answered: the route, the caller, the status and what
/// went wrong.
fn answered<B>(exchange: &ExchangeHandle, response: &ServiceResponse<B>, status: StatusCode) {
    let request = response.request();
    exchange.set_route(request.match_pattern().as_deref());
    let identity = request.extensions().get::<Identity>().cloned();
    exchange.update(|draft| {
        if draft.caller.is_none() {
            draft.caller = identity;
        }
    });
    exchange.responded(status.as_u16(), failure_of(response));
}

/// What went wrong, as the error body will say it.
fn failure_of<B>(response: &ServiceResponse<B>) -> Option<Failure> {
    let status = response.status();
    if let Some(error) = response.response().error() {
        if let Some(api) = error.as_error::<ApiError>() {
            let parts = api.parts();
            return Some(Failure {
                code: parts.code,
                message: parts.message.into_owned(),
                auth: matches!(api, ApiError::Auth(_)),
            });
        }
        if let Some(auth) = error.as_error::<AuthError>() {
            return Some(Failure {
                code: auth.code(),
                message: auth.to_string(),
                auth: true,
            });
        }
    }
    (status.is_client_error() || status.is_server_error()).then(|| Failure {
        code: generic_parts(status, None, 0).code,
        message: status.canonical_reason().unwrap_or("error").to_lowercase(),
        auth: false,
    })
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
    fn the_failure_is_what_the_error_body_says() {
        use actix_web::test::TestRequest;
        let ok = TestRequest::default().to_srv_response(HttpResponse::Ok().finish());
        assert_eq!(failure_of(&ok), None);
        let failed = |error: actix_web::Error| {
            ServiceResponse::new(
                TestRequest::default().to_http_request(),
                HttpResponse::from_error(error),
            )
        };
        let refused = failure_of(&failed(ApiError::UnsupportedMediaType.into())).unwrap();
        assert_eq!(
            (refused.code, refused.auth),
            ("unsupported_media_type", false)
        );
        let denied = failure_of(&failed(AuthError::CookieNotAccepted.into())).unwrap();
        assert_eq!((denied.code, denied.auth), ("cookie_not_accepted", true));
        let missing = TestRequest::default().to_srv_response(HttpResponse::NotFound().finish());
        assert_eq!(failure_of(&missing).map(|f| f.code), Some("not_found"));
    }
}
