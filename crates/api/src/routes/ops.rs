//! `GET /health`, `GET /ready`, `GET /metrics`, `GET /v1/models`.

use crate::context::RequestInfo;
use crate::error::ApiError;
use crate::metrics::Snapshot;
use crate::observability::DependencyStatus;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use bff_auth::Identity;
use bff_providers::RequestContext;
use bff_quota::FailMode;
use serde_json::json;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// The monitoring page's policy: its own script and style files only, no inline code, no
/// framing, no plugins.
const MONITORING_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'";

/// The monitoring page: static HTML that reads `/observability/*` with the viewer's own
/// credentials (the same-site `token` cookie of Open WebUI, or a pasted token).
pub async fn monitoring() -> HttpResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("../../static/monitoring.html"),
    )
}

/// The monitoring page's script.
pub async fn monitoring_script() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/monitoring.js"),
    )
}

/// The monitoring page's icon.
pub async fn monitoring_icon() -> HttpResponse {
    asset("image/svg+xml", include_str!("../../static/monitoring.svg"))
}

/// The monitoring page's style sheet.
pub async fn monitoring_style() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/monitoring.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("content-security-policy", MONITORING_CSP))
        .body(body)
}

/// Liveness: the process serves.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// LiteLLM's readiness as a dependency status.
pub async fn litellm_status(state: &AppState) -> DependencyStatus {
    let started = Instant::now();
    let result = match state.litellm.readiness().await {
        Ok(readiness) if readiness.status == "healthy" => Ok(()),
        Ok(readiness) => Err(format!("status `{}`", readiness.status)),
        Err(error) => Err(error.to_string()),
    };
    DependencyStatus::checked("litellm", started, result)
}

/// Redis, when quota counters live there (in-process counters are not a dependency).
pub async fn redis_status(state: &AppState) -> Option<DependencyStatus> {
    if state.quota.backend() != "redis" {
        return None;
    }
    let started = Instant::now();
    let result = state.quota.counters().ping().await.map_err(|error| error.0);
    Some(DependencyStatus::checked("redis", started, result))
}

/// The usage store, when it is shared (Redis); the embedded one is a file, not a dependency.
pub async fn usage_store_status(state: &AppState) -> Option<DependencyStatus> {
    if state.reporting.backend() != "redis" {
        return None;
    }
    let started = Instant::now();
    let result = state.reporting.ping().await.map_err(|error| error.0);
    Some(DependencyStatus::checked("usage_store", started, result))
}

/// Readiness: LiteLLM answers, and Open WebUI and Redis (when configured) answer. 503 names
/// what is down (Redis only counts with `QUOTA_FAIL_MODE=closed`, when requests need it); the
/// public answer never carries what a dependency said (that is for `/observability/health`).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (litellm, openwebui, redis) = tokio::join!(
        litellm_status(&state),
        state.observability.openwebui_health(),
        redis_status(&state)
    );
    let checks: Vec<DependencyStatus> = [Some(litellm), Some(openwebui), redis]
        .into_iter()
        .flatten()
        .map(DependencyStatus::without_detail)
        .collect();
    let needed = |check: &DependencyStatus| {
        check.name != "redis" || state.quota.fail_mode() == FailMode::Closed
    };
    let down: Vec<&str> = checks
        .iter()
        .filter(|c| c.is_down() && needed(c))
        .map(|c| c.name)
        .collect();
    let body = json!({"status": if down.is_empty() { "ready" } else { "unavailable" }, "down": down, "checks": checks});
    if down.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let errors = state.quota.backend_errors();
    let snapshot = Snapshot {
        telemetry: state.telemetry.stats(),
        quota_errors: (
            errors.admit.load(Ordering::Relaxed),
            errors.settle.load(Ordering::Relaxed),
        ),
        usage: state.reporting.stats(),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&snapshot))
}

/// LiteLLM's models, filtered by the caller's role allow-list.
pub async fn models(
    request: HttpRequest,
    identity: Identity,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let info = RequestInfo::of(&request);
    let mut context = RequestContext::new(info.request_id.clone(), info.trace_id.clone());
    context.user_id = Some(identity.user_id.clone());
    context.deadline = info.deadline(state.request_timeout);
    let mut list = state.litellm.models(&context).await?;
    for model in &list.data {
        state.models.learn(&model.id);
    }
    let policy = state.gate.policy();
    list.data
        .retain(|model| policy.allows_model(&identity, &model.id));
    Ok(HttpResponse::Ok().json(list))
}
