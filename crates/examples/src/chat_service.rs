//! An axum chat API for Open WebUI's users: `POST /v1/chat/completions` for callers holding
//! `chat`, `GET /health` for anyone.
//!
//! - Who is calling: `bff-auth`'s [`AuthLayer`] (Open WebUI session tokens, API keys, service
//!   keys), then [`RequireLayer`] for the permission; both answer in OpenAI's error shape.
//! - The call: `bff-providers`' [`LiteLlm`], with the caller's request id and trace.
//! - What it cost: one [`LlmRecord`] per call to `bff-telemetry`'s [`Pipeline`], which ships it
//!   without delaying the answer.

use crate::record_outcome;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bff_auth::tower::{AuthLayer, RequireLayer};
use bff_auth::{Gate, Identity, Permission};
use bff_providers::{ChatRequest, LiteLlm, RequestContext, TraceId};
use bff_telemetry::{LlmRecord, Pipeline, UnixNanos};
use serde_json::json;
use std::sync::Arc;

/// The one permission this service defines.
pub const CHAT: Permission = Permission::new("chat");

/// What the handlers share.
pub struct ChatService {
    /// Who is calling and what they may do.
    pub gate: Gate,
    /// The model gateway.
    pub litellm: Arc<dyn LiteLlm>,
    /// Where each call's record goes.
    pub telemetry: Pipeline,
}

/// The routes, behind the authentication and permission layers.
pub fn router(service: Arc<ChatService>) -> Router {
    let gate = service.gate.clone();
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route_layer(RequireLayer::new(gate.clone(), CHAT))
        .route("/health", get(|| async { "ok" }))
        .layer(AuthLayer::new(gate, ["/health"]))
        .with_state(service)
}

async fn chat(
    State(service): State<Arc<ChatService>>,
    Extension(identity): Extension<Identity>,
    Json(request): Json<ChatRequest>,
) -> Response {
    let request_id = uuid::Uuid::now_v7().to_string();
    let trace = TraceId::random();
    let mut record = LlmRecord::new(
        trace.as_str(),
        &request_id,
        "/v1/chat/completions",
        &request.model,
    );
    record.user_id = Some(identity.user_id.clone());
    record.role = identity.role.clone();
    record.groups = identity.groups.iter().map(|g| g.name.clone()).collect();
    record.started_at = UnixNanos::now();
    let context = RequestContext::new(request_id, trace);
    let result = service.litellm.chat(&context, request).await;
    record_outcome(&mut record, &result);
    service.telemetry.record(record); // returns at once
    match result {
        Ok(completion) => {
            ([(header::CONTENT_TYPE, "application/json")], completion.raw).into_response()
        }
        Err(error) => {
            let status = error
                .kind
                .upstream_status()
                .and_then(|status| StatusCode::from_u16(status).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let body = json!({"error": {"message": error.to_string(), "type": "upstream_error",
                                        "param": null, "code": error.kind.label()}});
            (status, Json(body)).into_response()
        }
    }
}
