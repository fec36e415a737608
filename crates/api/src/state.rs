//! What every handler shares.

use crate::access::AccessPolicy;
use crate::metrics::Metrics;
use crate::observability::Observability;
use crate::usage::{RecentRequests, UsageLedger};
use bff_auth::Gate;
use bff_providers::LiteLlm;
use bff_quota::Quota;
use bff_telemetry::Pipeline;
use std::sync::Arc;
use std::time::Duration;

/// Shared application state, built once by [`crate::Application::build`].
pub struct AppState {
    /// The LiteLLM client.
    pub litellm: Arc<dyn LiteLlm>,
    /// Authentication and RBAC.
    pub gate: Gate,
    /// What each caller may do: routes, models, body fields, usage limits.
    pub access: AccessPolicy,
    /// The telemetry pipeline.
    pub telemetry: Arc<Pipeline>,
    /// Prometheus metrics (shared with the quota engine).
    pub metrics: Arc<Metrics>,
    /// Usage limits.
    pub quota: Arc<Quota>,
    /// Usage since start, for `/observability/usage` without Langfuse.
    pub usage: UsageLedger,
    /// The latest requests, for `/observability/traces` without Langfuse.
    pub recent: RecentRequests,
    /// Readers of the observability backends.
    pub observability: Observability,
    /// Deadline of one chat request.
    pub request_timeout: Duration,
    /// `langfuse.environment` for telemetry records.
    pub environment: Option<String>,
    /// Largest request body (for the 413 message).
    pub max_body_bytes: usize,
    /// Whether `/metrics` needs a permission.
    pub metrics_require_auth: bool,
}
